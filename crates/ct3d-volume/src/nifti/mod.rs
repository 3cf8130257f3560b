//! NIfTI-1 and NIfTI-2 reading (and Analyze 7.5 pairs), NIfTI-1 writing, value for value and
//! affine for affine with nibabel 5.4.
//!
//! # Reading
//!
//! [`read_volume`] accepts `.nii`, `.nii.gz`, `.hdr`/`.img` pairs (either half may be gzipped, and
//! either half's path may be given). Compression is detected from the gzip magic bytes, not the
//! name. The header format ([`Format`]) is detected from its size field and magic as `nib.load`
//! detects it:
//!
//! - **NIfTI-1** (`sizeof_hdr` 348, magic `n+1` or `ni1`): nibabel's `Nifti1Image`/`Nifti1Pair`.
//! - **NIfTI-2** (`sizeof_hdr` 540, magic `n+2` or `ni2`): nibabel's `Nifti2Image`/`Nifti2Pair`.
//!   The same rules as NIfTI-1 applied to its 64-bit fields (`i64` dimensions and `vox_offset`,
//!   `f64` pixdim, scaling, quaternion and sform), with two differences nibabel makes: a single
//!   file keeps its voxels at offset 544 or later, and a qform quaternion's `w` is taken as 0
//!   below `3 × f64::EPSILON` (not `f32`'s). End-of-line check bytes other than `0D 0A 1A 0A` or
//!   all zero are refused, as nibabel refuses them (the file went through a text-mode transfer).
//! - **Analyze 7.5** (`sizeof_hdr` 348 without NIfTI-1 magic), only as a `.hdr`/`.img` pair: for
//!   such a file `nib.load` returns a `Spm2AnalyzeImage`, whose rules apply. Scaling: a finite
//!   non-zero `funused1` is the slope, `funused2` the intercept (0 when not finite); otherwise,
//!   when both `glmax - glmin` and `cal_max - cal_min` are non-zero, the slope maps the first
//!   range onto the second (`cal_min - slope × glmin` the intercept); otherwise none. Affine: SPM's
//!   `origin` (1-based voxel at the world origin, bytes 253..259) when it is non-zero and within
//!   `(-dim, 2 × dim)` on every axis, the translation computed in `f32` as nibabel computes it;
//!   otherwise the base affine below. Only the Analyze datatypes (`uint8`, `int16`, `int32`,
//!   `float32`, `float64`) exist. A non-empty SPM `.mat` file beside the pair (which nibabel
//!   would read as the affine with scipy) is refused, as ct3d does not read MATLAB files.
//!
//! Both byte orders (inferred from `dim[0]`, as nibabel and the nifti crate do) and the datatypes
//! `uint8`, `int8`, `int16`, `uint16`, `int32`, `uint32`, `int64`, `uint64`, `float32` and
//! `float64` are read; voxel values are what nibabel's `get_fdata()` returns, rounded once to
//! `f32`:
//!
//! - **Scaling** follows nibabel's `get_slope_inter()`: a `scl_slope` of 0 or a non-finite one
//!   means "no scaling" and `scl_inter` is then ignored; otherwise `value * slope + inter` is
//!   computed in `f64` (the multiplication skipped when the slope is 1, the addition when the
//!   intercept is 0, as nibabel does) and rounded to `f32`. A valid slope with a non-finite
//!   intercept is an error, as in nibabel. (Analyze: see above.)
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
//! - **Refused**: an Analyze header as a single file (nibabel does not recognise one either);
//!   unsupported datatypes (binary, complex, RGB, `float128`); a single-file `vox_offset`
//!   below 352 (NIfTI-2: 544; nibabel refuses 1..=351, and for 0 reads the header as voxels);
//!   headers whose data cannot fit in the file (an uncompressed file must hold `vox_offset +
//!   voxels × size` bytes, a gzip file decompresses to at most [`DEFLATE_MAX_RATIO`] times its
//!   size) or whose `f32` output would exceed [`MAX_VOXELS`] voxels (8 GiB; NIfTI-2's 64-bit
//!   dimensions are multiplied without overflow). These checks run before any voxel
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

/// Size of a NIfTI-1 (and Analyze 7.5) header in bytes.
const HEADER_SIZE: usize = 348;
/// Offset of the voxel data in a single-file NIfTI-1 without extensions.
const SINGLE_FILE_VOX_OFFSET: u64 = 352;
/// Size of a NIfTI-2 header in bytes.
const NIFTI2_HEADER_SIZE: usize = 540;
/// Offset of the voxel data in a single-file NIfTI-2 without extensions.
const NIFTI2_SINGLE_FILE_VOX_OFFSET: u64 = 544;
/// Bytes inflated or read per step; small enough that each step's bytes are still in cache when
/// they are converted to `f32`.
const CHUNK_BYTES: usize = 256 * 1024;

mod affine;
mod error;
mod header;
mod read;
mod write;

pub use affine::orientation_codes;
pub use error::{ReadError, WriteError};
pub use header::{ByteOrder, Datatype, Format, HeaderSummary, OutputDtype, Scaling, read_header};
pub use read::{read_volume, scan_files};
pub use write::{write_volume, write_volume_described};

use affine::*;
use header::*;
use read::*;
