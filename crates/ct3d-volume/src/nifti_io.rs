//! NIfTI-1 reading and writing, value for value and affine for affine with nibabel 5.4.
//!
//! # Reading
//!
//! [`read_volume`] accepts `.nii`, `.nii.gz`, `.hdr`/`.img` pairs (either half may be gzipped, and
//! either half's path may be given). Compression is detected from the gzip magic bytes, not the
//! name. Both byte orders and the datatypes `uint8`, `int8`, `int16`, `uint16`, `int32`,
//! `uint32`, `int64`, `uint64`, `float32` and `float64` are read; voxel values are what nibabel's
//! `get_fdata()` returns, rounded once to `f32`:
//!
//! - **Scaling** follows nibabel's `get_slope_inter()`: a `scl_slope` of 0 or a non-finite one
//!   means "no scaling" and `scl_inter` is then ignored; otherwise `value * slope + inter` is
//!   computed in `f64` (the multiplication skipped when the slope is 1, the addition when the
//!   intercept is 0, as nibabel does) and rounded to `f32`. A valid slope with a non-finite
//!   intercept is an error, as in nibabel.
//! - **NaN and infinite voxels** are kept as they are (`f32` NaN/±inf); deciding what they mean is
//!   left to preprocessing. `float64` values beyond `f32`'s range become ±inf.
//! - **Shape**: the volume must be 3-D. Trailing dimensions of size 1 (`dim[4..]`, e.g. a 4-D
//!   file with one time point, which nibabel returns as `(x, y, z, 1)`) are dropped. A 3-D file
//!   with a single slice is a legitimate `[x, y, 1]` volume. 1-D and 2-D files (`dim[0] < 3`) and files with a
//!   4th or higher dimension above 1 are refused.
//! - **Geometry**: [`Volume::spacing`] is nibabel's `header.get_zooms()[:3]` (the absolute values
//!   of `pixdim[1..4]`, a zero replaced by 1 as nibabel's header check does);
//!   [`Volume::affine`] is nibabel's `get_best_affine()`: the sform when `sform_code` is non-zero,
//!   else the qform (quaternion, `qfac = pixdim[0]`, a `qfac` other than ±1 taken as 1) when
//!   `qform_code` is non-zero, else nibabel's base affine (x flipped, origin at the volume
//!   centre). Codes outside 0..=5 count as 0, as nibabel's header check sets them. The qform is
//!   computed in `f64` where nibabel uses `long double`, so it may differ in the last bit.
//!   Non-finite `pixdim` or sform values pass through as nibabel passes them (code that needs the
//!   geometry must check it); a qform quaternion of norm above 1 is refused, as nibabel refuses it.
//! - **Refused**: Analyze 7.5 headers (no NIfTI magic: nibabel would read them with different
//!   scaling and orientation rules, so ct3d asks for a NIfTI conversion instead) and NIfTI-2
//!   files; unsupported datatypes (binary, complex, RGB, `float128`); a single-file `vox_offset`
//!   below 352 (nibabel refuses 1..=351, and for 0 reads the header as voxels); headers whose
//!   data cannot fit in the file (an uncompressed file must hold `vox_offset + voxels × size`
//!   bytes, a gzip file decompresses to at most [`DEFLATE_MAX_RATIO`] times its size) or whose
//!   `f32` output would exceed [`MAX_VOXELS`] voxels (8 GiB). These checks run before any voxel
//!   buffer is allocated. A damaged gzip stream is detected (CRC and length are verified), even
//!   after the voxels.
//!
//! Every failure is a [`ReadError`] whose message is one line naming the file; no input makes
//! the reader panic.
//!
//! # Writing
//!
//! [`write_volume`] writes a single-file NIfTI-1 (`.nii`, or `.nii.gz` gzipped at level
//! [`GZIP_LEVEL`]), atomically. The header is what nibabel writes for `Nifti1Image(data,
//! affine)`: sform from the affine with code 2 (aligned), qform code 0 with the quaternion fields
//! filled from the affine, `pixdim[0]` = qfac; plus `pixdim[1..4]` = [`Volume::spacing`],
//! `xyzt_units` = mm, `scl_slope` 1, `scl_inter` 0, `vox_offset` 352, little-endian.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use nifti::{NiftiHeader, NiftiType};

use crate::volume::Provenance;
use crate::{Affine, Volume};

/// Largest volume [`read_volume`] accepts, in voxels: 2³¹, i.e. 8 GiB of `f32` output.
pub const MAX_VOXELS: u64 = 1 << 31;

/// Upper bound on deflate's compression ratio (its theoretical maximum is about 1032:1). A gzip
/// file of `n` bytes cannot decompress to more than `n * DEFLATE_MAX_RATIO` bytes, which lets the
/// reader refuse a lying header before allocating anything.
pub const DEFLATE_MAX_RATIO: u64 = 1032;

/// gzip level used by [`write_volume`] for `.nii.gz`. With the zlib-rs backend, level 1 is a
/// "quick" strategy whose files are about a third larger than those of zlib's level 1 (what
/// nibabel writes); level 2 gives nibabel's file size at about twice nibabel's speed, while
/// levels 4 and up cost twice the time again for 1-2 % smaller files.
pub const GZIP_LEVEL: u32 = 2;

/// Size of a NIfTI-1 header in bytes.
const HEADER_SIZE: usize = 348;
/// Offset of the voxel data in a single-file NIfTI-1 without extensions.
const SINGLE_FILE_VOX_OFFSET: u64 = 352;
/// Bytes inflated or read per step; small enough that each step's bytes are still in cache when
/// they are converted to `f32`.
const CHUNK_BYTES: usize = 256 * 1024;

/// Why a file could not be read as a volume. Displays as one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{path}: is a directory, not a NIfTI file")]
    IsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// One half of a `.hdr`/`.img` pair is missing.
    #[error("{path}: its companion file {companion} does not exist")]
    MissingCompanion {
        /// The file that was given or found.
        path: PathBuf,
        /// The header or image file it needs.
        companion: PathBuf,
    },
    /// An operating-system error while reading.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a NIfTI-1 file (wrong size field or magic, too short, NIfTI-2, Analyze).
    #[error("{path}: not a NIfTI-1 file: {reason}")]
    NotNifti {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file ends inside the 348-byte header.
    #[error("{path}: truncated NIfTI-1 header: {found} of {HEADER_SIZE} bytes")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// How many header bytes there were.
        found: u64,
    },
    /// The gzip stream is damaged (bad header, bad deflate data or checksum mismatch).
    #[error("{path}: corrupt gzip data: {detail}")]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },
    /// The gzip stream ends before the voxel data the header describes.
    #[error(
        "{path}: gzip stream ends early (truncated file?): {found} of {needed} decompressed bytes"
    )]
    TruncatedGzip {
        /// The file.
        path: PathBuf,
        /// Decompressed bytes the header requires (header, extensions and voxels).
        needed: u64,
        /// Decompressed bytes that were there.
        found: u64,
    },
    /// `vox_offset` points past the end of the file.
    #[error("{path}: vox_offset {vox_offset} is beyond the end of the {file_len}-byte file")]
    VoxOffsetBeyondData {
        /// The file holding the voxels.
        path: PathBuf,
        /// Byte offset of the voxel data.
        vox_offset: u64,
        /// Length of the (decompressed) file.
        file_len: u64,
    },
    /// The file holds fewer voxel bytes than the header describes.
    #[error(
        "{path}: voxel data is shorter than the header claims: needs {needed} bytes from offset \
         {vox_offset}, file has {file_len}"
    )]
    TruncatedData {
        /// The file holding the voxels.
        path: PathBuf,
        /// Byte offset of the voxel data.
        vox_offset: u64,
        /// Voxel bytes the header describes.
        needed: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// `vox_offset` is negative, not a number, or inside the header of a single-file NIfTI.
    #[error("{path}: invalid vox_offset {vox_offset}: {reason}")]
    InvalidVoxOffset {
        /// The file.
        path: PathBuf,
        /// The header's value.
        vox_offset: f32,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// `dim` is inconsistent (`dim[0]` outside 1..=7, or a used dimension ≤ 0).
    #[error("{path}: invalid dimensions {dim:?}: {reason}")]
    InvalidDims {
        /// The file.
        path: PathBuf,
        /// The header's `dim` field.
        dim: [i16; 8],
        /// What is wrong.
        reason: String,
    },
    /// The image is not 3-D (after dropping trailing dimensions of size 1).
    #[error("{path}: {shape} image; ct3d needs a 3-D volume ({hint})")]
    NotThreeD {
        /// The file.
        path: PathBuf,
        /// The shape as nibabel reports it, e.g. `"2-D 64×64"`.
        shape: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The header claims more data than could possibly be there, or than ct3d accepts.
    #[error("{path}: header claims {claimed}, {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the header claims.
        claimed: String,
        /// Which limit it breaks.
        limit: String,
    },
    /// The datatype is valid NIfTI but not a scalar CT type.
    #[error(
        "{path}: unsupported datatype {name} (code {code}); ct3d reads integer and float32/float64 scalar volumes"
    )]
    UnsupportedDatatype {
        /// The file.
        path: PathBuf,
        /// The header's `datatype` code.
        code: i16,
        /// Its name (`"complex64"`, `"RGB24"`, ...).
        name: &'static str,
    },
    /// `scl_slope` is valid but `scl_inter` is not finite (nibabel refuses this too).
    #[error("{path}: scl_slope is {slope} but scl_inter is {inter}; cannot scale the data")]
    InvalidScaling {
        /// The file.
        path: PathBuf,
        /// The header's `scl_slope`.
        slope: f32,
        /// The header's `scl_inter`.
        inter: f32,
    },
    /// Voxel sizes or the qform quaternion cannot describe a geometry.
    #[error("{path}: invalid geometry: {reason}")]
    InvalidGeometry {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why a volume could not be written. Displays as one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An operating-system error while writing (the destination is left untouched).
    #[error("{path}: cannot write: {source}")]
    Io {
        /// The destination.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file name does not end in `.nii` or `.nii.gz`.
    #[error("{path}: output name must end in .nii or .nii.gz")]
    UnsupportedName {
        /// The destination.
        path: PathBuf,
    },
    /// A dimension is 0 or larger than NIfTI-1's 32767.
    #[error(
        "{path}: shape {shape:?} cannot be stored in NIfTI-1 (each dimension must be 1..=32767)"
    )]
    ShapeNotStorable {
        /// The destination.
        path: PathBuf,
        /// The volume's `[x, y, z]` shape.
        shape: [usize; 3],
    },
    /// Spacing or affine are not finite, spacing is not positive, or the affine is singular.
    #[error("{path}: invalid geometry: {reason}")]
    InvalidGeometry {
        /// The destination.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A NaN voxel cannot be stored as `int16`.
    #[error("{path}: voxel {index:?} is NaN, which int16 cannot store")]
    NanInInteger {
        /// The destination.
        path: PathBuf,
        /// `[x, y, z]` of the first NaN voxel.
        index: [usize; 3],
    },
}

/// On-disk datatype for [`write_volume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDtype {
    /// 32-bit float (preprocessed volumes).
    F32,
    /// 16-bit signed integer, values rounded half away from zero and saturated to
    /// `-32768..=32767` (raw HU scans). NaN voxels are refused.
    I16,
}

/// A NIfTI-1 voxel datatype that ct3d reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// `uint8` (code 2).
    U8,
    /// `int8` (code 256).
    I8,
    /// `int16` (code 4).
    I16,
    /// `uint16` (code 512).
    U16,
    /// `int32` (code 8).
    I32,
    /// `uint32` (code 768).
    U32,
    /// `int64` (code 1024).
    I64,
    /// `uint64` (code 1280).
    U64,
    /// `float32` (code 16).
    F32,
    /// `float64` (code 64).
    F64,
}

impl Datatype {
    /// The numpy name nibabel reports (`"int16"`, `"float32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::F32 => "float32",
            Self::F64 => "float64",
        }
    }

    /// The NIfTI-1 `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            Self::U8 => 2,
            Self::I8 => 256,
            Self::I16 => 4,
            Self::U16 => 512,
            Self::I32 => 8,
            Self::U32 => 768,
            Self::I64 => 1024,
            Self::U64 => 1280,
            Self::F32 => 16,
            Self::F64 => 64,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// The supported type of a header's `datatype`, or the name of the unsupported one.
    fn of_header(header: &NiftiHeader) -> Result<Self, &'static str> {
        let Ok(known) = header.data_type() else {
            return Err(if header.datatype == 1 {
                "binary"
            } else {
                "unknown"
            });
        };
        match known {
            NiftiType::Uint8 => Ok(Self::U8),
            NiftiType::Int8 => Ok(Self::I8),
            NiftiType::Int16 => Ok(Self::I16),
            NiftiType::Uint16 => Ok(Self::U16),
            NiftiType::Int32 => Ok(Self::I32),
            NiftiType::Uint32 => Ok(Self::U32),
            NiftiType::Int64 => Ok(Self::I64),
            NiftiType::Uint64 => Ok(Self::U64),
            NiftiType::Float32 => Ok(Self::F32),
            NiftiType::Float64 => Ok(Self::F64),
            NiftiType::Float128 => Err("float128"),
            NiftiType::Complex64 => Err("complex64"),
            NiftiType::Complex128 => Err("complex128"),
            NiftiType::Complex256 => Err("complex256"),
            NiftiType::Rgb24 => Err("RGB24"),
            NiftiType::Rgba32 => Err("RGBA32"),
        }
    }
}

/// Byte order of a file's header and voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little-endian (what nearly every tool writes).
    Little,
    /// Big-endian.
    Big,
}

/// Intensity scaling applied on read: `value * slope + inter` (nibabel's `get_slope_inter()`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Multiplier (`scl_slope`).
    pub slope: f64,
    /// Offset added after multiplying (`scl_inter`), e.g. −1024 for CT stored as unsigned.
    pub inter: f64,
}

/// What a NIfTI-1 header says, read without touching the voxel data (for `ct3d info`).
///
/// [`read_header`] accepts exactly the headers [`read_volume`] accepts, so a summary that reads
/// means the volume can be read unless its compressed voxel data is truncated or damaged.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderSummary {
    /// The header file (`.nii`, `.nii.gz`, `.hdr` or `.hdr.gz`).
    pub header_path: PathBuf,
    /// The file holding the voxels (the header file itself, or the `.img` of a pair).
    pub data_path: PathBuf,
    /// `[x, y, z]` in voxels.
    pub shape: [usize; 3],
    /// On-disk voxel type.
    pub datatype: Datatype,
    /// Byte order of header and voxels.
    pub byte_order: ByteOrder,
    /// Whether the header file is gzip-compressed.
    pub gzipped: bool,
    /// Voxel size along `[x, y, z]` in millimetres (as [`Volume::spacing`]).
    pub spacing: [f64; 3],
    /// Voxel-to-world matrix in millimetres (as [`Volume::affine`]).
    pub affine: Affine,
    /// The header's raw `scl_slope`.
    pub scl_slope: f32,
    /// The header's raw `scl_inter`.
    pub scl_inter: f32,
    /// The scaling actually applied, or `None` when the slope means "no scaling".
    pub scaling: Option<Scaling>,
    /// The header's `sform_code` (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5 template).
    pub sform_code: i16,
    /// The header's `qform_code` (same codes).
    pub qform_code: i16,
    /// Byte offset of the voxels in [`data_path`](Self::data_path) (decompressed).
    pub vox_offset: u64,
    /// The header's `descrip` text up to its first NUL (`ct3d preprocess` records its
    /// parameters there, see [`crate::preprocess::output_description`]).
    pub description: String,
}

impl HeaderSummary {
    /// Number of voxels, `shape[0] * shape[1] * shape[2]`.
    pub fn voxel_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Voxel bytes stored on disk (decompressed).
    pub fn data_bytes(&self) -> u64 {
        self.voxel_count() as u64 * self.datatype.size() as u64
    }

    /// Anatomical direction of each voxel axis, as nibabel's `aff2axcodes` (e.g. `['R', 'A', 'S']`).
    pub fn orientation(&self) -> [char; 3] {
        orientation_codes(&self.affine)
    }
}

/// Reads a NIfTI-1 file (`.nii`, `.nii.gz`, `.hdr`/`.img`) into a [`Volume`] of Hounsfield units
/// (scl_slope/scl_inter applied), in nibabel's `get_fdata()` order.
///
/// `volume.get(x, y, z)` equals `np.float32(nib.load(path).get_fdata()[x, y, z])`; see the
/// [module documentation](self) for scaling, geometry, shape and NaN policies.
pub fn read_volume(path: &Path) -> Result<Volume, ReadError> {
    let (header_path, data_path) = locate(path)?;
    let mut header_stream = Stream::open(&header_path, true)?;
    let header = read_header_block(&mut header_stream)?;
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
        dim: layout.dim,
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
fn advise_huge_pages(buffer: &mut [f32]) {
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
fn advise_huge_pages(_buffer: &mut [f32]) {}

/// Inflates or reads the next `out.len()` voxels of `stream` and converts them into `out`, one
/// cache-sized chunk at a time.
fn read_voxels(
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

/// Reads and validates only the header of a NIfTI-1 file; gzip files are decompressed only as
/// far as the header. For a pair it checks that the `.img` exists, and like [`read_volume`] it
/// refuses data that cannot fit in its file (for uncompressed files: shorter than the header
/// claims).
pub fn read_header(path: &Path) -> Result<HeaderSummary, ReadError> {
    let (header_path, data_path) = locate(path)?;
    let mut stream = Stream::open(&header_path, false)?;
    let header = read_header_block(&mut stream)?;
    let layout = Layout::from_header(&header, &header_path)?;
    let gzipped = stream.gzipped;
    let data_stream = match &data_path {
        Some(data_path) => Stream::open(data_path, false)?,
        None => stream,
    };
    let voxel_bytes = layout.voxel_count as u64 * layout.datatype.size() as u64;
    data_stream.check_room(layout.vox_offset, voxel_bytes)?;
    Ok(HeaderSummary {
        data_path: data_path.unwrap_or_else(|| header_path.clone()),
        header_path,
        shape: layout.shape,
        datatype: layout.datatype,
        byte_order: layout.byte_order,
        gzipped,
        spacing: layout.spacing,
        affine: layout.affine,
        scl_slope: header.scl_slope,
        scl_inter: header.scl_inter,
        scaling: layout.scaling,
        sform_code: header.sform_code,
        qform_code: header.qform_code,
        vox_offset: layout.vox_offset,
        description: description_text(&header.descrip),
    })
}

/// The `descrip` bytes up to the first NUL, as text (invalid UTF-8 replaced).
fn description_text(descrip: &[u8]) -> String {
    let end = descrip
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(descrip.len());
    String::from_utf8_lossy(&descrip[..end]).into_owned()
}

/// Writes `volume` to `path` atomically; gzip-compressed when the name ends in `.gz`.
///
/// The name must end in `.nii` or `.nii.gz` (any case). See the [module documentation](self) for
/// the header written; [`read_volume`] of the result returns the same shape, spacing, affine (to
/// `f32` precision, as NIfTI-1 stores it) and data (exactly for [`OutputDtype::F32`]).
pub fn write_volume(path: &Path, volume: &Volume, dtype: OutputDtype) -> Result<(), WriteError> {
    write_volume_described(path, volume, dtype, "ct3d")
}

/// [`write_volume`] with `description` in the header's `descrip` field (NIfTI-1 keeps its first
/// 79 bytes; longer text is cut at a character boundary).
pub fn write_volume_described(
    path: &Path,
    volume: &Volume,
    dtype: OutputDtype,
    description: &str,
) -> Result<(), WriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let gzip = if name.ends_with(".nii.gz") {
        true
    } else if name.ends_with(".nii") {
        false
    } else {
        return Err(WriteError::UnsupportedName {
            path: path.to_owned(),
        });
    };
    let header = encode_header(volume, dtype, path, description)?;
    let io_err = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    let mut nan_at = None;
    crate::atomic::write_atomic(path, |file| {
        if gzip {
            let mut encoder = GzEncoder::new(file, Compression::new(GZIP_LEVEL));
            write_body(&mut encoder, &header, volume, dtype, &mut nan_at)?;
            encoder.finish().map(drop)
        } else {
            write_body(file, &header, volume, dtype, &mut nan_at)
        }
    })
    .map_err(|source| match nan_at {
        Some(linear) => {
            let [nx, ny, _] = volume.shape();
            WriteError::NanInInteger {
                path: path.to_owned(),
                index: [linear % nx, (linear / nx) % ny, linear / (nx * ny)],
            }
        }
        None => io_err(source),
    })
}

/// Anatomical direction of each voxel axis's positive end for `affine`, as nibabel's
/// `aff2axcodes`: `'R'`/`'L'` (world x), `'A'`/`'P'` (world y), `'S'`/`'I'` (world z).
///
/// Like nibabel's `io_orientation`, the 3×3 part is normalised column by column, replaced by its
/// closest orthogonal matrix (polar decomposition via SVD), and voxel axes are matched to world
/// axes strongest first. An axis the affine does not determine (a zero or degenerate column,
/// where nibabel gives `None`), or any non-finite entry, gives `'?'`.
pub fn orientation_codes(affine: &Affine) -> [char; 3] {
    const LABELS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['I', 'S']];
    let mut codes = ['?'; 3];
    if affine[..3]
        .iter()
        .any(|row| row[..3].iter().any(|v| !v.is_finite()))
    {
        return codes;
    }
    let mut rs = [[0.0f64; 3]; 3];
    for col in 0..3 {
        let zoom = column_norm(affine, col);
        let zoom = if zoom == 0.0 { 1.0 } else { zoom };
        for row in 0..3 {
            rs[row][col] = affine[row][col] / zoom;
        }
    }
    let mut r = closest_orthogonal(&rs, true);

    // Strongest voxel axis first; a stable sort keeps ties in axis order, as nibabel does.
    let strength =
        |r: &[[f64; 3]; 3], col: usize| (0..3).map(|row| r[row][col].powi(2)).fold(0.0, f64::max);
    let mut in_axes = [0usize, 1, 2];
    in_axes.sort_by(|&a, &b| strength(&r, b).total_cmp(&strength(&r, a)));
    for in_ax in in_axes {
        let col = [r[0][in_ax], r[1][in_ax], r[2][in_ax]];
        if col.iter().all(|v| v.abs() <= 1e-8) {
            continue;
        }
        let mut out_ax = 0;
        for row in 1..3 {
            if col[row].abs() > col[out_ax].abs() {
                out_ax = row;
            }
        }
        codes[in_ax] = LABELS[out_ax][usize::from(col[out_ax] >= 0.0)];
        r[out_ax] = [0.0; 3];
    }
    codes
}

// ---------------------------------------------------------------------------------------------
// Locating files and streaming their bytes

/// The header file for `path` and, for a `.hdr`/`.img` pair (an `.img` name, or a header with
/// the pair magic `ni1`), the image file; a missing half is an error.
fn locate(path: &Path) -> Result<(PathBuf, Option<PathBuf>), ReadError> {
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

/// The `.img` (or `.img.gz`) next to a pair header.
fn locate_image(header: &Path, stem: &str) -> Result<PathBuf, ReadError> {
    companion(header, stem, &["img", "img.gz"]).ok_or_else(|| ReadError::MissingCompanion {
        path: header.to_owned(),
        companion: header.with_file_name(format!("{stem}.img")),
    })
}

/// The first existing `stem.EXT` next to `path`, trying each extension in lower then upper case.
fn companion(path: &Path, stem: &str, extensions: &[&str]) -> Option<PathBuf> {
    extensions
        .iter()
        .flat_map(|ext| [ext.to_string(), ext.to_ascii_uppercase()])
        .map(|ext| path.with_file_name(format!("{stem}.{ext}")))
        .find(|candidate| candidate.is_file())
}

/// Whether `path` holds a header with the pair magic `ni1` (voxels in a separate `.img`). Any
/// problem reading it is left for the full header read to report.
fn is_pair_header(path: &Path) -> Result<bool, ReadError> {
    let mut stream = Stream::open(path, false)?;
    let mut block = [0u8; HEADER_SIZE];
    Ok(matches!(stream.read_up_to(&mut block), Ok(HEADER_SIZE)) && &block[344..348] == b"ni1\0")
}

fn check_is_file(path: &Path) -> Result<(), ReadError> {
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
struct Stream {
    path: PathBuf,
    reader: Box<dyn Read>,
    gzipped: bool,
    /// Length of the file on disk.
    file_len: u64,
    /// Decompressed bytes consumed so far.
    position: u64,
}

impl Stream {
    /// Opens `path`, detecting gzip by its magic bytes. With `whole`, a gzip file is read into
    /// memory first so that inflating never waits on small reads.
    fn open(path: &Path, whole: bool) -> Result<Self, ReadError> {
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
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
    fn fill(&mut self, buf: &mut [u8], needed: u64) -> Result<(), ReadError> {
        let start = self.position;
        match self.read_up_to(buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(self.ended_early(start + n as u64, needed)),
            Err(e) => Err(self.classify(e, needed)),
        }
    }

    /// Refuses, before anything is allocated, data that cannot fit in this file.
    fn check_room(&self, vox_offset: u64, voxel_bytes: u64) -> Result<(), ReadError> {
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
    fn skip_to(&mut self, vox_offset: u64, voxel_bytes: u64) -> Result<(), ReadError> {
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
    fn finish(mut self) -> Result<(), ReadError> {
        if self.gzipped {
            let position = self.position;
            if let Err(e) = io::copy(&mut self.reader, &mut io::sink()) {
                return Err(self.classify(e, position));
            }
        }
        Ok(())
    }

    fn ended_early(&self, found: u64, needed: u64) -> ReadError {
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

    fn classify(&self, error: io::Error, needed: u64) -> ReadError {
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
fn bytes_text(bytes: u64) -> String {
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
// Header parsing and validation

/// Reads and parses the 348-byte header at the start of `stream`.
fn read_header_block(stream: &mut Stream) -> Result<NiftiHeader, ReadError> {
    let mut block = [0u8; HEADER_SIZE];
    let found = match stream.read_up_to(&mut block) {
        Ok(n) => n,
        Err(e) => return Err(stream.classify(e, HEADER_SIZE as u64)),
    };
    let path = || stream.path.clone();
    let sizeof_le =
        found >= 4 && i32::from_le_bytes([block[0], block[1], block[2], block[3]]) == 348;
    let sizeof_be =
        found >= 4 && i32::from_be_bytes([block[0], block[1], block[2], block[3]]) == 348;
    if found < HEADER_SIZE {
        return Err(if sizeof_le || sizeof_be {
            ReadError::TruncatedHeader {
                path: path(),
                found: found as u64,
            }
        } else {
            ReadError::NotNifti {
                path: path(),
                reason: format!("only {found} bytes, a NIfTI-1 header has {HEADER_SIZE}"),
            }
        });
    }
    if !(sizeof_le || sizeof_be) {
        let sizeof_hdr = i32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        let reason = if sizeof_hdr == 540 || sizeof_hdr.swap_bytes() == 540 {
            "this is NIfTI-2, which ct3d does not read; convert it to NIfTI-1".to_owned()
        } else if &block[128..132] == b"DICM" {
            "this is a DICOM file; convert the series to NIfTI first (e.g. with dcm2niix)"
                .to_owned()
        } else {
            format!("header size field is {sizeof_hdr}, expected 348")
        };
        return Err(ReadError::NotNifti {
            path: path(),
            reason,
        });
    }
    let magic = &block[344..348];
    if magic != b"n+1\0" && magic != b"ni1\0" {
        return Err(ReadError::NotNifti {
            path: path(),
            reason: "no NIfTI-1 magic (an Analyze 7.5 header?); ct3d reads NIfTI-1 only".to_owned(),
        });
    }
    let header = NiftiHeader::from_reader(&block[..]).map_err(|e| ReadError::NotNifti {
        path: path(),
        reason: e.to_string(),
    })?;
    // The crate picks the byte order from dim[0]; a size field that then reads wrong means dim[0]
    // was not a valid dimension count in either order.
    if header.sizeof_hdr != 348 {
        return Err(ReadError::InvalidDims {
            path: path(),
            dim: header.dim.map(|d| d as i16),
            reason: "dim[0] must be 1..=7".to_owned(),
        });
    }
    Ok(header)
}

/// Everything needed to read the voxels, validated.
struct Layout {
    dim: [i16; 8],
    shape: [usize; 3],
    voxel_count: usize,
    datatype: Datatype,
    byte_order: ByteOrder,
    vox_offset: u64,
    scaling: Option<Scaling>,
    spacing: [f64; 3],
    affine: Affine,
}

impl Layout {
    fn from_header(h: &NiftiHeader, path: &Path) -> Result<Self, ReadError> {
        let dim = h.dim.map(|d| d as i16);
        let shape = checked_shape(dim, path)?;
        let voxel_count_u64 = shape.iter().map(|&d| d as u64).product::<u64>();

        let datatype = Datatype::of_header(h).map_err(|name| ReadError::UnsupportedDatatype {
            path: path.to_owned(),
            code: h.datatype,
            name,
        })?;
        if voxel_count_u64 > MAX_VOXELS {
            return Err(ReadError::TooLarge {
                path: path.to_owned(),
                claimed: format!(
                    "{} voxels ({}×{}×{})",
                    voxel_count_u64, shape[0], shape[1], shape[2]
                ),
                limit: format!("more than ct3d's limit of {MAX_VOXELS} (8 GiB of float32)"),
            });
        }
        let voxel_count = usize::try_from(voxel_count_u64).map_err(|_| ReadError::TooLarge {
            path: path.to_owned(),
            claimed: format!("{voxel_count_u64} voxels"),
            limit: "more than this machine can address".to_owned(),
        })?;

        let single = &h.magic == b"n+1\0";
        let vox_offset = checked_vox_offset(h.vox_offset, single, path)?;
        let scaling = scaling_of(h, path)?;
        let pixdim = fixed_pixdim(h);
        let spacing = pixdim.map(f64::from);
        let affine = best_affine(h, pixdim, &shape, path)?;
        let byte_order = match h.endianness {
            nifti::Endianness::Little => ByteOrder::Little,
            nifti::Endianness::Big => ByteOrder::Big,
        };
        Ok(Self {
            dim,
            shape,
            voxel_count,
            datatype,
            byte_order,
            vox_offset,
            scaling,
            spacing,
            affine,
        })
    }
}

/// The `[x, y, z]` shape nibabel would give, after dropping trailing dimensions of size 1.
fn checked_shape(dim: [i16; 8], path: &Path) -> Result<[usize; 3], ReadError> {
    let invalid = |reason: String| ReadError::InvalidDims {
        path: path.to_owned(),
        dim,
        reason,
    };
    let ndim = usize::try_from(dim[0]).ok().filter(|n| (1..=7).contains(n));
    let Some(ndim) = ndim else {
        return Err(invalid("dim[0] must be 1..=7".to_owned()));
    };
    let used = &dim[1..=ndim];
    if let Some(k) = used.iter().position(|&d| d <= 0) {
        return Err(invalid(format!("dim[{}] is {}", k + 1, used[k])));
    }
    let joined = used
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×");
    if ndim < 3 {
        return Err(ReadError::NotThreeD {
            path: path.to_owned(),
            shape: format!("{ndim}-D {joined}"),
            hint: "a single slice must be stored as x×y×1",
        });
    }
    if used[3..].iter().any(|&d| d != 1) {
        return Err(ReadError::NotThreeD {
            path: path.to_owned(),
            shape: format!("{ndim}-D {joined}"),
            hint: "split the series into 3-D files first",
        });
    }
    Ok([used[0] as usize, used[1] as usize, used[2] as usize])
}

fn checked_vox_offset(vox_offset: f32, single: bool, path: &Path) -> Result<u64, ReadError> {
    let invalid = |reason| ReadError::InvalidVoxOffset {
        path: path.to_owned(),
        vox_offset,
        reason,
    };
    if !vox_offset.is_finite() || vox_offset < 0.0 {
        return Err(invalid("must be a non-negative number"));
    }
    // nibabel truncates with int(); so do we.
    let offset = vox_offset as u64;
    if single && offset < SINGLE_FILE_VOX_OFFSET {
        return Err(invalid(
            "a single-file NIfTI-1 keeps its voxels at offset 352 or later",
        ));
    }
    Ok(offset)
}

/// nibabel's `get_slope_inter()`: no scaling for a zero or non-finite slope.
fn scaling_of(h: &NiftiHeader, path: &Path) -> Result<Option<Scaling>, ReadError> {
    let slope = f64::from(h.scl_slope);
    let inter = f64::from(h.scl_inter);
    if slope == 0.0 || !slope.is_finite() {
        return Ok(None);
    }
    if !inter.is_finite() {
        return Err(ReadError::InvalidScaling {
            path: path.to_owned(),
            slope: h.scl_slope,
            inter: h.scl_inter,
        });
    }
    Ok((slope != 1.0 || inter != 0.0).then_some(Scaling { slope, inter }))
}

/// `pixdim[1..4]` after nibabel's header fix: absolute values, 0 replaced by 1 (NaN is kept).
fn fixed_pixdim(h: &NiftiHeader) -> [f32; 3] {
    [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(|p| if p == 0.0 { 1.0 } else { p.abs() })
}

/// nibabel's `get_best_affine()` on the fixed header.
fn best_affine(
    h: &NiftiHeader,
    pixdim: [f32; 3],
    shape: &[usize; 3],
    path: &Path,
) -> Result<Affine, ReadError> {
    let valid = |code: i16| (1..=5).contains(&code);
    if valid(h.sform_code) {
        let row = |r: [f32; 4]| r.map(f64::from);
        return Ok([
            row(h.srow_x),
            row(h.srow_y),
            row(h.srow_z),
            [0.0, 0.0, 0.0, 1.0],
        ]);
    }
    if valid(h.qform_code) {
        return qform_affine(h, pixdim).map_err(|reason| ReadError::InvalidGeometry {
            path: path.to_owned(),
            reason,
        });
    }
    Ok(base_affine(pixdim, shape))
}

/// The qform: rotation from the quaternion, times `diag(pixdim[1], pixdim[2], qfac * pixdim[3])`,
/// plus the offsets.
fn qform_affine(h: &NiftiHeader, pixdim: [f32; 3]) -> Result<Affine, String> {
    let (b, c, d) = (
        f64::from(h.quatern_b),
        f64::from(h.quatern_c),
        f64::from(h.quatern_d),
    );
    let w2 = 1.0 - (b * b + c * c + d * d);
    // nibabel's threshold for float32-stored quaternions.
    let threshold = f64::from(f32::EPSILON) * 3.0;
    let a = if w2.abs() < threshold {
        0.0
    } else if w2 < 0.0 || !w2.is_finite() {
        return Err(format!(
            "qform quaternion (b, c, d) = ({b}, {c}, {d}) has norm above 1"
        ));
    } else {
        w2.sqrt()
    };
    let rotation = quaternion_matrix(a, b, c, d);
    let qfac = if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
    let zooms = [
        f64::from(pixdim[0]),
        f64::from(pixdim[1]),
        f64::from(pixdim[2]) * qfac,
    ];
    let offsets = [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from);
    let mut affine = IDENTITY;
    for row in 0..3 {
        for col in 0..3 {
            affine[row][col] = rotation[row][col] * zooms[col];
        }
        affine[row][3] = offsets[row];
    }
    Ok(affine)
}

/// Rotation matrix of quaternion `(w, x, y, z)` (need not be normalised), as nibabel's `quat2mat`.
fn quaternion_matrix(w: f64, x: f64, y: f64, z: f64) -> [[f64; 3]; 3] {
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// nibabel's `shape_zoom_affine(shape, zooms, x_flip=True)`: voxel sizes on the diagonal, x
/// negated, the volume centre at the world origin.
fn base_affine(pixdim: [f32; 3], shape: &[usize; 3]) -> Affine {
    let mut affine = IDENTITY;
    for axis in 0..3 {
        let zoom = f64::from(pixdim[axis]) * if axis == 0 { -1.0 } else { 1.0 };
        let origin = (shape[axis] as f64 - 1.0) / 2.0;
        affine[axis][axis] = zoom;
        affine[axis][3] = -origin * zoom;
    }
    affine
}

const IDENTITY: Affine = crate::volume::IDENTITY_AFFINE;

// ---------------------------------------------------------------------------------------------
// Voxel conversion

/// A stored sample type: its size and how to widen its bytes to `f64`.
trait Sample {
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
fn convert(
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

fn convert_as<T: Sample>(
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
fn convert_with(
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

// ---------------------------------------------------------------------------------------------
// Writing

/// The 352 bytes before the voxels: header plus the empty extension flag.
fn encode_header(
    volume: &Volume,
    dtype: OutputDtype,
    path: &Path,
    description: &str,
) -> Result<[u8; 352], WriteError> {
    let shape = volume.shape();
    let dims = shape.map(|d| i16::try_from(d).ok().filter(|&d| d >= 1));
    let [Some(nx), Some(ny), Some(nz)] = dims else {
        return Err(WriteError::ShapeNotStorable {
            path: path.to_owned(),
            shape,
        });
    };
    let invalid = |reason: String| WriteError::InvalidGeometry {
        path: path.to_owned(),
        reason,
    };
    if let Some(s) = volume
        .spacing
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return Err(invalid(format!(
            "voxel size {s} mm is not a positive number"
        )));
    }
    let affine = &volume.affine;
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        return Err(invalid("affine has non-finite entries".to_owned()));
    }
    let qform =
        QformFields::from_affine(affine).ok_or_else(|| invalid("affine is singular".to_owned()))?;

    let (code, bitpix): (i16, i16) = match dtype {
        OutputDtype::F32 => (16, 32),
        OutputDtype::I16 => (4, 16),
    };
    let mut h = HeaderWriter::default();
    h.i32(0, 348);
    for (k, d) in [3, nx, ny, nz, 1, 1, 1, 1].into_iter().enumerate() {
        h.i16(40 + 2 * k, d);
    }
    h.i16(70, code);
    h.i16(72, bitpix);
    let pixdim = [
        qform.qfac,
        volume.spacing[0] as f32,
        volume.spacing[1] as f32,
        volume.spacing[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (k, p) in pixdim.into_iter().enumerate() {
        h.f32(76 + 4 * k, p);
    }
    h.f32(108, SINGLE_FILE_VOX_OFFSET as f32);
    h.f32(112, 1.0); // scl_slope
    h.f32(116, 0.0); // scl_inter
    h.bytes[123] = 2; // xyzt_units: millimetres, time unknown
    // descrip: 80 bytes, NUL-terminated.
    let mut end = description.len().min(79);
    while !description.is_char_boundary(end) {
        end -= 1;
    }
    h.bytes[148..148 + end].copy_from_slice(&description.as_bytes()[..end]);
    h.i16(252, 0); // qform_code: unknown, as nibabel writes for a new image
    h.i16(254, 2); // sform_code: aligned
    let quaternion = [
        qform.b,
        qform.c,
        qform.d,
        affine[0][3],
        affine[1][3],
        affine[2][3],
    ];
    for (k, q) in quaternion.into_iter().enumerate() {
        h.f32(256 + 4 * k, q as f32);
    }
    for (row, values) in affine[..3].iter().enumerate() {
        for (col, &value) in values.iter().enumerate() {
            h.f32(280 + 16 * row + 4 * col, value as f32);
        }
    }
    h.bytes[344..348].copy_from_slice(b"n+1\0");
    Ok(h.bytes)
}

/// A little-endian header being filled in.
struct HeaderWriter {
    bytes: [u8; 352],
}

impl Default for HeaderWriter {
    fn default() -> Self {
        Self { bytes: [0; 352] }
    }
}

impl HeaderWriter {
    fn i16(&mut self, at: usize, v: i16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, at: usize, v: i32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, at: usize, v: f32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// The qform fields nibabel's `set_qform` derives from an affine (written with code 0).
struct QformFields {
    qfac: f32,
    b: f64,
    c: f64,
    d: f64,
}

impl QformFields {
    /// `None` for a singular affine.
    fn from_affine(affine: &Affine) -> Option<Self> {
        let mut r = [[0.0f64; 3]; 3];
        for col in 0..3 {
            let zoom = column_norm(affine, col);
            if zoom == 0.0 {
                return None;
            }
            for row in 0..3 {
                r[row][col] = affine[row][col] / zoom;
            }
        }
        let qfac = if determinant(&r) > 0.0 {
            1.0
        } else {
            for row in &mut r {
                row[2] = -row[2];
            }
            -1.0
        };
        let rotation = closest_orthogonal(&r, false);
        let [w, b, c, d] = rotation_quaternion(&rotation);
        // nibabel stores the quaternion with a non-negative w, which then is implied.
        let sign = if w < 0.0 { -1.0 } else { 1.0 };
        Some(Self {
            qfac,
            b: b * sign,
            c: c * sign,
            d: d * sign,
        })
    }
}

/// Quaternion `[w, x, y, z]` of a proper rotation matrix (Shepperd's method).
fn rotation_quaternion(m: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = m[0][0] + m[1][1] + m[2][2];
    if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (m[2][1] - m[1][2]) / s,
            (m[0][2] - m[2][0]) / s,
            (m[1][0] - m[0][1]) / s,
        ]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [
            (m[2][1] - m[1][2]) / s,
            0.25 * s,
            (m[0][1] + m[1][0]) / s,
            (m[0][2] + m[2][0]) / s,
        ]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [
            (m[0][2] - m[2][0]) / s,
            (m[0][1] + m[1][0]) / s,
            0.25 * s,
            (m[1][2] + m[2][1]) / s,
        ]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [
            (m[1][0] - m[0][1]) / s,
            (m[0][2] + m[2][0]) / s,
            (m[1][2] + m[2][1]) / s,
            0.25 * s,
        ]
    }
}

/// Header, then voxels in `x`-fastest order, through a 1 MiB staging buffer. Sets `nan_at` to the
/// linear index of a NaN refused by [`OutputDtype::I16`] (and returns an error).
fn write_body(
    out: &mut impl Write,
    header: &[u8; 352],
    volume: &Volume,
    dtype: OutputDtype,
    nan_at: &mut Option<usize>,
) -> io::Result<()> {
    out.write_all(header)?;
    const VOXELS_PER_STEP: usize = 1 << 18;
    let mut staging = Vec::with_capacity(VOXELS_PER_STEP * 4);
    for (step, values) in volume.data().chunks(VOXELS_PER_STEP).enumerate() {
        staging.clear();
        match dtype {
            OutputDtype::F32 => values
                .iter()
                .for_each(|v| staging.extend_from_slice(&v.to_le_bytes())),
            OutputDtype::I16 => {
                if let Some(k) = values.iter().position(|v| v.is_nan()) {
                    *nan_at = Some(step * VOXELS_PER_STEP + k);
                    return Err(io::Error::other("NaN voxel"));
                }
                // `as` saturates; round() is half away from zero.
                values
                    .iter()
                    .for_each(|v| staging.extend_from_slice(&(v.round() as i16).to_le_bytes()));
            }
        }
        out.write_all(&staging)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3×3 linear algebra

fn column_norm(affine: &Affine, col: usize) -> f64 {
    (0..3)
        .map(|row| affine[row][col].powi(2))
        .sum::<f64>()
        .sqrt()
}

fn determinant(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The orthogonal factor `U Vᵀ` of `m = U S Vᵀ` (one-sided Jacobi SVD). With `drop_null`, singular
/// directions whose value is below numpy's rank tolerance (`max(S) * 3 * eps`) are left out, as
/// nibabel's `io_orientation` does.
fn closest_orthogonal(m: &[[f64; 3]; 3], drop_null: bool) -> [[f64; 3]; 3] {
    // Columns of `a` converge to U·S, columns of `v` to V.
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let mut rotated = false;
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            let alpha: f64 = (0..3).map(|i| a[i][p] * a[i][p]).sum();
            let beta: f64 = (0..3).map(|i| a[i][q] * a[i][q]).sum();
            let gamma: f64 = (0..3).map(|i| a[i][p] * a[i][q]).sum();
            if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                continue;
            }
            rotated = true;
            let zeta = (beta - alpha) / (2.0 * gamma);
            let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
            let c = 1.0 / (1.0 + t * t).sqrt();
            let s = c * t;
            for mat in [&mut a, &mut v] {
                for row in mat.iter_mut() {
                    let (xp, xq) = (row[p], row[q]);
                    row[p] = c * xp - s * xq;
                    row[q] = s * xp + c * xq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let singular: [f64; 3] =
        std::array::from_fn(|k| (0..3).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt());
    let largest = singular.iter().copied().fold(0.0, f64::max);
    let tolerance = if drop_null {
        largest * 3.0 * f64::EPSILON
    } else {
        0.0
    };
    let mut r = [[0.0f64; 3]; 3];
    for k in (0..3).filter(|&k| singular[k] > tolerance) {
        for row in 0..3 {
            for col in 0..3 {
                r[row][col] += a[row][k] / singular[k] * v[col][k];
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trips_through_matrix() {
        // 30° about an oblique axis.
        let (w, x, y, z): (f64, f64, f64, f64) = (0.9659258262890683, 0.1494292, 0.0747146, 0.1868);
        let n = (w * w + x * x + y * y + z * z).sqrt();
        let m = quaternion_matrix(w / n, x / n, y / n, z / n);
        let q = rotation_quaternion(&m);
        for (got, want) in q.iter().zip([w / n, x / n, y / n, z / n]) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn closest_orthogonal_removes_shear() {
        let sheared = [[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let r = closest_orthogonal(&sheared, false);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(determinant(&r) > 0.0);
    }
}
