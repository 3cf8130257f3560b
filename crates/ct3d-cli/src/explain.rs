//! `ct3d explain`: its flags, converted to `ct3d::explain`'s settings, and the loop over scans
//! with a progress bar, one JSON line per scan and the usual one-line errors.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use ct3d::evaluate;
use ct3d::explain::{
    ExplainSettings, Explainer, Method, default_occlusion, output_stems, write_explanation,
};
use ct3d_model::Classifier;
use ct3d_model::explain::{Occlusion, OcclusionFill, Target};

use crate::args::{DeviceArgs, WeightsArg, parse_size};

/// The flags of `ct3d explain` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The run folder written by `ct3d train`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Raw scans (NIfTI, NRRD or MetaImage files, or DICOM series folders) or folders of them.
    #[arg(required = true, value_name = "SCAN_OR_DIR")]
    scans: Vec<PathBuf>,
    /// Output folder (created if needed): per scan `<name>_<method>.nii.gz` (the map on the
    /// scan's own grid and affine, float32) and `<name>_<method>.png` (the montage with the map
    /// overlaid), and one line per scan in explanations.jsonl.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Grad-CAM and Grad-CAM++ weight a block's channels by the gradient of the score;
    /// occlusion hides patches of the scan and records how much the probability drops
    /// (model-agnostic, slower: one forward pass per patch).
    #[arg(long, value_enum, default_value_t = MethodArg::Gradcam)]
    method: MethodArg,
    /// The block a gradient map looks at (default: the last; seed CNN: block1 … block4,
    /// ResNet: stem, layer1 … layer4). Earlier blocks give finer, less class-specific maps.
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Whose evidence a gradient map shows: the positive class (e.g. abnormal) or the negative.
    #[arg(long, value_enum, default_value_t = TargetArg::Positive)]
    target: TargetArg,
    /// Occlusion patch size in model-input voxels as X,Y,Z (default: a quarter of each axis).
    #[arg(long, value_name = "X,Y,Z", value_parser = parse_size)]
    patch: Option<[usize; 3]>,
    /// Distance between occlusion patches as X,Y,Z (default: the patch size, no overlap;
    /// half of it gives a smoother map at 8× the cost).
    #[arg(long, value_name = "X,Y,Z", value_parser = parse_size)]
    stride: Option<[usize; 3]>,
    /// What hides an occlusion patch: `gaussian` (MONAI's default) fades it to the bottom of the
    /// intensity window (air) under a Gaussian and blends overlapping patches with Gaussian
    /// weights; `mean` replaces it by the scan's mean, every patch counting the same
    /// [default: gaussian].
    #[arg(long, value_enum)]
    fill: Option<FillArg>,
    /// Occlusion's coarse-to-fine refinement: the N patches whose hiding lowered the
    /// probability most are examined again with their neighbours at half the stride, then a
    /// quarter, down to 1 voxel, so the map's peak is placed to the voxel at a fraction of a
    /// dense pass's cost (at most 26·N passes a level). 0 = MONAI's plain strided map.
    #[arg(long, value_name = "N")]
    refine: Option<usize>,
    /// Occluded volumes per forward pass.
    #[arg(long, value_name = "N", default_value_t = 8)]
    batch: usize,
    /// Refuse to start when the time estimate (printed first) is above this many minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 30.0)]
    max_minutes: f64,
    /// Run even when the estimate is above --max-minutes.
    #[arg(long)]
    yes: bool,
    /// Which weights.
    #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
    weights: WeightsArg,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Grad-CAM (Selvaraju et al. 2017).
    Gradcam,
    /// Grad-CAM++ (Chattopadhyay et al. 2018).
    #[value(name = "gradcam++")]
    GradcamPlusPlus,
    /// Occlusion sensitivity.
    Occlusion,
}

/// `--fill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FillArg {
    /// Fade to air under a Gaussian; Gaussian-weighted blend (MONAI's `gaussian`).
    Gaussian,
    /// The scan's mean; equal weights (MONAI's `mean_img`).
    Mean,
}

/// `--target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    Positive,
    Negative,
}

impl ExplainArgs {
    /// Runs `ct3d explain`: every scan is tried; a failing one is reported on one line and the
    /// exit code is 1 once the others are written.
    pub fn run(self) -> Result<()> {
        let loaded = evaluate::load_run(&self.run, self.weights.into(), self.device.device)?;
        let size = loaded.model.input_size();
        let method = match self.method {
            MethodArg::Gradcam => Method::GradCam,
            MethodArg::GradcamPlusPlus => Method::GradCamPlusPlus,
            MethodArg::Occlusion => {
                let default = default_occlusion(size);
                let patch = self.patch.unwrap_or(default.patch);
                Method::Occlusion(Occlusion {
                    patch,
                    stride: self.stride.unwrap_or(patch),
                    batch: self.batch,
                    fill: match self.fill {
                        None | Some(FillArg::Gaussian) => OcclusionFill::Gaussian,
                        Some(FillArg::Mean) => OcclusionFill::MeanImage,
                    },
                    refine: self.refine.unwrap_or(default.refine),
                })
            }
        };
        if self.method != MethodArg::Occlusion
            && (self.patch.is_some()
                || self.stride.is_some()
                || self.fill.is_some()
                || self.refine.is_some())
        {
            bail!(
                "--patch, --stride, --fill and --refine set up occlusion; add --method occlusion"
            );
        }
        let settings = ExplainSettings {
            method,
            layer: self.layer.clone(),
            target: match self.target {
                TargetArg::Positive => Target::Positive,
                TargetArg::Negative => Target::Negative,
            },
        };
        let explainer = Explainer::new(&loaded, settings)?;
        let scans = evaluate::expand_inputs(&self.scans);
        if scans.is_empty() {
            bail!("no scans found in the inputs given");
        }
        let estimate = explainer.estimate_per_scan()? * scans.len() as u32;
        let what = match explainer.layer_name() {
            Some(layer) => format!("{} on {layer}", settings_name(&explainer)),
            None => format!(
                "occlusion ({} forward passes per scan)",
                explainer.forward_passes()
            ),
        };
        eprintln!(
            "explaining {} scan{} with {what}: about {} in all",
            scans.len(),
            if scans.len() == 1 { "" } else { "s" },
            human(estimate)
        );
        if estimate.as_secs_f64() > self.max_minutes.max(0.0) * 60.0 && !self.yes {
            bail!(
                "that would take about {}; use a larger --stride or --patch, or add --yes to run it anyway",
                human(estimate)
            );
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("{}: cannot create the output folder", self.out.display()))?;
        let jsonl = self.out.join("explanations.jsonl");
        let mut lines = Vec::new();
        let mut failures = 0;
        // One step per forward pass: a scan is one step for a gradient map and one per occluded
        // volume (plus the unoccluded one) for occlusion, so a long occlusion moves the bar.
        let passes = explainer.forward_passes() as u64;
        let bar = crate::progress::bar(scans.len() as u64 * passes, "explain");
        let stems = output_stems(&scans);
        for (index, (scan, stem)) in scans.iter().zip(&stems).enumerate() {
            bar.set_message(scan.display().to_string());
            let target = explainer.settings().target;
            let start = index as u64 * passes;
            let result = explainer
                .explain(scan, &mut |done, _| bar.set_position(start + done as u64))
                .and_then(|e| write_explanation(&self.out, stem, &e, &loaded, target));
            match result {
                Ok(record) => {
                    let line = serde_json::to_string(&record)?;
                    bar.suspend(|| println!("{line}"));
                    lines.push(line);
                }
                Err(e) => {
                    failures += 1;
                    bar.suspend(|| eprintln!("error: {}", crate::flags::line(&e)));
                }
            }
            bar.set_position(start + passes);
        }
        bar.finish_and_clear();
        let mut text = Vec::new();
        for line in &lines {
            writeln!(text, "{line}")?;
        }
        ct3d_volume::atomic::write_bytes_atomic(&jsonl, &text)
            .with_context(|| format!("{}: cannot write", jsonl.display()))?;
        eprintln!(
            "wrote {} explanation{} to {}",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            self.out.display()
        );
        if failures > 0 {
            bail!("{failures} of {} scans could not be explained", scans.len());
        }
        Ok(())
    }
}

fn settings_name(explainer: &Explainer<'_>) -> &'static str {
    match explainer.settings().method {
        Method::GradCamPlusPlus => "Grad-CAM++",
        _ => "Grad-CAM",
    }
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
