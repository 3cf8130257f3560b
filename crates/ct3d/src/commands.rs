//! The subcommands: argument plumbing and printing around library calls.

use std::path::Path;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use ct3d_volume::cache::{self, PrepareEvent, PrepareOptions};
use ct3d_volume::dataset::Dataset;
use ct3d_volume::nifti_io::{self, OutputDtype};
use ct3d_volume::preprocess::{self, PreprocessConfig};
use ct3d_volume::scan::read_scan;
use ct3d_volume::synth::{self, PhantomConfig};

use ct3d::evaluate::WeightsChoice;
use ct3d::run::TrainConfig;
use ct3d::train::{DataSource, TrainRequest};
use ct3d_model::{DeviceChoice, ModelConfig};

use crate::progress;

/// `n` and the noun, in the plural unless `n` is 1: "1 epoch", "2 epochs", "0 scans".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

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

pub fn info(scans: &[std::path::PathBuf], series: Option<&str>) -> Result<()> {
    if let [scan] = scans {
        print_info(scan, &read_scan(scan, series)?);
        return Ok(());
    }
    // With several scans, report each unreadable one and keep going, like `ls` does.
    let mut failed = 0usize;
    for (i, scan) in scans.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match read_scan(scan, series) {
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

pub fn preprocess(
    scan: &Path,
    output: &Path,
    config: &PreprocessConfig,
    series: Option<&str>,
) -> Result<()> {
    let volume = preprocess::process_scan(scan, series, config)?;
    // The header says what the file is, so that `predict` and `prepare` can refuse it as input.
    nifti_io::write_volume_described(
        output,
        &volume,
        OutputDtype::F32,
        &preprocess::output_description(config),
    )?;
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
    source: &DataSource,
    cache: &Path,
    negative: &str,
    positive: &str,
    config: &PreprocessConfig,
    skip_bad: bool,
    jobs: Option<usize>,
) -> Result<()> {
    config.validate()?;
    let dataset = match source {
        DataSource::Folder(dir) => Dataset::from_class_folders(dir, negative, positive)?,
        DataSource::Manifest(csv) => Dataset::from_manifest(csv, negative, positive)?,
    };
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
    }
    .map_err(|error| match error.failed_scan() {
        Some(_) if !skip_bad => {
            anyhow::anyhow!("{error} (pass --skip-bad to leave unreadable scans out)")
        }
        _ => error.into(),
    })?;
    bar.finish_and_clear();
    // Per class, the scans that were prepared: a skipped scan is counted as failed only.
    let n_pos = prepared.items.iter().filter(|item| item.label == 1).count();
    let n_neg = prepared.items.len() - n_pos;
    let [neg, pos] = dataset.class_names();
    let stats = &prepared.stats;
    println!(
        "prepared {} ({n_neg} {neg}, {n_pos} {pos}) into {} in {:.1}s: {} computed, {} from cache, {} failed",
        count(prepared.items.len(), "scan"),
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
        let data = match source {
            DataSource::Folder(path) | DataSource::Manifest(path) => path,
        };
        bail!("no scan of {} could be prepared", data.display());
    }
    Ok(())
}

/// Runs `ct3d cache info`.
pub fn cache_info(dir: &Path) -> Result<()> {
    use ct3d::resources::format_bytes;
    let usage = ct3d_volume::cache_admin::cache_usage(dir)?;
    println!(
        "{}: {} entries, {}",
        dir.display(),
        usage.entries(),
        format_bytes(usage.bytes())
    );
    for group in &usage.groups {
        let [x, y, z] = group.size;
        let window = group.window.map_or(
            "window unknown (entries made before ct3d recorded it)".to_owned(),
            |[lo, hi]| format!("window {lo},{hi}"),
        );
        println!(
            "  size {x},{y},{z}, {window}: {} entries, {}",
            group.entries,
            format_bytes(group.bytes)
        );
    }
    if !usage.damaged.is_empty() {
        let bytes = usage.damaged.iter().map(|(_, b)| b).sum();
        println!(
            "  damaged (rebuilt when needed): {} entries, {}",
            usage.damaged.len(),
            format_bytes(bytes)
        );
    }
    Ok(())
}

/// Runs `ct3d cache clean`.
pub fn cache_clean(dir: &Path, keep_sizes: &[[usize; 3]], dry_run: bool) -> Result<()> {
    use ct3d::resources::format_bytes;
    let report = ct3d_volume::cache_admin::clean_cache(
        dir,
        &ct3d_volume::cache_admin::CleanOptions {
            keep_sizes: keep_sizes.to_vec(),
            dry_run,
        },
    )?;
    println!(
        "{} {} entries ({}) from {}; kept {} entries ({})",
        if dry_run { "would remove" } else { "removed" },
        report.removed,
        format_bytes(report.freed),
        dir.display(),
        report.kept,
        format_bytes(report.kept_bytes)
    );
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
        "wrote {} ({normal} CT-0, {abnormal} CT-23, seed {seed}) to {} in {:.1}s",
        count(paths.len(), "phantom scan"),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What `ct3d demo` runs.
pub struct DemoOptions {
    /// Working folder for data, cache, run, pictures and report.
    pub out: std::path::PathBuf,
    /// Use the Keras example's full settings instead of the quick ones.
    pub full: bool,
    /// Override the number of epochs.
    pub epochs: Option<usize>,
    /// Where to train.
    pub device: DeviceChoice,
}

/// The demo's quick settings, chosen so that training finishes in a few minutes on 2 CPU cores
/// and still separates the phantoms (validation accuracy ≥ 0.9): the example's model unchanged,
/// at the smallest input its four blocks accept, on more scans than epochs.
struct DemoSettings {
    scans_per_class: usize,
    size_xy: usize,
    input: [usize; 3],
    epochs: usize,
    patience: usize,
    batch_size: usize,
    learning_rate: f64,
    batch_norm_momentum: f64,
}

const QUICK_DEMO: DemoSettings = DemoSettings {
    scans_per_class: 60,
    size_xy: 128,
    input: [48, 48, 48],
    epochs: 8,
    patience: 8,
    batch_size: 4,
    learning_rate: 1e-3,
    // ~170 steps: with Keras's 0.99 the moving statistics would still be 18 % their initial
    // values and lag the fast-moving weights, and inference would disagree with training.
    batch_norm_momentum: 0.9,
};

/// The Keras example's settings on MosMedData-sized phantoms (hours on a CPU).
const FULL_DEMO: DemoSettings = DemoSettings {
    scans_per_class: 100,
    size_xy: 512,
    input: [128, 128, 64],
    epochs: 100,
    patience: 15,
    batch_size: 2,
    learning_rate: 1e-4,
    batch_norm_momentum: 0.99,
};

/// `demo --epochs`'s help, with the real defaults of [`QUICK_DEMO`] and [`FULL_DEMO`].
pub fn demo_epochs_help() -> String {
    format!(
        "Number of epochs (default: {}, or {} with --full)",
        QUICK_DEMO.epochs, FULL_DEMO.epochs
    )
}

/// Seed of the demo's phantoms and training; fixed so that every demo run is the same.
const DEMO_SEED: u64 = 0;

pub fn demo(options: &DemoOptions) -> Result<()> {
    let started = Instant::now();
    let settings = if options.full {
        &FULL_DEMO
    } else {
        &QUICK_DEMO
    };
    let epochs = options.epochs.unwrap_or(settings.epochs);
    let out = &options.out;
    claim_demo_folder(out)?;
    let data = out.join("data");
    let held_out_dir = out.join("held-out");
    let run = out.join("run");
    let n = settings.scans_per_class;
    let [w, h, d] = settings.input;
    println!(
        "ct3d demo: synthetic phantoms → preprocessing → the Keras example's 3D CNN → report, in {}",
        out.display()
    );
    println!("\n== 1/6 synthesise {n} normal and {n} abnormal phantom scans");
    synth(&data, n, n, DEMO_SEED, settings.size_xy, None)?;
    println!("\n== 2/6 synthesise 2 held-out scans (not in the dataset) for prediction");
    let held_out = synth_held_out(&held_out_dir, settings.size_xy)?;
    println!(
        "\n== 3/6 train the example's model at {w}×{h}×{d} for up to {}{}",
        count(epochs, "epoch"),
        if options.full {
            " (the example's settings)"
        } else {
            " (the example: 128×128×64, 100 epochs; `ct3d demo --full` runs those)"
        }
    );
    let config = TrainConfig {
        epochs,
        patience: settings.patience,
        batch_size: settings.batch_size,
        seed: DEMO_SEED,
        schedule: ct3d_model::ExponentialDecay {
            initial: settings.learning_rate,
            ..Default::default()
        },
        preprocess: PreprocessConfig {
            size: settings.input,
            ..PreprocessConfig::default()
        },
        model: ModelConfig {
            input: settings.input,
            batch_norm_momentum: settings.batch_norm_momentum,
            ..ModelConfig::default()
        },
        ..TrainConfig::default()
    };
    let request = TrainRequest {
        cache: ct3d::train::default_cache(&data),
        data: data.clone(),
        manifest: None,
        out: run.clone(),
        config,
        device: options.device,
        resume: false,
        force: true,
        skip_bad: false,
        given: Vec::new(),
    };
    crate::model_commands::train(request, false)?;
    println!("\n== 4/6 evaluate the best weights on the validation scans");
    crate::model_commands::eval(
        &run,
        None,
        [None, None],
        None,
        false,
        WeightsChoice::Best,
        options.device,
        false,
        Some(&out.join("plots")),
    )?;
    println!("\n== 5/6 predict the two held-out scans");
    crate::model_commands::predict(
        &run,
        &held_out,
        WeightsChoice::Best,
        options.device,
        crate::model_commands::PredictFormat::Sentences,
        None,
        false,
    )?;
    println!("\n== 6/6 write the report");
    crate::picture_commands::plot(&run, Some(out.join("plots").join("curves.png")))?;
    let report = crate::picture_commands::report(
        &run,
        Some(out.join("report.html")),
        WeightsChoice::Best,
        options.device,
        &ct3d::report::ReportOptions::default(),
    )?;
    println!(
        "\nDone in {:.0} s. Open the report: {}",
        started.elapsed().as_secs_f64(),
        report.display()
    );
    Ok(())
}

/// Marks a folder as the demo's (created by it, or empty when it started), so a rerun reuses it.
const DEMO_MARKER: &str = ".ct3d-demo";

/// Refuses a non-empty `out` that the demo did not make: it would train on whatever scans are in
/// its `data/` and overwrite its files. Otherwise creates `out` if needed and marks it.
fn claim_demo_folder(out: &Path) -> Result<()> {
    let marker = out.join(DEMO_MARKER);
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty && !marker.is_file() {
        bail!(
            "{}: not empty and not made by `ct3d demo` (no {DEMO_MARKER} file); the demo writes \
             its data, run and report there: choose a new or empty --out folder",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    ct3d_volume::atomic::write_bytes_atomic(
        &marker,
        b"made by ct3d demo: a rerun of the demo may reuse this folder\n",
    )
    .with_context(|| format!("{}: cannot write", marker.display()))
}

/// One normal and one abnormal phantom from seeds outside the dataset's, in their own folder.
fn synth_held_out(dir: &Path, size_xy: usize) -> Result<Vec<std::path::PathBuf>> {
    let config = PhantomConfig {
        shape_xy: size_xy,
        ..PhantomConfig::default()
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut paths = Vec::new();
    for (class, name) in [
        (synth::ScanClass::Normal, "normal_held_out.nii.gz"),
        (synth::ScanClass::Abnormal, "abnormal_held_out.nii.gz"),
    ] {
        let volume = synth::generate_phantom(&config, class, HELD_OUT_SEED)?;
        let path = dir.join(name);
        nifti_io::write_volume(&path, &volume, OutputDtype::I16)?;
        paths.push(path);
    }
    println!("wrote {}", dir.display());
    Ok(paths)
}

/// Seed of the held-out phantoms: far from the dataset's per-scan seeds.
const HELD_OUT_SEED: u64 = 0x00de_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_reuses_only_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        // A new folder, then a rerun into it.
        let new = dir.path().join("new");
        claim_demo_folder(&new).unwrap();
        assert!(new.join(DEMO_MARKER).is_file());
        std::fs::create_dir_all(new.join("data/CT-0")).unwrap();
        claim_demo_folder(&new).unwrap();
        // An empty folder is taken.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        claim_demo_folder(&empty).unwrap();
        assert!(empty.join(DEMO_MARKER).is_file());
        // A user's folder is refused and left alone.
        let mine = dir.path().join("mine");
        std::fs::create_dir_all(mine.join("CT-0")).unwrap();
        let err = claim_demo_folder(&mine).unwrap_err().to_string();
        assert!(err.contains(&mine.display().to_string()), "{err}");
        assert!(err.contains("not made by `ct3d demo`"), "{err}");
        assert!(!mine.join(DEMO_MARKER).exists());
    }

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
    fn counts_are_plural_unless_one() {
        assert_eq!(count(1, "epoch"), "1 epoch");
        assert_eq!(count(2, "epoch"), "2 epochs");
        assert_eq!(count(0, "scan"), "0 scans");
    }

    #[test]
    fn demo_help_gives_the_real_default_epochs() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        let demo = cli
            .find_subcommand_mut("demo")
            .expect("demo is a subcommand");
        // Whitespace collapsed: clap wraps long help at the terminal's width.
        let help = demo.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let expected = format!(
            "default: {}, or {} with --full",
            QUICK_DEMO.epochs, FULL_DEMO.epochs
        );
        assert!(help.contains(&expected), "{expected:?} not in:\n{help}");
    }

    #[test]
    fn window_parsing() {
        assert_eq!(parse_window("-1000,400").unwrap(), [-1000.0, 400.0]);
        assert!(parse_window("400,-1000").is_err());
        assert!(parse_window("nan,1").is_err());
        assert!(parse_window("1").is_err());
    }
}
