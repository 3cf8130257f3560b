//! `sweep.json` and the other files of a sweep folder: the plan ([`SweepPlan`]), its tasks, their
//! records ([`TaskRecord`]) and the errors of every sweep step. Kept apart from the code that
//! trains ([`super::run_task`]) so that planning, collecting and submitting sit on lower floors
//! than cross-validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ct3d_volume::atomic::write_bytes_atomic;

use super::recipe::{Recipe, RecipeError, check_flags};
use crate::data::source::DataSource;
use crate::observe::FoldResult;
use crate::run::FolderLock;

/// The plan's file name in a sweep folder.
pub const PLAN_FILE: &str = "sweep.json";

/// Version of `sweep.json`'s layout.
pub const PLAN_FORMAT: u32 = 1;

/// `sweep.json`: the whole sweep, decided once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPlan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// K: every (recipe, seed) is cross-validated over K folds.
    pub folds: usize,
    /// The seeds; each draws its own fold assignment, initialisation and augmentation.
    pub seeds: Vec<u64>,
    /// The recipes, in the order given.
    pub recipes: Vec<Recipe>,
    /// Every task, by index (recipe-major, then seed, then fold).
    pub tasks: Vec<SweepTask>,
}

/// One task: one fold of one seed of one recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepTask {
    /// Its index, 0-based (Slurm's `SLURM_ARRAY_TASK_ID`, Kubernetes' `JOB_COMPLETION_INDEX`).
    pub index: usize,
    /// The recipe's name.
    pub recipe: String,
    /// The seed.
    pub seed: u64,
    /// The validation fold, 1 to K.
    pub fold: usize,
    /// Its run folder, relative to the sweep folder.
    pub run: PathBuf,
    /// The exact arguments of `ct3d train` (after the word `train`) that run it.
    pub args: Vec<String>,
}

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// Where the scans are listed (made absolute by [`plan`]).
    pub source: DataSource,
    /// The sweep folder.
    pub out: PathBuf,
    /// K, at least 2.
    pub folds: usize,
    /// The seeds (at least one, no repeats).
    pub seeds: Vec<u64>,
    /// The recipes (at least one, unique names); none given means one recipe, `default`, with no
    /// arguments of its own.
    pub recipes: Vec<Recipe>,
    /// `ct3d train` options given to every task after the recipe's own (so they win).
    pub common: Vec<String>,
}

/// Why a sweep cannot be planned, run or collected. One line.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The specification is not usable.
    #[error("{0}")]
    Spec(String),
    /// A recipe file is not usable.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// The folder holds another sweep.
    #[error(
        "{}: this folder holds another sweep (its sweep.json differs); plan into a new folder",
        dir.display()
    )]
    OtherPlan {
        /// The sweep folder.
        dir: PathBuf,
    },
    /// `sweep.json` is missing or cannot be read.
    #[error("{}: {reason}", path.display())]
    Plan {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A task index beyond the plan.
    #[error("task index {index} is out of range: the sweep in {} has {count} tasks (0 to {})", dir.display(), count.saturating_sub(1))]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many tasks there are.
        count: usize,
        /// The sweep folder.
        dir: PathBuf,
    },
    /// Training or evaluating a task failed (the cause is the source: a printed chain reads
    /// `task I: why`).
    #[error("task {index}")]
    Task {
        /// The task.
        index: usize,
        /// What failed (a [`crate::cv::CvError`]).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cluster's submission command failed.
    #[error("{0}")]
    Submit(String),
    /// The sweep folder could not be locked or written.
    #[error(transparent)]
    Run(#[from] crate::error::RunError),
}

impl SweepPlan {
    /// Task `index`, or [`SweepError::IndexOutOfRange`] naming the folder `dir`.
    pub fn task(&self, index: usize, dir: &Path) -> Result<&SweepTask, SweepError> {
        self.tasks
            .get(index)
            .ok_or_else(|| SweepError::IndexOutOfRange {
                index,
                count: self.tasks.len(),
                dir: dir.to_owned(),
            })
    }
}

/// The run folder of a task, relative to the sweep folder.
pub fn task_run(recipe: &str, seed: u64, fold: usize) -> PathBuf {
    Path::new("runs")
        .join(recipe)
        .join(format!("seed-{seed}"))
        .join(format!("fold-{fold}"))
}

/// The record file of task `index`, relative to the sweep folder.
pub fn task_record(index: usize) -> PathBuf {
    Path::new("results").join(format!("task-{index:04}.json"))
}

/// Lays out every task of `spec` (nothing is written; see [`write_plan`]). Paths in the
/// arguments are absolute, so a task runs the same from any working directory and machine that
/// sees the same file system.
pub fn plan(spec: &SweepSpec) -> Result<SweepPlan, SweepError> {
    if spec.folds < 2 {
        return Err(SweepError::Spec(format!(
            "--folds {}: a sweep needs at least 2 folds",
            spec.folds
        )));
    }
    if spec.seeds.is_empty() {
        return Err(SweepError::Spec(
            "--seeds: give at least one seed".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(seed) = spec.seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(SweepError::Spec(format!(
            "--seeds: seed {seed} is given twice"
        )));
    }
    let recipes = if spec.recipes.is_empty() {
        vec![Recipe::default_recipe()]
    } else {
        spec.recipes.clone()
    };
    let mut names = std::collections::HashSet::new();
    if let Some(recipe) = recipes.iter().find(|r| !names.insert(r.name.as_str())) {
        return Err(SweepError::Spec(format!(
            "two recipes are named {:?}; give them distinct `name`s",
            recipe.name
        )));
    }
    check_flags(&spec.common, "the extra train options").map_err(SweepError::Spec)?;
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| SweepError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let out = absolute(&spec.out)?;
    let data_args = match &spec.source {
        DataSource::Folder(dir) => vec!["--data".to_owned(), path_arg(&absolute(dir)?)],
        DataSource::Manifest(csv) => vec!["--manifest".to_owned(), path_arg(&absolute(csv)?)],
    };
    let mut tasks = Vec::new();
    for recipe in &recipes {
        for &seed in &spec.seeds {
            for fold in 1..=spec.folds {
                let run = task_run(&recipe.name, seed, fold);
                let mut args = data_args.clone();
                args.extend([
                    "--out".to_owned(),
                    path_arg(&out.join(&run)),
                    "--folds".to_owned(),
                    spec.folds.to_string(),
                    "--fold".to_owned(),
                    fold.to_string(),
                    "--seed".to_owned(),
                    seed.to_string(),
                ]);
                args.extend(recipe.args.iter().cloned());
                args.extend(spec.common.iter().cloned());
                tasks.push(SweepTask {
                    index: tasks.len(),
                    recipe: recipe.name.clone(),
                    seed,
                    fold,
                    run,
                    args,
                });
            }
        }
    }
    Ok(SweepPlan {
        format: PLAN_FORMAT,
        folds: spec.folds,
        seeds: spec.seeds.clone(),
        recipes,
        tasks,
    })
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether [`write_plan`] wrote the plan or found the same one there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanWritten {
    /// `sweep.json` was written.
    New,
    /// The folder already held this very plan (planning again is harmless).
    Unchanged,
}

/// Writes `plan` to `dir/sweep.json` (creating `dir`), or refuses with
/// [`SweepError::OtherPlan`] when the folder holds a different one.
pub fn write_plan(dir: &Path, plan: &SweepPlan) -> Result<PlanWritten, SweepError> {
    // The lock makes "read, compare, write" one step when two planners race.
    let _lock = FolderLock::acquire_creating(dir)?;
    let path = dir.join(PLAN_FILE);
    if path.exists() {
        let existing = load_plan(dir)?;
        return if &existing == plan {
            Ok(PlanWritten::Unchanged)
        } else {
            Err(SweepError::OtherPlan {
                dir: dir.to_owned(),
            })
        };
    }
    write_json(&path, plan)?;
    Ok(PlanWritten::New)
}

/// Reads `dir/sweep.json`.
pub fn load_plan(dir: &Path) -> Result<SweepPlan, SweepError> {
    let path = dir.join(PLAN_FILE);
    let bytes = std::fs::read(&path).map_err(|error| SweepError::Plan {
        path: path.clone(),
        reason: if error.kind() == std::io::ErrorKind::NotFound {
            "no sweep here: write one with `ct3d sweep plan`".to_owned()
        } else {
            error.to_string()
        },
    })?;
    let plan: SweepPlan = serde_json::from_slice(&bytes).map_err(|error| SweepError::Plan {
        path: path.clone(),
        reason: format!("not a sweep plan: {error}"),
    })?;
    if plan.format != PLAN_FORMAT {
        return Err(SweepError::Plan {
            path,
            reason: format!(
                "sweep format {} is not this ct3d's ({PLAN_FORMAT})",
                plan.format
            ),
        });
    }
    if plan.tasks.iter().enumerate().any(|(i, t)| t.index != i) {
        return Err(SweepError::Plan {
            path,
            reason: "task indices are not 0, 1, 2, …".to_owned(),
        });
    }
    Ok(plan)
}

/// `results/task-<index>.json`: what one task measured, or why it failed. Free of wall-clock
/// times and absolute paths, so that a sweep run anywhere gives the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's index.
    pub index: usize,
    /// Its recipe.
    pub recipe: String,
    /// Its seed.
    pub seed: u64,
    /// Its fold.
    pub fold: usize,
    /// Its run folder, relative to the sweep folder.
    pub run: PathBuf,
    /// The fold's result (its `run` relative to the sweep folder), when the task finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<FoldResult>,
    /// The best weights' probability for each validation scan (run file order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f32>,
    /// Those scans' labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<u8>,
    /// Why the task failed (one line), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SweepError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| SweepError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    write_bytes_atomic(path, text.as_bytes()).map_err(|source| SweepError::Io {
        path: path.to_owned(),
        source,
    })
}
