//! End-to-end tests of the dataset options through the real `ct3d` binary: CSV manifests
//! (`--manifest`), k-fold training (`--folds K --fold I`) and `ct3d cv`, on tiny phantoms
//! (64×64 in-plane, model input 48³, filters 4,4,8,8, dense 16, one epoch).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    assert_clean_failure, assert_success, ct3d, s, small_train_args, stderr, stdout, synth_into,
};

/// Phantoms written by the CLI into `dir/data` (CT-0 and CT-23).
fn synth(dir: &Path, normal: usize, abnormal: usize) -> PathBuf {
    synth_into(&dir.join("data"), normal, abnormal, 11, Some(40))
}

fn scans(folder: &Path) -> Vec<PathBuf> {
    let mut scans: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    scans.sort();
    scans
}

/// `ct3d cv` with the small model's arguments: `small_train_args` with `cv` for `train`.
fn cv_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = small_train_args(data, out, extra);
    args[0] = "cv";
    args
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cv_runs_every_fold_summarises_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 4, 4);
    let out = dir.path().join("cv");
    let args = cv_args(
        &data,
        &out,
        &[
            "--folds",
            "2",
            "--epochs",
            "1",
            "--seed",
            "3",
            "--batch-size",
            "2",
        ],
    );
    let first = ct3d(&args);
    assert_success(&first);
    let text = stdout(&first);
    for needle in [
        "== fold 1/2: training",
        "== fold 2/2: training",
        "mean ± SD",
        "cv.json",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    let summary = read_json(&out.join("cv.json"));
    assert_eq!(summary["folds"], 2);
    assert_eq!(summary["seed"], 3);
    let folds = summary["per_fold"].as_array().unwrap();
    assert_eq!(folds.len(), 2);
    let mut accuracies = Vec::new();
    for (i, fold) in folds.iter().enumerate() {
        assert_eq!(fold["fold"], i + 1);
        // 4 + 4 scans in 2 stratified folds: 2 + 2 validate, the other 4 train.
        assert_eq!(fold["validation_scans"], 4, "{fold}");
        assert_eq!(fold["train_scans"], 4, "{fold}");
        assert_eq!(fold["metrics"]["count"], 4, "{fold}");
        accuracies.push(fold["metrics"]["accuracy"].as_f64().unwrap());
        let config = read_json(&out.join(format!("fold-{}", i + 1)).join("config.json"));
        assert_eq!(config["train"]["folds"]["count"], 2);
        assert_eq!(config["train"]["folds"]["fold"], i + 1);
    }
    // The mean and the sample SD are those of the per-fold values.
    let mean = (accuracies[0] + accuracies[1]) / 2.0;
    let sd = (accuracies[0] - accuracies[1]).abs() / 2f64.sqrt();
    let accuracy = &summary["mean"]["accuracy"];
    assert!(
        (accuracy["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
        "{accuracy}"
    );
    assert!(
        (accuracy["sd"].as_f64().unwrap() - sd).abs() < 1e-12,
        "{accuracy}"
    );
    assert_eq!(accuracy["n"], 2);
    assert!(summary["mean"]["auc"]["mean"].is_number(), "{summary}");
    assert!(summary["mean"]["auc"]["sd"].is_number(), "{summary}");

    // The folds partition the data: every scan validates exactly once.
    let mut validated: Vec<String> = Vec::new();
    for fold in 1..=2 {
        let config = read_json(&out.join(format!("fold-{fold}")).join("config.json"));
        for file in config["files"].as_array().unwrap() {
            if file["split"] == "validation" {
                validated.push(file["path"].as_str().unwrap().to_owned());
            }
        }
    }
    validated.sort();
    let mut all: Vec<String> = ["CT-0", "CT-23"]
        .iter()
        .flat_map(|c| scans(&data.join(c)))
        .map(|p| p.canonicalize().unwrap().display().to_string())
        .collect();
    all.sort();
    assert_eq!(validated, all);

    let csv = fs::read_to_string(out.join("cv.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(
        rows[0].starts_with("fold,train_scans,validation_scans"),
        "{csv}"
    );
    assert!(
        rows[3].starts_with("mean,") && rows[4].starts_with("sd,"),
        "{csv}"
    );

    // Rerun: both folds are finished, so nothing is trained and the results are the same.
    let history = fs::read(out.join("fold-1/history.csv")).unwrap();
    let again = ct3d(&args);
    assert_success(&again);
    let text = stdout(&again);
    assert_eq!(text.matches("already trained").count(), 2, "{text}");
    assert!(!text.contains("Epoch 1/1"), "nothing retrained: {text}");
    assert_eq!(read_json(&out.join("cv.json")), summary);
    assert_eq!(fs::read(out.join("fold-1/history.csv")).unwrap(), history);

    // Other settings in the same folder are refused, naming what differs.
    let other = ct3d(&cv_args(
        &data,
        &out,
        &[
            "--folds",
            "2",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--batch-size",
            "2",
        ],
    ));
    assert_clean_failure(&other, &["fold-1", "other settings (epochs)", "--force"]);
}

#[test]
fn cv_refuses_too_many_or_too_few_folds() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 3, 4);
    let out = dir.path().join("cv");
    let too_many = ct3d(&cv_args(&data, &out, &["--folds", "4", "--seed", "1"]));
    assert_clean_failure(&too_many, &["\"CT-0\" has 3 scans", "too few for 4 folds"]);
    assert!(!out.exists(), "nothing is left behind");
    let one = ct3d(&cv_args(&data, &out, &["--folds", "1"]));
    assert_eq!(one.status.code(), Some(2), "{}", stderr(&one));
    assert!(
        stderr(&one).contains("at least 2 folds"),
        "{}",
        stderr(&one)
    );
}

#[test]
fn train_with_a_manifest_and_a_fold() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 4, 4);
    // The manifest lives elsewhere: paths are relative to its folder; labels by class name
    // and by number; two scans per patient.
    let lists = dir.path().join("lists");
    fs::create_dir_all(&lists).unwrap();
    let mut csv = String::from("path,label,patient\n");
    for (class, label) in [("CT-0", "healthy"), ("CT-23", "1")] {
        for (i, scan) in scans(&data.join(class)).iter().enumerate() {
            let name = scan.file_name().unwrap().to_str().unwrap();
            let _ = std::fmt::Write::write_fmt(
                &mut csv,
                format_args!("\"../data/{class}/{name}\",{label},{class}-p{}\n", i / 2),
            );
        }
    }
    let manifest = lists.join("scans.csv");
    fs::write(&manifest, &csv).unwrap();
    let run = dir.path().join("run");
    let mut args = small_train_args(&data, &run, &[]);
    args[1] = "--manifest";
    args[2] = s(&manifest);
    args.extend([
        "--negative",
        "healthy",
        "--positive",
        "covid",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--fold",
        "2",
        "--seed",
        "4",
    ]);
    let out = ct3d(&args);
    assert_success(&out);
    assert!(
        lists.join(".ct3d-cache").is_dir(),
        "the default cache is next to the manifest"
    );
    let config = read_json(&run.join("config.json"));
    assert_eq!(
        config["manifest"].as_str().unwrap(),
        manifest.canonicalize().unwrap().display().to_string()
    );
    assert_eq!(config["train"]["folds"]["fold"], 2);
    let files = config["files"].as_array().unwrap();
    assert_eq!(files.len(), 8);
    // Patients are recorded, and each patient's two scans are on the same side.
    for file in files {
        let patient = file["patient"].as_str().unwrap();
        let partner = files
            .iter()
            .filter(|f| f["patient"] == patient)
            .collect::<Vec<_>>();
        assert_eq!(partner.len(), 2, "{patient}");
        assert_eq!(partner[0]["split"], partner[1]["split"], "{patient}");
    }
    let validation = files.iter().filter(|f| f["split"] == "validation").count();

    // eval reads the run's manifest and validates on its fold.
    let eval = ct3d(&["eval", "--run", s(&run), "--json"]);
    assert_success(&eval);
    let evaluation: Value = serde_json::from_str(&stdout(&eval)).unwrap();
    assert_eq!(evaluation["metrics"]["count"], validation);

    // prepare takes a manifest too.
    let prepared = ct3d(&[
        "prepare",
        "--manifest",
        s(&manifest),
        "--cache",
        s(&dir.path().join("cache")),
        "--size",
        "48,48,48",
        "--negative",
        "healthy",
        "--positive",
        "covid",
    ]);
    assert_success(&prepared);
    assert!(
        stdout(&prepared).contains("prepared 8 scans (4 healthy, 4 covid)"),
        "{}",
        stdout(&prepared)
    );
}

#[test]
fn bad_manifests_and_fold_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 2, 2);
    let run = dir.path().join("run");
    let a = scans(&data.join("CT-0"))[0].clone();
    let manifest = dir.path().join("bad.csv");
    fs::write(
        &manifest,
        format!(
            "path,label\n{},0\nmissing-1.nii.gz,1\nmissing-2.nii.gz,0\n{},maybe\n",
            a.display(),
            a.display()
        ),
    )
    .unwrap();
    let mut args = small_train_args(&data, &run, &["--epochs", "1"]);
    args[1] = "--manifest";
    args[2] = s(&manifest);
    let out = ct3d(&args);
    assert_clean_failure(
        &out,
        &[
            "bad.csv",
            "2 rows point to missing files: row 3 missing-1.nii.gz, row 4 missing-2.nii.gz",
            "1 row has a label",
            "row 5 \"maybe\"",
            "1 row repeats a path",
        ],
    );
    assert!(!run.exists(), "nothing is left behind");

    // Usage errors (exit status 2): a fold outside 1..=K, --fold without --folds, both sources.
    let usage = |extra: &[&str], needle: &str| {
        let out = ct3d(&small_train_args(&data, &run, extra));
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{extra:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    };
    usage(
        &["--folds", "3", "--fold", "4", "--seed", "1"],
        "--fold 4: folds are numbered 1 to 3",
    );
    usage(&["--folds", "3", "--fold", "0", "--seed", "1"], "1 to 3");
    usage(&["--fold", "1"], "--folds");
    usage(&["--folds", "3", "--fold", "1"], "--seed");
    usage(&["--manifest", s(&manifest)], "cannot be used with");
    assert!(!run.exists());
}

#[test]
fn the_default_split_keeps_each_patient_on_one_side() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 5, 5);
    // Patient a1 has three negative scans, rows 3 to 5: the per-class rule alone (first
    // floor(5 · 0.7) = 3 rows train) would put one in training and two in validation.
    let mut csv = String::from("path,label,patient\n");
    for (class, patients) in [
        ("CT-0", ["p0", "p1", "a1", "a1", "a1"]),
        ("CT-23", ["b0", "b1", "b2", "b3", "b4"]),
    ] {
        for (scan, patient) in scans(&data.join(class)).iter().zip(patients) {
            let name = scan.file_name().unwrap().to_str().unwrap();
            csv.push_str(&format!("{class}/{name},{class},{patient}\n"));
        }
    }
    let manifest = data.join("scans.csv");
    fs::write(&manifest, &csv).unwrap();
    let run = dir.path().join("run");
    let mut args = small_train_args(&data, &run, &["--epochs", "1", "--seed", "2"]);
    args[1] = "--manifest";
    args[2] = s(&manifest);
    let out = ct3d(&args);
    assert_success(&out);
    let config = read_json(&run.join("config.json"));
    let files = config["files"].as_array().unwrap();
    assert_eq!(files.len(), 10);
    for file in files {
        let straddles = files
            .iter()
            .any(|other| other["patient"] == file["patient"] && other["split"] != file["split"]);
        assert!(!straddles, "patient {} is on both sides", file["patient"]);
    }
    let a1: Vec<&Value> = files.iter().filter(|f| f["patient"] == "a1").collect();
    assert_eq!(a1.len(), 3);
    assert!(a1.iter().all(|f| f["split"] == "validation"));
    assert!(
        stdout(&out).contains(
            "split by patient: 5 patients (5 scans) train, 3 patients (5 scans) validation"
        ),
        "{}",
        stdout(&out)
    );

    // Every positive scan from one patient: no split keeps the patient whole and the class on
    // both sides, so it is refused in one line naming the manifest and the class.
    let one_patient = data.join("one-patient.csv");
    let csv = (0..5).fold(csv, |csv, i| csv.replace(&format!(",b{i}\n"), ",b\n"));
    fs::write(&one_patient, csv).unwrap();
    let other_run = dir.path().join("other-run");
    args[2] = s(&one_patient);
    args[4] = s(&other_run);
    assert_clean_failure(
        &ct3d(&args),
        &[s(&one_patient), "class \"CT-23\"", "belong to 1 patient"],
    );
    assert!(!other_run.exists());
}

/// `--class-weight balanced --sampler balanced` train and are recorded in config.json; a resumed
/// run refuses another class weight; unknown values are usage errors listing the known ones.
#[test]
fn class_balance_flags_train_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 2, 4);
    let run = dir.path().join("run");
    let balanced = [
        "--epochs",
        "1",
        "--seed",
        "2",
        "--class-weight",
        "balanced",
        "--sampler",
        "balanced",
    ];
    let out = ct3d(&small_train_args(&data, &run, &balanced));
    assert_success(&out);
    let config: Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["class_weight"], "balanced");
    assert_eq!(config["train"]["sampler"], "balanced");
    let resumed = ct3d(&small_train_args(
        &data,
        &run,
        &["--resume", "--epochs", "2", "--class-weight", "none"],
    ));
    assert_clean_failure(&resumed, &["--class-weight none differs"]);
    let unknown = ct3d(&small_train_args(&data, &run, &["--class-weight", "equal"]));
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("none") && stderr(&unknown).contains("balanced"),
        "{}",
        stderr(&unknown)
    );
}
