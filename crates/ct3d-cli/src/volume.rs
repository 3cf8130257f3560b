//! The volume and dataset commands: `info`, `preprocess`, `rotate`, `prepare`, `synth` and
//! `cache`. Each converts its flags to `ct3d-volume`'s types, calls it, and prints the outcome.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ct3d::train::DataSource;
use ct3d_volume::cache::{self, CacheError, PrepareObserver, PrepareOptions};
use ct3d_volume::dataset::Dataset;
use ct3d_volume::nifti_io::{self, OutputDtype};
use ct3d_volume::preprocess;
use ct3d_volume::scan::read_scan;
use ct3d_volume::synth::{self, DatasetPlan, Difficulty, PhantomConfig};

use crate::args::{ClassArgs, DataArgs, PreprocessFlags, SeriesArg, YesArg, count, parse_size};
use crate::progress;

/// The flags of `ct3d info` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// One or more scans.
    #[arg(required = true, value_name = "SCAN")]
    scans: Vec<PathBuf>,
    #[command(flatten)]
    series: SeriesArg,
    /// One JSON object per scan (one per line) instead of the table.
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    /// Prints each scan's header facts and HU statistics; with several scans an unreadable one
    /// is reported and the others still printed.
    pub fn run(self) -> Result<()> {
        let (scans, series) = (self.scans.as_slice(), self.series.uid.as_deref());
        let print_info = |scan: &Path, volume: &ct3d_volume::Volume| {
            if self.json {
                println!("{}", info_json(scan, volume));
            } else {
                print_info(scan, volume);
            }
        };
        if let [scan] = scans {
            print_info(scan, &read_scan(scan, series)?);
            return Ok(());
        }
        // With several scans, report each unreadable one and keep going, like `ls` does.
        let mut failed = 0usize;
        for (i, scan) in scans.iter().enumerate() {
            if i > 0 && !self.json {
                println!();
            }
            match read_scan(scan, series) {
                Ok(volume) => print_info(scan, &volume),
                Err(err) => {
                    eprintln!("error: {}", crate::flags::line(&err));
                    failed += 1;
                }
            }
        }
        match failed {
            0 => Ok(()),
            n => bail!("{n} of {} scans could not be read", scans.len()),
        }
    }
}

/// `ct3d info --json`: the scan's geometry and values as one JSON object (the affine maps
/// voxel `[i, j, k, 1]` to RAS+ millimetres).
fn info_json(scan: &Path, volume: &ct3d_volume::Volume) -> serde_json::Value {
    let stats = volume.stats();
    serde_json::json!({
        "path": scan.display().to_string(),
        "shape": volume.shape(),
        "spacing_mm": volume.spacing,
        "affine": volume.affine,
        "orientation": nifti_io::orientation_codes(&volume.affine).iter().collect::<String>(),
        "datatype": volume.provenance.datatype,
        "min": stats.as_ref().map(|s| s.min),
        "max": stats.as_ref().map(|s| s.max),
        "mean": stats.as_ref().map(|s| s.mean),
        "non_finite": stats.as_ref().map_or(volume.len(), |s| s.non_finite),
    })
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

/// The flags of `ct3d preprocess` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Input scan (.nii, .nii.gz, .hdr, .nrrd, .nhdr, .mha, .mhd, or a DICOM series folder).
    #[arg(value_name = "SCAN")]
    scan: PathBuf,
    #[command(flatten)]
    series: SeriesArg,
    /// Output file (.nii or .nii.gz); written atomically.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    preprocess: PreprocessFlags,
}

impl PreprocessArgs {
    /// Preprocesses one scan and writes it as float32 NIfTI.
    pub fn run(self) -> Result<()> {
        let (scan, output) = (&self.scan, &self.output);
        let config = self.preprocess.config()?;
        let volume = preprocess::process_scan(scan, self.series.uid.as_deref(), &config)?;
        // The header says what the file is, so that `predict` and `prepare` can refuse it as input.
        nifti_io::write_volume_described(
            output,
            &volume,
            OutputDtype::F32,
            &preprocess::output_description(&config),
        )?;
        let [x, y, z] = volume.shape();
        println!(
            "{} → {} ({x}×{y}×{z}, float32 in [0, 1])",
            scan.display(),
            output.display()
        );
        Ok(())
    }
}

/// The flags of `ct3d rotate` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Input volume, usually the output of `ct3d preprocess`.
    #[arg(value_name = "VOLUME")]
    volume: PathBuf,
    /// Output file (.nii or .nii.gz); written atomically.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Rotation angle in degrees (counter-clockwise as scipy's rotate with axes=(1, 0)).
    #[arg(long, allow_hyphen_values = true)]
    angle: f64,
}

impl RotateArgs {
    /// Rotates every axial slice by the angle, as the augmentation does.
    pub fn run(self) -> Result<()> {
        let (input, output, angle) = (&self.volume, &self.output, self.angle);
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
}

/// The flags of `ct3d prepare` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Cache folder (created if missing).
    #[arg(long, value_name = "DIR")]
    cache: PathBuf,
    #[command(flatten)]
    classes: ClassArgs,
    #[command(flatten)]
    preprocess: PreprocessFlags,
    /// Keep going past scans that fail to read; list them at the end.
    #[arg(long)]
    skip_bad: bool,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    yes: YesArg,
}

/// Counts prepared scans on the bar, and prints a line for each skipped one.
struct BarObserver<'a>(&'a indicatif::ProgressBar);

impl PrepareObserver for BarObserver<'_> {
    fn hit(&self, _source: &Path) {
        self.0.inc(1);
    }
    fn processed(&self, _source: &Path) {
        self.0.inc(1);
    }
    fn failed(&self, source: &Path, _error: &CacheError) {
        self.0.println(format!("skipped {}", source.display()));
        self.0.inc(1);
    }
}

impl PrepareArgs {
    /// Checks that the cache fits, then preprocesses every scan into it in parallel.
    pub fn run(self) -> Result<()> {
        let source = self.data.source();
        let config = self.preprocess.config()?;
        let (cache, skip_bad, jobs) = (&self.cache, self.skip_bad, self.jobs);
        let (negative, positive) = (&self.classes.negative, &self.classes.positive);
        let workers = jobs.map_or_else(rayon::current_num_threads, |n| n.max(1));
        self.yes.check(|| {
            ct3d::resources::check_prepare(&source, cache, [negative, positive], &config, workers)
        })?;
        let dataset = match &source {
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
        let observer = BarObserver(&bar);
        let run = || cache::prepare_default(&dataset, cache, &options, &observer);
        let prepared = match jobs {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .context("starting worker threads")?
                .install(run),
            None => run(),
        }
        .map_err(|error| match error.failed_scan() {
            // The run stopped on a scan: the same error as `train`'s, so the same hint.
            Some(_) if !skip_bad => ct3d::train::TrainError::BadScan(error).into(),
            _ => anyhow::Error::from(error),
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
            let data = match &source {
                DataSource::Folder(path) | DataSource::Manifest(path) => path,
            };
            bail!("no scan of {} could be prepared", data.display());
        }
        Ok(())
    }
}

/// The flags of `ct3d synth` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder; scans go to OUT/CT-0/ and OUT/CT-23/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of normal scans.
    #[arg(long, default_value_t = 10, value_name = "N")]
    normal: usize,
    /// Number of abnormal scans.
    #[arg(long, default_value_t = 10, value_name = "N")]
    abnormal: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// In-plane size in voxels (MosMedData scans are 512).
    #[arg(long, default_value_t = 512, value_name = "N")]
    size_xy: usize,
    /// Fix the number of slices (default: drawn from 30 to 70 per scan, like MosMedData).
    #[arg(long, value_name = "N")]
    depth: Option<usize>,
    /// How hard the classes are to tell apart.
    #[arg(long, value_enum, default_value_t = DifficultyArg::Easy, value_name = "LEVEL")]
    difficulty: DifficultyArg,
    /// Also write each abnormal scan's ground-truth lesion mask (uint8 NIfTI, 1 where ground
    /// glass is, in the scan's voxel grid) as OUT/masks/<scan file name>, e.g. the mask of
    /// OUT/CT-23/phantom_0003.nii.gz is OUT/masks/phantom_0003.nii.gz. Normal scans get none.
    #[arg(long)]
    lesion_masks: bool,
}

/// `--difficulty easy|hard`: the flag's spelling of [`Difficulty`] (the library has no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DifficultyArg {
    /// The default phantoms: ground glass of -520…-330 HU over 20–65 % of the lungs (CT-2/CT-3),
    /// noise σ 10–20 HU, patients alike, 8 mm slices; easily separable.
    Easy,
    /// A harder benchmark: fainter ground glass (-700…-560 HU) in smaller clusters over 5–25 %
    /// of the lungs (CT-1-like), Gaussian noise σ 20–45 HU, patients of varied size (55–92 % of
    /// the field of view) and position, slices 8–10 mm apart.
    Hard,
}

impl From<DifficultyArg> for Difficulty {
    fn from(arg: DifficultyArg) -> Self {
        match arg {
            DifficultyArg::Easy => Difficulty::Easy,
            DifficultyArg::Hard => Difficulty::Hard,
        }
    }
}

impl SynthArgs {
    /// Writes the phantom dataset (and with --lesion-masks the masks) with a progress bar.
    pub fn run(self) -> Result<()> {
        let (out, normal, abnormal, seed) = (&self.out, self.normal, self.abnormal, self.seed);
        let difficulty = Difficulty::from(self.difficulty);
        let config = PhantomConfig::sized(self.size_xy, self.depth).with_difficulty(difficulty);
        config.validate()?;
        let started = Instant::now();
        let bar = progress::bar((normal + abnormal) as u64, "synth");
        let write_scan = |path: &Path, volume: &ct3d_volume::Volume| {
            nifti_io::write_volume(path, volume, OutputDtype::I16)
        };
        let (paths, masks) = if self.lesion_masks {
            let plan = DatasetPlan {
                normal,
                abnormal,
                seed,
                config: &config,
            };
            let written = synth::write_dataset_with_masks(
                out,
                &plan,
                write_scan,
                |path, mask| nifti_io::write_volume(path, mask, OutputDtype::U8),
                || bar.inc(1),
            )?;
            (written.scans, Some(written.masks))
        } else {
            let paths =
                synth::write_dataset(out, normal, abnormal, seed, &config, write_scan, || {
                    bar.inc(1)
                })?;
            (paths, None)
        };
        bar.finish_and_clear();
        // The easy phantoms' line stays as it was; other difficulties are named.
        let level = match self.difficulty {
            DifficultyArg::Easy => String::new(),
            DifficultyArg::Hard => ", hard".to_owned(),
        };
        println!(
            "wrote {} ({normal} CT-0, {abnormal} CT-23{level}, seed {seed}) to {} in {:.1}s",
            count(paths.len(), "phantom scan"),
            out.display(),
            started.elapsed().as_secs_f64()
        );
        if let Some(masks) = masks {
            println!(
                "wrote {} to {}",
                count(masks.len(), "lesion mask"),
                out.join(synth::MASK_FOLDER).display()
            );
        }
        Ok(())
    }
}

/// The flags of `ct3d cache` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,
}

/// `ct3d cache` actions.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Print the cache's entries and bytes, grouped by preprocessing size and HU window.
    Info {
        /// The cache folder (`prepare --cache`, by default DATA/.ct3d-cache).
        #[arg(value_name = "DIR")]
        cache: PathBuf,
    },
    /// Remove cache entries (all of them, or all but the sizes kept) and print what was freed.
    ///
    /// Only the cache's own entry files are removed; `prepare` or `train` rebuild any entry they
    /// need. Do not clean a cache that a running training reads from.
    Clean {
        /// The cache folder.
        #[arg(value_name = "DIR")]
        cache: PathBuf,
        /// Keep the entries of this preprocessing size (repeatable).
        #[arg(long, value_name = "W,H,D", value_parser = parse_size)]
        keep_size: Vec<[usize; 3]>,
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

impl CacheArgs {
    /// Prints what the cache holds, or removes entries.
    pub fn run(self) -> Result<()> {
        match self.action {
            CacheAction::Info { cache } => cache_info(&cache),
            CacheAction::Clean {
                cache,
                keep_size,
                dry_run,
            } => cache_clean(&cache, &keep_size, dry_run),
        }
    }
}

/// Runs `ct3d cache info`.
fn cache_info(dir: &Path) -> Result<()> {
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
fn cache_clean(dir: &Path, keep_sizes: &[[usize; 3]], dry_run: bool) -> Result<()> {
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
