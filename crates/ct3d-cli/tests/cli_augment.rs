//! End-to-end tests of augmentation recipes (`--augment`, `--augment-file`) through the real
//! `ct3d` binary: what `config.json` records, resuming with another recipe, the preview in
//! `show`, and bad recipes (one line naming the transform or setting, nothing left behind).

use std::fs;
use std::path::Path;

use crate::support::{
    assert_clean_failure, assert_success, ct3d, s, small_train_args, stderr, synth_into,
};

fn synth(dir: &Path, normal: usize, abnormal: usize) -> std::path::PathBuf {
    synth_into(&dir.join("data"), normal, abnormal, 3, Some(48))
}

#[test]
fn a_recipe_is_recorded_in_config_json_and_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 3, 3);
    let recipe = dir.path().join("recipe.toml");
    fs::write(
        &recipe,
        "[[augment]]\nkind = \"noise\"\nstd = 0.05\n\n[[augment]]\nkind = \"affine\"\n\
         rotate_deg = [0.0, 0.0, 10.0]\ninterpolation = \"cubic\"\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let recipe_flags = [
        "--augment",
        "flip,affine,noise",
        "--augment-file",
        s(&recipe),
    ];
    let mut extra = vec!["--epochs", "1", "--seed", "4"];
    extra.extend_from_slice(&recipe_flags);
    assert_success(&ct3d(&small_train_args(&data, &run, &extra)));

    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let augment = &config["train"]["augment"];
    assert_eq!(
        augment[0],
        serde_json::json!({"kind": "random_flip", "probabilities": [0.5, 0.0, 0.0]})
    );
    assert_eq!(augment[1]["kind"], "random_affine");
    assert_eq!(
        augment[1]["rotate_deg"],
        serde_json::json!([0.0, 0.0, 10.0])
    );
    assert_eq!(augment[1]["interpolation"], "cubic");
    assert_eq!(augment[1]["padding"], "constant");
    assert_eq!(
        augment[2],
        serde_json::json!({"kind": "gaussian_noise", "std": 0.05, "probability": 1.0})
    );

    // The same recipe typed again resumes; another one is refused, naming the flag.
    let mut same = vec!["--resume", "--epochs", "1"];
    same.extend_from_slice(&recipe_flags);
    assert_success(&ct3d(&small_train_args(&data, &run, &same)));
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--resume", "--augment", "rotate"],
    ));
    assert_clean_failure(
        &out,
        &["--augment", "random_rotation", "differs", "--force"],
    );
}

#[test]
fn bad_recipes_are_refused_on_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("CT-0")).unwrap();
    fs::create_dir_all(data.join("CT-23")).unwrap();
    let run = dir.path().join("run");
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--augment", "rotate,flip,elastic"],
    ));
    assert_clean_failure(
        &out,
        &[
            "--augment",
            "no augmentation is called \"elastic\"",
            "known: rotate, flip",
        ],
    );

    let recipe = dir.path().join("recipe.json");
    fs::write(
        &recipe,
        r#"{"augment": [{"kind": "flip", "probabilities": [0.5, 1.5, 0.0]}]}"#,
    )
    .unwrap();
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--augment-file", s(&recipe)],
    ));
    assert_clean_failure(
        &out,
        &[
            "--augment-file",
            s(&recipe),
            "random_flip probabilities 1.5: must be between 0 and 1",
        ],
    );
    let toml = dir.path().join("recipe.toml");
    fs::write(&toml, "[[augment]]\nkind = \"blur\"\nsigma = [3.0, 1.0]\n").unwrap();
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--augment-file", s(&toml)],
    ));
    // TOML points at the entry holding the bad setting.
    assert_clean_failure(
        &out,
        &["--augment-file", "gaussian_blur sigma [3, 1]", "line 1"],
    );
    let missing = dir.path().join("missing.toml");
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--augment-file", s(&missing)],
    ));
    assert_clean_failure(&out, &["--augment-file", "missing.toml: cannot read"]);
    assert!(!run.exists(), "a refused recipe left {}", run.display());

    // --no-augment and a recipe contradict each other: a usage error.
    let out = ct3d(&small_train_args(
        &data,
        &run,
        &["--no-augment", "--augment", "flip"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn show_previews_a_recipe_drawn_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 1, 0);
    let scan = data.join("CT-0").join("phantom_0000.nii.gz");
    let picture = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["show", s(&scan), "--size", "32,32,40", "--slice", "20"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", s(&path)]);
        assert_success(&ct3d(&args));
        fs::read(&path).unwrap()
    };
    let plain = picture("plain.png", &[]);
    let recipe = ["--augment", "flip,affine,noise", "--augment-seed"];
    let a = picture("a.png", &[&recipe[..], &["3"]].concat());
    let again = picture("again.png", &[&recipe[..], &["3"]].concat());
    let other = picture("other.png", &[&recipe[..], &["4"]].concat());
    assert_ne!(a, plain);
    assert_eq!(a, again, "the same seed draws the same augmentation");
    assert_ne!(a, other);
    let out = ct3d(&["show", s(&scan), "--augment", "flop", "-o", "x.png"]);
    assert_clean_failure(&out, &["--augment", "\"flop\""]);
}
