//! `ct3d`: the command-line front end. Each subcommand parses its flags and calls one or two
//! public library functions; everything testable lives in the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod commands;
mod progress;

/// Train and run 3D convolutional networks on CT volumes.
///
/// ct3d reproduces the Keras example "3D image classification from CT scans" number for number
/// (scipy-exact preprocessing, the same 3D CNN) and goes further: faster, reproducible, with
/// synthetic phantoms to try everything without downloading data.
///
/// Quick start:  ct3d demo
#[derive(Debug, Parser)]
#[command(name = "ct3d", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a scan's shape, datatype, voxel spacing, orientation and HU statistics.
    ///
    /// Accepts NIfTI-1 files: .nii, .nii.gz, or an Analyze-style .hdr/.img pair.
    Info {
        /// One or more scans.
        #[arg(required = true, value_name = "SCAN")]
        scans: Vec<PathBuf>,
    },
    /// Apply the Keras example's preprocessing to one scan and write the result.
    ///
    /// Steps, exactly as the example (scipy parity within 1e-5): clip HU to the window and scale
    /// to [0, 1]; rotate 90 degrees in the (x, y) plane (cubic spline); linear resize to --size.
    /// The output is a float32 NIfTI file.
    Preprocess {
        /// Input scan (.nii, .nii.gz, .hdr).
        #[arg(value_name = "SCAN")]
        scan: PathBuf,
        /// Output file (.nii or .nii.gz); written atomically.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        preprocess: PreprocessArgs,
    },
    /// Rotate every axial slice of a volume by a fixed angle, as the training augmentation does.
    ///
    /// Cubic-spline rotation in the (x, y) plane (scipy's ndimage.rotate, reshape=False), points
    /// from outside the slice become 0, then values are clipped to [0, 1]. Training draws the angle
    /// from {-20, -10, -5, 5, 10, 20}; here you choose it, e.g. to look at the augmentation.
    Rotate {
        /// Input volume, usually the output of `ct3d preprocess`.
        #[arg(value_name = "VOLUME")]
        volume: PathBuf,
        /// Output file (.nii or .nii.gz); written atomically.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Rotation angle in degrees (counter-clockwise as scipy's rotate with axes=(1, 0)).
        #[arg(long, allow_hyphen_values = true)]
        angle: f64,
    },
    /// Preprocess a class-folder dataset into a cache, in parallel.
    ///
    /// DATA holds one folder per class (by default CT-0 = normal, CT-23 = abnormal). Results are
    /// cached by file content and preprocessing parameters: a second run is near-instant, and a
    /// changed file or parameter is recomputed, never served stale.
    Prepare {
        /// Dataset folder with one sub-folder per class.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Cache folder (created if missing).
        #[arg(long, value_name = "DIR")]
        cache: PathBuf,
        #[command(flatten)]
        classes: ClassArgs,
        #[command(flatten)]
        preprocess: PreprocessArgs,
        /// Keep going past scans that fail to read; list them at the end.
        #[arg(long)]
        skip_bad: bool,
        /// Worker threads (default: all cores).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
    },
    /// Write synthetic phantom chest CT scans (int16 HU NIfTI) as a class-folder dataset.
    ///
    /// Normal scans (CT-0) have clear lungs; abnormal ones (CT-23) carry ground-glass opacities.
    /// Deterministic: the same --seed gives byte-identical files.
    Synth {
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
    },
    /// Run the whole pipeline on synthetic phantoms: synthesise, prepare, summarise.
    Demo {
        /// Working folder for the demo's data, cache and outputs.
        #[arg(long, default_value = "ct3d-demo", value_name = "DIR")]
        out: PathBuf,
    },
}

/// Preprocessing parameters shared by `preprocess` and `prepare`.
#[derive(Debug, Args)]
struct PreprocessArgs {
    /// Output size in voxels as W,H,D (the example uses 128,128,64).
    #[arg(long, value_name = "W,H,D", default_value = "128,128,64", value_parser = commands::parse_size)]
    size: [usize; 3],
    /// Hounsfield window as MIN,MAX; values outside are clipped, then scaled to [0, 1].
    #[arg(long, value_name = "MIN,MAX", default_value = "-1000,400", value_parser = commands::parse_window, allow_hyphen_values = true)]
    hu_window: [f32; 2],
}

/// Which class folders hold negatives and positives.
#[derive(Debug, Args)]
struct ClassArgs {
    /// Folder name of the negative (label 0) class.
    #[arg(long, default_value = "CT-0", value_name = "NAME")]
    negative: String,
    /// Folder name of the positive (label 1) class.
    #[arg(long, default_value = "CT-23", value_name = "NAME")]
    positive: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Info { scans } => commands::info(&scans),
        Command::Preprocess {
            scan,
            output,
            preprocess,
        } => commands::preprocess(&scan, &output, &preprocess.into_config()),
        Command::Rotate {
            volume,
            output,
            angle,
        } => commands::rotate(&volume, &output, angle),
        Command::Prepare {
            data,
            cache,
            classes,
            preprocess,
            skip_bad,
            jobs,
        } => commands::prepare(
            &data,
            &cache,
            &classes.negative,
            &classes.positive,
            &preprocess.into_config(),
            skip_bad,
            jobs,
        ),
        Command::Synth {
            out,
            normal,
            abnormal,
            seed,
            size_xy,
            depth,
        } => commands::synth(&out, normal, abnormal, seed, size_xy, depth),
        Command::Demo { out } => commands::demo(&out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the error chain on one line: "reading a.nii.gz: truncated gzip stream".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl PreprocessArgs {
    fn into_config(self) -> ct3d_volume::preprocess::PreprocessConfig {
        ct3d_volume::preprocess::PreprocessConfig {
            hu_min: self.hu_window[0],
            hu_max: self.hu_window[1],
            size: self.size,
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
