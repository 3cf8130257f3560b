//! One cache entry file (`<key>.vol`): writing it atomically, opening and checking its header
//! and length, loading it with its checksum verified ([`CacheEntry`], [`EntryError`]). The
//! layout is the table in the [module documentation](super).

use super::*;

/// Why a cache entry could not be used. Displays as one line naming the entry file.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Reading or writing failed (the I/O error is the source).
    #[error("{}", path.display())]
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

/// A preprocessed volume stored in the cache: its file and `[x, y, z]` shape, read from its header
/// so that a trainer can keep only these and load volumes on demand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheEntry {
    path: PathBuf,
    shape: [usize; 3],
}

/// The parsed fixed-size header.
pub(super) struct Header {
    pub(super) shape: [usize; 3],
    pub(super) spacing: [f64; 3],
    pub(super) affine: Affine,
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

    pub(super) fn invalid(&self, reason: String) -> EntryError {
        EntryError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }

    pub(super) fn read_checked(&self, mut out: Option<&mut [f32]>) -> Result<Header, EntryError> {
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
pub(super) fn read_header(path: &Path, file: &mut File) -> Result<(Header, Vec<u8>), EntryError> {
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
pub(super) struct Checksum(u64);

impl Checksum {
    pub(super) fn new() -> Self {
        Self(0x243F_6A88_85A3_08D3)
    }

    /// `bytes.len()` must be a multiple of 4 (headers and voxel chunks always are).
    pub(super) fn update(&mut self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len() % 4, 0);
        for word in bytes.chunks_exact(4) {
            let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            self.0 = (self.0 ^ u64::from(w))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(23);
        }
    }

    pub(super) fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
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
}
