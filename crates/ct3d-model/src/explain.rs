//! Where a network looked: Grad-CAM, Grad-CAM++ and occlusion sensitivity for any
//! [`Classifier`], on one model-ready volume.
//!
//! - **Grad-CAM** (Selvaraju et al. 2017): for block output `A` (`[channels, sx, sy, sz]`) and the
//!   score `S` (the logit for the positive class, its negative for the negative class), each
//!   channel's weight is the spatial mean of `∂S/∂A`, and the map is
//!   `ReLU(Σ_c weight_c · A_c)` at the block's resolution. The gradient comes from burn's
//!   autodiff on a frozen copy of the network (moving BatchNorm statistics, as in inference):
//!   the block output is computed without autodiff, made a leaf that requires its gradient, and
//!   only the rest of the network ([`Classifier::forward_from`]) is differentiated.
//! - **Grad-CAM++** (Chattopadhyay et al. 2018) with the closed form for an exponential score,
//!   as its authors and the common implementations compute it: with `g = ∂S/∂A`,
//!   `α = g² / (2g² + Σ_xyz A · g³)` and weight_c `= Σ_xyz α · ReLU(g)`.
//! - **Occlusion sensitivity** (Zeiler & Fergus 2014; MONAI's `OcclusionSensitivity`): a patch
//!   of the volume is hidden ([`OcclusionFill`]: faded to zero under a Gaussian, MONAI's default,
//!   or replaced by the volume's mean), the drop of the positive-class probability
//!   `p(x) − p(occluded)` is credited to every voxel of the patch, and each voxel's value is the
//!   weighted mean over the patches that covered it (Gaussian weights centred on each patch, or
//!   equal ones). Patches start every `stride` voxels (the last one flush with the far edge, so
//!   every voxel is covered) and run through the network in batches. The map equals
//!   `p(x)` minus MONAI's map for the same patch, windows and mode (`tools/golden/`).
//!
//! Maps come back as [`Volume`]s in the model's input grid (`[x, y, z]` voxels, `x` fastest); the
//! caller places them in a scan's own grid.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ct3d_volume::Volume;

use crate::architecture::{Classifier, Network};
use crate::input::{batch_tensor, copy_in_input_order};
use crate::seed_cnn::ModelError;

/// Which class's evidence a gradient map shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Label 1 (the positive class, e.g. abnormal): the score is the logit.
    #[default]
    Positive,
    /// Label 0: the score is the negated logit.
    Negative,
}

/// Which gradient map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradMethod {
    /// Grad-CAM.
    #[default]
    GradCam,
    /// Grad-CAM++.
    GradCamPlusPlus,
}

/// A gradient map at a block's resolution, before any upsampling.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMap {
    /// The map, `[sx, sy, sz]` voxels of the block's output (`x` fastest), ≥ 0.
    pub map: Volume,
    /// The per-channel weights (`[channels]`).
    pub weights: Vec<f32>,
    /// The network's logit for the volume.
    pub logit: f32,
}

/// Computes gradient maps for one network; build once, use for many volumes.
pub struct GradExplainer {
    /// The network as given (inference mode): computes the block output.
    network: Network,
    /// A frozen copy on the autodiff device: differentiates the rest.
    frozen: Network,
    autodiff: Device,
}

impl GradExplainer {
    /// Prepares `network` (in inference mode, on a plain device) for gradient maps.
    pub fn new(network: &Network) -> Self {
        let device = network_device(network);
        let autodiff = device.autodiff();
        // `freeze` stops parameter gradients and switches BatchNorm to its moving statistics
        // even on the autodiff device (burn-nn 0.22 `BatchNorm::forward`), so the map explains
        // the same function inference computes.
        let frozen = network.valid().fork(&autodiff).freeze();
        Self {
            network: network.valid(),
            frozen,
            autodiff,
        }
    }

    /// The deepest block whose output keeps at least 4 voxels along every axis, or else the
    /// block with the largest smallest axis: the block a picture's map should come from. (The
    /// seed CNN's last block is 1 voxel across at the demo's 48³ input and 6×6×2 at 128×128×64,
    /// too coarse to show a place.) Runs the blocks on a blank input.
    pub fn informative_layer(&self) -> usize {
        let size = self.network.input_size();
        let device = network_device(&self.network);
        let input = Tensor::<5>::zeros([1, 1, size[0], size[1], size[2]], &device);
        let mut best = (0, 0);
        let mut chosen = None;
        // Each block from the input again: a few partial forward passes, once per picture set.
        for layer in 0..self.layer_names().len() {
            let [_, _, sx, sy, sz] = self.network.forward_to(layer, input.clone()).dims();
            let smallest = sx.min(sy).min(sz);
            if smallest >= 4 {
                chosen = Some(layer);
            }
            if smallest > best.1 {
                best = (layer, smallest);
            }
        }
        chosen.unwrap_or(best.0)
    }

    /// The names of the blocks a map can be computed on ([`Classifier::layer_names`]).
    pub fn layer_names(&self) -> Vec<String> {
        self.network.layer_names()
    }

    /// The map of block `layer` (an index into [`Self::layer_names`]) for `volume` (the model's
    /// input size, values as preprocessing leaves them).
    pub fn layer_map(
        &self,
        volume: &Volume,
        layer: usize,
        method: GradMethod,
        target: Target,
    ) -> Result<LayerMap, ModelError> {
        let names = self.layer_names();
        if layer >= names.len() {
            return Err(ModelError::Explain(format!(
                "layer index {layer} out of range (the network has {})",
                names.len()
            )));
        }
        let size = self.network.input_size();
        let mut data = vec![0.0; size.iter().product()];
        copy_in_input_order(volume, size, &mut data)?;
        let device = network_device(&self.network);
        let input = batch_tensor(data, 1, size, &device)?;
        let activation = self.network.forward_to(layer, input);
        let activation = Tensor::from_data(activation.into_data(), &self.autodiff).require_grad();
        let logit = self.frozen.forward_from(layer, activation.clone());
        let logit_value = host(logit.clone())[0];
        let score = match target {
            Target::Positive => logit,
            Target::Negative => -logit,
        };
        let grads = score.sum().backward();
        let gradient = activation
            .grad(&grads)
            .ok_or_else(|| ModelError::Explain("no gradient reached the block output".into()))?;
        let [_, channels, sx, sy, sz] = activation.dims();
        let a = host(activation);
        let g = host(gradient);
        let (map, weights) = combine(&a, &g, channels, [sx, sy, sz], method);
        Ok(LayerMap {
            map,
            weights,
            logit: logit_value,
        })
    }

    /// [`Self::layer_map`] placed on the model's input grid: each input voxel takes the map's
    /// linear interpolation at the block position whose receptive field is centred on it
    /// ([`Classifier::layer_placement`]; clamped at the edges). A corner-aligned resize would
    /// instead stretch the block's grid over the whole input and push every peak outwards (the
    /// seed CNN's block 3 sees input voxels 10.5 … 34.5 of 48, not 0 … 47).
    pub fn input_map(
        &self,
        volume: &Volume,
        layer: usize,
        method: GradMethod,
        target: Target,
    ) -> Result<(Volume, LayerMap), ModelError> {
        let layer_map = self.layer_map(volume, layer, method, target)?;
        let size = self.network.input_size();
        let (stride, offset) = self.network.layer_placement(layer);
        let map = place_on_input(&layer_map.map, size, stride, offset);
        Ok((map, layer_map))
    }
}

/// `map` (a block's grid) on an input of `size` voxels where block voxel `j` sits at input voxel
/// `stride · j + offset` on every axis: linear interpolation between the two nearest block
/// voxels, clamped to the first and last.
pub fn place_on_input(map: &Volume, size: [usize; 3], stride: f64, offset: f64) -> Volume {
    let block = |x: usize| (x as f64 - offset) / stride;
    Volume::from_fn(size, |x, y, z| {
        map.sample_linear([block(x), block(y), block(z)])
    })
}

/// The device a network's parameters live on.
fn network_device(network: &Network) -> Device {
    network
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex)
}

/// Channel weights and the weighted, rectified sum of the activation `a` with gradient `g`
/// (both `[channels, sx, sy, sz]` row-major, `z` fastest); the map comes back `x` fastest.
fn combine(
    a: &[f32],
    g: &[f32],
    channels: usize,
    [sx, sy, sz]: [usize; 3],
    method: GradMethod,
) -> (Volume, Vec<f32>) {
    let voxels = sx * sy * sz;
    let weights: Vec<f32> = (0..channels)
        .map(|c| {
            let (ac, gc) = (&a[c * voxels..][..voxels], &g[c * voxels..][..voxels]);
            match method {
                // Sums in f64: a block output can have thousands of voxels per channel.
                GradMethod::GradCam => {
                    (gc.iter().map(|&v| f64::from(v)).sum::<f64>() / voxels as f64) as f32
                }
                GradMethod::GradCamPlusPlus => {
                    let sum_a: f64 = ac.iter().map(|&v| f64::from(v)).sum();
                    gc.iter()
                        .map(|&gv| {
                            let gv = f64::from(gv);
                            let (g2, g3) = (gv * gv, gv * gv * gv);
                            let denominator = 2.0 * g2 + sum_a * g3;
                            let alpha = if denominator != 0.0 {
                                g2 / denominator
                            } else {
                                0.0
                            };
                            alpha * gv.max(0.0)
                        })
                        .sum::<f64>() as f32
                }
            }
        })
        .collect();
    let mut map = vec![0f64; voxels];
    for (c, &w) in weights.iter().enumerate() {
        for (m, &v) in map.iter_mut().zip(&a[c * voxels..][..voxels]) {
            *m += f64::from(w) * f64::from(v);
        }
    }
    // Row-major [x][y][z] (z fastest) → Volume's x-fastest order, rectified.
    let volume = Volume::from_fn([sx, sy, sz], |x, y, z| {
        map[(x * sy + y) * sz + z].max(0.0) as f32
    });
    (volume, weights)
}

fn host<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// How occlusion hides a patch, and how the patches covering a voxel are averaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OcclusionFill {
    /// MONAI's default (`mode="gaussian"`): the patch is multiplied by `1 − G`, with `G` a
    /// Gaussian (σ = a quarter of the patch on each axis, discretised with MONAI's erf rule,
    /// centred on voxel `patch / 2`) scaled so that the patch's centre becomes 0 (the bottom of
    /// the intensity window: air for CT) and its farthest corner keeps its value; a voxel's value
    /// is the mean of the covering patches' drops weighted by a Gaussian centred on each patch
    /// (σ = an eighth of the patch, weights floored at 1e-3, MONAI's sliding-window blend). The
    /// soft edge and the weights leave a smooth map whose peak sits where hiding hurts most; on
    /// the demo's phantoms it keeps the map inside the lungs (README, "Explaining and trusting").
    #[default]
    Gaussian,
    /// MONAI's `mean_img`: the patch is replaced by the whole volume's mean, and every covering
    /// patch counts the same (ct3d's default before the Gaussian). On CT the mean sits near
    /// ground-glass values, so hiding healthy tissue can look like adding an opacity.
    MeanImage,
}

/// Occlusion settings, in voxels of the model's input grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occlusion {
    /// Patch size `[x, y, z]`, each ≥ 1 and at most the input size.
    pub patch: [usize; 3],
    /// Distance between patch starts `[x, y, z]`, each ≥ 1.
    pub stride: [usize; 3],
    /// Occluded volumes per forward pass.
    pub batch: usize,
    /// What hides a patch.
    pub fill: OcclusionFill,
    /// Coarse-to-fine refinement: after the strided pass, the `refine` patches whose hiding
    /// lowered the probability most are examined again with their neighbours at half the
    /// stride (a start `±stride/2` on each axis), then the best of all so far at a quarter, and
    /// so on down to 1 voxel. The map stays the Gaussian-weighted blend of every patch
    /// evaluated, so around the peak it is as fine as a dense pass at that stride and elsewhere
    /// as coarse as the strided one, at a fraction of the dense cost (each level adds at most
    /// `26 · refine` passes). 0 = off: MONAI's plain strided occlusion.
    pub refine: usize,
}

impl Occlusion {
    /// Patch starts along each axis of an input of `size` voxels: every `stride`, the last one
    /// flush with the far edge. Empty when the settings do not fit `size`.
    pub fn starts(&self, size: [usize; 3]) -> [Vec<usize>; 3] {
        std::array::from_fn(|k| {
            let (n, p, s) = (size[k], self.patch[k], self.stride[k]);
            if p == 0 || s == 0 || p > n {
                return Vec::new();
            }
            let last = n - p;
            let mut starts: Vec<usize> = (0..=last).step_by(s).collect();
            if starts.last() != Some(&last) {
                starts.push(last);
            }
            starts
        })
    }

    /// How many occluded volumes go through the network for an input of `size` voxels, at
    /// most (refinement may find some neighbours already evaluated or outside the input).
    pub fn positions(&self, size: [usize; 3]) -> usize {
        let strided: usize = self.starts(size).iter().map(Vec::len).product();
        strided + self.refine_levels().len() * 26 * self.refine
    }

    /// The strides of the refinement levels: the stride halved (rounding up) until every axis
    /// reaches 1; empty when refinement is off or the stride is already 1.
    pub fn refine_levels(&self) -> Vec<[usize; 3]> {
        let mut levels = Vec::new();
        if self.refine == 0 {
            return levels;
        }
        let mut step = self.stride;
        while step.iter().any(|&s| s > 1) {
            step = step.map(|s| s.div_ceil(2));
            levels.push(step);
        }
        levels
    }

    /// Checks the settings against an input of `size` voxels.
    pub fn check(&self, size: [usize; 3]) -> Result<(), ModelError> {
        for k in 0..3 {
            if self.patch[k] == 0 || self.patch[k] > size[k] {
                return Err(ModelError::Explain(format!(
                    "occlusion patch {:?} must be between 1 and the input size {size:?} on every axis",
                    self.patch
                )));
            }
            if self.stride[k] == 0 {
                return Err(ModelError::Explain(format!(
                    "occlusion stride {:?} must be at least 1 on every axis",
                    self.stride
                )));
            }
        }
        if self.batch == 0 {
            return Err(ModelError::Explain(
                "occlusion batch must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// An occlusion map and the probability it is relative to.
#[derive(Clone, Debug, PartialEq)]
pub struct OcclusionMap {
    /// `p(x) − p(occluded)` averaged over the patches covering each voxel, in the input grid;
    /// positive where hiding the voxel lowers the positive-class probability.
    pub map: Volume,
    /// The positive-class probability of the unoccluded volume.
    pub probability: f32,
}

/// Occlusion sensitivity of `network` (inference mode) for `volume` (the model's input size).
/// `progress(done, total)` is called after every batch.
pub fn occlusion(
    network: &Network,
    volume: &Volume,
    settings: &Occlusion,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<OcclusionMap, ModelError> {
    let size = network.input_size();
    settings.check(size)?;
    let network = network.valid();
    let device = network_device(&network);
    let mut logits = |data: Vec<f32>, batch: usize| -> Result<Vec<f64>, ModelError> {
        let logits = network.forward(batch_tensor(data, batch, size, &device)?);
        Ok(host(logits).into_iter().map(f64::from).collect())
    };
    // The drop is taken from the logits: probabilities rounded to f32 are exactly 1 for every
    // logit above about 17, so a confident model's drops would all be 0 and its map flat.
    let (map, z0) = occlusion_scored(
        volume,
        size,
        settings,
        &mut logits,
        &sigmoid_difference,
        progress,
    )?;
    Ok(OcclusionMap {
        map,
        probability: sigmoid(z0 as f32),
    })
}

/// `σ(a) − σ(b)` without cancellation, for any logits: `sinh((a − b)/2) / (2 cosh(a/2)
/// cosh(b/2))`, evaluated through logarithms so that neither term overflows. Subtracting the
/// two probabilities instead loses every digit once both round to 1 (in f32, logits above
/// about 17; in f64, above about 37).
fn sigmoid_difference(a: f64, b: f64) -> f64 {
    let d = a - b;
    if d == 0.0 {
        return 0.0;
    }
    // ln cosh(x) = |x| + ln(1 + e^{−2|x|}) − ln 2; ln sinh(|d|/2) = |d|/2 + ln(1 − e^{−|d|}) − ln 2.
    let ln_cosh = |x: f64| x.abs() + (-2.0 * x.abs()).exp().ln_1p() - std::f64::consts::LN_2;
    let ln_sinh = 0.5 * d.abs() + (-(-d.abs()).exp_m1()).ln() - std::f64::consts::LN_2;
    let magnitude = (ln_sinh - std::f64::consts::LN_2 - ln_cosh(0.5 * a) - ln_cosh(0.5 * b)).exp();
    magnitude.copysign(d)
}

/// [`occlusion`] with any model: `probabilities(data, n)` gets `n` volumes of `size` voxels,
/// each row-major `[x][y][z]` (`z` fastest, as [`copy_in_input_order`] writes them), and returns
/// their `n` positive-class probabilities. For models that are not a [`Network`], and for the
/// parity test against MONAI.
pub fn occlusion_with(
    volume: &Volume,
    size: [usize; 3],
    settings: &Occlusion,
    probabilities: &mut dyn FnMut(Vec<f32>, usize) -> Result<Vec<f32>, ModelError>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<OcclusionMap, ModelError> {
    let mut scores = |data: Vec<f32>, n: usize| -> Result<Vec<f64>, ModelError> {
        Ok(probabilities(data, n)?.into_iter().map(f64::from).collect())
    };
    let (map, p0) = occlusion_scored(
        volume,
        size,
        settings,
        &mut scores,
        &|p0, p| p0 - p,
        progress,
    )?;
    Ok(OcclusionMap {
        map,
        probability: p0 as f32,
    })
}

/// The occlusion loop: `scores(data, n)` scores `n` volumes (as in [`occlusion_with`]) and
/// `drop(s0, s)` turns the unoccluded and an occluded score into the probability drop. Returns
/// the map and the unoccluded score.
fn occlusion_scored(
    volume: &Volume,
    size: [usize; 3],
    settings: &Occlusion,
    scores: &mut dyn FnMut(Vec<f32>, usize) -> Result<Vec<f64>, ModelError>,
    drop: &dyn Fn(f64, f64) -> f64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Volume, f64), ModelError> {
    settings.check(size)?;
    let voxels: usize = size.iter().product();
    let mut original = vec![0.0; voxels];
    copy_in_input_order(volume, size, &mut original)?;
    let s0 = scores(original.clone(), 1)?[0];
    let [xs, ys, zs] = settings.starts(size);
    let mut corners = Vec::with_capacity(xs.len() * ys.len() * zs.len());
    for &x in &xs {
        for &y in &ys {
            corners.extend(zs.iter().map(|&z| [x, y, z]));
        }
    }
    let [_, ny, nz] = size;
    let [px, py, pz] = settings.patch;
    // Per patch voxel (row-major [x][y][z]): the factor it is multiplied by and the term added,
    // and its weight in the blend.
    let (scale, add, weight) = match settings.fill {
        OcclusionFill::Gaussian => (
            gaussian_occluder(settings.patch),
            0.0,
            gaussian_blend_weights(settings.patch),
        ),
        OcclusionFill::MeanImage => {
            let mean = original.iter().map(|&v| f64::from(v)).sum::<f64>() / voxels as f64;
            (
                vec![0.0; px * py * pz],
                mean as f32,
                vec![1.0; px * py * pz],
            )
        }
    };
    let mut sum = vec![0f64; voxels];
    let mut weights = vec![0f64; voxels];
    let mut done = 0;
    let total = settings.positions(size);
    // Every patch evaluated so far, with its drop (refinement picks the largest).
    let mut evaluated: Vec<([usize; 3], f64)> = Vec::with_capacity(total);
    let mut pending = corners;
    let mut levels = settings.refine_levels().into_iter();
    loop {
        for chunk in pending.chunks(settings.batch) {
            let mut data = Vec::with_capacity(voxels * chunk.len());
            for &corner in chunk {
                let start = data.len();
                data.extend_from_slice(&original);
                let occluded = &mut data[start..];
                for (row, offset) in patch_rows(corner, settings.patch, size) {
                    let factors = &scale[offset..][..pz];
                    for (v, &f) in occluded[row..row + pz].iter_mut().zip(factors) {
                        *v = *v * f + add;
                    }
                }
            }
            let occluded = scores(data, chunk.len())?;
            for (&corner, s) in chunk.iter().zip(occluded) {
                let drop = drop(s0, s);
                evaluated.push((corner, drop));
                for (row, offset) in patch_rows(corner, settings.patch, size) {
                    for (i, &w) in (row..row + pz).zip(&weight[offset..][..pz]) {
                        sum[i] += drop * w;
                        weights[i] += w;
                    }
                }
            }
            done += chunk.len();
            progress(done, total);
        }
        let Some(step) = levels.next() else { break };
        pending = refinement(&evaluated, settings.refine, step, size, settings.patch);
    }
    if done < total {
        progress(done, done);
    }
    let map = Volume::from_fn(size, |x, y, z| {
        let i = (x * ny + y) * nz + z;
        if weights[i] > 0.0 {
            (sum[i] / weights[i]) as f32
        } else {
            0.0
        }
    });
    Ok((map, s0))
}

/// The `x`-`y` rows of the patch of `patch` voxels starting at `corner` in an input of `size`:
/// each row's first index in the input (row-major `[x][y][z]`) and in the patch; a row is
/// `patch[2]` voxels long.
fn patch_rows(
    [x0, y0, z0]: [usize; 3],
    [px, py, pz]: [usize; 3],
    [_, ny, nz]: [usize; 3],
) -> impl Iterator<Item = (usize, usize)> {
    (0..px).flat_map(move |x| {
        (0..py).map(move |y| (((x0 + x) * ny + y0 + y) * nz + z0, (x * py + y) * pz))
    })
}

/// The patch starts refinement evaluates next: the neighbours `±step` (and 0) on each axis of
/// the `top` patches with the largest drops in `evaluated`, clamped to the input, without the
/// ones already evaluated, in a fixed order (so a map is reproducible).
fn refinement(
    evaluated: &[([usize; 3], f64)],
    top: usize,
    step: [usize; 3],
    size: [usize; 3],
    patch: [usize; 3],
) -> Vec<[usize; 3]> {
    let mut ranked: Vec<&([usize; 3], f64)> = evaluated.iter().collect();
    // Largest drop first; ties keep the earlier patch (stable sort).
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut seen: std::collections::HashSet<[usize; 3]> = evaluated.iter().map(|e| e.0).collect();
    let mut next: Vec<[usize; 3]> = Vec::new();
    for &&(corner, _) in ranked.iter().take(top) {
        let along = |k: usize| -> Vec<usize> {
            let last = size[k] - patch[k];
            let c = corner[k];
            let mut v = vec![c.saturating_sub(step[k]), c, (c + step[k]).min(last)];
            v.dedup();
            v
        };
        let (xs, ys, zs) = (along(0), along(1), along(2));
        for &x in &xs {
            for &y in &ys {
                for &z in &zs {
                    if seen.insert([x, y, z]) {
                        next.push([x, y, z]);
                    }
                }
            }
        }
    }
    next
}

/// MONAI's erf-discretised Gaussian (`gaussian_1d(..., approx="erf")`): the mass of a unit
/// Gaussian of standard deviation `sigma` over the unit bin centred on each of `offsets`.
fn erf_gaussian(sigma: f64, offsets: impl Iterator<Item = f64>) -> Vec<f64> {
    let t = std::f64::consts::FRAC_1_SQRT_2 / sigma;
    offsets
        .map(|d| (0.5 * (libm::erf(t * (d + 0.5)) - libm::erf(t * (d - 0.5)))).max(0.0))
        .collect()
}

/// The factor each voxel of a `patch` is multiplied by in [`OcclusionFill::Gaussian`]
/// (row-major `[x][y][z]`): `(G_max − G) / (G_max − G_min)` for the separable Gaussian `G`
/// (σ = patch / 4, centre voxel `patch / 2`, MONAI's `gaussian_occlusion`), or all 0 when `G`
/// is flat (a 1×1×1 patch).
fn gaussian_occluder(patch: [usize; 3]) -> Vec<f32> {
    let axes = patch.map(|n| {
        let centre = (n / 2) as f64;
        erf_gaussian(0.25 * n as f64, (0..n).map(|i| i as f64 - centre))
    });
    let g = outer(&axes);
    let (max, min) = g
        .iter()
        .fold((f64::MIN, f64::MAX), |(hi, lo), &v| (hi.max(v), lo.min(v)));
    if max <= min {
        return vec![0.0; g.len()];
    }
    g.iter()
        .map(|&v| ((max - v) / (max - min)) as f32)
        .collect()
}

/// The blend weight of each voxel of a `patch` in [`OcclusionFill::Gaussian`] (row-major
/// `[x][y][z]`): MONAI's sliding-window importance map, a sampled Gaussian of σ = patch / 8
/// centred on the patch's middle, `exp(−d² / 2σ²)` per axis, floored at 1e-3.
fn gaussian_blend_weights(patch: [usize; 3]) -> Vec<f64> {
    let axes = patch.map(|n| {
        let (sigma, centre) = (0.125 * n as f64, (n as f64 - 1.0) / 2.0);
        (0..n)
            .map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp())
            .collect::<Vec<f64>>()
    });
    outer(&axes).into_iter().map(|w| w.max(1e-3)).collect()
}

/// The separable product `a[x] · b[y] · c[z]`, row-major `[x][y][z]`.
fn outer([a, b, c]: &[Vec<f64>; 3]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() * b.len() * c.len());
    for &u in a {
        for &v in b {
            out.extend(c.iter().map(|&w| u * v * w));
        }
    }
    out
}

fn sigmoid(z: f32) -> f32 {
    (1.0 / (1.0 + (-f64::from(z)).exp())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occlusion_starts_cover_every_voxel_and_end_flush() {
        let o = Occlusion {
            patch: [4, 4, 2],
            stride: [3, 4, 2],
            batch: 2,
            fill: OcclusionFill::MeanImage,
            refine: 0,
        };
        let [xs, ys, zs] = o.starts([10, 8, 4]);
        assert_eq!(xs, vec![0, 3, 6]);
        assert_eq!(ys, vec![0, 4]);
        assert_eq!(zs, vec![0, 2]);
        assert_eq!(o.positions([10, 8, 4]), 12);
        assert!(o.check([10, 8, 4]).is_ok());
        assert!(o.check([3, 8, 4]).is_err());
        let zero = Occlusion {
            stride: [0, 1, 1],
            ..o
        };
        assert!(zero.check([10, 8, 4]).is_err());
    }

    #[test]
    fn refinement_finds_the_one_voxel_that_matters_with_few_passes() {
        // A "model" whose probability is one voxel's value: hiding it is all that matters, and
        // the patch that hides it most is the one centred on it (start = voxel − patch / 2).
        let size = [24, 24, 24];
        let target = [13, 9, 17];
        let volume = Volume::filled(size, 1.0);
        let index = (target[0] * size[1] + target[1]) * size[2] + target[2];
        let settings = Occlusion {
            patch: [6, 6, 6],
            stride: [6, 6, 6],
            batch: 4,
            fill: OcclusionFill::Gaussian,
            refine: 2,
        };
        assert_eq!(settings.refine_levels(), vec![[3; 3], [2; 3], [1; 3]]);
        let peak = |settings: &Occlusion| {
            let mut passes = 0;
            let mut score = |data: Vec<f32>, n: usize| -> Result<Vec<f32>, ModelError> {
                passes += n;
                let voxels: usize = size.iter().product();
                Ok((0..n).map(|b| data[b * voxels + index]).collect())
            };
            let map = occlusion_with(&volume, size, settings, &mut score, &mut |_, _| {})
                .unwrap()
                .map;
            let (mut best, mut at) = (f32::NEG_INFINITY, [0; 3]);
            for x in 0..size[0] {
                for y in 0..size[1] {
                    for z in 0..size[2] {
                        if map.get(x, y, z) > best {
                            (best, at) = (map.get(x, y, z), [x, y, z]);
                        }
                    }
                }
            }
            (at, passes - 1)
        };
        let (coarse, coarse_passes) = peak(&Occlusion {
            refine: 0,
            ..settings
        });
        let (fine, passes) = peak(&settings);
        assert_eq!(coarse_passes, 64);
        assert!(passes <= settings.positions(size), "{passes} passes");
        // A dense pass every voxel would take 19³ = 6,859.
        assert!(passes < 64 + 3 * 26 * 2 + 1, "{passes} passes");
        let off = |p: [usize; 3]| (0..3).map(|k| p[k].abs_diff(target[k])).max().unwrap();
        assert!(
            off(coarse) >= 2,
            "the strided map already peaks at {coarse:?}"
        );
        assert!(off(fine) <= 1, "refined peak {fine:?}, target {target:?}");
    }

    #[test]
    fn probability_drops_keep_their_digits_when_both_probabilities_round_to_one() {
        let naive = |a: f64, b: f64| sigmoid(a as f32) - sigmoid(b as f32);
        // Moderate logits: the same as subtracting the probabilities.
        for (a, b) in [(0.3f64, -1.2f64), (2.0, 2.5), (-4.0, -7.0), (1.0, 1.0)] {
            let exact = 1.0 / (1.0 + (-a).exp()) - 1.0 / (1.0 + (-b).exp());
            assert!((sigmoid_difference(a, b) - exact).abs() < 1e-15, "{a} {b}");
        }
        // Logits 20 and 25: both probabilities are 1.0 in f32, but σ(20) − σ(25) is
        // e^−25 − e^−20 to first order.
        assert_eq!(naive(20.0, 25.0), 0.0);
        let expected = (-25f64).exp() - (-20f64).exp();
        let got = sigmoid_difference(20.0, 25.0);
        assert!((got / expected - 1.0).abs() < 1e-6, "{got} vs {expected}");
        // Far past f64's range of 1 − p: still finite, signed and ordered.
        let (small, large) = (
            sigmoid_difference(400.0, 300.0),
            sigmoid_difference(400.0, 200.0),
        );
        assert!(small > 0.0 && large > small && large.is_finite());
        assert!((sigmoid_difference(-300.0, 400.0) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn block_maps_land_on_their_receptive_field_centres() {
        // Two block voxels at input 2.5 and 6.5 (stride 4, offset 2.5) on an 8-voxel axis.
        let map = Volume::from_fn([2, 1, 1], |x, _, _| if x == 0 { 0.0 } else { 4.0 });
        let placed = place_on_input(&map, [8, 1, 1], 4.0, 2.5);
        let values: Vec<f32> = (0..8).map(|x| placed.get(x, 0, 0)).collect();
        assert_eq!(values, [0.0, 0.0, 0.0, 0.5, 1.5, 2.5, 3.5, 4.0]);
    }

    #[test]
    fn grad_cam_weights_are_mean_gradients_and_the_map_is_rectified() {
        // Two channels of a 1×1×2 block: weights (1 + 3)/2 = 2 and (−1 − 1)/2 = −1.
        let a = [1.0, 2.0, 4.0, 1.0];
        let g = [1.0, 3.0, -1.0, -1.0];
        let (map, weights) = combine(&a, &g, 2, [1, 1, 2], GradMethod::GradCam);
        assert_eq!(weights, vec![2.0, -1.0]);
        // voxel 0: 2·1 − 4 = −2 → 0; voxel 1: 2·2 − 1 = 3.
        assert_eq!(map.data(), &[0.0, 3.0]);
    }
}
