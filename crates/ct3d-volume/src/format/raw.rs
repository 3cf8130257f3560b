//! What the NRRD and MetaImage readers share: a text header describes a block of samples in a
//! file (its own tail, or a data file beside it), raw or deflate-compressed, which is checked
//! against the file's length before anything is allocated and then converted to `f32`; and the
//! one error type both report ([`FormatError`]).
//!
//! Both formats are "a few `key: value` lines, then bytes", so their headers are parsed by hand
//! (about a hundred lines each) rather than through a crate: no maintained pure-Rust NRRD or
//! MetaImage reader exists, and the size checks below must run on the parsed numbers before the
//! data is touched, which a general-purpose reader would not let us do.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::{MultiGzDecoder, ZlibDecoder};

use crate::Affine;
use crate::nifti::{ByteOrder, DEFLATE_MAX_RATIO, MAX_VOXELS};

/// Longest header the readers accept, in bytes. Real headers are well under 4 kB; the limit keeps
/// a binary file with no line breaks, or a header naming millions of slice files, from being read
/// into memory whole.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Bytes read or inflated per step.
const CHUNK_BYTES: usize = 256 * 1024;

/// Why an NRRD or MetaImage scan could not be read. Displays as one line beginning with the path
/// that was given (the header), naming the data file where that is what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{path}: is a directory, not {format} file")]
    IsDirectory {
        /// The directory.
        path: PathBuf,
        /// "an NRRD" or "a MetaImage".
        format: &'static str,
    },
    /// An operating-system error while reading.
    #[error("{path}: cannot read {what}")]
    Io {
        /// The header given.
        path: PathBuf,
        /// "the header" or "data file x.raw".
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The header is not what its format requires (wrong magic, a malformed line, a missing or
    /// malformed field).
    #[error("{path}: {problem}")]
    BadHeader {
        /// The header given.
        path: PathBuf,
        /// What is wrong, naming the field.
        problem: String,
    },
    /// The header describes something valid in its format that ct3d does not read (another
    /// encoding, dimension count, sample type, several channels).
    #[error("{path}: {what}; {supported}")]
    Unsupported {
        /// The header given.
        path: PathBuf,
        /// What the header says.
        what: String,
        /// What ct3d reads instead.
        supported: &'static str,
    },
    /// The detached data file the header names does not exist.
    #[error("{path}: its data file {data} does not exist")]
    MissingDataFile {
        /// The header given.
        path: PathBuf,
        /// The data file it names.
        data: PathBuf,
    },
    /// The data file is shorter than the header's sizes require.
    #[error(
        "{path}: data is shorter than the header claims: needs {needed} bytes from offset {offset} \
         of {data}, which has {file_len}"
    )]
    Truncated {
        /// The header given.
        path: PathBuf,
        /// The file holding the data (the header itself for an attached one).
        data: PathBuf,
        /// Bytes the header's sizes require.
        needed: u64,
        /// Where they start.
        offset: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The compressed stream ends before the data the header describes.
    #[error(
        "{path}: compressed data in {data} ends early (truncated file?): {found} of {needed} \
         decompressed bytes"
    )]
    TruncatedCompressed {
        /// The header given.
        path: PathBuf,
        /// The file holding the data.
        data: PathBuf,
        /// Decompressed bytes required.
        needed: u64,
        /// Decompressed bytes that were there.
        found: u64,
    },
    /// The compressed stream is damaged.
    #[error("{path}: corrupt compressed data in {data}: {detail}")]
    Corrupt {
        /// The header given.
        path: PathBuf,
        /// The file holding the data.
        data: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },
    /// The header claims more data than the file could hold, or than ct3d accepts.
    #[error("{path}: header claims {claimed}, {limit}")]
    TooLarge {
        /// The header given.
        path: PathBuf,
        /// What the header claims.
        claimed: String,
        /// Which limit it breaks.
        limit: String,
    },
    /// The geometry fields cannot describe a volume in space.
    #[error("{path}: invalid geometry: {reason}")]
    InvalidGeometry {
        /// The header given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is the data half of a detached scan; its header is what to give.
    #[error("{path}: the data file of {header}; give that header instead")]
    DataFileGiven {
        /// The data file given.
        path: PathBuf,
        /// Its header.
        header: PathBuf,
    },
}

/// Shorthand for a [`FormatError::BadHeader`].
pub(super) fn bad(path: &Path, problem: impl Into<String>) -> FormatError {
    FormatError::BadHeader {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Checks that `path` is an existing file, opens it and returns it with its length.
pub(super) fn open_header(path: &Path, format: &'static str) -> Result<(File, u64), FormatError> {
    let io_err = |source| FormatError::Io {
        path: path.to_owned(),
        what: "the header".to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(FormatError::IsDirectory {
                path: path.to_owned(),
                format,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FormatError::NotFound {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_err(e)),
    }
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    Ok((file, len))
}

/// The header's lines up to (not including) the first line `stop` accepts, or to the end of the
/// file, with the byte offset just after the last line read (after the accepted line, when one
/// was accepted). Lines lose their `\n` and any trailing `\r`; bytes that are not UTF-8 are
/// replaced. Refuses a header longer than [`MAX_HEADER_BYTES`].
pub(super) fn header_lines(
    path: &Path,
    file: File,
    mut stop: impl FnMut(&str) -> bool,
) -> Result<(Vec<String>, u64, bool), FormatError> {
    let mut reader = BufReader::new(file).take(MAX_HEADER_BYTES + 1);
    let mut lines = Vec::new();
    let mut offset = 0u64;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|source| FormatError::Io {
                path: path.to_owned(),
                what: "the header".to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok((lines, offset, false));
        }
        offset += n as u64;
        if offset > MAX_HEADER_BYTES {
            return Err(FormatError::TooLarge {
                path: path.to_owned(),
                claimed: "a header longer than 1 MiB".to_owned(),
                limit: "more than any scan header needs (is this a header at all?)".to_owned(),
            });
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches('\n').trim_end_matches('\r');
        if stop(line) {
            return Ok((lines, offset, true));
        }
        lines.push(line.to_owned());
    }
}

/// A stored sample type. NRRD and MetaImage both name the ten C scalar types ct3d reads, the
/// same ten as NIfTI's [`Datatype`](crate::nifti::Datatype) (its `size` and `name` serve here).
pub use crate::nifti::Datatype as ElementType;

/// How the samples are stored in their file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Packing {
    /// As they are.
    Raw,
    /// A gzip stream (NRRD's `gzip` encoding).
    Gzip,
    /// A zlib stream (MetaImage's `CompressedData`). Only zlib: SimpleITK 2.5 cannot inflate a
    /// gzip stream there (it warns and returns garbage), so such a file is refused as corrupt.
    Zlib,
}

/// Where the samples start after the skipped lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    /// This many bytes later (of the decompressed stream, for a compressed block, as NRRD and
    /// pynrrd define `byte skip`).
    Bytes(u64),
    /// At the end of the file: the last bytes the samples need (NRRD's `byte skip: -1`,
    /// MetaImage's `HeaderSize = -1`); raw blocks only.
    ToEnd,
}

/// One block of samples in one file: a whole volume, or one slice of a MetaImage `LIST`.
#[derive(Debug, Clone)]
pub(super) struct Block {
    /// The file holding it (the header itself for an attached block).
    pub file: PathBuf,
    /// Whether the file is a separate data file (a missing one is then worded as such).
    pub detached: bool,
    /// Where in the file the block's lines to skip, or its bytes, begin.
    pub offset: u64,
    /// Lines to skip from `offset` (NRRD's `line skip`), in the file as stored.
    pub line_skip: u64,
    /// Bytes to skip after the lines.
    pub skip: Skip,
    /// How the samples are stored.
    pub packing: Packing,
    /// Length of the compressed stream, when the header says (MetaImage's `CompressedDataSize`);
    /// else it runs to the end of the file.
    pub compressed_len: Option<u64>,
    /// The sample type.
    pub element: ElementType,
    /// The samples' byte order.
    pub order: ByteOrder,
}

/// A [`Block`] whose sizes were checked against its file: where to read, and how much.
#[derive(Debug)]
pub(super) struct Planned {
    block: Block,
    /// Byte offset of the samples (raw) or of the compressed stream.
    start: u64,
    /// Length of the compressed stream (compressed blocks).
    stream_len: u64,
    /// Sample bytes the block holds.
    bytes: u64,
    /// Samples the block holds.
    count: usize,
}

/// Checks that `count` samples × their size stay within [`MAX_VOXELS`], with overflow-safe
/// arithmetic; returns the byte count.
pub(super) fn sample_bytes(
    path: &Path,
    sizes: &[u64],
    element: ElementType,
) -> Result<(usize, u64), FormatError> {
    let count = sizes.iter().try_fold(1u64, |acc, &n| acc.checked_mul(n));
    let too_large = || FormatError::TooLarge {
        path: path.to_owned(),
        claimed: format!("sizes {sizes:?}"),
        limit: format!("more than ct3d's limit of {MAX_VOXELS} voxels"),
    };
    let count = count.filter(|&c| c <= MAX_VOXELS).ok_or_else(too_large)?;
    let count = usize::try_from(count).map_err(|_| too_large())?;
    // At most 2^31 samples of at most 8 bytes: no overflow.
    Ok((count, count as u64 * element.size() as u64))
}

impl Block {
    /// Opens the block's file, skips its lines and checks that `count` samples fit in it (raw) or
    /// can decompress from it (at most [`DEFLATE_MAX_RATIO`] times the compressed length), all
    /// before any sample buffer exists. `scan` is the header given, for messages.
    pub(super) fn plan(self, scan: &Path, count: usize) -> Result<Planned, FormatError> {
        let bytes = count as u64 * self.element.size() as u64;
        let (mut file, file_len) = self.open(scan)?;
        let truncated = |offset: u64| FormatError::Truncated {
            path: scan.to_owned(),
            data: self.file.clone(),
            needed: bytes,
            offset,
            file_len,
        };
        if self.offset > file_len {
            return Err(truncated(self.offset));
        }
        let mut position = self.offset;
        if self.line_skip > 0 {
            position = self.skip_lines(scan, &mut file, position, file_len)?;
        }
        let (start, stream_len) = match (self.packing, self.skip) {
            (Packing::Raw, Skip::ToEnd) => match file_len.checked_sub(bytes) {
                Some(start) if start >= position => (start, 0),
                _ => return Err(truncated(position)),
            },
            (Packing::Raw, Skip::Bytes(skip)) => {
                let start = position.saturating_add(skip);
                if start.saturating_add(bytes) > file_len {
                    return Err(truncated(start));
                }
                (start, 0)
            }
            (_, Skip::ToEnd) => {
                return Err(bad(
                    scan,
                    "data at the end of the file (a skip of -1) only works for raw data",
                ));
            }
            (_, Skip::Bytes(skip)) => {
                let available = file_len - position;
                let stream_len = match self.compressed_len {
                    Some(len) if len > available => {
                        return Err(FormatError::Truncated {
                            path: scan.to_owned(),
                            data: self.file.clone(),
                            needed: len,
                            offset: position,
                            file_len,
                        });
                    }
                    Some(len) => len,
                    None => available,
                };
                let needed = skip.saturating_add(bytes);
                let most = stream_len.saturating_mul(DEFLATE_MAX_RATIO);
                if needed > most {
                    return Err(FormatError::TooLarge {
                        path: scan.to_owned(),
                        claimed: format!("{needed} bytes of decompressed data"),
                        limit: format!(
                            "more than {stream_len} compressed bytes in {} can hold (at most \
                             {most} decompressed)",
                            self.file.display()
                        ),
                    });
                }
                (position, stream_len)
            }
        };
        Ok(Planned {
            block: self,
            start,
            stream_len,
            bytes,
            count,
        })
    }

    fn open(&self, scan: &Path) -> Result<(File, u64), FormatError> {
        let io_err = |source| FormatError::Io {
            path: scan.to_owned(),
            what: format!("data file {}", self.file.display()),
            source,
        };
        let file = match File::open(&self.file) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.detached => {
                return Err(FormatError::MissingDataFile {
                    path: scan.to_owned(),
                    data: self.file.clone(),
                });
            }
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(bad(
                scan,
                format!("its data file {} is a directory", self.file.display()),
            ));
        }
        Ok((file, meta.len()))
    }

    /// Skips `line_skip` lines from `position`; returns the offset after them.
    fn skip_lines(
        &self,
        scan: &Path,
        file: &mut File,
        position: u64,
        file_len: u64,
    ) -> Result<u64, FormatError> {
        let io_err = |source| FormatError::Io {
            path: scan.to_owned(),
            what: format!("data file {}", self.file.display()),
            source,
        };
        file.seek(SeekFrom::Start(position)).map_err(io_err)?;
        let mut reader = BufReader::new(file);
        let mut at = position;
        let mut sink = Vec::new();
        for skipped in 0..self.line_skip {
            sink.clear();
            // Lines are skipped without keeping them: read at most a chunk at a time.
            let n = (&mut reader)
                .take(CHUNK_BYTES as u64)
                .read_until(b'\n', &mut sink)
                .map_err(io_err)?;
            at += n as u64;
            if n == 0 || (at == file_len && sink.last() != Some(&b'\n')) {
                return Err(bad(
                    scan,
                    format!(
                        "line skip {} passes the end of {} after {skipped} lines",
                        self.line_skip,
                        self.file.display()
                    ),
                ));
            }
            if sink.last() != Some(&b'\n') {
                // A very long "line": keep going until its end.
                let rest = skip_to_newline(&mut reader).map_err(io_err)?;
                at += rest;
            }
        }
        Ok(at)
    }
}

fn skip_to_newline(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(total);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(total + at as u64 + 1);
            }
            None => {
                let n = buffer.len();
                reader.consume(n);
                total += n as u64;
            }
        }
    }
}

impl Planned {
    /// Samples in the block.
    pub(super) fn count(&self) -> usize {
        self.count
    }

    /// Reads the block's samples into `out` (`count` values); `scan` is the header given.
    pub(super) fn read(&self, scan: &Path, out: &mut [f32]) -> Result<(), FormatError> {
        let block = &self.block;
        let io_err = |source| FormatError::Io {
            path: scan.to_owned(),
            what: format!("data file {}", block.file.display()),
            source,
        };
        let mut file = File::open(&block.file).map_err(io_err)?;
        file.seek(SeekFrom::Start(self.start)).map_err(io_err)?;
        let mut reader: Box<dyn Read> = match block.packing {
            Packing::Raw => Box::new(file.take(self.bytes)),
            Packing::Gzip => Box::new(MultiGzDecoder::new(BufReader::new(
                file.take(self.stream_len),
            ))),
            Packing::Zlib => Box::new(ZlibDecoder::new(BufReader::new(file.take(self.stream_len)))),
        };
        let compressed = block.packing != Packing::Raw;
        let skip = match block.skip {
            Skip::Bytes(skip) if compressed => skip,
            _ => 0,
        };
        let needed = skip + self.bytes;
        let classify = |error: io::Error, found: u64| -> FormatError {
            match error.kind() {
                io::ErrorKind::UnexpectedEof => FormatError::TruncatedCompressed {
                    path: scan.to_owned(),
                    data: block.file.clone(),
                    needed,
                    found,
                },
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::Other
                    if compressed =>
                {
                    FormatError::Corrupt {
                        path: scan.to_owned(),
                        data: block.file.clone(),
                        detail: error.to_string(),
                    }
                }
                _ => io_err(error),
            }
        };
        let mut position = 0u64;
        if skip > 0 {
            position = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
                .map_err(|e| classify(e, 0))?;
        }
        let size = block.element.size();
        let per_chunk = (CHUNK_BYTES / size).min(out.len()).max(1);
        let mut chunk = vec![0u8; per_chunk * size];
        for out in out.chunks_mut(per_chunk) {
            let bytes = &mut chunk[..out.len() * size];
            let filled = read_up_to(&mut reader, bytes).map_err(|e| classify(e, position))?;
            position += filled as u64;
            if filled < bytes.len() {
                return Err(if compressed {
                    FormatError::TruncatedCompressed {
                        path: scan.to_owned(),
                        data: block.file.clone(),
                        needed,
                        found: position,
                    }
                } else {
                    // The file shrank since it was planned.
                    FormatError::Truncated {
                        path: scan.to_owned(),
                        data: block.file.clone(),
                        needed: self.bytes,
                        offset: self.start,
                        file_len: self.start + position,
                    }
                });
            }
            convert(bytes, out, block.element, block.order);
        }
        if compressed {
            // Inflate what follows (normally nothing) so that the stream reaches its end and its
            // checksum is verified: corruption that still inflates is caught. Bounded by the
            // compressed length times the deflate ratio, and never kept.
            io::copy(&mut reader, &mut io::sink()).map_err(|e| classify(e, position))?;
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the count.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

macro_rules! convert_as {
    ($t:ty, $bytes:expr, $out:expr, $order:expr) => {{
        const N: usize = std::mem::size_of::<$t>();
        let pairs = $out.iter_mut().zip($bytes.chunks_exact(N));
        // Straight to f32 (never through f64), as numpy's `astype(np.float32)` rounds: a 64-bit
        // integer rounded twice could differ in the last bit.
        match $order {
            ByteOrder::Little => pairs.for_each(|(o, s)| {
                *o = <$t>::from_le_bytes(s.try_into().expect("chunk of N bytes")) as f32
            }),
            ByteOrder::Big => pairs.for_each(|(o, s)| {
                *o = <$t>::from_be_bytes(s.try_into().expect("chunk of N bytes")) as f32
            }),
        }
    }};
}

/// Converts whole samples in `bytes` into `out` (`out.len()` samples).
pub(super) fn convert(bytes: &[u8], out: &mut [f32], element: ElementType, order: ByteOrder) {
    match element {
        ElementType::I8 => convert_as!(i8, bytes, out, order),
        ElementType::U8 => convert_as!(u8, bytes, out, order),
        ElementType::I16 => convert_as!(i16, bytes, out, order),
        ElementType::U16 => convert_as!(u16, bytes, out, order),
        ElementType::I32 => convert_as!(i32, bytes, out, order),
        ElementType::U32 => convert_as!(u32, bytes, out, order),
        ElementType::I64 => convert_as!(i64, bytes, out, order),
        ElementType::U64 => convert_as!(u64, bytes, out, order),
        ElementType::F32 => convert_as!(f32, bytes, out, order),
        ElementType::F64 => convert_as!(f64, bytes, out, order),
    }
}

/// Reads the planned blocks, in order, into one buffer of `total` samples (allocated only now,
/// after every block was planned).
pub(super) fn read_blocks(
    scan: &Path,
    blocks: &[Planned],
    total: usize,
) -> Result<Vec<f32>, FormatError> {
    let mut data = vec![0.0f32; total];
    let mut at = 0;
    for block in blocks {
        let end = at + block.count();
        block.read(scan, &mut data[at..end])?;
        at = end;
    }
    Ok(data)
}

/// The affine (voxel → world, RAS+ mm) of an LPS geometry: `columns[i]` is voxel axis `i`'s step
/// in world mm, `origin` the first voxel's centre. ITK, 3D Slicer and DICOM work in LPS, nibabel
/// and ct3d in RAS+: the two differ by the signs of world x and y, so the first two rows flip.
pub(super) fn lps_affine(columns: [[f64; 3]; 3], origin: [f64; 3]) -> Affine {
    let mut affine = ras_affine(columns, origin);
    for row in affine.iter_mut().take(2) {
        for value in row.iter_mut() {
            *value = -*value;
        }
    }
    affine
}

/// The affine of a geometry already in RAS+ (see [`lps_affine`]).
pub(super) fn ras_affine(columns: [[f64; 3]; 3], origin: [f64; 3]) -> Affine {
    let mut affine = crate::volume::IDENTITY_AFFINE;
    for (row, line) in affine.iter_mut().take(3).enumerate() {
        for (col, column) in columns.iter().enumerate() {
            line[col] = column[row];
        }
        line[3] = origin[row];
    }
    affine
}

/// Refuses non-finite geometry and axes that do not span space (a zero or parallel step), which
/// neither ITK nor nibabel can place. `what` names the fields in the message.
pub(super) fn check_geometry(
    path: &Path,
    columns: &[[f64; 3]; 3],
    origin: &[f64; 3],
    what: &str,
) -> Result<(), FormatError> {
    let invalid = |reason: String| FormatError::InvalidGeometry {
        path: path.to_owned(),
        reason,
    };
    if columns
        .iter()
        .flatten()
        .chain(origin)
        .any(|v| !v.is_finite())
    {
        return Err(invalid(format!("{what} are not all finite numbers")));
    }
    let [a, b, c] = columns.map(glam::DVec3::from_array);
    if a.cross(b).dot(c) == 0.0 {
        return Err(invalid(format!(
            "{what} give axes that do not span 3-D space (a zero or parallel step)"
        )));
    }
    Ok(())
}

/// Parses whitespace-separated numbers of a header value.
pub(super) fn numbers<T: std::str::FromStr>(value: &str) -> Option<Vec<T>> {
    value.split_whitespace().map(|t| t.parse().ok()).collect()
}

/// The file name, lowercased.
pub(super) fn lower_name(path: &Path) -> Option<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
}

/// True for a name ending in one of `extensions` (lowercase, with the dot), any case, with
/// something before it.
pub(super) fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    lower_name(path).is_some_and(|name| {
        extensions
            .iter()
            .any(|ext| name.len() > ext.len() && name.ends_with(ext))
    })
}

/// For a file named like a detached data file (`x.raw`, `x.zraw`, `x.raw.gz`, any case), the
/// header `x.<ext>` beside it for one of `headers` (lower then upper case), if one exists.
pub(super) fn header_beside(path: &Path, headers: &[&str]) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_ascii_lowercase();
    let suffix = [".raw.gz", ".raw", ".zraw"]
        .into_iter()
        .find(|s| lower.len() > s.len() && lower.ends_with(s))?;
    let stem = &name[..name.len() - suffix.len()];
    headers
        .iter()
        .flat_map(|ext| [ext.to_string(), ext.to_ascii_uppercase()])
        .map(|ext| path.with_file_name(format!("{stem}.{ext}")))
        .find(|candidate| candidate.is_file())
}
