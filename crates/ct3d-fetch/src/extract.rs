//! Confined, atomic extraction of a class archive (`CT-0.zip` → `DIR/CT-0/`).
//!
//! Every entry is checked before a single byte is written: no `..`, no absolute path or drive
//! letter, no symbolic link or other special file, no encryption, only stored or deflate
//! compression, and sizes within [`ExtractLimits`]. The files are then written into a fresh hidden
//! folder next to the destination, counting the bytes actually produced (a header that lies about
//! its size is caught too), and the folder is renamed into place only when everything succeeded.
//! On any error the hidden folder is removed: the destination is either absent, untouched, or
//! complete.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{FetchError, FetchObserver};

/// Default ceiling on the total bytes an archive may unpack to: 64 GiB (MosMedData's archives hold
/// 100 compressed scans each, far less).
pub const MAX_TOTAL_BYTES: u64 = 64 << 30;
/// Default ceiling on one entry's uncompressed/compressed size ratio. `.nii.gz` scans are already
/// compressed (ratio ≈ 1); deflate's best is about 1032:1.
pub const MAX_RATIO: u64 = 200;
/// Entries up to this many uncompressed bytes (1 MiB) are exempt from the ratio check: a small
/// text or empty-ish file may compress very well without being a bomb.
pub const RATIO_EXEMPT_BYTES: u64 = 1 << 20;
/// Default ceiling on the number of entries (MosMedData's archives hold about 100 each).
pub const MAX_ENTRIES: usize = 100_000;

/// Limits that stop zip bombs. [`Default`] gives the constants above; tests lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most bytes the archive may unpack to, declared and actually written.
    pub max_total_bytes: u64,
    /// Most uncompressed bytes per compressed byte of one entry.
    pub max_ratio: u64,
    /// Entries up to this many uncompressed bytes skip the ratio check.
    pub ratio_exempt_bytes: u64,
    /// Most entries (files and folders).
    pub max_entries: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: MAX_TOTAL_BYTES,
            max_ratio: MAX_RATIO,
            ratio_exempt_bytes: RATIO_EXEMPT_BYTES,
            max_entries: MAX_ENTRIES,
        }
    }
}

/// The result of [`extract_class_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The class folder now in place.
    pub folder: PathBuf,
    /// Files written.
    pub files: usize,
    /// Bytes written, in all.
    pub bytes: u64,
}

/// One file to write: its index in the archive and its path below the class folder.
struct Planned {
    index: usize,
    name: String,
    relative: Vec<String>,
    kind: Kind,
    size: u64,
    compressed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Folder,
}

/// Unpacks the class archive `archive` into the folder `dest`, whose name is the class (`CT-0`).
///
/// Accepted layouts: entries under a top-level `FOLDER/` (what the MosMedData archives hold, as
/// `CT-0/study_0001.nii.gz`), and `.nii`/`.nii.gz` files at the top, which go straight into
/// `dest`. macOS metadata (`__MACOSX/`, `.DS_Store`) is skipped. Anything else is
/// [`FetchError::UnexpectedLayout`].
///
/// If `dest` exists: an empty folder is replaced; otherwise `replace` must be true, and the old
/// folder is swapped out and deleted only after the new one is complete.
pub fn extract_class_archive(
    archive: &Path,
    dest: &Path,
    limits: &ExtractLimits,
    replace: bool,
    observer: &dyn FetchObserver,
) -> Result<Extracted, FetchError> {
    let folder = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            FetchError::io(
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "not a folder name"),
            )
        })?
        .to_owned();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if dest.exists() && !replace && !is_empty_dir(dest)? {
        return Err(FetchError::NotEmpty {
            folder: dest.to_owned(),
        });
    }

    let file = File::open(archive).map_err(|e| FetchError::io(archive, e))?;
    let bad = |detail: String| FetchError::BadArchive {
        archive: archive.to_owned(),
        detail,
    };
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let plan = plan(&mut zip, archive, &folder, limits)?;

    observer.extracting(archive, dest);
    remove_stale_staging(&parent, &folder);
    let staging = Staging::create(&parent, &folder)?;
    let mut total = 0u64;
    let mut files = 0usize;
    for entry in &plan {
        let mut path = staging.path.clone();
        path.extend(&entry.relative);
        if entry.kind == Kind::Folder {
            fs::create_dir_all(&path).map_err(|e| FetchError::io(&path, e))?;
            continue;
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| FetchError::io(dir, e))?;
        }
        let mut out = File::create_new(&path).map_err(|e| FetchError::io(&path, e))?;
        let mut reader = zip
            .by_index(entry.index)
            .map_err(|e| bad(format!("entry {:?}: {e}", entry.name)))?;
        total = copy_limited(&mut reader, &mut out, entry, total, limits, archive, &path)?;
        drop(reader);
        out.sync_all().map_err(|e| FetchError::io(&path, e))?;
        files += 1;
    }
    staging.commit(dest, replace)?;
    observer.extracted(dest, files, total);
    Ok(Extracted {
        folder: dest.to_owned(),
        files,
        bytes: total,
    })
}

/// Checks every entry and decides where it goes, without decompressing anything.
fn plan<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    archive: &Path,
    folder: &str,
    limits: &ExtractLimits,
) -> Result<Vec<Planned>, FetchError> {
    let too_large = |detail: String| FetchError::TooLarge {
        archive: archive.to_owned(),
        detail,
    };
    let unsafe_entry = |entry: &str, reason: &str| FetchError::UnsafeEntry {
        archive: archive.to_owned(),
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    if zip.len() > limits.max_entries {
        return Err(too_large(format!(
            "{} entries, more than the limit of {}",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut planned = Vec::new();
    let mut seen = HashSet::new();
    let mut declared_total = 0u64;
    for index in 0..zip.len() {
        let entry = zip
            .by_index_raw(index)
            .map_err(|e| FetchError::BadArchive {
                archive: archive.to_owned(),
                detail: format!("entry {index}: {e}"),
            })?;
        let name = entry.name().to_owned();
        let components = safe_components(&name).map_err(|reason| unsafe_entry(&name, reason))?;
        match entry.unix_mode().map(|m| m & 0o170_000) {
            None | Some(0) | Some(0o100_000) | Some(0o040_000) => {}
            Some(0o120_000) => return Err(unsafe_entry(&name, "symbolic link")),
            Some(_) => return Err(unsafe_entry(&name, "not a plain file or folder")),
        }
        if entry.encrypted() {
            return Err(FetchError::BadArchive {
                archive: archive.to_owned(),
                detail: format!("entry {name:?} is encrypted"),
            });
        }
        let kind = if entry.is_dir() {
            Kind::Folder
        } else {
            Kind::File
        };
        if kind == Kind::File
            && !matches!(
                entry.compression(),
                zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
            )
        {
            return Err(FetchError::BadArchive {
                archive: archive.to_owned(),
                detail: format!(
                    "entry {name:?} is compressed with {}, only stored and deflate are supported",
                    entry.compression()
                ),
            });
        }

        // Where does it go?
        let Some(first) = components.first() else {
            continue; // "./"
        };
        if first == "__MACOSX" || components.last().is_some_and(|c| c == ".DS_Store") {
            continue;
        }
        let relative: Vec<String> = if first == folder {
            components[1..].to_vec()
        } else if components.len() == 1
            && kind == Kind::File
            && (first.ends_with(".nii.gz") || first.ends_with(".nii"))
        {
            components.clone()
        } else {
            return Err(FetchError::UnexpectedLayout {
                archive: archive.to_owned(),
                folder: folder.to_owned(),
                detail: format!(
                    "found {name:?}; expected entries under {folder}/ or .nii.gz files at the top"
                ),
            });
        };
        if relative.is_empty() {
            continue; // the class folder itself
        }
        if kind == Kind::File && !seen.insert(relative.clone()) {
            return Err(unsafe_entry(&name, "the same file appears twice"));
        }

        let (size, compressed) = (entry.size(), entry.compressed_size());
        if kind == Kind::File {
            if size > limits.ratio_exempt_bytes
                && size > compressed.saturating_mul(limits.max_ratio)
            {
                return Err(too_large(format!(
                    "entry {name:?} expands from {compressed} to {size} bytes, more than {}:1",
                    limits.max_ratio
                )));
            }
            declared_total = declared_total.saturating_add(size);
            if declared_total > limits.max_total_bytes {
                return Err(too_large(format!(
                    "the entries add up to more than {} bytes",
                    limits.max_total_bytes
                )));
            }
        }
        planned.push(Planned {
            index,
            name,
            relative,
            kind,
            size,
            compressed,
        });
    }
    if !planned.iter().any(|p| p.kind == Kind::File) {
        return Err(FetchError::UnexpectedLayout {
            archive: archive.to_owned(),
            folder: folder.to_owned(),
            detail: "no files in it".to_owned(),
        });
    }
    Ok(planned)
}

/// The entry name's path components, or why it is unsafe. `/` and `\` both separate (archives
/// made on Windows use either); empty and `.` components are dropped.
fn safe_components(name: &str) -> Result<Vec<String>, &'static str> {
    if name.contains('\0') {
        return Err("NUL byte in the name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute path");
    }
    let mut components = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err("parent folder (..) in the path"),
            p if p.len() >= 2 && p.as_bytes()[1] == b':' && components.is_empty() => {
                return Err("absolute path (drive letter)");
            }
            p => components.push(p.to_owned()),
        }
    }
    Ok(components)
}

/// Copies one entry, stopping as soon as it exceeds its declared size, the ratio limit, or the
/// archive's total limit. Returns the new running total of bytes written.
fn copy_limited(
    reader: &mut impl Read,
    out: &mut File,
    entry: &Planned,
    mut total: u64,
    limits: &ExtractLimits,
    archive: &Path,
    path: &Path,
) -> Result<u64, FetchError> {
    let too_large = |detail: String| FetchError::TooLarge {
        archive: archive.to_owned(),
        detail,
    };
    let ratio_cap = if entry.size <= limits.ratio_exempt_bytes {
        u64::MAX
    } else {
        entry.compressed.max(1).saturating_mul(limits.max_ratio)
    }
    .max(limits.ratio_exempt_bytes);
    let mut written = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::BadArchive {
                    archive: archive.to_owned(),
                    detail: format!("entry {:?}: {e}", entry.name),
                });
            }
        };
        written += n as u64;
        total += n as u64;
        if written > entry.size {
            return Err(too_large(format!(
                "entry {:?} unpacks to more than its declared {} bytes",
                entry.name, entry.size
            )));
        }
        if written > ratio_cap {
            return Err(too_large(format!(
                "entry {:?} expands beyond {}:1",
                entry.name, limits.max_ratio
            )));
        }
        if total > limits.max_total_bytes {
            return Err(too_large(format!(
                "the entries unpack to more than {} bytes",
                limits.max_total_bytes
            )));
        }
        out.write_all(&buffer[..n])
            .map_err(|e| FetchError::io(path, e))?;
    }
    if written != entry.size {
        return Err(FetchError::BadArchive {
            archive: archive.to_owned(),
            detail: format!(
                "entry {:?} unpacks to {written} bytes, its header says {}",
                entry.name, entry.size
            ),
        });
    }
    Ok(total)
}

fn is_empty_dir(path: &Path) -> Result<bool, FetchError> {
    match fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(FetchError::io(path, e)),
    }
}

/// Whether `path` is a folder with at least one entry.
pub(crate) fn has_content(path: &Path) -> Result<bool, FetchError> {
    if !path.exists() {
        return Ok(false);
    }
    Ok(!is_empty_dir(path)?)
}

/// A hidden folder next to the destination that is deleted unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates `PARENT/.FOLDER.partial-PID-N` (with the usual permissions, unlike a temp dir).
    fn create(parent: &Path, folder: &str) -> Result<Self, FetchError> {
        let path = unique_sibling(parent, folder, "partial", |p| fs::create_dir(p))?;
        Ok(Self {
            path,
            committed: false,
        })
    }

    /// Moves the staged folder to `dest`, swapping out (then deleting) what was there.
    fn commit(mut self, dest: &Path, replace: bool) -> Result<(), FetchError> {
        let parent = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let folder = dest.file_name().unwrap_or_default().to_string_lossy();
        let mut old = None;
        if fs::symlink_metadata(dest).is_ok() {
            if is_empty_dir(dest)? {
                fs::remove_dir(dest).map_err(|e| FetchError::io(dest, e))?;
            } else if replace {
                let trash = unique_sibling(&parent, &folder, "old", |p| fs::rename(dest, p))?;
                old = Some(trash);
            } else {
                return Err(FetchError::io(
                    dest,
                    io::Error::new(io::ErrorKind::AlreadyExists, "already exists"),
                ));
            }
        }
        if let Err(e) = fs::rename(&self.path, dest) {
            if let Some(old) = &old {
                // Put the previous folder back.
                let _ = fs::rename(old, dest);
            }
            return Err(FetchError::io(dest, e));
        }
        self.committed = true;
        if let Some(old) = old {
            let removed = if old.is_dir() {
                fs::remove_dir_all(&old)
            } else {
                fs::remove_file(&old)
            };
            removed.map_err(|e| FetchError::io(&old, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Deletes `PARENT/.FOLDER.partial-PID-N` folders left by runs that were killed while unpacking
/// (their process is gone). Only on Linux, where `/proc` tells which processes are alive.
fn remove_stale_staging(parent: &Path, folder: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let prefix = format!(".{folder}.partial-");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            tracing::debug!(
                "removing {}, left by an interrupted run",
                entry.path().display()
            );
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `make` on `PARENT/.FOLDER.TAG-PID-N` for increasing N until it does not collide.
fn unique_sibling(
    parent: &Path,
    folder: &str,
    tag: &str,
    mut make: impl FnMut(&Path) -> io::Result<()>,
) -> Result<PathBuf, FetchError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{folder}.{tag}-{}-{n}", std::process::id()));
        match make(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => continue,
            Err(e) => return Err(FetchError::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(
            safe_components("CT-0/a.nii.gz").unwrap(),
            vec!["CT-0", "a.nii.gz"]
        );
        assert_eq!(safe_components("./CT-0//a").unwrap(), vec!["CT-0", "a"]);
        assert!(safe_components("../evil").is_err());
        assert!(safe_components("CT-0/../../evil").is_err());
        assert!(safe_components("CT-0\\..\\evil").is_err());
        assert!(safe_components("/etc/passwd").is_err());
        assert!(safe_components("\\evil").is_err());
        assert!(safe_components("C:/evil").is_err());
        assert!(safe_components("a\0b").is_err());
    }
}
