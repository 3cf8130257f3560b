//! The `ct3d prepare` cache: every scan of a dataset preprocessed once, in parallel, on disk.
//!
//! Preprocessing a MosMedData scan (read, window, rotate, zoom) takes far longer than reading its
//! result back, and the result depends only on the file's bytes and the [`PreprocessConfig`]. So
//! each result is stored under a key that hashes exactly those: SHA-256 of a format tag, the
//! crate version, [`CACHE_FORMAT_VERSION`], the file's SHA-256 and the config serialised as JSON.
//! A changed parameter, a changed file or a new ct3d release gives a new key, so stale data is never
//! served; renaming or copying a scan keeps its key, so nothing is recomputed.
//!
//! Hashing 1,110 scans still reads gigabytes, so `index.json` remembers each file's SHA-256 by
//! canonical path, size and modification time (in ns): an unchanged file is not read again and a
//! second `prepare` is near-instant. Files modified within the last [`RACY_WINDOW`] are hashed but
//! not indexed, because a same-size rewrite within the filesystem's timestamp granularity would
//! otherwise go unnoticed. The index is only a shortcut: deleting it costs one re-hash.
//!
//! # Entry format (`<cache>/<key>.vol`, little-endian, written atomically)
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `CT3DVOL\0` |
//! | 8 | 4 | [`CACHE_FORMAT_VERSION`] (`u32`) |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 24 | shape `[x, y, z]` (`u64` × 3) |
//! | 40 | 24 | spacing in mm (`f64` × 3) |
//! | 64 | 128 | affine, row-major (`f64` × 16) |
//! | 192 | 4·x·y·z | voxels (`f32`, `x` fastest), [`CacheEntry::DATA_OFFSET`] |
//! | end − 16 | 8 | voxel count again (`u64`) |
//! | end − 8 | 8 | checksum of header and voxels (`u64`) |
//!
//! [`CacheEntry::open`] reads the header and checks the file length; loading verifies the checksum
//! too, so a corrupt entry is an error, never data. Before reusing an entry, `prepare` checks its
//! header and length and, unless the index shows its checksum passed while the file had its
//! current size and modification time, its checksum; a bad entry is rebuilt. So a second run reads
//! only headers, while a truncated, overwritten or otherwise modified entry is caught.
//! [`PrepareOptions::verify_entries`] checksums every entry regardless (for silent bit rot).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Volume;
use crate::dataset::Dataset;
use crate::format::ScanFiles;
use crate::preprocess::{self, PreprocessConfig};
use crate::volume::{Affine, Provenance};

mod entry;
mod index;
mod key;
mod prepare;

pub use entry::{CacheEntry, EntryError};
pub use key::{entry_key, hash_file};
pub use prepare::{prepare, prepare_default};

pub(crate) use index::{FileStamp, Index};
pub(crate) use key::{scan_stamp, unhex};

use index::*;

/// Version of the entry layout and key derivation; bump it when preprocessing output changes so
/// old entries stop matching.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// Files modified more recently than this before a run are hashed every time (see module docs).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The index file inside the cache folder.
pub const INDEX_FILE_NAME: &str = "index.json";

/// The lock file that makes index updates one step among processes (see `Index::update`).
pub const INDEX_LOCK_FILE_NAME: &str = ".index.lock";

const ENTRY_MAGIC: [u8; 8] = *b"CT3DVOL\0";
pub(crate) const ENTRY_EXTENSION: &str = "vol";
const TRAILER_LEN: u64 = 16;
const KEY_TAG: &[u8] = b"ct3d-prepare-cache\0";
const INDEX_FORMAT: u32 = 1;
const IO_CHUNK: usize = 1 << 16;
pub(crate) const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks a ct3d preprocessing cache; backup tools may skip this folder.\n";

/// Options of [`prepare`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareOptions {
    /// The preprocessing parameters (part of every entry's key).
    pub config: PreprocessConfig,
    /// Keep going when a scan fails, listing it in [`PreparedDataset::failures`], instead of
    /// failing the run.
    pub skip_bad: bool,
    /// Checksum every cached entry before reusing it (reads all of them), even those whose
    /// checksum passed before and whose file looks unchanged; a corrupt entry is then rebuilt.
    pub verify_entries: bool,
}

/// Progress of [`prepare`], reported from worker threads: one method per event, each with a
/// do-nothing default, so an observer implements only what it shows (the style of every
/// progress observer in ct3d). `()` observes nothing.
pub trait PrepareObserver: Sync {
    /// Called first: this many dataset items will each get one of the other calls.
    fn started(&self, _items: usize) {}
    /// The item's result was already cached.
    fn hit(&self, _source: &Path) {}
    /// The item was preprocessed and cached by this run.
    fn processed(&self, _source: &Path) {}
    /// The item failed (only with [`PrepareOptions::skip_bad`]; otherwise the run fails).
    /// `error` names the scan; [`crate::chain`] gives it with its causes on one line.
    fn failed(&self, _source: &Path, _error: &CacheError) {}
}

/// Observes nothing.
impl PrepareObserver for () {}

/// One preprocessed scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedItem {
    /// The scan file as the dataset listed it.
    pub source: PathBuf,
    /// 0 (negative) or 1 (positive).
    pub label: u8,
    /// Where its preprocessed volume is stored.
    pub entry: CacheEntry,
    /// True when the entry already existed before this run.
    pub cache_hit: bool,
    /// SHA-256 of the scan file's bytes, lowercase hex (recorded by training runs).
    pub sha256: String,
}

impl PreparedItem {
    /// Reads the preprocessed volume, verifying its checksum.
    pub fn load(&self) -> Result<Volume, EntryError> {
        self.entry.load()
    }
}

/// A scan that could not be prepared (with [`PrepareOptions::skip_bad`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareFailure {
    /// The scan file.
    pub source: PathBuf,
    /// Its label.
    pub label: u8,
    /// The error and its causes on one line ([`crate::chain`]), naming the file.
    pub error: String,
}

/// What a [`prepare`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareStats {
    /// Files whose bytes were hashed (the rest were known from the index).
    pub hashed: usize,
    /// Successful calls of the preprocessing function (one per distinct key not in the cache).
    pub computed: usize,
    /// Items served from existing entries.
    pub hits: usize,
    /// Items that failed (only with [`PrepareOptions::skip_bad`]).
    pub failed: usize,
}

/// A dataset whose scans are all preprocessed in a cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDataset {
    /// The cache folder.
    pub cache_dir: PathBuf,
    /// The class folder names by label, from the dataset.
    pub class_names: [String; 2],
    /// The prepared scans, in dataset order (failed ones left out).
    pub items: Vec<PreparedItem>,
    /// The scans that failed, in dataset order (empty unless [`PrepareOptions::skip_bad`]).
    pub failures: Vec<PrepareFailure>,
    /// Counts of what the run did.
    pub stats: PrepareStats,
}

/// Why [`prepare`] failed. Displays as one line naming the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A scan could not be read (the I/O error is the source).
    #[error("{}", path.display())]
    Io {
        /// The scan.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The cache folder or its index could not be created or written (a read-only dataset, say;
    /// the I/O error is the source). The fix is another cache folder, which a front end words as
    /// its own option.
    #[error("{}: cannot create or write the preprocessing cache", path.display())]
    Folder {
        /// The cache folder, or its index file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The preprocessing function failed on a scan. Its message is the pipeline's own, which
    /// names the scan ([`prepare`] asks that of its pipeline, and every
    /// [`PreprocessError`](crate::preprocess::PreprocessError) about a scan does), so nothing is
    /// added around it and it is not repeated as a cause.
    #[error(transparent)]
    Process(ProcessFailure),
    /// The preprocessing parameters are invalid (checked before any scan is read).
    #[error(transparent)]
    Settings(#[from] preprocess::ConfigError),
    /// A cache entry could not be written.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The config could not be serialised for the key (the JSON error is the source).
    #[error("preprocessing config cannot be serialised for the cache key")]
    Config(#[from] serde_json::Error),
}

/// A scan the preprocessing function of [`prepare`] failed on ([`CacheError::Process`]). It
/// displays as the pipeline's error, which names the scan, and its source is that error's source,
/// so a printed chain says each thing once.
#[derive(Debug)]
pub struct ProcessFailure {
    /// The scan file.
    pub path: PathBuf,
    /// The preprocessing error, naming the scan.
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for ProcessFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ProcessFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl CacheError {
    /// The scan at fault when a scan could not be read or preprocessed (what
    /// [`PrepareOptions::skip_bad`] would have left out), else `None`.
    pub fn failed_scan(&self) -> Option<&Path> {
        match self {
            Self::Process(ProcessFailure { path, .. }) | Self::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}
