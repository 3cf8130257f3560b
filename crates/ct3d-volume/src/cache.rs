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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Volume;
use crate::dataset::Dataset;
use crate::preprocess::{self, PreprocessConfig};
use crate::volume::{Affine, Provenance};

/// `"<path>: <error>"`, or just the error when its message already names the path.
// A private copy of what synth.rs used to export (issue 12 item 4 removes it there); the branch
// that reworks cache.rs's errors removes this one.
fn describe_with_path(path: &Path, error: &dyn std::fmt::Display) -> String {
    let message = error.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        message
    } else {
        format!("{shown}: {message}")
    }
}

/// Version of the entry layout and key derivation; bump it when preprocessing output changes so
/// old entries stop matching.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// Files modified more recently than this before a run are hashed every time (see module docs).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The index file inside the cache folder.
pub const INDEX_FILE_NAME: &str = "index.json";

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

/// Progress reports from [`prepare`], sent from worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareEvent<'a> {
    /// Sent first: this many dataset items will each get one of the other events.
    Started {
        /// Number of dataset items.
        items: usize,
    },
    /// The item's result was already cached.
    Hit {
        /// The scan file.
        source: &'a Path,
    },
    /// The item was preprocessed and cached by this run.
    Processed {
        /// The scan file.
        source: &'a Path,
    },
    /// The item failed (only with [`PrepareOptions::skip_bad`]; otherwise the run fails).
    Failed {
        /// The scan file.
        source: &'a Path,
        /// The one-line error.
        error: &'a str,
    },
}

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
    /// The one-line error, naming the file.
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

/// Why a cache entry could not be used. Displays as one line naming the entry file.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The entry file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a ct3d cache entry of this version, or its header is implausible.
    #[error("{}: not a valid ct3d cache entry ({reason})", path.display())]
    Invalid {
        /// The entry file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file has the wrong length: truncated or appended to.
    #[error(
        "{}: cache entry is {found} bytes but its header needs {expected} (truncated or corrupt)",
        path.display()
    )]
    Length {
        /// The entry file.
        path: PathBuf,
        /// Length implied by the header.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// The checksum does not match the contents.
    #[error("{}: cache entry checksum mismatch (corrupt; prepare again to rebuild it)", path.display())]
    Checksum {
        /// The entry file.
        path: PathBuf,
    },
    /// [`CacheEntry::read_into`] was given a buffer of the wrong length.
    #[error("{}: entry holds {expected} voxels but the buffer has {found}", path.display())]
    BufferSize {
        /// The entry file.
        path: PathBuf,
        /// Voxels in the entry.
        expected: usize,
        /// Buffer length.
        found: usize,
    },
}

/// Why [`prepare`] failed. Displays as one line naming the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A scan could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The scan.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The cache folder or its index could not be created or written (a read-only dataset, say).
    #[error(
        "{}: cannot create or write the preprocessing cache: {source}; pass --cache DIR to keep it elsewhere",
        path.display()
    )]
    Folder {
        /// The cache folder, or its index file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The preprocessing function failed on a scan.
    #[error("{}", describe_with_path(path, source.as_ref()))]
    Process {
        /// The scan file.
        path: PathBuf,
        /// The preprocessing error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A cache entry could not be written.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The config could not be serialised for the key.
    #[error("preprocessing config cannot be serialised for the cache key: {0}")]
    Config(#[from] serde_json::Error),
}

impl CacheError {
    /// The scan at fault when a scan could not be read or preprocessed (what
    /// [`PrepareOptions::skip_bad`] would have left out), else `None`.
    pub fn failed_scan(&self) -> Option<&Path> {
        match self {
            Self::Process { path, .. } | Self::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A preprocessed volume stored in the cache: its file and `[x, y, z]` shape, read from its header
/// so that a trainer can keep only these and load volumes on demand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheEntry {
    path: PathBuf,
    shape: [usize; 3],
}

/// The parsed fixed-size header.
struct Header {
    shape: [usize; 3],
    spacing: [f64; 3],
    affine: Affine,
}

impl CacheEntry {
    /// Byte offset of the first voxel in an entry file.
    pub const DATA_OFFSET: u64 = 192;

    /// Writes `volume` to `path` atomically in the entry format.
    pub fn write(path: &Path, volume: &Volume) -> Result<Self, EntryError> {
        let shape = volume.shape();
        let mut header = Vec::with_capacity(Self::DATA_OFFSET as usize);
        header.extend_from_slice(&ENTRY_MAGIC);
        header.extend_from_slice(&CACHE_FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for d in shape {
            header.extend_from_slice(&(d as u64).to_le_bytes());
        }
        for s in volume.spacing {
            header.extend_from_slice(&s.to_le_bytes());
        }
        for v in volume.affine.iter().flatten() {
            header.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(header.len() as u64, Self::DATA_OFFSET);

        crate::atomic::write_atomic(path, |w| {
            let mut checksum = Checksum::new();
            checksum.update(&header);
            w.write_all(&header)?;
            let mut bytes = Vec::with_capacity(IO_CHUNK);
            for chunk in volume.data().chunks(IO_CHUNK / 4) {
                bytes.clear();
                bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                checksum.update(&bytes);
                w.write_all(&bytes)?;
            }
            w.write_all(&(volume.len() as u64).to_le_bytes())?;
            w.write_all(&checksum.finish().to_le_bytes())
        })
        .map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            shape,
        })
    }

    /// Opens an entry, reading its header and checking the file length (not the checksum).
    pub fn open(path: &Path) -> Result<Self, EntryError> {
        let mut file = File::open(path).map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?;
        let (header, _) = read_header(path, &mut file)?;
        Ok(Self {
            path: path.to_owned(),
            shape: header.shape,
        })
    }

    /// The entry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `[x, y, z]` in voxels.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of voxels, `x · y · z`.
    pub fn voxel_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes of an entry file holding a volume of `shape` (`None` if it overflows).
    pub fn file_len(shape: [usize; 3]) -> Option<u64> {
        shape
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|data| data.checked_add(Self::DATA_OFFSET + TRAILER_LEN))
    }

    /// Reads the volume (with its spacing and affine), verifying length and checksum.
    pub fn load(&self) -> Result<Volume, EntryError> {
        let mut data = vec![0.0f32; self.voxel_count()];
        let header = self.read_checked(Some(&mut data))?;
        let mut volume =
            Volume::new(header.shape, data).map_err(|e| self.invalid(e.to_string()))?;
        volume.spacing = header.spacing;
        volume.affine = header.affine;
        volume.provenance = Provenance {
            path: Some(self.path.clone()),
            datatype: Some("float32".to_owned()),
        };
        Ok(volume)
    }

    /// Reads the voxels (`x` fastest) into `out`, which must hold exactly
    /// [`voxel_count`](Self::voxel_count) values, verifying length and checksum. Lets a trainer
    /// reuse one buffer instead of allocating a volume per read.
    pub fn read_into(&self, out: &mut [f32]) -> Result<(), EntryError> {
        if out.len() != self.voxel_count() {
            return Err(EntryError::BufferSize {
                path: self.path.clone(),
                expected: self.voxel_count(),
                found: out.len(),
            });
        }
        self.read_checked(Some(out)).map(|_| ())
    }

    /// Reads the whole entry and checks length and checksum without keeping the data.
    pub fn verify(&self) -> Result<(), EntryError> {
        self.read_checked(None).map(|_| ())
    }

    fn invalid(&self, reason: String) -> EntryError {
        EntryError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }

    fn read_checked(&self, mut out: Option<&mut [f32]>) -> Result<Header, EntryError> {
        let io_error = |source| EntryError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io_error)?;
        let (header, header_bytes) = read_header(&self.path, &mut file)?;
        if header.shape != self.shape {
            return Err(self.invalid(format!(
                "shape changed from {:?} to {:?} since it was opened",
                self.shape, header.shape
            )));
        }
        let mut checksum = Checksum::new();
        checksum.update(&header_bytes);
        let mut bytes = vec![0u8; IO_CHUNK];
        let mut done = 0usize;
        let total = self.voxel_count();
        while done < total {
            let count = (total - done).min(IO_CHUNK / 4);
            let chunk = &mut bytes[..count * 4];
            file.read_exact(chunk).map_err(io_error)?;
            checksum.update(chunk);
            if let Some(out) = out.as_deref_mut() {
                for (value, raw) in out[done..done + count]
                    .iter_mut()
                    .zip(chunk.chunks_exact(4))
                {
                    *value = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                }
            }
            done += count;
        }
        let (mut count, mut sum) = ([0u8; 8], [0u8; 8]);
        file.read_exact(&mut count).map_err(io_error)?;
        file.read_exact(&mut sum).map_err(io_error)?;
        if u64::from_le_bytes(count) != total as u64 || u64::from_le_bytes(sum) != checksum.finish()
        {
            return Err(EntryError::Checksum {
                path: self.path.clone(),
            });
        }
        Ok(header)
    }
}

/// Reads and validates the header, and checks that the file length matches it.
fn read_header(path: &Path, file: &mut File) -> Result<(Header, Vec<u8>), EntryError> {
    let invalid = |reason: &str| EntryError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let found = file
        .metadata()
        .map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    let mut bytes = vec![0u8; CacheEntry::DATA_OFFSET as usize];
    if found < CacheEntry::DATA_OFFSET + TRAILER_LEN {
        return Err(EntryError::Length {
            path: path.to_owned(),
            expected: CacheEntry::DATA_OFFSET + TRAILER_LEN,
            found,
        });
    }
    file.read_exact(&mut bytes)
        .map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes[..8] != ENTRY_MAGIC {
        return Err(invalid("bad magic"));
    }
    let u64_at = |offset: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[offset..offset + 8]);
        word
    };
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != CACHE_FORMAT_VERSION {
        return Err(invalid(&format!(
            "format version {version}, expected {CACHE_FORMAT_VERSION}"
        )));
    }
    let mut shape = [0usize; 3];
    for (axis, size) in shape.iter_mut().enumerate() {
        *size = usize::try_from(u64::from_le_bytes(u64_at(16 + 8 * axis)))
            .map_err(|_| invalid("implausible shape"))?;
    }
    let expected = CacheEntry::file_len(shape).ok_or_else(|| invalid("implausible shape"))?;
    if expected != found {
        return Err(EntryError::Length {
            path: path.to_owned(),
            expected,
            found,
        });
    }
    let spacing = [0, 1, 2].map(|i| f64::from_le_bytes(u64_at(40 + 8 * i)));
    let affine = [0, 1, 2, 3]
        .map(|row| [0, 1, 2, 3].map(|col| f64::from_le_bytes(u64_at(64 + 8 * (4 * row + col)))));
    Ok((
        Header {
            shape,
            spacing,
            affine,
        },
        bytes,
    ))
}

/// A fast 64-bit checksum over 4-byte words. Each step is a bijection of the state, so changing any
/// single word always changes the result; it guards against truncation and bit rot, not attacks.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Self(0x243F_6A88_85A3_08D3)
    }

    /// `bytes.len()` must be a multiple of 4 (headers and voxel chunks always are).
    fn update(&mut self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len() % 4, 0);
        for word in bytes.chunks_exact(4) {
            let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            self.0 = (self.0 ^ u64::from(w))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(23);
        }
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// SHA-256 of a file's bytes. For a DICOM series folder: SHA-256 of its DICOM files in name
/// order, each as its name, a 0 byte, its length (`u64` little-endian) and the SHA-256 of its
/// bytes (so renaming, adding, removing or changing a file changes the hash).
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut add = |hasher: &mut Sha256, path: &Path| -> io::Result<u64> {
        let mut file = File::open(path)?;
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            hasher.update(&buffer[..n]);
        }
    };
    if path.is_dir() {
        for file in crate::dicom::dicom_files(path)? {
            let name = file.file_name().unwrap_or_default();
            hasher.update(name.as_encoded_bytes());
            hasher.update([0u8]);
            let mut content = Sha256::new();
            let len = add(&mut content, &file)?;
            hasher.update(len.to_le_bytes());
            hasher.update(content.finalize());
        }
    } else {
        add(&mut hasher, path)?;
    }
    Ok(hasher.finalize().into())
}

/// The stamp of a scan: a file's own, or for a DICOM series folder the total size of its DICOM
/// files and the latest modification time among them and the folder; plus that time.
pub(crate) fn scan_stamp(
    path: &Path,
    meta: &fs::Metadata,
) -> io::Result<(Option<FileStamp>, Option<SystemTime>)> {
    if !meta.is_dir() {
        return Ok((FileStamp::of(meta), meta.modified().ok()));
    }
    let mut size = 0u64;
    let mut latest = meta.modified().ok();
    for file in crate::dicom::dicom_files(path)? {
        let meta = fs::metadata(&file)?;
        size += meta.len();
        latest = latest.max(meta.modified().ok());
    }
    Ok((latest.and_then(|m| FileStamp::at(size, m)), latest))
}

/// The cache key (64 hex digits) of a file with SHA-256 `content` preprocessed with `config`.
pub fn entry_key(content: &[u8; 32], config: &PreprocessConfig) -> Result<String, CacheError> {
    let params = serde_json::to_vec(config)?;
    let mut hasher = Sha256::new();
    hasher.update(KEY_TAG);
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update([0u8]);
    hasher.update(CACHE_FORMAT_VERSION.to_le_bytes());
    hasher.update(content);
    hasher.update(&params);
    Ok(hex::encode(hasher.finalize()))
}

/// A SHA-256 from its 64 hexadecimal digits (either case); `None` for anything else.
pub(crate) fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Index: content hashes of scans, and which entries have been checksummed

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    format: u32,
    /// Canonical scan path → its stamp and SHA-256 (hex).
    pub(crate) files: BTreeMap<String, IndexedFile>,
    /// Entry key → the stamp its file had when its checksum last passed.
    #[serde(default)]
    pub(crate) verified_entries: BTreeMap<String, FileStamp>,
    /// Entry key → the preprocessing parameters it was made with (the key is a hash, so this is
    /// the only place `ct3d cache info` can learn an entry's HU window from; caches written
    /// before it existed lack it).
    #[serde(default)]
    pub(crate) entry_configs: BTreeMap<String, PreprocessConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexedFile {
    #[serde(flatten)]
    pub(crate) stamp: FileStamp,
    pub(crate) sha256: String,
}

/// What tells a file changed without reading it: size in bytes and modification time in ns since
/// the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStamp {
    size: u64,
    mtime_ns: i64,
}

impl FileStamp {
    /// The stamp of `meta`, if its time is representable.
    fn of(meta: &fs::Metadata) -> Option<Self> {
        Self::at(meta.len(), meta.modified().ok()?)
    }

    /// The stamp of `size` bytes modified at `modified`, if the time is representable.
    fn at(size: u64, modified: SystemTime) -> Option<Self> {
        let mtime_ns = match modified.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).ok()?,
            Err(before) => -i64::try_from(before.duration().as_nanos()).ok()?,
        };
        Some(Self { size, mtime_ns })
    }

    /// The stamp of `meta` if it may be recorded: modified at least [`RACY_WINDOW`] before
    /// `run_started`, so a later same-size rewrite is bound to change the time.
    fn settled(meta: &fs::Metadata, run_started: SystemTime) -> Option<Self> {
        let modified = meta.modified().ok()?;
        (modified + RACY_WINDOW < run_started)
            .then(|| Self::of(meta))
            .flatten()
    }
}

impl Index {
    /// The index at `path`, or an empty one if it is missing or unreadable (it is only a shortcut).
    pub(crate) fn load(path: &Path) -> Self {
        let parsed = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Index>(&bytes).map_err(|e| e.to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Self::empty(),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(index) if index.format == INDEX_FORMAT => index,
            Ok(_) => Self::empty(),
            Err(e) => {
                tracing::warn!("{}: ignoring unreadable cache index: {e}", path.display());
                Self::empty()
            }
        }
    }

    fn empty() -> Self {
        Self {
            format: INDEX_FORMAT,
            ..Self::default()
        }
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), CacheError> {
        let json = serde_json::to_vec_pretty(self)?;
        crate::atomic::write_bytes_atomic(path, &json).map_err(|source| CacheError::Folder {
            path: path.to_owned(),
            source,
        })
    }
}

/// A scan's content hash and what to remember about it.
struct Hashed {
    content: [u8; 32],
    /// The canonical path as the index keys it (`None` for non-UTF-8 paths, never indexed).
    index_key: Option<String>,
    /// What to store under `index_key` after hashing: `None` when the file is too fresh to index
    /// (a stale record is then dropped).
    index_update: Option<IndexedFile>,
    was_hashed: bool,
}

fn hash_with_index(
    source: &Path,
    index: &Index,
    run_started: SystemTime,
) -> Result<Hashed, CacheError> {
    let io_error = |source_err| CacheError::Io {
        path: source.to_owned(),
        source: source_err,
    };
    let canonical = fs::canonicalize(source).map_err(io_error)?;
    let meta = fs::metadata(&canonical).map_err(io_error)?;
    let (stamp, modified) = scan_stamp(&canonical, &meta).map_err(io_error)?;
    let index_key = canonical.to_str().map(str::to_owned);
    if let Some(key) = &index_key
        && let Some(known) = index.files.get(key)
        && Some(known.stamp) == stamp
        && let Some(content) = unhex(&known.sha256)
    {
        return Ok(Hashed {
            content,
            index_key,
            index_update: None,
            was_hashed: false,
        });
    }
    let content = hash_file(&canonical).map_err(io_error)?;
    // Only a stamp modified at least RACY_WINDOW before the run may be recorded: a later
    // same-size rewrite is then bound to change the time.
    let settled = modified.is_some_and(|m| m + RACY_WINDOW < run_started);
    let index_update = stamp.filter(|_| settled).map(|stamp| IndexedFile {
        stamp,
        sha256: hex::encode(content),
    });
    Ok(Hashed {
        content,
        index_key,
        index_update,
        was_hashed: true,
    })
}

// ---------------------------------------------------------------------------------------------
// prepare

/// [`prepare`] with the real pipeline, [`preprocess::process_file`] with `options.config`.
pub fn prepare_default(
    dataset: &Dataset,
    cache_dir: &Path,
    options: &PrepareOptions,
    progress: impl Fn(PrepareEvent<'_>) + Sync,
) -> Result<PreparedDataset, CacheError> {
    prepare(
        dataset,
        cache_dir,
        options,
        |path| preprocess::process_file(path, &options.config),
        progress,
    )
}

/// A distinct key's entry and whether it was a cache hit, or its one-line error (skip_bad).
type KeyOutcome = Result<(CacheEntry, bool), String>;

/// What the index should remember about an entry's verification after this run.
#[derive(Debug, Clone, Copy)]
enum Verified {
    /// Trusted by its unchanged stamp: keep the record.
    Unchanged,
    /// Checksummed (or written) now: record this stamp, or none if the file is too fresh.
    Now(Option<FileStamp>),
}

/// Preprocesses every scan of `dataset` with `process` into `cache_dir` (created if needed), in
/// parallel, reusing entries whose key (file content + `options.config`) is already there.
///
/// `process` must be the pipeline `options.config` describes (it is injected so that tests and
/// other pipelines can use the cache); scans with identical bytes are processed once. An existing
/// entry is reused if its header and length are right and its checksum passed before while its
/// size and modification time stayed the same (else it is checksummed now, and rebuilt if bad).
/// Results are identical whatever the thread count. A scan that cannot be read or processed fails
/// the run with its path in the message, unless `options.skip_bad` is set: then it is reported in
/// `failures`.
pub fn prepare<E>(
    dataset: &Dataset,
    cache_dir: &Path,
    options: &PrepareOptions,
    process: impl Fn(&Path) -> Result<Volume, E> + Sync,
    progress: impl Fn(PrepareEvent<'_>) + Sync,
) -> Result<PreparedDataset, CacheError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let run_started = SystemTime::now();
    let dir_error = |source| CacheError::Folder {
        path: cache_dir.to_owned(),
        source,
    };
    fs::create_dir_all(cache_dir).map_err(dir_error)?;
    let tag = cache_dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        crate::atomic::write_bytes_atomic(&tag, CACHEDIR_TAG.as_bytes()).map_err(dir_error)?;
    }
    let items = dataset.items();
    progress(PrepareEvent::Started { items: items.len() });

    // 1. Content hashes, from the index where the file is unchanged.
    let index_path = cache_dir.join(INDEX_FILE_NAME);
    let mut index = Index::load(&index_path);
    let hashed: Vec<Result<Hashed, CacheError>> = items
        .par_iter()
        .map(|item| hash_with_index(&item.path, &index, run_started))
        .collect();
    let mut index_changed = false;
    let mut stats = PrepareStats::default();
    // Per item: its entry key and content hash, or its one-line error (skip_bad).
    let mut keys: Vec<Result<(String, [u8; 32]), String>> = Vec::with_capacity(items.len());
    for (item, result) in items.iter().zip(hashed) {
        match result {
            Ok(h) => {
                stats.hashed += usize::from(h.was_hashed);
                match (h.index_key, h.index_update) {
                    (Some(path), Some(record)) => {
                        index_changed |= index.files.get(&path) != Some(&record);
                        index.files.insert(path, record);
                    }
                    (Some(path), None) if h.was_hashed => {
                        index_changed |= index.files.remove(&path).is_some();
                    }
                    _ => {}
                }
                keys.push(Ok((entry_key(&h.content, &options.config)?, h.content)));
            }
            Err(e) if options.skip_bad => {
                let error = e.to_string();
                progress(PrepareEvent::Failed {
                    source: &item.path,
                    error: &error,
                });
                keys.push(Err(error));
            }
            Err(e) => return Err(e),
        }
    }
    let scans_before = index.files.len();
    index.files.retain(|path, _| Path::new(path).exists());
    index_changed |= index.files.len() != scans_before;
    if index_changed {
        // Saved now so that the hashing is not lost if processing fails below.
        index.save(&index_path)?;
    }

    // 2. One entry per distinct key: reuse it if valid, else compute it from its first item.
    let mut items_by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if let Ok((key, _)) = key {
            items_by_key
                .entry(key)
                .or_insert_with(|| {
                    unique.push(key);
                    Vec::new()
                })
                .push(i);
        }
    }
    let computed = AtomicUsize::new(0);
    let outcomes: Vec<(KeyOutcome, Verified)> = unique
        .par_iter()
        .map(|&key| {
            let members = &items_by_key[key];
            let path = cache_dir.join(format!("{key}.{ENTRY_EXTENSION}"));
            let trusted = (!options.verify_entries)
                .then(|| index.verified_entries.get(key))
                .flatten();
            let (outcome, verified) = match reusable_entry(&path, trusted, run_started) {
                Some((entry, verified)) => (Ok((entry, true)), verified),
                None => {
                    let source = &items[members[0]].path;
                    let written = process(source)
                        .map_err(|e| CacheError::Process {
                            path: source.clone(),
                            source: Box::new(e),
                        })
                        .and_then(|volume| Ok(CacheEntry::write(&path, &volume)?));
                    match written {
                        Ok(entry) => {
                            computed.fetch_add(1, Ordering::Relaxed);
                            (Ok((entry, false)), Verified::Now(None))
                        }
                        Err(e) if options.skip_bad => (Err(e.to_string()), Verified::Now(None)),
                        Err(e) => return Err(e),
                    }
                }
            };
            for &i in members {
                let source = &items[i].path;
                progress(match &outcome {
                    Ok((_, true)) => PrepareEvent::Hit { source },
                    Ok((_, false)) => PrepareEvent::Processed { source },
                    Err(error) => PrepareEvent::Failed { source, error },
                });
            }
            Ok((outcome, verified))
        })
        .collect::<Result<_, CacheError>>()?;
    stats.computed = computed.into_inner();

    // Remember which entries passed their checksum, forgetting rebuilt and deleted ones, and
    // which parameters made each entry.
    let verified_before = index.verified_entries.clone();
    let configs_before = index.entry_configs.clone();
    for (&key, (outcome, verified)) in unique.iter().zip(&outcomes) {
        if outcome.is_ok() && index.entry_configs.get(key) != Some(&options.config) {
            index
                .entry_configs
                .insert(key.to_owned(), options.config.clone());
        }
        match verified {
            Verified::Unchanged => {}
            Verified::Now(Some(stamp)) => {
                index.verified_entries.insert(key.to_owned(), *stamp);
            }
            Verified::Now(None) => {
                index.verified_entries.remove(key);
            }
        }
    }
    index
        .verified_entries
        .retain(|key, _| cache_dir.join(format!("{key}.{ENTRY_EXTENSION}")).exists());
    index
        .entry_configs
        .retain(|key, _| cache_dir.join(format!("{key}.{ENTRY_EXTENSION}")).exists());
    if index.verified_entries != verified_before || index.entry_configs != configs_before {
        index.save(&index_path)?;
    }

    // 3. Items in dataset order.
    let by_key: HashMap<&str, &KeyOutcome> = unique
        .iter()
        .copied()
        .zip(outcomes.iter().map(|(outcome, _)| outcome))
        .collect();
    let mut prepared = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for (item, key) in items.iter().zip(&keys) {
        let outcome = match key
            .as_ref()
            .map(|(key, content)| (by_key[key.as_str()], content))
        {
            Err(error) | Ok((Err(error), _)) => Err(error.clone()),
            Ok((Ok((entry, hit)), content)) => Ok((entry.clone(), *hit, hex::encode(content))),
        };
        match outcome {
            Ok((entry, cache_hit, sha256)) => {
                stats.hits += usize::from(cache_hit);
                prepared.push(PreparedItem {
                    source: item.path.clone(),
                    label: item.label,
                    entry,
                    cache_hit,
                    sha256,
                });
            }
            Err(error) => failures.push(PrepareFailure {
                source: item.path.clone(),
                label: item.label,
                error,
            }),
        }
    }
    stats.failed = failures.len();
    let [negative, positive] = dataset.class_names();
    Ok(PreparedDataset {
        cache_dir: cache_dir.to_owned(),
        class_names: [negative.to_owned(), positive.to_owned()],
        items: prepared,
        failures,
        stats,
    })
}

/// The entry at `path` if it exists and is sound, and how it was verified. Header and length are
/// always checked; the checksum too unless the file still has the `trusted` stamp it had when its
/// checksum last passed. A damaged entry is logged and `None` (it gets rebuilt).
fn reusable_entry(
    path: &Path,
    trusted: Option<&FileStamp>,
    run_started: SystemTime,
) -> Option<(CacheEntry, Verified)> {
    if !path.exists() {
        return None;
    }
    let checked = CacheEntry::open(path).and_then(|entry| {
        let meta = fs::metadata(path).map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?;
        if trusted.is_some() && trusted.copied() == FileStamp::of(&meta) {
            return Ok((entry, Verified::Unchanged));
        }
        entry.verify()?;
        Ok((entry, Verified::Now(FileStamp::settled(&meta, run_started))))
    });
    match checked {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::warn!("rebuilding damaged cache entry: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_detects_any_single_word_change() {
        let base: Vec<u8> = (0..64u8).collect();
        let mut reference = Checksum::new();
        reference.update(&base);
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 1;
            let mut c = Checksum::new();
            c.update(&changed);
            assert_ne!(c.finish(), reference.finish(), "byte {i}");
        }
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex(&hex::encode(bytes)), Some(bytes));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
        assert_eq!(unhex(&"AB".repeat(32)), Some([0xab; 32]), "either case");
        assert_eq!(unhex(&"ab".repeat(31)), None, "too short");
        assert_eq!(
            hex::encode([0x0f, 0xa0]),
            "0fa0",
            "keys are lowercase, two digits per byte"
        );
    }

    #[test]
    fn key_depends_on_content_and_every_parameter() {
        let config = PreprocessConfig::default();
        let a = entry_key(&[1; 32], &config).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, entry_key(&[1; 32], &config).unwrap());
        assert_ne!(a, entry_key(&[2; 32], &config).unwrap());
        let changed = [
            PreprocessConfig {
                hu_min: -999.0,
                ..config.clone()
            },
            PreprocessConfig {
                hu_max: 401.0,
                ..config.clone()
            },
            PreprocessConfig {
                size: [128, 128, 63],
                ..config.clone()
            },
        ];
        for other in changed {
            assert_ne!(a, entry_key(&[1; 32], &other).unwrap());
        }
    }
}
