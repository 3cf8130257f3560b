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
//!   of the volume is replaced by the volume's mean, the drop of the positive-class probability
//!   `p(x) − p(occluded)` is credited to every voxel of the patch, and each voxel's value is the
//!   mean over the patches that covered it. Patches start every `stride` voxels (the last one
//!   flush with the far edge, so every voxel is covered) and run through the network in batches.
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

/// Occlusion settings, in voxels of the model's input grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occlusion {
    /// Patch size `[x, y, z]`, each ≥ 1 and at most the input size.
    pub patch: [usize; 3],
    /// Distance between patch starts `[x, y, z]`, each ≥ 1.
    pub stride: [usize; 3],
    /// Occluded volumes per forward pass.
    pub batch: usize,
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

    /// How many occluded volumes go through the network for an input of `size` voxels.
    pub fn positions(&self, size: [usize; 3]) -> usize {
        self.starts(size).iter().map(Vec::len).product()
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
    let voxels: usize = size.iter().product();
    let mut original = vec![0.0; voxels];
    copy_in_input_order(volume, size, &mut original)?;
    let fill = (original.iter().map(|&v| f64::from(v)).sum::<f64>() / voxels as f64) as f32;
    let probabilities = |data: Vec<f32>, batch: usize| -> Result<Vec<f32>, ModelError> {
        let logits = network.forward(batch_tensor(data, batch, size, &device)?);
        Ok(host(logits).into_iter().map(sigmoid).collect())
    };
    let p0 = probabilities(original.clone(), 1)?[0];
    let [xs, ys, zs] = settings.starts(size);
    let mut corners = Vec::with_capacity(xs.len() * ys.len() * zs.len());
    for &x in &xs {
        for &y in &ys {
            corners.extend(zs.iter().map(|&z| [x, y, z]));
        }
    }
    let total = corners.len();
    let [_, ny, nz] = size;
    let [px, py, pz] = settings.patch;
    let mut sum = vec![0f64; voxels];
    let mut count = vec![0u32; voxels];
    let mut done = 0;
    for chunk in corners.chunks(settings.batch) {
        let mut data = Vec::with_capacity(voxels * chunk.len());
        for &[x0, y0, z0] in chunk {
            let start = data.len();
            data.extend_from_slice(&original);
            let occluded = &mut data[start..];
            for x in x0..x0 + px {
                for y in y0..y0 + py {
                    let row = (x * ny + y) * nz;
                    occluded[row + z0..row + z0 + pz].fill(fill);
                }
            }
        }
        let drops = probabilities(data, chunk.len())?;
        for (&[x0, y0, z0], p) in chunk.iter().zip(drops) {
            let drop = f64::from(p0 - p);
            for x in x0..x0 + px {
                for y in y0..y0 + py {
                    let row = (x * ny + y) * nz;
                    for i in row + z0..row + z0 + pz {
                        sum[i] += drop;
                        count[i] += 1;
                    }
                }
            }
        }
        done += chunk.len();
        progress(done, total);
    }
    let map = Volume::from_fn(size, |x, y, z| {
        let i = (x * ny + y) * nz + z;
        if count[i] > 0 {
            (sum[i] / f64::from(count[i])) as f32
        } else {
            0.0
        }
    });
    Ok(OcclusionMap {
        map,
        probability: p0,
    })
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
