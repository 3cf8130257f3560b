//! The 348-byte NIfTI-1 header: its on-disk types ([`Datatype`], [`ByteOrder`], [`Scaling`]),
//! the summary `ct3d info` prints ([`HeaderSummary`], [`read_header`]), and parsing and
//! validating the block into the layout the voxel reader follows.

use super::*;

/// On-disk datatype for [`write_volume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDtype {
    /// 32-bit float (preprocessed volumes).
    F32,
    /// 16-bit signed integer, values rounded half away from zero and saturated to
    /// `-32768..=32767` (raw HU scans). NaN voxels are refused.
    I16,
    /// 8-bit unsigned integer, values rounded half away from zero and saturated to `0..=255`
    /// (label masks). NaN voxels are refused.
    U8,
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

    /// The supported type of a header's `datatype` code, or the name of the unsupported one.
    /// Analyze 7.5 knows only codes 0-128: nibabel refuses the NIfTI additions (`int8`,
    /// `uint16`, ...) in an Analyze header as unrecognised.
    pub(super) fn of_code(code: i16, format: Format) -> Result<Self, &'static str> {
        let nifti = format != Format::Analyze;
        match code {
            2 => Ok(Self::U8),
            4 => Ok(Self::I16),
            8 => Ok(Self::I32),
            16 => Ok(Self::F32),
            64 => Ok(Self::F64),
            256 if nifti => Ok(Self::I8),
            512 if nifti => Ok(Self::U16),
            768 if nifti => Ok(Self::U32),
            1024 if nifti => Ok(Self::I64),
            1280 if nifti => Ok(Self::U64),
            1 => Err("binary"),
            32 => Err("complex64"),
            128 => Err("RGB24"),
            1536 if nifti => Err("float128"),
            1792 if nifti => Err("complex128"),
            2048 if nifti => Err("complex256"),
            2304 if nifti => Err("RGBA32"),
            _ => Err("unknown"),
        }
    }
}

/// Which header format a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NIfTI-1: 348-byte header, magic `n+1` (single file) or `ni1` (pair).
    Nifti1,
    /// NIfTI-2: 540-byte header with 64-bit fields, magic `n+2` or `ni2`.
    Nifti2,
    /// Analyze 7.5 as SPM2 extended it (348-byte header without NIfTI magic, always a
    /// `.hdr`/`.img` pair), read as nibabel's `Spm2AnalyzeImage`.
    Analyze,
}

impl Format {
    /// `"NIfTI-1"`, `"NIfTI-2"` or `"Analyze 7.5"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nifti1 => "NIfTI-1",
            Self::Nifti2 => "NIfTI-2",
            Self::Analyze => "Analyze 7.5",
        }
    }

    /// Size of the header in bytes (348, or 540 for NIfTI-2).
    pub fn header_size(self) -> usize {
        match self {
            Self::Nifti1 | Self::Analyze => HEADER_SIZE,
            Self::Nifti2 => NIFTI2_HEADER_SIZE,
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

/// What a NIfTI-1, NIfTI-2 or Analyze 7.5 header says, read without touching the voxel data (for
/// `ct3d info`).
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
    /// The header's format.
    pub format: Format,
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
    /// The header's raw `scl_slope` (NIfTI-1 stores it as `f32`, NIfTI-2 as `f64`; for Analyze
    /// it is SPM's `funused1` scale factor).
    pub scl_slope: f64,
    /// The header's raw `scl_inter` (for Analyze SPM2's `funused2` intercept).
    pub scl_inter: f64,
    /// The scaling actually applied, or `None` when the slope means "no scaling".
    pub scaling: Option<Scaling>,
    /// The header's `sform_code` (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5 template;
    /// always 0 for Analyze).
    pub sform_code: i32,
    /// The header's `qform_code` (same codes).
    pub qform_code: i32,
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

/// Reads and validates only the header of a NIfTI-1, NIfTI-2 or Analyze 7.5 file; gzip files are decompressed only as
/// far as the header. For a pair it checks that the `.img` exists, and like [`read_volume`] it
/// refuses data that cannot fit in its file (for uncompressed files: shorter than the header
/// claims).
pub fn read_header(path: &Path) -> Result<HeaderSummary, ReadError> {
    let (header_path, data_path) = locate(path)?;
    let mut stream = Stream::open(&header_path, false)?;
    let header = read_header_block(&mut stream, data_path.is_some())?;
    check_no_spm_mat(&header, &header_path)?;
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
        format: header.format,
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
pub(super) fn description_text(descrip: &[u8]) -> String {
    let end = descrip
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(descrip.len());
    String::from_utf8_lossy(&descrip[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Header parsing and validation

/// A header of any of the three formats, widened to NIfTI-2's types: NIfTI-1 and Analyze `f32`
/// and `i16` fields convert exactly, so every NIfTI-1 result is what it was when the reader used
/// those types directly.
pub(super) struct Header {
    pub(super) format: Format,
    pub(super) byte_order: ByteOrder,
    /// The single-file magic (`n+1`, `n+2`): the voxels follow the header in the same file.
    pub(super) single: bool,
    pub(super) dim: [i64; 8],
    pub(super) datatype: i16,
    pub(super) pixdim: [f64; 8],
    /// NIfTI-1 and Analyze store it as `f32`, NIfTI-2 as `i64` (converted with rounding, which
    /// only matters beyond 2⁵³ bytes, far past any file).
    pub(super) vox_offset: f64,
    pub(super) scl_slope: f64,
    pub(super) scl_inter: f64,
    /// Analyze only: `(glmax, glmin)`, SPM2's fallback scaling when `funused1` is unusable.
    pub(super) gl_range: (i32, i32),
    /// Analyze only: `(cal_max, cal_min)`, the other half of that fallback.
    pub(super) cal_range: (f32, f32),
    pub(super) qform_code: i32,
    pub(super) sform_code: i32,
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub(super) quatern: [f64; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z` in mm.
    pub(super) qoffset: [f64; 3],
    /// `srow_x`, `srow_y`, `srow_z`.
    pub(super) srow: [[f64; 4]; 3],
    /// Analyze only: SPM's `origin[0..3]` (1-based voxel of the world origin; 0 when unset).
    pub(super) origin: [i16; 3],
    pub(super) descrip: Vec<u8>,
}

/// Typed access to a header block in one byte order.
struct Fields<'a> {
    block: &'a [u8],
    order: ByteOrder,
}

macro_rules! field_readers {
    ($($name:ident: $t:ty),*) => {$(
        fn $name(&self, at: usize) -> $t {
            let raw = self.block[at..at + std::mem::size_of::<$t>()].try_into().unwrap();
            match self.order {
                ByteOrder::Little => <$t>::from_le_bytes(raw),
                ByteOrder::Big => <$t>::from_be_bytes(raw),
            }
        }
    )*};
}

impl Fields<'_> {
    field_readers!(i16: i16, i32: i32, i64: i64, f32: f32, f64: f64);

    fn array<T, const N: usize>(&self, at: usize, read: impl Fn(&Self, usize) -> T) -> [T; N] {
        std::array::from_fn(|k| read(self, at + k * std::mem::size_of::<T>()))
    }
}

/// Reads `buf.len()` header bytes (fewer if the file ends), classifying read errors.
fn read_block(stream: &mut Stream, buf: &mut [u8], needed: usize) -> Result<usize, ReadError> {
    stream
        .read_up_to(buf)
        .map_err(|e| stream.classify(e, needed as u64))
}

/// Reads and parses the header at the start of `stream`: 348 bytes, or 540 when the size field
/// says NIfTI-2 (the extra bytes are read only then, so that a NIfTI-1 stream stays at 348).
/// `pair` says the header came with a separate image file, the only way Analyze 7.5 is read.
pub(super) fn read_header_block(stream: &mut Stream, pair: bool) -> Result<Header, ReadError> {
    let mut block = [0u8; NIFTI2_HEADER_SIZE];
    let found = read_block(stream, &mut block[..HEADER_SIZE], HEADER_SIZE)?;
    let path = stream.path.clone();
    let sizeof_le = i32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let size_is = |n: i32| found >= 4 && (sizeof_le == n || sizeof_le.swap_bytes() == n);
    let format = if size_is(NIFTI2_HEADER_SIZE as i32) {
        Format::Nifti2
    } else {
        Format::Nifti1
    };
    let truncated = |found: usize| ReadError::TruncatedHeader {
        path: path.clone(),
        format: format.name(),
        found: found as u64,
        expected: format.header_size() as u64,
    };
    if found < HEADER_SIZE {
        return Err(if size_is(HEADER_SIZE as i32) || format == Format::Nifti2 {
            truncated(found)
        } else {
            ReadError::NotNifti {
                path,
                reason: format!("only {found} bytes, a NIfTI-1 header has {HEADER_SIZE}"),
            }
        });
    }
    if format == Format::Nifti2 {
        let more = read_block(
            stream,
            &mut block[HEADER_SIZE..NIFTI2_HEADER_SIZE],
            NIFTI2_HEADER_SIZE,
        )?;
        if HEADER_SIZE + more < NIFTI2_HEADER_SIZE {
            return Err(truncated(HEADER_SIZE + more));
        }
        return parse_nifti2(&block, &path);
    }
    if !size_is(HEADER_SIZE as i32) {
        let reason = if &block[128..132] == b"DICM" {
            "this is a DICOM file; convert the series to NIfTI first (e.g. with dcm2niix)"
                .to_owned()
        } else {
            format!(
                "header size field is {sizeof_le}, expected 348 (NIfTI-1, Analyze) or 540 (NIfTI-2)"
            )
        };
        return Err(ReadError::NotNifti { path, reason });
    }
    let magic = &block[344..348];
    let format = if magic == b"n+1\0" || magic == b"ni1\0" {
        Format::Nifti1
    } else if pair {
        // nibabel's Spm2AnalyzeImage claims any 348-byte header without NIfTI-1 magic.
        Format::Analyze
    } else {
        return Err(ReadError::NotNifti {
            path,
            reason: "no NIfTI-1 magic: an Analyze 7.5 header, which is read only as a .hdr/.img \
                     pair (nibabel does not read it from a single file either)"
                .to_owned(),
        });
    };
    parse_348(&block[..HEADER_SIZE], format, &path)
}

/// The byte order nibabel (and the nifti crate) infer from `dim[0]`: little-endian when it reads
/// as 0..=7 that way, else big-endian. The size field must then read right in that order too;
/// when it does not, `dim[0]` was not a dimension count in either order.
fn byte_order_of(dim0_le_small: bool, sizeof_ok: impl Fn(ByteOrder) -> bool) -> Option<ByteOrder> {
    let order = if dim0_le_small {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    sizeof_ok(order).then_some(order)
}

/// A NIfTI-1 or Analyze 7.5 header (both 348 bytes; Analyze's SPM fields sit where NIfTI-1 keeps
/// its scaling and transform codes).
fn parse_348(block: &[u8], format: Format, path: &Path) -> Result<Header, ReadError> {
    let dim0_le = u16::from_le_bytes([block[40], block[41]]);
    let order = byte_order_of(dim0_le <= 7, |order| {
        Fields { block, order }.i32(0) == HEADER_SIZE as i32
    });
    let order = order.ok_or_else(|| ReadError::InvalidDims {
        path: path.to_owned(),
        dim: Box::new(
            Fields {
                block,
                order: ByteOrder::Big,
            }
            .array(40, Fields::i16)
            .map(i64::from),
        ),
        reason: "dim[0] must be 1..=7".to_owned(),
    })?;
    let f = Fields { block, order };
    let analyze = format == Format::Analyze;
    let nifti_only = |value: i32| if analyze { 0 } else { value };
    Ok(Header {
        format,
        byte_order: order,
        single: &block[344..348] == b"n+1\0",
        dim: f.array(40, Fields::i16).map(i64::from),
        datatype: f.i16(70),
        pixdim: f.array(76, Fields::f32).map(f64::from),
        vox_offset: f64::from(f.f32(108)),
        scl_slope: f64::from(f.f32(112)),
        scl_inter: f64::from(f.f32(116)),
        cal_range: (f.f32(124), f.f32(128)),
        gl_range: (f.i32(140), f.i32(144)),
        qform_code: nifti_only(i32::from(f.i16(252))),
        sform_code: nifti_only(i32::from(f.i16(254))),
        quatern: f.array(256, Fields::f32).map(f64::from),
        qoffset: f.array(268, Fields::f32).map(f64::from),
        srow: [
            f.array(280, Fields::f32).map(f64::from),
            f.array(296, Fields::f32).map(f64::from),
            f.array(312, Fields::f32).map(f64::from),
        ],
        origin: if analyze {
            f.array(253, Fields::i16)
        } else {
            [0; 3]
        },
        descrip: block[148..228].to_vec(),
    })
}

/// A NIfTI-2 header: the NIfTI-1 fields at 64-bit width, in the order of nibabel's
/// `nifti2.header_dtype`.
fn parse_nifti2(block: &[u8], path: &Path) -> Result<Header, ReadError> {
    let not_nifti = |reason: String| ReadError::NotNifti {
        path: path.to_owned(),
        reason,
    };
    let magic = &block[4..8];
    if magic != b"n+2\0" && magic != b"ni2\0" {
        // nibabel's magic check fails at error level 45 for a 540-byte header without it.
        return Err(not_nifti(format!(
            "NIfTI-2 header size but no NIfTI-2 magic (found {:?})",
            String::from_utf8_lossy(magic)
        )));
    }
    // nibabel refuses (level 40) EOL bytes that are neither unset nor 0D 0A 1A 0A: the file went
    // through a text-mode transfer that rewrote line endings, so its voxels are damaged too.
    let eol = &block[8..12];
    if eol != [0x0d, 0x0a, 0x1a, 0x0a] && eol != [0; 4] {
        return Err(not_nifti(format!(
            "NIfTI-2 end-of-line check bytes are {eol:02x?}, not 0d 0a 1a 0a \
             (damaged by a text-mode transfer?)"
        )));
    }
    let dim0_le = u64::from_le_bytes(block[16..24].try_into().unwrap());
    let order = byte_order_of(dim0_le <= 7, |order| {
        Fields { block, order }.i32(0) == NIFTI2_HEADER_SIZE as i32
    });
    let order = order.ok_or_else(|| ReadError::InvalidDims {
        path: path.to_owned(),
        dim: Box::new(
            Fields {
                block,
                order: ByteOrder::Big,
            }
            .array(16, Fields::i64),
        ),
        reason: "dim[0] must be 1..=7".to_owned(),
    })?;
    let f = Fields { block, order };
    Ok(Header {
        format: Format::Nifti2,
        byte_order: order,
        single: magic == b"n+2\0",
        dim: f.array(16, Fields::i64),
        datatype: f.i16(12),
        pixdim: f.array(104, Fields::f64),
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        cal_range: (0.0, 0.0),
        gl_range: (0, 0),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: f.array(352, Fields::f64),
        qoffset: f.array(376, Fields::f64),
        srow: [
            f.array(400, Fields::f64),
            f.array(432, Fields::f64),
            f.array(464, Fields::f64),
        ],
        origin: [0; 3],
        descrip: block[240..320].to_vec(),
    })
}

/// Everything needed to read the voxels, validated.
pub(super) struct Layout {
    pub(super) dim: [i64; 8],
    pub(super) shape: [usize; 3],
    pub(super) voxel_count: usize,
    pub(super) datatype: Datatype,
    pub(super) byte_order: ByteOrder,
    pub(super) vox_offset: u64,
    pub(super) scaling: Option<Scaling>,
    pub(super) spacing: [f64; 3],
    pub(super) affine: Affine,
}

impl Layout {
    pub(super) fn from_header(h: &Header, path: &Path) -> Result<Self, ReadError> {
        let dim = h.dim;
        let shape = checked_shape(dim, path)?;
        // Saturating: NIfTI-2 dimensions are 64-bit, and their product can overflow.
        let voxel_count_u64 = shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64));

        let datatype = Datatype::of_code(h.datatype, h.format).map_err(|name| {
            ReadError::UnsupportedDatatype {
                path: path.to_owned(),
                code: h.datatype,
                name,
            }
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

        let vox_offset = checked_vox_offset(h.vox_offset, h.format, h.single, path)?;
        let scaling = scaling_of(h, path)?;
        let spacing = fixed_pixdim(h);
        let affine = best_affine(h, spacing, &shape, path)?;
        Ok(Self {
            dim,
            shape,
            voxel_count,
            datatype,
            byte_order: h.byte_order,
            vox_offset,
            scaling,
            spacing,
            affine,
        })
    }
}

/// The `[x, y, z]` shape nibabel would give, after dropping trailing dimensions of size 1.
pub(super) fn checked_shape(dim: [i64; 8], path: &Path) -> Result<[usize; 3], ReadError> {
    let invalid = |reason: String| ReadError::InvalidDims {
        path: path.to_owned(),
        dim: Box::new(dim),
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
    // Positive i64 values fit a 64-bit usize; saturate elsewhere (the voxel limit then refuses).
    let size = |d: i64| usize::try_from(d).unwrap_or(usize::MAX);
    Ok([size(used[0]), size(used[1]), size(used[2])])
}

pub(super) fn checked_vox_offset(
    vox_offset: f64,
    format: Format,
    single: bool,
    path: &Path,
) -> Result<u64, ReadError> {
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
    if single {
        // nibabel refuses a single-file offset inside the header (and for 0 reads the header as
        // voxels, which ct3d refuses too).
        let (minimum, reason) = match format {
            Format::Nifti2 => (
                NIFTI2_SINGLE_FILE_VOX_OFFSET,
                "a single-file NIfTI-2 keeps its voxels at offset 544 or later",
            ),
            _ => (
                SINGLE_FILE_VOX_OFFSET,
                "a single-file NIfTI-1 keeps its voxels at offset 352 or later",
            ),
        };
        if offset < minimum {
            return Err(invalid(reason));
        }
    }
    Ok(offset)
}

/// nibabel's `get_slope_inter()` for the header's format.
///
/// NIfTI: no scaling for a zero or non-finite slope; a valid slope with a non-finite intercept is
/// an error. Analyze (nibabel's `Spm2AnalyzeHeader`, after SPM2's `spm_vol_ana.m`): a finite
/// non-zero `funused1` is the slope, with `funused2` as intercept (0 when not finite); otherwise
/// `(cal_max - cal_min) / (glmax - glmin)` with intercept `cal_min - slope * glmin` when both
/// ranges are non-zero, else no scaling.
pub(super) fn scaling_of(h: &Header, path: &Path) -> Result<Option<Scaling>, ReadError> {
    let (slope, inter) = (h.scl_slope, h.scl_inter);
    let usable = slope != 0.0 && slope.is_finite();
    let (slope, inter) = match h.format {
        Format::Nifti1 | Format::Nifti2 => {
            if !usable {
                return Ok(None);
            }
            if !inter.is_finite() {
                return Err(ReadError::InvalidScaling {
                    path: path.to_owned(),
                    slope,
                    inter,
                });
            }
            (slope, inter)
        }
        Format::Analyze if usable => (slope, if inter.is_finite() { inter } else { 0.0 }),
        Format::Analyze => {
            let (glmax, glmin) = h.gl_range;
            let (cal_max, cal_min) = h.cal_range;
            // numpy's arithmetic: int32 (wrapping) and float32 differences, float64 after.
            let unscaled = glmax.wrapping_sub(glmin);
            let scaled = cal_max - cal_min;
            // NaN is "true" in Python, so a NaN calibrated range counts as non-zero.
            if unscaled == 0 || scaled == 0.0 {
                return Ok(None);
            }
            let slope = f64::from(scaled) / f64::from(unscaled);
            (slope, f64::from(cal_min) - slope * f64::from(glmin))
        }
    };
    Ok((slope != 1.0 || inter != 0.0).then_some(Scaling { slope, inter }))
}

/// `pixdim[1..4]` after nibabel's header fix: absolute values, 0 replaced by 1 (NaN is kept).
pub(super) fn fixed_pixdim(h: &Header) -> [f64; 3] {
    [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(|p| if p == 0.0 { 1.0 } else { p.abs() })
}
