//! `ct3d explain` end to end on tiny phantoms: the files and JSON lines it writes, maps on each
//! scan's own grid and affine, the probability `predict` gives, and bad input (an unknown layer,
//! flags of the wrong method, a scan that fails among others).

use std::fs;
use std::path::Path;

use ct3d_volume::nifti::read_volume;

use crate::support::{
    assert_clean_failure, assert_success, ct3d, s, small_train_args, stderr, stdout, synth_into,
};

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn explain_writes_maps_on_each_scans_grid_and_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_into(&dir.path().join("data"), 3, 3, 5, None);
    let run = dir.path().join("run");
    assert_success(&ct3d(&small_train_args(&data, &run, &["--epochs", "1"])));
    let abnormal = data.join("CT-23/phantom_0000.nii.gz");
    let normal_folder = data.join("CT-0");
    let maps = dir.path().join("maps");
    // `ct3d explain --run RUN <abnormal scan> --out maps` with `extra` flags.
    let explain_abnormal = |extra: &[&str]| {
        let mut args = vec!["explain", "--run", s(&run), s(&abnormal), "--out", s(&maps)];
        args.extend_from_slice(extra);
        ct3d(&args)
    };

    let out = ct3d(&[
        "explain",
        "--run",
        s(&run),
        s(&abnormal),
        s(&normal_folder),
        "--out",
        s(&maps),
    ]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("Grad-CAM on block4"),
        "{}",
        stderr(&out)
    );
    let printed = lines(&stdout(&out));
    let recorded = lines(&fs::read_to_string(maps.join("explanations.jsonl")).unwrap());
    assert_eq!(printed, recorded);
    assert_eq!(
        recorded.len(),
        4,
        "one abnormal scan and the three normal ones"
    );

    let predicted: serde_json::Value = serde_json::from_str(&stdout(&ct3d(&[
        "predict",
        "--run",
        s(&run),
        s(&abnormal),
        "--json",
    ])))
    .unwrap();
    let first = &recorded[0];
    assert_eq!(first["scan"], s(&abnormal));
    assert_eq!(first["method"], "gradcam");
    assert_eq!(first["layer"], "block4");
    assert_eq!(first["target"], "positive");
    let (p, q) = (
        first["probability"].as_f64().unwrap(),
        predicted[0]["probability"].as_f64().unwrap(),
    );
    assert!((p - q).abs() < 1e-6, "explain says {p}, predict {q}");
    for record in &recorded {
        let scan = read_volume(Path::new(record["scan"].as_str().unwrap())).unwrap();
        let map = read_volume(Path::new(record["map"].as_str().unwrap())).unwrap();
        assert_eq!(map.shape(), scan.shape(), "the map lies on the scan's grid");
        assert_eq!(map.affine, scan.affine);
        assert!(map.data().iter().all(|v| v.is_finite() && *v >= 0.0));
        let peak = record["peak_voxel"].as_array().unwrap();
        let [i, j, k] = [0, 1, 2].map(|a| peak[a].as_u64().unwrap() as usize);
        let max = map.data().iter().fold(0.0f32, |m, &v| m.max(v));
        assert_eq!(map.get(i, j, k), max, "peak_voxel holds the maximum");
        let mm = record["peak_mm"].as_array().unwrap();
        for (row, value) in scan.affine.iter().zip(mm) {
            let expected: f64 = (0..3).map(|c| row[c] * [i, j, k][c] as f64).sum::<f64>() + row[3];
            assert!((value.as_f64().unwrap() - expected).abs() < 1e-3);
        }
        let png = fs::read(record["png"].as_str().unwrap()).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    // Occlusion (the mean fill; the Gaussian default is checked against MONAI in ct3d-model)
    // and another block, into the same folder.
    let out = explain_abnormal(&[
        "--method",
        "occlusion",
        "--patch",
        "24,24,24",
        "--fill",
        "mean",
    ]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("occlusion (9 forward passes per scan)"),
        "{}",
        stderr(&out)
    );
    let occluded = lines(&stdout(&out));
    assert_eq!(occluded[0]["method"], "occlusion");
    assert!(maps.join("phantom_0000_occlusion.nii.gz").is_file());
    // In the first call two scans were called phantom_0000: each got its folder's name.
    assert!(maps.join("CT-23_phantom_0000_gradcam.nii.gz").is_file());
    assert!(maps.join("CT-0_phantom_0000_gradcam.png").is_file());
    let out = explain_abnormal(&["--layer", "block2", "--method", "gradcam++"]);
    assert_success(&out);
    assert_eq!(lines(&stdout(&out))[0]["layer"], "block2");
    assert!(maps.join("phantom_0000_gradcampp.png").is_file());

    // Bad input: one line each, exit 1.
    let out = explain_abnormal(&["--layer", "conv9"]);
    assert_clean_failure(
        &out,
        &["unknown layer \"conv9\"", "block1, block2, block3, block4"],
    );
    let out = explain_abnormal(&["--patch", "8,8,8"]);
    assert_clean_failure(&out, &["--method occlusion"]);
    let out = explain_abnormal(&["--fill", "mean"]);
    assert_clean_failure(&out, &["--method occlusion"]);
    let out = explain_abnormal(&["--method", "occlusion", "--patch", "64,8,8"]);
    assert_clean_failure(&out, &["occlusion patch"]);
    let out = explain_abnormal(&[
        "--method",
        "occlusion",
        "--patch",
        "4,4,4",
        "--max-minutes",
        "0.0001",
    ]);
    assert_clean_failure(&out, &["--yes", "that would take about"]);
    // A scan that cannot be read: its error line, the other scan still explained, exit 1.
    let broken = dir.path().join("broken.nii.gz");
    fs::write(&broken, b"not a scan").unwrap();
    let out = ct3d(&[
        "explain",
        "--run",
        s(&run),
        s(&broken),
        s(&abnormal),
        "--out",
        s(&maps),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.nii.gz"), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 of 2 scans could not be explained"));
    assert_eq!(lines(&stdout(&out)).len(), 1);
    assert!(!stderr(&out).contains("panicked"));
}
