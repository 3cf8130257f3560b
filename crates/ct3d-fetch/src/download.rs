//! Resumable, verified HTTP(S) downloads.
//!
//! A download goes to `DEST.part` next to its destination. Each attempt asks for the bytes the
//! part file lacks (`Range: bytes=N-`); a server that answers 206 continues it, one that answers
//! 200 sends the whole file again and the part file restarts from zero. When the announced size
//! (`Content-Length`, or the total of `Content-Range`) has arrived, the SHA-256 is checked against
//! the pinned one (if any) and the part file is renamed to `DEST`. A wrong digest or an impossible
//! size deletes the part file; a broken connection keeps it, for the next attempt or the next run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{DownloadedFile, FetchError, FetchObserver};

/// How often and how patiently failed attempts are repeated.
///
/// Retried: connection failures (refused, reset, host not found, timeouts), a body that stops
/// early, HTTP 5xx, 408 and 429. Not retried: other HTTP errors (404, 403, ...), a wrong digest or
/// size. An attempt that added bytes to the part file does not count against `retries`, so a
/// large download over a flaky line keeps going as long as it makes progress (up to
/// [`MAX_ATTEMPTS`] attempts in all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one that failed without progress (default 3: up to 4 attempts).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one (default 1 s).
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts (default 30 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` consecutive failures without progress (0: after one that made
    /// progress).
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Attempts of one download in all, progress or not: a server that drops every connection after a
/// few bytes cannot keep ct3d busy forever.
pub const MAX_ATTEMPTS: u32 = 1000;

/// Settings of [`download_file`].
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// The expected SHA-256 of the whole file, as 64 lowercase hexadecimal digits; `None` accepts
    /// any content (the digest is still computed and reported).
    pub expected_sha256: Option<String>,
    /// Longest wait for a TCP connection (default 30 s).
    pub connect_timeout: Duration,
    /// Longest silence of the server while waiting for its response or for more of the body
    /// (default 60 s); the download as a whole has no time limit.
    pub read_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            expected_sha256: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A complete, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Where the file is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, 64 lowercase hexadecimal digits.
    pub sha256: String,
    /// Whether the digest was checked against a pinned one.
    pub verified: bool,
    /// Whether the file was already complete at `path` from an earlier run (nothing downloaded).
    pub reused: bool,
}

/// The path of the part file of a download to `dest`: `dest` with `.part` appended.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `url` to `dest`, resuming `dest.part` if an earlier attempt left one, retrying as
/// `options.retry` allows, and verifying size and SHA-256.
///
/// If `dest` itself already exists (a complete download from an earlier run) it is hashed and
/// reused when it matches the pin (or when there is none); a file that does not match is deleted
/// and downloaded again. `dest`'s folder must exist.
pub fn download_file(
    url: &str,
    dest: &Path,
    options: &DownloadOptions,
    observer: &dyn FetchObserver,
) -> Result<Downloaded, FetchError> {
    let expected = options.expected_sha256.as_deref();
    if dest.is_file() {
        let (bytes, sha256) = hash_file(dest)?;
        if expected.is_none_or(|e| e == sha256) {
            let done = Downloaded {
                path: dest.to_owned(),
                bytes,
                sha256,
                verified: expected.is_some(),
                reused: true,
            };
            observer.downloaded(&DownloadedFile {
                url,
                path: dest,
                bytes,
                sha256: &done.sha256,
                verified: done.verified,
                reused: true,
            });
            return Ok(done);
        }
        remove_file_if_exists(dest)?;
    }

    let part = part_path(dest);
    let agent = agent(options);
    let mut failures = 0u32;
    let mut attempts = 0u32;
    let (bytes, sha256) = loop {
        attempts += 1;
        observer.attempt(url, attempts);
        let before = file_len(&part)?;
        let error = match attempt(&agent, url, &part, observer) {
            Ok(Outcome::Complete { bytes, sha256 }) => break (bytes, sha256),
            Ok(Outcome::StartOver) => {
                // 416 for a part file that cannot belong to this file: it was deleted, go again.
                failures += 1;
                FetchError::BadResponse {
                    url: url.to_owned(),
                    detail: "the server refused to resume; starting over".to_owned(),
                }
            }
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retryable(error)) => {
                if file_len(&part)? > before {
                    failures = 0;
                } else {
                    failures += 1;
                }
                error
            }
        };
        if failures > options.retry.retries || attempts >= MAX_ATTEMPTS {
            return Err(FetchError::GaveUp {
                attempts,
                last: Box::new(error),
            });
        }
        let wait = options.retry.backoff(failures);
        observer.retrying(url, &error, wait);
        std::thread::sleep(wait);
    };

    if let Some(expected) = expected
        && expected != sha256
    {
        remove_file_if_exists(&part)?;
        return Err(FetchError::DigestMismatch {
            url: url.to_owned(),
            expected: expected.to_owned(),
            actual: sha256,
        });
    }
    fs::rename(&part, dest).map_err(|e| FetchError::io(dest, e))?;
    observer.downloaded(&DownloadedFile {
        url,
        path: dest,
        bytes,
        sha256: &sha256,
        verified: expected.is_some(),
        reused: false,
    });
    Ok(Downloaded {
        path: dest.to_owned(),
        bytes,
        sha256,
        verified: expected.is_some(),
        reused: false,
    })
}

/// The SHA-256 of `data`, as 64 lowercase hexadecimal digits.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The size in bytes and SHA-256 (lowercase hex) of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), FetchError> {
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut file, &mut hasher).map_err(|e| FetchError::io(path, e))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

enum Outcome {
    Complete { bytes: u64, sha256: String },
    StartOver,
}

enum Failure {
    Retryable(FetchError),
    Fatal(FetchError),
}

fn agent(options: &DownloadOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .user_agent(concat!("ct3d/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One request: continues the part file from its current length.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    observer: &dyn FetchObserver,
) -> Result<Outcome, Failure> {
    let retryable = |detail: String| {
        Failure::Retryable(FetchError::Transport {
            url: url.to_owned(),
            detail,
        })
    };
    let bad = |detail: String| {
        Failure::Fatal(FetchError::BadResponse {
            url: url.to_owned(),
            detail,
        })
    };
    let io_fatal = |e: io::Error| Failure::Fatal(FetchError::io(part, e));

    let offset = file_len(part).map_err(Failure::Fatal)?;
    // The body must arrive as stored, byte for byte, for Range offsets and the digest to mean
    // anything: no transparent decompression.
    let mut request = agent.get(url).header("Accept-Encoding", "identity");
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|e| classify(url, e))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());

    let (start, total) = match status {
        200 => {
            if offset > 0 {
                observer.restarted_from_zero(url, offset);
            }
            (0, content_length)
        }
        206 => {
            let Some(range) = header("content-range") else {
                return Err(bad("206 Partial Content without Content-Range".to_owned()));
            };
            let Some((first, _last, total)) = parse_content_range(&range) else {
                return Err(bad(format!("unreadable Content-Range {range:?}")));
            };
            if first != offset {
                // Not what was asked for: drop the part file and start over next attempt.
                remove_file_if_exists(part).map_err(Failure::Fatal)?;
                return Err(retryable(format!(
                    "asked for bytes from {offset}, the server sent them from {first}; starting over"
                )));
            }
            (offset, total)
        }
        416 => {
            // The part file is at least as long as the file: complete (a run stopped between the
            // last byte and the rename), or not the same file at all.
            let total = header("content-range")
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes */"))
                .and_then(|t| t.trim().parse::<u64>().ok());
            if offset > 0 && total == Some(offset) {
                let (bytes, sha256) = hash_file(part).map_err(Failure::Fatal)?;
                return Ok(Outcome::Complete { bytes, sha256 });
            }
            remove_file_if_exists(part).map_err(Failure::Fatal)?;
            return Ok(Outcome::StartOver);
        }
        408 | 429 | 500..=599 => {
            return Err(Failure::Retryable(FetchError::Http {
                url: url.to_owned(),
                status,
            }));
        }
        _ => {
            return Err(Failure::Fatal(FetchError::Http {
                url: url.to_owned(),
                status,
            }));
        }
    };
    if let (Some(total), Some(length)) = (total, content_length)
        && start + length != total
    {
        return Err(bad(format!(
            "Content-Length {length} from byte {start} does not add up to the file's {total} bytes"
        )));
    }

    let mut hasher = Sha256::new();
    let mut file = if start == 0 {
        File::create(part).map_err(io_fatal)?
    } else {
        // Hash what is already there, then append.
        let mut existing = File::open(part).map_err(io_fatal)?;
        let copied = io::copy(&mut (&mut existing).take(start), &mut hasher).map_err(io_fatal)?;
        if copied != start {
            return Err(Failure::Fatal(FetchError::io(
                part,
                io::Error::new(io::ErrorKind::UnexpectedEof, "the part file shrank"),
            )));
        }
        OpenOptions::new()
            .append(true)
            .open(part)
            .map_err(io_fatal)?
    };
    observer.receiving(url, start, total);

    let mut received = start;
    let mut reader = response.into_body().into_reader();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().map_err(io_fatal)?;
                return Err(Failure::Retryable(FetchError::Interrupted {
                    url: url.to_owned(),
                    received,
                    total,
                    detail: describe_io(&e),
                }));
            }
        };
        received += n as u64;
        if let Some(total) = total
            && received > total
        {
            drop(file);
            remove_file_if_exists(part).map_err(Failure::Fatal)?;
            return Err(bad(format!(
                "the server sent more than the announced {total} bytes; the download was deleted"
            )));
        }
        file.write_all(&buffer[..n]).map_err(io_fatal)?;
        hasher.update(&buffer[..n]);
        observer.bytes(url, received, total);
    }
    file.sync_all().map_err(io_fatal)?;
    if let Some(total) = total
        && received < total
    {
        return Err(Failure::Retryable(FetchError::Interrupted {
            url: url.to_owned(),
            received,
            total: Some(total),
            detail: "the server closed the connection".to_owned(),
        }));
    }
    Ok(Outcome::Complete {
        bytes: received,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) → (FIRST, LAST, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (first <= last).then_some((first, last, total))
}

/// Sorts a ureq error into retryable (the network) and fatal (the request itself is wrong).
fn classify(url: &str, error: ureq::Error) -> Failure {
    use ureq::Error as E;
    let fatal = matches!(
        error,
        E::BadUri(_)
            | E::Http(_)
            | E::TooManyRedirects
            | E::RedirectFailed
            | E::RequireHttpsOnly(_)
            | E::InvalidProxyUrl
            | E::Tls(_)
            | E::Pem(_)
            | E::Rustls(_)
            | E::TlsRequired
    );
    let detail = match &error {
        E::HostNotFound => "host not found (check the name and the network)".to_owned(),
        E::ConnectionFailed => "cannot connect to the host".to_owned(),
        E::Io(e) => describe_io(e),
        E::Timeout(t) => format!("timed out ({t})"),
        E::TooManyRedirects => "too many redirects".to_owned(),
        other => other.to_string(),
    };
    let error = FetchError::Transport {
        url: url.to_owned(),
        detail,
    };
    if fatal {
        Failure::Fatal(error)
    } else {
        Failure::Retryable(error)
    }
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (host unreachable)".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection early".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        // getaddrinfo's failure comes through as a plain I/O error.
        _ if error.to_string().contains("lookup address") => {
            format!("host not found ({error})")
        }
        _ => error.to_string(),
    }
}

fn file_len(path: &Path) -> Result<u64, FetchError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(FetchError::io(path, e)),
    }
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 10-19/20"),
            Some((10, 19, Some(20)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes 5-4/20"), None);
        assert_eq!(parse_content_range("items 0-4/20"), None);
        assert_eq!(parse_content_range("bytes */20"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(policy.backoff(0), Duration::from_millis(100));
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn part_path_appends_part() {
        assert_eq!(
            part_path(Path::new("/d/CT-0.zip")),
            Path::new("/d/CT-0.zip.part")
        );
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
