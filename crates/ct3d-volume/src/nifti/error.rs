//! Why a NIfTI file could not be read ([`ReadError`]) or written ([`WriteError`]): one line
//! each, naming the file.

use super::*;

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
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a NIfTI-1, NIfTI-2 or (as a pair) Analyze 7.5 file: wrong size field or
    /// magic, too short, damaged NIfTI-2 end-of-line bytes, an Analyze header as a single file.
    #[error("{path}: not a NIfTI file: {reason}")]
    NotNifti {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file ends inside the header (348 bytes, 540 for NIfTI-2).
    #[error("{path}: truncated {format} header: {found} of {expected} bytes")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// `"NIfTI-1"` or `"NIfTI-2"`, as the size field says.
        format: &'static str,
        /// How many header bytes there were.
        found: u64,
        /// How many the header has.
        expected: u64,
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
        /// The header's value (NIfTI-1's `f32` or NIfTI-2's `i64`, widened).
        vox_offset: f64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// `dim` is inconsistent (`dim[0]` outside 1..=7, or a used dimension ≤ 0).
    #[error("{path}: invalid dimensions {dim:?}: {reason}")]
    InvalidDims {
        /// The file.
        path: PathBuf,
        /// The header's `dim` field (NIfTI-1 and Analyze `i16`, NIfTI-2 `i64`, widened); boxed
        /// so that every error type holding a `ReadError` stays small.
        dim: Box<[i64; 8]>,
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
        slope: f64,
        /// The header's `scl_inter`.
        inter: f64,
    },
    /// The file is valid for nibabel but needs something ct3d does not implement.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
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
    #[error("{path}: cannot write")]
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
    /// A NaN voxel cannot be stored as an integer (`int16` or `uint8`).
    #[error("{path}: voxel {index:?} is NaN, which {dtype} cannot store")]
    NanInInteger {
        /// The destination.
        path: PathBuf,
        /// `[x, y, z]` of the first NaN voxel.
        index: [usize; 3],
        /// The integer type's name: `"int16"` or `"uint8"`.
        dtype: &'static str,
    },
}
