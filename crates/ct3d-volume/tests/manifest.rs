//! CSV manifests: what a good manifest yields, and every bad one reported at once.

use std::fs;
use std::path::{Path, PathBuf};

use ct3d_volume::dataset::Dataset;
use ct3d_volume::manifest::ManifestError;

/// Creates empty files (their content is not read when listing) under `root`.
fn touch(root: &Path, names: &[&str]) {
    for name in names {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"scan").unwrap();
    }
}

fn write_manifest(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> Result<Dataset, ManifestError> {
    Dataset::from_manifest(path, "CT-0", "CT-23")
}

#[test]
fn relative_paths_resolve_against_the_manifest_folder() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    touch(&lists, &["scans/a.nii.gz", "scans/b, c.nii.gz"]);
    touch(dir.path(), &["elsewhere/d.nii"]);
    let absolute = dir.path().join("elsewhere/d.nii");
    let manifest = write_manifest(
        &lists,
        "data.csv",
        &format!(
            "Label,PATH,notes\nCT-23,scans/a.nii.gz,x\n0,\"scans/b, c.nii.gz\",\"a, b\"\n1,{},\n",
            absolute.display()
        ),
    );
    let dataset = read(&manifest).unwrap();
    assert_eq!(dataset.root(), lists);
    assert_eq!(dataset.manifest(), Some(manifest.as_path()));
    assert_eq!(dataset.class_names(), ["CT-0", "CT-23"]);
    assert_eq!(dataset.class_counts(), [1, 2]);
    let items: Vec<(PathBuf, u8)> = dataset
        .items()
        .iter()
        .map(|i| (i.path.clone(), i.label))
        .collect();
    // Label 0 first, each class in row order.
    assert_eq!(
        items,
        vec![
            (lists.join("scans/b, c.nii.gz"), 0),
            (lists.join("scans/a.nii.gz"), 1),
            (absolute, 1),
        ]
    );
    assert!(dataset.items().iter().all(|i| i.patient.is_none()));
}

#[test]
fn class_names_and_patients() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), &["a.nii", "b.nii", "c.nii"]);
    let manifest = write_manifest(
        dir.path(),
        "m.csv",
        "path,label,patient\na.nii,healthy,P1\nb.nii,covid, P1 \nc.nii,0,\n",
    );
    let dataset = Dataset::from_manifest(&manifest, "healthy", "covid").unwrap();
    let got: Vec<(&str, u8, Option<&str>)> = dataset
        .items()
        .iter()
        .map(|i| {
            (
                i.path.file_name().unwrap().to_str().unwrap(),
                i.label,
                i.patient.as_deref(),
            )
        })
        .collect();
    // A patient with both labels is allowed; an empty patient cell is no patient.
    assert_eq!(
        got,
        vec![
            ("a.nii", 0, Some("P1")),
            ("c.nii", 0, None),
            ("b.nii", 1, Some("P1"))
        ]
    );
    // The default names are not labels of this dataset.
    let err = read(&manifest).unwrap_err().to_string();
    assert!(err.contains("2 rows have a label"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), &["ok0.nii", "ok1.nii", "dup.nii"]);
    let manifest = write_manifest(
        dir.path(),
        "bad.csv",
        "path,label\n\
         ok0.nii,0\n\
         ok1.nii,1\n\
         a.nii.gz,0\n\
         dup.nii,1\n\
         ./dup.nii,0\n\
         too,many,fields\n\
         b.nii.gz,1\n\
         ok0.nii,2\n\
         c.nii.gz,sick\n\
         lonely\n",
    );
    let err = read(&manifest).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&manifest.display().to_string()), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    for needle in [
        "3 rows point to missing files: row 4 a.nii.gz, row 8 b.nii.gz, row 10 c.nii.gz",
        "2 rows have the wrong number of fields: row 7 has 3 (the header has 2), row 11 has 1",
        "2 rows have a label that is neither \"CT-0\" / 0 nor \"CT-23\" / 1: row 9 \"2\", row 10 \"sick\"",
        "2 rows repeat a path: row 6 ./dup.nii (as row 5), row 9 ok0.nii (as row 2)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    match err {
        ManifestError::Rows { problems, .. } => assert_eq!(problems.len(), 4, "{problems:?}"),
        other => panic!("expected Rows, got {other:?}"),
    }
}

#[test]
fn one_missing_file_reads_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), &["a.nii", "b.nii"]);
    let manifest = write_manifest(
        dir.path(),
        "m.csv",
        "path,label\na.nii,0\nb.nii,1\nx.nii,1\n",
    );
    let text = read(&manifest).unwrap_err().to_string();
    assert!(
        text.ends_with("1 row points to missing files: row 4 x.nii"),
        "{text}"
    );
}

#[test]
fn empty_and_headerless_manifests() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), &["a.nii"]);
    let cases = [
        ("empty.csv", "", "empty manifest (no header row)"),
        (
            "header.csv",
            "path,label\n\n",
            "empty manifest (a header row but no scans)",
        ),
        ("nohdr.csv", "a.nii,0\n", "has no path or label column"),
        (
            "nolabel.csv",
            "path,class\na.nii,0\n",
            "has no label column",
        ),
        (
            "twice.csv",
            "path,label,path\na.nii,0,a.nii\n",
            "2 columns named \"path\"",
        ),
        (
            "oneclass.csv",
            "path,label\na.nii,0\n",
            "no scan is labelled \"CT-23\" (or 1)",
        ),
        (
            "quote.csv",
            "path,label\n\"a.nii,0\n",
            "not a valid CSV file: line 2",
        ),
    ];
    for (name, text, needle) in cases {
        let manifest = write_manifest(dir.path(), name, text);
        // The full chain: a CSV error's position is its cause.
        let err = ct3d_volume::chain(&read(&manifest).unwrap_err());
        assert!(err.contains(needle), "{name}: {needle:?} not in {err}");
        assert!(err.contains(name), "{name}: the file is named: {err}");
    }
    let err = read(&dir.path().join("absent.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.csv"), "{err}");
    let manifest = write_manifest(dir.path(), "same.csv", "path,label\na.nii,0\n");
    let err = Dataset::from_manifest(&manifest, "x", "x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("both \"x\""), "{err}");
}
