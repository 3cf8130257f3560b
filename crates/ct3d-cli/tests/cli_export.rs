//! End-to-end tests of `ct3d export`: the ONNX model of a trained run, checked by the reference
//! implementations (`onnx.checker`, ONNX Runtime; `tools/onnx/check_export.py`) against `ct3d
//! predict` on the same scans, for the seed CNN and for ResNets with each shortcut type. Needs a
//! Python with `tools/onnx/requirements.txt` (`CT3D_PYTHON`, else `python3`); skipped without one
//! unless `CT3D_REQUIRE_ONNXRUNTIME=1` (CI), where it must run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{
    SMALL_MODEL, assert_clean_failure, assert_success, ct3d, s, stdout, synth_into,
};

/// The Python that has onnx, onnxruntime and nibabel, if any.
fn reference_python() -> Option<PathBuf> {
    let python =
        std::env::var_os("CT3D_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let works = Command::new(&python)
        .args(["-c", "import onnx, onnxruntime, nibabel, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    if std::env::var_os("CT3D_REQUIRE_ONNXRUNTIME").is_some_and(|v| v == "1") {
        panic!(
            "CT3D_REQUIRE_ONNXRUNTIME=1 but {} cannot import onnx, onnxruntime and nibabel \
             (pip install -r tools/onnx/requirements.txt; CT3D_PYTHON names the interpreter)",
            python.display()
        );
    }
    None
}

/// Trains a one-epoch run of `flags` on `data` into `run`.
fn train(data: &Path, run: &Path, flags: &[&str]) {
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--out",
        s(run),
        "--epochs",
        "1",
        "--seed",
        "2",
    ];
    args.extend_from_slice(flags);
    assert_success(&ct3d(&args));
}

/// Exports `run` with `batch`, preprocesses `scans` at `size` and has the reference check the
/// model against `ct3d predict` on them.
fn check(
    python: &Path,
    dir: &Path,
    run: &Path,
    size: &str,
    batch: &str,
    scans: &[PathBuf],
) -> String {
    let onnx = dir.join(format!(
        "{}.onnx",
        run.file_name().unwrap().to_str().unwrap()
    ));
    let exported = ct3d(&[
        "export",
        "--run",
        s(run),
        "--onnx",
        s(&onnx),
        "--batch",
        batch,
    ]);
    assert_success(&exported);
    let mut args = vec!["predict", "--run", s(run), "--json"];
    args.extend(scans.iter().map(|p| s(p)));
    let predicted = ct3d(&args);
    assert_success(&predicted);
    let predictions: Value = serde_json::from_str(&stdout(&predicted)).unwrap();
    let mut expected = Vec::new();
    for (i, (scan, prediction)) in scans
        .iter()
        .zip(predictions.as_array().unwrap())
        .enumerate()
    {
        let volume = dir.join(format!(
            "{}-{i}.nii.gz",
            run.file_name().unwrap().to_str().unwrap()
        ));
        assert_success(&ct3d(&[
            "preprocess",
            s(scan),
            "-o",
            s(&volume),
            "--size",
            size,
        ]));
        expected.push(json!({"volume": volume, "probability": prediction["probability"]}));
    }
    let expected_path = onnx.with_extension("expected.json");
    std::fs::write(&expected_path, serde_json::to_string(&expected).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/onnx/check_export.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&onnx)
        .arg(&expected_path)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {text}", run.display());
    assert!(
        text.contains(&format!(
            "ONNX Runtime: {} probabilities equal",
            scans.len()
        )),
        "{text}"
    );
    format!("{}\n{text}", stdout(&exported))
}

#[test]
fn exported_models_give_ct3d_predict_probabilities_in_onnx_runtime() {
    let Some(python) = reference_python() else {
        eprintln!("skipped: no Python with onnx, onnxruntime and nibabel");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = synth_into(&dir.path().join("data"), 3, 3, 11, Some(40));
    let scans: Vec<PathBuf> = [
        "CT-0/phantom_0000",
        "CT-0/phantom_0001",
        "CT-23/phantom_0000",
        "CT-23/phantom_0002",
    ]
    .iter()
    .map(|name| data.join(format!("{name}.nii.gz")))
    .collect();

    // The seed CNN, dynamic batch, uncalibrated.
    let seed = dir.path().join("seed");
    train(&data, &seed, &SMALL_MODEL);
    let text = check(&python, dir.path(), &seed, "48,48,48", "dynamic", &scans);
    assert!(
        text.contains("seed_cnn in ONNX opset 17, input [N, 1, 48, 48, 48]"),
        "{text}"
    );
    assert!(text.contains("ct3d.temperature = 1\n"), "{text}");

    // ResNet-18 with shortcut A (Slice + Pad), calibrated: the temperature is in the graph.
    let r18 = dir.path().join("r18a");
    train(
        &data,
        &r18,
        &[
            "--size",
            "32,32,32",
            "--arch",
            "resnet18",
            "--widths",
            "2,4,4,8",
            "--shortcut",
            "A",
        ],
    );
    assert_success(&ct3d(&["calibrate", "--run", s(&r18)]));
    let text = check(&python, dir.path(), &r18, "32,32,32", "dynamic", &scans);
    assert!(text.contains("(calibrated: temperature"), "{text}");

    // ResNet-50 (bottleneck blocks) with shortcut B and its bias, a fixed batch of 3 (the
    // fourth scan goes in a padded second call).
    let r50 = dir.path().join("r50b");
    train(
        &data,
        &r50,
        &[
            "--size",
            "32,32,32",
            "--arch",
            "resnet50",
            "--widths",
            "2,2,2,4",
            "--shortcut",
            "B",
            "--downsample-bias",
        ],
    );
    let text = check(&python, dir.path(), &r50, "32,32,32", "3", &scans);
    assert!(text.contains("input [3, 1, 32, 32, 32]"), "{text}");
}

#[test]
fn export_refuses_bad_input_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    assert_clean_failure(
        &ct3d(&[
            "export",
            "--run",
            s(&dir.path().join("nowhere")),
            "--onnx",
            s(&out),
        ]),
        &["nowhere"],
    );
    assert_clean_failure(
        &ct3d(&[
            "export",
            "--run",
            s(dir.path()),
            "--onnx",
            s(&out),
            "--batch",
            "0",
        ]),
        &["--batch \"0\"", "dynamic"],
    );
    assert!(!out.exists());
}
