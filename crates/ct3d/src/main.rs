//! `ct3d`: the command-line front end. Each subcommand parses its flags and calls one or two
//! public library functions; everything testable lives in the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ct3d::evaluate::{EvalSplit, WeightsChoice};
use ct3d::folds::FoldSpec;
use ct3d::run::{Classes, TrainConfig};
use ct3d::train::{DataSource, TrainRequest};
use ct3d_model::{AdamConfig, DeviceChoice, ExponentialDecay, ModelConfig};
use model_commands::PredictFormat;

mod commands;
mod fetch_commands;
mod huge_pages;
mod model_commands;
mod picture_commands;
mod progress;

#[global_allocator]
static ALLOCATOR: huge_pages::HugePageAllocator = huge_pages::HugePageAllocator;

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
    /// Accepts NIfTI-1 files (.nii, .nii.gz, or an Analyze-style .hdr/.img pair) and folders
    /// holding a DICOM series.
    Info {
        /// One or more scans.
        #[arg(required = true, value_name = "SCAN")]
        scans: Vec<PathBuf>,
        #[command(flatten)]
        series: SeriesArg,
    },
    /// Apply the Keras example's preprocessing to one scan and write the result.
    ///
    /// Steps, exactly as the example (scipy parity within 1e-5): clip HU to the window and scale
    /// to [0, 1]; rotate 90 degrees in the (x, y) plane (cubic spline); linear resize to --size.
    /// The output is a float32 NIfTI file.
    Preprocess {
        /// Input scan (.nii, .nii.gz, .hdr, or a DICOM series folder).
        #[arg(value_name = "SCAN")]
        scan: PathBuf,
        #[command(flatten)]
        series: SeriesArg,
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
        #[command(flatten)]
        data: DataArgs,
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
        #[command(flatten)]
        yes: YesArg,
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
    /// Train the Keras example's 3D CNN on a class-folder dataset or a CSV manifest.
    ///
    /// Scans are preprocessed through the `prepare` cache, split per class in sorted file-name
    /// order (first --split train, rest validation), augmented by random rotation on the fly, and
    /// trained with Adam and binary cross-entropy, validating every epoch. RUN receives
    /// config.json, history.csv, best/last weights (safetensors, Keras layer names) and the
    /// optimizer state. Defaults are the example's; with the same --seed two CPU runs give the same
    /// history, and a run killed at any moment continues with --resume to the same result.
    Train(TrainArgs),
    /// Cross-validate: train and evaluate all K folds of a stratified k-fold split.
    ///
    /// Fold I's run (DIR/fold-I) validates on fold I and trains on the others, with the train
    /// options given (same seed for all folds: it also draws the folds). Each fold's best weights
    /// are evaluated on its validation fold; the per-fold loss, accuracy, ROC AUC, sensitivity and
    /// specificity and their mean ± sample SD are printed and written to DIR/cv.json and
    /// DIR/cv.csv. Rerunning skips finished folds and resumes an interrupted one.
    Cv(CvArgs),
    /// Evaluate a trained run: loss, accuracy, ROC AUC, sensitivity, specificity, confusion matrix.
    Eval {
        /// The run folder written by `ct3d train`.
        #[arg(long, value_name = "RUN")]
        run: PathBuf,
        #[command(flatten)]
        data: EvalDataArgs,
        /// The other data's negative class folder (in a manifest: label name), when it differs
        /// from the run's (needs --data or --manifest).
        #[arg(long, value_name = "NAME", requires = "EvalDataArgs")]
        negative: Option<String>,
        /// The other data's positive class folder (in a manifest: label name), when it differs
        /// from the run's (needs --data or --manifest).
        #[arg(long, value_name = "NAME", requires = "EvalDataArgs")]
        positive: Option<String>,
        /// Which scans: the validation part (default for the run's own data) or all of them
        /// (default for other data).
        #[arg(long, value_enum)]
        split: Option<SplitArg>,
        /// Evaluate the run's recorded scans that are still there, as they are now: missing ones
        /// are left out and changed ones scored anyway (both listed), instead of refusing.
        #[arg(long, conflicts_with_all = ["data", "manifest"])]
        allow_changed_data: bool,
        /// Which weights.
        #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
        weights: WeightsArg,
        /// Print JSON (metrics and per-scan probabilities) instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write roc.png (ROC curve with AUC) and confusion.png into this folder (the line
        /// naming them goes to stdout, or to stderr with --json so that stdout stays pure JSON).
        #[arg(long, value_name = "DIR")]
        plots: Option<PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Predict raw scans with a trained run, printing the example's two sentences per scan.
    ///
    /// Scans are preprocessed with the run's recorded parameters. Folders are expanded to the scan
    /// files they hold. A scan that fails is reported (with --json/--csv: as an entry with an
    /// error) and the exit code is 1 after the others are predicted.
    Predict {
        /// The run folder written by `ct3d train`.
        #[arg(long, value_name = "RUN")]
        run: PathBuf,
        /// Scans or folders of scans (a folder holding DICOM files is one DICOM series).
        #[arg(required = true, value_name = "SCAN_OR_DIR")]
        scans: Vec<PathBuf>,
        #[command(flatten)]
        series: SeriesArg,
        /// Which weights.
        #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
        weights: WeightsArg,
        /// Print one JSON array instead of sentences.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (path,probability,class,error) instead of sentences.
        #[arg(long)]
        csv: bool,
        /// The inputs are already model-ready (`ct3d preprocess` output with the run's window and
        /// size): use them as they are, without windowing, rotating or resizing. Without it, such
        /// volumes are refused, since predicting them as raw scans gives meaningless answers.
        #[arg(long)]
        preprocessed: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Draw one axial slice of a scan as a grayscale PNG (the example's `plt.imshow(image[:, :, 30])`).
    ///
    /// The scan is preprocessed as for training (HU window, rotation, resize) unless --raw is
    /// given. Rows are the volume's x axis and columns its y axis, as imshow draws the array; the
    /// gray scale stretches the slice's minimum to black and maximum to white.
    Show {
        /// The scan (.nii, .nii.gz, .hdr, or a DICOM series folder).
        #[arg(value_name = "SCAN")]
        scan: PathBuf,
        /// Slice index along z, 0-based (the example shows slice 30).
        #[arg(long, default_value_t = 30)]
        slice: usize,
        /// Output picture: .png, or .jpg/.jpeg for a JPEG; written atomically.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        picture: PictureArgs,
        /// Each voxel becomes a SCALE×SCALE block of pixels.
        #[arg(long, default_value_t = 4, value_name = "SCALE")]
        scale: usize,
    },
    /// Draw a montage of consecutive slices, exactly as the example's `plot_slices` arranges them.
    ///
    /// Tiles run row by row from --first, without gaps; like the example's figure (which applies
    /// np.rot90 and np.transpose before reshaping), each tile is the slice mirrored left-right
    /// relative to `ct3d show`, and each tile's gray scale is stretched on its own.
    Montage {
        /// The scan (.nii, .nii.gz, .hdr, or a DICOM series folder).
        #[arg(value_name = "SCAN")]
        scan: PathBuf,
        /// Rows of tiles.
        #[arg(long, default_value_t = 4)]
        rows: usize,
        /// Columns of tiles.
        #[arg(long, default_value_t = 10)]
        cols: usize,
        /// First slice (0-based).
        #[arg(long, default_value_t = 0)]
        first: usize,
        /// Output picture: .png, or .jpg/.jpeg for a JPEG; written atomically.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        picture: PictureArgs,
        /// Each voxel becomes a SCALE×SCALE block of pixels.
        #[arg(long, default_value_t = 1, value_name = "SCALE")]
        scale: usize,
    },
    /// Plot a run's accuracy and loss per epoch, training vs validation (the example's figure).
    Plot {
        /// The run folder written by `ct3d train`.
        #[arg(value_name = "RUN")]
        run: PathBuf,
        /// Output picture (default: RUN/curves.png): .png, or .jpg/.jpeg for a JPEG; written
        /// atomically.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Write a self-contained HTML report of a run: configuration, data, curves, best epoch,
    /// validation metrics, ROC curve, confusion matrix, and montages of validation scans.
    ///
    /// Images are embedded, nothing is loaded from the network: the file can be shared or printed
    /// as it is. Evaluates the validation scans with the chosen weights.
    Report {
        /// The run folder written by `ct3d train`.
        #[arg(value_name = "RUN")]
        run: PathBuf,
        /// Output file (default: RUN/report.html); written atomically.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Which weights.
        #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
        weights: WeightsArg,
        /// Montages of correctly and of wrongly classified validation scans to include (each).
        #[arg(long, default_value_t = 2, value_name = "N")]
        examples: usize,
        /// Evaluate the run's recorded validation scans that are still there, as they are now:
        /// missing ones are left out and changed ones scored anyway (both listed), instead of
        /// refusing.
        #[arg(long)]
        allow_changed_data: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// See what a preprocessing cache holds, and free it: `ct3d cache info DIR`,
    /// `ct3d cache clean DIR [--keep-size W,H,D] [--dry-run]`.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Download a public dataset: `ct3d fetch mosmed --out DIR` gets the Keras example's scans.
    ///
    /// Resumable, verified (SHA-256) downloads, unpacked safely into class folders.
    Fetch {
        #[command(subcommand)]
        dataset: fetch_commands::FetchDataset,
    },
    /// Print the model's layers, output shapes and parameter counts, like Keras's model.summary().
    Summary {
        /// Input size W,H,D.
        #[arg(long, value_name = "W,H,D", default_value = "128,128,64", value_parser = commands::parse_size)]
        size: [usize; 3],
        #[command(flatten)]
        architecture: ArchitectureArgs,
    },
    /// Time one training step and one-scan inference on random data (warm-up excluded, median).
    Bench {
        /// Volumes per training step.
        #[arg(long, default_value_t = 2, value_parser = at_least_one())]
        batch: usize,
        /// Input size W,H,D.
        #[arg(long, value_name = "W,H,D", default_value = "128,128,64", value_parser = commands::parse_size)]
        size: [usize; 3],
        /// Timed repetitions of each measurement.
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        repeats: usize,
        /// First run the same weights and inputs on the CPU and on --device, print how far they
        /// differ, and fail if any difference exceeds 1e-3 of the CPU's largest value.
        #[arg(long)]
        check_cpu: bool,
        /// Run the CPU's convolution blocks on burn's generic ops instead of ct3d's fused
        /// kernels, to compare the two (the GPU always uses burn's ops).
        #[arg(long)]
        burn_ops: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Run the whole pipeline on synthetic phantoms and write a report.
    ///
    /// Synthesises a small phantom dataset (both classes) and two held-out scans, trains the
    /// example's model (at 48×48×48 for a few epochs: minutes on 2 CPU cores), evaluates it,
    /// predicts the held-out scans with the example's sentences, draws the pictures, and writes
    /// DIR/report.html. `--full` uses the example's own settings instead (hours on a CPU).
    Demo {
        /// Working folder for the demo's data, cache, run, pictures and report.
        #[arg(long, default_value = "ct3d-demo", value_name = "DIR")]
        out: PathBuf,
        /// The example's full settings: 100 + 100 phantoms of 512×512, input 128×128×64,
        /// learning rate 1e-4, up to 100 epochs with patience 15.
        #[arg(long)]
        full: bool,
        // The help is built from the demo's settings so that it cannot drift from them.
        #[arg(long, value_name = "N", help = commands::demo_epochs_help())]
        epochs: Option<usize>,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

/// `--weights best|last`: the flag's spelling of [`WeightsChoice`] (the library has no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WeightsArg {
    /// The epoch with the lowest validation loss (`best.safetensors`).
    Best,
    /// The last completed epoch (`last.safetensors`).
    Last,
}

impl From<WeightsArg> for WeightsChoice {
    fn from(arg: WeightsArg) -> Self {
        match arg {
            WeightsArg::Best => WeightsChoice::Best,
            WeightsArg::Last => WeightsChoice::Last,
        }
    }
}

/// `--split val|all`: the flag's spelling of [`EvalSplit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SplitArg {
    /// The run's validation part: the scans `config.json` records as validation (for other
    /// data: the run's split rule applied to it).
    Val,
    /// Every scan (of the run: every recorded scan).
    All,
}

impl From<SplitArg> for EvalSplit {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Val => EvalSplit::Val,
            SplitArg::All => EvalSplit::All,
        }
    }
}

/// A count that must be at least 1; clap refuses 0 with its usual "invalid value" error.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
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

/// How `show` and `montage` prepare the volume they draw.
#[derive(Debug, Args)]
struct PictureArgs {
    /// Draw the file's values as stored (HU, or an already preprocessed volume) instead of
    /// preprocessing it.
    #[arg(long, conflicts_with_all = ["size", "hu_window"])]
    raw: bool,
    /// Rotate each slice by DEG degrees after preprocessing, to see the training augmentation
    /// (it draws from -20, -10, -5, 5, 10, 20).
    #[arg(long, value_name = "DEG", allow_hyphen_values = true)]
    augment_angle: Option<f32>,
    #[command(flatten)]
    preprocess: PreprocessArgs,
    #[command(flatten)]
    series: SeriesArg,
}

/// `--series UID`: which DICOM series to read from a folder holding several.
#[derive(Debug, Args)]
struct SeriesArg {
    /// Read the DICOM series with this SeriesInstanceUID from a folder holding several (a folder
    /// with several series and no --series is an error listing them).
    #[arg(long = "series", value_name = "UID")]
    uid: Option<String>,
}

impl PictureArgs {
    fn source(self, scan: &std::path::Path) -> picture_commands::VolumeSource<'_> {
        picture_commands::VolumeSource {
            scan,
            preprocess: (!self.raw).then(|| self.preprocess.into_config()),
            augment_angle: self.augment_angle,
            series: self.series.uid,
        }
    }
}

/// Filters per conv block, parsed from one `N,N,...` value (a newtype so that clap treats the
/// list as one value: giving `--filters` twice is an error, not a silent append).
#[derive(Debug, Clone)]
struct Filters(Vec<usize>);

/// Where to compute.
#[derive(Debug, Args)]
struct DeviceArgs {
    /// cpu (pure-Rust, default), cuda or vulkan (GPU builds only: `--features cuda|vulkan`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    device: DeviceChoice,
}

/// Where the scans are: class folders or a CSV manifest (exactly one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DataArgs {
    /// Dataset folder with one sub-folder per class.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// CSV manifest instead of class folders: a header row, then path,label[,patient] per scan
    /// (paths relative to the CSV's folder; label 0/1 or the --negative/--positive name;
    /// k-fold keeps a patient's scans in one fold).
    #[arg(long, value_name = "FILE.csv")]
    manifest: Option<PathBuf>,
}

impl DataArgs {
    fn source(self) -> DataSource {
        match (self.data, self.manifest) {
            (_, Some(manifest)) => DataSource::Manifest(manifest),
            (Some(data), None) => DataSource::Folder(data),
            // The argument group requires one of them.
            (None, None) => DataSource::Folder(PathBuf::from(".")),
        }
    }
}

/// `ct3d train`'s options; defaults are the Keras example's.
#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Run folder to create (or continue with --resume).
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    /// k-fold cross-validation: split the scans into K stratified folds (a manifest's patients
    /// kept whole) and validate on --fold instead of the --split; needs --fold and --seed (the
    /// seed draws the folds). `ct3d cv` runs all K.
    #[arg(long, value_name = "K", requires_all = ["fold", "seed"], conflicts_with = "split")]
    folds: Option<usize>,
    /// The validation fold of --folds K, numbered 1 to K.
    #[arg(long, value_name = "I", requires = "folds")]
    fold: Option<usize>,
    /// Fraction of each class used for training (in sorted file-name order).
    #[arg(long, default_value_t = DEFAULT_TRAIN_FRACTION)]
    split: f64,
    #[command(flatten)]
    options: TrainOptions,
    /// Continue the run in --out from its last complete epoch with its recorded settings (a
    /// setting flag given with it must equal the recorded value; --epochs N extends the run).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace an existing run in --out: everything in the folder is removed (a non-empty folder
    /// that holds no ct3d run is refused).
    #[arg(long)]
    force: bool,
}

/// `ct3d cv`'s options.
#[derive(Debug, Args)]
struct CvArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Cross-validation folder: fold runs in DIR/fold-1 … DIR/fold-K, results in DIR/cv.json
    /// and DIR/cv.csv.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of folds, K (at least 2, at most the smaller class's scan count).
    #[arg(long, value_name = "K")]
    folds: usize,
    #[command(flatten)]
    options: TrainOptions,
    /// Retrain every fold, replacing the fold runs in DIR (default: finished folds are kept,
    /// interrupted ones resumed).
    #[arg(long)]
    force: bool,
}

/// Training hyper-parameters shared by `train` and `cv`; defaults are the Keras example's.
#[derive(Debug, Args)]
struct TrainOptions {
    /// Preprocessing cache folder (default: DATA/.ct3d-cache, or .ct3d-cache next to the
    /// manifest).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    #[command(flatten)]
    classes: ClassArgs,
    /// Word for the negative class in prediction sentences.
    #[arg(long, default_value = "normal", value_name = "WORD")]
    negative_name: String,
    /// Word for the positive class in prediction sentences.
    #[arg(long, default_value = "abnormal", value_name = "WORD")]
    positive_name: String,
    #[command(flatten)]
    preprocess: PreprocessArgs,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Volumes per training step.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Initial learning rate of Adam's exponential-decay schedule.
    #[arg(long, default_value_t = 1e-4)]
    learning_rate: f64,
    /// Steps per decay of the learning rate (staircase).
    #[arg(long, default_value_t = 100_000)]
    decay_steps: u64,
    /// Factor applied to the learning rate every --decay-steps steps.
    #[arg(long, default_value_t = 0.96)]
    decay_rate: f64,
    /// Stop after this many epochs without a better validation accuracy.
    #[arg(long, default_value_t = 15)]
    patience: usize,
    /// Seed for initialisation, shuffling, augmentation and dropout (default: random, recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// Train without the random-rotation augmentation.
    #[arg(long)]
    no_augment: bool,
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// Dropout rate after the dense layer.
    #[arg(long, default_value_t = 0.3)]
    dropout: f64,
    /// BatchNormalization momentum (Keras convention: weight of the old moving statistic). The
    /// example's 0.99 needs hundreds of steps to settle; short runs predict better with ~0.9.
    #[arg(long, default_value_t = 0.99, value_name = "M")]
    batch_norm_momentum: f64,
    #[command(flatten)]
    device: DeviceArgs,
    /// Leave out scans that cannot be read (they are listed) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    #[command(flatten)]
    yes: YesArg,
}

/// `--yes`: skip the check that the work fits in disk and memory.
#[derive(Debug, Args)]
struct YesArg {
    /// Start even if the cache would not fit on the disk or one training step (or the
    /// preparation) would not fit in the available memory (checked from the scans' headers and
    /// the model's layer sizes before anything is written).
    #[arg(long)]
    yes: bool,
}

/// `ct3d cache` actions.
#[derive(Debug, Subcommand)]
enum CacheAction {
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
        #[arg(long, value_name = "W,H,D", value_parser = commands::parse_size)]
        keep_size: Vec<[usize; 3]>,
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The network's shape, shared by `train`, `cv` and `summary`.
#[derive(Debug, Args)]
struct ArchitectureArgs {
    /// Filters of each conv block, one value per block: the example's 64,64,128,256 is four
    /// blocks; fewer values make a shallower network, more a deeper one; smaller is faster. Each
    /// --size axis needs at least 3·2^n − 2 voxels for n blocks (46 for four, 22 for three).
    #[arg(
        long,
        value_name = "N,N,...",
        default_value = "64,64,128,256",
        value_parser = commands::parse_filters
    )]
    filters: Filters,
    /// Units of the hidden dense layer.
    #[arg(long, default_value_t = 512)]
    dense: usize,
}

/// Training fraction of the default split (the example's 70/30); `cv` records it unchanged.
const DEFAULT_TRAIN_FRACTION: f64 = 0.7;

/// Other data to evaluate on (default: the run's own).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
struct EvalDataArgs {
    /// Data folder with one sub-folder per class (default: the run's own data).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// CSV manifest (path,label[,patient]) to evaluate on instead of a data folder.
    #[arg(long, value_name = "FILE.csv")]
    manifest: Option<PathBuf>,
}

impl EvalDataArgs {
    fn source(self) -> Option<DataSource> {
        match (self.data, self.manifest) {
            (_, Some(manifest)) => Some(DataSource::Manifest(manifest)),
            (Some(data), None) => Some(DataSource::Folder(data)),
            (None, None) => None,
        }
    }
}

/// Which class folders hold negatives and positives.
#[derive(Debug, Args)]
struct ClassArgs {
    /// Folder name of the negative (label 0) class (in a manifest: its label name, besides 0).
    #[arg(long, default_value = "CT-0", value_name = "NAME")]
    negative: String,
    /// Folder name of the positive (label 1) class (in a manifest: its label name, besides 1).
    #[arg(long, default_value = "CT-23", value_name = "NAME")]
    positive: String,
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    // Parsed in two steps to keep the matches: `train --resume` asks which flags were typed.
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Info { scans, series } => commands::info(&scans, series.uid.as_deref()),
        Command::Preprocess {
            scan,
            series,
            output,
            preprocess,
        } => commands::preprocess(
            &scan,
            &output,
            &preprocess.into_config(),
            series.uid.as_deref(),
        ),
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
            yes,
        } => {
            let (source, config) = (data.source(), preprocess.into_config());
            let workers = jobs.map_or_else(rayon::current_num_threads, |n| n.max(1));
            model_commands::check_resources(yes.yes, || {
                ct3d::resources::check_prepare(
                    &source,
                    &cache,
                    [&classes.negative, &classes.positive],
                    &config,
                    workers,
                )
            })
            .and_then(|()| {
                commands::prepare(
                    &source,
                    &cache,
                    &classes.negative,
                    &classes.positive,
                    &config,
                    skip_bad,
                    jobs,
                )
            })
        }
        Command::Synth {
            out,
            normal,
            abnormal,
            seed,
            size_xy,
            depth,
        } => commands::synth(&out, normal, abnormal, seed, size_xy, depth),
        Command::Train(args) => {
            if let (Some(count), Some(fold)) = (args.folds, args.fold)
                && let Err(error) = (FoldSpec { count, fold }).validate()
            {
                Cli::command()
                    .error(clap::error::ErrorKind::ValueValidation, error)
                    .exit();
            }
            let seed_was_chosen = args.options.seed.is_none();
            let yes = args.options.yes.yes;
            let mut request = args.into_request();
            if let Some(train) = matches.subcommand_matches("train") {
                request.given = model_commands::given_settings(train);
            }
            model_commands::check_resources(yes, || ct3d::resources::check_train(&request))
                .and_then(|()| model_commands::train(request, seed_was_chosen))
        }
        Command::Cv(args) => {
            if let Err(error) = (FoldSpec {
                count: args.folds,
                fold: 1,
            })
            .validate()
            {
                Cli::command()
                    .error(clap::error::ErrorKind::ValueValidation, error)
                    .exit();
            }
            let seed = args
                .options
                .seed
                .or_else(|| ct3d::cv::recorded_seed(&args.out));
            let seed_was_chosen = seed.is_none();
            let yes = args.options.yes.yes;
            let request = args.into_request(seed);
            model_commands::check_resources(yes, || ct3d::resources::check_cv(&request))
                .and_then(|()| model_commands::cv(request, seed_was_chosen))
        }
        Command::Eval {
            run,
            data,
            negative,
            positive,
            split,
            allow_changed_data,
            weights,
            json,
            plots,
            device,
        } => model_commands::eval(
            &run,
            data.source(),
            [negative, positive],
            split.map(EvalSplit::from),
            allow_changed_data,
            weights.into(),
            device.device,
            json,
            plots.as_deref(),
        ),
        Command::Predict {
            run,
            scans,
            series,
            weights,
            json,
            csv,
            preprocessed,
            device,
        } => {
            let format = if json {
                PredictFormat::Json
            } else if csv {
                PredictFormat::Csv
            } else {
                PredictFormat::Sentences
            };
            model_commands::predict(
                &run,
                &scans,
                weights.into(),
                device.device,
                format,
                series.uid.as_deref(),
                preprocessed,
            )
        }
        Command::Show {
            scan,
            slice,
            output,
            picture,
            scale,
        } => picture_commands::show(&picture.source(&scan), slice, scale, &output),
        Command::Montage {
            scan,
            rows,
            cols,
            first,
            output,
            picture,
            scale,
        } => picture_commands::montage(
            &picture.source(&scan),
            ct3d_plot::slices::MontageLayout { rows, cols, first },
            scale,
            &output,
        ),
        Command::Plot { run, output } => picture_commands::plot(&run, output),
        Command::Report {
            run,
            output,
            weights,
            examples,
            allow_changed_data,
            device,
        } => picture_commands::report(
            &run,
            output,
            weights.into(),
            device.device,
            &ct3d::report::ReportOptions {
                correct_examples: examples,
                wrong_examples: examples,
                allow_changed_data,
                ..Default::default()
            },
        )
        .map(|_| ()),
        Command::Cache { action } => match action {
            CacheAction::Info { cache } => commands::cache_info(&cache),
            CacheAction::Clean {
                cache,
                keep_size,
                dry_run,
            } => commands::cache_clean(&cache, &keep_size, dry_run),
        },
        Command::Fetch { dataset } => fetch_commands::fetch(dataset),
        Command::Summary { size, architecture } => model_commands::summary(ModelConfig {
            input: size,
            filters: architecture.filters.0,
            dense: architecture.dense,
            ..ModelConfig::default()
        }),
        Command::Bench {
            batch,
            size,
            repeats,
            check_cpu,
            burn_ops,
            device,
        } => {
            ct3d_model::ops::set_fused_cpu_kernels(!burn_ops);
            model_commands::bench(batch, size, device.device, repeats, check_cpu)
        }
        Command::Demo {
            out,
            full,
            epochs,
            device,
        } => commands::demo(&commands::DemoOptions {
            out,
            full,
            epochs,
            device: device.device,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line ("starting worker threads: …"), leaving out a cause
/// whose text is already there: most of our errors quote their cause in their own message.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
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

impl TrainOptions {
    /// The hyper-parameters, with `seed` (or a random one), `train_fraction` and no folds.
    fn config(&mut self, seed: Option<u64>, train_fraction: f64) -> TrainConfig {
        let preprocess = ct3d_volume::preprocess::PreprocessConfig {
            hu_min: self.preprocess.hu_window[0],
            hu_max: self.preprocess.hu_window[1],
            size: self.preprocess.size,
        };
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            schedule: ExponentialDecay {
                initial: self.learning_rate,
                decay_steps: self.decay_steps,
                rate: self.decay_rate,
                staircase: true,
            },
            adam: AdamConfig::default(),
            patience: self.patience,
            train_fraction,
            augment: (!self.no_augment).into(),
            seed: seed.unwrap_or_else(random_seed),
            model: ModelConfig {
                input: preprocess.size,
                filters: std::mem::take(&mut self.architecture.filters.0),
                dense: self.architecture.dense,
                dropout: self.dropout,
                batch_norm_momentum: self.batch_norm_momentum,
            },
            preprocess,
            classes: Classes {
                negative_folder: std::mem::take(&mut self.classes.negative),
                positive_folder: std::mem::take(&mut self.classes.positive),
                negative_name: std::mem::take(&mut self.negative_name),
                positive_name: std::mem::take(&mut self.positive_name),
            },
            folds: None,
        }
    }

    /// `--cache`, or the default next to the data (for a manifest: next to the manifest).
    fn cache(&self, source: &DataSource) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| ct3d::train::default_cache(&source.folder()))
    }
}

impl TrainArgs {
    fn into_request(mut self) -> TrainRequest {
        let mut config = self.options.config(self.options.seed, self.split);
        config.folds = self
            .folds
            .zip(self.fold)
            .map(|(count, fold)| FoldSpec { count, fold });
        let source = self.data.source();
        let cache = self.options.cache(&source);
        let (data, manifest) = match &source {
            DataSource::Folder(dir) => (dir.clone(), None),
            DataSource::Manifest(csv) => (source.folder(), Some(csv.clone())),
        };
        TrainRequest {
            cache,
            data,
            manifest,
            out: self.out,
            config,
            device: self.options.device.device,
            resume: self.resume,
            force: self.force,
            skip_bad: self.options.skip_bad,
            given: Vec::new(),
        }
    }
}

impl CvArgs {
    fn into_request(mut self, seed: Option<u64>) -> ct3d::cv::CvRequest {
        let config = self.options.config(seed, DEFAULT_TRAIN_FRACTION);
        let source = self.data.source();
        ct3d::cv::CvRequest {
            cache: self.options.cache(&source),
            source,
            out: self.out,
            config,
            folds: self.folds,
            device: self.options.device.device,
            force: self.force,
            skip_bad: self.options.skip_bad,
        }
    }
}

/// A seed from the clock and the process id, for runs without --seed (it is printed and recorded).
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Keep it short enough to type back in.
    ct3d_volume::rng::derive_seed(nanos, &[u64::from(std::process::id())]) % 1_000_000
}

/// Lets `ct3d predict ... | head` end quietly when the reader goes away, like other Unix tools,
/// instead of panicking on the failed write (Rust ignores SIGPIPE by default).
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; setting a signal's
    // disposition to SIG_DFL has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
