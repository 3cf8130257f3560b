//! End-to-end tests of fetching and unpacking against a local HTTP server (127.0.0.1 only): the
//! happy path, resuming, retries, digests, and archives that must be refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ct3d_fetch::{
    DownloadOptions, DownloadedFile, ExtractLimits, FetchError, FetchObserver, FetchOptions,
    RetryPolicy, extract_class_archive, fetch_mosmed, sha256_hex,
};

use ct3d_test_server::{Fault, Server, closed_port, fake_scan, zip_of, zip_with_symlink};

/// Options for `out` against `server`, with short waits between attempts.
fn options(out: &Path, base_url: String) -> FetchOptions {
    FetchOptions {
        base_url,
        download: DownloadOptions {
            retry: RetryPolicy {
                retries: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
            },
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            ..DownloadOptions::default()
        },
        ..FetchOptions::new(out)
    }
}

/// Runs `fetch_mosmed`, returning its result and the events as Debug text.
fn fetch(
    options: &FetchOptions,
) -> (
    Result<Vec<ct3d_fetch::ClassOutcome>, FetchError>,
    Vec<String>,
) {
    let recorder = Recorder::default();
    let result = fetch_mosmed(options, &recorder);
    (result, recorder.0.into_inner().unwrap())
}

/// Records every [`FetchObserver`] call as a line of text: the step's name and its values
/// (`Bytes { url: "…", received: 10, total: Some(20) }`).
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

impl FetchObserver for Recorder {
    fn skipped(&self, folder: &Path) {
        self.push(format!("Skipped {{ folder: {folder:?} }}"));
    }
    fn attempt(&self, url: &str, attempt: u32) {
        self.push(format!("Attempt {{ url: {url:?}, attempt: {attempt} }}"));
    }
    fn receiving(&self, url: &str, offset: u64, total: Option<u64>) {
        self.push(format!(
            "Receiving {{ url: {url:?}, offset: {offset}, total: {total:?} }}"
        ));
    }
    fn bytes(&self, url: &str, received: u64, total: Option<u64>) {
        self.push(format!(
            "Bytes {{ url: {url:?}, received: {received}, total: {total:?} }}"
        ));
    }
    fn restarted_from_zero(&self, url: &str, discarded: u64) {
        self.push(format!(
            "RestartedFromZero {{ url: {url:?}, discarded: {discarded} }}"
        ));
    }
    fn retrying(&self, url: &str, error: &FetchError, wait: Duration) {
        self.push(format!(
            "Retrying {{ url: {url:?}, error: {error:?}, wait: {wait:?} }}"
        ));
    }
    fn downloaded(&self, file: &DownloadedFile<'_>) {
        self.push(format!("Downloaded {file:?}"));
    }
    fn extracting(&self, archive: &Path, folder: &Path) {
        self.push(format!(
            "Extracting {{ archive: {archive:?}, folder: {folder:?} }}"
        ));
    }
    fn extracted(&self, folder: &Path, files: usize, bytes: u64) {
        self.push(format!(
            "Extracted {{ folder: {folder:?}, files: {files}, bytes: {bytes} }}"
        ));
    }
}

/// The sorted names in a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Dataset {
    ct0: Vec<u8>,
    ct23: Vec<u8>,
    scans: Vec<(&'static str, Vec<u8>)>,
}

/// CT-0.zip with a top-level CT-0/ folder (as MosMedData's archives are), CT-23.zip with flat
/// `.nii.gz` files.
fn dataset() -> Dataset {
    let a = fake_scan(1, 30_000);
    let b = fake_scan(2, 20_000);
    let c = fake_scan(3, 25_000);
    let ct0 = zip_of(&[
        ("CT-0/", b""),
        ("CT-0/study_0001.nii.gz", &a),
        ("CT-0/study_0002.nii.gz", &b),
    ]);
    let ct23 = zip_of(&[("study_0939.nii.gz", &c)]);
    Dataset {
        ct0,
        ct23,
        scans: vec![
            ("CT-0/study_0001.nii.gz", a),
            ("CT-0/study_0002.nii.gz", b),
            ("CT-23/study_0939.nii.gz", c),
        ],
    }
}

fn serve(data: &Dataset) -> Server {
    let server = Server::start();
    server.add("CT-0.zip", data.ct0.clone());
    server.add("CT-23.zip", data.ct23.clone());
    server
}

fn assert_scans(out: &Path, data: &Dataset) {
    for (name, bytes) in &data.scans {
        let path = out.join(name);
        assert_eq!(&fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

#[test]
fn downloads_and_unpacks_both_classes() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("MosMedData");
    let (result, events) = fetch(&options(&out, server.base_url()));
    let outcomes = result.unwrap();

    assert_scans(&out, &data);
    assert_eq!(
        names(&out),
        ["CT-0", "CT-23"],
        "nothing else is left in DIR"
    );
    assert_eq!(
        names(&out.join("CT-0")),
        ["study_0001.nii.gz", "study_0002.nii.gz"]
    );
    assert_eq!(outcomes.len(), 2);
    let digests: Vec<&str> = outcomes
        .iter()
        .map(|o| o.downloaded.as_ref().unwrap().sha256.as_str())
        .collect();
    assert_eq!(digests, [sha256_hex(&data.ct0), sha256_hex(&data.ct23)]);
    assert!(!outcomes[0].downloaded.as_ref().unwrap().verified);
    assert_eq!(outcomes[0].extracted.as_ref().unwrap().files, 2);
    assert_eq!(outcomes[1].extracted.as_ref().unwrap().files, 1);
    // One request per archive, the two different files.
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/CT-0.zip", "/CT-23.zip"]);
    // Progress was reported with the total size.
    let total = format!("total: Some({})", data.ct0.len());
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Bytes") && e.contains(&total)),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("Extracted")),
        "{events:#?}"
    );
}

#[test]
fn pinned_digests_are_verified() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), server.base_url());
    opts.sha256 = BTreeMap::from([
        ("CT-0.zip".to_owned(), sha256_hex(&data.ct0)),
        ("CT-23.zip".to_owned(), sha256_hex(&data.ct23)),
    ]);
    let outcomes = fetch(&opts).0.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| o.downloaded.as_ref().unwrap().verified)
    );
    assert_scans(dir.path(), &data);
}

#[test]
fn second_run_skips_and_force_replaces() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), server.base_url());
    fetch(&opts).0.unwrap();

    let (result, events) = fetch(&opts);
    let outcomes = result.unwrap();
    assert!(outcomes.iter().all(|o| o.downloaded.is_none()));
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Skipped")).count(),
        2
    );
    assert_eq!(server.requests().len(), 2, "nothing downloaded again");

    // The server now has other scans; --force replaces the folders' content.
    let new = fake_scan(9, 5_000);
    server.add("CT-0.zip", zip_of(&[("CT-0/study_0100.nii.gz", &new)]));
    let mut forced = opts.clone();
    forced.force = true;
    fetch(&forced).0.unwrap();
    assert_eq!(names(&dir.path().join("CT-0")), ["study_0100.nii.gz"]);
    assert_eq!(
        fs::read(dir.path().join("CT-0/study_0100.nii.gz")).unwrap(),
        new
    );
    assert_eq!(names(dir.path()), ["CT-0", "CT-23"]);
}

#[test]
fn a_dropped_connection_is_resumed_with_a_range_request() {
    let data = dataset();
    let server = serve(&data);
    server.fault("CT-0.zip", Fault::DropAfter(10_000));
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), server.base_url());
    opts.sha256 = BTreeMap::from([("CT-0.zip".to_owned(), sha256_hex(&data.ct0))]);
    let (result, events) = fetch(&opts);
    let outcomes = result.unwrap();

    let requests = server.requests_for("CT-0.zip");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=10000-"));
    assert!(
        events.iter().any(|e| e.starts_with("Retrying")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Receiving") && e.contains("offset: 10000")),
        "{events:#?}"
    );
    let downloaded = outcomes[0].downloaded.as_ref().unwrap();
    assert!(downloaded.verified);
    assert_eq!(downloaded.sha256, sha256_hex(&data.ct0));
    assert_eq!(downloaded.bytes, data.ct0.len() as u64);
    assert_scans(dir.path(), &data);
}

#[test]
fn a_part_file_from_an_earlier_run_is_resumed() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join(ct3d_fetch::DOWNLOAD_FOLDER);
    fs::create_dir_all(&downloads).unwrap();
    fs::write(downloads.join("CT-0.zip.part"), &data.ct0[..777]).unwrap();
    fetch(&options(dir.path(), server.base_url())).0.unwrap();
    let requests = server.requests_for("CT-0.zip");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range.as_deref(), Some("bytes=777-"));
    assert_scans(dir.path(), &data);
    assert_eq!(names(dir.path()), ["CT-0", "CT-23"]);
}

#[test]
fn a_server_ignoring_ranges_restarts_from_zero() {
    let data = dataset();
    let server = serve(&data);
    server.fault("CT-0.zip", Fault::DropAfter(5_000));
    server.ignore_range("CT-0.zip");
    let dir = tempfile::tempdir().unwrap();
    let (result, events) = fetch(&options(dir.path(), server.base_url()));
    let outcomes = result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("RestartedFromZero") && e.contains("discarded: 5000")),
        "{events:#?}"
    );
    assert_eq!(
        outcomes[0].downloaded.as_ref().unwrap().sha256,
        sha256_hex(&data.ct0)
    );
    assert_scans(dir.path(), &data);
}

#[test]
fn a_complete_part_file_answered_416_is_kept() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join(ct3d_fetch::DOWNLOAD_FOLDER);
    fs::create_dir_all(&downloads).unwrap();
    fs::write(downloads.join("CT-0.zip.part"), &data.ct0).unwrap();
    fetch(&options(dir.path(), server.base_url())).0.unwrap();
    let requests = server.requests_for("CT-0.zip");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_scans(dir.path(), &data);
}

#[test]
fn a_wrong_digest_is_rejected_and_nothing_is_left() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), server.base_url());
    opts.sha256 = BTreeMap::from([("CT-0.zip".to_owned(), "0".repeat(64))]);
    let error = fetch(&opts).0.unwrap_err();
    assert!(
        matches!(error, FetchError::DigestMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("/CT-0.zip"), "{message}");
    assert!(message.contains(&sha256_hex(&data.ct0)), "{message}");
    assert!(!message.contains('\n'));
    assert_eq!(
        names(dir.path()),
        Vec::<String>::new(),
        "DIR must stay empty"
    );
}

#[test]
fn http_404_fails_at_once_naming_the_url() {
    let server = Server::start(); // serves nothing
    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&options(dir.path(), server.base_url()))
        .0
        .unwrap_err();
    assert!(
        matches!(error, FetchError::Http { status: 404, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("{}CT-0.zip", server.base_url())),
        "{message}"
    );
    assert!(message.contains("HTTP 404"), "{message}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_server_error_is_retried() {
    let data = dataset();
    let server = serve(&data);
    server.fault("CT-23.zip", Fault::Status(500));
    server.fault("CT-23.zip", Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let (result, events) = fetch(&options(dir.path(), server.base_url()));
    result.unwrap();
    assert_eq!(server.requests_for("CT-23.zip").len(), 3);
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Retrying")).count(),
        2
    );
    assert_scans(dir.path(), &data);
}

#[test]
fn persistent_server_errors_give_up_after_the_retries() {
    let data = dataset();
    let server = serve(&data);
    for _ in 0..5 {
        server.fault("CT-0.zip", Fault::Status(500));
    }
    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&options(dir.path(), server.base_url()))
        .0
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    assert_eq!(server.requests_for("CT-0.zip").len(), 3);
}

#[test]
fn an_unreachable_host_gives_up_after_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/", closed_port());
    let (result, events) = fetch(&options(dir.path(), base.clone()));
    let error = result.unwrap_err();
    assert!(
        matches!(error, FetchError::GaveUp { attempts: 3, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("{base}CT-0.zip")), "{message}");
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Attempt")).count(),
        3
    );
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_bad_base_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&options(dir.path(), "ftp://example.org/".into()))
        .0
        .unwrap_err();
    assert!(matches!(error, FetchError::BadUrl { .. }), "{error}");
}

// --- Archives that must be refused -------------------------------------------------------------

/// Extracts `archive` bytes as CT-0 into a fresh folder; returns the error and the folder.
fn extract_bytes(archive: &[u8], limits: &ExtractLimits) -> (FetchError, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("CT-0.zip");
    fs::write(&zip_path, archive).unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let error =
        extract_class_archive(&zip_path, &data.join("CT-0"), limits, false, &()).unwrap_err();
    fs::remove_file(&zip_path).unwrap();
    // Nothing was written: no class folder, no staging folder, nothing beside `data`.
    assert_eq!(names(&data), Vec::<String>::new(), "{error}");
    assert_eq!(names(dir.path()), ["data"], "{error}");
    (error, dir)
}

fn assert_unsafe(error: &FetchError, needle: &str) {
    assert!(matches!(error, FetchError::UnsafeEntry { .. }), "{error}");
    assert!(error.to_string().contains(needle), "{error}");
}

#[test]
fn zip_slip_is_refused() {
    let scan = fake_scan(1, 100);
    for name in [
        "../evil.nii.gz",
        "CT-0/../../evil.nii.gz",
        "CT-0\\..\\..\\evil",
    ] {
        let (error, _dir) = extract_bytes(
            &zip_of(&[("CT-0/study_0001.nii.gz", &scan), (name, b"x")]),
            &ExtractLimits::default(),
        );
        assert_unsafe(&error, "parent folder (..)");
    }
}

#[test]
fn absolute_paths_are_refused() {
    let scan = fake_scan(1, 100);
    let (error, _dir) = extract_bytes(
        &zip_of(&[
            ("CT-0/study_0001.nii.gz", &scan),
            ("/tmp/evil.nii.gz", b"x"),
        ]),
        &ExtractLimits::default(),
    );
    assert_unsafe(&error, "absolute path");
}

#[test]
fn symbolic_links_are_refused() {
    let (error, _dir) = extract_bytes(
        &zip_with_symlink("CT-0", "CT-0/link.nii.gz", "/etc/passwd"),
        &ExtractLimits::default(),
    );
    assert_unsafe(&error, "symbolic link");
}

#[test]
fn a_highly_compressible_entry_is_refused_as_a_bomb() {
    let zeros = vec![0u8; 300_000];
    let limits = ExtractLimits {
        ratio_exempt_bytes: 10_000,
        ..ExtractLimits::default()
    };
    let (error, _dir) = extract_bytes(&zip_of(&[("CT-0/bomb.nii.gz", &zeros)]), &limits);
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("200:1"), "{error}");
}

#[test]
fn an_archive_beyond_the_total_limit_is_refused() {
    let a = fake_scan(1, 3_000);
    let b = fake_scan(2, 3_000);
    let limits = ExtractLimits {
        max_total_bytes: 5_000,
        ..ExtractLimits::default()
    };
    let (error, _dir) = extract_bytes(
        &zip_of(&[("CT-0/a.nii.gz", &a), ("CT-0/b.nii.gz", &b)]),
        &limits,
    );
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("5000 bytes"), "{error}");
}

#[test]
fn an_entry_larger_than_its_header_says_is_caught_while_writing() {
    // A stored entry whose declared uncompressed size is patched down from 4000 to 100: the
    // declared sizes pass every check, the bytes actually written must not.
    let content = vec![7u8; 4000];
    let mut zip = {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("CT-0/a.nii.gz", options).unwrap();
        w.write_all(&content).unwrap();
        w.finish().unwrap().into_inner()
    };
    let patched = patch_uncompressed_size(&mut zip, 4000, 100);
    assert_eq!(patched, 2, "local and central headers patched");
    let (error, _dir) = extract_bytes(&zip, &ExtractLimits::default());
    assert!(
        matches!(error, FetchError::TooLarge { .. })
            && error
                .to_string()
                .contains("more than its declared 100 bytes"),
        "{error}"
    );
}

/// Rewrites the uncompressed-size field of local (PK\x03\x04, offset 22) and central
/// (PK\x01\x02, offset 24) headers from `from` to `to`; returns how many were changed.
fn patch_uncompressed_size(zip: &mut [u8], from: u32, to: u32) -> usize {
    let mut patched = 0;
    for i in 0..zip.len().saturating_sub(30) {
        let offset = match &zip[i..i + 4] {
            b"PK\x03\x04" => 22,
            b"PK\x01\x02" => 24,
            _ => continue,
        };
        let field = &mut zip[i + offset..i + offset + 4];
        if field == from.to_le_bytes() {
            field.copy_from_slice(&to.to_le_bytes());
            patched += 1;
        }
    }
    patched
}

#[test]
fn an_archive_without_the_expected_folder_is_refused() {
    let scan = fake_scan(1, 100);
    for archive in [
        zip_of(&[("CT-23/study_0001.nii.gz", &scan)]),
        zip_of(&[("scans/study_0001.nii.gz", &scan)]),
        zip_of(&[("README.txt", b"hello")]),
        zip_of(&[("CT-0/", b"")]),
    ] {
        let (error, _dir) = extract_bytes(&archive, &ExtractLimits::default());
        assert!(
            matches!(error, FetchError::UnexpectedLayout { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("archive without the expected folder CT-0/"),
            "{error}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_zip_is_refused() {
    let (error, _dir) = extract_bytes(b"<html>rate limited</html>", &ExtractLimits::default());
    assert!(matches!(error, FetchError::BadArchive { .. }), "{error}");
    assert!(
        error.to_string().contains("not a readable zip archive"),
        "{error}"
    );
}

#[test]
fn a_malicious_download_leaves_nothing_behind() {
    let scan = fake_scan(1, 100);
    let server = Server::start();
    server.add(
        "CT-0.zip",
        zip_of(&[("CT-0/study_0001.nii.gz", &scan), ("../evil.nii.gz", b"x")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let error = fetch(&options(&out, server.base_url())).0.unwrap_err();
    assert!(matches!(error, FetchError::UnsafeEntry { .. }), "{error}");
    assert_eq!(names(&out), Vec::<String>::new());
    assert_eq!(names(dir.path()), ["data"], "nothing escaped DIR");
}

#[test]
fn staging_left_by_a_killed_run_is_cleaned_up() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    // No process has this id (above Linux's pid_max); ours is alive and must be left alone.
    let stale = dir.path().join(".CT-0.partial-999999999-0");
    let alive = dir
        .path()
        .join(format!(".CT-0.partial-{}-12345", std::process::id()));
    for folder in [&stale, &alive] {
        fs::create_dir_all(folder).unwrap();
        fs::write(folder.join("study_0001.nii.gz"), b"half").unwrap();
    }
    fetch(&options(dir.path(), server.base_url())).0.unwrap();
    assert!(!stale.exists() || !cfg!(target_os = "linux"));
    assert!(alive.exists());
    assert_scans(dir.path(), &data);
}

#[test]
fn outcomes_name_the_class_folders() {
    let data = dataset();
    let server = serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let outcomes = fetch(&options(dir.path(), server.base_url())).0.unwrap();
    let folders: Vec<PathBuf> = outcomes.iter().map(|o| o.folder.clone()).collect();
    assert_eq!(folders, [dir.path().join("CT-0"), dir.path().join("CT-23")]);
}

/// Replays the committed corpus of the `zip_archive` fuzz target (`fuzz/corpus/zip_archive/`)
/// and its past findings (`fuzz/regressions/zip_archive/`) through the target's body, on stable:
/// an input that panics (or escapes its folder) fails.
#[test]
fn the_zip_archive_fuzz_corpus_replays_without_panics() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for kind in ["corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("zip_archive")) {
            inputs.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    assert!(inputs.len() >= 4, "{} inputs", inputs.len());
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| ct3d_fetch::fuzzing::zip_archive(&data));
        assert!(outcome.is_ok(), "{} made the harness panic", path.display());
    }
}
