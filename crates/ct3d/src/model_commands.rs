//! The model subcommands (`train`, `eval`, `predict`, `summary`, `bench`): printing and progress
//! around `ct3d::train`, `ct3d::evaluate` and `ct3d_model`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, bail};
use ct3d::evaluate::{self, EvalSplit, WeightsChoice, prediction_sentences};
use ct3d::history::{EpochRecord, keras_line};
use ct3d::train::{self, TrainObserver, TrainRequest};
use ct3d_model::bench::{Timing, bench_predict, bench_train_step};
use ct3d_model::{DeviceChoice, ModelConfig};
use indicatif::ProgressBar;

use crate::progress;

/// Shows `train`'s progress: a bar while preparing, a bar per epoch, a Keras line per epoch.
struct ConsoleObserver {
    bar: Mutex<Option<ProgressBar>>,
    /// The seed to announce once training starts, when ct3d chose it.
    chosen_seed: Option<u64>,
}

impl ConsoleObserver {
    fn new(chosen_seed: Option<u64>) -> Self {
        Self {
            bar: Mutex::new(None),
            chosen_seed,
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
        if done == total {
            self.clear();
        }
    }

    fn skipped(&self, error: &str) {
        eprintln!("skipped: {error}");
    }

    fn started(&self, first_epoch: usize, epochs: usize, train: usize, validation: usize) {
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
            "{train} training and {validation} validation scans; {verb} epoch {first_epoch}/{epochs}"
        );
    }

    fn batch(&self, epoch: usize, done: usize, total: usize, loss: f64, acc: f64) {
        self.with_bar(total, &format!("epoch {epoch}"), |bar| {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4} acc {acc:.4}"));
        });
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
    let outcome = train::train(&request, &observer);
    observer.clear();
    let outcome = outcome?;
    if !outcome.skipped.is_empty() {
        println!("left out {} unreadable scans:", outcome.skipped.len());
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
            "data pipeline: the model waited {:.2} s for batches over {} epochs ({:.2}% of {:.1} s)",
            outcome.data_wait.as_secs_f64(),
            outcome.epochs_run,
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
            "{} after {} epochs; best val_loss {:.4} (val_acc {:.4}) at epoch {}; run in {}",
            outcome.finished,
            outcome.history.len(),
            best.val_loss,
            best.val_acc,
            best.epoch,
            outcome.run.display()
        ),
        None => println!("{}; run in {}", outcome.finished, outcome.run.display()),
    }
    Ok(())
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
            "fold {}/{folds}: {} validation scans, best epoch {} of {}: loss {:.4}, accuracy {:.4}, AUC {}",
            result.fold,
            result.validation_scans,
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
    let summary = ct3d::cv::run_cross_validation(&request, &observer, &CvConsole);
    observer.clear();
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

/// Runs `ct3d eval`.
pub fn eval(
    run: &Path,
    data: Option<ct3d::train::DataSource>,
    split: Option<EvalSplit>,
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
    let evaluation = evaluate::evaluate_source(&loaded, data, split)?;
    if let Some(dir) = plots {
        let [roc, confusion] = ct3d::pictures::write_evaluation_pictures(
            &evaluation,
            &loaded.config.train.classes,
            dir,
        )?;
        // Keep stdout pure JSON with --json.
        eprintln!("wrote {} and {}", roc.display(), confusion.display());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
        return Ok(());
    }
    let m = &evaluation.metrics;
    let classes = &loaded.config.train.classes;
    let rate = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
    println!(
        "{} scans ({} split), {} weights",
        m.count,
        evaluation.split,
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
        bail!("no scans found in the given folders");
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
        PredictFormat::Csv => {
            println!("path,probability,class,error");
            for row in &rows {
                println!(
                    "{},{},{},{}",
                    csv_field(&row.path.display().to_string()),
                    row.probability.map_or(String::new(), |p| p.to_string()),
                    row.class.as_deref().map_or(String::new(), csv_field),
                    row.error.as_deref().map_or(String::new(), csv_field)
                );
            }
        }
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

/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Runs `ct3d summary`.
pub fn summary(size: [usize; 3]) -> Result<()> {
    let config = ModelConfig {
        input: size,
        ..ModelConfig::default()
    };
    config.validate()?;
    print!("{}", ct3d_model::summary::summary(&config));
    Ok(())
}

/// Largest relative difference of the forward pass (pooled features, probabilities) that
/// `ct3d bench --check-cpu` accepts between the CPU and another device. GPUs may compute f32
/// matrix products on TF32 tensor cores (burn's CUDA matmul does), which alone gives ~1e-4.
const CPU_AGREEMENT_TOLERANCE: f64 = 1e-3;

/// Runs `ct3d bench`.
pub fn bench(
    batch: usize,
    size: [usize; 3],
    device: DeviceChoice,
    repeats: usize,
    check_cpu: bool,
) -> Result<()> {
    if batch == 0 || repeats == 0 {
        bail!("--batch and --repeats must be at least 1");
    }
    let resolved = device.resolve()?;
    if check_cpu {
        let cpu = DeviceChoice::Cpu.resolve()?;
        let agreement = ct3d_model::bench::compare_devices(&cpu, &resolved, batch.max(2), size)?;
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
    let step = bench_train_step(&resolved, batch, size, repeats)?;
    print_timing("train step", &step);
    let predict = bench_predict(&resolved, size, repeats)?;
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
    fn csv_quoting() {
        assert_eq!(csv_field("a/b.nii"), "a/b.nii");
        assert_eq!(csv_field("a,b.nii"), "\"a,b.nii\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }
}
