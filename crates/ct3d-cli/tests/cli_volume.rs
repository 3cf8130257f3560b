//! End-to-end tests of the volume commands through the real `ct3d` binary: the happy paths, and
//! every kind of bad input the product contract names (one-line error naming the file, non-zero
//! exit, no panic, no partial output).

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{assert_clean_failure, assert_success, ct3d, stderr, stdout};

/// Writes a small synthetic dataset with the CLI itself and returns its folder.
fn synth_dataset(dir: &Path, normal: usize, abnormal: usize) -> PathBuf {
    let data = dir.join("data");
    let out = ct3d(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--normal",
        &normal.to_string(),
        "--abnormal",
        &abnormal.to_string(),
        "--seed",
        "7",
        "--size-xy",
        "64",
    ]);
    assert!(out.status.success(), "synth failed: {}", stderr(&out));
    data
}

fn first_scan(data: &Path, class: &str) -> PathBuf {
    let mut scans: Vec<PathBuf> = fs::read_dir(data.join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scans.sort();
    scans.remove(0)
}

#[test]
fn synth_info_preprocess_rotate_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_dataset(dir.path(), 2, 2);
    let scan = first_scan(&data, "CT-23");

    let out = ct3d(&["info", scan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("int16"), "{text}");
    assert!(text.contains("64 × 64 ×"), "{text}");

    let pre = dir.path().join("pre.nii.gz");
    let out = ct3d(&[
        "preprocess",
        scan.to_str().unwrap(),
        "-o",
        pre.to_str().unwrap(),
        "--size",
        "32,32,16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ct3d(&["info", pre.to_str().unwrap()]);
    assert!(stdout(&out).contains("32 × 32 × 16"), "{}", stdout(&out));
    assert!(stdout(&out).contains("float32"), "{}", stdout(&out));

    let rotated = dir.path().join("rot.nii");
    let out = ct3d(&[
        "rotate",
        pre.to_str().unwrap(),
        "-o",
        rotated.to_str().unwrap(),
        "--angle",
        "-10",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rotated.exists());

    let cache = dir.path().join("cache");
    let args = [
        "prepare",
        "--data",
        data.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--size",
        "32,32,16",
    ];
    let first = ct3d(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("4 scans"), "{}", stdout(&first));
    let second = ct3d(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("4 from cache"),
        "{}",
        stdout(&second)
    );
}

#[test]
fn missing_file_and_directory_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.nii.gz");
    assert_clean_failure(
        &ct3d(&["info", missing.to_str().unwrap()]),
        &["nope.nii.gz"],
    );
    let out = dir.path().join("out.nii.gz");
    assert_clean_failure(
        &ct3d(&[
            "preprocess",
            dir.path().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]),
        &[dir.path().to_str().unwrap()],
    );
    assert!(!out.exists(), "no output may be left behind");
}

#[test]
fn garbage_files_are_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random.nii",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("picture.nii", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".repeat(40)),
        ("short.nii", vec![0x5c, 0x01, 0, 0, 1, 2, 3]),
        (
            "broken.nii.gz",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5],
        ),
        ("empty.nii", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let out_path = dir.path().join(format!("{name}.out.nii.gz"));
        let out = ct3d(&[
            "preprocess",
            path.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
        ]);
        assert_clean_failure(&out, &[name]);
        assert!(!out_path.exists(), "{name}: output left behind");
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = ct3d(&["preprocess", "a.nii", "-o", "b.nii", "--size", "128,128"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("W,H,D"), "{}", stderr(&out));
    let out = ct3d(&[
        "preprocess",
        "a.nii",
        "-o",
        "b.nii",
        "--hu-window",
        "400,-1000",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn prepare_refuses_one_class_and_empty_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_dataset(dir.path(), 1, 0);
    let cache = dir.path().join("cache");
    let out = ct3d(&[
        "prepare",
        "--data",
        data.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["CT-23"]);

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = ct3d(&[
        "prepare",
        "--data",
        empty.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["empty"]);
}

#[test]
fn prepare_names_a_bad_scan_and_skip_bad_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_dataset(dir.path(), 2, 2);
    fs::write(
        data.join("CT-0").join("zz_broken.nii.gz"),
        b"not a scan at all",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let base = [
        "prepare",
        "--data",
        data.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--size",
        "16,16,8",
    ];
    assert_clean_failure(&ct3d(&base), &["zz_broken.nii.gz", "pass --skip-bad"]);
    let mut with_skip = base.to_vec();
    with_skip.push("--skip-bad");
    let out = ct3d(&with_skip);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("zz_broken.nii.gz"),
        "skipped file must be listed: {}",
        stdout(&out)
    );
    // The class counts are of the prepared scans; the skipped one is only "failed".
    assert!(
        stdout(&out).contains("prepared 4 scans (2 CT-0, 2 CT-23) into ")
            && stdout(&out).contains(", 1 failed"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn prepare_errors_name_the_flag_that_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_dataset(dir.path(), 1, 1);
    let cache = dir.path().join("cache");
    let prepare = |data: &Path, cache: &Path| {
        ct3d(&[
            "prepare",
            "--data",
            data.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--size",
            "16,16,8",
        ])
    };

    // Class folders with other names: the flags that name them.
    fs::rename(data.join("CT-0"), data.join("normal")).unwrap();
    fs::rename(data.join("CT-23"), data.join("abnormal")).unwrap();
    assert_clean_failure(
        &prepare(&data, &cache),
        &[
            "folders present: abnormal, normal",
            "pass --negative normal --positive abnormal",
        ],
    );
    // One already right: only the other flag.
    fs::rename(data.join("normal"), data.join("CT-0")).unwrap();
    assert_clean_failure(&prepare(&data, &cache), &["pass --positive abnormal"]);
    fs::rename(data.join("abnormal"), data.join("CT-23")).unwrap();

    // A cache folder that cannot be created names --cache. A path under a regular file fails
    // for root too (a read-only dataset, the usual cause, does not stop root).
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let under_file = file.join("cache");
    assert_clean_failure(
        &prepare(&data, &under_file),
        &[
            under_file.to_str().unwrap(),
            "cannot create or write the preprocessing cache",
            "pass --cache DIR",
        ],
    );
    assert_success(&prepare(&data, &cache));
}

/// `prepare` refuses work that cannot fit before writing anything, `cache info` shows the
/// entries by preprocessing size and window, and `cache clean` frees them.
#[test]
fn oversized_prepare_is_refused_and_cache_info_and_clean_manage_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_dataset(dir.path(), 2, 2);
    let cache = dir.path().join("cache");
    let (data_s, cache_s) = (data.to_str().unwrap(), cache.to_str().unwrap());
    let prepare = |size: &str| {
        ct3d(&[
            "prepare", "--data", data_s, "--cache", cache_s, "--size", size,
        ])
    };

    // 4 × 4 TB of cache, and 4 TB of memory per worker to preprocess: more than any machine has.
    let out = prepare("10000,10000,10000");
    assert_clean_failure(
        &out,
        &[
            "--size 10000,10000,10000",
            "the cache needs ~16.0 TB for 4 scans",
            "--yes",
        ],
    );
    assert!(!cache.exists(), "nothing may be written before the refusal");

    for size in ["8,8,8", "10,10,10"] {
        let out = prepare(size);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = ct3d(&["cache", "info", cache_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{cache_s}: 8 entries, ")),
        "{text}"
    );
    assert!(
        lines[1].starts_with("  size 8,8,8, window -1000,400: 4 entries, ")
            && lines[2].starts_with("  size 10,10,10, window -1000,400: 4 entries, "),
        "{text}"
    );

    let out = ct3d(&["cache", "clean", cache_s, "--keep-size", "8,8,8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("removed 4 entries (") && stdout(&out).contains("kept 4 entries"),
        "{}",
        stdout(&out)
    );
    let text = stdout(&ct3d(&["cache", "info", cache_s]));
    assert!(
        text.contains(": 4 entries, ") && !text.contains("10,10,10"),
        "{text}"
    );
    // The data folder is not a cache: refused, untouched.
    assert_clean_failure(
        &ct3d(&["cache", "clean", data_s]),
        &[data_s, "not a ct3d preprocessing cache"],
    );
}

/// Every file under `dir` (relative path → bytes), sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_owned(), bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn synth_hard_writes_lesion_masks_beside_a_loadable_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let synth = |name: &str, extra: &[&str]| {
        let data = dir.path().join(name);
        let mut args = vec![
            "synth",
            "--out",
            data.to_str().unwrap(),
            "--normal",
            "2",
            "--abnormal",
            "2",
            "--seed",
            "3",
            "--size-xy",
            "64",
        ];
        args.extend_from_slice(extra);
        let out = ct3d(&args);
        assert_success(&out);
        (data, stdout(&out))
    };
    let (hard, text) = synth("hard", &["--difficulty", "hard", "--lesion-masks"]);
    assert!(
        text.contains("4 phantom scans (2 CT-0, 2 CT-23, hard, seed 3)"),
        "{text}"
    );
    assert!(text.contains("2 lesion masks"), "{text}");

    // One mask per abnormal scan, named after it, uint8 in the scan's grid.
    let masks = hard.join("masks");
    let mut names: Vec<String> = fs::read_dir(&masks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["phantom_0000.nii.gz", "phantom_0001.nii.gz"]);
    for name in &names {
        let info = |path: PathBuf| {
            let out = ct3d(&["info", path.to_str().unwrap()]);
            assert_success(&out);
            stdout(&out)
        };
        let (scan, mask) = (info(hard.join("CT-23").join(name)), info(masks.join(name)));
        assert!(mask.contains("uint8"), "{mask}");
        assert!(mask.contains("values       min 0.0, max 1.0"), "{mask}");
        let geometry = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| {
                    ["shape", "spacing", "orientation"]
                        .iter()
                        .any(|k| l.trim_start().starts_with(k))
                })
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(geometry(&scan), geometry(&mask));
        assert_eq!(geometry(&scan).len(), 3, "{scan}");
    }

    // The masks are not scans of the dataset.
    let cache = dir.path().join("cache");
    let out = ct3d(&[
        "prepare",
        "--data",
        hard.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--size",
        "16,16,8",
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("prepared 4 scans (2 CT-0, 2 CT-23)"),
        "{}",
        stdout(&out)
    );

    // Deterministic, and the masks change nothing in the scans.
    let (again, _) = synth("again", &["--lesion-masks", "--difficulty", "hard"]);
    assert_eq!(tree(&hard), tree(&again));
    let (plain, _) = synth("plain", &["--difficulty", "hard"]);
    assert!(!plain.join("masks").exists());
    let scans_only: Vec<_> = tree(&hard)
        .into_iter()
        .filter(|(path, _)| !path.starts_with("masks"))
        .collect();
    assert_eq!(scans_only, tree(&plain));

    // Easy is the default, and hard scans differ from it.
    let (easy, text) = synth("easy", &["--difficulty", "easy"]);
    assert!(text.contains("(2 CT-0, 2 CT-23, seed 3)"), "{text}");
    let (default, _) = synth("default", &[]);
    assert_eq!(tree(&easy), tree(&default));
    assert_ne!(tree(&easy), tree(&plain));
}

#[test]
fn synth_help_explains_the_difficulties() {
    let out = ct3d(&["synth", "--help"]);
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "--difficulty",
        "hard",
        "5–25 %",
        "8–10 mm",
        "σ 20–45 HU",
        "--lesion-masks",
        "OUT/masks/",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let out = ct3d(&["synth", "--out", "x", "--difficulty", "extreme"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("easy") && stderr(&out).contains("hard"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn info_json_reports_every_peer_format_as_its_reference_reader_does() {
    // Every case of the format peer corpus (pynrrd, SimpleITK and hand-written NRRD and
    // MetaImage files): `ct3d info --json` prints the reference's shape, spacing and affine.
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ct3d-volume/tests/data/golden/formats");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let files: Vec<String> = cases
        .iter()
        .map(|c| dir.join(c["file"].as_str().unwrap()).display().to_string())
        .collect();
    let mut args = vec!["info", "--json"];
    args.extend(files.iter().map(String::as_str));
    let out = ct3d(&args);
    assert_success(&out);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (case, line) in cases.iter().zip(&lines) {
        let name = case["name"].as_str().unwrap();
        assert_eq!(line["shape"], case["shape"], "{name}");
        let close = |a: &serde_json::Value, b: &serde_json::Value| {
            let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-6,
                        _ => {
                            x.is_array() && y.is_array() && {
                                let (x, y) = (x.as_array().unwrap(), y.as_array().unwrap());
                                x.len() == y.len()
                                    && x.iter().zip(y).all(|(p, q)| {
                                        (p.as_f64().unwrap() - q.as_f64().unwrap()).abs() <= 1e-6
                                    })
                            }
                        }
                    })
        };
        assert!(
            close(&line["spacing_mm"], &case["spacing"]),
            "{name}: {line}"
        );
        assert!(close(&line["affine"], &case["affine"]), "{name}: {line}");
    }
}
