//! Submitting a sweep to Slurm: one array job whose task `i` runs `ct3d sweep run-task DIR --index
//! i`, and one collect job that runs `ct3d sweep collect DIR` once every array task succeeded
//! (`--dependency=afterok`). ct3d builds no scheduler of its own: Slurm queues, places, retries
//! and accounts; the sweep folder on a shared file system is the only thing tasks share.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::{SweepError, SweepPlan};

/// How to ask Slurm for resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (`HH:MM:SS`, or any form sbatch accepts), per task.
    pub time: Option<String>,
    /// `--cpus-per-task`; also the task's thread count (`RAYON_NUM_THREADS`).
    pub cpus_per_task: usize,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<usize>,
    /// At most this many array tasks at once (`--array=0-(n-1)%M`).
    pub max_parallel: Option<usize>,
    /// More `#SBATCH` arguments, each as sbatch takes it (`--account=lab`, `--qos=long`).
    pub extra: Vec<String>,
    /// The `ct3d` executable the tasks run (absolute; the same path on every node).
    pub ct3d: PathBuf,
    /// The `sbatch` command.
    pub sbatch: PathBuf,
}

/// The two batch scripts of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmScripts {
    /// The array job (`slurm/tasks.sbatch`).
    pub tasks: String,
    /// The collect job (`slurm/collect.sbatch`), submitted with
    /// `--dependency=afterok:<array job id>`.
    pub collect: String,
}

/// The job ids sbatch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The array job.
    pub tasks_job: String,
    /// The collect job.
    pub collect_job: String,
    /// Where the scripts were written.
    pub scripts: [PathBuf; 2],
}

/// `text` as one POSIX shell word.
fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The batch scripts for the sweep in `dir` (absolute) with `plan`'s tasks.
pub fn scripts(dir: &Path, plan: &SweepPlan, options: &SlurmOptions) -> SlurmScripts {
    let dir_text = dir.to_string_lossy();
    let logs = dir.join("slurm").join("logs");
    let logs = logs.to_string_lossy();
    let mut common = Vec::new();
    if let Some(partition) = &options.partition {
        common.push(format!("--partition={partition}"));
    }
    common.extend(options.extra.iter().cloned());
    let header = |lines: &[String]| {
        lines
            .iter()
            .chain(&common)
            .map(|line| format!("#SBATCH {line}\n"))
            .collect::<String>()
    };
    let last = plan.tasks.len().saturating_sub(1);
    let mut task_lines = vec![
        "--job-name=ct3d-sweep".to_owned(),
        match options.max_parallel {
            Some(m) => format!("--array=0-{last}%{m}"),
            None => format!("--array=0-{last}"),
        },
        format!("--cpus-per-task={}", options.cpus_per_task.max(1)),
        // One log per array task and submission: a resubmitted sweep keeps the earlier logs.
        format!("--output={logs}/%A_%a.out"),
    ];
    if let Some(time) = &options.time {
        task_lines.push(format!("--time={time}"));
    }
    if let Some(gpus) = options.gpus_per_task {
        task_lines.push(format!("--gpus-per-task={gpus}"));
    }
    let ct3d = quote(&options.ct3d.to_string_lossy());
    let sweep = quote(&dir_text);
    let tasks = format!(
        "#!/bin/bash\n{}\
         # Written by `ct3d sweep submit`: array task i runs sweep task i of {sweep}/sweep.json.\n\
         # A finished task is skipped and a killed one resumes, so resubmitting is safe.\n\
         set -euo pipefail\n\
         # One compute thread per allocated CPU.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         exec {ct3d} sweep run-task {sweep} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        header(&task_lines),
    );
    let collect_lines = vec![
        "--job-name=ct3d-sweep-collect".to_owned(),
        "--cpus-per-task=1".to_owned(),
        // Without this a failed task leaves the collect job pending forever on clusters that do
        // not set DependencyParameters=kill_invalid_depend.
        "--kill-on-invalid-dep=yes".to_owned(),
        format!("--output={logs}/collect-%j.out"),
    ];
    let collect = format!(
        "#!/bin/bash\n{}\
         # Written by `ct3d sweep submit`: runs once every array task succeeded \
         (--dependency=afterok).\n\
         set -euo pipefail\n\
         exec {ct3d} sweep collect {sweep}\n",
        header(&collect_lines),
    );
    SlurmScripts { tasks, collect }
}

/// Writes the scripts into `dir/slurm/` and submits them: the array job, then the collect job
/// depending on it. `dir` must be absolute (tasks run from other working directories).
pub fn submit(
    dir: &Path,
    plan: &SweepPlan,
    options: &SlurmOptions,
) -> Result<Submission, SweepError> {
    let scripts = scripts(dir, plan, options);
    let slurm = dir.join("slurm");
    let logs = slurm.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| SweepError::Io {
        path: logs.clone(),
        source,
    })?;
    let tasks_path = slurm.join("tasks.sbatch");
    let collect_path = slurm.join("collect.sbatch");
    for (path, text) in [
        (&tasks_path, &scripts.tasks),
        (&collect_path, &scripts.collect),
    ] {
        ct3d_volume::atomic::write_bytes_atomic(path, text.as_bytes()).map_err(|source| {
            SweepError::Io {
                path: path.clone(),
                source,
            }
        })?;
    }
    let tasks_job = sbatch(&options.sbatch, &[], &tasks_path)?;
    let collect_job = sbatch(
        &options.sbatch,
        &[format!("--dependency=afterok:{tasks_job}")],
        &collect_path,
    )?;
    Ok(Submission {
        tasks_job,
        collect_job,
        scripts: [tasks_path, collect_path],
    })
}

/// Runs `sbatch --parsable ARGS SCRIPT` and returns the job id.
fn sbatch(sbatch: &Path, args: &[String], script: &Path) -> Result<String, SweepError> {
    let output = Command::new(sbatch)
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(|error| {
            SweepError::Submit(if error.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{}: not found; submit from a Slurm login node, or print the scripts with \
                     --dry-run",
                    sbatch.display()
                )
            } else {
                format!("{}: {error}", sbatch.display())
            })
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first_line = |text: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_owned()
    };
    if !output.status.success() {
        return Err(SweepError::Submit(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            output.status,
            first_line(&stderr)
        )));
    }
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = first_line(&stdout)
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SweepError::Submit(format!(
            "sbatch {} printed no job id (stdout {:?}, stderr {:?})",
            script.display(),
            first_line(&stdout),
            first_line(&stderr)
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::plan::{SweepSpec, plan};

    fn options() -> SlurmOptions {
        SlurmOptions {
            partition: Some("gpu".to_owned()),
            time: Some("02:00:00".to_owned()),
            cpus_per_task: 4,
            gpus_per_task: Some(1),
            max_parallel: Some(8),
            extra: vec!["--account=lab".to_owned()],
            ct3d: PathBuf::from("/opt/ct3d/bin/ct3d"),
            sbatch: PathBuf::from("sbatch"),
        }
    }

    fn sweep() -> SweepPlan {
        plan(&SweepSpec {
            source: crate::data::source::DataSource::Folder(PathBuf::from("/data")),
            out: PathBuf::from("/sweeps/my sweep"),
            folds: 5,
            seeds: vec![1, 2, 3],
            recipes: Vec::new(),
            common: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn the_array_covers_every_task_and_quotes_paths() {
        let s = scripts(Path::new("/sweeps/my sweep"), &sweep(), &options());
        for line in [
            "#SBATCH --array=0-14%8\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --time=02:00:00\n",
            "#SBATCH --gpus-per-task=1\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --account=lab\n",
            "export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n",
            "exec /opt/ct3d/bin/ct3d sweep run-task '/sweeps/my sweep' --index \"$SLURM_ARRAY_TASK_ID\"\n",
        ] {
            assert!(s.tasks.contains(line), "{line}\n{}", s.tasks);
        }
        assert!(s.collect.contains("#SBATCH --kill-on-invalid-dep=yes\n"));
        assert!(s.collect.contains("#SBATCH --partition=gpu\n"));
        assert!(
            s.collect
                .contains("exec /opt/ct3d/bin/ct3d sweep collect '/sweeps/my sweep'\n")
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_missing_or_failing_sbatch_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options();
        o.sbatch = dir.path().join("no-sbatch-here");
        let error = submit(dir.path(), &sweep(), &o).unwrap_err().to_string();
        assert!(error.contains("not found"), "{error}");
        assert!(error.contains("--dry-run"), "{error}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let fake = dir.path().join("sbatch");
            std::fs::write(
                &fake,
                "#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n",
            )
            .unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            o.sbatch = fake;
            let error = submit(dir.path(), &sweep(), &o).unwrap_err().to_string();
            assert!(
                error.contains("failed") && error.contains("invalid partition specified: gpu"),
                "{error}"
            );
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
