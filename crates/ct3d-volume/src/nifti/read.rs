//! Reading voxels: locating the header and image files (single file or `.hdr`/`.img` pair),
//! streaming their (possibly gzipped) bytes with size checks, and converting stored samples to
//! `f32` with nibabel's scaling ([`read_volume`]).

use super::*;

/// Reads a NIfTI-1 or NIfTI-2 file (`.nii`, `.nii.gz`, `.hdr`/`.img`) or an Analyze 7.5
/// `.hdr`/`.img` pair into a [`Volume`] of Hounsfield units (scaling applied), in nibabel's
/// `get_fdata()` order.
///
/// `volume.get(x, y, z)` equals `np.float32(nib.load(path).get_fdata()[x, y, z])`; see the
/// [module documentation](super) for scaling, geometry, shape and NaN policies.
pub fn read_volume(path: &Path) -> Result<Volume, ReadError> {
    let (header_path, data_path) = locate(path)?;
    let mut header_stream = Stream::open(&header_path, true)?;
    let header = read_header_block(&mut header_stream, data_path.is_some())?;
    check_no_spm_mat(&header, &header_path)?;
    let layout = Layout::from_header(&header, &header_path)?;

    let mut data_stream = match &data_path {
        Some(data_path) => Stream::open(data_path, true)?,
        None => header_stream,
    };
    let voxel_bytes = layout.voxel_count as u64 * layout.datatype.size() as u64;
    data_stream.check_room(layout.vox_offset, voxel_bytes)?;
    data_stream.skip_to(layout.vox_offset, voxel_bytes)?;

    let mut data = vec![0.0f32; layout.voxel_count];
    advise_huge_pages(&mut data);
    read_voxels(
        &mut data_stream,
        &mut data,
        &layout,
        layout.vox_offset + voxel_bytes,
    )?;
    data_stream.finish()?;

    let mut volume = Volume::new(layout.shape, data).map_err(|e| ReadError::InvalidDims {
        path: header_path.clone(),
        dim: Box::new(layout.dim),
        reason: e.to_string(),
    })?;
    volume.spacing = layout.spacing;
    volume.affine = layout.affine;
    volume.provenance = Provenance {
        path: Some(path.to_owned()),
        datatype: Some(layout.datatype.name().to_owned()),
    };
    Ok(volume)
}

/// Asks Linux to back the 2 MiB-aligned part of `buffer` with transparent huge pages, as numpy
/// does for its large arrays. Faulting in a fresh 50 MB buffer 4 KiB at a time costs about
/// 20 ms (a third of a typical read); huge pages remove most of that. The advice is optional:
/// where it is refused or THP is off, nothing changes.
#[cfg(target_os = "linux")]
pub(super) fn advise_huge_pages(buffer: &mut [f32]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = buffer.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(buffer);
    let (aligned_start, aligned_end) = (
        start.next_multiple_of(HUGE_PAGE),
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if aligned_end > aligned_start {
        // SAFETY: the range lies inside `buffer`, which this function borrows mutably, and
        // MADV_HUGEPAGE only changes how the kernel backs the pages, never their contents.
        unsafe {
            libc::madvise(
                aligned_start as *mut libc::c_void,
                aligned_end - aligned_start,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn advise_huge_pages(_buffer: &mut [f32]) {}

/// Inflates or reads the next `out.len()` voxels of `stream` and converts them into `out`, one
/// cache-sized chunk at a time.
pub(super) fn read_voxels(
    stream: &mut Stream,
    out: &mut [f32],
    layout: &Layout,
    needed: u64,
) -> Result<(), ReadError> {
    let size = layout.datatype.size();
    let voxels_per_chunk = (CHUNK_BYTES / size).min(out.len()).max(1);
    let mut chunk = vec![0u8; voxels_per_chunk * size];
    for out in out.chunks_mut(voxels_per_chunk) {
        let bytes = &mut chunk[..out.len() * size];
        stream.fill(bytes, needed)?;
        convert(
            bytes,
            out,
            layout.datatype,
            layout.byte_order,
            layout.scaling,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Locating files and streaming their bytes

/// The header file for `path` and, for a `.hdr`/`.img` pair (an `.img` name, or a header with
/// the pair magic `ni1`), the image file; a missing half is an error.
pub(super) fn locate(path: &Path) -> Result<(PathBuf, Option<PathBuf>), ReadError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let stem_len = |suffix: &str| name.len() - suffix.len();
    if let Some(suffix) = [".img.gz", ".img"].into_iter().find(|s| lower.ends_with(s)) {
        check_is_file(path)?;
        let stem = &name[..stem_len(suffix)];
        let header = companion(path, stem, &["hdr", "hdr.gz"]).ok_or_else(|| {
            ReadError::MissingCompanion {
                path: path.to_owned(),
                companion: path.with_file_name(format!("{stem}.hdr")),
            }
        })?;
        return Ok((header, Some(path.to_owned())));
    }
    check_is_file(path)?;
    if is_pair_header(path)? {
        let suffix = [".hdr.gz", ".hdr"]
            .into_iter()
            .find(|s| lower.ends_with(s))
            .unwrap_or("");
        let stem = &name[..stem_len(suffix)];
        let image = locate_image(path, stem)?;
        return Ok((path.to_owned(), Some(image)));
    }
    Ok((path.to_owned(), None))
}

/// The files a NIfTI scan's bytes are in: the header first, then the `.img` of a pair (for the
/// `prepare` cache's hash, so that editing either half is noticed). `None` when the path cannot
/// be located (reading it will say why).
pub fn scan_files(path: &Path) -> Option<Vec<PathBuf>> {
    let (header, image) = locate(path).ok()?;
    Some(std::iter::once(header).chain(image).collect())
}

/// The `.img` (or `.img.gz`) next to a pair header.
pub(super) fn locate_image(header: &Path, stem: &str) -> Result<PathBuf, ReadError> {
    companion(header, stem, &["img", "img.gz"]).ok_or_else(|| ReadError::MissingCompanion {
        path: header.to_owned(),
        companion: header.with_file_name(format!("{stem}.img")),
    })
}

/// The first existing `stem.EXT` next to `path`, trying each extension in lower then upper case.
pub(super) fn companion(path: &Path, stem: &str, extensions: &[&str]) -> Option<PathBuf> {
    extensions
        .iter()
        .flat_map(|ext| [ext.to_string(), ext.to_ascii_uppercase()])
        .map(|ext| path.with_file_name(format!("{stem}.{ext}")))
        .find(|candidate| candidate.is_file())
}

/// Whether `path` holds a header whose voxels are in a separate `.img`: the pair magic `ni1` or
/// `ni2`, or (for a `.hdr` name, where nibabel looks for Analyze) a 348-byte header without
/// NIfTI-1 magic. Any problem reading it is left for the full header read to report.
pub(super) fn is_pair_header(path: &Path) -> Result<bool, ReadError> {
    let mut stream = Stream::open(path, false)?;
    let mut block = [0u8; HEADER_SIZE];
    if !matches!(stream.read_up_to(&mut block), Ok(HEADER_SIZE)) {
        return Ok(false);
    }
    let sizeof_hdr = i32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let size_is = |n: usize| sizeof_hdr == n as i32 || sizeof_hdr.swap_bytes() == n as i32;
    if size_is(NIFTI2_HEADER_SIZE) {
        return Ok(&block[4..8] == b"ni2\0");
    }
    let magic = &block[344..348];
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let hdr_name = lower.ends_with(".hdr") || lower.ends_with(".hdr.gz");
    Ok(size_is(HEADER_SIZE) && (magic == b"ni1\0" || (hdr_name && magic != b"n+1\0")))
}

/// nibabel's SPM Analyze reader takes the affine from a non-empty `.mat` file beside the pair
/// (SPM's `M` or `mat` variable, a MATLAB file); ct3d does not read MATLAB files, so rather than
/// silently use a different geometry it refuses such a pair.
pub(super) fn check_no_spm_mat(header: &Header, header_path: &Path) -> Result<(), ReadError> {
    if header.format != Format::Analyze {
        return Ok(());
    }
    let name = header_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let suffix_len = if lower.ends_with(".hdr.gz") { 7 } else { 4 };
    let stem = &name[..name.len().saturating_sub(suffix_len)];
    let mat = companion(header_path, stem, &["mat", "mat.gz"]);
    match mat {
        Some(mat) if std::fs::metadata(&mat).is_ok_and(|m| m.len() > 0) => {
            Err(ReadError::Unsupported {
                path: header_path.to_owned(),
                reason: format!(
                    "Analyze 7.5 pair with an SPM affine in {}, which ct3d does not read \
                     (nibabel would use it); convert the pair to NIfTI",
                    mat.display()
                ),
            })
        }
        _ => Ok(()),
    }
}

pub(super) fn check_is_file(path: &Path) -> Result<(), ReadError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ReadError::IsDirectory {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadError::NotFound {
            path: path.to_owned(),
        }),
        Err(source) => Err(ReadError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A file's decompressed bytes, read front to back.
pub(super) struct Stream {
    pub(super) path: PathBuf,
    pub(super) reader: Box<dyn Read>,
    pub(super) gzipped: bool,
    /// Length of the file on disk.
    pub(super) file_len: u64,
    /// Decompressed bytes consumed so far.
    pub(super) position: u64,
}

impl Stream {
    /// Opens `path`, detecting gzip by its magic bytes. With `whole`, a gzip file is read into
    /// memory first so that inflating never waits on small reads.
    pub(super) fn open(path: &Path, whole: bool) -> Result<Self, ReadError> {
        check_is_file(path)?;
        let io_err = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut magic = Vec::with_capacity(2);
        (&mut file)
            .take(2)
            .read_to_end(&mut magic)
            .map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let gzipped = magic == [0x1f, 0x8b];
        let reader: Box<dyn Read> = match (gzipped, whole) {
            (false, _) => Box::new(file),
            (true, false) => Box::new(MultiGzDecoder::new(BufReader::new(file))),
            (true, true) => {
                let mut compressed = Vec::with_capacity(usize::try_from(file_len).unwrap_or(0));
                file.read_to_end(&mut compressed).map_err(io_err)?;
                Box::new(MultiGzDecoder::new(Cursor::new(compressed)))
            }
        };
        Ok(Self {
            path: path.to_owned(),
            reader,
            gzipped,
            file_len,
            position: 0,
        })
    }

    /// Reads until `buf` is full or the data ends; returns the count. Errors are raw, for callers
    /// that classify them.
    pub(super) fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.position += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    /// Fills `buf` exactly; `needed` (total decompressed bytes the header requires) only words
    /// the error.
    pub(super) fn fill(&mut self, buf: &mut [u8], needed: u64) -> Result<(), ReadError> {
        let start = self.position;
        match self.read_up_to(buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(self.ended_early(start + n as u64, needed)),
            Err(e) => Err(self.classify(e, needed)),
        }
    }

    /// Refuses, before anything is allocated, data that cannot fit in this file.
    pub(super) fn check_room(&self, vox_offset: u64, voxel_bytes: u64) -> Result<(), ReadError> {
        let needed = vox_offset.saturating_add(voxel_bytes);
        if self.gzipped {
            let most = self.file_len.saturating_mul(DEFLATE_MAX_RATIO);
            if needed > most {
                return Err(ReadError::TooLarge {
                    path: self.path.clone(),
                    claimed: format!(
                        "{} of voxel data at offset {vox_offset}",
                        bytes_text(voxel_bytes)
                    ),
                    limit: format!(
                        "more than this {}-byte gzip file can hold (at most {} decompressed)",
                        self.file_len,
                        bytes_text(most)
                    ),
                });
            }
            Ok(())
        } else if vox_offset > self.file_len {
            Err(ReadError::VoxOffsetBeyondData {
                path: self.path.clone(),
                vox_offset,
                file_len: self.file_len,
            })
        } else if needed > self.file_len {
            Err(ReadError::TruncatedData {
                path: self.path.clone(),
                vox_offset,
                needed: voxel_bytes,
                file_len: self.file_len,
            })
        } else {
            Ok(())
        }
    }

    /// Skips to byte `vox_offset` (past header extensions).
    pub(super) fn skip_to(&mut self, vox_offset: u64, voxel_bytes: u64) -> Result<(), ReadError> {
        let gap = vox_offset.saturating_sub(self.position);
        let mut skipped = 0;
        if gap > 0 {
            skipped = io::copy(&mut (&mut self.reader).take(gap), &mut io::sink())
                .map_err(|e| self.classify(e, vox_offset + voxel_bytes))?;
            self.position += skipped;
        }
        if skipped < gap {
            return Err(ReadError::VoxOffsetBeyondData {
                path: self.path.clone(),
                vox_offset,
                file_len: self.position,
            });
        }
        Ok(())
    }

    /// After the voxels: decompresses whatever follows them (normally nothing) so that gzip
    /// reaches its end and verifies its checksum; corruption that happens to inflate is caught
    /// this way. Bytes after the voxels are otherwise allowed, as nibabel ignores them.
    pub(super) fn finish(mut self) -> Result<(), ReadError> {
        if self.gzipped {
            let position = self.position;
            if let Err(e) = io::copy(&mut self.reader, &mut io::sink()) {
                return Err(self.classify(e, position));
            }
        }
        Ok(())
    }

    pub(super) fn ended_early(&self, found: u64, needed: u64) -> ReadError {
        if self.gzipped {
            ReadError::TruncatedGzip {
                path: self.path.clone(),
                needed,
                found,
            }
        } else {
            ReadError::TruncatedData {
                path: self.path.clone(),
                vox_offset: 0,
                needed,
                file_len: found,
            }
        }
    }

    pub(super) fn classify(&self, error: io::Error, needed: u64) -> ReadError {
        match (self.gzipped, error.kind()) {
            (true, io::ErrorKind::UnexpectedEof) => self.ended_early(self.position, needed),
            (
                true,
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::Other,
            ) => ReadError::CorruptGzip {
                path: self.path.clone(),
                detail: error.to_string(),
            },
            _ => ReadError::Io {
                path: self.path.clone(),
                source: error,
            },
        }
    }
}

/// `"1.5 GB"`-style size for messages.
pub(super) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ---------------------------------------------------------------------------------------------
// Voxel conversion

/// A stored sample type: its size and how to widen its bytes to `f64`.
pub(super) trait Sample {
    const SIZE: usize;
    fn le(bytes: &[u8]) -> f64;
    fn be(bytes: &[u8]) -> f64;
}

macro_rules! sample {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn le(bytes: &[u8]) -> f64 {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw) as f64
            }
            #[inline(always)]
            fn be(bytes: &[u8]) -> f64 {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_be_bytes(raw) as f64
            }
        }
    )*};
}
sample!(u8, i8, i16, u16, i32, u32, i64, u64, f32, f64);

/// Converts whole samples in `bytes` into `out` (`out.len()` samples), scaling as nibabel does.
pub(super) fn convert(
    bytes: &[u8],
    out: &mut [f32],
    datatype: Datatype,
    order: ByteOrder,
    scaling: Option<Scaling>,
) {
    match datatype {
        Datatype::U8 => convert_as::<u8>(bytes, out, order, scaling),
        Datatype::I8 => convert_as::<i8>(bytes, out, order, scaling),
        Datatype::I16 => convert_as::<i16>(bytes, out, order, scaling),
        Datatype::U16 => convert_as::<u16>(bytes, out, order, scaling),
        Datatype::I32 => convert_as::<i32>(bytes, out, order, scaling),
        Datatype::U32 => convert_as::<u32>(bytes, out, order, scaling),
        Datatype::I64 => convert_as::<i64>(bytes, out, order, scaling),
        Datatype::U64 => convert_as::<u64>(bytes, out, order, scaling),
        Datatype::F32 => convert_as::<f32>(bytes, out, order, scaling),
        Datatype::F64 => convert_as::<f64>(bytes, out, order, scaling),
    }
}

pub(super) fn convert_as<T: Sample>(
    bytes: &[u8],
    out: &mut [f32],
    order: ByteOrder,
    scaling: Option<Scaling>,
) {
    match order {
        ByteOrder::Little => convert_with(bytes, out, T::SIZE, T::le, scaling),
        ByteOrder::Big => convert_with(bytes, out, T::SIZE, T::be, scaling),
    }
}

/// The one hot loop. Each branch is monomorphic so that it vectorises; the arithmetic is exactly
/// nibabel's (`f64`, multiply skipped for slope 1, add skipped for intercept 0).
#[inline(always)]
pub(super) fn convert_with(
    bytes: &[u8],
    out: &mut [f32],
    size: usize,
    decode: impl Fn(&[u8]) -> f64,
    scaling: Option<Scaling>,
) {
    let pairs = out.iter_mut().zip(bytes.chunks_exact(size));
    let Some(Scaling { slope, inter }) = scaling else {
        return pairs.for_each(|(o, s)| *o = decode(s) as f32);
    };
    if inter == 0.0 {
        pairs.for_each(|(o, s)| *o = (decode(s) * slope) as f32);
    } else if slope == 1.0 {
        pairs.for_each(|(o, s)| *o = (decode(s) + inter) as f32);
    } else {
        pairs.for_each(|(o, s)| *o = (decode(s) * slope + inter) as f32);
    }
}
