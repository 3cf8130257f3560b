//! The one error type of ct3d-fetch: every variant displays as one line that names the URL or the
//! file and what is wrong with it.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while fetching and unpacking an archive.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The connection could not be made or broke before a response arrived (host not found,
    /// connection refused, timeout, TLS failure, ...). `detail` says which.
    #[error("{url}: {detail}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The server answered with an HTTP status that is not a success (404, 500, ...).
    #[error("{url}: HTTP {status}{}", status_reason(*status))]
    Http {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body stopped before its announced end (the part received so far is kept).
    #[error("{url}: connection lost after {received} of {} bytes: {detail}", total.map_or_else(|| "?".to_owned(), |t| t.to_string()))]
    Interrupted {
        /// The URL requested.
        url: String,
        /// Bytes of the file on disk after the interruption.
        received: u64,
        /// The file's total size in bytes, when the server told it.
        total: Option<u64>,
        /// What happened, in words.
        detail: String,
    },
    /// The response cannot be right: more bytes than announced, a `Content-Range` that does not
    /// match the request, an unparsable header.
    #[error("{url}: {detail}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What is wrong with the response.
        detail: String,
    },
    /// A retryable failure persisted through every allowed attempt; `last` is the final failure.
    #[error("{last} (gave up after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    GaveUp {
        /// Attempts made in all.
        attempts: u32,
        /// The failure of the last attempt.
        last: Box<FetchError>,
    },
    /// The downloaded file's SHA-256 differs from the pinned one; the file was deleted.
    #[error("{url}: SHA-256 is {actual}, expected {expected}; the download was deleted")]
    DigestMismatch {
        /// The URL the file came from.
        url: String,
        /// The pinned digest (lowercase hex).
        expected: String,
        /// The digest of what arrived (lowercase hex).
        actual: String,
    },
    /// Reading or writing a local file or folder failed.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not a zip archive this crate can read (corrupt, encrypted, or compressed with
    /// another method than stored or deflate).
    #[error("{}: not a readable zip archive: {detail}", archive.display())]
    BadArchive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An entry would write outside the destination or is not a plain file or folder (`..`,
    /// absolute path, symbolic link, ...). Nothing was extracted.
    #[error("{}: unsafe entry {entry:?}: {reason}", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name as stored.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive holds something else than the class folder's scans.
    #[error("{}: archive without the expected folder {folder}/: {detail}", archive.display())]
    UnexpectedLayout {
        /// The archive.
        archive: PathBuf,
        /// The class folder expected at its top (`CT-0`, `CT-23`).
        folder: String,
        /// What was found instead.
        detail: String,
    },
    /// The archive unpacks to more bytes, or compresses better, than the limits allow (a zip
    /// bomb, or the wrong file). Nothing was extracted.
    #[error("{}: {detail}; refusing to extract (possible zip bomb)", archive.display())]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// Which limit and by how much.
        detail: String,
    },
    /// The class folder already holds files and replacing it was not asked for (a front end
    /// names its option that replaces it).
    #[error("{}: already exists and is not empty", folder.display())]
    NotEmpty {
        /// The class folder.
        folder: PathBuf,
    },
    /// The base URL is not an `http://` or `https://` URL.
    #[error("base URL {url:?}: expected an http:// or https:// URL")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// A digest pin is not `NAME=HEX` with a known archive name and 64 hexadecimal digits.
    #[error("{text:?}: {detail}")]
    BadPin {
        /// The pin as given.
        text: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl FetchError {
    /// A local I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// " Not Found" after "HTTP 404", for the statuses people meet.
fn status_reason(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        408 => " Request Timeout",
        410 => " Gone",
        416 => " Range Not Satisfiable",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}
