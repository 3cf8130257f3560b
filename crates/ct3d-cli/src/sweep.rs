//! `ct3d sweep`: plan a sweep (folds × seeds × recipes), run one task, submit the whole sweep to
//! Slurm, collect the results. The library ([`ct3d::sweep`]) does the work; this file converts
//! flags, and parses each task's recorded `ct3d train` arguments with `train`'s own parser.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use ct3d::sweep::{self, Recipe, SweepSpec};

use crate::args::DataArgs;
use crate::cli::{Cli, Command};

/// `ct3d sweep`'s subcommands (their help text is on [`crate::cli::Command::Sweep`]).
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: SweepCommand,
}

#[derive(Debug, Subcommand)]
enum SweepCommand {
    /// Write DIR/sweep.json: every task (recipe × seed × fold) with its exact `ct3d train`
    /// arguments. Train options for every task go after `--`.
    ///
    /// Example: ct3d sweep plan --data scans --out sweep --folds 5 --seeds 1,2,3
    ///   --recipe small.toml --recipe resnet.toml -- --epochs 30 --size 128,128,64
    Plan(PlanArgs),
    /// Run one task: train its fold (a finished task is only evaluated, a killed one resumes),
    /// evaluate it, record DIR/results/task-<I>.json. Without --index, the index comes from
    /// SLURM_ARRAY_TASK_ID (Slurm job arrays) or JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs).
    RunTask(RunTaskArgs),
    /// Submit the sweep to Slurm: an array job of every task (`ct3d sweep run-task`) and a
    /// collect job that runs when all succeeded (--dependency=afterok). Prints the job ids;
    /// --dry-run prints the scripts instead.
    Submit(SubmitArgs),
    /// Gather every task's record into DIR/summary.csv, summary.json and summary.html: per
    /// recipe, mean ± SD over folds and seeds, pooled out-of-fold metrics with 95 % intervals
    /// per seed. Failed and unfinished tasks are listed, not averaged.
    Collect(CollectArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The sweep folder (created; a folder holding another sweep is refused).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// K: every recipe and seed is cross-validated over K stratified folds.
    #[arg(long, value_name = "K", default_value_t = 5)]
    folds: usize,
    /// The seeds, comma-separated; each draws its own folds, initialisation and augmentation.
    #[arg(long, value_name = "S,S,…", value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
    /// A recipe file (TOML: `name = "…"` and a `[train]` table of `ct3d train` flags without
    /// dashes); repeat for several. Default: one recipe, `default`, of the options after `--`.
    #[arg(long, value_name = "FILE.toml")]
    recipe: Vec<PathBuf>,
    /// `ct3d train` options for every task (after `--`), e.g. `-- --epochs 30 --size 64,64,64`.
    #[arg(last = true, value_name = "TRAIN OPTIONS")]
    train: Vec<String>,
}

#[derive(Debug, Args)]
struct RunTaskArgs {
    /// The sweep folder.
    dir: PathBuf,
    /// The task, 0 to n − 1 (default: $SLURM_ARRAY_TASK_ID, then $JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I")]
    index: Option<usize>,
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// The sweep folder (on a file system every node sees at the same path).
    dir: PathBuf,
    /// Slurm partition.
    #[arg(long, value_name = "P")]
    partition: Option<String>,
    /// Time limit per task (HH:MM:SS).
    #[arg(long, value_name = "HH:MM:SS")]
    time: Option<String>,
    /// CPUs per task (also its number of compute threads).
    #[arg(long, value_name = "N", default_value_t = 2)]
    cpus_per_task: usize,
    /// GPUs per task (for a GPU build of ct3d).
    #[arg(long, value_name = "N")]
    gpus_per_task: Option<usize>,
    /// At most M tasks at once (`--array=0-(n-1)%M`).
    #[arg(long, value_name = "M")]
    max_parallel: Option<usize>,
    /// One more #SBATCH argument, as sbatch takes it (`--sbatch-arg=--account=lab`); repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    sbatch_arg: Vec<String>,
    /// Print the scripts; submit nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct CollectArgs {
    /// The sweep folder.
    dir: PathBuf,
}

impl SweepArgs {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        match self.command {
            SweepCommand::Plan(args) => args.run(),
            SweepCommand::RunTask(args) => args.run(),
            SweepCommand::Submit(args) => args.run(),
            SweepCommand::Collect(args) => args.run(),
        }
    }
}

/// `ct3d train`'s flags parsed from `args` (the words after `train`).
fn train_args(args: &[String]) -> Result<crate::train::TrainArgs, clap::Error> {
    let words = ["ct3d", "train"]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().cloned());
    match Cli::try_parse_from(words)?.command {
        Command::Train(args) => Ok(args),
        _ => unreachable!("the words start with `train`"),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

impl PlanArgs {
    fn run(self) -> Result<()> {
        let recipes = self
            .recipe
            .iter()
            .map(|path| Recipe::from_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = SweepSpec {
            source: self.data.source(),
            out: self.out.clone(),
            folds: self.folds,
            seeds: self.seeds,
            recipes,
            common: self.train,
        };
        let plan = sweep::plan(&spec)?;
        // Every task must be a valid `ct3d train` command before anything is written.
        for task in &plan.tasks {
            if let Err(error) = train_args(&task.args) {
                bail!(
                    "recipe {}: its train options are not valid: {}",
                    task.recipe,
                    clap_line(&error)
                );
            }
        }
        let written = sweep::write_plan(&self.out, &plan)?;
        let dir = self.out.display();
        match written {
            sweep::PlanWritten::New => println!(
                "planned {} tasks ({} recipe(s) × {} seed(s) × {} folds) in {dir}/sweep.json",
                plan.tasks.len(),
                plan.recipes.len(),
                plan.seeds.len(),
                plan.folds
            ),
            sweep::PlanWritten::Unchanged => {
                println!("{dir} already holds this plan ({} tasks)", plan.tasks.len())
            }
        }
        println!(
            "next: ct3d sweep submit {dir}   (Slurm), or locally: for i in $(seq 0 {}); do ct3d sweep run-task {dir} --index $i; done; ct3d sweep collect {dir}",
            plan.tasks.len().saturating_sub(1)
        );
        Ok(())
    }
}

/// The task index: the flag, else Slurm's, else Kubernetes'.
fn task_index(given: Option<usize>) -> Result<usize> {
    if let Some(index) = given {
        return Ok(index);
    }
    for variable in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(text) = std::env::var(variable) {
            return text
                .trim()
                .parse()
                .with_context(|| format!("{variable}={text:?} is not a task index"));
        }
    }
    bail!(
        "no task index: pass --index I, or run inside a Slurm array job (SLURM_ARRAY_TASK_ID) or \
         a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)"
    )
}

impl RunTaskArgs {
    fn run(self) -> Result<()> {
        let plan = sweep::load_plan(&self.dir)?;
        let index = task_index(self.index)?;
        let task = plan.task(index, &self.dir)?;
        let request = train_args(&task.args)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: task {index}'s train options are not valid for this ct3d: {}",
                    self.dir.join(sweep::PLAN_FILE).display(),
                    clap_line(&e)
                )
            })?
            .into_request()?;
        println!(
            "sweep task {index} of {}: recipe {}, seed {}, fold {}/{} → {}",
            plan.tasks.len(),
            task.recipe,
            task.seed,
            task.fold,
            plan.folds,
            request.out.display()
        );
        let observer = crate::train::ConsoleObserver::new(None);
        let record = sweep::run_task(&self.dir, &plan, index, &request, &observer);
        observer.clear();
        let record = record?;
        if let Some(result) = &record.result {
            let m = &result.metrics;
            println!(
                "task {index} done: {} epochs (best {}), val accuracy {:.4}, AUC {}; recorded in {}",
                result.epochs,
                result.best_epoch,
                m.accuracy,
                m.auc.map_or("n/a".to_owned(), |a| format!("{a:.4}")),
                self.dir.join(sweep::task_record(index)).display()
            );
        }
        Ok(())
    }
}

impl SubmitArgs {
    fn run(self) -> Result<()> {
        let plan = sweep::load_plan(&self.dir)?;
        let dir = std::path::absolute(&self.dir)
            .with_context(|| format!("{}: cannot make it absolute", self.dir.display()))?;
        let options = sweep::slurm::SlurmOptions {
            partition: self.partition,
            time: self.time,
            cpus_per_task: self.cpus_per_task,
            gpus_per_task: self.gpus_per_task,
            max_parallel: self.max_parallel,
            extra: self.sbatch_arg,
            ct3d: std::env::current_exe().context("cannot find the running ct3d executable")?,
            sbatch: PathBuf::from(std::env::var_os("CT3D_SBATCH").unwrap_or("sbatch".into())),
        };
        if self.dry_run {
            let scripts = sweep::slurm::scripts(&dir, &plan, &options);
            println!("# {}/slurm/tasks.sbatch\n{}", dir.display(), scripts.tasks);
            println!(
                "# {}/slurm/collect.sbatch (submitted with --dependency=afterok:<array job id>)\n{}",
                dir.display(),
                scripts.collect
            );
            return Ok(());
        }
        let submission = sweep::slurm::submit(&dir, &plan, &options)?;
        println!(
            "submitted {} tasks as array job {} and the collect job {} (runs when all succeed)",
            plan.tasks.len(),
            submission.tasks_job,
            submission.collect_job
        );
        println!(
            "watch: squeue -j {},{}   logs: {}/slurm/logs/   results: {}/summary.html",
            submission.tasks_job,
            submission.collect_job,
            dir.display(),
            dir.display()
        );
        Ok(())
    }
}

impl CollectArgs {
    fn run(self) -> Result<()> {
        let plan = sweep::load_plan(&self.dir)?;
        let summary = sweep::collect(&self.dir, &plan)?;
        print!("{}", table(&summary));
        println!(
            "wrote {}",
            ["summary.csv", "summary.json", "summary.html"]
                .map(|f| self.dir.join(f).display().to_string())
                .join(", ")
        );
        if !summary.complete() {
            let missing: usize = summary.recipes.iter().map(|r| r.incomplete.len()).sum();
            eprintln!(
                "{missing} task(s) failed or have not finished (listed in summary.html); rerun \
                 them with `ct3d sweep run-task {} --index I` and collect again",
                self.dir.display()
            );
        }
        Ok(())
    }
}

/// The console table of `collect`.
fn table(summary: &sweep::SweepSummary) -> String {
    use std::fmt::Write as _;
    let cell = |v: &Option<ct3d::cv::MeanSd>| match v {
        Some(s) => match s.sd {
            Some(sd) => format!("{:.4} ± {sd:.4}", s.mean),
            None => format!("{:.4}", s.mean),
        },
        None => "n/a".to_owned(),
    };
    let mut t = format!(
        "{:<20} {:>9} {:>17} {:>17}\n",
        "recipe", "finished", "accuracy", "AUC"
    );
    for r in &summary.recipes {
        let _ = writeln!(
            t,
            "{:<20} {:>9} {:>17} {:>17}",
            r.recipe,
            format!("{}/{}", r.finished, r.tasks),
            cell(&r.mean.accuracy),
            cell(&r.mean.auc)
        );
    }
    t
}

/// Parses `ct3d sweep …` words (the tests' way in).
#[cfg(test)]
fn parse(words: &[&str]) -> Result<SweepArgs, clap::Error> {
    match Cli::try_parse_from(words)?.command {
        Command::Sweep(args) => Ok(args),
        _ => panic!("not sweep"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_options_go_after_the_separator() {
        let args = parse(&[
            "ct3d", "sweep", "plan", "--data", "d", "--out", "s", "--seeds", "1,2", "--",
            "--epochs", "3",
        ])
        .unwrap();
        let SweepCommand::Plan(plan) = args.command else {
            panic!()
        };
        assert_eq!(plan.seeds, [1, 2]);
        assert_eq!(plan.train, ["--epochs", "3"]);
        let error = train_args(&["--data".into(), "d".into(), "--bogus".into()]).unwrap_err();
        assert!(
            clap_line(&error).contains("--bogus"),
            "{}",
            clap_line(&error)
        );
    }
}
