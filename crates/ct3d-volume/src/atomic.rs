//! Atomic file output: every file ct3d writes appears whole or not at all, and stays there.
//!
//! Data is written to a hidden temporary file (`.<name>.tmp-<random>`, made by `tempfile`) in the
//! destination's own directory (so the final `rename` never crosses a filesystem), flushed and
//! synced, then renamed over the destination; on Unix the directory is then synced too, so that
//! the rename itself survives a power cut. A crash, a full disk or an error part-way leaves the
//! previous file untouched and removes the temporary file (except on `kill -9`, where a stale
//! `.name.tmp-*` may remain; it is never read).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes `path` atomically: `write` fills a buffered writer on a temporary file which is renamed to
/// `path` only if `write` and the flush/sync succeed; then the directory is synced (Unix).
pub fn write_atomic<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    // The `.name.tmp-` prefix marks it as ours: run folders and datasets skip such names.
    let prefix = format!(".{name}.tmp-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    // tempfile makes owner-only files (0600); outputs get the mode `File::create` gives them
    // (0666 less the umask), as they did before.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let (file, temp_path) = builder.tempfile_in(dir)?.into_parts();
    // `temp_path` removes the file when dropped, so every early return below cleans up.
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    write(&mut writer)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    temp_path.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Makes a rename in `dir` durable: the new name is in the directory's own data, which `rename`
/// does not sync.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file; its renames are journaled by NTFS.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn failed_write_keeps_old_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_bytes_atomic(&path, b"old").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn successful_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_bytes_atomic(&path, b"old").unwrap();
        write_bytes_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn temporary_file_is_hidden_next_to_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let mut seen = Vec::new();
        write_atomic(&path, |w| {
            seen = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            w.write_all(b"x")
        })
        .unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with(".out.bin.tmp-"), "{seen:?}");
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }

    /// Outputs are as readable as `File::create` makes them, not owner-only like a temporary file.
    #[cfg(unix)]
    #[test]
    fn output_has_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_bytes_atomic(&path, b"x").unwrap();
        let plain = dir.path().join("plain.bin");
        File::create(&plain).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
    }

    /// The directory can be opened and synced (a directory that cannot be opened is an error).
    #[cfg(unix)]
    #[test]
    fn directory_is_synced_after_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir(dir.path()).unwrap();
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }
}
