//! A heat map over a scan: the seed's montage layout in gray with the map blended on top in
//! colour, as Grad-CAM pictures are usually drawn.
//!
//! The scan is drawn exactly as [`crate::slices::montage_png`] draws it (each tile stretched to
//! its own minimum and maximum). The map is scaled once for the whole volume, from 0 to its
//! maximum, so tiles compare; it goes through a "jet"-like colormap (blue → cyan → yellow → red)
//! and is blended with opacity `alpha · t` where `t` is the scaled value, so that where the
//! map is zero the scan shows through untouched.

use ct3d_volume::Volume;

use crate::slices::{MontageLayout, montage_tiles};
use crate::{PlotError, Png, check_side, encode_png};

/// The montage of `volume` with `heat` (same shape, values ≥ 0; negative ones count as 0)
/// overlaid, each voxel a `scale × scale` block; `alpha` in `[0, 1]` is the opacity of the
/// map's maximum.
pub fn overlay_montage_png(
    volume: &Volume,
    heat: &Volume,
    layout: MontageLayout,
    scale: usize,
    alpha: f32,
) -> Result<Png, PlotError> {
    if volume.shape() != heat.shape() {
        return Err(PlotError::InvalidSize(format!(
            "heat map of shape {:?} over a volume of shape {:?}",
            heat.shape(),
            volume.shape()
        )));
    }
    let tiles = montage_tiles(volume, layout)?;
    let heat_tiles = montage_tiles(heat, layout)?;
    let peak = heat
        .data()
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, &v| m.max(v));
    let (tile_rows, tile_cols) = (tiles[0].rows, tiles[0].cols);
    let width = check_side(
        "picture width",
        tile_cols.saturating_mul(layout.cols).saturating_mul(scale),
    )?;
    let height = check_side(
        "picture height",
        tile_rows.saturating_mul(layout.rows).saturating_mul(scale),
    )?;
    let (width_px, height_px) = (width as usize, height as usize);
    let mut pixels = vec![0u8; width_px * height_px * 3];
    let alpha = alpha.clamp(0.0, 1.0);
    for (k, (tile, heat_tile)) in tiles.iter().zip(&heat_tiles).enumerate() {
        let gray = crate::slices::to_gray(&tile.values);
        let (top, left) = (
            (k / layout.cols) * tile_rows * scale,
            (k % layout.cols) * tile_cols * scale,
        );
        for r in 0..tile_rows * scale {
            for c in 0..tile_cols * scale {
                let i = (r / scale) * tile_cols + c / scale;
                let base = f32::from(gray[i]);
                let t = if peak > 0.0 {
                    (heat_tile.values[i] / peak).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let t = if t.is_nan() { 0.0 } else { t };
                let colour = jet(t);
                let a = alpha * t;
                let pixel = &mut pixels[((top + r) * width_px + left + c) * 3..][..3];
                for (p, &channel) in pixel.iter_mut().zip(&colour) {
                    *p = (base * (1.0 - a) + channel * a).round() as u8;
                }
            }
        }
    }
    encode_png(pixels, width, height, 3)
}

/// A "jet"-like colormap: `t` in `[0, 1]` → RGB in `[0, 255]` (0 blue, 0.5 green-yellow, 1 red).
pub fn jet(t: f32) -> [f32; 3] {
    let channel = |centre: f32| (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0;
    [channel(3.0), channel(2.0), channel(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_from_blue_to_red() {
        let [r, g, b] = jet(0.0);
        assert!(b > 100.0 && r == 0.0 && g == 0.0);
        let [r, g, b] = jet(1.0);
        assert!(r > 100.0 && g == 0.0 && b == 0.0);
        let [_, g, _] = jet(0.5);
        assert_eq!(g, 255.0);
    }

    #[test]
    fn zero_heat_leaves_the_gray_montage_and_shapes_must_agree() {
        let volume = Volume::from_fn([4, 3, 2], |x, y, z| (x + 2 * y + z) as f32);
        let heat = Volume::filled([4, 3, 2], 0.0);
        let layout = MontageLayout {
            rows: 1,
            cols: 2,
            first: 0,
        };
        let png = overlay_montage_png(&volume, &heat, layout, 1, 0.5).unwrap();
        let gray = crate::slices::montage_png(&volume, layout, 1).unwrap();
        let decode = |bytes: &[u8]| image::load_from_memory(bytes).unwrap().to_rgb8();
        assert_eq!(decode(&png.bytes), decode(&gray.bytes));
        let other = Volume::filled([4, 3, 3], 1.0);
        assert!(overlay_montage_png(&volume, &other, layout, 1, 0.5).is_err());
        // A hot voxel turns its pixel red-ish.
        let mut hot = heat.clone();
        hot.data_mut()[0] = 1.0;
        let picture = decode(
            &overlay_montage_png(&volume, &hot, layout, 1, 1.0)
                .unwrap()
                .bytes,
        );
        let pixel = picture.get_pixel(2, 0); // tile 0, row 0, column Y − 1 − 0 = 2 is voxel [0, 0, 0]
        assert!(pixel[0] > 100 && pixel[2] == 0, "{pixel:?}");
    }
}
