//! The model subcommands (`train`, `eval`, `predict`, `summary`, `bench`): printing and progress
//! around `ct3d::train`, `ct3d::evaluate` and `ct3d_model`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use ct3d::evaluate::{self, EvalSplit, WeightsChoice, prediction_sentences};
use ct3d::history::{EpochRecord, keras_line};
use ct3d::run::ScheduleChange;
use ct3d::train::{self, DataSource, TrainError, TrainObserver, TrainRequest};
use ct3d_model::bench::{Timing, bench_predict, bench_train_step};
use ct3d_model::{Architecture, DeviceChoice, ModelConfig};
use indicatif::ProgressBar;

use crate::commands::count;
use crate::progress;

/// Shows `train`'s progress: a bar while preparing, a bar per epoch, a Keras line per epoch.
struct ConsoleObserver {
    bar: Mutex<Option<ProgressBar>>,
    /// The seed to announce once training starts, when ct3d chose it.
    chosen_seed: Option<u64>,
    /// Plain progress lines when stderr is not a terminal (the bars are hidden there).
    plain: Option<progress::PlainProgress>,
    /// The run's number of epochs, once training started.
    epochs: AtomicUsize,
}

impl ConsoleObserver {
    fn new(chosen_seed: Option<u64>) -> Self {
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

    fn clear(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl TrainObserver for ConsoleObserver {
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

    fn skipped(&self, error: &str) {
        eprintln!("skipped: {error}");
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
    ("filters", "--filters", &["model.filters"]),
    ("dense", "--dense", &["model.dense"]),
    ("dropout", "--dropout", &["model.dropout"]),
    (
        "batch_norm_momentum",
        "--batch-norm-momentum",
        &["model.batch_norm_momentum"],
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

/// Runs `check` (a [`ct3d::resources`] check) unless `yes` (the user's `--yes`) skips it.
pub fn check_resources(
    yes: bool,
    check: impl FnOnce() -> Result<(), ct3d::resources::ResourceError>,
) -> Result<()> {
    if !yes {
        check()?;
    }
    Ok(())
}

/// Runs `ct3d train` and prints where the results are.
pub fn train(request: TrainRequest, seed_was_chosen: bool) -> Result<()> {
    // Announced only once training really starts, not before a refusal.
    let chosen_seed = (seed_was_chosen && !request.resume).then_some(request.config.seed);
    let observer = ConsoleObserver::new(chosen_seed);
    on_interrupt(train_interrupted_message(&request));
    let outcome = train::train(&request, &observer);
    observer.clear();
    clear_interrupt_message();
    let outcome = match outcome {
        Err(TrainError::SettingChanged { run, change }) => {
            let flag = TRAIN_SETTINGS
                .iter()
                .find(|(_, _, keys)| keys.contains(&change.key.as_str()))
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
    Ok(())
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
pub fn cv(request: ct3d::cv::CvRequest, seed_was_chosen: bool) -> Result<()> {
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
    t.trim_end().to_owned()
}

/// The one-line refusal of a run whose recorded scans are missing or changed, naming the flag
/// that evaluates what is there; other errors as they are.
pub fn name_data_override(error: TrainError) -> anyhow::Error {
    use ct3d::evaluate::RecordedDataError;
    match error {
        TrainError::RecordedData(
            e @ (RecordedDataError::Missing { .. } | RecordedDataError::Changed { .. }),
        ) => anyhow::anyhow!(
            "{e}; pass --allow-changed-data to evaluate the recorded scans that are there, as \
             they are now"
        ),
        e => e.into(),
    }
}

/// Warns on stderr about recorded scans that an evaluation left out or scored as changed.
pub fn warn_changed_data(evaluation: &ct3d::evaluate::Evaluation) {
    for (paths, one, many) in [
        (
            &evaluation.missing,
            "recorded scan is missing, left out of the evaluation",
            "recorded scans are missing, left out of the evaluation",
        ),
        (
            &evaluation.changed,
            "recorded scan changed since training, evaluated as it is now",
            "recorded scans changed since training, evaluated as they are now",
        ),
    ] {
        if !paths.is_empty() {
            let what = if paths.len() == 1 { one } else { many };
            eprintln!("warning: {} {what}:", paths.len());
            for path in paths {
                eprintln!("  {}", path.display());
            }
        }
    }
}

/// Runs `ct3d eval`.
#[allow(clippy::too_many_arguments)]
pub fn eval(
    run: &Path,
    data: Option<ct3d::train::DataSource>,
    folders: [Option<String>; 2],
    split: Option<EvalSplit>,
    allow_changed_data: bool,
    weights: WeightsChoice,
    device: DeviceChoice,
    json: bool,
    plots: Option<&Path>,
) -> Result<()> {
    let loaded = evaluate::load_run(run, weights, device)?;
    // Other data than the run's own is evaluated whole by default: it has no training part.
    let split = split.unwrap_or(if data.is_some() {
        EvalSplit::All
    } else {
        EvalSplit::Val
    });
    let evaluation = match data {
        Some(data) => evaluate::evaluate_other(&loaded, &data, folders, split)?,
        None => evaluate::evaluate_recorded(&loaded, split, allow_changed_data)
            .map_err(name_data_override)?,
    };
    warn_changed_data(&evaluation);
    if let Some(dir) = plots {
        let [roc, confusion] = ct3d::pictures::write_evaluation_pictures(
            &evaluation,
            &loaded.config.train.classes,
            dir,
        )?;
        // Like every command, the "wrote" line goes to stdout, except with --json: stdout then
        // holds nothing but the JSON document.
        let wrote = format!("wrote {} and {}", roc.display(), confusion.display());
        if json {
            eprintln!("{wrote}");
        } else {
            println!("{wrote}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
        return Ok(());
    }
    let m = &evaluation.metrics;
    let classes = &loaded.config.train.classes;
    let rate = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
    let which = match (evaluation.data.strip_prefix("other: "), split) {
        (Some(other), _) => format!(
            "of other data ({other}), not the run's recorded validation scans ({} split)",
            evaluation.split
        ),
        (None, EvalSplit::Val) => "(val split: the run's recorded validation scans)".to_owned(),
        (None, EvalSplit::All) => "(all split: every scan the run recorded)".to_owned(),
    };
    println!(
        "{} {which}, {} weights",
        count(m.count, "scan"),
        match weights {
            WeightsChoice::Best => "best",
            WeightsChoice::Last => "last",
        }
    );
    println!("  loss         {:.4}", m.loss);
    println!("  accuracy     {:.4}", m.accuracy);
    println!("  ROC AUC      {}", rate(m.auc));
    println!("  sensitivity  {}", rate(m.sensitivity));
    println!("  specificity  {}", rate(m.specificity));
    let c = &m.confusion;
    let width = classes
        .negative_name
        .len()
        .max(classes.positive_name.len())
        .max(6);
    println!("  confusion (rows: true, columns: predicted)");
    println!(
        "    {:width$}  {:>width$}  {:>width$}",
        "", classes.negative_name, classes.positive_name
    );
    println!(
        "    {:width$}  {:>width$}  {:>width$}",
        classes.negative_name, c.true_negative, c.false_positive
    );
    println!(
        "    {:width$}  {:>width$}  {:>width$}",
        classes.positive_name, c.false_negative, c.true_positive
    );
    Ok(())
}

/// Output format of `ct3d predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictFormat {
    /// The example's two sentences per scan.
    Sentences,
    /// One JSON array.
    Json,
    /// CSV with a header.
    Csv,
}

/// One line of `predict --json`/`--csv`: a prediction, or the scan's error (probability and
/// class then null/empty).
#[derive(Debug, serde::Serialize)]
struct PredictRow {
    path: PathBuf,
    probability: Option<f32>,
    class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `ct3d predict`. Scans that fail are listed (sentences: an `error:` line on stderr;
/// JSON/CSV: an entry with its error) and make the exit code 1 once every scan has been tried.
/// With `preprocessed`, the inputs are model-ready volumes used as they are.
pub fn predict(
    run: &Path,
    inputs: &[PathBuf],
    weights: WeightsChoice,
    device: DeviceChoice,
    format: PredictFormat,
    series: Option<&str>,
    preprocessed: bool,
) -> Result<()> {
    let loaded = evaluate::load_run(run, weights, device)?;
    let scans = evaluate::expand_inputs(inputs);
    if scans.is_empty() {
        bail!("{}", no_scans_message(run, inputs));
    }
    let classes = &loaded.config.train.classes;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scan in &scans {
        let prediction = if preprocessed {
            evaluate::predict_model_ready(&loaded, scan, series)
        } else {
            evaluate::predict_scan_series(&loaded, scan, series)
        };
        match prediction {
            Ok(p) => {
                if format == PredictFormat::Sentences {
                    if scans.len() > 1 {
                        println!("{}:", scan.display());
                    }
                    for line in prediction_sentences(
                        p.probability,
                        &classes.negative_name,
                        &classes.positive_name,
                    ) {
                        println!("{line}");
                    }
                }
                rows.push(PredictRow {
                    path: p.path,
                    probability: Some(p.probability),
                    class: Some(p.class),
                    error: None,
                });
            }
            // A single scan in sentences mode: its error is the command's one error line.
            Err(err) if format == PredictFormat::Sentences && scans.len() == 1 => {
                return Err(err.into());
            }
            Err(err) => {
                let message = err.to_string();
                if format == PredictFormat::Sentences {
                    eprintln!("error: {message}");
                }
                rows.push(PredictRow {
                    path: scan.clone(),
                    probability: None,
                    class: None,
                    error: Some(message.clone()),
                });
                failures.push(message);
            }
        }
    }
    match format {
        PredictFormat::Sentences => {}
        PredictFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        PredictFormat::Csv => print!("{}", predict_csv(&rows)?),
    }
    match failures.as_slice() {
        [] => Ok(()),
        // The entry already holds it; stderr still gets the one error line.
        [only] if scans.len() == 1 => bail!("{only}"),
        _ => bail!(
            "{} of {} scans could not be predicted",
            failures.len(),
            scans.len()
        ),
    }
}

/// Why `predict` found nothing in `inputs` (folders, since a file is always kept), and, when
/// their sub-folders hold scans (a class-folder dataset's root, say), the command that predicts
/// those.
fn no_scans_message(run: &Path, inputs: &[PathBuf]) -> String {
    let folders = inputs
        .iter()
        .map(|input| input.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut with_scans: Vec<PathBuf> = inputs
        .iter()
        .flat_map(|input| std::fs::read_dir(input).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| !name.starts_with('.'))
                && path.is_dir()
                && !evaluate::expand_inputs(std::slice::from_ref(path)).is_empty()
        })
        .collect();
    with_scans.sort();
    if with_scans.is_empty() {
        format!(
            "{folders}: no scans in it (looked for .nii, .nii.gz and .hdr files and DICOM \
             series folders directly inside)"
        )
    } else {
        let command: Vec<String> = with_scans
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        format!(
            "{folders}: no scans directly in it (class sub-folders are not searched); predict \
             the sub-folders that hold scans with: ct3d predict --run {} {}",
            run.display(),
            command.join(" ")
        )
    }
}

/// One row of `predict --csv` (the header is the field names): every column always there, empty
/// where a failed scan has no value; the probability written as `Display` writes it.
#[derive(serde::Serialize)]
struct PredictCsvRow<'a> {
    path: String,
    #[serde(serialize_with = "ct3d::history::csv_display::option")]
    probability: Option<f32>,
    class: Option<&'a str>,
    error: Option<&'a str>,
}

/// `predict --csv`'s text: `path,probability,class,error`, then one row per scan.
fn predict_csv(rows: &[PredictRow]) -> Result<String> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer.write_record(["path", "probability", "class", "error"])?;
    for row in rows {
        writer.serialize(PredictCsvRow {
            path: row.path.display().to_string(),
            probability: row.probability,
            class: row.class.as_deref(),
            error: row.error.as_deref(),
        })?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

/// Runs `ct3d summary` for the seed CNN `config` describes (the CLI's one architecture).
pub fn summary(config: ModelConfig) -> Result<()> {
    let architecture = Architecture::default();
    architecture.validate(&config)?;
    print!("{}", architecture.summary(&config));
    Ok(())
}

/// Largest relative difference of the forward pass (pooled features, probabilities) that
/// `ct3d bench --check-cpu` accepts between the CPU and another device. GPUs may compute f32
/// matrix products on TF32 tensor cores (burn's CUDA matmul does), which alone gives ~1e-4.
const CPU_AGREEMENT_TOLERANCE: f64 = 1e-3;

/// Runs `ct3d bench`; `batch` and `repeats` are at least 1 (the flags' parser sees to it).
pub fn bench(
    batch: usize,
    size: [usize; 3],
    device: DeviceChoice,
    repeats: usize,
    check_cpu: bool,
) -> Result<()> {
    let resolved = device.resolve()?;
    // The CLI benchmarks the seed CNN at the requested input size.
    let architecture = Architecture::default();
    let config = ModelConfig {
        input: size,
        ..ModelConfig::default()
    };
    if check_cpu {
        let cpu = DeviceChoice::Cpu.resolve()?;
        let agreement = ct3d_model::bench::compare_devices(
            architecture,
            &config,
            &cpu,
            &resolved,
            batch.max(2),
        )?;
        println!(
            "cpu vs {device}, same weights and {} volumes (relative differences): forward pass: \
             pooled features {:.2e}, probabilities {:.2e} (logits {:.2e}); one training step: \
             loss {:.2e} ({} vs {}), features after it {:.2e}",
            batch.max(2),
            agreement.embedding,
            agreement.probabilities,
            agreement.logits,
            agreement.step_loss_difference(),
            agreement.step_loss[0],
            agreement.step_loss[1],
            agreement.embedding_after_step,
        );
        if agreement.forward() > CPU_AGREEMENT_TOLERANCE {
            bail!(
                "{device} disagrees with the CPU: forward-pass relative difference {:.2e} > {CPU_AGREEMENT_TOLERANCE:e}",
                agreement.forward()
            );
        }
    }
    let kernels = match device {
        DeviceChoice::Cpu if ct3d_model::ops::fused_cpu_kernels() => " (fused ct3d kernels)",
        DeviceChoice::Cpu => " (burn's generic ops)",
        _ => "",
    };
    println!(
        "device {device}{kernels}, batch {batch}, input {}×{}×{}, {repeats} timed runs after one warm-up",
        size[0], size[1], size[2]
    );
    let step = bench_train_step(architecture, &config, &resolved, batch, repeats)?;
    print_timing("train step", &step);
    let predict = bench_predict(architecture, &config, &resolved, repeats)?;
    print_timing("predict (1 scan)", &predict);
    Ok(())
}

fn print_timing(what: &str, timing: &Timing) {
    let samples: Vec<String> = timing
        .samples
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    println!(
        "{what:<18} median {:.3} s   (samples: {})",
        timing.median().as_secs_f64(),
        samples.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_counts_are_at_least_one() {
        use clap::Parser as _;
        for flag in ["--batch", "--repeats"] {
            let err = crate::Cli::try_parse_from(["ct3d", "bench", flag, "0"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
            let text = err.to_string();
            assert!(text.contains(flag) && text.contains("'0'"), "{text}");
        }
        assert!(
            crate::Cli::try_parse_from(["ct3d", "bench", "--batch", "1", "--repeats", "1"]).is_ok()
        );
    }

    #[test]
    fn weights_and_split_flags_convert_to_the_library_types() {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from([
            "ct3d",
            "eval",
            "--run",
            "r",
            "--weights",
            "last",
            "--split",
            "all",
        ])
        .unwrap();
        let crate::Command::Eval { weights, split, .. } = cli.command else {
            panic!("not eval");
        };
        assert_eq!(WeightsChoice::from(weights), WeightsChoice::Last);
        assert_eq!(split.map(EvalSplit::from), Some(EvalSplit::All));
        let cli = crate::Cli::try_parse_from(["ct3d", "predict", "--run", "r", "x.nii"]).unwrap();
        let crate::Command::Predict { weights, .. } = cli.command else {
            panic!("not predict");
        };
        assert_eq!(
            WeightsChoice::from(weights),
            WeightsChoice::Best,
            "the default"
        );
        let err = crate::Cli::try_parse_from(["ct3d", "report", "r", "--weights", "worst"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("[possible values: best, last]"), "{err}");
    }

    #[test]
    fn csv_quoting() {
        let row = |path: &str, probability: Option<f32>, error: Option<&str>| PredictRow {
            path: PathBuf::from(path),
            probability,
            class: probability.map(|_| "normal".to_owned()),
            error: error.map(str::to_owned),
        };
        let text = predict_csv(&[
            row("a/b.nii", Some(0.25), None),
            row("a,b.nii", Some(1e-7), None),
            row("a\"b", None, Some("bad: \"x\", line\ntwo")),
        ])
        .unwrap();
        assert_eq!(
            text,
            "path,probability,class,error\n\
             a/b.nii,0.25,normal,\n\
             \"a,b.nii\",0.0000001,normal,\n\
             \"a\"\"b\",,,\"bad: \"\"x\"\", line\ntwo\"\n"
        );
    }

    #[test]
    fn train_settings_name_train_flags_and_config_keys() {
        use clap::CommandFactory as _;
        let cli = crate::Cli::command();
        let train = cli.find_subcommand("train").unwrap();
        let config = ct3d::run::TrainConfig {
            folds: Some(ct3d::folds::FoldSpec { count: 2, fold: 1 }),
            ..Default::default()
        };
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
            given(&["--hu-window", "-900,400"]),
            ["preprocess.hu_min", "preprocess.hu_max"]
        );
    }
}
