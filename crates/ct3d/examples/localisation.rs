//! Scores explanation maps against the phantoms' ground truth, as `tests/explain.rs` does: for a
//! run trained on `ct3d demo`'s data (dataset seed 0, the quick demo's phantoms), over the
//! correctly classified abnormal validation scans, the pointing game (the map's peak inside the
//! lesion mask) and the share of the map's positive mass inside the lungs. README's table
//! ("What the maps show, measured") comes from it.
//!
//! ```sh
//! ct3d demo --out demo
//! ct3d train --data demo/data --out run30 --size 48,48,48 --batch-size 4 --learning-rate 1e-3 \
//!   --batch-norm-momentum 0.9 --epochs 30 --augment rotate,flip,affine,intensity,noise
//! cargo run --release -p ct3d --example localisation -- run30 occlusion:6:6 gradcam:block2
//! ```
//!
//! Methods: `gradcam:BLOCK`, `gradcam++:BLOCK`, `occlusion:PATCH:STRIDE[:mean][:rTOP]` (cubic
//! patches, Gaussian fill unless `:mean`, coarse-to-fine refinement of the `TOP` largest drops
//! with `:rTOP`; `:fAXES`, e.g. `:fx`, averages the map with the maps of the scan mirrored about
//! every combination of `AXES` of the model's input, each mirrored back),
//! `oracle:PATCH:STRIDE[:rTOP]` (the occlusion map of an ideal model that scores the share of
//! the lesion left visible). `LAST=1` explains the last epoch's weights
//! instead of the best. `VERBOSE=1` prints each scan's peak, its tissue and its distance to the
//! nearest lesion voxel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use ct3d::demo::{DEMO_SEED, DemoSettings};
use ct3d::evaluate::{EvalSplit, WeightsChoice, evaluate_recorded, load_run};
use ct3d::explain::{ExplainSettings, Explainer, Method};
use ct3d_model::DeviceChoice;
use ct3d_model::explain::{Occlusion, OcclusionFill, Target};
use ct3d_volume::synth::{
    LabeledPhantom, PhantomConfig, ScanClass, Tissue, generate_labeled_phantom, scan_seed,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A method spec's map method, its layer (or `oracle`) and the axes whose mirrored maps are
/// averaged in (`:fAXES`).
type Spec = (Method, Option<String>, Vec<usize>);

fn method(spec: &str) -> Result<Spec> {
    let parts: Vec<&str> = spec.split(':').collect();
    Ok(match parts.as_slice() {
        ["oracle", patch, stride, rest @ ..] => {
            let extra: String = rest.iter().map(|r| format!(":{r}")).collect();
            let (m, _, flips) = method(&format!("occlusion:{patch}:{stride}{extra}"))?;
            (m, Some("oracle".to_owned()), flips)
        }
        ["gradcam", block] => (Method::GradCam, Some((*block).to_owned()), Vec::new()),
        ["gradcam++", block] => (
            Method::GradCamPlusPlus,
            Some((*block).to_owned()),
            Vec::new(),
        ),
        ["occlusion", patch, stride, rest @ ..] => {
            let (mut fill, mut refine, mut flips) = (OcclusionFill::Gaussian, 0, Vec::new());
            for option in rest {
                if let Some(axes) = option.strip_prefix('f') {
                    flips = axes
                        .chars()
                        .map(|c| match c {
                            'x' => Ok(0),
                            'y' => Ok(1),
                            'z' => Ok(2),
                            _ => bail!("{spec}: flip axes are x, y and z"),
                        })
                        .collect::<Result<_>>()?;
                    continue;
                }
                match option.strip_prefix('r') {
                    Some(top) => {
                        refine = top.parse().with_context(|| format!("{spec}: refine"))?;
                    }
                    None if *option == "mean" => fill = OcclusionFill::MeanImage,
                    None => bail!(
                        "{spec}: after the stride come `mean`, `rTOP` (refine) and `fAXES` (flips)"
                    ),
                }
            }
            let patch: usize = patch.parse().with_context(|| format!("{spec}: patch"))?;
            let stride: usize = stride.parse().with_context(|| format!("{spec}: stride"))?;
            let occlusion = Occlusion {
                patch: [patch; 3],
                stride: [stride; 3],
                batch: 8,
                fill,
                refine,
            };
            (Method::Occlusion(occlusion), None, flips)
        }
        _ => bail!("{spec}: expected gradcam:BLOCK, gradcam++:BLOCK or occlusion:PATCH:STRIDE"),
    })
}

/// The lungs as the check counts them: parenchyma, vessels and opacities.
fn in_lungs(t: &Tissue) -> bool {
    matches!(t, Tissue::Lung | Tissue::Vessel | Tissue::GroundGlass)
}

/// Distance in mm from voxel `at` to the nearest lesion voxel of `truth`.
fn lesion_distance(truth: &LabeledPhantom, at: [usize; 3]) -> f64 {
    let [nx, ny, _] = truth.volume.shape();
    let spacing = truth.volume.spacing;
    truth
        .tissue
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == Tissue::GroundGlass)
        .map(|(i, _)| {
            let v = [i % nx, (i / nx) % ny, i / (nx * ny)];
            (0..3)
                .map(|a| ((v[a] as f64 - at[a] as f64) * spacing[a]).powi(2))
                .sum::<f64>()
        })
        .fold(f64::INFINITY, f64::min)
        .sqrt()
}

/// The occlusion map of an ideal model whose score is the share of the lesion still visible
/// (the mask resampled like the scan): where hiding removes the most lesion. Its peak bounds
/// what occlusion with these patches can reach on the pointing game.
fn oracle_map(
    run: &ct3d::evaluate::LoadedRun,
    path: &std::path::Path,
    truth: &LabeledPhantom,
    settings: &Occlusion,
) -> Result<(ct3d_volume::Volume, [usize; 3])> {
    use ct3d_volume::preprocess::{process_volume, read_raw_scan, to_scan_grid};
    let config = &run.config.train.preprocess;
    let raw = read_raw_scan(path, None)?;
    let scan = process_volume(&raw, config)?;
    let mut mask_hu = truth.lesion_mask();
    mask_hu.spacing = raw.spacing;
    mask_hu.affine = raw.affine;
    for v in mask_hu.data_mut() {
        *v = config.hu_min + *v * (config.hu_max - config.hu_min);
    }
    let mask = process_volume(&mask_hu, config)?;
    let size = scan.shape();
    let n: usize = size.iter().product();
    let (mut m, mut orig) = (vec![0.0; n], vec![0.0; n]);
    ct3d_model::input::copy_in_input_order(&mask, size, &mut m)?;
    ct3d_model::input::copy_in_input_order(&scan, size, &mut orig)?;
    let total: f64 = m.iter().map(|&v| f64::from(v)).sum();
    let mut score = |data: Vec<f32>, count: usize| -> Result<Vec<f32>, ct3d_model::ModelError> {
        Ok(data
            .chunks(n)
            .take(count)
            .map(|d| {
                let visible: f64 = d
                    .iter()
                    .zip(&orig)
                    .zip(&m)
                    .filter(|((_, o), _)| **o > 0.0)
                    .map(|((&x, &o), &w)| f64::from(w) * f64::from(x / o))
                    .sum();
                (visible / total) as f32
            })
            .collect())
    };
    let mut map =
        ct3d_model::explain::occlusion_with(&scan, size, settings, &mut score, &mut |_, _| {})?.map;
    map.spacing = scan.spacing;
    map.affine = scan.affine;
    let scan_map = to_scan_grid(&map, &raw);
    let [nx, ny, _] = scan_map.shape();
    let data = scan_map.data();
    let mut best = 0;
    for (i, &v) in data.iter().enumerate() {
        if v > data[best] {
            best = i;
        }
    }
    Ok((scan_map, [best % nx, (best / nx) % ny, best / (nx * ny)]))
}

/// Every combination of flips about `axes`, each map computed on the flipped input, flipped
/// back and averaged with the plain one.
fn flip_average(
    run: &ct3d::evaluate::LoadedRun,
    path: &std::path::Path,
    e: &ct3d::explain::Explanation,
    settings: &Occlusion,
    axes: &[usize],
) -> Result<(ct3d_volume::Volume, [usize; 3])> {
    use ct3d_volume::augment::flip::flip_axes;
    use ct3d_volume::preprocess::{read_raw_scan, to_scan_grid};
    let raw = read_raw_scan(path, None)?;
    let input = &e.preprocessed;
    let bits: usize = axes.iter().map(|&a| 1 << a).sum();
    let mut sum = e.model_map.clone();
    let mut count = 1.0;
    for mask in 1..8 {
        if mask & !bits != 0 {
            continue;
        }
        let axes = std::array::from_fn(|a| mask & (1 << a) != 0);
        let flipped = flip_axes(input, axes);
        let m = ct3d_model::explain::occlusion(&run.model, &flipped, settings, &mut |_, _| {})?;
        let back = flip_axes(&m.map, axes);
        for (s, b) in sum.data_mut().iter_mut().zip(back.data()) {
            *s += b;
        }
        count += 1.0;
    }
    for s in sum.data_mut() {
        *s /= count;
    }
    sum.spacing = input.spacing;
    sum.affine = input.affine;
    let scan_map = to_scan_grid(&sum, &raw);
    let peak = ct3d::explain::argmax(&scan_map);
    Ok((scan_map, peak))
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((run_dir, specs)) = args.split_first() else {
        bail!("usage: localisation RUN METHOD... (see the example's documentation)");
    };
    let methods = specs
        .iter()
        .map(|s| method(s))
        .collect::<Result<Vec<_>>>()?;
    let verbose = std::env::var_os("VERBOSE").is_some();
    let weights = if std::env::var_os("LAST").is_some() {
        WeightsChoice::Last
    } else {
        WeightsChoice::Best
    };
    let run = load_run(&PathBuf::from(run_dir), weights, DeviceChoice::Cpu)?;
    let evaluation = evaluate_recorded(&run, EvalSplit::Val, false)?;
    println!("{run_dir}: val accuracy {:.3}", evaluation.metrics.accuracy);
    let demo = DemoSettings::quick();
    let phantoms = PhantomConfig::sized(demo.size_xy, demo.depth);
    let mut scans = Vec::new();
    for scan in &evaluation.scans {
        if scan.label != 1 || scan.probability <= 0.5 {
            continue;
        }
        let name = scan.path.file_name().unwrap_or_default().to_string_lossy();
        let index: usize = name
            .strip_prefix("phantom_")
            .and_then(|n| n.strip_suffix(".nii.gz"))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{}: not a demo phantom", scan.path.display()))?;
        let seed = scan_seed(DEMO_SEED, ScanClass::Abnormal, index);
        let truth = generate_labeled_phantom(&phantoms, ScanClass::Abnormal, seed)?;
        scans.push((scan.path.clone(), truth));
    }
    if scans.is_empty() {
        bail!("no abnormal validation scan is classified correctly");
    }
    for ((method, layer, flips), spec) in methods.into_iter().zip(specs) {
        let settings = ExplainSettings {
            method,
            layer,
            target: Target::Positive,
        };
        let oracle = settings.layer.as_deref() == Some("oracle");
        let occlusion_settings = match settings.method {
            Method::Occlusion(o) => Some(o),
            _ => None,
        };
        // The oracle needs no network map: a cheap Grad-CAM stands in, then is replaced.
        let settings = if oracle {
            ExplainSettings {
                method: Method::GradCam,
                layer: Some("block1".to_owned()),
                ..settings
            }
        } else {
            settings
        };
        let explainer = Explainer::new(&run, settings)?;
        let started = std::time::Instant::now();
        let (mut hits, mut mass) = (0, 0.0);
        for (path, truth) in &scans {
            let mut e = explainer.explain(path, &mut |_, _| {})?;
            if oracle {
                let o = occlusion_settings.context("oracle needs occlusion settings")?;
                (e.scan_map, e.peak_voxel) = oracle_map(&run, path, truth, &o)?;
            } else if !flips.is_empty() {
                let o = occlusion_settings.context("flips need occlusion")?;
                (e.scan_map, e.peak_voxel) = flip_average(&run, path, &e, &o, &flips)?;
            }
            let [i, j, k] = e.peak_voxel;
            let hit = truth.lesion_mask().get(i, j, k) == 1.0;
            hits += usize::from(hit);
            let (mut total, mut inside) = (0.0, 0.0);
            for (&v, t) in e.scan_map.data().iter().zip(&truth.tissue) {
                let v = f64::from(v.max(0.0));
                total += v;
                if in_lungs(t) {
                    inside += v;
                }
            }
            mass += inside / f64::max(total, f64::MIN_POSITIVE);
            if verbose {
                let [nx, ny, _] = truth.volume.shape();
                println!(
                    "    {}: p {:.4}, peak {:?} in {:?}, {:.1} mm from a lesion",
                    path.display(),
                    e.probability,
                    e.peak_voxel,
                    truth.tissue[(k * ny + j) * nx + i],
                    lesion_distance(truth, e.peak_voxel)
                );
            }
        }
        let n = scans.len();
        println!(
            "{spec:<22} pointing game {hits:>2}/{n} = {:.2}   mass in the lungs {:.3}   ({:.1} s)",
            hits as f64 / n as f64,
            mass / n as f64,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
