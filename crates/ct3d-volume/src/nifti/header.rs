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

    /// The supported type of a header's `datatype`, or the name of the unsupported one.
    pub(super) fn of_header(header: &NiftiHeader) -> Result<Self, &'static str> {
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
pub(super) fn description_text(descrip: &[u8]) -> String {
    let end = descrip
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(descrip.len());
    String::from_utf8_lossy(&descrip[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Header parsing and validation

/// Reads and parses the 348-byte header at the start of `stream`.
pub(super) fn read_header_block(stream: &mut Stream) -> Result<NiftiHeader, ReadError> {
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
pub(super) struct Layout {
    pub(super) dim: [i16; 8],
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
    pub(super) fn from_header(h: &NiftiHeader, path: &Path) -> Result<Self, ReadError> {
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
pub(super) fn checked_shape(dim: [i16; 8], path: &Path) -> Result<[usize; 3], ReadError> {
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

pub(super) fn checked_vox_offset(
    vox_offset: f32,
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
    if single && offset < SINGLE_FILE_VOX_OFFSET {
        return Err(invalid(
            "a single-file NIfTI-1 keeps its voxels at offset 352 or later",
        ));
    }
    Ok(offset)
}

/// nibabel's `get_slope_inter()`: no scaling for a zero or non-finite slope.
pub(super) fn scaling_of(h: &NiftiHeader, path: &Path) -> Result<Option<Scaling>, ReadError> {
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
pub(super) fn fixed_pixdim(h: &NiftiHeader) -> [f32; 3] {
    [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(|p| if p == 0.0 { 1.0 } else { p.abs() })
}
