//! Times explanations against inference on the seed CNN at the example's 128×128×64 input (random
//! weights, a structured volume): one-scan inference, Grad-CAM on the last block and on block3
//! (map at the block's resolution plus the resize to the input grid), Grad-CAM++, and occlusion at
//! the default settings (patches of a quarter of each axis, no overlap: 64 occluded volumes in
//! batches of 8). Prints one JSON line per measurement (median of `RUNS`, default 3).
//!
//! `cargo run --release --example bench_explain [RUNS]` (bench/explain.sh).

use std::time::Instant;

use burn::tensor::Device;
use ct3d_model::explain::{GradExplainer, GradMethod, Occlusion, OcclusionFill, Target, occlusion};
use ct3d_model::input::batch_from_volumes;
use ct3d_model::{Architecture, ModelParams, predict_proba};
use ct3d_volume::Volume;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let size = [128, 128, 64];
    let config = ModelParams::default().at(size);
    let device = Device::flex();
    let network = Architecture::SeedCnn.init(&config, &device, 1).unwrap();
    let volume = Volume::from_fn(size, |x, y, z| {
        let (u, v) = (x as f32 / 128.0 - 0.5, y as f32 / 128.0 - 0.5);
        let lung = if u * u + v * v < 0.12 { 0.15 } else { 0.6 };
        lung + 0.002 * z as f32 + 0.01 * ((x * 7 + y * 13 + z * 3) % 11) as f32
    });
    let report = |bench: &str, ms: f64, extra: &str| {
        println!("{{\"bench\": \"{bench}\", \"runs\": {runs}, \"median_ms\": {ms:.1}{extra}}}");
    };
    let inference = time(runs, || {
        let input = batch_from_volumes(&[&volume], size, &device).unwrap();
        predict_proba(&network, input).unwrap();
    });
    report("inference", inference, "");
    let explainer = GradExplainer::new(&network);
    for (layer, name) in [(3, "gradcam_block4"), (2, "gradcam_block3")] {
        let ms = time(runs, || {
            explainer
                .input_map(&volume, layer, GradMethod::GradCam, Target::Positive)
                .unwrap();
        });
        report(
            name,
            ms,
            &format!(", \"times_inference\": {:.2}", ms / inference),
        );
    }
    let ms = time(runs, || {
        explainer
            .input_map(&volume, 3, GradMethod::GradCamPlusPlus, Target::Positive)
            .unwrap();
    });
    report(
        "gradcampp_block4",
        ms,
        &format!(", \"times_inference\": {:.2}", ms / inference),
    );
    let settings = Occlusion {
        patch: [32, 32, 16],
        stride: [32, 32, 16],
        batch: 8,
        fill: OcclusionFill::Gaussian,
        refine: 0,
    };
    let ms = time(runs.min(2), || {
        occlusion(&network, &volume, &settings, &mut |_, _| {}).unwrap();
    });
    report(
        "occlusion_default_64_patches",
        ms,
        &format!(", \"seconds\": {:.1}", ms / 1000.0),
    );
}
