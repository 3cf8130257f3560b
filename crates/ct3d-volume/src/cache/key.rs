//! The cache key: SHA-256 of a scan's bytes (a single file, or a series folder's files, as
//! [`crate::format::scan_files`] says), the stamp that tells it changed, and the key that
//! hashes the content with the preprocessing parameters ([`entry_key`]).

use super::*;

/// SHA-256 of a scan's bytes: a single-file scan's own; for a scan that is a folder (a DICOM
/// series) or several files (a header and its detached data), as [`crate::format::scan_files`]
/// says, SHA-256 of its files in that order, each as its name, a 0 byte, its length (`u64`
/// little-endian) and the SHA-256 of its bytes (so renaming, adding, removing or changing a file
/// changes the hash).
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
    match crate::format::scan_files(path)? {
        ScanFiles::Folder(files) | ScanFiles::Files(files) => {
            for file in files {
                let name = file.file_name().unwrap_or_default();
                hasher.update(name.as_encoded_bytes());
                hasher.update([0u8]);
                let mut content = Sha256::new();
                let len = add(&mut content, &file)?;
                hasher.update(len.to_le_bytes());
                hasher.update(content.finalize());
            }
        }
        ScanFiles::Single => {
            add(&mut hasher, path)?;
        }
    }
    Ok(hasher.finalize().into())
}

/// The stamp of a scan: a file's own, or for a scan that is a folder (a DICOM series) or several
/// files (a header and its data) the total size of its files and the latest modification time
/// among them and the path itself; plus that time.
pub(crate) fn scan_stamp(
    path: &Path,
    meta: &fs::Metadata,
) -> io::Result<(Option<FileStamp>, Option<SystemTime>)> {
    let (ScanFiles::Folder(files) | ScanFiles::Files(files)) = crate::format::scan_files(path)?
    else {
        return Ok((FileStamp::of(meta), meta.modified().ok()));
    };
    let mut size = 0u64;
    let mut latest = meta.modified().ok();
    for file in files {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::PreprocessParams;

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
            PreprocessParams {
                hu_min: -999.0,
                ..config.params()
            }
            .check()
            .unwrap(),
            PreprocessParams {
                hu_max: 401.0,
                ..config.params()
            }
            .check()
            .unwrap(),
            PreprocessParams {
                size: [128, 128, 63],
                ..config.params()
            }
            .check()
            .unwrap(),
        ];
        for other in changed {
            assert_ne!(a, entry_key(&[1; 32], &other).unwrap());
        }
    }
}
