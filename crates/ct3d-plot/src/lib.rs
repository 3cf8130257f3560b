//! # ct3d-plot
//!
//! The pictures of the Keras example "3D image classification from CT scans", as PNG files that
//! need no Python and no system libraries (plotters' bitmap backend, an embedded DejaVu Sans font
//! through `ab_glyph`, PNG encoding by the `image` crate):
//!
//! - [`slices`]: one axial slice in grayscale (the seed's `plt.imshow(image[:, :, 30])`) and the
//!   seed's `plot_slices` montage, in exactly the seed figure's orientation;
//! - [`charts`]: accuracy/loss curves per epoch (train vs validation, the seed's two-panel
//!   figure), the ROC curve with its AUC, and a 2×2 confusion matrix;
//! - [`overlay`]: a heat map (Grad-CAM, occlusion) blended in colour over the montage.
//!
//! Every function returns a [`Png`] in memory; the caller decides where it goes (a file written
//! atomically, or inline in an HTML report).

pub mod charts;
pub mod overlay;
pub mod slices;

mod font;

use std::io::Cursor;

/// An encoded PNG image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Png {
    /// The PNG file's bytes.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A slice index beyond the volume's depth.
    #[error("slice {slice} is outside the volume's {depth} slices (0..{depth})")]
    SliceOutOfRange {
        /// The requested slice (0-based).
        slice: usize,
        /// The volume's number of slices.
        depth: usize,
    },
    /// A montage that needs more slices than the volume has.
    #[error(
        "a {rows}×{cols} montage from slice {first} needs slices {first}..{end}, but the volume has {depth}",
        end = first + rows * cols
    )]
    MontageTooLarge {
        /// Rows of tiles.
        rows: usize,
        /// Columns of tiles.
        cols: usize,
        /// First slice shown.
        first: usize,
        /// The volume's number of slices.
        depth: usize,
    },
    /// A size or count of zero, or a picture too large to draw.
    #[error("invalid picture size: {0}")]
    InvalidSize(String),
    /// The drawing library failed (not expected with valid input).
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// JPEG quality of [`Png::to_jpeg`]: high enough that slices keep their fine texture.
pub const JPEG_QUALITY: u8 = 95;

impl Png {
    /// The same picture as a baseline JPEG (quality [`JPEG_QUALITY`]), for outputs named `.jpg`.
    pub fn to_jpeg(&self) -> Result<Vec<u8>, PlotError> {
        let picture = image::load_from_memory_with_format(&self.bytes, image::ImageFormat::Png)
            .map_err(|e| PlotError::Draw(format!("PNG decoding: {e}")))?;
        let mut bytes = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        // Gray stays one channel; anything else (charts) is RGB, which JPEG has no alpha for.
        let written = match picture {
            image::DynamicImage::ImageLuma8(gray) => gray.write_with_encoder(encoder),
            other => other.to_rgb8().write_with_encoder(encoder),
        };
        written.map_err(|e| PlotError::Draw(format!("JPEG encoding: {e}")))?;
        Ok(bytes)
    }
}

/// Largest width or height of a picture, in pixels: a guard against a typo such as `--scale 400`
/// allocating gigabytes.
pub const MAX_SIDE: u32 = 16_384;

fn check_side(what: &str, side: usize) -> Result<u32, PlotError> {
    match u32::try_from(side) {
        Ok(s) if s > 0 && s <= MAX_SIDE => Ok(s),
        _ => Err(PlotError::InvalidSize(format!(
            "{what} of {side} pixels (allowed: 1 to {MAX_SIDE})"
        ))),
    }
}

/// Encodes an 8-bit image (`channels` = 1 gray or 3 RGB, row-major, top row first).
fn encode_png(pixels: Vec<u8>, width: u32, height: u32, channels: u8) -> Result<Png, PlotError> {
    let mut bytes = Vec::new();
    let format = image::ImageFormat::Png;
    let written = match channels {
        1 => image::GrayImage::from_raw(width, height, pixels)
            .ok_or_else(|| PlotError::Draw("gray buffer size".into()))?
            .write_to(&mut Cursor::new(&mut bytes), format),
        _ => image::RgbImage::from_raw(width, height, pixels)
            .ok_or_else(|| PlotError::Draw("RGB buffer size".into()))?
            .write_to(&mut Cursor::new(&mut bytes), format),
    };
    written.map_err(|e| PlotError::Draw(format!("PNG encoding: {e}")))?;
    Ok(Png {
        bytes,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_converts_to_a_jpeg_of_the_same_size() {
        let gray = encode_png((0..64 * 32).map(|i| (i % 251) as u8).collect(), 64, 32, 1).unwrap();
        let rgb = encode_png(vec![200; 16 * 8 * 3], 16, 8, 3).unwrap();
        for (png, size) in [(gray, (64, 32)), (rgb, (16, 8))] {
            let jpeg = png.to_jpeg().unwrap();
            assert_eq!(
                &jpeg[..3],
                &[0xFF, 0xD8, 0xFF],
                "JPEG start-of-image marker"
            );
            let decoded =
                image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
            assert_eq!((decoded.width(), decoded.height()), size);
        }
    }
}
