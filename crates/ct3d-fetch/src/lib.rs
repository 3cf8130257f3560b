//! Fetch the real data of the Keras example: the two MosMedData archives (`CT-0.zip`, normal
//! lungs; `CT-23.zip`, viral pneumonia), downloaded over HTTP(S) and unpacked into the class
//! folders `DIR/CT-0/` and `DIR/CT-23/` that `ct3d train --data DIR` reads.
//!
//! - Downloads ([`download`]) resume an interrupted transfer with HTTP `Range`, retry network
//!   failures with backoff, check the size the server announced and the SHA-256 (pinned digests
//!   are enforced; the digest is always reported).
//! - Extraction ([`extract`]) refuses entries that would escape the class folder, symbolic links,
//!   and zip bombs, and is atomic: a class folder is either complete or absent.
//! - Progress goes through the [`FetchObserver`] trait, so the library draws nothing itself.
//!
//! MosMedData is licensed CC BY-NC-ND 3.0: it may be used for non-commercial work with
//! attribution and may not be redistributed in modified form.
//!
//! Pure Rust: HTTP by `ureq` with rustls, zip by `zip` with deflate through flate2's zlib-rs.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod download;
mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;

pub use download::{
    DownloadOptions, Downloaded, RetryPolicy, download_file, hash_file, part_path, sha256_hex,
};
pub use error::FetchError;
pub use extract::{ExtractLimits, Extracted, extract_class_archive};

/// Where the Keras example downloads MosMedData from (the files' folder, ending in `/`).
pub const DEFAULT_BASE_URL: &str =
    "https://github.com/hasibzunair/3D-image-classification-tutorial/releases/download/v0.2/";

/// Name of the hidden folder in `DIR` that holds downloads in progress (`NAME.part`) and
/// downloaded archives until they are unpacked. It is removed when empty.
pub const DOWNLOAD_FOLDER: &str = ".ct3d-download";

/// One of the dataset's archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassArchive {
    /// The file name on the server, e.g. `CT-0.zip`.
    pub file: &'static str,
    /// The class folder it unpacks to, e.g. `CT-0`.
    pub folder: &'static str,
    /// What the class is.
    pub description: &'static str,
}

/// The two archives the Keras example uses: normal lungs (label 0) first, then abnormal.
pub const MOSMED_ARCHIVES: [ClassArchive; 2] = [
    ClassArchive {
        file: "CT-0.zip",
        folder: "CT-0",
        description: "normal lung tissue (CT-0)",
    },
    ClassArchive {
        file: "CT-23.zip",
        folder: "CT-23",
        description: "COVID-19 related findings, 25% or more of the lung (CT-23)",
    },
];

/// The URL of `file` under `base_url` (with or without a trailing `/`).
pub fn archive_url(base_url: &str, file: &str) -> String {
    format!("{}/{file}", base_url.trim_end_matches('/'))
}

/// Progress of a fetch (a progress bar, a log, a test): one method per step, in the order they
/// happen, each with a do-nothing default, so an observer implements only what it shows (the
/// style of every progress observer in ct3d). Methods take `&self`: an observer that keeps state
/// uses interior mutability. `()` observes nothing. Sizes are in bytes.
pub trait FetchObserver: Sync {
    /// The class `folder` already holds files and `force` is off: left as it is.
    fn skipped(&self, _folder: &Path) {}
    /// A request for `url` is about to be sent (`attempt` 1 for the first, then 2, …).
    fn attempt(&self, _url: &str, _attempt: u32) {}
    /// The server answered; the body follows, starting at byte `offset` of the file (non-zero
    /// when resuming). `total` is the file's size, when the server told it.
    fn receiving(&self, _url: &str, _offset: u64, _total: Option<u64>) {}
    /// More of the body arrived: `received` bytes of the file are on disk now, including the
    /// resumed part, of `total` when the server told it.
    fn bytes(&self, _url: &str, _received: u64, _total: Option<u64>) {}
    /// The server ignored the range request and sent the whole file: the part file restarts,
    /// and the `discarded` bytes of the old one are thrown away.
    fn restarted_from_zero(&self, _url: &str, _discarded: u64) {}
    /// An attempt failed with `error` in a way worth retrying; the next one starts after `wait`.
    fn retrying(&self, _url: &str, _error: &FetchError, _wait: Duration) {}
    /// The file is complete (and verified, if a digest was pinned).
    fn downloaded(&self, _file: &DownloadedFile<'_>) {}
    /// Unpacking `archive` into the class `folder` starts (every entry has passed the safety
    /// checks).
    fn extracting(&self, _archive: &Path, _folder: &Path) {}
    /// The class `folder` is in place, with `files` files of `bytes` bytes in all.
    fn extracted(&self, _folder: &Path, _files: usize, _bytes: u64) {}
}

/// Observes nothing.
impl FetchObserver for () {}

/// A complete download, as [`FetchObserver::downloaded`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct DownloadedFile<'a> {
    /// The URL.
    pub url: &'a str,
    /// Where the file is.
    pub path: &'a Path,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: &'a str,
    /// Whether it matched a pinned digest.
    pub verified: bool,
    /// Whether it was already complete from an earlier run.
    pub reused: bool,
}

/// What [`fetch_mosmed`] should do.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The dataset folder; `OUT/CT-0` and `OUT/CT-23` are created in it.
    pub out: PathBuf,
    /// Where the archives are: `BASE_URL/CT-0.zip` and `BASE_URL/CT-23.zip`.
    pub base_url: String,
    /// Pinned SHA-256 digests by archive file name (`CT-0.zip` → 64 lowercase hex digits). An
    /// archive without a pin is accepted whatever its digest (which is reported).
    pub sha256: BTreeMap<String, String>,
    /// Retries and timeouts of the downloads (its `expected_sha256` is ignored: see `sha256`).
    pub download: DownloadOptions,
    /// Limits of the extraction.
    pub limits: ExtractLimits,
    /// Replace class folders that already hold files instead of skipping them.
    pub force: bool,
}

impl FetchOptions {
    /// The defaults: the Keras example's URLs, no pins, 3 retries, the standard limits.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            sha256: BTreeMap::new(),
            download: DownloadOptions::default(),
            limits: ExtractLimits::default(),
            force: false,
        }
    }
}

/// What happened to one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassOutcome {
    /// The archive.
    pub archive: ClassArchive,
    /// The class folder (`OUT/CT-0`).
    pub folder: PathBuf,
    /// The download, or `None` when the folder already held files and was skipped.
    pub downloaded: Option<Downloaded>,
    /// The extraction, or `None` when skipped.
    pub extracted: Option<Extracted>,
}

/// Downloads both MosMedData archives and unpacks them to `OUT/CT-0` and `OUT/CT-23`.
///
/// For each class in turn: a class folder that already holds files is skipped (reported as
/// [`FetchObserver::skipped`]) unless `force` is set. Otherwise the archive is downloaded to
/// `OUT/.ct3d-download/NAME` (resuming `NAME.part` from an earlier run), checked, unpacked
/// atomically, and deleted. On an error the class folder is left as it was: a wrong digest deletes
/// the download (nothing of it is left in `OUT`), an unsafe or malformed archive is deleted too,
/// and only a broken connection keeps its part file so that running again resumes it.
pub fn fetch_mosmed(
    options: &FetchOptions,
    observer: &dyn FetchObserver,
) -> Result<Vec<ClassOutcome>, FetchError> {
    check_base_url(&options.base_url)?;
    for name in options.sha256.keys() {
        if !MOSMED_ARCHIVES.iter().any(|a| a.file == name) {
            return Err(FetchError::BadPin {
                text: name.clone(),
                detail: format!("not one of the archives ({})", archive_names()),
            });
        }
    }
    fs::create_dir_all(&options.out).map_err(|e| FetchError::io(&options.out, e))?;
    let downloads = options.out.join(DOWNLOAD_FOLDER);
    let mut outcomes = Vec::new();
    for archive in MOSMED_ARCHIVES {
        let folder = options.out.join(archive.folder);
        if !options.force && extract::has_content(&folder)? {
            observer.skipped(&folder);
            outcomes.push(ClassOutcome {
                archive,
                folder,
                downloaded: None,
                extracted: None,
            });
            continue;
        }
        fs::create_dir_all(&downloads).map_err(|e| FetchError::io(&downloads, e))?;
        let result = fetch_one(options, archive, &downloads, &folder, observer);
        remove_dir_if_empty(&downloads);
        let (downloaded, extracted) = result?;
        outcomes.push(ClassOutcome {
            archive,
            folder,
            downloaded: Some(downloaded),
            extracted: Some(extracted),
        });
    }
    Ok(outcomes)
}

fn fetch_one(
    options: &FetchOptions,
    archive: ClassArchive,
    downloads: &Path,
    folder: &Path,
    observer: &dyn FetchObserver,
) -> Result<(Downloaded, Extracted), FetchError> {
    let url = archive_url(&options.base_url, archive.file);
    let zip_path = downloads.join(archive.file);
    let download_options = DownloadOptions {
        expected_sha256: options.sha256.get(archive.file).cloned(),
        ..options.download.clone()
    };
    let downloaded = download_file(&url, &zip_path, &download_options, observer)?;
    let extracted =
        extract_class_archive(&zip_path, folder, &options.limits, options.force, observer);
    // Unpacked or refused, the archive has served its purpose (and a bad one would only be
    // reused by the next run).
    download::remove_file_if_exists(&zip_path)?;
    Ok((downloaded, extracted?))
}

/// Parses a digest pin `NAME=HEX`, where NAME is an archive (`CT-0.zip`, or just `CT-0`) and HEX
/// its SHA-256 as 64 hexadecimal digits. Returns the archive's file name and the digest in
/// lowercase.
pub fn parse_sha256_pin(text: &str) -> Result<(String, String), FetchError> {
    let bad = |detail: String| FetchError::BadPin {
        text: text.to_owned(),
        detail,
    };
    let Some((name, hex)) = text.split_once('=') else {
        return Err(bad(format!(
            "expected NAME=HEX, e.g. CT-0.zip=<64 hex digits> (NAME one of {})",
            archive_names()
        )));
    };
    let name = name.trim();
    let Some(archive) = MOSMED_ARCHIVES
        .iter()
        .find(|a| a.file == name || a.folder == name)
    else {
        return Err(bad(format!(
            "{name:?} is not one of the archives ({})",
            archive_names()
        )));
    };
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "a SHA-256 is 64 hexadecimal digits, got {} characters",
            hex.len()
        )));
    }
    Ok((archive.file.to_owned(), hex.to_ascii_lowercase()))
}

fn archive_names() -> String {
    MOSMED_ARCHIVES
        .iter()
        .map(|a| a.file)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_base_url(url: &str) -> Result<(), FetchError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(FetchError::BadUrl {
            url: url.to_owned(),
        }),
    }
}

fn remove_dir_if_empty(path: &Path) {
    // Fails harmlessly when the folder still holds a part file kept for resuming.
    if let Err(e) = fs::remove_dir(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!("keeping {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_urls_differ_and_name_their_archives() {
        let urls: Vec<String> = MOSMED_ARCHIVES
            .iter()
            .map(|a| archive_url(DEFAULT_BASE_URL, a.file))
            .collect();
        assert_ne!(urls[0], urls[1]);
        assert!(urls[0].ends_with("/CT-0.zip"), "{}", urls[0]);
        assert!(urls[1].ends_with("/CT-23.zip"), "{}", urls[1]);
        assert_eq!(
            urls[1],
            "https://github.com/hasibzunair/3D-image-classification-tutorial/releases/download/v0.2/CT-23.zip"
        );
        assert_eq!(MOSMED_ARCHIVES[0].folder, "CT-0");
        assert_eq!(MOSMED_ARCHIVES[1].folder, "CT-23");
    }

    #[test]
    fn archive_url_joins_with_one_slash() {
        assert_eq!(archive_url("http://h/x", "a.zip"), "http://h/x/a.zip");
        assert_eq!(archive_url("http://h/x/", "a.zip"), "http://h/x/a.zip");
    }

    #[test]
    fn pins_parse_and_refuse_nonsense() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_sha256_pin(&format!("CT-23={hex}")).unwrap(),
            ("CT-23.zip".to_owned(), "ab".repeat(32))
        );
        assert!(parse_sha256_pin(&format!("CT-0.zip={hex}")).is_ok());
        assert!(parse_sha256_pin(&hex).is_err());
        assert!(parse_sha256_pin(&format!("CT-1.zip={hex}")).is_err());
        assert!(parse_sha256_pin("CT-0.zip=abc").is_err());
        assert!(parse_sha256_pin(&format!("CT-0.zip={}", "g".repeat(64))).is_err());
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(check_base_url("http://127.0.0.1:8/").is_ok());
        assert!(check_base_url("HTTPS://example.org").is_ok());
        assert!(check_base_url("ftp://example.org").is_err());
        assert!(check_base_url("http://").is_err());
        assert!(check_base_url("example.org").is_err());
    }
}
