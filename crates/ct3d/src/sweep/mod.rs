//! Sweeps: cross-validation repeated over seeds and recipes, as independent tasks that any number
//! of processes on any number of machines can run (a Slurm job array, a Kubernetes Indexed Job, a
//! shell loop), with results identical to one local run.
//!
//! A sweep folder holds:
//! - `sweep.json` ([`SweepPlan`]): every task (recipe × seed × fold), its run folder and its exact
//!   `ct3d train` arguments; written once by [`write_plan`], never changed;
//! - `runs/<recipe>/seed-<s>/fold-<i>/`: each task's ordinary run folder, with its
//!   `report.html`;
//! - `results/task-<index>.json` ([`TaskRecord`]): what a task measured (or why it failed),
//!   written atomically when the task ends;
//! - `summary.json`, `summary.csv`, `summary.html` ([`collect`]);
//! - `slurm/`: the batch scripts and logs of [`slurm::submit`].
//!
//! A task is the unit `ct3d cv` runs for each fold ([`crate::cv`]): train (or resume an
//! interrupted run, or only evaluate a finished one), then evaluate the best weights on the
//! validation fold. So `ct3d cv` is the sweep of one seed and one recipe. Running a task twice is
//! harmless: a finished task is evaluated again and gives the same record; a killed one resumes
//! from its last complete epoch; two processes on one task are kept apart by the run folder's
//! lock ([`crate::run::FolderLock`]).

use std::path::Path;

use crate::cv::{CvError, FoldRun, FoldTraining, train_fold};
use crate::inference::{WeightsChoice, load_run};
use crate::observe::TrainObserver;
use crate::report::{ReportError, ReportOptions, build_report, write_report};
use crate::request::TrainRequest;

mod collect;
mod plan;
mod recipe;
pub mod slurm;

use crate::error::one_line;
pub use collect::{
    IncompleteTask, RecipeSummary, SeedPooled, SweepSummary, TaskState, collect, summary_csv,
};
use plan::write_json;
pub use plan::{
    PLAN_FILE, PLAN_FORMAT, PlanWritten, SweepError, SweepPlan, SweepSpec, SweepTask, TaskRecord,
    load_plan, plan, task_record, task_run, write_plan,
};
pub use recipe::{RESERVED_FLAGS, Recipe, RecipeError};

/// Runs task `index` of the sweep in `dir`: `request` is its `ct3d train` arguments parsed by
/// the caller (the command line). Trains the fold (a finished one is only evaluated, an
/// interrupted one resumes; a run folder with other settings is refused), evaluates its best
/// weights on its validation fold, and records the outcome in `results/task-<index>.json` —
/// also when it fails, so that [`collect`] can name the failure.
pub fn run_task(
    dir: &Path,
    plan: &SweepPlan,
    index: usize,
    request: &TrainRequest,
    observer: &dyn TrainObserver,
) -> Result<TaskRecord, SweepError> {
    let task = plan.task(index, dir)?;
    let source = request.source();
    let outcome = train_fold(
        &FoldTraining {
            source: &source,
            dir: &request.out,
            cache: &request.cache,
            config: request.config.clone(),
            device: request.device,
            force: false,
            skip_bad: request.skip_bad,
        },
        observer,
        |_| {},
    );
    let mut record = TaskRecord {
        index,
        recipe: task.recipe.clone(),
        seed: task.seed,
        fold: task.fold,
        run: task.run.clone(),
        result: None,
        probabilities: Vec::new(),
        labels: Vec::new(),
        error: None,
    };
    let failure = match outcome {
        Ok(FoldRun {
            mut result,
            probabilities,
            labels,
            ..
        }) => {
            result.run = task.run.clone();
            record.result = Some(result);
            record.probabilities = probabilities;
            record.labels = labels;
            write_run_report(&request.out, request.device);
            None
        }
        // Another process runs this task right now: it will write the record.
        Err(CvError::Train(crate::error::TrainError::Run(
            error @ crate::error::RunError::InUse { .. },
        ))) => {
            return Err(SweepError::Task {
                index,
                source: Box::new(CvError::from(error)),
            });
        }
        Err(error) => {
            record.error = Some(one_line(&error));
            Some(error)
        }
    };
    let results = dir.join("results");
    std::fs::create_dir_all(&results).map_err(|source| SweepError::Io {
        path: results.clone(),
        source,
    })?;
    write_json(&dir.join(task_record(index)), &record)?;
    match failure {
        Some(error) => Err(SweepError::Task {
            index,
            source: Box::new(error),
        }),
        None => Ok(record),
    }
}

/// Writes the run's HTML report (`RUN/report.html`, what `ct3d report --run RUN` writes) for
/// the sweep's summary to link to. A report that cannot be made is only logged: the task's
/// numbers stand without it.
fn write_run_report(run: &Path, device: ct3d_model::DeviceChoice) {
    let written = load_run(run, WeightsChoice::Best, device)
        .map_err(ReportError::from)
        .and_then(|loaded| build_report(&loaded, WeightsChoice::Best, &ReportOptions::default()))
        .and_then(|report| write_report(&report.html, &run.join("report.html")));
    if let Err(error) = written {
        tracing::warn!("{}: no report: {}", run.display(), one_line(&error));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::data::source::DataSource;

    fn spec() -> SweepSpec {
        SweepSpec {
            source: DataSource::Folder(PathBuf::from("/data")),
            out: PathBuf::from("/sweeps/a"),
            folds: 3,
            seeds: vec![1, 2],
            recipes: vec![
                Recipe {
                    name: "small".to_owned(),
                    file: None,
                    args: vec!["--epochs".to_owned(), "2".to_owned()],
                },
                Recipe {
                    name: "wide".to_owned(),
                    file: None,
                    args: vec!["--filters".to_owned(), "8,8,16,32".to_owned()],
                },
            ],
            common: vec!["--size".to_owned(), "46,46,46".to_owned()],
        }
    }

    #[test]
    fn tasks_are_recipe_major_then_seed_then_fold() {
        let plan = plan(&spec()).unwrap();
        assert_eq!(plan.tasks.len(), 12);
        let t = &plan.tasks[7];
        assert_eq!(
            (t.index, t.recipe.as_str(), t.seed, t.fold),
            (7, "wide", 1, 2)
        );
        assert_eq!(t.run, PathBuf::from("runs/wide/seed-1/fold-2"));
        assert_eq!(
            t.args,
            [
                "--data",
                "/data",
                "--out",
                "/sweeps/a/runs/wide/seed-1/fold-2",
                "--folds",
                "3",
                "--fold",
                "2",
                "--seed",
                "1",
                "--filters",
                "8,8,16,32",
                "--size",
                "46,46,46"
            ]
        );
    }

    #[test]
    fn bad_specs_are_refused_on_one_line() {
        let mut s = spec();
        s.seeds = vec![1, 1];
        assert!(
            plan(&s)
                .unwrap_err()
                .to_string()
                .contains("seed 1 is given twice")
        );
        let mut s = spec();
        s.folds = 1;
        assert!(
            plan(&s)
                .unwrap_err()
                .to_string()
                .contains("at least 2 folds")
        );
        let mut s = spec();
        s.common = vec!["--seed".to_owned(), "3".to_owned()];
        let message = plan(&s).unwrap_err().to_string();
        assert!(message.contains("--seed"), "{message}");
        let mut s = spec();
        s.recipes[1].name = "small".to_owned();
        assert!(plan(&s).unwrap_err().to_string().contains("two recipes"));
    }

    #[test]
    fn a_folder_keeps_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.out = dir.path().to_owned();
        let first = plan(&s).unwrap();
        assert_eq!(write_plan(dir.path(), &first).unwrap(), PlanWritten::New);
        assert_eq!(
            write_plan(dir.path(), &first).unwrap(),
            PlanWritten::Unchanged
        );
        s.seeds = vec![1, 2, 3];
        let other = plan(&s).unwrap();
        let error = write_plan(dir.path(), &other).unwrap_err();
        assert!(matches!(error, SweepError::OtherPlan { .. }), "{error}");
        assert_eq!(load_plan(dir.path()).unwrap(), first);
        let error = first.task(12, dir.path()).unwrap_err().to_string();
        assert!(error.contains("task index 12 is out of range"), "{error}");
        assert!(error.contains("12 tasks (0 to 11)"), "{error}");
    }
}
