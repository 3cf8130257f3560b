//! End-to-end tests of the model commands (`train`, `eval`, `predict`, `summary`) through the
//! real `ct3d` binary, on tiny phantoms (64×64 in-plane, model input 48×48×48, filters
//! 4,4,8,8, dense 16): the outputs users read, `kill -9` at several moments followed by
//! `--resume`, the run-folder rules, and every bad input the product contract names (one-line
//! error naming the file, exit code 1, no panic, nothing left behind).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ct3d::history::{EpochRecord, from_csv};
use ct3d::run::{RunDir, RunState};

use crate::support::{
    assert_clean_failure, assert_success, ct3d, ct3d_in, s, small_train_args as train_args, stderr,
    stdout, synth_into,
};

/// Writes phantoms with the CLI itself into `dir/name` and returns the folder.
fn synth(dir: &Path, name: &str, normal: usize, abnormal: usize, seed: u64) -> PathBuf {
    synth_into(&dir.join(name), normal, abnormal, seed, None)
}

fn train(data: &Path, run: &Path, extra: &[&str]) -> Output {
    ct3d(&train_args(data, run, extra))
}

fn history(run: &Path) -> Vec<EpochRecord> {
    let path = run.join("history.csv");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_csv(&text, &path).unwrap()
}

fn without_seconds(rows: Vec<EpochRecord>) -> Vec<EpochRecord> {
    rows.into_iter()
        .map(|r| EpochRecord { seconds: 0.0, ..r })
        .collect()
}

/// Every file of a run folder (checkpoints included) with its bytes.
fn snapshot(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in [run.to_owned(), run.join("checkpoints")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.strip_prefix(run).unwrap().display().to_string();
                files.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn scans_in(folder: &Path) -> Vec<PathBuf> {
    let mut scans: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scans.sort();
    scans
}

fn json(out: &Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// The number in `This model is N percent confident that CT scan is <class>`, as printed.
fn sentence_percent<'a>(line: &'a str, class: &str) -> &'a str {
    let number = line
        .strip_prefix("This model is ")
        .and_then(|rest| rest.strip_suffix(&format!(" percent confident that CT scan is {class}")))
        .unwrap_or_else(|| panic!("not the example's sentence for {class:?}: {line:?}"));
    let decimals = number.split_once('.').map(|(_, d)| d.len());
    assert_eq!(decimals, Some(2), "two decimals expected: {line:?}");
    number
}

#[test]
fn summary_prints_the_seed_parameter_counts() {
    for args in [vec!["summary"], vec!["summary", "--size", "48,48,48"]] {
        let out = ct3d(&args);
        assert_success(&out);
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        for expected in [
            "Total params: 1,352,897",
            "Trainable params: 1,351,873",
            "Non-trainable params: 1,024",
        ] {
            assert!(lines.contains(&expected), "{expected:?} not in:\n{text}");
        }
    }
    let text = stdout(&ct3d(&["summary"]));
    assert!(text.contains("(None, 126, 126, 62, 64)"), "{text}");
}

#[test]
fn summary_takes_the_training_architecture_flags() {
    // Three values are three conv blocks, and the size minimum follows the block count.
    let out = ct3d(&[
        "summary",
        "--filters",
        "4,4,8",
        "--dense",
        "16",
        "--size",
        "30,30,30",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    for expected in [
        "Total params: 1,645",
        "Trainable params: 1,613",
        "Non-trainable params: 32",
    ] {
        assert!(lines.contains(&expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(text.matches("Conv3D").count(), 3, "{text}");
    let out = ct3d(&["summary", "--filters", "4,4,8", "--size", "21,30,30"]);
    assert_clean_failure(&out, &["3 conv blocks", "at least 22 voxels"]);
}

#[test]
fn help_lists_only_the_flags_a_command_accepts() {
    // Whitespace collapsed: clap wraps long help at the terminal's width.
    let help = |command: &str| {
        let text = stdout(&ct3d(&[command, "--help"]));
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let train = help("train");
    assert!(train.contains("--split"), "{train}");
    assert!(train.contains("one value per block"), "{train}");
    let cv = help("cv");
    assert!(!cv.contains("--split"), "cv takes no --split:\n{cv}");
    assert!(cv.contains("--filters"), "{cv}");
    let out = ct3d(&[
        "cv", "--data", "d", "--out", "o", "--folds", "2", "--split", "0.5",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--split"), "{}", stderr(&out));
    let summary = help("summary");
    assert!(
        summary.contains("--filters") && summary.contains("--dense"),
        "{summary}"
    );
}

#[test]
fn predict_and_eval_print_what_users_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    let out = train(
        &data,
        &run,
        &[
            "--epochs",
            "2",
            "--seed",
            "5",
            "--negative-name",
            "healthy",
            "--positive-name",
            "covid",
        ],
    );
    assert_success(&out);
    let text = stdout(&out);
    let epoch_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epoch_lines.len(), 2, "{text}");
    assert!(
        epoch_lines[1].starts_with("Epoch 2/2 - ") && epoch_lines[1].contains(" - val_acc: "),
        "{text}"
    );

    let normal = scans_in(&data.join("CT-0"));
    let abnormal = scans_in(&data.join("CT-23"));
    let scan = &abnormal[0];

    // One scan: exactly the example's two sentences, with the run's class words, agreeing with
    // the probability --json reports.
    let out = ct3d(&["predict", "--run", s(&run), s(scan)]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let healthy = sentence_percent(lines[0], "healthy");
    let covid = sentence_percent(lines[1], "covid");
    let reported = json(&ct3d(&["predict", "--run", s(&run), "--json", s(scan)]));
    let entries = reported.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 1);
    // The model's probability is an f32; JSON prints its shortest decimal form.
    let p = f64::from(entries[0]["probability"].as_f64().unwrap() as f32);
    assert!((0.0..=1.0).contains(&p));
    assert_eq!(healthy, format!("{:.2}", 100.0 * (1.0 - p)), "{text}");
    assert_eq!(covid, format!("{:.2}", 100.0 * p), "{text}");
    assert_eq!(entries[0]["path"], s(scan));
    let class = if p > 0.5 { "covid" } else { "healthy" };
    assert_eq!(entries[0]["class"], class);

    // A folder expands to its scans (sorted), next to a single file; JSON and CSV agree.
    let normal_folder = data.join("CT-0");
    let inputs = ["predict", "--run", s(&run), s(&normal_folder), s(scan)];
    let reported = json(&ct3d(&[&inputs[..], &["--json"][..]].concat()));
    let entries = reported.as_array().unwrap();
    let expected_paths: Vec<&str> = normal.iter().chain([scan]).map(|p| s(p)).collect();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, expected_paths);
    let out = ct3d(&[&inputs[..], &["--csv"][..]].concat());
    assert_success(&out);
    let csv = stdout(&out);
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("path,probability,class,error"));
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), entries.len(), "{csv}");
    for (row, entry) in rows.iter().zip(entries) {
        assert_eq!(row[0], entry["path"].as_str().unwrap());
        let probability: f32 = row[1].parse().unwrap();
        assert_eq!(probability, entry["probability"].as_f64().unwrap() as f32);
        assert_eq!(row[2], entry["class"].as_str().unwrap());
        assert_eq!(row[3], "", "no error: {csv}");
        assert!(entry.get("error").is_none(), "{entry}");
    }
    let out = ct3d(&inputs);
    assert_success(&out);
    let text = stdout(&out);
    for path in &expected_paths {
        assert!(text.contains(&format!("{path}:\n")), "{path} not in {text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("This model is "))
            .count(),
        14
    );

    // A file that is not a scan: a one-line error naming it; with other inputs, those still
    // print and the exit code says something failed.
    let notes = dir.path().join("notes.txt");
    fs::write(&notes, "not a scan\n").unwrap();
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), s(&notes)]),
        &["notes.txt"],
    );
    let missing = dir.path().join("missing.nii.gz");
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), s(&missing)]),
        &["missing.nii.gz"],
    );
    let out = ct3d(&["predict", "--run", s(&run), s(&notes), s(scan)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains(s(&notes))),
        "{err}"
    );
    let text = stdout(&out);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("This model is "))
            .collect::<Vec<_>>(),
        lines,
        "the good scan still prints: {text}"
    );

    // --weights last reads last.safetensors and nothing else (best is garbage in this copy),
    // the default reads best.safetensors.
    let copy = dir.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for name in ["config.json", "last.safetensors"] {
        fs::copy(run.join(name), copy.join(name)).unwrap();
    }
    fs::write(copy.join("best.safetensors"), b"garbage").unwrap();
    let last = |run: &Path| {
        json(&ct3d(&[
            "predict",
            "--run",
            s(run),
            "--weights",
            "last",
            "--json",
            s(scan),
        ]))[0]["probability"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(last(&copy), last(&run));
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&copy), s(scan)]),
        &["best.safetensors"],
    );

    // eval --json: the metrics, on the validation part (2 + 2 scans) by default, every scan
    // with --split all, and every scan of another data folder.
    let evaluation = json(&ct3d(&["eval", "--run", s(&run), "--json"]));
    assert_eq!(evaluation["split"], "val");
    let metrics = &evaluation["metrics"];
    for key in ["loss", "accuracy", "auc", "sensitivity", "specificity"] {
        let value = metrics[key]
            .as_f64()
            .unwrap_or_else(|| panic!("metrics.{key} missing: {evaluation}"));
        assert!(value.is_finite() && value >= 0.0, "{key} = {value}");
    }
    let confusion = |metrics: &serde_json::Value| -> [u64; 4] {
        [
            "true_negative",
            "false_positive",
            "false_negative",
            "true_positive",
        ]
        .map(|k| metrics["confusion"][k].as_u64().unwrap())
    };
    let [tn, fp, fn_, tp] = confusion(metrics);
    assert_eq!(metrics["count"], 4);
    assert_eq!((tn + fp, fn_ + tp), (2, 2), "2 validation scans per class");
    assert_eq!(
        metrics["accuracy"].as_f64().unwrap(),
        (tn + tp) as f64 / 4.0
    );
    assert_eq!(evaluation["scans"].as_array().unwrap().len(), 4);
    // The best weights on the validation part reproduce the best epoch's val_loss.
    let best_val_loss = history(&run)
        .iter()
        .map(|r| r.val_loss)
        .fold(f64::INFINITY, f64::min);
    let loss = metrics["loss"].as_f64().unwrap();
    assert!(
        (loss - best_val_loss).abs() < 1e-6,
        "eval loss {loss} vs best val_loss {best_val_loss}"
    );

    let all = json(&ct3d(&[
        "eval",
        "--run",
        s(&run),
        "--split",
        "all",
        "--json",
    ]));
    assert_eq!(all["split"], "all");
    assert_eq!(all["metrics"]["count"], 12);
    let [tn, fp, fn_, tp] = confusion(&all["metrics"]);
    assert_eq!((tn + fp, fn_ + tp), (6, 6));
    assert_eq!(all["scans"].as_array().unwrap().len(), 12);

    let other = synth(dir.path(), "other", 2, 3, 4);
    let elsewhere = json(&ct3d(&[
        "eval",
        "--run",
        s(&run),
        "--data",
        s(&other),
        "--json",
    ]));
    assert_eq!(elsewhere["split"], "all");
    assert_eq!(elsewhere["metrics"]["count"], 5);

    let out = ct3d(&["eval", "--run", s(&run)]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("healthy") && text.contains("covid"), "{text}");
}

/// `ct3d preprocess` output given to `predict` is refused (by its header mark, or by its values
/// in [0, 1]) with a pointer to `--preprocessed`, which uses it as it is: the same probability as
/// the raw scan, and a clean error for a wrong size or a raw scan.
#[test]
fn predict_refuses_preprocessed_volumes_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    assert_success(&train(&data, &run, &["--epochs", "1", "--seed", "2"]));
    let scan = &scans_in(&data.join("CT-0"))[0];
    let preprocess = |out: &Path, size: &str| {
        assert_success(&ct3d(&[
            "preprocess",
            s(scan),
            "-o",
            s(out),
            "--size",
            size,
        ]));
    };
    let ready = dir.path().join("ready.nii.gz");
    preprocess(&ready, "48,48,48");
    let probability = |args: &[&str]| {
        let reported = json(&ct3d(
            &[&["predict", "--run", s(&run), "--json"][..], args].concat(),
        ));
        reported[0]["probability"].as_f64().unwrap()
    };

    let out = ct3d(&["predict", "--run", s(&run), s(&ready)]);
    assert_clean_failure(
        &out,
        &[
            "ready.nii.gz",
            "already preprocessed",
            "Hounsfield",
            "--preprocessed",
        ],
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let raw = probability(&[s(scan)]);
    let as_is = probability(&["--preprocessed", s(&ready)]);
    assert!(
        (raw - as_is).abs() <= 1e-5,
        "raw {raw} vs preprocessed {as_is}"
    );

    // Without ct3d's header mark (`rotate` writes none), the value range gives it away.
    let rotated = dir.path().join("rotated.nii");
    assert_success(&ct3d(&[
        "rotate",
        s(&ready),
        "-o",
        s(&rotated),
        "--angle",
        "5",
    ]));
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), s(&rotated)]),
        &["rotated.nii", "[0, 1]", "--preprocessed"],
    );

    let small = dir.path().join("small.nii");
    preprocess(&small, "40,40,32");
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), "--preprocessed", s(&small)]),
        &["small.nii", "40×40×32", "48×48×48"],
    );
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), "--preprocessed", s(scan)]),
        &[s(scan), "not model-ready", "Hounsfield"],
    );
    let windowed = dir.path().join("windowed.nii");
    assert_success(&ct3d(&[
        "preprocess",
        s(scan),
        "-o",
        s(&windowed),
        "--size",
        "48,48,48",
        "--hu-window",
        "-900,300",
    ]));
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&run), "--preprocessed", s(&windowed)]),
        &[
            "windowed.nii",
            "window=-900,300 (expected window=-1000,400)",
        ],
    );
}

/// `predict --json`/`--csv` list a scan that fails as an entry with its error, and the exit
/// code says something failed; sentences keep their `error:` line on stderr.
#[test]
fn predict_lists_failed_scans_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    assert_success(&train(&data, &run, &["--epochs", "1", "--seed", "2"]));
    let good = &scans_in(&data.join("CT-23"))[0];
    let corrupt = dir.path().join("corrupt.nii.gz");
    fs::write(&corrupt, b"\x1f\x8b not really gzip").unwrap();
    let predict = |args: &[&str]| ct3d(&[&["predict", "--run", s(&run)][..], args].concat());
    let one_error_line = |out: &Output| {
        let err = stderr(out);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(out.status.code(), Some(1), "{err}");
        err.lines().filter(|l| l.starts_with("error: ")).count()
    };

    let out = predict(&["--json", s(good), s(&corrupt)]);
    assert_eq!(one_error_line(&out), 1);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["path"], s(good));
    assert!(entries[0]["probability"].is_f64() && entries[0].get("error").is_none());
    assert_eq!(entries[1]["path"], s(&corrupt));
    assert!(entries[1]["probability"].is_null() && entries[1]["class"].is_null());
    let error = entries[1]["error"].as_str().unwrap();
    assert!(error.contains(s(&corrupt)), "{error}");

    let out = predict(&["--csv", s(good), s(&corrupt)]);
    assert_eq!(one_error_line(&out), 1);
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], "path,probability,class,error");
    assert!(
        lines[1].starts_with(&format!("{},", s(good))) && lines[1].ends_with(','),
        "{csv}"
    );
    let failed = lines[2]
        .strip_prefix(&format!("{},,,", s(&corrupt)))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(failed.contains("corrupt.nii.gz"), "{csv}");

    // Sentences: the good scan prints, the bad one is an error line, then the summary line.
    let out = predict(&[s(good), s(&corrupt)]);
    assert_eq!(one_error_line(&out), 2);
    assert!(
        stderr(&out).contains(&format!("error: {error}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with("This model is "))
            .count(),
        2
    );

    // One scan: the entry, and the one error line.
    let out = predict(&["--json", s(&corrupt)]);
    assert_clean_failure(&out, &["corrupt.nii.gz"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries[0]["error"], error);
    assert_clean_failure(&predict(&[s(&corrupt)]), &["corrupt.nii.gz"]);
    assert_success(&predict(&["--csv", s(good)]));
}

#[test]
fn damaged_or_foreign_weights_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    assert_success(&train(&data, &run, &["--epochs", "1", "--seed", "5"]));
    let other = dir.path().join("other");
    // Another architecture: the last block has 4 filters instead of 8.
    assert_success(&ct3d(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&other),
        "--size",
        "48,48,48",
        "--filters",
        "4,4,8,4",
        "--dense",
        "16",
        "--epochs",
        "1",
        "--seed",
        "5",
    ]));
    let scan = scans_in(&data.join("CT-0")).remove(0);
    let weights = fs::read(run.join("best.safetensors")).unwrap();

    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("truncated", Some(weights[..weights.len() / 2].to_vec())),
        ("header-only", Some(weights[..100].to_vec())),
        ("empty", Some(Vec::new())),
        (
            "garbage",
            Some(b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".to_vec()),
        ),
        (
            "foreign",
            Some(fs::read(other.join("best.safetensors")).unwrap()),
        ),
        ("missing", None),
    ];
    for (name, replacement) in cases {
        let copy = dir.path().join(name);
        fs::create_dir(&copy).unwrap();
        fs::copy(run.join("config.json"), copy.join("config.json")).unwrap();
        if let Some(bytes) = &replacement {
            fs::write(copy.join("best.safetensors"), bytes).unwrap();
        }
        let best = copy.join("best.safetensors");
        for args in [
            vec!["predict", "--run", s(&copy), s(&scan)],
            vec!["eval", "--run", s(&copy)],
        ] {
            let out = ct3d(&args);
            assert_clean_failure(&out, &[s(&best)]);
            assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
        }
    }

    // The foreign file is refused for its shapes, not for being unreadable.
    let copy = dir.path().join("foreign");
    let out = ct3d(&["predict", "--run", s(&copy), s(&scan)]);
    assert!(stderr(&out).contains("shape"), "{}", stderr(&out));

    // A run folder without a run.
    let empty = dir.path().join("no-run");
    fs::create_dir(&empty).unwrap();
    assert_clean_failure(
        &ct3d(&["predict", "--run", s(&empty), s(&scan)]),
        &[s(&empty.join("config.json"))],
    );
}

#[test]
fn an_existing_run_is_refused_resumed_when_finished_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    // Relative paths, as users type them: the run must work from anywhere afterwards.
    let relative = train_args(
        Path::new("data"),
        Path::new("run"),
        &["--epochs", "2", "--seed", "5"],
    );
    assert_success(&ct3d_in(dir.path(), &relative));
    let before = snapshot(&run);
    for name in [
        "config.json",
        "history.csv",
        "state.json",
        "best.safetensors",
        "last.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(
            before.contains_key(name),
            "{name} missing: {:?}",
            before.keys()
        );
    }

    // Again without --resume or --force: refused, nothing touched.
    let out = train(&data, &run, &["--epochs", "2", "--seed", "5"]);
    assert_clean_failure(&out, &[s(&run), "--resume", "--force"]);
    assert!(snapshot(&run) == before, "a refused run changed the folder");

    // --resume on a finished run, with another spelling of the data folder: nothing to do,
    // nothing changed.
    let out = ct3d_in(
        dir.path(),
        &["train", "--data", "./data/", "--out", "run", "--resume"],
    );
    assert_success(&out);
    assert!(
        snapshot(&run) == before,
        "--resume on a finished run changed it"
    );
    let out = ct3d(&["train", "--data", s(&data), "--out", s(&run), "--resume"]);
    assert_success(&out);
    assert!(
        snapshot(&run) == before,
        "--resume on a finished run changed it"
    );

    // Evaluated from inside the run folder, its recorded data and cache are still found.
    let evaluation = json(&ct3d_in(&run, &["eval", "--run", ".", "--json"]));
    assert_eq!(evaluation["metrics"]["count"], 4);

    // --resume with --force is a usage error.
    let out = train(&data, &run, &["--resume", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // --force replaces the run: nothing the previous run or its reports wrote survives.
    fs::write(run.join("notes.txt"), "mine").unwrap();
    fs::write(run.join("report.html"), "8 of 8 epochs").unwrap();
    fs::create_dir_all(run.join("plots")).unwrap();
    fs::write(run.join("plots/curves.png"), "old").unwrap();
    let out = train(&data, &run, &["--epochs", "1", "--seed", "6", "--force"]);
    assert_success(&out);
    assert_eq!(history(&run).len(), 1);
    let config = RunDir::new(&run).read_config().unwrap();
    assert_eq!((config.train.seed, config.train.epochs), (6, 1));
    for old in ["notes.txt", "report.html", "plots"] {
        assert!(!run.join(old).exists(), "{old} survived --force");
    }
    assert!(snapshot(&run)["last.safetensors"] != before["last.safetensors"]);

    // --force never empties a folder that holds no ct3d run.
    let mine = dir.path().join("mine");
    fs::create_dir_all(mine.join("CT-0")).unwrap();
    fs::write(mine.join("notes.txt"), "mine").unwrap();
    let out = train(&data, &mine, &["--epochs", "1", "--seed", "6", "--force"]);
    assert_clean_failure(&out, &[s(&mine), "not a ct3d run folder"]);
    assert!(mine.join("notes.txt").exists() && mine.join("CT-0").is_dir());
    assert_eq!(fs::read_dir(&mine).unwrap().count(), 2, "nothing was added");

    // --resume where there is no run: a clean error, and no folder is created.
    let nowhere = dir.path().join("nowhere");
    let out = ct3d(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&nowhere),
        "--resume",
    ]);
    assert_clean_failure(&out, &[s(&nowhere), "nothing to resume"]);
    assert!(!nowhere.exists());
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = ct3d(&["train", "--data", s(&data), "--out", s(&empty), "--resume"]);
    assert_clean_failure(&out, &[s(&empty), "nothing to resume"]);
}

#[test]
fn bad_training_input_is_refused_without_leaving_a_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");

    let one_class = synth(dir.path(), "one-class", 2, 0, 1);
    assert_clean_failure(&train(&one_class, &run, &["--seed", "1"]), &["CT-23"]);
    assert!(!run.exists(), "a failed start leaves no run folder");

    let too_few = synth(dir.path(), "too-few", 3, 1, 1);
    let out = train(&too_few, &run, &["--seed", "1"]);
    assert_clean_failure(
        &out,
        &[
            "CT-23",
            "too few",
            &format!("{}: ", s(&too_few.join("CT-23"))),
            "has 1 scan:",
        ],
    );
    assert!(!run.exists(), "a failed start leaves no run folder");

    let data = synth(dir.path(), "data", 6, 6, 3);
    for (flag, value) in [
        ("--epochs", "0"),
        ("--split", "1.5"),
        ("--split", "0"),
        ("--batch-size", "0"),
    ] {
        let out = train(&data, &run, &["--seed", "1", flag, value]);
        assert_clean_failure(&out, &[flag]);
        assert!(!run.exists(), "{flag} {value} left a run folder");
    }
    #[cfg(not(feature = "cuda"))]
    {
        let out = train(&data, &run, &["--seed", "1", "--device", "cuda"]);
        assert_clean_failure(&out, &["`cuda` feature", "--features cuda"]);
        assert!(!run.exists());
    }
    #[cfg(not(feature = "vulkan"))]
    {
        let out = train(&data, &run, &["--seed", "1", "--device", "vulkan"]);
        assert_clean_failure(&out, &["`vulkan` feature", "--features vulkan"]);
        assert!(!run.exists());
    }

    // A default cache that cannot be created (here a file is in its way, which stops root as
    // well as a read-only dataset stops a user) names the folder and --cache.
    let in_the_way = data.join(".ct3d-cache");
    fs::write(&in_the_way, b"not a folder").unwrap();
    let out = train(&data, &run, &["--seed", "1", "--epochs", "1"]);
    assert_clean_failure(&out, &[s(&in_the_way), "--cache DIR"]);
    assert!(!run.exists(), "a failed start leaves no run folder");
    fs::remove_file(&in_the_way).unwrap();

    // A scan that cannot be read is named, with the flag that leaves it out; --skip-bad leaves
    // it out and lists it.
    let broken = data.join("CT-0").join("zz_broken.nii.gz");
    fs::write(&broken, b"not a scan at all").unwrap();
    let out = train(&data, &run, &["--seed", "1", "--epochs", "1"]);
    assert_clean_failure(&out, &[s(&broken), "pass --skip-bad"]);
    assert!(!run.exists(), "a failed start leaves no run folder");
    let out = train(&data, &run, &["--seed", "1", "--epochs", "1", "--skip-bad"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.contains(s(&broken))),
        "the skipped scan must be listed: {text}"
    );
    // Counts of one are singular.
    assert!(text.contains("left out 1 unreadable scan:"), "{text}");
    assert!(text.contains(" after 1 epoch; "), "{text}");
    assert!(text.contains(" over 1 epoch ("), "{text}");
    assert!(!text.contains("1 epochs"), "{text}");
    let config = RunDir::new(&run).read_config().unwrap();
    assert_eq!(config.files.len(), 12);
    assert!(config.files.iter().all(|f| f.path != broken));

    // `predict` on the dataset's root (class sub-folders) names the folder and the command
    // that predicts its sub-folders.
    let out = ct3d(&["predict", "--run", s(&run), s(&data)]);
    let command = format!(
        "ct3d predict --run {} {} {}",
        s(&run),
        s(&data.join("CT-0")),
        s(&data.join("CT-23"))
    );
    assert_clean_failure(
        &out,
        &[s(&data), "class sub-folders are not searched", &command],
    );
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = ct3d(&["predict", "--run", s(&run), s(&empty)]);
    assert_clean_failure(&out, &[s(&empty), "no scans in it"]);
}

/// When to `kill -9` a training run.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// As soon as `config.json` exists (before the first epoch is committed, usually).
    ConfigWritten,
    /// As soon as `state.json` says this many epochs are committed.
    Committed(usize),
    /// As soon as any checkpoint file of this epoch appears (mid-checkpoint, usually).
    CheckpointWriting(usize),
    /// After this long.
    After(Duration),
}

fn moment_reached(run: &Path, at: KillAt, started: Instant) -> bool {
    match at {
        KillAt::ConfigWritten => run.join("config.json").exists(),
        KillAt::Committed(epochs) => fs::read_to_string(run.join("state.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<RunState>(&text).ok())
            .is_some_and(|state| state.completed_epochs >= epochs),
        KillAt::CheckpointWriting(epoch) => fs::read_dir(run.join("checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("epoch-{epoch:04}"))
            }),
        KillAt::After(delay) => started.elapsed() >= delay,
    }
}

/// Runs `args` and SIGKILLs it at `at` (or lets it finish if it gets there first).
fn kill_at(args: &[&str], run: &Path, at: KillAt) {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the ct3d binary starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if moment_reached(run, at, started) {
            // SIGKILL on Unix: no destructor, no flush, like `kill -9`.
            child
                .kill()
                .unwrap_or_else(|e| panic!("{at:?}: kill failed: {e}"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{at:?}: the run neither reached the moment nor finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.wait().unwrap();
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 8);
    let extra = ["--epochs", "4", "--seed", "9"];
    let reference = dir.path().join("reference");
    let started = Instant::now();
    assert_success(&train(&data, &reference, &extra));
    let duration = started.elapsed();
    let expected_history = without_seconds(history(&reference));
    assert_eq!(expected_history.len(), 4);

    // A moment anywhere in a run's life, different on every test run (printed on failure).
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let random = Duration::from_millis(u64::from(nanos) % duration.as_millis().max(1) as u64);
    let moments = [
        KillAt::ConfigWritten,
        KillAt::Committed(1),
        KillAt::CheckpointWriting(2),
        KillAt::After(random),
    ];
    for (i, at) in moments.into_iter().enumerate() {
        let run = dir.path().join(format!("killed-{i}"));
        kill_at(&train_args(&data, &run, &extra), &run, at);
        let committed = RunDir::new(&run)
            .read_state()
            .map_or(0, |s| s.completed_epochs);
        let resume = ["train", "--data", s(&data), "--out", s(&run), "--resume"];
        let out = if run.join("config.json").exists() {
            ct3d(&resume)
        } else {
            // Killed before the run was recorded: there is nothing to resume, and a new run
            // starts cleanly (with --force only if the bare folder was already made).
            assert_clean_failure(&ct3d(&resume), &["nothing to resume"]);
            let force: &[&str] = if run.exists() { &["--force"] } else { &[] };
            train(&data, &run, &[&extra[..], force].concat())
        };
        assert!(
            out.status.success(),
            "{at:?} (after {committed} committed epochs): resume failed: {}",
            stderr(&out)
        );
        assert_eq!(
            without_seconds(history(&run)),
            expected_history,
            "{at:?} (after {committed} committed epochs): history"
        );
        for name in [
            "last.safetensors",
            "best.safetensors",
            "optimizer.safetensors",
        ] {
            assert!(
                fs::read(run.join(name)).unwrap() == fs::read(reference.join(name)).unwrap(),
                "{at:?} (after {committed} committed epochs): {name} differs"
            );
        }
    }
}

/// The recorded scan paths of a run with `split` (`train`, `validation`; `None`: all), sorted.
fn recorded_paths(run: &Path, split: Option<&str>) -> Vec<String> {
    let text = fs::read_to_string(run.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut paths: Vec<String> = config["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| split.is_none_or(|split| f["split"] == split))
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

/// The scan paths an `eval --json` scored, sorted.
fn scored_paths(evaluation: &serde_json::Value) -> Vec<String> {
    let mut paths: Vec<String> = evaluation["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|scan| scan["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[test]
fn eval_and_report_score_the_recorded_validation_scans() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 8, 8, 3);
    let run = dir.path().join("run");
    assert_success(&train(&data, &run, &["--epochs", "1", "--seed", "5"]));
    let validation = recorded_paths(&run, Some("validation"));
    assert_eq!(validation.len(), 6, "3 + 3 validation scans of 8 + 8");
    let eval = |extra: &[&str]| ct3d(&[&["eval", "--run", s(&run), "--json"][..], extra].concat());
    let report = |extra: &[&str]| {
        let html = dir.path().join("report.html");
        let out = ct3d(&[&["report", s(&run), "-o", s(&html)][..], extra].concat());
        (out, fs::read_to_string(&html).unwrap_or_default())
    };

    // Scans added to the data folder are not evaluation data of the run: neither the recorded
    // training scans (which a recomputed split would now call validation) nor the new ones.
    let more = synth(dir.path(), "more", 6, 1, 9);
    for scan in scans_in(&more.join("CT-0")) {
        let name = scan.file_name().unwrap().to_str().unwrap();
        fs::copy(&scan, data.join("CT-0").join(format!("added_{name}"))).unwrap();
    }
    let evaluation = json(&eval(&[]));
    assert_eq!(scored_paths(&evaluation), validation);
    assert_eq!(evaluation["data"], "recorded");
    let all = json(&eval(&["--split", "all"]));
    assert_eq!(scored_paths(&all), recorded_paths(&run, None));

    // A training scan deleted: still exactly the recorded validation scans, in eval and in
    // the report.
    let training = recorded_paths(&run, Some("train"));
    let ct23_training = training.iter().find(|p| p.contains("CT-23")).unwrap();
    fs::remove_file(ct23_training).unwrap();
    assert_eq!(scored_paths(&json(&eval(&[]))), validation);
    let (out, html) = report(&[]);
    assert_success(&out);
    assert!(
        html.contains("<div class=\"k\">validation scans</div><div class=\"v\">6</div>"),
        "the report evaluates the 6 recorded validation scans"
    );
    let text = stdout(&ct3d(&["eval", "--run", s(&run)]));
    assert!(
        text.starts_with("6 scans (val split: the run's recorded validation scans)"),
        "{text}"
    );

    // A recorded validation scan deleted: refused in one line naming it and the override;
    // with the override, evaluated without it, and said so.
    let gone = &validation[0];
    let kept = dir.path().join("kept.nii.gz");
    fs::rename(gone, &kept).unwrap();
    assert_clean_failure(&eval(&[]), &[gone, "missing", "--allow-changed-data"]);
    assert_clean_failure(&report(&[]).0, &[gone, "missing", "--allow-changed-data"]);
    let out = eval(&["--allow-changed-data"]);
    let evaluation = json(&out);
    assert_eq!(scored_paths(&evaluation), validation[1..]);
    assert_eq!(evaluation["missing"], serde_json::json!([gone]));
    let err = stderr(&out);
    assert!(
        err.contains("warning: 1 recorded scan is missing") && err.contains(gone.as_str()),
        "{err}"
    );
    fs::rename(&kept, gone).unwrap();

    // A recorded validation scan whose bytes changed: refused, naming it; with the override,
    // scored as it is now and listed.
    let changed = &validation[1];
    fs::copy(more.join("CT-0").join("phantom_0000.nii.gz"), changed).unwrap();
    assert_clean_failure(
        &eval(&[]),
        &[changed, "changed since", "--allow-changed-data"],
    );
    let evaluation = json(&eval(&["--allow-changed-data"]));
    assert_eq!(scored_paths(&evaluation), validation);
    assert_eq!(evaluation["changed"], serde_json::json!([changed]));
    let (out, html) = report(&["--allow-changed-data"]);
    assert_success(&out);
    assert!(
        html.contains("changed since training"),
        "the report lists it"
    );

    // Other data is another question, and the output says so.
    let elsewhere = json(&ct3d(&[
        "eval",
        "--run",
        s(&run),
        "--data",
        s(&more),
        "--json",
    ]));
    assert_eq!(elsewhere["data"], format!("other: {}", s(&more)));
    assert_eq!(elsewhere["metrics"]["count"], 7);
    let text = stdout(&ct3d(&["eval", "--run", s(&run), "--data", s(&more)]));
    assert!(
        text.starts_with(&format!(
            "7 scans of other data ({}), not the run's recorded validation scans",
            s(&more)
        )),
        "{text}"
    );

    // Other data with other class folder names: the error suggests --negative/--positive, and
    // eval takes them (they exist only for other data).
    fs::rename(more.join("CT-0"), more.join("normal")).unwrap();
    fs::rename(more.join("CT-23"), more.join("abnormal")).unwrap();
    let out = ct3d(&["eval", "--run", s(&run), "--data", s(&more)]);
    assert_clean_failure(
        &out,
        &[
            "folders present: abnormal, normal",
            "--negative normal --positive abnormal",
        ],
    );
    let renamed = json(&ct3d(&[
        "eval",
        "--run",
        s(&run),
        "--data",
        s(&more),
        "--negative",
        "normal",
        "--positive",
        "abnormal",
        "--json",
    ]));
    assert_eq!(renamed["metrics"]["count"], 7);
    let out = ct3d(&["eval", "--run", s(&run), "--negative", "normal"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_cross_validation_folder_names_its_fold_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cv = dir.path().join("cv");
    for fold in ["fold-1", "fold-2"] {
        fs::create_dir_all(cv.join(fold)).unwrap();
    }
    fs::write(cv.join("cv.json"), "{}\n").unwrap();
    let folds = [cv.join("fold-1"), cv.join("fold-2")];
    let needles = [
        "cross-validation folder (ct3d cv)",
        "pass one of its fold runs",
        s(&folds[0]),
        s(&folds[1]),
    ];
    let scan = dir.path().join("scan.nii.gz");
    for args in [
        vec!["eval", "--run", s(&cv)],
        vec!["predict", "--run", s(&cv), s(&scan)],
        vec!["report", s(&cv)],
    ] {
        assert_clean_failure(&ct3d(&args), &needles);
    }
}

#[test]
fn resume_refuses_changed_flags_and_extends_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 4);
    let run = dir.path().join("run");
    assert_success(&train(&data, &run, &["--epochs", "2", "--seed", "5"]));
    let before = snapshot(&run);

    // A typed flag whose value differs from the recorded one is refused, naming both values
    // (the command: --epochs alone would be allowed, the learning rate is not).
    for extra in [
        &["--resume", "--learning-rate", "0.5"][..],
        &["--resume", "--epochs", "3", "--learning-rate", "0.5"],
    ] {
        let out = train(&data, &run, extra);
        assert_clean_failure(
            &out,
            &[s(&run), "--learning-rate 0.5", "recorded 0.0001", "--force"],
        );
        assert!(snapshot(&run) == before, "{extra:?} changed the run");
    }
    let out = train(&data, &run, &["--resume", "--hu-window", "-900,400"]);
    assert_clean_failure(&out, &["--hu-window", "recorded -1000", "-900"]);
    // Typed flags equal to the recorded ones (the small model's --size, --filters, --dense
    // are typed on every call here) are fine.
    let out = train(&data, &run, &["--resume", "--seed", "5", "--epochs", "2"]);
    assert_success(&out);
    assert!(
        snapshot(&run) == before,
        "an unchanged --resume changed the run"
    );
    // Fewer epochs than were trained: refused.
    let out = train(&data, &run, &["--resume", "--epochs", "1"]);
    assert_clean_failure(&out, &["--epochs 1", "fewer than the 2 epochs"]);
    assert!(snapshot(&run) == before);

    // More epochs extend the finished run, say so, and record it.
    let out = train(&data, &run, &["--resume", "--epochs", "4"]);
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "extending the schedule from 2 to 4 epochs",
        "resuming at epoch 3/4",
        "Epoch 3/4",
        "Epoch 4/4",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(
        !text.contains("Epoch 2/"),
        "epochs 1-2 are not trained again:\n{text}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["epochs"], 4);
    assert_eq!(
        config["schedule_changes"],
        serde_json::json!([{"after_epoch": 2, "from": 2, "to": 4}])
    );
    // ... to exactly the run trained with 4 epochs from the start.
    let reference = dir.path().join("reference");
    assert_success(&train(&data, &reference, &["--epochs", "4", "--seed", "5"]));
    assert_eq!(
        without_seconds(history(&run)),
        without_seconds(history(&reference))
    );
    for name in [
        "last.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(
            fs::read(run.join(name)).unwrap() == fs::read(reference.join(name)).unwrap(),
            "{name} differs from the run trained with 4 epochs"
        );
    }

    // A run that early stopping ended is not extended.
    let state_path = run.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&state_path).unwrap()).unwrap();
    state["finished"] = "early stopping".into();
    fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    let out = train(&data, &run, &["--resume", "--epochs", "6"]);
    assert_clean_failure(&out, &[s(&run), "early stopping at epoch 4", "--patience"]);
}

/// Starts `ct3d args` in the background, its output piped, with `env` set.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ct3d binary starts")
}

/// Waits until `child` holds the lock of `run` (its PID is in the lock file) and `run` is
/// recorded (config.json), then stops it (SIGSTOP): it keeps holding the lock, doing nothing,
/// until [`resume_process`].
fn stop_once_holding(child: &mut Child, run: &Path) {
    stop_once_holding_and(child, run, &run.join("config.json"));
}

/// [`stop_once_holding`], waiting for `ready` to exist instead of `run/config.json`.
fn stop_once_holding_and(child: &mut Child, run: &Path, ready: &Path) {
    let started = Instant::now();
    let pid = child.id().to_string();
    while fs::read_to_string(run.join(".ct3d.lock")).map_or(true, |text| text.trim() != pid)
        || !ready.exists()
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was seen holding {}",
            run.display()
        );
        assert!(started.elapsed() < Duration::from_secs(120), "never locked");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child, libc::SIGSTOP);
}

fn resume_process(child: &Child) {
    signal(child, libc::SIGCONT);
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a live child's PID and a valid signal number has no preconditions.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

fn completed_epochs(run: &Path) -> usize {
    RunDir::new(run)
        .read_state()
        .map_or(0, |s| s.completed_epochs)
}

#[test]
fn a_run_folder_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 2);
    let run = dir.path().join("run");

    // A long training holds its folder: --force and --resume fail at once, naming its PID,
    // and touch nothing.
    let mut first = spawn(
        &train_args(&data, &run, &["--epochs", "50", "--seed", "1"]),
        &[],
    );
    stop_once_holding(&mut first, &run);
    let holder = format!("PID {}", first.id());
    let before = snapshot(&run);
    for extra in [
        &["--epochs", "1", "--seed", "1", "--force"][..],
        &["--resume"],
    ] {
        let out = train(&data, &run, extra);
        assert_clean_failure(
            &out,
            &[
                s(&run),
                "in use by another ct3d process",
                &holder,
                "wait for it or stop it",
            ],
        );
        assert!(snapshot(&run) == before, "{extra:?} changed a locked run");
    }

    // The holder dies without releasing anything (kill -9): the lock is free again.
    first.kill().unwrap();
    first.wait().unwrap();
    let epochs = (completed_epochs(&run) + 1).to_string();
    let resume_args = train_args(&data, &run, &["--resume", "--epochs", &epochs]);
    let mut second = spawn(&resume_args, &[]);
    stop_once_holding(&mut second, &run);
    // Two --resume at once: the second is refused.
    let out = ct3d(&resume_args);
    assert_clean_failure(&out, &[s(&run), &format!("PID {}", second.id())]);
    resume_process(&second);
    let out = second.wait_with_output().unwrap();
    assert_success(&out);
    let state = RunDir::new(&run).read_state().unwrap();
    assert_eq!(state.completed_epochs.to_string(), epochs);
    assert_eq!(state.finished.as_deref(), Some("completed"));
    assert_eq!(history(&run).len(), state.completed_epochs);
    // Released at exit: the next writer gets in.
    assert_success(&train(&data, &run, &["--resume"]));
}

#[test]
fn ctrl_c_prints_how_to_resume_and_logs_show_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 6);
    let run = dir.path().join("run");
    // stderr is a pipe here, as in CI: plain progress lines replace the bars (every batch with
    // an interval of 0 s).
    let mut child = spawn(
        &train_args(&data, &run, &["--epochs", "50", "--seed", "2"]),
        &[("CT3D_PROGRESS_SECONDS", "0")],
    );
    let started = Instant::now();
    while completed_epochs(&run) < 1 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("epoch 1/50: batch 1/")
            && l.contains(", loss ")
            && l.contains(", acc ")),
        "no plain progress line: {err}"
    );
    // (A progress line of the still running epoch may follow it.)
    let interrupted: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("interrupted: "))
        .collect();
    assert_eq!(interrupted.len(), 1, "one line says what happened: {err}");
    assert!(
        interrupted[0].contains(s(&run))
            && interrupted[0].contains(&format!("ct3d train --data {}", s(&data)))
            && interrupted[0].ends_with("--resume"),
        "the line must say how to continue: {err}"
    );
    // And it continues.
    let epochs = (completed_epochs(&run) + 1).to_string();
    let out = train(&data, &run, &["--resume", "--epochs", &epochs]);
    assert_success(&out);
    assert_eq!(history(&run).len().to_string(), epochs);
}

#[test]
fn a_cv_folder_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 4, 4, 2);
    let out = dir.path().join("cv");
    let mut args = train_args(
        &data,
        &out,
        &["--folds", "2", "--epochs", "1", "--seed", "3"],
    );
    args[0] = "cv";
    let mut first = spawn(&args, &[]);
    stop_once_holding_and(&mut first, &out, &out.join(".ct3d.lock"));
    let second = ct3d(&args);
    assert_clean_failure(
        &second,
        &[
            s(&out),
            &format!("in use by another ct3d process (PID {})", first.id()),
        ],
    );
    resume_process(&first);
    assert_success(&first.wait_with_output().unwrap());
    assert!(out.join("cv.json").is_file());
}

/// Runs ct3d, killing it if it is still running after a minute: without the check (as on older
/// versions) the command would go on to write gigabytes, and the test must not do that.
fn refused_or_killed(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "`ct3d {}` was not refused: it started the work",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `train`/`cv` at a size whose one training step needs far more memory than there is are
/// refused at once, with the estimate and `--yes`, before any cache entry or run folder exists.
#[test]
fn oversized_training_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 2, 2, 1);
    let run = dir.path().join("run");
    let huge = ["--size", "1000,1000,1000", "--seed", "1"];
    let mut args = train_args(&data, &run, &[]);
    // The small model's arguments with the size replaced.
    let at = args.iter().position(|a| *a == "--size").unwrap();
    args.drain(at..at + 2);
    args.extend_from_slice(&huge);
    let out = refused_or_killed(&args);
    assert_clean_failure(
        &out,
        &[
            "--size 1000,1000,1000",
            "training needs ~",
            "for one batch of 2",
            "available",
            "--yes",
        ],
    );
    assert!(!run.exists(), "no run folder");
    assert!(!data.join(".ct3d-cache").exists(), "no cache entries");
    args[0] = "cv";
    args.extend_from_slice(&["--folds", "2"]);
    let out = refused_or_killed(&args);
    assert_clean_failure(
        &out,
        &["--size 1000,1000,1000", "training needs ~", "--yes"],
    );
    assert!(!run.exists() && !data.join(".ct3d-cache").exists());
}

#[test]
fn summary_of_a_resnet_counts_what_monai_counts() {
    // MONAI 1.6.1 (torch 2.15), tools/golden/gen_resnet_golden.py: `sum(p.numel() for p in
    // resnet18(spatial_dims=3, n_input_channels=1, num_classes=1, conv1_t_stride=2,
    // shortcut_type="B", bias_downsample=False).parameters())` printed 33160513, and its
    // BatchNorms hold 9600 running-statistic values. Shortcut A: 32986689 (+7808); resnet50
    // with shortcut B: 46157121 (+53120).
    for (args, trainable, moving) in [
        (vec!["--arch", "resnet18"], "33,160,513", "9,600"),
        (
            vec!["--arch", "resnet18", "--shortcut", "A"],
            "32,986,689",
            "7,808",
        ),
        (vec!["--arch", "resnet50"], "46,157,121", "53,120"),
    ] {
        let out = ct3d(&[&["summary"][..], &args].concat());
        assert_success(&out);
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        for expected in [
            format!("Trainable params: {trainable}"),
            format!("Non-trainable params: {moving}"),
        ] {
            assert!(
                lines.contains(&expected.as_str()),
                "{expected:?} not in:\n{text}"
            );
        }
    }
    let text = stdout(&ct3d(&["summary", "--arch", "resnet18"]));
    assert!(text.contains("layer4.1 (BasicBlock)"), "{text}");
    // 128×128×64 → conv1 64×64×32 → max-pool 32×32×16 → … → layer4 4×4×2.
    assert!(text.contains("(None, 512, 4, 4, 2)"), "{text}");

    let out = ct3d(&["summary", "--arch", "resnet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("known ones: seed_cnn, resnet10, resnet18, resnet34, resnet50"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_tiny_resnet_trains_from_pytorch_weights_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 3, 3, 4);
    let run = dir.path().join("run");
    // The golden resnet10_b (widths 2,4,4,8, shortcut B), as MedicalNet saves it.
    let pth = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ct3d-model/tests/data/resnet/resnet10_b_medicalnet.pth");
    let args = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--size",
        "24,24,16",
        "--arch",
        "resnet10",
        "--widths",
        "2,4,4,8",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--init",
        s(&pth),
        "--freeze-encoder-epochs",
        "1",
    ];
    let out = ct3d(&args);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "initialised from {}: loaded 62 tensors; skipped 14 (MedicalNet's segmentation head \
             conv_seg: 2, num_batches_tracked: 12)",
            pth.display()
        )),
        "{text}"
    );
    assert_eq!(history(&run).len(), 2);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(run.join("config.json")).unwrap()).unwrap();
    let train = &config["train"];
    assert_eq!(train["architecture"], "resnet10");
    assert_eq!(
        train["model"]["resnet"],
        serde_json::json!({"widths": [2, 4, 4, 8], "shortcut": "B", "downsample_bias": false})
    );
    assert_eq!(train["freeze_encoder_epochs"], 1);
    assert_eq!(train["init"], s(&pth));
    let scan = &scans_in(&data.join("CT-23"))[0];
    let reported = json(&ct3d(&["predict", "--run", s(&run), "--json", s(scan)]));
    let probability = reported[0]["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&probability), "{reported}");

    // Another run starts from this one's best weights; a wrong architecture is one line.
    let best = run.join("best.safetensors");
    let again = dir.path().join("again");
    let out = ct3d(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&again),
        "--size",
        "24,24,16",
        "--arch",
        "resnet10",
        "--widths",
        "2,4,4,8",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--init",
        s(&best),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("loaded 62 tensors"),
        "{}",
        stdout(&out)
    );
    let wrong = dir.path().join("wrong");
    let out = ct3d(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&wrong),
        "--size",
        "24,24,16",
        "--arch",
        "resnet18",
        "--widths",
        "2,4,4,8",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--init",
        s(&pth),
    ]);
    assert_clean_failure(&out, &[s(&pth), "layer1.1.conv1.weight"]);
}

/// Issue 14: `calibrate` records a temperature (and a Youden threshold) in the run; `eval` and
/// `predict` then apply it and say so, `--raw` gives exactly the uncalibrated answers, intervals
/// and calibration numbers are in the JSON, `--plots` draws the reliability diagram, and a
/// damaged calibration.json is one clean error naming it.
#[test]
fn calibrate_records_a_temperature_that_eval_and_predict_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "data", 6, 6, 3);
    let run = dir.path().join("run");
    // Seed 2 ranks the four validation scans well enough for a Youden threshold (see the end).
    assert_success(&train(&data, &run, &["--epochs", "2", "--seed", "2"]));
    let scan = &scans_in(&data.join("CT-23"))[0];
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "--run", s(&run), "--json"];
        args.extend_from_slice(extra);
        args.push(s(scan));
        json(&ct3d(&args))[0]["probability"].as_f64().unwrap()
    };
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--run", s(&run), "--json"];
        args.extend_from_slice(extra);
        json(&ct3d(&args))
    };
    let before = eval(&[]);
    let raw_probability = predict(&[]);
    assert_eq!(before["probabilities"], "raw");
    let metrics = &before["metrics"];
    assert_eq!(metrics["threshold"], 0.5);
    for key in ["brier", "ece"] {
        assert!(metrics[key].as_f64().is_some(), "{key}: {before}");
    }
    let intervals = &metrics["intervals"];
    assert_eq!(intervals["resamples"], 2000, "{before}");
    for key in ["accuracy", "sensitivity", "specificity", "auc"] {
        let (lower, upper) = (
            intervals[key]["lower"].as_f64().unwrap(),
            intervals[key]["upper"].as_f64().unwrap(),
        );
        let value = metrics[key].as_f64().unwrap();
        assert!(
            lower <= value && value <= upper,
            "{key}: {value} in [{lower}, {upper}]"
        );
    }
    // Seeded: the same intervals again; another seed may differ but keeps the point values.
    assert_eq!(eval(&[]), before);
    let reseeded = eval(&["--bootstrap-seed", "9"]);
    assert_eq!(reseeded["metrics"]["accuracy"], metrics["accuracy"]);
    assert_eq!(reseeded["metrics"]["intervals"]["seed"], 9);

    let out = ct3d(&["calibrate", "--run", s(&run), "--threshold", "youden"]);
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "temperature T = ",
        "NLL",
        "ECE (15 bins)",
        "Brier score",
        "threshold 0.",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("calibration.json")).unwrap()).unwrap();
    let temperature = record["temperature"].as_f64().unwrap();
    let threshold = record["threshold"]["value"].as_f64().unwrap();
    assert!(temperature > 0.0 && record["weights"] == "best", "{record}");

    // Calibrated by default, and said so; --raw is exactly the run before calibration.
    let after = eval(&[]);
    assert_eq!(
        after["probabilities"],
        format!("calibrated (T = {temperature:.2})")
    );
    assert_eq!(after["metrics"]["threshold"], threshold);
    assert_eq!(eval(&["--raw"]), before);
    let calibrated = predict(&[]);
    let expected =
        1.0 / (1.0 + (-ct3d::calibration::logit(raw_probability as f32) / temperature).exp());
    assert!(
        (calibrated - expected).abs() < 1e-6,
        "{calibrated} vs {expected}"
    );
    assert_eq!(predict(&["--raw"]), raw_probability);
    let out = ct3d(&["predict", "--run", s(&run), s(scan)]);
    assert_success(&out);
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(
        first.starts_with(&format!(
            "probabilities calibrated (T = {temperature:.2}), threshold {threshold:.4}"
        )),
        "{first}"
    );
    let out = ct3d(&["eval", "--run", s(&run)]);
    assert_success(&out);
    let table = stdout(&out);
    assert!(
        table.contains("calibrated (T = ") && table.contains("95% CI"),
        "{table}"
    );

    let plots = dir.path().join("plots");
    let out = ct3d(&["eval", "--run", s(&run), "--plots", s(&plots)]);
    assert_success(&out);
    let png = fs::read(plots.join("reliability.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "reliability.png is a PNG");

    // Other weights than the calibrated ones: uncalibrated, with a warning.
    let out = ct3d(&["eval", "--run", s(&run), "--weights", "last", "--json"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("calibration.json was fitted for other weights"),
        "{}",
        stderr(&out)
    );

    // Item 5: --tta N averages N seeded augmented copies and reports their spread.
    let tta = |seed: &str| {
        json(&ct3d(&[
            "predict",
            "--run",
            s(&run),
            "--json",
            "--tta",
            "4",
            "--tta-seed",
            seed,
            s(scan),
        ]))[0]
            .clone()
    };
    let first = tta("1");
    assert_eq!(first["tta"]["count"], 4, "{first}");
    let (p, low, high) = (
        first["probability"].as_f64().unwrap(),
        first["tta"]["min"].as_f64().unwrap(),
        first["tta"]["max"].as_f64().unwrap(),
    );
    assert!(
        low <= p && p <= high && first["tta"]["sd"].as_f64().unwrap() >= 0.0,
        "{first}"
    );
    assert_eq!(tta("1"), first, "seeded");
    let out = ct3d(&["predict", "--run", s(&run), "--tta", "0", s(scan)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let evaluated = eval(&["--tta", "3"]);
    let scans = evaluated["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 4);
    for scan in scans {
        assert_eq!(scan["tta"]["count"], 3, "{scan}");
        let p = scan["probability"].as_f64().unwrap();
        let (low, high) = (
            scan["tta"]["min"].as_f64().unwrap(),
            scan["tta"]["max"].as_f64().unwrap(),
        );
        assert!(low <= p + 1e-7 && p <= high + 1e-7, "{scan}");
    }
    assert_eq!(eval(&["--tta", "3"]), evaluated, "seeded");

    fs::write(run.join("calibration.json"), "{ \"temperature\": 1.").unwrap();
    for command in ["eval", "predict"] {
        let mut args = vec![command, "--run", s(&run)];
        if command == "predict" {
            args.push(s(scan));
        }
        assert_clean_failure(
            &ct3d(&args),
            &["calibration.json", "not a valid calibration record"],
        );
    }

    // Seed 5 ranks the validation scans backwards: no Youden threshold, one line, nothing written.
    let backwards = dir.path().join("backwards");
    assert_success(&train(&data, &backwards, &["--epochs", "2", "--seed", "5"]));
    assert_clean_failure(
        &ct3d(&["calibrate", "--run", s(&backwards), "--threshold", "youden"]),
        &["no threshold separates the classes better than chance"],
    );
    assert!(!backwards.join("calibration.json").exists());
}
