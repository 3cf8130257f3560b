//! Class-folder datasets and the `prepare` cache, with an injected fake preprocessing function.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ct3d_volume::Volume;
use ct3d_volume::cache::{
    CacheEntry, CacheError, EntryError, INDEX_FILE_NAME, PrepareObserver, PrepareOptions,
    PreparedDataset, prepare,
};
use ct3d_volume::dataset::{
    DEFAULT_NEGATIVE_CLASS, DEFAULT_POSITIVE_CLASS, Dataset, DatasetError, is_scan_file_name,
};
use ct3d_volume::preprocess::{PreprocessConfig, PreprocessParams};

// ---------------------------------------------------------------------------------------------
// Helpers

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Sets a file's modification time `seconds_ago` into the past (old enough to be indexed).
fn age(path: &Path, seconds_ago: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
        .unwrap();
}

/// `root/CT-0/{a,b}.nii.gz` and `root/CT-23/{c,d}.nii` with distinct contents, all aged.
fn small_dataset(root: &Path) -> Dataset {
    for (class, name, body) in [
        ("CT-0", "a.nii.gz", "scan a"),
        ("CT-0", "b.nii.gz", "scan b"),
        ("CT-23", "c.nii", "scan c"),
        ("CT-23", "d.nii", "scan d"),
    ] {
        let path = root.join(class).join(name);
        write(&path, body.as_bytes());
        age(&path, 3600);
    }
    Dataset::from_class_folders(root, DEFAULT_NEGATIVE_CLASS, DEFAULT_POSITIVE_CLASS).unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot decode scan")]
struct FakeError {
    path: String,
}

/// A fake pipeline: counts calls and derives a small volume from the file's bytes and the config.
struct FakeProcess {
    calls: AtomicUsize,
    seen: Mutex<Vec<PathBuf>>,
    config: PreprocessConfig,
}

impl FakeProcess {
    fn new(config: &PreprocessConfig) -> Self {
        Self {
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            config: config.clone(),
        }
    }

    fn run(&self, path: &Path) -> Result<Volume, FakeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(path.to_owned());
        let bytes = fs::read(path).map_err(|_| FakeError {
            path: path.display().to_string(),
        })?;
        if bytes.starts_with(b"bad") {
            return Err(FakeError {
                path: path.display().to_string(),
            });
        }
        Ok(expected_volume(&bytes, &self.config))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn expected_volume(bytes: &[u8], config: &PreprocessConfig) -> Volume {
    let mut v = Volume::from_fn([4, 3, 2], |x, y, z| {
        f32::from(bytes[(x + 4 * y + 12 * z) % bytes.len()]) + config.hu_min
    });
    v.spacing = [1.5, 2.0, 3.0];
    v.affine[0][3] = -7.25;
    v
}

fn options(config: &PreprocessConfig) -> PrepareOptions {
    PrepareOptions {
        config: config.clone(),
        ..PrepareOptions::default()
    }
}

fn run(
    dataset: &Dataset,
    cache: &Path,
    opts: &PrepareOptions,
    fake: &FakeProcess,
) -> PreparedDataset {
    prepare(dataset, cache, opts, |p| fake.run(p), &()).unwrap()
}

/// Records every [`PrepareObserver`] call as a line of text (`started 3`, `processed PATH`, …).
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl PrepareObserver for Recorder {
    fn started(&self, items: usize) {
        self.0.lock().unwrap().push(format!("started {items}"));
    }
    fn hit(&self, source: &Path) {
        self.0
            .lock()
            .unwrap()
            .push(format!("hit {}", source.display()));
    }
    fn processed(&self, source: &Path) {
        let line = format!("processed {}", source.display());
        self.0.lock().unwrap().push(line);
    }
    fn failed(&self, source: &Path, error: &CacheError) {
        let error = ct3d_volume::chain(error);
        assert!(error.contains(&source.display().to_string()), "{error}");
        let line = format!("failed {}: {error}", source.display());
        self.0.lock().unwrap().push(line);
    }
}

fn one_line(message: &str) {
    assert!(!message.contains('\n'), "multi-line error: {message}");
}

// ---------------------------------------------------------------------------------------------
// Dataset

#[test]
fn dataset_lists_scans_sorted_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in [
        "b.nii.gz",
        "a.nii",
        "C.NII.GZ",
        "pair.hdr",
        "pair.img",
        "notes.txt",
        ".hidden.nii",
        "x.nii.gz.bak",
    ] {
        write(&root.join("CT-0").join(name), b"x");
    }
    fs::create_dir_all(root.join("CT-0").join("folder.nii")).unwrap();
    write(&root.join("CT-23").join("z.nii.gz"), b"x");
    write(
        &root.join("CT-23").join(".phantom_0000.nii.gz.tmp-1-0"),
        b"x",
    );
    fs::create_dir_all(root.join("CT-1")).unwrap();

    let dataset = Dataset::from_class_folders(root, "CT-0", "CT-23").unwrap();
    let listed: Vec<(String, u8)> = dataset
        .items()
        .iter()
        .map(|item| {
            let rel = item.path.strip_prefix(root).unwrap();
            (rel.display().to_string(), item.label)
        })
        .collect();
    let expected = [
        ("CT-0/C.NII.GZ", 0),
        ("CT-0/a.nii", 0),
        ("CT-0/b.nii.gz", 0),
        ("CT-0/pair.hdr", 0),
        ("CT-23/z.nii.gz", 1),
    ];
    let expected: Vec<(String, u8)> = expected.iter().map(|(p, l)| (p.to_string(), *l)).collect();
    assert_eq!(listed, expected);
    assert_eq!(dataset.class_names(), ["CT-0", "CT-23"]);
    assert_eq!(dataset.class_counts(), [4, 1]);
    assert_eq!(dataset.len(), 5);
    assert!(!dataset.is_empty());
    assert_eq!(dataset.root(), root);
}

#[test]
fn dataset_accepts_custom_class_names() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("healthy/1.nii"), b"x");
    write(&dir.path().join("covid/2.nii"), b"x");
    let dataset = Dataset::from_class_folders(dir.path(), "healthy", "covid").unwrap();
    assert_eq!(dataset.class_names(), ["healthy", "covid"]);
    assert_eq!(dataset.items()[1].label, 1);
    assert!(dataset.items()[1].path.ends_with("covid/2.nii"));
}

#[test]
fn scan_file_names() {
    for name in [
        "a.nii",
        "a.nii.gz",
        "a.hdr",
        "A.Nii.Gz",
        "study_0001.nii.gz",
    ] {
        assert!(is_scan_file_name(name), "{name}");
    }
    for name in [
        "a.img",
        "a.gz",
        "a.nii.bak",
        ".a.nii",
        "nii",
        "a.txt",
        ".nii",
    ] {
        assert!(!is_scan_file_name(name), "{name}");
    }
}

fn dataset_error(root: &Path) -> (DatasetError, String) {
    let err = Dataset::from_class_folders(root, "CT-0", "CT-23").unwrap_err();
    let message = err.to_string();
    one_line(&message);
    (err, message)
}

#[test]
fn dataset_errors_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let missing = root.join("nope");
    let (err, message) = dataset_error(&missing);
    assert!(matches!(err, DatasetError::Missing { .. }));
    assert!(message.contains(&missing.display().to_string()) && message.contains("not found"));

    let file = root.join("file.txt");
    write(&file, b"x");
    let (err, message) = dataset_error(&file);
    assert!(matches!(err, DatasetError::NotADirectory { .. }));
    assert!(message.contains("file.txt"));

    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    write(&empty.join("stray.nii"), b"x");
    let (err, message) = dataset_error(&empty);
    assert!(matches!(err, DatasetError::NoClasses { .. }), "{message}");
    assert!(message.contains("CT-0") && message.contains("CT-23"));

    let one_class = root.join("one");
    write(&one_class.join("CT-0/a.nii"), b"x");
    fs::create_dir_all(one_class.join("CT-1")).unwrap();
    let (err, message) = dataset_error(&one_class);
    assert!(matches!(err, DatasetError::MissingClass { .. }));
    assert!(
        message.contains("CT-23/ not found") && message.contains("CT-0, CT-1"),
        "{message}"
    );

    let no_scans = root.join("noscans");
    write(&no_scans.join("CT-0/a.nii"), b"x");
    write(&no_scans.join("CT-23/a.img"), b"x");
    write(&no_scans.join("CT-23/readme.txt"), b"x");
    let (err, message) = dataset_error(&no_scans);
    assert!(matches!(err, DatasetError::EmptyClass { .. }));
    assert!(
        message.contains(&no_scans.join("CT-23").display().to_string()),
        "{message}"
    );

    let class_is_file = root.join("classfile");
    write(&class_is_file.join("CT-0/a.nii"), b"x");
    write(&class_is_file.join("CT-23"), b"x");
    let (err, _) = dataset_error(&class_is_file);
    assert!(matches!(err, DatasetError::NotADirectory { .. }));

    let err = Dataset::from_class_folders(&one_class, "CT-0", "CT-0").unwrap_err();
    assert!(matches!(err, DatasetError::SameClass { .. }));
}

// ---------------------------------------------------------------------------------------------
// Cache

#[test]
fn first_run_processes_all_and_second_run_none() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let opts = options(&config);

    let fake = FakeProcess::new(&config);
    let first = run(&dataset, &cache, &opts, &fake);
    assert_eq!(fake.calls(), 4);
    assert_eq!(first.stats.computed, 4);
    assert_eq!(first.stats.hashed, 4);
    assert_eq!(first.stats.hits, 0);
    assert!(first.items.iter().all(|item| !item.cache_hit));
    assert!(first.failures.is_empty());
    assert_eq!(first.class_names, ["CT-0".to_owned(), "CT-23".to_owned()]);
    for (item, source) in first.items.iter().zip(dataset.items()) {
        assert_eq!(item.source, source.path);
        assert_eq!(item.label, source.label);
        assert_eq!(item.entry.shape(), [4, 3, 2]);
        assert!(item.entry.path().starts_with(&cache));
        let loaded = item.load().unwrap();
        let expected = expected_volume(&fs::read(&item.source).unwrap(), &config);
        assert_eq!(loaded.data(), expected.data());
        assert_eq!(loaded.spacing, expected.spacing);
        assert_eq!(loaded.affine, expected.affine);
        assert_eq!(loaded.provenance.path.as_deref(), Some(item.entry.path()));
        let digest = ct3d_volume::cache::hash_file(&item.source).unwrap();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(item.sha256, hex);
    }
    assert!(cache.join(INDEX_FILE_NAME).is_file());
    assert!(cache.join("CACHEDIR.TAG").is_file());

    let fake = FakeProcess::new(&config);
    let second = run(&dataset, &cache, &opts, &fake);
    assert_eq!(fake.calls(), 0);
    assert_eq!(second.stats.hits, 4);
    assert_eq!(
        second.stats.hashed, 0,
        "unchanged files are known from the index"
    );
    for (a, b) in first.items.iter().zip(&second.items) {
        assert!(b.cache_hit);
        assert_eq!(
            a.sha256, b.sha256,
            "hashes known from the index are the same"
        );
        assert_eq!(
            (&a.source, a.label, &a.entry),
            (&b.source, b.label, &b.entry)
        );
    }
}

#[test]
fn changed_file_is_rehashed_and_reprocessed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let dataset = small_dataset(&root);
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let opts = options(&config);
    run(&dataset, &cache, &opts, &FakeProcess::new(&config));

    // Same size, different bytes, a different (still old) timestamp.
    let changed = root.join("CT-23/c.nii");
    fs::write(&changed, b"scan C").unwrap();
    age(&changed, 7200);
    let fake = FakeProcess::new(&config);
    let again = run(&dataset, &cache, &opts, &fake);
    assert_eq!(fake.calls(), 1);
    assert_eq!(*fake.seen.lock().unwrap(), vec![changed.clone()]);
    assert_eq!(again.stats.hashed, 1);
    let misses: Vec<&Path> = again
        .items
        .iter()
        .filter(|item| !item.cache_hit)
        .map(|item| item.source.as_path())
        .collect();
    assert_eq!(misses, vec![changed.as_path()]);
    let item = again
        .items
        .iter()
        .find(|item| item.source == changed)
        .unwrap();
    assert_eq!(
        item.load().unwrap().data(),
        expected_volume(b"scan C", &config).data()
    );
}

#[test]
fn recently_modified_files_are_hashed_every_run_but_still_hit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write(&root.join("CT-0/a.nii"), b"fresh a");
    write(&root.join("CT-23/b.nii"), b"fresh b");
    let dataset = Dataset::from_class_folders(&root, "CT-0", "CT-23").unwrap();
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );
    let fake = FakeProcess::new(&config);
    let again = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(again.stats.hashed, 2, "timestamps too recent to trust");
    assert_eq!(fake.calls(), 0);
}

#[test]
fn renamed_or_copied_scan_reuses_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let dataset = small_dataset(&root);
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );

    fs::copy(root.join("CT-0/a.nii.gz"), root.join("CT-0/a_copy.nii.gz")).unwrap();
    let bigger = Dataset::from_class_folders(&root, "CT-0", "CT-23").unwrap();
    let fake = FakeProcess::new(&config);
    let again = run(&bigger, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 0);
    assert_eq!(again.items.len(), 5);
    assert_eq!(again.items[0].entry, again.items[1].entry);
}

#[test]
fn identical_files_are_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write(&root.join("CT-0/a.nii"), b"same");
    write(&root.join("CT-0/b.nii"), b"same");
    write(&root.join("CT-23/c.nii"), b"other");
    let dataset = Dataset::from_class_folders(&root, "CT-0", "CT-23").unwrap();
    let config = PreprocessConfig::default();
    let fake = FakeProcess::new(&config);
    let events = Recorder::default();
    let prepared = prepare(
        &dataset,
        &dir.path().join("cache"),
        &options(&config),
        |p| fake.run(p),
        &events,
    )
    .unwrap();
    assert_eq!(fake.calls(), 2);
    assert_eq!(prepared.stats.computed, 2);
    assert_eq!(prepared.items.len(), 3);
    assert_eq!(prepared.items[0].entry, prepared.items[1].entry);
    let events = events.0.into_inner().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0], "started 3");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("processed "))
            .count(),
        3
    );
}

#[test]
fn changed_parameter_reprocesses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let first = run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );

    let changed = PreprocessParams {
        hu_max: 500.0,
        ..config.params()
    }
    .check()
    .unwrap();
    let fake = FakeProcess::new(&changed);
    let second = run(&dataset, &cache, &options(&changed), &fake);
    assert_eq!(fake.calls(), 4);
    assert!(second.items.iter().all(|item| !item.cache_hit));
    for (a, b) in first.items.iter().zip(&second.items) {
        assert_ne!(a.entry.path(), b.entry.path());
    }

    // Both parameter sets stay cached side by side.
    let fake = FakeProcess::new(&config);
    run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 0);
}

#[test]
fn truncated_entry_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let first = run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );

    let victim = first.items[2].entry.path().to_owned();
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() - 5]).unwrap();
    let err = CacheEntry::open(&victim).unwrap_err();
    assert!(matches!(err, EntryError::Length { .. }));
    let message = err.to_string();
    one_line(&message);
    assert!(message.contains(&victim.display().to_string()) && message.contains("truncated"));
    assert!(matches!(
        first.items[2].load(),
        Err(EntryError::Length { .. })
    ));

    let fake = FakeProcess::new(&config);
    let second = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 1);
    assert!(!second.items[2].cache_hit);
    assert_eq!(fs::read(&victim).unwrap(), bytes);
    second.items[2].load().unwrap();
}

/// Flips one bit of an entry's voxel data, keeping its length.
fn flip_bit(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    bytes[CacheEntry::DATA_OFFSET as usize + 9] ^= 0x10;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn corrupt_entry_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let first = run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );

    let entry = &first.items[0].entry;
    flip_bit(entry.path());
    // Same length: opening succeeds, reading the data does not.
    CacheEntry::open(entry.path()).unwrap();
    let err = entry.load().unwrap_err();
    assert!(matches!(err, EntryError::Checksum { .. }), "{err}");
    one_line(&err.to_string());
    assert!(
        err.to_string()
            .contains(&entry.path().display().to_string())
    );
    let mut buffer = vec![0.0; entry.voxel_count()];
    assert!(matches!(
        entry.read_into(&mut buffer),
        Err(EntryError::Checksum { .. })
    ));
    assert!(matches!(entry.verify(), Err(EntryError::Checksum { .. })));

    let fake = FakeProcess::new(&config);
    let second = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 1);
    assert!(!second.items[0].cache_hit);
    assert_eq!(second.items[0].load().unwrap(), first_volume(&second));
}

fn first_volume(prepared: &PreparedDataset) -> Volume {
    let mut v = expected_volume(
        &fs::read(&prepared.items[0].source).unwrap(),
        &PreprocessConfig::default(),
    );
    v.provenance.path = Some(prepared.items[0].entry.path().to_owned());
    v.provenance.datatype = Some("float32".to_owned());
    v
}

#[test]
fn verified_entries_are_trusted_until_their_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    let first = run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );
    // Old enough to be recorded as verified by the next run.
    for item in &first.items {
        age(item.entry.path(), 3600);
    }
    let fake = FakeProcess::new(&config);
    run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 0);

    // Damage that keeps size and modification time goes unnoticed by a quick run (reading the
    // entry still refuses it) and is rebuilt by a verifying run.
    let path = first.items[0].entry.path();
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    flip_bit(path);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let fake = FakeProcess::new(&config);
    let quick = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 0);
    assert!(quick.items[0].cache_hit);
    assert!(matches!(
        quick.items[0].load(),
        Err(EntryError::Checksum { .. })
    ));

    let verifying = PrepareOptions {
        verify_entries: true,
        ..options(&config)
    };
    let fake = FakeProcess::new(&config);
    let rebuilt = run(&dataset, &cache, &verifying, &fake);
    assert_eq!(fake.calls(), 1);
    assert!(!rebuilt.items[0].cache_hit);
    assert_eq!(rebuilt.items[0].load().unwrap(), first_volume(&rebuilt));

    // Damage that changes the modification time is caught by a quick run.
    age(rebuilt.items[1].entry.path(), 3600);
    run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );
    flip_bit(rebuilt.items[1].entry.path());
    let fake = FakeProcess::new(&config);
    let again = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 1);
    assert!(!again.items[1].cache_hit);
    again.items[1].load().unwrap();
}

#[test]
fn entries_with_bad_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.vol");
    let volume = Volume::from_fn([3, 2, 2], |x, y, z| (x + y + z) as f32);
    let entry = CacheEntry::write(&path, &volume).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        CacheEntry::DATA_OFFSET + 12 * 4 + 16
    );
    let good = fs::read(&path).unwrap();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    fs::write(&path, &bad_magic).unwrap();
    assert!(matches!(
        CacheEntry::open(&path),
        Err(EntryError::Invalid { .. })
    ));

    let mut bad_version = good.clone();
    bad_version[8] = 99;
    fs::write(&path, &bad_version).unwrap();
    let err = CacheEntry::open(&path).unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");

    let mut huge_shape = good.clone();
    huge_shape[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, &huge_shape).unwrap();
    assert!(matches!(
        CacheEntry::open(&path),
        Err(EntryError::Invalid { .. })
    ));

    fs::write(&path, b"short").unwrap();
    assert!(matches!(
        CacheEntry::open(&path),
        Err(EntryError::Length { .. })
    ));

    fs::write(&path, &good).unwrap();
    let mut wrong = vec![0.0; 5];
    assert!(matches!(
        entry.read_into(&mut wrong),
        Err(EntryError::BufferSize { .. })
    ));
    let mut right = vec![0.0; 12];
    entry.read_into(&mut right).unwrap();
    assert_eq!(right, volume.data());
}

#[test]
fn corrupt_index_is_ignored_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessConfig::default();
    run(
        &dataset,
        &cache,
        &options(&config),
        &FakeProcess::new(&config),
    );
    fs::write(cache.join(INDEX_FILE_NAME), b"{ not json").unwrap();

    let fake = FakeProcess::new(&config);
    let again = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(fake.calls(), 0);
    assert_eq!(again.stats.hashed, 4);
    let third = run(&dataset, &cache, &options(&config), &fake);
    assert_eq!(third.stats.hashed, 0);
}

#[test]
fn parallel_runs_give_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for i in 0..12 {
        let class = if i % 3 == 0 { "CT-23" } else { "CT-0" };
        write(
            &root.join(class).join(format!("s{i:02}.nii")),
            format!("scan number {i}").as_bytes(),
        );
    }
    let dataset = Dataset::from_class_folders(&root, "CT-0", "CT-23").unwrap();
    let config = PreprocessConfig::default();
    let with_threads = |threads: usize, cache: &Path| {
        let fake = FakeProcess::new(&config);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&dataset, cache, &options(&config), &fake))
    };
    let serial = with_threads(1, &dir.path().join("cache1"));
    let parallel = with_threads(4, &dir.path().join("cache4"));
    assert_eq!(serial.items.len(), 12);
    assert_eq!(serial.stats, parallel.stats);
    for (a, b) in serial.items.iter().zip(&parallel.items) {
        assert_eq!(
            (&a.source, a.label, a.cache_hit),
            (&b.source, b.label, b.cache_hit)
        );
        assert_eq!(a.entry.path().file_name(), b.entry.path().file_name());
        assert_eq!(
            fs::read(a.entry.path()).unwrap(),
            fs::read(b.entry.path()).unwrap()
        );
    }
}

#[test]
fn failing_scan_fails_the_run_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let dataset = small_dataset(&root);
    fs::write(root.join("CT-0/b.nii.gz"), b"bad bytes").unwrap();
    let config = PreprocessConfig::default();
    let fake = FakeProcess::new(&config);
    let err = prepare(
        &dataset,
        &dir.path().join("cache"),
        &options(&config),
        |p| fake.run(p),
        &(),
    )
    .unwrap_err();
    assert!(matches!(err, CacheError::Process(_)));
    let message = err.to_string();
    one_line(&message);
    let bad = root.join("CT-0/b.nii.gz").display().to_string();
    // The path appears once, not repeated by the cache around the pipeline's own message.
    assert_eq!(message, format!("{bad}: cannot decode scan"));
    // The pipeline's message is the error's own, not also its cause: a chain printed at the
    // binary's edge shows it once.
    assert!(std::error::Error::source(&err).is_none());
}

/// Settings that cannot work never reach the cache: they cannot be checked into a
/// `PreprocessConfig` (so no scan is read and no folder created), neither from the parameters nor
/// from JSON such as a cache's recorded settings.
#[test]
fn invalid_settings_are_refused_before_any_scan_is_read() {
    let params = PreprocessParams {
        hu_min: 400.0,
        hu_max: -1000.0,
        ..PreprocessParams::default()
    };
    let err = params.clone().check().unwrap_err();
    one_line(&err.to_string());
    assert!(err.to_string().contains("400"), "{err}");
    let json = serde_json::to_string(&params).unwrap();
    let read = serde_json::from_str::<PreprocessConfig>(&json).unwrap_err();
    assert!(
        read.to_string().contains("invalid preprocessing settings"),
        "{read}"
    );
    let good = serde_json::to_string(&PreprocessConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<PreprocessConfig>(&good).unwrap(),
        PreprocessConfig::default()
    );
}

#[test]
fn skip_bad_reports_failures_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let dataset = small_dataset(&root);
    fs::write(root.join("CT-0/b.nii.gz"), b"bad bytes").unwrap();
    fs::remove_file(root.join("CT-23/d.nii")).unwrap();
    let config = PreprocessConfig::default();
    let opts = PrepareOptions {
        skip_bad: true,
        ..options(&config)
    };
    let fake = FakeProcess::new(&config);
    let events = Recorder::default();
    let prepared = prepare(
        &dataset,
        &dir.path().join("cache"),
        &opts,
        |p| fake.run(p),
        &events,
    )
    .unwrap();
    let events = events.0.into_inner().unwrap();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("failed ")).count(),
        2
    );
    let kept: Vec<&Path> = prepared.items.iter().map(|i| i.source.as_path()).collect();
    assert_eq!(
        kept,
        vec![
            root.join("CT-0/a.nii.gz").as_path(),
            root.join("CT-23/c.nii").as_path()
        ]
    );
    assert_eq!(prepared.stats.failed, 2);
    let failures: Vec<(&Path, u8)> = prepared
        .failures
        .iter()
        .map(|f| (f.source.as_path(), f.label))
        .collect();
    assert_eq!(
        failures,
        vec![
            (root.join("CT-0/b.nii.gz").as_path(), 0),
            (root.join("CT-23/d.nii").as_path(), 1)
        ]
    );
    for failure in &prepared.failures {
        one_line(&failure.error);
        assert!(
            failure
                .error
                .contains(&failure.source.display().to_string())
        );
    }

    // Without skip_bad the vanished file fails the run, naming it.
    let mut opts = opts;
    opts.skip_bad = false;
    fs::write(root.join("CT-0/b.nii.gz"), b"fixed").unwrap();
    let err = prepare(
        &dataset,
        &dir.path().join("cache"),
        &opts,
        |p| fake.run(p),
        &(),
    )
    .unwrap_err();
    assert!(matches!(err, CacheError::Io { .. }));
    assert!(err.to_string().contains("d.nii"), "{err}");
}

#[test]
fn empty_or_one_class_folders_cannot_be_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir_all(empty.join("CT-0")).unwrap();
    fs::create_dir_all(empty.join("CT-23")).unwrap();
    assert!(matches!(
        Dataset::from_class_folders(&empty, "CT-0", "CT-23"),
        Err(DatasetError::EmptyClass { .. })
    ));
    let one = dir.path().join("one");
    write(&one.join("CT-0/a.nii"), b"x");
    assert!(matches!(
        Dataset::from_class_folders(&one, "CT-0", "CT-23"),
        Err(DatasetError::MissingClass { .. })
    ));
}

#[test]
fn unwritable_cache_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let blocker = dir.path().join("cache");
    fs::write(&blocker, b"a file, not a folder").unwrap();
    let config = PreprocessConfig::default();
    let fake = FakeProcess::new(&config);
    let err = prepare(&dataset, &blocker, &options(&config), |p| fake.run(p), &()).unwrap_err();
    let message = err.to_string();
    one_line(&message);
    assert!(
        message.contains(&blocker.display().to_string()),
        "{message}"
    );
    assert_eq!(fake.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// Seeing and cleaning the cache; what a preparation would add

/// Prepares `dataset` into `cache` with a pipeline that gives `config.size` volumes.
fn prepare_sized(dataset: &Dataset, cache: &Path, config: &PreprocessConfig) -> PreparedDataset {
    let size = config.size;
    prepare(
        dataset,
        cache,
        &options(config),
        |_| Ok::<_, FakeError>(Volume::filled(size, 0.5)),
        &(),
    )
    .unwrap()
}

#[test]
fn cache_usage_groups_entries_and_clean_removes_only_entries() {
    use ct3d_volume::cache_admin::{CacheGroup, CleanOptions, cache_usage, clean_cache};
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let small = PreprocessParams {
        size: [4, 4, 4],
        ..PreprocessParams::default()
    }
    .check()
    .unwrap();
    let large = PreprocessParams {
        size: [6, 6, 6],
        hu_min: -900.0,
        hu_max: 300.0,
    }
    .check()
    .unwrap();
    prepare_sized(&dataset, &cache, &small);
    prepare_sized(&dataset, &cache, &large);
    let entry_bytes = |size| CacheEntry::file_len(size).unwrap();
    // Not the cache's: kept whatever happens. A damaged entry: reported, and cleaned.
    write(&cache.join("notes.txt"), b"mine");
    write(&cache.join(format!("{}.vol", "ab".repeat(32))), b"garbage");
    let usage = cache_usage(&cache).unwrap();
    assert_eq!(
        usage.groups,
        vec![
            CacheGroup {
                size: [4, 4, 4],
                window: Some([-1000.0, 400.0]),
                entries: 4,
                bytes: 4 * entry_bytes([4, 4, 4]),
            },
            CacheGroup {
                size: [6, 6, 6],
                window: Some([-900.0, 300.0]),
                entries: 4,
                bytes: 4 * entry_bytes([6, 6, 6]),
            },
        ]
    );
    assert_eq!(usage.damaged.len(), 1);
    assert_eq!(usage.entries(), 9);
    let index_bytes = fs::metadata(cache.join(INDEX_FILE_NAME)).unwrap().len();
    let tag_bytes = fs::metadata(cache.join("CACHEDIR.TAG")).unwrap().len();
    assert_eq!(
        usage.bytes(),
        4 * entry_bytes([4, 4, 4]) + 4 * entry_bytes([6, 6, 6]) + 7 + index_bytes + tag_bytes
    );

    // A cache written before windows were recorded: the size is still known.
    let index_path = cache.join(INDEX_FILE_NAME);
    let recorded = fs::read(&index_path).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&recorded).unwrap();
    index.as_object_mut().unwrap().remove("entry_configs");
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let old = cache_usage(&cache).unwrap();
    assert_eq!(old.groups.len(), 2);
    assert!(
        old.groups
            .iter()
            .all(|g| g.window.is_none() && g.entries == 4)
    );
    fs::write(&index_path, &recorded).unwrap();

    let keep_small = CleanOptions {
        keep_sizes: vec![[4, 4, 4]],
        dry_run: true,
    };
    let report = clean_cache(&cache, &keep_small).unwrap();
    assert_eq!((report.removed, report.kept), (5, 4));
    assert_eq!(report.freed, 4 * entry_bytes([6, 6, 6]) + 7);
    assert_eq!(
        cache_usage(&cache).unwrap(),
        usage,
        "a dry run changes nothing"
    );
    let done = clean_cache(
        &cache,
        &CleanOptions {
            dry_run: false,
            ..keep_small
        },
    )
    .unwrap();
    assert_eq!(done, report);
    let after = cache_usage(&cache).unwrap();
    assert_eq!(after.groups, usage.groups[..1]);
    assert!(after.damaged.is_empty());
    assert_eq!(fs::read(cache.join("notes.txt")).unwrap(), b"mine");
    assert!(cache.join("CACHEDIR.TAG").exists());
    // The removed entries are forgotten, the kept ones still serve.
    let index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    assert_eq!(index["entry_configs"].as_object().unwrap().len(), 4);
    let again = prepare_sized(&dataset, &cache, &small);
    assert_eq!(again.stats.hits, 4);
    assert_eq!(prepare_sized(&dataset, &cache, &large).stats.computed, 4);

    // Everything goes without --keep-size; a folder that is not a cache is not touched.
    let all = clean_cache(&cache, &CleanOptions::default()).unwrap();
    assert_eq!((all.removed, all.kept), (8, 0));
    assert_eq!(cache_usage(&cache).unwrap().entries(), 0);
    let data = dir.path().join("data");
    let err = clean_cache(&data, &CleanOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("not a ct3d preprocessing cache"),
        "{message}"
    );
    one_line(&message);
    assert_eq!(
        Dataset::from_class_folders(&data, DEFAULT_NEGATIVE_CLASS, DEFAULT_POSITIVE_CLASS)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn plan_prepare_counts_what_is_not_cached_yet() {
    use ct3d_volume::cache_admin::plan_prepare;
    let dir = tempfile::tempdir().unwrap();
    let dataset = small_dataset(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let config = PreprocessParams {
        size: [4, 4, 4],
        ..PreprocessParams::default()
    }
    .check()
    .unwrap();
    let plan = plan_prepare(&dataset, &cache, &config);
    assert_eq!((plan.items, plan.cached, plan.to_compute.len()), (4, 0, 4));
    assert_eq!(
        plan.bytes_to_add(config.size),
        4 * CacheEntry::file_len([4, 4, 4]).unwrap()
    );
    assert!(!cache.exists(), "planning writes nothing");
    prepare_sized(&dataset, &cache, &config);
    let plan = plan_prepare(&dataset, &cache, &config);
    assert_eq!((plan.cached, plan.to_compute.len()), (4, 0));
    assert_eq!(plan.bytes_to_add(config.size), 0);
    // Other parameters, a changed scan, a removed entry: to compute.
    let other = PreprocessParams {
        size: [5, 5, 5],
        ..config.params()
    }
    .check()
    .unwrap();
    assert_eq!(plan_prepare(&dataset, &cache, &other).to_compute.len(), 4);
    let changed = &dataset.items()[0].path;
    write(changed, b"scan a, changed");
    age(changed, 3600);
    let plan = plan_prepare(&dataset, &cache, &config);
    assert_eq!(plan.to_compute, vec![changed.clone()]);
}
