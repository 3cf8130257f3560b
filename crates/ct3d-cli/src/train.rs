//! `ct3d train` and `ct3d cv`: their flags, the console observer that draws the progress bars and
//! Keras-style epoch lines, and the Ctrl-C line that says how to resume.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use ct3d::config::{ClassWeight, Sampler, TrainParams};
use ct3d::folds::FoldSpec;
use ct3d::history::{EpochRecord, keras_line};
use ct3d::run::{Classes, ScheduleChange, TrainConfig};
use ct3d::train::{self, DataSource, TrainError, TrainObserver, TrainOutcome, TrainRequest};
use ct3d_model::{AdamConfig, ExponentialDecay, ModelParams};
use indicatif::ProgressBar;

use crate::args::{
    ArchitectureArgs, AugmentFlags, ClassArgs, DataArgs, DeviceArgs, PreprocessFlags, YesArg, count,
};
use crate::progress;

/// The flags of `ct3d train` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct TrainArgs {
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

/// The flags of `ct3d cv` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct CvArgs {
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
pub struct TrainOptions {
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
    preprocess: PreprocessFlags,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Volumes per training step.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Loss weight per class: `balanced` weighs each class n / (2 · n_class) over the training
    /// scans (scikit-learn's "balanced", as Keras's class_weight), so a rare class counts as much
    /// as a common one.
    #[arg(long, value_enum, default_value_t = ClassWeightArg::None, value_name = "WEIGHT")]
    class_weight: ClassWeightArg,
    /// Which scans an epoch visits: `shuffle` (each training scan once) or `balanced` (as many
    /// draws with replacement, each class half the time).
    #[arg(long, value_enum, default_value_t = SamplerArg::Shuffle, value_name = "SAMPLER")]
    sampler: SamplerArg,
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
    /// Train without augmentation (the default is the example's random rotation).
    #[arg(long, conflicts_with_all = ["augment", "augment_file"])]
    no_augment: bool,
    #[command(flatten)]
    augment: AugmentFlags,
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// Dropout rate after the dense layer (seed_cnn).
    #[arg(long, default_value_t = 0.3)]
    dropout: f64,
    /// Start from these weights instead of a random initialisation: a PyTorch state dict
    /// (.pth/.pt: MedicalNet's checkpoints or MONAI's names; resnets only; a head of another
    /// size is newly initialised) or another run's RUN/best.safetensors of the same --arch.
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Train only the head (the last layer) for the first N epochs, then everything.
    #[arg(long, default_value_t = 0, value_name = "N")]
    freeze_encoder_epochs: usize,
    /// BatchNormalization momentum (Keras convention: weight of the old moving statistic). The
    /// example's 0.99 needs hundreds of steps to settle; short runs predict better with ~0.9.
    #[arg(long, default_value_t = 0.99, value_name = "M")]
    batch_norm_momentum: f64,
    /// After every epoch, recompute the batch-norm statistics from the clean (un-augmented)
    /// training scans before validating ("precise BN"): steadier validation numbers and choice
    /// of the best epoch with small, augmented batches, for one extra forward pass over the
    /// training scans per epoch. Training steps are unchanged.
    #[arg(long)]
    recompute_batch_norm: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// Leave out scans that cannot be read (they are listed) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    #[command(flatten)]
    yes: YesArg,
}

/// `--class-weight`: the library's [`ClassWeight`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClassWeightArg {
    /// Every scan weighs 1 (the example).
    None,
    /// Each class weighs n / (2 · n_class).
    Balanced,
}

/// `--sampler`: the library's [`Sampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    /// Every training scan once per epoch, shuffled (the example).
    Shuffle,
    /// Class-balanced draws with replacement.
    Balanced,
}

/// Training fraction of the default split (the example's 70/30); `cv` records it unchanged.
const DEFAULT_TRAIN_FRACTION: f64 = 0.7;

/// Exits as clap does for an invalid value (usage error, exit code 2) unless `spec` is a valid
/// fold of a valid fold count.
fn exit_unless_valid(spec: FoldSpec) {
    if let Err(error) = spec.validate() {
        use clap::CommandFactory as _;
        crate::Cli::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                crate::flags::line(&error),
            )
            .exit();
    }
}

impl TrainArgs {
    /// Checks the folds and the resources, then trains. `matches` are `train`'s parsed flags:
    /// a resumed run refuses a typed setting that differs from the recorded one.
    pub fn run(self, matches: Option<&clap::ArgMatches>) -> Result<()> {
        if let (Some(count), Some(fold)) = (self.folds, self.fold) {
            exit_unless_valid(FoldSpec { count, fold });
        }
        let seed_was_chosen = self.options.seed.is_none();
        let yes = self.options.yes.yes;
        let mut request = self.into_request()?;
        let mut typed = Vec::new();
        if let Some(matches) = matches {
            request.given = given_settings(matches);
            typed = typed_flags(matches);
        }
        YesArg { yes }.check(|| ct3d::resources::check_train(&request))?;
        train(request, seed_was_chosen, &typed)
    }

    /// The library request of these flags (no resource check, no typed-flag comparison).
    pub(crate) fn into_request(mut self) -> Result<TrainRequest> {
        let folds = self
            .folds
            .zip(self.fold)
            .map(|(count, fold)| FoldSpec { count, fold });
        let config = self.options.config(self.options.seed, self.split, folds)?;
        let source = self.data.source();
        let cache = self.options.cache(&source);
        let (data, manifest) = match &source {
            DataSource::Folder(dir) => (dir.clone(), None),
            DataSource::Manifest(csv) => (source.folder(), Some(csv.clone())),
        };
        Ok(TrainRequest {
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
        })
    }
}

impl CvArgs {
    /// Checks the fold count and the resources, then cross-validates.
    pub fn run(self) -> Result<()> {
        exit_unless_valid(FoldSpec {
            count: self.folds,
            fold: 1,
        });
        let seed = self
            .options
            .seed
            .or_else(|| ct3d::cv::recorded_seed(&self.out));
        let seed_was_chosen = seed.is_none();
        let yes = self.options.yes.yes;
        let request = self.into_request(seed)?;
        YesArg { yes }.check(|| ct3d::resources::check_cv(&request))?;
        cv(request, seed_was_chosen)
    }

    fn into_request(mut self, seed: Option<u64>) -> Result<ct3d::cv::CvRequest> {
        let config = self.options.config(seed, DEFAULT_TRAIN_FRACTION, None)?;
        let source = self.data.source();
        Ok(ct3d::cv::CvRequest {
            cache: self.options.cache(&source),
            source,
            out: self.out,
            config,
            folds: self.folds,
            device: self.options.device.device,
            force: self.force,
            skip_bad: self.options.skip_bad,
        })
    }
}

impl TrainOptions {
    /// The hyper-parameters, with `seed` (or a random one), `train_fraction` and `folds`,
    /// checked (errors name the flags).
    fn config(
        &mut self,
        seed: Option<u64>,
        train_fraction: f64,
        folds: Option<FoldSpec>,
    ) -> Result<TrainConfig> {
        let params = TrainParams {
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
            augment: match self.augment.recipe()? {
                Some(list) => list,
                None => (!self.no_augment).into(),
            },
            seed: seed.unwrap_or_else(crate::random_seed),
            model: self.architecture.model_params(ModelParams {
                dropout: self.dropout,
                batch_norm_momentum: self.batch_norm_momentum,
                ..ModelParams::default()
            }),
            architecture: self.architecture.arch,
            init: self.init.take(),
            freeze_encoder_epochs: self.freeze_encoder_epochs,
            recompute_batch_norm: self.recompute_batch_norm,
            preprocess: self.preprocess.config()?,
            classes: Classes {
                negative_folder: std::mem::take(&mut self.classes.negative),
                positive_folder: std::mem::take(&mut self.classes.positive),
                negative_name: std::mem::take(&mut self.negative_name),
                positive_name: std::mem::take(&mut self.positive_name),
            },
            folds,
            class_weight: match self.class_weight {
                ClassWeightArg::None => ClassWeight::None,
                ClassWeightArg::Balanced => ClassWeight::Balanced,
            },
            sampler: match self.sampler {
                SamplerArg::Shuffle => Sampler::Shuffle,
                SamplerArg::Balanced => Sampler::Balanced,
            },
        };
        Ok(params.check()?)
    }

    /// `--cache`, or the default next to the data (for a manifest: next to the manifest).
    fn cache(&self, source: &DataSource) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| ct3d::train::default_cache(&source.folder()))
    }
}

/// Shows `train`'s progress: a bar while preparing, a bar per epoch, a Keras line per epoch.
pub struct ConsoleObserver {
    bar: Mutex<Option<ProgressBar>>,
    /// The seed to announce once training starts, when ct3d chose it.
    chosen_seed: Option<u64>,
    /// Plain progress lines when stderr is not a terminal (the bars are hidden there).
    plain: Option<progress::PlainProgress>,
    /// The run's number of epochs, once training started.
    epochs: AtomicUsize,
}

impl ConsoleObserver {
    /// A console observer; `chosen_seed` is announced when training starts.
    pub fn new(chosen_seed: Option<u64>) -> Self {
        Self {
            bar: Mutex::new(None),
            chosen_seed,
            plain: progress::PlainProgress::for_stderr(),
            epochs: AtomicUsize::new(0),
        }
    }

    fn with_bar(&self, len: usize, label: &str, f: impl FnOnce(&ProgressBar)) {
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = slot.get_or_insert_with(|| progress::bar(len as u64, label));
        if bar.length() != Some(len as u64) || bar.prefix() != label {
            bar.finish_and_clear();
            *bar = progress::bar(len as u64, label);
        }
        f(bar);
    }

    /// Removes the progress bar.
    pub fn clear(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl TrainObserver for ConsoleObserver {
    fn initialised(&self, file: &Path, report: &ct3d_model::pytorch::InitReport) {
        self.clear();
        println!("initialised from {}: {report}", file.display());
    }

    fn prepare_progress(&self, done: usize, total: usize) {
        self.with_bar(total, "prepare", |bar| bar.set_position(done as u64));
        if let Some(plain) = &self.plain {
            plain.step("prepare", |elapsed| {
                format!(
                    "prepare: {done}/{total} scans, {} s",
                    elapsed.as_secs_f64().round()
                )
            });
        }
        if done == total {
            self.clear();
        }
    }

    fn skipped(&self, error: &ct3d_volume::cache::CacheError) {
        eprintln!("skipped: {}", crate::flags::line(error));
    }

    fn started(&self, first_epoch: usize, epochs: usize, train: usize, validation: usize) {
        self.epochs.store(epochs, Ordering::Relaxed);
        if first_epoch > epochs {
            return;
        }
        if let Some(seed) = self.chosen_seed {
            println!("seed {seed} (chosen at random; pass --seed {seed} to repeat this run)");
        }
        let verb = if first_epoch > 1 {
            "resuming at"
        } else {
            "starting"
        };
        println!(
            "{train} training and {}; {verb} epoch {first_epoch}/{epochs}",
            count(validation, "validation scan")
        );
    }

    fn patient_split(&self, s: &ct3d::split::PatientSplitSummary) {
        println!(
            "split by patient: {} patients ({} scans) train, {} patients ({} scans) validation",
            s.train_patients, s.train_scans, s.validation_patients, s.validation_scans
        );
    }

    fn batch(&self, epoch: usize, done: usize, total: usize, loss: f64, acc: f64) {
        self.with_bar(total, &format!("epoch {epoch}"), |bar| {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4} acc {acc:.4}"));
        });
        if let Some(plain) = &self.plain {
            plain.step(&format!("epoch {epoch}"), |elapsed| {
                format!(
                    "epoch {epoch}/{}: batch {done}/{total}, loss {loss:.4}, acc {acc:.4}, {} s",
                    self.epochs.load(Ordering::Relaxed),
                    elapsed.as_secs_f64().round()
                )
            });
        }
    }

    fn schedule_changed(&self, change: &ScheduleChange) {
        let verb = if change.to > change.from {
            "extending"
        } else {
            "shortening"
        };
        println!(
            "{verb} the schedule from {} to {} epochs (recorded in config.json)",
            change.from, change.to
        );
    }

    fn epoch(&self, record: &EpochRecord, epochs: usize, data_wait: Duration) {
        self.clear();
        println!("{}", keras_line(record, epochs));
        tracing::debug!(
            "epoch {}: the model waited {:.3}s for data",
            record.epoch,
            data_wait.as_secs_f64()
        );
    }
}

/// The `train` options that set a recorded setting: clap's argument id, the flag, and the keys
/// of `config.json`'s `train` that it sets. A resumed run refuses such a flag, when typed, if its
/// value differs from the recorded one (`--epochs` changes the schedule instead).
pub const TRAIN_SETTINGS: &[(&str, &str, &[&str])] = &[
    ("epochs", "--epochs", &["epochs"]),
    ("batch_size", "--batch-size", &["batch_size"]),
    ("learning_rate", "--learning-rate", &["schedule.initial"]),
    ("decay_steps", "--decay-steps", &["schedule.decay_steps"]),
    ("decay_rate", "--decay-rate", &["schedule.rate"]),
    ("patience", "--patience", &["patience"]),
    ("split", "--split", &["train_fraction"]),
    ("seed", "--seed", &["seed"]),
    ("no_augment", "--no-augment", &["augment"]),
    ("augment", "--augment", &["augment"]),
    ("augment_file", "--augment-file", &["augment"]),
    ("arch", "--arch", &["architecture"]),
    ("filters", "--filters", &["model.filters"]),
    ("widths", "--widths", &["model.resnet.widths"]),
    ("shortcut", "--shortcut", &["model.resnet.shortcut"]),
    (
        "downsample_bias",
        "--downsample-bias",
        &["model.resnet.downsample_bias"],
    ),
    ("init", "--init", &["init"]),
    (
        "freeze_encoder_epochs",
        "--freeze-encoder-epochs",
        &["freeze_encoder_epochs"],
    ),
    ("dense", "--dense", &["model.dense"]),
    ("dropout", "--dropout", &["model.dropout"]),
    (
        "batch_norm_momentum",
        "--batch-norm-momentum",
        &["model.batch_norm_momentum"],
    ),
    (
        "recompute_batch_norm",
        "--recompute-batch-norm",
        &["recompute_batch_norm"],
    ),
    ("size", "--size", &["preprocess.size"]),
    (
        "hu_window",
        "--hu-window",
        &["preprocess.hu_min", "preprocess.hu_max"],
    ),
    ("negative", "--negative", &["classes.negative_folder"]),
    ("positive", "--positive", &["classes.positive_folder"]),
    (
        "negative_name",
        "--negative-name",
        &["classes.negative_name"],
    ),
    (
        "positive_name",
        "--positive-name",
        &["classes.positive_name"],
    ),
    ("folds", "--folds", &["folds"]),
    ("fold", "--fold", &["folds"]),
    ("class_weight", "--class-weight", &["class_weight"]),
    ("sampler", "--sampler", &["sampler"]),
];

/// The configuration keys of the settings typed on `train`'s command line (defaults and
/// unset options do not count).
pub fn given_settings(matches: &clap::ArgMatches) -> Vec<String> {
    let mut keys: Vec<String> = TRAIN_SETTINGS
        .iter()
        .filter(|(id, _, _)| {
            matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        })
        .flat_map(|(_, _, keys)| keys.iter().map(|key| (*key).to_owned()))
        .collect();
    keys.dedup();
    keys
}

/// The setting flags typed on `train`'s command line (`--augment`), as [`TRAIN_SETTINGS`] spells
/// them.
fn typed_flags(matches: &clap::ArgMatches) -> Vec<&'static str> {
    TRAIN_SETTINGS
        .iter()
        .filter(|(id, _, _)| {
            matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|(_, flag, _)| *flag)
        .collect()
}

/// Trains `request` with the console's progress and prints where the results are.
fn train(request: TrainRequest, seed_was_chosen: bool, typed: &[&str]) -> Result<()> {
    // Announced only once training really starts, not before a refusal.
    let chosen_seed = (seed_was_chosen && !request.resume).then_some(request.config.seed);
    let observer = ConsoleObserver::new(chosen_seed);
    on_interrupt(train_interrupted_message(&request));
    let outcome = train::train(&request, &observer);
    observer.clear();
    clear_interrupt_message();
    let outcome = match outcome {
        Err(TrainError::SettingChanged { run, change }) => {
            // Several flags set `augment`: name the one typed.
            let setting_flags = || {
                TRAIN_SETTINGS
                    .iter()
                    .filter(|(_, _, keys)| keys.contains(&change.key.as_str()))
            };
            let flag = setting_flags()
                .find(|(_, flag, _)| typed.contains(flag))
                .or_else(|| setting_flags().next())
                .map_or(change.key.as_str(), |(_, flag, _)| flag);
            bail!(
                "{}: {flag} {} differs from the recorded {} ({} in config.json); a resumed run \
                 keeps its settings: leave out {flag}, or start a new run with --force",
                run.display(),
                change.given,
                change.recorded,
                change.key
            );
        }
        other => other?,
    };
    print_outcome(&outcome);
    Ok(())
}

/// What `train` prints once training ends: scans left out, the data pipeline's wait, the best
/// epoch and where the run is.
pub fn print_outcome(outcome: &TrainOutcome) {
    if !outcome.skipped.is_empty() {
        println!(
            "left out {}:",
            count(outcome.skipped.len(), "unreadable scan")
        );
        for line in &outcome.skipped {
            println!("  {line}");
        }
    }
    let trained_seconds: f64 = outcome
        .history
        .iter()
        .skip(outcome.history.len() - outcome.epochs_run)
        .map(|r| r.seconds)
        .sum();
    if outcome.epochs_run > 0 {
        println!(
            "data pipeline: the model waited {:.2} s for batches over {} ({:.2}% of {:.1} s)",
            outcome.data_wait.as_secs_f64(),
            count(outcome.epochs_run, "epoch"),
            100.0 * outcome.data_wait.as_secs_f64() / trained_seconds.max(1e-9),
            trained_seconds
        );
    }
    let best = outcome
        .history
        .iter()
        .find(|r| r.epoch == outcome.best_epoch);
    match best {
        Some(best) => println!(
            "{} after {}; best val_loss {:.4} (val_acc {:.4}) at epoch {}; run in {}",
            outcome.finished,
            count(outcome.history.len(), "epoch"),
            best.val_loss,
            best.val_acc,
            best.epoch,
            outcome.run.display()
        ),
        None => println!("{}; run in {}", outcome.finished, outcome.run.display()),
    }
}

/// Builds the line Ctrl-C prints, at the moment it is pressed.
type InterruptMessage = Box<dyn Fn() -> String + Send>;

/// What Ctrl-C prints while a run is being written; `None` otherwise.
static INTERRUPT_MESSAGE: Mutex<Option<InterruptMessage>> = Mutex::new(None);

/// From now on, Ctrl-C (SIGINT) prints `message` on stderr and exits with 130 (the shell's code
/// for SIGINT). Nothing needs cleaning up: every run file is committed atomically, so the
/// folder is left as after `kill -9`, which `--resume` continues.
fn on_interrupt(message: InterruptMessage) {
    *INTERRUPT_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    #[cfg(unix)]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(install_interrupt_handler);
    }
}

/// Watches for SIGINT on a thread of its own; the signal handler itself only wakes that thread
/// (signal-hook's self-pipe), which then may print and exit freely.
#[cfg(unix)]
fn install_interrupt_handler() {
    let watch = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]).and_then(
        |mut signals| {
            std::thread::Builder::new()
                .name("ctrl-c".into())
                .spawn(move || {
                    if signals.forever().next().is_some() {
                        let message = INTERRUPT_MESSAGE
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                            .map(|message| message());
                        if let Some(message) = message {
                            // Below a progress bar's line on a terminal.
                            if std::io::stderr().is_terminal() {
                                eprintln!();
                            }
                            eprintln!("{message}");
                        }
                        std::process::exit(130);
                    }
                })
        },
    );
    if let Err(error) = watch {
        tracing::warn!("Ctrl-C will not print how to resume: {error}");
    }
}

fn clear_interrupt_message() {
    *INTERRUPT_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The Ctrl-C line of `train`: how to continue the run, or that it had not been recorded yet.
fn train_interrupted_message(request: &TrainRequest) -> InterruptMessage {
    let run = request.out.clone();
    let source = request.manifest.clone().map_or_else(
        || DataSource::Folder(request.data.clone()),
        DataSource::Manifest,
    );
    let mut command = match &source {
        DataSource::Folder(dir) => format!("ct3d train --data {}", shell_word(dir)),
        DataSource::Manifest(csv) => format!("ct3d train --manifest {}", shell_word(csv)),
    };
    if request.cache != train::default_cache(&source.folder()) {
        command.push_str(&format!(" --cache {}", shell_word(&request.cache)));
    }
    command.push_str(&format!(" --out {} --resume", shell_word(&run)));
    Box::new(move || {
        if run.join("config.json").exists() {
            format!(
                "interrupted: the run in {} keeps its completed epochs; continue it with: {command}",
                run.display()
            )
        } else {
            format!(
                "interrupted before the run in {} was recorded; nothing to resume: start it again",
                run.display()
            )
        }
    })
}

/// `path` as one shell word: quoted when it holds anything but plain path characters.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Shows `cv`'s progress: a header per fold, then its training (as `train` shows it) and its
/// validation metrics.
struct CvConsole;

impl ct3d::cv::CvObserver for CvConsole {
    fn fold_started(&self, fold: usize, folds: usize, run: &Path, start: ct3d::cv::FoldStart) {
        let what = match start {
            ct3d::cv::FoldStart::New => "training",
            ct3d::cv::FoldStart::Resumed => "resuming",
            ct3d::cv::FoldStart::Finished => "already trained, evaluating",
        };
        println!("\n== fold {fold}/{folds}: {what} ({})", run.display());
    }

    fn fold_finished(&self, result: &ct3d::cv::FoldResult, folds: usize) {
        let m = &result.metrics;
        println!(
            "fold {}/{folds}: {}, best epoch {} of {}: loss {:.4}, accuracy {:.4}, AUC {}",
            result.fold,
            count(result.validation_scans, "validation scan"),
            result.best_epoch,
            result.epochs,
            m.loss,
            m.accuracy,
            m.auc.map_or("n/a".to_owned(), |v| format!("{v:.4}"))
        );
    }
}

/// Runs `ct3d cv` and prints the per-fold table with mean ± SD.
fn cv(request: ct3d::cv::CvRequest, seed_was_chosen: bool) -> Result<()> {
    if seed_was_chosen {
        let seed = request.config.seed;
        println!("seed {seed} (chosen at random; pass --seed {seed} to repeat these folds)");
    }
    println!(
        "{}-fold cross-validation (seed {}) into {}",
        request.folds,
        request.config.seed,
        request.out.display()
    );
    let observer = ConsoleObserver::new(None);
    let out = request.out.clone();
    on_interrupt(Box::new(move || {
        format!(
            "interrupted: finished folds in {} are kept; run the same `ct3d cv` command again \
             to continue (the interrupted fold resumes)",
            out.display()
        )
    }));
    let summary = ct3d::cv::run_cross_validation(&request, &observer, &CvConsole);
    observer.clear();
    clear_interrupt_message();
    let summary = summary?;
    println!("\n{}", cv_table(&summary));
    println!(
        "wrote {} and {}",
        request.out.join("cv.json").display(),
        request.out.join("cv.csv").display()
    );
    Ok(())
}

/// The per-fold table and its mean ± SD line.
fn cv_table(summary: &ct3d::cv::CvSummary) -> String {
    use std::fmt::Write as _;
    let opt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<10} {:>6} {:>6} {:>5} {:>8} {:>9} {:>8} {:>12} {:>12}",
        "fold", "train", "val", "best", "loss", "accuracy", "AUC", "sensitivity", "specificity"
    );
    for f in &summary.per_fold {
        let m = &f.metrics;
        let _ = writeln!(
            t,
            "{:<10} {:>6} {:>6} {:>5} {:>8.4} {:>9.4} {:>8} {:>12} {:>12}",
            f.fold,
            f.train_scans,
            f.validation_scans,
            f.best_epoch,
            m.loss,
            m.accuracy,
            opt(m.auc),
            opt(m.sensitivity),
            opt(m.specificity)
        );
    }
    let m = &summary.mean;
    let cell = |v: Option<ct3d::cv::MeanSd>| match v {
        Some(v) => match v.sd {
            Some(sd) => format!("{:.4} ± {sd:.4}", v.mean),
            None => format!("{:.4}", v.mean),
        },
        None => "n/a".to_owned(),
    };
    let _ = writeln!(t, "mean ± SD (sample, n − 1) over {} folds:", summary.folds);
    for (name, value) in [
        ("loss", m.loss),
        ("accuracy", m.accuracy),
        ("AUC", m.auc),
        ("sensitivity", m.sensitivity),
        ("specificity", m.specificity),
    ] {
        let _ = writeln!(t, "  {name:<12} {}", cell(value));
    }
    if let Some(p) = &summary.pooled {
        let ci = |i: Option<ct3d::metrics::Interval>| {
            i.map_or(String::new(), |i| {
                format!("  (95% CI {:.4}–{:.4})", i.lower, i.upper)
            })
        };
        let intervals = p.intervals.as_ref();
        let _ = writeln!(
            t,
            "pooled out-of-fold predictions ({} scans, each scored by the fold that did not train \
             on it):",
            p.count
        );
        let _ = writeln!(
            t,
            "  {:<12} {:.4}{}",
            "accuracy",
            p.accuracy,
            ci(intervals.and_then(|i| i.accuracy))
        );
        let delong = intervals
            .and_then(|i| i.auc_delong)
            .map(|d| ct3d::metrics::Interval {
                lower: d.lower,
                upper: d.upper,
            });
        for (name, value, interval) in [
            ("AUC", p.auc, delong),
            (
                "sensitivity",
                p.sensitivity,
                intervals.and_then(|i| i.sensitivity),
            ),
            (
                "specificity",
                p.specificity,
                intervals.and_then(|i| i.specificity),
            ),
        ] {
            let _ = writeln!(t, "  {name:<12} {}{}", opt(value), ci(interval));
        }
        let _ = writeln!(
            t,
            "  (stratified bootstrap, 2000 resamples; AUC: DeLong's interval)"
        );
    }
    t.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_settings_name_train_flags_and_config_keys() {
        use clap::CommandFactory as _;
        let cli = crate::Cli::command();
        let train = cli.find_subcommand("train").unwrap();
        // Every optional setting set, so that each key is written.
        let config = TrainParams {
            folds: Some(ct3d::folds::FoldSpec { count: 2, fold: 1 }),
            model: ModelParams {
                resnet: Some(Default::default()),
                ..ModelParams::default()
            },
            architecture: ct3d_model::Architecture::Resnet10,
            init: Some("weights.pth".into()),
            freeze_encoder_epochs: 1,
            recompute_batch_norm: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        let json = serde_json::to_value(config).unwrap();
        for (id, flag, keys) in TRAIN_SETTINGS {
            let arg = train
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .unwrap_or_else(|| panic!("train has no argument {id}"));
            assert_eq!(format!("--{}", arg.get_long().unwrap()), *flag);
            for key in *keys {
                let pointer = format!("/{}", key.replace('.', "/"));
                assert!(
                    json.pointer(&pointer).is_some(),
                    "{key} is not a config key"
                );
            }
        }
    }

    #[test]
    fn only_typed_flags_are_given_settings() {
        use clap::CommandFactory as _;
        let given = |args: &[&str]| {
            let base = ["ct3d", "train", "--data", "d", "--out", "r", "--resume"];
            let matches = crate::Cli::command()
                .try_get_matches_from(base.iter().chain(args))
                .unwrap();
            given_settings(matches.subcommand_matches("train").unwrap())
        };
        assert!(given(&[]).is_empty(), "defaults are not given");
        assert_eq!(
            given(&["--learning-rate", "0.5", "--epochs", "3", "--no-augment"]),
            ["epochs", "schedule.initial", "augment"]
        );
        assert_eq!(
            given(&["--augment", "flip", "--augment-file", "r.toml"]),
            ["augment"]
        );
        assert_eq!(
            given(&["--hu-window", "-900,400"]),
            ["preprocess.hu_min", "preprocess.hu_max"]
        );
    }
}
