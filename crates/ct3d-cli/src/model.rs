//! `ct3d eval`, `predict`, `summary` and `bench`: their flags, and the tables and sentences they
//! print around `ct3d::evaluate` and `ct3d_model`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use ct3d::evaluate::{self, EvalSplit, Evaluation, LoadedRun, WeightsChoice, prediction_sentences};
use ct3d::run::Classes;
use ct3d::train::TrainError;
use ct3d_model::bench::{Timing, bench_predict, bench_train_step};
use ct3d_model::{DeviceChoice, ModelParams};

use crate::args::{
    ArchitectureArgs, DeviceArgs, EvalDataArgs, SeriesArg, SplitArg, WeightsArg, at_least_one,
    count, default_size, parse_size,
};

/// The flags of `ct3d eval` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct EvalArgs {
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
    /// Also write roc.png (ROC curve with AUC), confusion.png and reliability.png (predicted vs
    /// observed fraction of positives in 15 bins) into this folder (the line naming them goes to
    /// stdout, or to stderr with --json so that stdout stays pure JSON).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Use the network's own probabilities and the threshold 0.5, ignoring the temperature and
    /// threshold that `ct3d calibrate` recorded in the run.
    #[arg(long)]
    raw: bool,
    /// Seed of the bootstrap behind the 95 % confidence intervals (the same seed gives the same
    /// intervals).
    #[arg(long, value_name = "S", default_value_t = ct3d::intervals::DEFAULT_BOOTSTRAP_SEED)]
    bootstrap_seed: u64,
    /// Test-time augmentation: score N copies of each scan, each randomly flipped left-right and
    /// rotated by the training's small angles, and evaluate their mean probabilities (the JSON
    /// gives each scan's spread).
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    tta: Option<usize>,
    /// Seed of the --tta draws (the same seed gives the same copies).
    #[arg(long, value_name = "S", default_value_t = 0, requires = "tta")]
    tta_seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl EvalArgs {
    /// Evaluates the run's recorded scans (or other data) and prints the table or JSON.
    pub fn run(self) -> Result<()> {
        let (run, weights, json) = (&self.run, WeightsChoice::from(self.weights), self.json);
        let data = self.data.source();
        let folders = [self.negative, self.positive];
        let mut loaded = evaluate::load_run(run, weights, self.device.device)?;
        loaded.bootstrap.seed = self.bootstrap_seed;
        calibration_choice(&mut loaded, self.raw);
        loaded.tta = self.tta.map(|count| evaluate::TtaOptions {
            count,
            seed: self.tta_seed,
            recipe: evaluate::tta_recipe(),
        });
        // Other data than the run's own is evaluated whole by default: it has no training part.
        let split = self
            .split
            .map(EvalSplit::from)
            .unwrap_or(if data.is_some() {
                EvalSplit::All
            } else {
                EvalSplit::Val
            });
        let evaluation = match data {
            Some(data) => evaluate::evaluate_other(&loaded, &data, folders, split)?,
            None => evaluate::evaluate_recorded(&loaded, split, self.allow_changed_data)
                .map_err(name_data_override)?,
        };
        warn_changed_data(&evaluation);
        if let Some(dir) = &self.plots {
            let [roc, confusion] = ct3d::pictures::write_evaluation_pictures(
                &evaluation,
                &loaded.config.train.classes,
                dir,
            )?;
            let reliability = ct3d::pictures::write_reliability_picture(&evaluation, dir)?;
            // Like every command, the "wrote" line goes to stdout, except with --json: stdout then
            // holds nothing but the JSON document.
            let wrote = format!(
                "wrote {}, {} and {}",
                roc.display(),
                confusion.display(),
                reliability.display()
            );
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
        print_evaluation(&loaded, &evaluation, split, weights);
        Ok(())
    }
}

/// The evaluation table: the scans it covers, the metrics and the confusion matrix.
pub fn print_evaluation(
    loaded: &LoadedRun,
    evaluation: &Evaluation,
    split: EvalSplit,
    weights: WeightsChoice,
) {
    let m = &evaluation.metrics;
    let classes = &loaded.config.train.classes;
    let rate = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
    let intervals = m.intervals.as_ref();
    let ci = |i: Option<ct3d::metrics::Interval>| {
        i.map_or(String::new(), |i| {
            format!("  (95% CI {:.4}–{:.4})", i.lower, i.upper)
        })
    };
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
    println!(
        "  probabilities {}, threshold {}",
        evaluation.probabilities,
        threshold_words(loaded)
    );
    println!("  loss         {:.4}", m.loss);
    println!(
        "  accuracy     {:.4}{}",
        m.accuracy,
        ci(intervals.and_then(|i| i.accuracy))
    );
    let delong = intervals
        .and_then(|i| i.auc_delong)
        .map_or(String::new(), |d| {
            format!("  (95% CI {:.4}–{:.4}, DeLong)", d.lower, d.upper)
        });
    println!("  ROC AUC      {}{delong}", rate(m.auc));
    println!(
        "  sensitivity  {}{}",
        rate(m.sensitivity),
        ci(intervals.and_then(|i| i.sensitivity))
    );
    println!(
        "  specificity  {}{}",
        rate(m.specificity),
        ci(intervals.and_then(|i| i.specificity))
    );
    let spreads: Vec<&ct3d::evaluate::TtaSpread> = evaluation
        .scans
        .iter()
        .filter_map(|s| s.tta.as_ref())
        .collect();
    if let Some(first) = spreads.first() {
        let mean_sd = spreads.iter().map(|t| t.sd).sum::<f64>() / spreads.len() as f64;
        let widest = spreads.iter().map(|t| t.sd).fold(0.0, f64::max);
        println!(
            "  (test-time augmentation: each probability is the mean of {} augmented copies; \
             per-scan SD {mean_sd:.4} on average, {widest:.4} at most)",
            first.count
        );
    }
    println!("  Brier score  {}", rate(m.brier));
    println!("  ECE          {}  (15 equal-width bins)", rate(m.ece));
    if let Some(i) = intervals {
        println!(
            "  (accuracy, sensitivity, specificity: stratified bootstrap, {} resamples, seed {}; \
             bootstrap AUC interval {})",
            i.resamples,
            i.seed,
            i.auc.map_or("n/a".to_owned(), |a| format!(
                "{:.4}–{:.4}",
                a.lower, a.upper
            ))
        );
    }
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
}

/// Applies `--raw` (the network's own probabilities), and warns when the run's calibration was
/// fitted for other weights and is therefore not applied.
pub fn calibration_choice(loaded: &mut LoadedRun, raw: bool) {
    if raw {
        loaded.use_raw_probabilities();
    }
    if let ct3d::evaluate::CalibrationStatus::OtherWeights(c) = &loaded.calibration {
        eprintln!(
            "warning: {} was fitted for other weights ({} weights, since replaced or not the \
             ones loaded): probabilities are uncalibrated; run `ct3d calibrate` again",
            ct3d::calibration::calibration_path(loaded.dir.root()).display(),
            c.weights
        );
    }
}

/// The decision threshold in words: `0.5` or `0.4321 (Youden's J, recorded by ct3d calibrate)`.
pub fn threshold_words(loaded: &LoadedRun) -> String {
    match loaded
        .calibration
        .applied()
        .and_then(|c| c.threshold.as_ref())
    {
        Some(t) if t.method == "youden" => format!(
            "{:.4} (Youden's J on the validation scans, recorded by ct3d calibrate)",
            t.value
        ),
        Some(t) => format!("{:.4} ({}, recorded by ct3d calibrate)", t.value, t.method),
        None => "0.5".to_owned(),
    }
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
    warn_changed_data_paths(&evaluation.missing, &evaluation.changed);
}

/// Warns on stderr about recorded scans left out (`missing`) or scored as changed (`changed`).
pub fn warn_changed_data_paths(missing: &[PathBuf], changed: &[PathBuf]) {
    for (paths, one, many) in [
        (
            missing,
            "recorded scan is missing, left out of the evaluation",
            "recorded scans are missing, left out of the evaluation",
        ),
        (
            changed,
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
    /// With --tta: the spread of the augmented copies' probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    tta: Option<ct3d::evaluate::TtaSpread>,
}

/// The flags of `ct3d predict` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct PredictArgs {
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
    /// Use the network's own probabilities and the threshold 0.5, ignoring the temperature and
    /// threshold that `ct3d calibrate` recorded in the run.
    #[arg(long)]
    raw: bool,
    /// Test-time augmentation: predict N copies of each scan, each randomly flipped left-right
    /// and rotated by the training's small angles, and report their mean probability and spread.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    tta: Option<usize>,
    /// Seed of the --tta draws (the same seed gives the same copies).
    #[arg(long, value_name = "S", default_value_t = 0, requires = "tta")]
    tta_seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl PredictArgs {
    /// Runs `ct3d predict`. Scans that fail are listed (sentences: an `error:` line on stderr;
    /// JSON/CSV: an entry with its error) and make the exit code 1 once every scan has been tried.
    /// With `preprocessed`, the inputs are model-ready volumes used as they are.
    pub fn run(self) -> Result<()> {
        let format = if self.json {
            PredictFormat::Json
        } else if self.csv {
            PredictFormat::Csv
        } else {
            PredictFormat::Sentences
        };
        let (run, inputs, series) = (&self.run, &self.scans, self.series.uid.as_deref());
        let (weights, device, preprocessed) =
            (self.weights.into(), self.device.device, self.preprocessed);
        let mut loaded = evaluate::load_run(run, weights, device)?;
        calibration_choice(&mut loaded, self.raw);
        loaded.tta = self.tta.map(|count| evaluate::TtaOptions {
            count,
            seed: self.tta_seed,
            recipe: evaluate::tta_recipe(),
        });
        let scans = evaluate::expand_inputs(inputs);
        if scans.is_empty() {
            bail!("{}", no_scans_message(run, inputs));
        }
        if loaded.calibration.applied().is_some() {
            // Said once, before the answers; on stderr where stdout is JSON or CSV.
            let note = format!(
                "probabilities {}, threshold {} (--raw for the network's own)",
                loaded.probabilities_description(),
                threshold_words(&loaded)
            );
            if format == PredictFormat::Sentences {
                println!("{note}");
            } else {
                eprintln!("{note}");
            }
        }
        let classes = &loaded.config.train.classes;
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        let mut fatal = None;
        // Reading and preprocessing run a scan ahead of the network (both cores busy).
        evaluate::predict_scans(&loaded, &scans, series, preprocessed, |scan, prediction| {
            if fatal.is_some() {
                return;
            }
            match prediction {
                Ok(p) => {
                    if format == PredictFormat::Sentences {
                        if scans.len() > 1 {
                            println!("{}:", scan.display());
                        }
                        print_sentences(classes, p.probability);
                        if let Some(t) = &p.tta {
                            println!(
                                "(mean of {} test-time augmented copies: SD {:.4}, from {:.4} to \
                                 {:.4})",
                                t.count, t.sd, t.min, t.max
                            );
                        }
                    }
                    rows.push(PredictRow {
                        path: p.path,
                        probability: Some(p.probability),
                        class: Some(p.class),
                        error: None,
                        tta: p.tta,
                    });
                }
                // A single scan in sentences mode: its error is the command's one error line.
                Err(err) if format == PredictFormat::Sentences && scans.len() == 1 => {
                    fatal = Some(err);
                }
                Err(err) => {
                    let message = crate::flags::line(&err);
                    if format == PredictFormat::Sentences {
                        eprintln!("error: {message}");
                    }
                    rows.push(PredictRow {
                        path: scan.to_owned(),
                        probability: None,
                        class: None,
                        error: Some(message.clone()),
                        tta: None,
                    });
                    failures.push(message);
                }
            }
        });
        if let Some(err) = fatal {
            return Err(err.into());
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
}

/// The example's two sentences for a probability of the positive class.
pub fn print_sentences(classes: &Classes, probability: f32) {
    for line in prediction_sentences(probability, &classes.negative_name, &classes.positive_name) {
        println!("{line}");
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

/// The flags of `ct3d summary` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Input size W,H,D.
    #[arg(long, value_name = "W,H,D", default_value = default_size(), value_parser = parse_size)]
    size: [usize; 3],
    #[command(flatten)]
    architecture: ArchitectureArgs,
}

impl SummaryArgs {
    /// Prints the layer table of the model these flags describe.
    pub fn run(mut self) -> Result<()> {
        let config = self
            .architecture
            .model_params(ModelParams::default())
            .at(self.size);
        let architecture = self.architecture.arch;
        architecture.validate(&config)?;
        print!("{}", architecture.summary(&config));
        Ok(())
    }
}

/// The flags of `ct3d bench` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Volumes per training step.
    #[arg(long, default_value_t = 2, value_parser = at_least_one())]
    batch: usize,
    /// Input size W,H,D.
    #[arg(long, value_name = "W,H,D", default_value = default_size(), value_parser = parse_size)]
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
    /// Run every block on the general fused kernels, without the AVX-512 ones (a direct
    /// kernel for the one-channel first block, Winograd F(2,3) for blocks with ≥ 16 channels),
    /// to compare the two.
    #[arg(long)]
    no_avx512_kernels: bool,
    #[command(flatten)]
    architecture: ArchitectureArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

impl BenchArgs {
    /// Times a training step and a one-scan prediction; `batch` and `repeats` are at least 1 (the
    /// flags' parser sees to it).
    pub fn run(mut self) -> Result<()> {
        ct3d_model::ops::set_fused_cpu_kernels(!self.burn_ops);
        ct3d_model::fused_conv::set_avx512_kernels(!self.no_avx512_kernels);
        let (batch, size, repeats) = (self.batch, self.size, self.repeats);
        let (device, check_cpu) = (self.device.device, self.check_cpu);
        let resolved = device.resolve()?;
        let architecture = self.architecture.arch;
        let config = self
            .architecture
            .model_params(ModelParams::default())
            .at(size);
        architecture.validate(&config)?;
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
}

/// Largest relative difference of the forward pass (pooled features, probabilities) that
/// `ct3d bench --check-cpu` accepts between the CPU and another device. GPUs may compute f32
/// matrix products on TF32 tensor cores (burn's CUDA matmul does), which alone gives ~1e-4.
const CPU_AGREEMENT_TOLERANCE: f64 = 1e-3;

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
        let crate::Command::Eval(EvalArgs { weights, split, .. }) = cli.command else {
            panic!("not eval");
        };
        assert_eq!(WeightsChoice::from(weights), WeightsChoice::Last);
        assert_eq!(split.map(EvalSplit::from), Some(EvalSplit::All));
        let cli = crate::Cli::try_parse_from(["ct3d", "predict", "--run", "r", "x.nii"]).unwrap();
        let crate::Command::Predict(PredictArgs { weights, .. }) = cli.command else {
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
            tta: None,
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
}
