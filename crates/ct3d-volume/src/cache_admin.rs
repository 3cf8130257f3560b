//! Seeing and freeing the `prepare` cache ([`crate::cache`]), and what a preparation would add to
//! it, without reading any scan or entry body.
//!
//! - [`cache_usage`] (`ct3d cache info`): the entries, their bytes, grouped by preprocessing
//!   parameters (the size from each entry's header; the HU window from the cache index, which
//!   records it since this version: older entries show it as unknown).
//! - [`clean_cache`] (`ct3d cache clean`): removes entries, except those of the sizes asked to
//!   keep. Only files the cache format owns are ever removed: `<64 hex digits>.vol` files in a
//!   folder that is a ct3d cache (it holds ct3d's `CACHEDIR.TAG` or an `index.json`). The scans'
//!   content hashes in the index are kept (they stay valid), the removed entries' records are
//!   dropped.
//! - [`plan_prepare`]: which scans of a dataset a `prepare` would still have to preprocess, from
//!   the index's content hashes and the entries' file lengths; a scan the index does not know
//!   (new, changed, or written in the last seconds) counts as to be computed.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::{
    CACHEDIR_TAG, CacheEntry, ENTRY_EXTENSION, INDEX_FILE_NAME, Index, entry_key, scan_stamp, unhex,
};
use crate::dataset::Dataset;
use crate::preprocess::PreprocessConfig;

/// Why a cache folder could not be inspected or cleaned. One line naming the path.
#[derive(Debug, thiserror::Error)]
pub enum CacheAdminError {
    /// Listing, reading or removing failed (the I/O error is the source).
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The folder does not look like a ct3d cache, so nothing in it is touched.
    #[error(
        "{}: not a ct3d preprocessing cache (no CACHEDIR.TAG written by ct3d and no index.json); nothing was touched",
        path.display()
    )]
    NotACache {
        /// The folder.
        path: PathBuf,
    },
    /// The updated index could not be written.
    #[error(transparent)]
    Index(#[from] crate::cache::CacheError),
}

/// Entries made with the same preprocessing parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheGroup {
    /// The volumes' `[x, y, z]` size (from the entry headers).
    pub size: [usize; 3],
    /// The HU window `[min, max]`, when the index recorded it.
    pub window: Option<[f32; 2]>,
    /// Number of entries.
    pub entries: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// What a cache folder holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CacheUsage {
    /// Valid entries, by size then window (unknown windows last within a size).
    pub groups: Vec<CacheGroup>,
    /// Entry files whose header or length is wrong (`prepare` rebuilds them), with their bytes.
    pub damaged: Vec<(PathBuf, u64)>,
    /// Bytes of everything else the cache owns (index, tag).
    pub other_bytes: u64,
}

impl CacheUsage {
    /// Number of entry files, damaged ones included.
    pub fn entries(&self) -> usize {
        self.groups.iter().map(|g| g.entries).sum::<usize>() + self.damaged.len()
    }

    /// Bytes of all entry files plus the index and tag.
    pub fn bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.bytes).sum::<u64>()
            + self.damaged.iter().map(|(_, b)| b).sum::<u64>()
            + self.other_bytes
    }
}

/// What [`clean_cache`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanReport {
    /// Entry files removed.
    pub removed: usize,
    /// Their bytes.
    pub freed: u64,
    /// Entry files kept.
    pub kept: usize,
    /// Their bytes.
    pub kept_bytes: u64,
}

/// Options of [`clean_cache`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanOptions {
    /// Keep the valid entries of these `[x, y, z]` sizes; everything else goes.
    pub keep_sizes: Vec<[usize; 3]>,
    /// Only report what would be removed.
    pub dry_run: bool,
}

/// One entry file found in a cache folder.
struct FoundEntry {
    key: String,
    path: PathBuf,
    bytes: u64,
    /// The header's shape, or `None` when the entry is damaged.
    shape: Option<[usize; 3]>,
}

/// Whether `name` is an entry file name: 64 lowercase hex digits and `.vol`.
fn entry_file_key(name: &str) -> Option<&str> {
    let key = name.strip_suffix(&format!(".{ENTRY_EXTENSION}"))?;
    (key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(key)
}

/// Checks that `dir` is a ct3d cache and lists its entry files.
fn find_entries(dir: &Path) -> Result<Vec<FoundEntry>, CacheAdminError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CacheAdminError::Io { path, source }
    };
    let listing = fs::read_dir(dir).map_err(io_error(dir))?;
    let tag_is_ours = fs::read_to_string(dir.join("CACHEDIR.TAG")).is_ok_and(|t| t == CACHEDIR_TAG);
    if !tag_is_ours && !dir.join(INDEX_FILE_NAME).is_file() {
        return Err(CacheAdminError::NotACache {
            path: dir.to_owned(),
        });
    }
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(entry_file_key) else {
            continue;
        };
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if !meta.is_file() {
            continue;
        }
        found.push(FoundEntry {
            key: key.to_owned(),
            shape: CacheEntry::open(&path).ok().map(|e| e.shape()),
            path,
            bytes: meta.len(),
        });
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// What the cache folder `dir` holds, grouped by preprocessing parameters. Reads only entry
/// headers and the index.
pub fn cache_usage(dir: &Path) -> Result<CacheUsage, CacheAdminError> {
    let found = find_entries(dir)?;
    let index = Index::load(&dir.join(INDEX_FILE_NAME));
    let mut usage = CacheUsage::default();
    // Window bits as the grouping key: f32 is not Ord, and equal windows have equal bits.
    let mut groups: BTreeMap<([usize; 3], Option<[u32; 2]>), CacheGroup> = BTreeMap::new();
    for entry in found {
        let Some(size) = entry.shape else {
            usage.damaged.push((entry.path, entry.bytes));
            continue;
        };
        let window = index
            .entry_configs
            .get(&entry.key)
            .map(|c| [c.hu_min, c.hu_max]);
        let group = groups
            .entry((size, window.map(|w| w.map(f32::to_bits))))
            .or_insert(CacheGroup {
                size,
                window,
                entries: 0,
                bytes: 0,
            });
        group.entries += 1;
        group.bytes += entry.bytes;
    }
    usage.groups = groups.into_values().collect();
    // Known windows first within a size; then by window value.
    usage.groups.sort_by(|a, b| {
        a.size
            .cmp(&b.size)
            .then_with(|| match (a.window, b.window) {
                (Some(x), Some(y)) => x[0].total_cmp(&y[0]).then(x[1].total_cmp(&y[1])),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
    for name in [INDEX_FILE_NAME, "CACHEDIR.TAG"] {
        usage.other_bytes += fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    }
    Ok(usage)
}

/// Removes the entries of the cache folder `dir` except valid ones whose size is in
/// `options.keep_sizes` (damaged entries always go: `prepare` would rebuild them anyway), and
/// forgets them in the index. Nothing but entry files is removed; see the module docs.
pub fn clean_cache(dir: &Path, options: &CleanOptions) -> Result<CleanReport, CacheAdminError> {
    let found = find_entries(dir)?;
    let mut report = CleanReport::default();
    let mut removed_keys = HashSet::new();
    for entry in found {
        let keep = entry
            .shape
            .is_some_and(|shape| options.keep_sizes.contains(&shape));
        if keep {
            report.kept += 1;
            report.kept_bytes += entry.bytes;
            continue;
        }
        if !options.dry_run {
            match fs::remove_file(&entry.path) {
                Ok(()) => {}
                // Gone meanwhile (another clean): nothing freed by us.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CacheAdminError::Io {
                        path: entry.path,
                        source,
                    });
                }
            }
        }
        report.removed += 1;
        report.freed += entry.bytes;
        removed_keys.insert(entry.key);
    }
    let index_path = dir.join(INDEX_FILE_NAME);
    if !options.dry_run && !removed_keys.is_empty() && index_path.is_file() {
        Index::update(&index_path, |index| {
            index
                .verified_entries
                .retain(|k, _| !removed_keys.contains(k));
            index.entry_configs.retain(|k, _| !removed_keys.contains(k));
        })?;
    }
    Ok(report)
}

/// What a `prepare` of a dataset would do to the cache, estimated without reading scans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparePlan {
    /// Scans in the dataset.
    pub items: usize,
    /// Scans whose entry is known to be in the cache already.
    pub cached: usize,
    /// Scans that would be preprocessed (distinct contents once, when the index knows them).
    pub to_compute: Vec<PathBuf>,
}

impl PreparePlan {
    /// Bytes the entries of [`to_compute`](Self::to_compute) would add for volumes of `size`.
    pub fn bytes_to_add(&self, size: [usize; 3]) -> u64 {
        CacheEntry::file_len(size)
            .unwrap_or(u64::MAX)
            .saturating_mul(self.to_compute.len() as u64)
    }
}

/// Which scans of `dataset` a `prepare` into `cache_dir` with `config` would still have to
/// preprocess. A scan counts as cached when the index knows its content hash for its current
/// size and modification time and the entry for that hash and `config` exists with the right
/// length; anything else (no index, a new or changed scan) counts as to be computed, so the
/// estimate errs on the side of more work. Reads file metadata and the index only.
pub fn plan_prepare(dataset: &Dataset, cache_dir: &Path, config: &PreprocessConfig) -> PreparePlan {
    let index = if cache_dir.join(INDEX_FILE_NAME).is_file() {
        Index::load(&cache_dir.join(INDEX_FILE_NAME))
    } else {
        Index::default()
    };
    let expected_len = CacheEntry::file_len(config.size);
    let mut plan = PreparePlan {
        items: dataset.len(),
        ..PreparePlan::default()
    };
    let mut keys = HashSet::new();
    for item in dataset.items() {
        match known_key(&item.path, &index, config) {
            // Same content as an earlier scan: one entry serves both.
            Some(key) if !keys.insert(key.clone()) => plan.cached += 1,
            Some(key) => {
                let entry = cache_dir.join(format!("{key}.{ENTRY_EXTENSION}"));
                let present = fs::metadata(&entry).is_ok_and(|m| Some(m.len()) == expected_len);
                if present {
                    plan.cached += 1;
                } else {
                    plan.to_compute.push(item.path.clone());
                }
            }
            None => plan.to_compute.push(item.path.clone()),
        }
    }
    plan
}

/// The entry key of `scan` if the index knows its content for its current stamp.
fn known_key(scan: &Path, index: &Index, config: &PreprocessConfig) -> Option<String> {
    let canonical = fs::canonicalize(scan).ok()?;
    let meta = fs::metadata(&canonical).ok()?;
    let (stamp, _) = scan_stamp(&canonical, &meta).ok()?;
    let known = index.files.get(canonical.to_str()?)?;
    if Some(known.stamp) != stamp {
        return None;
    }
    entry_key(&unhex(&known.sha256)?, config).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_named_vol_files_are_entries() {
        let key = "0123456789abcdef".repeat(4);
        assert_eq!(entry_file_key(&format!("{key}.vol")), Some(key.as_str()));
        assert_eq!(entry_file_key(&format!("{}.vol", key.to_uppercase())), None);
        assert_eq!(entry_file_key(&format!("{key}.vol.tmp")), None);
        assert_eq!(entry_file_key(&format!("{}.vol", &key[1..])), None);
        assert_eq!(entry_file_key("scan.vol"), None);
        assert_eq!(entry_file_key("index.json"), None);
    }
}
