//! The subcommands: argument plumbing and printing around library calls.

use std::path::Path;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use ct3d_volume::cache::{self, PrepareEvent, PrepareOptions};
use ct3d_volume::dataset::Dataset;
use ct3d_volume::nifti_io::{self, OutputDtype};
use ct3d_volume::preprocess::{self, PreprocessConfig};
use ct3d_volume::synth::{self, PhantomConfig};

use ct3d::evaluate::WeightsChoice;
use ct3d::run::TrainConfig;
use ct3d::train::TrainRequest;
use ct3d_model::{DeviceChoice, ModelConfig};

use crate::progress;

/// Parses `W,H,D` (e.g. `128,128,64`) into a size in voxels.
pub fn parse_size(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [w, h, d] = parts.as_slice() else {
        return Err(format!("expected W,H,D such as 128,128,64, got {text:?}"));
    };
    let parse = |s: &str| -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive whole number of voxels")),
            Ok(n) => Ok(n),
        }
    };
    Ok([parse(w)?, parse(h)?, parse(d)?])
}

/// Parses conv filter counts such as `64,64,128,256` (at least one, each ≥ 1).
pub fn parse_filters(text: &str) -> Result<crate::Filters, String> {
    text.split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive number of filters")),
            Ok(n) => Ok(n),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(crate::Filters)
}

/// Parses `MIN,MAX` Hounsfield units (e.g. `-1000,400`).
pub fn parse_window(text: &str) -> Result<[f32; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lo, hi] = parts.as_slice() else {
        return Err(format!("expected MIN,MAX such as -1000,400, got {text:?}"));
    };
    let parse = |s: &str| -> Result<f32, String> {
        s.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} is not a number of Hounsfield units"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo >= hi {
        return Err(format!(
            "the window's MIN ({lo}) must be below its MAX ({hi})"
        ));
    }
    Ok([lo, hi])
}

pub fn info(scans: &[std::path::PathBuf]) -> Result<()> {
    if let [scan] = scans {
        print_info(scan, &nifti_io::read_volume(scan)?);
        return Ok(());
    }
    // With several scans, report each unreadable one and keep going, like `ls` does.
    let mut failed = 0usize;
    for (i, scan) in scans.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match nifti_io::read_volume(scan) {
            Ok(volume) => print_info(scan, &volume),
            Err(err) => {
                eprintln!("error: {err}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => bail!("{n} of {} scans could not be read", scans.len()),
    }
}

fn print_info(scan: &Path, volume: &ct3d_volume::Volume) {
    let [x, y, z] = volume.shape();
    let [sx, sy, sz] = volume.spacing;
    let codes: String = nifti_io::orientation_codes(&volume.affine).iter().collect();
    println!("{}", scan.display());
    println!("  shape        {x} × {y} × {z} voxels");
    if let Some(dtype) = &volume.provenance.datatype {
        println!("  datatype     {dtype}");
    }
    println!("  spacing      {sx:.4} × {sy:.4} × {sz:.4} mm");
    println!(
        "  field        {:.1} × {:.1} × {:.1} mm",
        x as f64 * sx,
        y as f64 * sy,
        z as f64 * sz
    );
    println!("  orientation  {codes}");
    match volume.stats() {
        Some(s) => {
            println!(
                "  values       min {:.1}, max {:.1}, mean {:.3} (HU for raw scans)",
                s.min, s.max, s.mean
            );
            if s.non_finite > 0 {
                println!("  warning      {} voxels are NaN or infinite", s.non_finite);
            }
        }
        None => println!("  values       no finite values"),
    }
}

pub fn preprocess(scan: &Path, output: &Path, config: &PreprocessConfig) -> Result<()> {
    let volume = preprocess::process_file(scan, config)?;
    nifti_io::write_volume(output, &volume, OutputDtype::F32)?;
    let [x, y, z] = volume.shape();
    println!(
        "{} → {} ({x}×{y}×{z}, float32 in [0, 1])",
        scan.display(),
        output.display()
    );
    Ok(())
}

pub fn rotate(input: &Path, output: &Path, angle: f64) -> Result<()> {
    if !angle.is_finite() {
        bail!("--angle must be a finite number of degrees, got {angle}");
    }
    let volume = nifti_io::read_volume(input)?;
    let rotated = ct3d_volume::augment::rotate_augment(&volume, angle as f32);
    nifti_io::write_volume(output, &rotated, OutputDtype::F32)?;
    println!(
        "{} → {} (rotated {angle}°, clipped to [0, 1])",
        input.display(),
        output.display()
    );
    Ok(())
}

pub fn prepare(
    data: &Path,
    cache: &Path,
    negative: &str,
    positive: &str,
    config: &PreprocessConfig,
    skip_bad: bool,
    jobs: Option<usize>,
) -> Result<()> {
    config.validate()?;
    let dataset = Dataset::from_class_folders(data, negative, positive)?;
    let options = PrepareOptions {
        config: config.clone(),
        skip_bad,
        verify_entries: false,
    };
    let started = Instant::now();
    let bar = progress::bar(dataset.len() as u64, "prepare");
    let run = || {
        cache::prepare_default(&dataset, cache, &options, |event| match event {
            PrepareEvent::Started { .. } => {}
            PrepareEvent::Hit { .. } | PrepareEvent::Processed { .. } => bar.inc(1),
            PrepareEvent::Failed { source, .. } => {
                bar.println(format!("skipped {}", source.display()));
                bar.inc(1);
            }
        })
    };
    let prepared = match jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .context("starting worker threads")?
            .install(run),
        None => run(),
    }?;
    bar.finish_and_clear();
    let [n_neg, n_pos] = dataset.class_counts();
    let [neg, pos] = dataset.class_names();
    let stats = &prepared.stats;
    println!(
        "prepared {} scans ({n_neg} {neg}, {n_pos} {pos}) into {} in {:.1}s: {} computed, {} from cache, {} failed",
        prepared.items.len(),
        cache.display(),
        started.elapsed().as_secs_f64(),
        stats.computed,
        stats.hits,
        stats.failed,
    );
    if !prepared.failures.is_empty() {
        println!("skipped (unreadable) scans:");
        for failure in &prepared.failures {
            println!("  {}", failure.error);
        }
    }
    if prepared.items.is_empty() {
        bail!("no scan of {} could be prepared", data.display());
    }
    Ok(())
}

pub fn synth(
    out: &Path,
    normal: usize,
    abnormal: usize,
    seed: u64,
    size_xy: usize,
    depth: Option<usize>,
) -> Result<()> {
    let defaults = PhantomConfig::default();
    let config = PhantomConfig {
        shape_xy: size_xy,
        depth: depth.map_or(defaults.depth.clone(), |d| d..=d),
        ..defaults
    };
    config.validate()?;
    let started = Instant::now();
    let bar = progress::bar((normal + abnormal) as u64, "synth");
    let paths = synth::write_dataset(
        out,
        normal,
        abnormal,
        seed,
        &config,
        |path, volume| nifti_io::write_volume(path, volume, OutputDtype::I16),
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} phantom scans ({normal} CT-0, {abnormal} CT-23, seed {seed}) to {} in {:.1}s",
        paths.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The demo's settings: small enough to finish in about a minute on 2 cores.
const DEMO_SCANS_PER_CLASS: usize = 10;
const DEMO_SIZE_XY: usize = 128;
const DEMO_INPUT: [usize; 3] = [48, 48, 48];
const DEMO_EPOCHS: usize = 3;

pub fn demo(out: &Path) -> Result<()> {
    let data = out.join("data");
    let run = out.join("run");
    println!(
        "ct3d demo: synthetic phantoms → preprocessing → the Keras example's 3D CNN, in {}",
        out.display()
    );
    println!(
        "\n== 1. synthesise {DEMO_SCANS_PER_CLASS} normal and {DEMO_SCANS_PER_CLASS} abnormal phantom scans"
    );
    synth(
        &data,
        DEMO_SCANS_PER_CLASS,
        DEMO_SCANS_PER_CLASS,
        0,
        DEMO_SIZE_XY,
        None,
    )?;
    let [w, h, d] = DEMO_INPUT;
    println!(
        "\n== 2. train the example's model at {w}×{h}×{d} for {DEMO_EPOCHS} epochs (the example: 128×128×64, 100 epochs)"
    );
    let config = TrainConfig {
        epochs: DEMO_EPOCHS,
        seed: 0,
        preprocess: PreprocessConfig {
            size: DEMO_INPUT,
            ..PreprocessConfig::default()
        },
        model: ModelConfig {
            input: DEMO_INPUT,
            ..ModelConfig::default()
        },
        ..TrainConfig::default()
    };
    let request = TrainRequest {
        cache: ct3d::train::default_cache(&data),
        data: data.clone(),
        out: run.clone(),
        config,
        device: DeviceChoice::Cpu,
        resume: false,
        force: true,
        skip_bad: false,
    };
    crate::model_commands::train(request, false)?;
    println!("\n== 3. evaluate on the validation scans");
    crate::model_commands::eval(
        &run,
        None,
        None,
        WeightsChoice::Best,
        DeviceChoice::Cpu,
        false,
    )?;
    println!("\n== 4. predict two held-out scans");
    let held_out = [
        data.join("CT-0")
            .join(synth::phantom_file_name(DEMO_SCANS_PER_CLASS - 1)),
        data.join("CT-23")
            .join(synth::phantom_file_name(DEMO_SCANS_PER_CLASS - 1)),
    ];
    crate::model_commands::predict(
        &run,
        &held_out,
        WeightsChoice::Best,
        DeviceChoice::Cpu,
        crate::model_commands::PredictFormat::Sentences,
    )?;
    println!(
        "\nDone. The run is in {}. A {DEMO_EPOCHS}-epoch run shows the pipeline, not a finished model: \
         train longer with `ct3d train --data {} --out RUN`.",
        run.display(),
        data.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("128,128,64").unwrap(), [128, 128, 64]);
        assert_eq!(parse_size(" 48, 48 ,48").unwrap(), [48, 48, 48]);
        assert!(parse_size("128,128").is_err());
        assert!(parse_size("128,0,64").is_err());
        assert!(parse_size("a,b,c").is_err());
    }

    #[test]
    fn filters_parsing() {
        assert_eq!(parse_filters("4,4,8,8").unwrap().0, vec![4, 4, 8, 8]);
        assert!(parse_filters("4,0,8").is_err());
        assert!(parse_filters("4,,8").is_err());
    }

    #[test]
    fn window_parsing() {
        assert_eq!(parse_window("-1000,400").unwrap(), [-1000.0, 400.0]);
        assert!(parse_window("400,-1000").is_err());
        assert!(parse_window("nan,1").is_err());
        assert!(parse_window("1").is_err());
    }
}
