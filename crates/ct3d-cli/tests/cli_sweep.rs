//! End-to-end tests of `ct3d sweep` (plan, run-task, submit, collect) and of many processes
//! sharing one preprocessing cache, on tiny phantoms (model input 48³, filters 4,4,8,8, one or
//! two epochs). The Slurm test needs a running cluster (`tools/slurm/single-node.sh`); it is
//! skipped without `sbatch` unless `CT3D_REQUIRE_SLURM=1` (CI), where it must run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::{
    SMALL_MODEL, assert_clean_failure, assert_success, ct3d, s, stderr, stdout, synth_into,
};

/// The train options of every test sweep: the small model, `epochs` epochs.
fn tiny(epochs: &str) -> Vec<&str> {
    let mut args = SMALL_MODEL.to_vec();
    args.extend(["--epochs", epochs]);
    args
}

fn plan(data: &Path, out: &Path, folds: &str, seeds: &str, train: &[&str]) -> std::process::Output {
    let mut args = vec![
        "sweep",
        "plan",
        "--data",
        s(data),
        "--out",
        s(out),
        "--folds",
        folds,
        "--seeds",
        seeds,
        "--",
    ];
    args.extend_from_slice(train);
    ct3d(&args)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `history.csv` without its wall-clock column (`seconds`, the last): the only part of a run
/// that cannot repeat.
fn history_without_time(run: &Path) -> String {
    let text = fs::read_to_string(run.join("history.csv")).unwrap();
    assert!(
        text.starts_with("epoch,loss,acc,val_loss,val_acc,lr,seconds\n"),
        "{text}"
    );
    text.lines()
        .map(|line| line.rsplit_once(',').unwrap().0.to_owned() + "\n")
        .collect()
}

/// Runs every task of the sweep in `dir` one after the other, then collects.
fn run_locally(dir: &Path, tasks: usize) {
    for index in 0..tasks {
        let out = ct3d(&["sweep", "run-task", s(dir), "--index", &index.to_string()]);
        assert_success(&out);
    }
    assert_success(&ct3d(&["sweep", "collect", s(dir)]));
}

/// Every byte two sweeps must share: the summary, each task's record, and each run's best
/// weights and history (less its wall-clock column).
fn assert_same_results(a: &Path, b: &Path, tasks: usize) {
    for file in ["summary.csv", "summary.json"] {
        assert_eq!(
            fs::read(a.join(file)).unwrap(),
            fs::read(b.join(file)).unwrap(),
            "{file} differs"
        );
    }
    let plan = read_json(&a.join("sweep.json"));
    for index in 0..tasks {
        let record = format!("results/task-{index:04}.json");
        assert_eq!(
            fs::read(a.join(&record)).unwrap(),
            fs::read(b.join(&record)).unwrap(),
            "{record} differs"
        );
        let run = PathBuf::from(plan["tasks"][index]["run"].as_str().unwrap());
        assert_eq!(
            fs::read(a.join(&run).join("best.safetensors")).unwrap(),
            fs::read(b.join(&run).join("best.safetensors")).unwrap(),
            "{}: best.safetensors differs",
            run.display()
        );
        assert_eq!(
            history_without_time(&a.join(&run)),
            history_without_time(&b.join(&run)),
            "{}: history.csv differs",
            run.display()
        );
    }
}

#[test]
fn a_sweep_of_one_seed_and_recipe_is_cv() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_into(&dir.path().join("data"), 4, 4, 11, Some(40));
    let sweep = dir.path().join("sweep");
    let out = plan(&data, &sweep, "2", "3", &tiny("1"));
    assert_success(&out);
    assert!(stdout(&out).contains("planned 2 tasks"), "{}", stdout(&out));
    // Planning again is harmless; another plan into the same folder is refused.
    assert_success(&plan(&data, &sweep, "2", "3", &tiny("1")));
    assert_clean_failure(
        &plan(&data, &sweep, "2", "3,4", &tiny("1")),
        &["holds another sweep"],
    );
    run_locally(&sweep, 2);
    let summary = read_json(&sweep.join("summary.json"));
    assert_eq!(summary["recipes"][0]["finished"], 2);
    // Each task wrote its run's report, and the summary page links to it.
    let html = fs::read_to_string(sweep.join("summary.html")).unwrap();
    for fold in 1..=2 {
        let report = format!("runs/default/seed-3/fold-{fold}/report.html");
        assert!(sweep.join(&report).is_file(), "{report}");
        assert!(html.contains(&format!("href=\"{report}\"")), "{html}");
    }

    // `ct3d cv` with the same settings trains the same fold runs and measures the same.
    let cv = dir.path().join("cv");
    let mut args = vec![
        "cv",
        "--data",
        s(&data),
        "--out",
        s(&cv),
        "--folds",
        "2",
        "--seed",
        "3",
    ];
    args.extend(tiny("1"));
    assert_success(&ct3d(&args));
    let cv_summary = read_json(&cv.join("cv.json"));
    for fold in 1..=2 {
        let task = read_json(&sweep.join(format!("results/task-{:04}.json", fold - 1)));
        assert_eq!(
            task["result"]["metrics"],
            cv_summary["per_fold"][fold - 1]["metrics"],
            "fold {fold}"
        );
        let run = sweep.join(format!("runs/default/seed-3/fold-{fold}"));
        let cv_run = cv.join(format!("fold-{fold}"));
        assert_eq!(
            fs::read(run.join("best.safetensors")).unwrap(),
            fs::read(cv_run.join("best.safetensors")).unwrap()
        );
        assert_eq!(history_without_time(&run), history_without_time(&cv_run));
    }
    assert_eq!(
        summary["recipes"][0]["pooled"][0]["metrics"]["auc"],
        cv_summary["pooled"]["auc"]
    );

    // A finished task is only evaluated again: same record, same weights, no new epoch.
    let record = fs::read(sweep.join("results/task-0000.json")).unwrap();
    let run = sweep.join("runs/default/seed-3/fold-1");
    let weights = fs::read(run.join("best.safetensors")).unwrap();
    let history = history_without_time(&run);
    let again = ct3d(&["sweep", "run-task", s(&sweep), "--index", "0"]);
    assert_success(&again);
    assert!(!stdout(&again).contains("Epoch 1/1"), "{}", stdout(&again));
    assert_eq!(
        fs::read(sweep.join("results/task-0000.json")).unwrap(),
        record
    );
    assert_eq!(fs::read(run.join("best.safetensors")).unwrap(), weights);
    assert_eq!(history_without_time(&run), history);
}

#[test]
fn sweep_refuses_bad_input_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_into(&dir.path().join("data"), 4, 4, 11, Some(40));
    let sweep = dir.path().join("sweep");
    // Flags the sweep sets itself, and flags train does not know, are refused before writing.
    assert_clean_failure(
        &plan(&data, &sweep, "2", "1", &["--seed", "4"]),
        &["--seed is set by the sweep"],
    );
    assert_clean_failure(
        &plan(&data, &sweep, "2", "1", &["--bogus"]),
        &["not valid", "--bogus"],
    );
    assert!(!sweep.join("sweep.json").exists());
    let recipe = dir.path().join("r.toml");
    fs::write(&recipe, "[train]\nout = \"x\"\n").unwrap();
    let out = ct3d(&[
        "sweep",
        "plan",
        "--data",
        s(&data),
        "--out",
        s(&sweep),
        "--recipe",
        s(&recipe),
    ]);
    assert_clean_failure(&out, &["r.toml", "--out is set by the sweep"]);

    assert_success(&plan(&data, &sweep, "2", "1", &tiny("1")));
    assert_clean_failure(
        &ct3d(&["sweep", "run-task", s(&sweep), "--index", "2"]),
        &["task index 2 is out of range", "2 tasks (0 to 1)"],
    );
    let no_index = Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(["sweep", "run-task", s(&sweep)])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    assert_clean_failure(&no_index, &["no task index", "--index"]);
    assert_clean_failure(
        &ct3d(&["sweep", "collect", s(&dir.path().join("nowhere"))]),
        &["no sweep here"],
    );

    // A task's run folder trained with other settings is refused, as `cv` refuses a fold.
    let run = sweep.join("runs/default/seed-1/fold-1");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--folds",
        "2",
        "--fold",
        "1",
        "--seed",
        "1",
    ];
    args.extend(tiny("2"));
    assert_success(&ct3d(&args));
    let out = ct3d(&["sweep", "run-task", s(&sweep), "--index", "0"]);
    assert_clean_failure(&out, &["task 0", "other settings", "epochs"]);
    // …and recorded as failed, so that collect lists it instead of averaging it.
    let collected = ct3d(&["sweep", "collect", s(&sweep)]);
    assert_success(&collected);
    assert!(stderr(&collected).contains("2 task(s) failed or have not finished"));
    let summary = read_json(&sweep.join("summary.json"));
    let incomplete = &summary["recipes"][0]["incomplete"];
    assert_eq!(incomplete[0]["state"], "failed", "{summary}");
    assert!(
        incomplete[0]["error"]
            .as_str()
            .unwrap()
            .contains("other settings")
    );
    assert_eq!(incomplete[1]["state"], "not_finished", "{summary}");
    let csv = fs::read_to_string(sweep.join("summary.csv")).unwrap();
    assert!(csv.contains("\ndefault,2,0,1,1,,,"), "{csv}");
    let html = fs::read_to_string(sweep.join("summary.html")).unwrap();
    assert!(html.contains("task 0 (seed 1, fold 1): failed"), "{html}");

    // Without Slurm, submit says so on one line; --dry-run shows the scripts.
    let no_sbatch = Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(["sweep", "submit", s(&sweep)])
        .env("CT3D_SBATCH", dir.path().join("no-sbatch"))
        .output()
        .unwrap();
    assert_clean_failure(&no_sbatch, &["not found", "--dry-run"]);
    let dry = ct3d(&[
        "sweep",
        "submit",
        s(&sweep),
        "--dry-run",
        "--max-parallel",
        "1",
    ]);
    assert_success(&dry);
    assert!(
        stdout(&dry).contains("#SBATCH --array=0-1%1"),
        "{}",
        stdout(&dry)
    );
}

/// Sets every file under `dir` to have been modified an hour ago, so the cache index may record
/// them (files changed within the last 2 s are hashed but not indexed).
fn age_files(dir: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age_files(&path);
        } else {
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
}

#[test]
fn concurrent_prepares_share_one_cache_safely() {
    let dir = tempfile::tempdir().unwrap();
    // 256² phantoms: large enough that a prepare takes a while (≈ 0.2 s alone, longer six at a
    // time on two cores), so the kills land part-way.
    let data = dir.path().join("data");
    assert_success(&ct3d(&[
        "synth",
        "--out",
        s(&data),
        "--normal",
        "8",
        "--abnormal",
        "8",
        "--seed",
        "5",
        "--size-xy",
        "256",
        "--depth",
        "40",
    ]));
    age_files(&data);
    let cache = dir.path().join("cache");
    // Two preprocessing sizes, as two recipes of a sweep would ask for: each process learns
    // index records (entry parameters) the others do not have, so a process that saved only
    // what it loaded at its start would drop the others' records.
    let args = |size: &'static str| {
        vec![
            "prepare".to_owned(),
            "--data".to_owned(),
            s(&data).to_owned(),
            "--cache".to_owned(),
            s(&cache).to_owned(),
            "--size".to_owned(),
            size.to_owned(),
            "--jobs".to_owned(),
            "1".to_owned(),
        ]
    };
    let sizes = ["48,48,48", "32,32,32"];
    // Eight processes at once, two of them killed part-way (kill -9: no clean-up of any kind).
    let mut children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_ct3d"))
                .args(args(sizes[i % 2]))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, after_ms) in children[..2].iter_mut().zip([40, 150]) {
        std::thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill();
    }
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if i >= 2 {
            assert!(out.status.success(), "prepare {i}: {}", stderr(&out));
        }
    }
    // Every entry is whole (checksum) and the index records every scan and entry.
    let mut keys = Vec::new();
    for entry in fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "vol") {
            let opened = ct3d_volume::cache::CacheEntry::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            opened
                .load()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            keys.push(path.file_stem().unwrap().to_str().unwrap().to_owned());
        }
    }
    assert_eq!(keys.len(), 32, "one entry per scan and size");
    let index = read_json(&cache.join("index.json"));
    let files = index["files"].as_object().unwrap();
    assert_eq!(files.len(), 16, "{index}");
    for (path, record) in files {
        let hash = ct3d_volume::cache::hash_file(Path::new(path)).unwrap();
        assert_eq!(record["sha256"].as_str().unwrap(), hex(&hash), "{path}");
    }
    let configs = index["entry_configs"].as_object().unwrap();
    let mut recorded: Vec<&String> = configs.keys().collect();
    recorded.sort();
    keys.sort();
    assert_eq!(
        recorded,
        keys.iter().collect::<Vec<_>>(),
        "every entry's parameters are recorded: {index}"
    );
    // Entries only count as verified once a later run checksums them.
    for key in index["verified_entries"].as_object().unwrap().keys() {
        assert!(keys.contains(key), "{key}: {index}");
    }
    // So one more prepare of each size rebuilds nothing and hashes no scan again.
    for size in sizes {
        let again = Command::new(env!("CARGO_BIN_EXE_ct3d"))
            .args(args(size))
            .output()
            .unwrap();
        assert_success(&again);
        let text = stdout(&again);
        assert!(text.contains("0 computed, 16 from cache"), "{text}");
    }
    assert_eq!(
        read_json(&cache.join("index.json"))["files"],
        index["files"]
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a Slurm cluster answers here; with `CT3D_REQUIRE_SLURM=1` its absence fails the test.
fn slurm_available() -> bool {
    let answers = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !answers && std::env::var_os("CT3D_REQUIRE_SLURM").is_some_and(|v| v == "1") {
        panic!(
            "CT3D_REQUIRE_SLURM=1 but no Slurm cluster answers (run tools/slurm/single-node.sh)"
        );
    }
    answers
}

#[test]
fn a_sweep_on_slurm_equals_the_same_sweep_run_locally() {
    if !slurm_available() {
        eprintln!("skipped: no Slurm cluster (tools/slurm/single-node.sh starts one)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = synth_into(&dir.path().join("data"), 4, 4, 11, Some(40));
    let (cluster, local) = (dir.path().join("on-slurm"), dir.path().join("local"));
    for sweep in [&cluster, &local] {
        assert_success(&plan(&data, sweep, "3", "1,2", &tiny("2")));
    }
    let submitted = ct3d(&["sweep", "submit", s(&cluster), "--cpus-per-task", "1"]);
    assert_success(&submitted);
    let text = stdout(&submitted);
    let ids: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(text.contains("as array job"), "{text}");
    let collect_job = ids
        .get(2)
        .copied()
        .unwrap_or_else(|| panic!("no job ids in {text}"));
    // Wait for the collect job: it runs after every task succeeded.
    let started = Instant::now();
    loop {
        let state = Command::new("squeue")
            .args(["-h", "-t", "all", "-j", collect_job, "-o", "%T %r"])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        if state.starts_with("COMPLETED") {
            break;
        }
        let logs = || {
            fs::read_dir(cluster.join("slurm/logs"))
                .map(|d| {
                    d.flatten()
                        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                })
                .unwrap_or_default()
        };
        assert!(
            !["FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"]
                .iter()
                .any(|s| state.starts_with(s)),
            "collect job {collect_job}: {state}\n{}",
            logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(480),
            "collect job {collect_job} still {state:?} after 8 minutes\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    run_locally(&local, 6);
    assert_same_results(&cluster, &local, 6);
    let csv = fs::read_to_string(cluster.join("summary.csv")).unwrap();
    assert!(csv.contains("\ndefault,6,6,0,0,"), "{csv}");
}
