//! Where the model looked: `ct3d explain`'s maps for one scan at a time, placed back on the
//! scan's own voxel grid.
//!
//! A scan is read and preprocessed with the run's recorded parameters, the map is computed on
//! the model's input grid ([`ct3d_model::explain`]: Grad-CAM, Grad-CAM++ or occlusion), and
//! [`ct3d_volume::preprocess::to_scan_grid`] undoes the zoom and the quarter turn so that the map
//! has the raw scan's shape and affine: written as a float32 NIfTI it overlays the original in
//! 3D Slicer, ITK-SNAP or niivue. The peak is reported in voxels of the scan and in scanner
//! millimetres (the scan's affine).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ct3d_model::Classifier;
use ct3d_model::explain::{GradExplainer, GradMethod, Occlusion, OcclusionFill, Target, occlusion};
use ct3d_volume::Volume;
use ct3d_volume::nifti::{OutputDtype, write_volume_described};
use ct3d_volume::preprocess::{PreprocessError, process_volume, read_raw_scan, to_scan_grid};
use serde::Serialize;

use crate::error::TrainError;
use crate::inference::LoadedRun;

/// Which map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Grad-CAM on a convolution block.
    GradCam,
    /// Grad-CAM++ on a convolution block.
    GradCamPlusPlus,
    /// Occlusion sensitivity with these settings (model-grid voxels).
    Occlusion(Occlusion),
}

impl Method {
    /// The name used in file names and JSON (`gradcam`, `gradcam++`, `occlusion`).
    pub fn name(&self) -> &'static str {
        match self {
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
            Method::Occlusion(_) => "occlusion",
        }
    }
}

/// Occlusion's default for an input of `size` voxels: patches of a quarter of each axis (at
/// least 1), stride equal to the patch (no overlap), 8 occluded volumes per forward pass, MONAI's
/// Gaussian fill, no coarse-to-fine refinement. For the seed's 128×128×64 that is 64 forward
/// passes.
pub fn default_occlusion(size: [usize; 3]) -> Occlusion {
    let patch = size.map(|n| (n / 4).max(1));
    Occlusion {
        patch,
        stride: patch,
        batch: 8,
        fill: OcclusionFill::Gaussian,
        refine: 0,
    }
}

/// What to explain and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainSettings {
    /// The map.
    pub method: Method,
    /// The block for Grad-CAM (a name of [`Classifier::layer_names`]); `None` = the last.
    pub layer: Option<String>,
    /// Whose evidence a gradient map shows (occlusion always shows the positive class's
    /// probability drop).
    pub target: Target,
}

impl Default for ExplainSettings {
    /// Grad-CAM on the last block, for the positive class.
    fn default() -> Self {
        Self {
            method: Method::GradCam,
            layer: None,
            target: Target::Positive,
        }
    }
}

/// Why an explanation could not be made. One line.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The layer name is not one of the network's blocks.
    #[error("unknown layer {layer:?}; this network's blocks are: {}", known.join(", "))]
    UnknownLayer {
        /// The name given.
        layer: String,
        /// The valid names, input side first.
        known: Vec<String>,
    },
    /// Reading, preprocessing or running the model failed (the message names the scan).
    #[error(transparent)]
    Run(#[from] TrainError),
    /// An output file could not be written.
    #[error("{}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<ct3d_model::ModelError> for ExplainError {
    fn from(e: ct3d_model::ModelError) -> Self {
        ExplainError::Run(TrainError::Model(e))
    }
}

/// One scan's explanation.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The scan.
    pub scan: PathBuf,
    /// The positive-class probability.
    pub probability: f32,
    /// The method's name ([`Method::name`]).
    pub method: &'static str,
    /// The block a gradient map was computed on.
    pub layer: Option<String>,
    /// The preprocessed scan (the model's input grid, with its geometry).
    pub preprocessed: Volume,
    /// The map on the model's input grid (same shape and geometry as `preprocessed`).
    pub model_map: Volume,
    /// The map on the raw scan's grid (its shape, spacing and affine).
    pub scan_map: Volume,
    /// Where `scan_map` is largest, in scan voxels `[i, j, k]`.
    pub peak_voxel: [usize; 3],
    /// The same place in scanner coordinates (the scan's affine), millimetres.
    pub peak_mm: [f64; 3],
}

/// Makes explanations with one run; build once, explain many scans.
pub struct Explainer<'a> {
    run: &'a LoadedRun,
    settings: ExplainSettings,
    grad: Option<GradExplainer>,
    layer: usize,
    layer_names: Vec<String>,
}

impl<'a> Explainer<'a> {
    /// Checks `settings` against the run's network (the layer name, the occlusion patch).
    pub fn new(run: &'a LoadedRun, settings: ExplainSettings) -> Result<Self, ExplainError> {
        let layer_names = run.model.layer_names();
        let layer = match &settings.layer {
            None => layer_names.len() - 1,
            Some(name) => layer_names.iter().position(|n| n == name).ok_or_else(|| {
                ExplainError::UnknownLayer {
                    layer: name.clone(),
                    known: layer_names.clone(),
                }
            })?,
        };
        let grad = match settings.method {
            Method::Occlusion(o) => {
                o.check(run.model.input_size())?;
                None
            }
            _ => Some(GradExplainer::new(&run.model)),
        };
        Ok(Self {
            run,
            settings,
            grad,
            layer,
            layer_names,
        })
    }

    /// The block a gradient map uses (`None` for occlusion).
    pub fn layer_name(&self) -> Option<&str> {
        self.grad
            .as_ref()
            .map(|_| self.layer_names[self.layer].as_str())
    }

    /// The settings.
    pub fn settings(&self) -> &ExplainSettings {
        &self.settings
    }

    /// Forward passes per scan: 1 for a gradient map (plus one backward pass), 1 + the number of
    /// occluded volumes for occlusion.
    pub fn forward_passes(&self) -> usize {
        match self.settings.method {
            Method::Occlusion(o) => 1 + o.positions(self.run.model.input_size()),
            _ => 1,
        }
    }

    /// Estimated time per scan, from timing one forward pass of an occlusion batch (a gradient
    /// map costs about one forward and one backward pass).
    pub fn estimate_per_scan(&self) -> Result<Duration, ExplainError> {
        let size = self.run.model.input_size();
        let batch = match self.settings.method {
            Method::Occlusion(o) => o.batch.min(o.positions(size)).max(1),
            _ => 1,
        };
        let voxels: usize = size.iter().product();
        let input = ct3d_model::input::batch_tensor(
            vec![0.5; voxels * batch],
            batch,
            size,
            &self.run.device,
        )?;
        let started = Instant::now();
        ct3d_model::predict_proba(&self.run.model, input)?;
        let per_batch = started.elapsed();
        Ok(match self.settings.method {
            Method::Occlusion(o) => {
                let batches = o.positions(size).div_ceil(o.batch.max(1));
                per_batch * (batches as u32 + 1)
            }
            _ => per_batch * 3,
        })
    }

    /// Explains one raw scan (NIfTI file or DICOM series folder). `progress(done, total)` follows
    /// occlusion's batches.
    pub fn explain(
        &self,
        scan: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Explanation, ExplainError> {
        let config = &self.run.config.train.preprocess;
        let raw = read_raw_scan(scan, None).map_err(preprocess_error)?;
        // The raw volume carries its file in its provenance, so an error here names it.
        let preprocessed = process_volume(&raw, config).map_err(TrainError::Preprocess)?;
        let (mut model_map, probability) = match (&self.grad, self.settings.method) {
            (Some(grad), method) => {
                let method = match method {
                    Method::GradCamPlusPlus => GradMethod::GradCamPlusPlus,
                    _ => GradMethod::GradCam,
                };
                let (map, layer_map) =
                    grad.input_map(&preprocessed, self.layer, method, self.settings.target)?;
                progress(1, 1);
                (map, sigmoid(layer_map.logit))
            }
            (None, Method::Occlusion(settings)) => {
                let result = occlusion(&self.run.model, &preprocessed, &settings, progress)?;
                (result.map, result.probability)
            }
            (None, _) => unreachable!("gradient methods always build a GradExplainer"),
        };
        model_map.spacing = preprocessed.spacing;
        model_map.affine = preprocessed.affine;
        let scan_map = to_scan_grid(&model_map, &raw);
        let peak_voxel = argmax(&scan_map);
        let peak_mm = voxel_to_mm(&raw.affine, peak_voxel);
        Ok(Explanation {
            scan: scan.to_owned(),
            probability,
            method: self.settings.method.name(),
            layer: self.layer_name().map(str::to_owned),
            preprocessed,
            model_map,
            scan_map,
            peak_voxel,
            peak_mm,
        })
    }
}

fn preprocess_error(e: PreprocessError) -> TrainError {
    match e {
        PreprocessError::AlreadyPreprocessed { path, reason } => {
            TrainError::AlreadyPreprocessed { path, reason }
        }
        other => TrainError::Preprocess(other),
    }
}

fn sigmoid(z: f32) -> f32 {
    (1.0 / (1.0 + (-f64::from(z)).exp())) as f32
}

/// The voxel holding the largest finite value. Where several hold it (a flat-topped map:
/// occlusion with equal weights credits one drop to a whole patch), the one nearest their
/// centroid, so that the peak is the middle of the plateau rather than its first corner (the
/// first in `x`-fastest order among equally near ones).
pub fn argmax(volume: &Volume) -> [usize; 3] {
    let [nx, ny, _] = volume.shape();
    let position = |i: usize| [i % nx, (i / nx) % ny, i / (nx * ny)];
    let max = volume
        .data()
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let tops: Vec<[usize; 3]> = volume
        .data()
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v == max)
        .map(|(i, _)| position(i))
        .collect();
    if tops.len() <= 1 {
        return tops.first().copied().unwrap_or([0, 0, 0]);
    }
    let centroid: [f64; 3] =
        std::array::from_fn(|a| tops.iter().map(|t| t[a] as f64).sum::<f64>() / tops.len() as f64);
    let distance =
        |t: &[usize; 3]| -> f64 { (0..3).map(|a| (t[a] as f64 - centroid[a]).powi(2)).sum() };
    tops.iter()
        .copied()
        .fold((tops[0], f64::INFINITY), |(best, bd), t| {
            let d = distance(&t);
            if d < bd { (t, d) } else { (best, bd) }
        })
        .0
}

/// Scanner coordinates (mm) of voxel `v` under `affine`.
fn voxel_to_mm(affine: &ct3d_volume::volume::Affine, v: [usize; 3]) -> [f64; 3] {
    std::array::from_fn(|row| {
        (0..3).map(|c| affine[row][c] * v[c] as f64).sum::<f64>() + affine[row][3]
    })
}

/// The files written for one scan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplanationFiles {
    /// The map on the scan's grid, float32 NIfTI (`<scan>_<method>.nii.gz`).
    pub map: PathBuf,
    /// The montage with the map overlaid (`<scan>_<method>.png`).
    pub png: PathBuf,
}

/// One line of `explanations.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplanationRecord {
    /// The scan.
    pub scan: PathBuf,
    /// Positive-class probability.
    pub probability: f32,
    /// The predicted class's name (at 0.5).
    pub class: String,
    /// `gradcam`, `gradcam++` or `occlusion`.
    pub method: String,
    /// The block of a gradient map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// `positive` or `negative` (gradient maps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The map's peak in scan voxels `[i, j, k]`.
    pub peak_voxel: [usize; 3],
    /// The map's peak in scanner coordinates, mm.
    pub peak_mm: [f64; 3],
    /// The files written.
    #[serde(flatten)]
    pub files: ExplanationFiles,
}

/// The name a scan's outputs start with: its file name without `.nii`/`.nii.gz`, or a DICOM
/// folder's name.
pub fn output_stem(scan: &Path) -> String {
    let name = scan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scan".to_owned());
    let lower = name.to_ascii_lowercase();
    for suffix in [".nii.gz", ".nii"] {
        if lower.ends_with(suffix) {
            return name[..name.len() - suffix.len()].to_owned();
        }
    }
    name
}

/// Output names for `scans`, in order: each scan's [`output_stem`]; where two scans share one
/// (`CT-0/phantom_0000.nii.gz` and `CT-23/phantom_0000.nii.gz`), each of them is prefixed with its
/// folder's name (`CT-0_phantom_0000`), and a name still taken gets `_2`, `_3`, ….
pub fn output_stems(scans: &[PathBuf]) -> Vec<String> {
    let plain: Vec<String> = scans.iter().map(|s| output_stem(s)).collect();
    let mut used = std::collections::HashSet::new();
    plain
        .iter()
        .zip(scans)
        .map(|(stem, scan)| {
            let shared = plain.iter().filter(|s| *s == stem).count() > 1;
            let mut name = match scan.parent().and_then(Path::file_name) {
                Some(folder) if shared => format!("{}_{stem}", folder.to_string_lossy()),
                _ => stem.clone(),
            };
            let base = name.clone();
            let mut n = 1;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{base}_{n}");
            }
            name
        })
        .collect()
}

/// Writes `explanation`'s NIfTI map and overlay montage into `out` (atomically) and returns
/// the record for `explanations.jsonl`; the files are `<stem>_<method>.nii.gz` and `.png`
/// (`stem` from [`output_stems`]). The montage shows the preprocessed scan with the model-grid
/// map (the seed's `plot_slices` layout: 4 × 10 slices, or fewer for a shallower input).
pub fn write_explanation(
    out: &Path,
    stem: &str,
    explanation: &Explanation,
    run: &LoadedRun,
    target: Target,
) -> Result<ExplanationRecord, ExplainError> {
    let tag = match explanation.method {
        "gradcam++" => "gradcampp",
        other => other,
    };
    let map = out.join(format!("{stem}_{tag}.nii.gz"));
    let description = format!("ct3d explain {}", explanation.method);
    write_volume_described(&map, &explanation.scan_map, OutputDtype::F32, &description).map_err(
        |e| ExplainError::Write {
            path: map.clone(),
            reason: e.to_string(),
        },
    )?;
    let png = out.join(format!("{stem}_{tag}.png"));
    let depth = explanation.preprocessed.shape()[2];
    let layout = overlay_layout(depth);
    let picture = ct3d_plot::overlay::overlay_montage_png(
        &explanation.preprocessed,
        &explanation.model_map,
        layout,
        2,
        0.5,
    )
    .map_err(|e| ExplainError::Write {
        path: png.clone(),
        reason: e.to_string(),
    })?;
    ct3d_volume::atomic::write_bytes_atomic(&png, &picture.bytes).map_err(|e| {
        ExplainError::Write {
            path: png.clone(),
            reason: e.to_string(),
        }
    })?;
    let classes = &run.config.train.classes;
    let class = if explanation.probability > 0.5 {
        &classes.positive_name
    } else {
        &classes.negative_name
    };
    let gradient = explanation.layer.is_some();
    Ok(ExplanationRecord {
        scan: explanation.scan.clone(),
        probability: explanation.probability,
        class: class.clone(),
        method: explanation.method.to_owned(),
        layer: explanation.layer.clone(),
        target: gradient.then(|| {
            match target {
                Target::Positive => "positive",
                Target::Negative => "negative",
            }
            .to_owned()
        }),
        peak_voxel: explanation.peak_voxel,
        peak_mm: explanation.peak_mm,
        files: ExplanationFiles { map, png },
    })
}

/// The seed's 4 × 10 montage from slice 0 when the input is deep enough, else as many rows of
/// 10 (or one row of all slices) as fit.
pub fn overlay_layout(depth: usize) -> ct3d_plot::slices::MontageLayout {
    let cols = depth.clamp(1, 10);
    let rows = (depth / cols).clamp(1, 4);
    ct3d_plot::slices::MontageLayout {
        rows,
        cols,
        first: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_of_a_plateau_is_its_middle() {
        // A single largest voxel wins wherever it is.
        let mut single = Volume::filled([6, 5, 4], 1.0);
        let i = single.index(4, 1, 2);
        single.data_mut()[i] = 2.0;
        assert_eq!(argmax(&single), [4, 1, 2]);
        // A flat 3×3×3 top at x 1‥3, y 2‥4, z 0‥2: its middle, not its first corner.
        let plateau = Volume::from_fn([6, 5, 4], |x, y, z| {
            if (1..=3).contains(&x) && (2..=4).contains(&y) && z <= 2 {
                5.0
            } else {
                (x + y + z) as f32 * 0.1
            }
        });
        assert_eq!(argmax(&plateau), [2, 3, 1]);
        // NaN is skipped; an all-NaN map gives the origin.
        let mut nan = single.clone();
        nan.data_mut()[0] = f32::NAN;
        assert_eq!(argmax(&nan), [4, 1, 2]);
        assert_eq!(argmax(&Volume::filled([2, 2, 2], f32::NAN)), [0, 0, 0]);
    }

    #[test]
    fn stems_drop_nifti_extensions_only() {
        assert_eq!(
            output_stem(Path::new("a/phantom_0003.nii.gz")),
            "phantom_0003"
        );
        assert_eq!(output_stem(Path::new("a/b.NII")), "b");
        assert_eq!(output_stem(Path::new("a/series_1")), "series_1");
    }

    #[test]
    fn shared_stems_get_their_folder() {
        let scans: Vec<PathBuf> = [
            "d/CT-0/p.nii.gz",
            "d/CT-23/p.nii.gz",
            "d/CT-23/q.nii",
            "e/CT-0/p.nii",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(output_stems(&scans), ["CT-0_p", "CT-23_p", "q", "CT-0_p_2"]);
    }

    #[test]
    fn argmax_and_millimetres() {
        let mut v = Volume::filled([3, 4, 5], 0.0);
        let i = v.index(2, 1, 3);
        v.data_mut()[i] = 7.0;
        assert_eq!(argmax(&v), [2, 1, 3]);
        let affine = [
            [-0.5, 0.0, 0.0, 10.0],
            [0.0, 0.5, 0.0, -20.0],
            [0.0, 0.0, 2.0, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(voxel_to_mm(&affine, [2, 1, 3]), [9.0, -19.5, 11.0]);
    }

    #[test]
    fn montage_layouts_fit_the_depth() {
        let l = overlay_layout(64);
        assert_eq!((l.rows, l.cols), (4, 10));
        let l = overlay_layout(25);
        assert_eq!((l.rows, l.cols), (2, 10));
        let l = overlay_layout(6);
        assert_eq!((l.rows, l.cols), (1, 6));
    }

    #[test]
    fn default_occlusion_is_a_quarter_without_overlap() {
        let o = default_occlusion([128, 128, 64]);
        assert_eq!(o.patch, [32, 32, 16]);
        assert_eq!(o.positions([128, 128, 64]), 64);
    }
}
