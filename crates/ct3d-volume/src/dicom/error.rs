//! Why a folder could not be read as a DICOM series ([`DicomError`]): one line naming the
//! folder (and the file at fault).

use super::*;

/// Why a folder could not be read as a DICOM series. Displays as one line that names the folder.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// The folder does not exist.
    #[error("{path}: no such folder")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a file, not a folder.
    #[error("{path}: not a folder (a DICOM series is read from the folder holding its files)")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// An operating-system error while listing or reading.
    #[error("{path}: cannot read")]
    Io {
        /// The folder, or the file that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No file in the folder is a DICOM file.
    #[error("{path}: no DICOM files in the folder")]
    NoDicomFiles {
        /// The folder.
        path: PathBuf,
    },
    /// DICOM files, but none holds an image (e.g. only a `DICOMDIR`).
    #[error("{path}: no DICOM images in the folder ({files} DICOM files, none with an image)")]
    NoImages {
        /// The folder.
        path: PathBuf,
        /// How many DICOM files there were.
        files: usize,
    },
    /// A DICOM file could not be parsed.
    #[error("{path}: {file}: cannot read DICOM file: {detail}")]
    ReadFile {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// The transfer syntax is unknown, or its pixel data cannot be decoded.
    #[error(
        "{path}: {file}: transfer syntax {uid} ({name}) cannot be decoded by ct3d (it reads \
         uncompressed, deflate, RLE, JPEG and JPEG 2000 DICOM)"
    )]
    UnsupportedTransferSyntax {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// The transfer syntax UID.
        uid: String,
        /// Its name, or `unknown transfer syntax`.
        name: String,
    },
    /// An image kind ct3d does not read (multi-frame, colour, ...).
    #[error("{path}: {file}: {what} is not supported")]
    Unsupported {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What it is.
        what: String,
    },
    /// A required attribute is missing or invalid.
    #[error("{path}: {file}: {detail}")]
    BadAttribute {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// Which attribute and what is wrong with it.
        detail: String,
    },
    /// Several series and no selection.
    #[error("{path}: {count} DICOM series in the folder, choose one by its UID: {listing}")]
    SeveralSeries {
        /// The folder.
        path: PathBuf,
        /// How many series.
        count: usize,
        /// `UID "description" (N slices)` for each, separated by `; `.
        listing: String,
    },
    /// The series asked for is not in the folder.
    #[error("{path}: no series {uid} in the folder; series present: {listing}")]
    SeriesNotFound {
        /// The folder.
        path: PathBuf,
        /// The UID asked for.
        uid: String,
        /// The series present, as in [`DicomError::SeveralSeries`].
        listing: String,
    },
    /// The slices disagree on size, pixel spacing or orientation.
    #[error("{path}: inconsistent series: {detail}")]
    Inconsistent {
        /// The folder.
        path: PathBuf,
        /// What differs, naming the files.
        detail: String,
    },
    /// Two slices at the same position.
    #[error(
        "{path}: slices {first} and {second} are at the same position ({position:.3} mm along \
         the slice normal): duplicate slices or two series with one UID"
    )]
    DuplicatePosition {
        /// The folder.
        path: PathBuf,
        /// One file.
        first: String,
        /// The other.
        second: String,
        /// Their position along the slice normal.
        position: f64,
    },
    /// Uneven slice positions: a missing slice or a mixed series.
    #[error(
        "{path}: slices {first} and {second} are {distance:.4} mm apart but the series' median \
         slice distance is {median:.4} mm (missing slices?)"
    )]
    Gap {
        /// The folder.
        path: PathBuf,
        /// The slice before the gap.
        first: String,
        /// The slice after it.
        second: String,
        /// Their distance along the slice normal.
        distance: f64,
        /// The median distance between neighbouring slices.
        median: f64,
    },
    /// The pixel data could not be decoded.
    #[error("{path}: {file}: cannot decode pixel data: {detail}")]
    Decode {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// More voxels than ct3d accepts.
    #[error(
        "{path}: {columns}×{rows}×{slices} voxels exceeds ct3d's limit of {} voxels",
        crate::nifti::MAX_VOXELS
    )]
    TooLarge {
        /// The folder.
        path: PathBuf,
        /// Columns per slice.
        columns: usize,
        /// Rows per slice.
        rows: usize,
        /// Number of slices.
        slices: usize,
    },
}
