//! # ct3d-volume
//!
//! Everything ct3d does to a CT scan before a network sees it, with no deep-learning dependency
//! so that it builds and tests in seconds:
//!
//! - [`nifti`] (also reachable as `nifti_io`): read NIfTI-1 and NIfTI-2 files (`.nii`, `.nii.gz`,
//!   `.hdr`/`.img`) and Analyze 7.5 pairs into a [`Volume`], and write NIfTI-1;
//! - [`dicom`]: read a folder holding a DICOM series into a [`Volume`] as `dcm2niix` converts it;
//! - [`format`](mod@format): the `ScanFormat` seam, the one place that recognises a path as a
//!   scan format (a folder is a DICOM series; a file NRRD, MetaImage or NIfTI) and reads it
//!   ([`scan`] keeps its old paths);
//! - [`preprocess`]: the Keras example's `process_scan` (HU window, 90° rotation, linear zoom),
//!   number for number with scipy;
//! - [`spline`]: scipy.ndimage-exact B-spline prefiltering, affine rotation and zoom;
//! - [`rng`]: SplitMix64 and seed derivation, the one source of randomness;
//! - [`augment`]: the training augmentations, an ordered list of seedable, thread-count
//!   independent transforms (the example's random-angle rotation by default);
//! - [`synth`]: synthetic phantom chest CTs (the project's test and demo data);
//! - [`dataset`], [`manifest`] and [`cache`]: class-folder and CSV-manifest datasets and the
//!   content-addressed `prepare` cache; [`cache_admin`]: what the cache holds, cleaning it, and
//!   what a preparation would add;
//! - [`atomic`]: write-to-temp-then-rename helpers used by every output.
//!
//! Axis order everywhere is nibabel's `get_fdata()` order, `[x, y, z]`, stored with `x` varying
//! fastest (the NIfTI on-disk order), so no transpose happens on read or write.

pub mod atomic;
pub mod augment;
pub mod cache;
pub mod cache_admin;
pub mod dataset;
pub mod dicom;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod manifest;
pub mod nifti;
pub mod preprocess;
pub mod rng;
pub mod scan;
pub mod spline;
pub mod synth;
pub mod volume;

pub use volume::{Affine, Volume};

/// The former name of [`nifti`], kept so that `ct3d_volume::nifti_io::…` paths still work.
pub use nifti as nifti_io;

/// An error and its causes on one line, `error: cause: cause's cause`, as anyhow's `{:#}` prints
/// them.
///
/// The workspace's errors leave their cause out of their own message (the cause is their
/// [`source`](std::error::Error::source)), so `to_string()` alone would drop it: wherever a
/// library keeps or reports an error as text (a skipped scan's reason, say), it uses this.
/// Line breaks inside a message become spaces, so the result is one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        line.push_str(": ");
        line.push_str(&next.to_string());
        cause = next.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn chain_prints_each_cause_once_on_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such\nfile");
        let err = crate::nifti::ReadError::Io {
            path: "scan.nii".into(),
            source: io,
        };
        assert_eq!(err.to_string(), "scan.nii: cannot read");
        assert_eq!(super::chain(&err), "scan.nii: cannot read: no such file");
    }
}
