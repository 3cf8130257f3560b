//! `ct3d sweep collect`: the tasks' records gathered into one table per recipe.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{SweepError, SweepPlan, TaskRecord, task_record, write_json};
use crate::cv::{CvMeans, means};
use crate::history::csv_display;
use crate::metrics::BinaryMetrics;

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    /// Trained and evaluated.
    Finished,
    /// It failed; the one-line reason.
    Failed {
        /// Why.
        error: String,
    },
    /// No record: never run, still running, or killed before it ended.
    NotFinished,
}

/// One recipe's results over its folds and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeSummary {
    /// The recipe's name.
    pub recipe: String,
    /// Its tasks (folds × seeds).
    pub tasks: usize,
    /// How many finished (only those are averaged).
    pub finished: usize,
    /// Mean ± sample SD over every finished (fold, seed).
    pub mean: CvMeans,
    /// Per seed whose folds all finished: the out-of-fold predictions pooled, with 95 %
    /// confidence intervals.
    pub pooled: Vec<SeedPooled>,
    /// Tasks that failed or have no record, by index, with their state.
    pub incomplete: Vec<IncompleteTask>,
    /// Each task's run folder (relative to the sweep folder), in task order.
    pub runs: Vec<PathBuf>,
}

/// The pooled out-of-fold metrics of one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedPooled {
    /// The seed.
    pub seed: u64,
    /// Every validation scan scored once, by the fold model that did not train on it.
    pub metrics: BinaryMetrics,
}

/// A task left out of the averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncompleteTask {
    /// Its index.
    pub index: usize,
    /// Its seed.
    pub seed: u64,
    /// Its fold.
    pub fold: usize,
    /// Why it is not counted.
    #[serde(flatten)]
    pub state: TaskState,
}

/// `summary.json`: the whole sweep's results. Free of times and absolute paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// K.
    pub folds: usize,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// One entry per recipe, in plan order.
    pub recipes: Vec<RecipeSummary>,
}

impl SweepSummary {
    /// Whether every task of every recipe finished.
    pub fn complete(&self) -> bool {
        self.recipes.iter().all(|r| r.incomplete.is_empty())
    }
}

/// The pooled metrics of out-of-fold predictions (as [`crate::cv::CvSummary::pooled`]).
fn pooled_metrics(records: &[&TaskRecord]) -> BinaryMetrics {
    let probabilities: Vec<f32> = records
        .iter()
        .flat_map(|r| r.probabilities.iter().copied())
        .collect();
    let labels: Vec<u8> = records
        .iter()
        .flat_map(|r| r.labels.iter().copied())
        .collect();
    crate::intervals::evaluation_metrics(
        &probabilities,
        &labels,
        0.5,
        crate::intervals::BootstrapOptions::default(),
    )
}

/// Reads every task's record and writes `summary.json`, `summary.csv` and `summary.html` into the
/// sweep folder `dir` (atomically). Failed and unfinished tasks are listed, never averaged.
pub fn collect(dir: &Path, plan: &SweepPlan) -> Result<SweepSummary, SweepError> {
    let mut records = Vec::with_capacity(plan.tasks.len());
    for task in &plan.tasks {
        let path = dir.join(task_record(task.index));
        let record = match std::fs::read(&path) {
            Ok(bytes) => {
                let record: TaskRecord =
                    serde_json::from_slice(&bytes).map_err(|e| SweepError::Plan {
                        path: path.clone(),
                        reason: format!("not a task record: {e}"),
                    })?;
                if (record.index, &record.recipe, record.seed, record.fold)
                    != (task.index, &task.recipe, task.seed, task.fold)
                {
                    return Err(SweepError::Plan {
                        path,
                        reason: "this record belongs to another task".to_owned(),
                    });
                }
                Some(record)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(SweepError::Io { path, source }),
        };
        records.push(record);
    }
    let mut recipes = Vec::new();
    for recipe in &plan.recipes {
        let tasks: Vec<_> = plan
            .tasks
            .iter()
            .filter(|t| t.recipe == recipe.name)
            .collect();
        let mut finished = Vec::new();
        let mut incomplete = Vec::new();
        for task in &tasks {
            let state = match &records[task.index] {
                Some(record) if record.result.is_some() => {
                    finished.push(record);
                    continue;
                }
                Some(record) => TaskState::Failed {
                    error: record
                        .error
                        .clone()
                        .unwrap_or_else(|| "failed (no reason recorded)".to_owned()),
                },
                None => TaskState::NotFinished,
            };
            incomplete.push(IncompleteTask {
                index: task.index,
                seed: task.seed,
                fold: task.fold,
                state,
            });
        }
        let results: Vec<_> = finished.iter().filter_map(|r| r.result.clone()).collect();
        let pooled = plan
            .seeds
            .iter()
            .filter_map(|&seed| {
                let of_seed: Vec<&TaskRecord> = finished
                    .iter()
                    .filter(|r| r.seed == seed)
                    .copied()
                    .collect();
                (of_seed.len() == plan.folds).then(|| SeedPooled {
                    seed,
                    metrics: pooled_metrics(&of_seed),
                })
            })
            .collect();
        recipes.push(RecipeSummary {
            recipe: recipe.name.clone(),
            tasks: tasks.len(),
            finished: results.len(),
            mean: means(&results),
            pooled,
            incomplete,
            runs: tasks.iter().map(|t| t.run.clone()).collect(),
        });
    }
    let summary = SweepSummary {
        folds: plan.folds,
        seeds: plan.seeds.clone(),
        recipes,
    };
    write_json(&dir.join("summary.json"), &summary)?;
    let csv_path = dir.join("summary.csv");
    ct3d_volume::atomic::write_bytes_atomic(&csv_path, summary_csv(&summary).as_bytes()).map_err(
        |source| SweepError::Io {
            path: csv_path,
            source,
        },
    )?;
    let html_path = dir.join("summary.html");
    ct3d_volume::atomic::write_bytes_atomic(&html_path, summary_html(dir, &summary).as_bytes())
        .map_err(|source| SweepError::Io {
            path: html_path,
            source,
        })?;
    Ok(summary)
}

/// One row of `summary.csv`.
#[derive(Serialize)]
struct SummaryRow<'a> {
    recipe: &'a str,
    tasks: usize,
    finished: usize,
    failed: usize,
    not_finished: usize,
    #[serde(serialize_with = "csv_display::option")]
    accuracy_mean: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    accuracy_sd: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    auc_mean: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    auc_sd: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    loss_mean: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    loss_sd: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    sensitivity_mean: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    sensitivity_sd: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    specificity_mean: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    specificity_sd: Option<f64>,
}

/// `summary.csv`: one row per recipe, mean and sample SD over its finished (fold, seed) runs.
pub fn summary_csv(summary: &SweepSummary) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for r in &summary.recipes {
        let failed = r
            .incomplete
            .iter()
            .filter(|t| matches!(t.state, TaskState::Failed { .. }))
            .count();
        let m = &r.mean;
        let mean = |v: &Option<crate::cv::MeanSd>| v.map(|s| s.mean);
        let sd = |v: &Option<crate::cv::MeanSd>| v.and_then(|s| s.sd);
        let row = SummaryRow {
            recipe: &r.recipe,
            tasks: r.tasks,
            finished: r.finished,
            failed,
            not_finished: r.incomplete.len() - failed,
            accuracy_mean: mean(&m.accuracy),
            accuracy_sd: sd(&m.accuracy),
            auc_mean: mean(&m.auc),
            auc_sd: sd(&m.auc),
            loss_mean: mean(&m.loss),
            loss_sd: sd(&m.loss),
            sensitivity_mean: mean(&m.sensitivity),
            sensitivity_sd: sd(&m.sensitivity),
            specificity_mean: mean(&m.specificity),
            specificity_sd: sd(&m.specificity),
        };
        let written = writer.serialize(row);
        // Numbers and names into memory: neither the serializer nor the writer can fail.
        debug_assert!(written.is_ok(), "{written:?}");
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn mean_sd(value: &Option<crate::cv::MeanSd>) -> String {
    match value {
        Some(s) => match s.sd {
            Some(sd) => format!("{:.3} ± {sd:.3}", s.mean),
            None => format!("{:.3}", s.mean),
        },
        None => "n/a".to_owned(),
    }
}

fn with_interval(value: Option<f64>, interval: Option<(f64, f64)>) -> String {
    match (value, interval) {
        (Some(v), Some((lo, hi))) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
        (Some(v), None) => format!("{v:.3}"),
        _ => "n/a".to_owned(),
    }
}

/// `summary.html`: one row per recipe, links to each run's report (or its folder when it has no
/// report), and the tasks left out. Links are relative, so the folder can be copied whole.
fn summary_html(dir: &Path, summary: &SweepSummary) -> String {
    use std::fmt::Write as _;
    let mut rows = String::new();
    let mut details = String::new();
    for r in &summary.recipes {
        let pooled: Vec<String> = r
            .pooled
            .iter()
            .map(|p| {
                let ci = p.metrics.intervals.as_ref();
                format!(
                    "seed {}: accuracy {}, AUC {}",
                    p.seed,
                    with_interval(
                        Some(p.metrics.accuracy),
                        ci.and_then(|c| c.accuracy.as_ref().map(|a| (a.lower, a.upper)))
                    ),
                    with_interval(
                        p.metrics.auc,
                        ci.and_then(|c| c.auc.as_ref().map(|a| (a.lower, a.upper)))
                    ),
                )
            })
            .collect();
        let _ = writeln!(
            rows,
            "<tr><td><a href=\"#{name}\">{name}</a></td><td>{}/{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.finished,
            r.tasks,
            mean_sd(&r.mean.accuracy),
            mean_sd(&r.mean.auc),
            mean_sd(&r.mean.loss),
            mean_sd(&r.mean.sensitivity),
            mean_sd(&r.mean.specificity),
            escape(&pooled.join("; ")),
            name = escape(&r.recipe),
        );
        let _ = write!(
            details,
            "<h2 id=\"{name}\">{name}</h2>\n<ul>\n",
            name = escape(&r.recipe)
        );
        for run in &r.runs {
            let report = run.join("report.html");
            let target = if dir.join(&report).exists() {
                report
            } else {
                run.clone()
            };
            let _ = writeln!(
                details,
                "<li><a href=\"{}\">{}</a></li>",
                escape(&target.to_string_lossy()),
                escape(&run.to_string_lossy())
            );
        }
        details.push_str("</ul>\n");
        if !r.incomplete.is_empty() {
            details.push_str("<p>Not averaged:</p>\n<ul>\n");
            for t in &r.incomplete {
                let why = match &t.state {
                    TaskState::Failed { error } => format!("failed: {error}"),
                    TaskState::NotFinished => "not finished (no record)".to_owned(),
                    TaskState::Finished => "finished".to_owned(),
                };
                let _ = writeln!(
                    details,
                    "<li>task {} (seed {}, fold {}): {}</li>",
                    t.index,
                    t.seed,
                    t.fold,
                    escape(&why)
                );
            }
            details.push_str("</ul>\n");
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>ct3d sweep</title>\n<style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>\
         </head><body>\n<h1>Sweep: {} folds × seeds {:?}</h1>\n\
         <p>Mean ± sample SD over every finished (fold, seed); pooled: each seed's out-of-fold \
         predictions, with 95 % confidence intervals.</p>\n<table>\n<tr><th>recipe</th>\
         <th>finished</th><th>accuracy</th><th>AUC</th><th>loss</th><th>sensitivity</th>\
         <th>specificity</th><th>pooled per seed</th></tr>\n{rows}</table>\n{details}</body></html>\n",
        summary.folds, summary.seeds
    )
}
