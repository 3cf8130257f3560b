//! The former home of [`read_scan`]: kept so that `ct3d_volume::scan::…` paths still work. The
//! format seam is [`crate::format`].

pub use crate::format::{ScanError, is_dicom_series, read_scan};
