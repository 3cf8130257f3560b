//! `index.json`: the content hashes of scans by canonical path, size and modification time, and
//! which entries passed their checksum, so that a second `prepare` reads neither scans nor
//! entries. It is only a shortcut: a missing or unreadable index is an empty one.

use super::*;

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
    pub(super) fn of(meta: &fs::Metadata) -> Option<Self> {
        Self::at(meta.len(), meta.modified().ok()?)
    }

    /// The stamp of `size` bytes modified at `modified`, if the time is representable.
    pub(super) fn at(size: u64, modified: SystemTime) -> Option<Self> {
        let mtime_ns = match modified.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).ok()?,
            Err(before) => -i64::try_from(before.duration().as_nanos()).ok()?,
        };
        Some(Self { size, mtime_ns })
    }

    /// The stamp of `meta` if it may be recorded: modified at least [`RACY_WINDOW`] before
    /// `run_started`, so a later same-size rewrite is bound to change the time.
    pub(super) fn settled(meta: &fs::Metadata, run_started: SystemTime) -> Option<Self> {
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

    pub(super) fn empty() -> Self {
        Self {
            format: INDEX_FORMAT,
            ..Self::default()
        }
    }

    /// Applies `change` to the index at `path` as one step among processes: under an exclusive
    /// lock (`flock` on `.index.lock` next to it, which the kernel releases when a holder dies,
    /// so a killed process leaves no stale lock), the index is read afresh, changed and written
    /// atomically. So two `prepare`s sharing a cache, on one machine or on several over a shared
    /// file system, never lose each other's records, as a plain load-then-save would.
    pub(crate) fn update(path: &Path, change: impl FnOnce(&mut Index)) -> Result<(), CacheError> {
        let lock_path = path.with_file_name(INDEX_LOCK_FILE_NAME);
        let folder_error = |source| CacheError::Folder {
            path: lock_path.clone(),
            source,
        };
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(folder_error)?;
        match lock.lock() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => tracing::warn!(
                "{}: this file system has no file locks; concurrent prepares may lose index \
                 records (only a shortcut: the files are hashed again)",
                lock_path.display()
            ),
            Err(e) => return Err(folder_error(e)),
        }
        let mut index = Self::load(path);
        change(&mut index);
        let saved = index.save(path);
        // Closing the file releases the lock.
        drop(lock);
        saved
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
pub(super) struct Hashed {
    pub(super) content: [u8; 32],
    /// The canonical path as the index keys it (`None` for non-UTF-8 paths, never indexed).
    pub(super) index_key: Option<String>,
    /// What to store under `index_key` after hashing: `None` when the file is too fresh to index
    /// (a stale record is then dropped).
    pub(super) index_update: Option<IndexedFile>,
    pub(super) was_hashed: bool,
}

pub(super) fn hash_with_index(
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
