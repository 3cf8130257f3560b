//! Grayscale pictures of a volume's axial slices, oriented as the Keras example draws them.
//!
//! The seed shows one slice with `plt.imshow(image[:, :, 30], cmap="gray")`: matplotlib puts the
//! array's first axis down the rows, so picture row `r`, column `c` is voxel `[x = r, y = c]`.
//!
//! Its montage (`plot_slices(4, 10, 128, 128, image[:, :, :40])`) first applies `np.rot90` and
//! `np.transpose` to the `[x, y, z]` array and reshapes it to `[rows, cols, x, y]`; following the
//! indices through, tile `(i, j)` is slice `z = i · cols + j` and its row `r`, column `c` is voxel
//! `[x = r, y = Y − 1 − c]`: the montage is the single-slice view mirrored left–right. We
//! reproduce both as they are (a golden file from numpy pins the montage's mapping).
//!
//! Like `imshow`, each picture, and each montage tile separately, stretches its own minimum to
//! black and maximum to white; NaN voxels are drawn black.

use ct3d_volume::Volume;

use crate::{PlotError, Png, check_side, encode_png};

/// One 2-D grayscale picture before encoding: `rows × cols` values, row-major, top row first.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    /// Number of rows (the volume's `x` size).
    pub rows: usize,
    /// Number of columns (the volume's `y` size).
    pub cols: usize,
    /// Voxel values (the volume's units, e.g. `[0, 1]` after preprocessing).
    pub values: Vec<f32>,
}

/// Which slices a montage shows: `rows × cols` consecutive slices from `first`, row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MontageLayout {
    /// Rows of tiles (the seed: 4).
    pub rows: usize,
    /// Columns of tiles (the seed: 10).
    pub cols: usize,
    /// The first slice shown (0-based; the seed: 0).
    pub first: usize,
}

impl Default for MontageLayout {
    /// The seed's 4 × 10 montage of slices 0..40.
    fn default() -> Self {
        Self {
            rows: 4,
            cols: 10,
            first: 0,
        }
    }
}

/// Axial slice `z` (0-based) as `imshow(image[:, :, z])` shows it: row `r`, column `c` =
/// voxel `[r, c, z]`.
pub fn axial_tile(volume: &Volume, z: usize) -> Result<Tile, PlotError> {
    let [nx, ny, nz] = volume.shape();
    if z >= nz {
        return Err(PlotError::SliceOutOfRange {
            slice: z,
            depth: nz,
        });
    }
    let values = (0..nx)
        .flat_map(|x| (0..ny).map(move |y| (x, y)))
        .map(|(x, y)| volume.get(x, y, z))
        .collect();
    Ok(Tile {
        rows: nx,
        cols: ny,
        values,
    })
}

/// The tiles of the seed's `plot_slices` montage, in reading order (row by row): tile `k` is
/// slice `first + k`, and its row `r`, column `c` is voxel `[r, Y − 1 − c, first + k]`.
pub fn montage_tiles(volume: &Volume, layout: MontageLayout) -> Result<Vec<Tile>, PlotError> {
    let [nx, ny, nz] = volume.shape();
    let MontageLayout { rows, cols, first } = layout;
    if rows == 0 || cols == 0 {
        return Err(PlotError::InvalidSize(format!(
            "a montage needs at least one row and column, got {rows}×{cols}"
        )));
    }
    let count = rows.saturating_mul(cols);
    if first.checked_add(count).is_none_or(|end| end > nz) {
        return Err(PlotError::MontageTooLarge {
            rows,
            cols,
            first,
            depth: nz,
        });
    }
    Ok((first..first + count)
        .map(|z| Tile {
            rows: nx,
            cols: ny,
            values: (0..nx)
                .flat_map(|x| (0..ny).map(move |c| (x, c)))
                .map(|(x, c)| volume.get(x, ny - 1 - c, z))
                .collect(),
        })
        .collect())
}

/// Axial slice `z` as a grayscale PNG, each voxel drawn as a `scale × scale` block.
pub fn axial_slice_png(volume: &Volume, z: usize, scale: usize) -> Result<Png, PlotError> {
    let tile = axial_tile(volume, z)?;
    grid_png(std::slice::from_ref(&tile), 1, 1, scale)
}

/// The seed's montage as one grayscale PNG: tiles side by side without gaps, each voxel a
/// `scale × scale` block, each tile stretched to its own minimum and maximum.
pub fn montage_png(volume: &Volume, layout: MontageLayout, scale: usize) -> Result<Png, PlotError> {
    let tiles = montage_tiles(volume, layout)?;
    grid_png(&tiles, layout.rows, layout.cols, scale)
}

/// Places equally sized tiles on a `rows × cols` grid (reading order) and encodes it.
fn grid_png(tiles: &[Tile], rows: usize, cols: usize, scale: usize) -> Result<Png, PlotError> {
    let (tile_rows, tile_cols) = (tiles[0].rows, tiles[0].cols);
    let width = check_side(
        "picture width",
        tile_cols.saturating_mul(cols).saturating_mul(scale),
    )?;
    let height = check_side(
        "picture height",
        tile_rows.saturating_mul(rows).saturating_mul(scale),
    )?;
    let (width_px, height_px) = (width as usize, height as usize);
    let mut pixels = vec![0u8; width_px * height_px];
    for (k, tile) in tiles.iter().enumerate() {
        let gray = to_gray(&tile.values);
        let (top, left) = (
            (k / cols) * tile_rows * scale,
            (k % cols) * tile_cols * scale,
        );
        for r in 0..tile_rows * scale {
            let row = &mut pixels[(top + r) * width_px + left..][..tile_cols * scale];
            let source = &gray[(r / scale) * tile_cols..][..tile_cols];
            for (c, pixel) in row.iter_mut().enumerate() {
                *pixel = source[c / scale];
            }
        }
    }
    encode_png(pixels, width, height, 1)
}

/// `imshow`'s default normalisation: minimum → 0, maximum → 255 (all 0 when flat); NaN → 0.
pub(crate) fn to_gray(values: &[f32]) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = hi - lo;
    values
        .iter()
        .map(|&v| {
            if span.is_nan() || span <= 0.0 || v.is_nan() {
                0
            } else {
                let t = ((v - lo) / span).clamp(0.0, 1.0);
                (t * 255.0).round() as u8
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_stretches_min_to_max_and_blanks_nan() {
        assert_eq!(to_gray(&[2.0, 4.0, 3.0, f32::NAN]), vec![0, 255, 128, 0]);
        assert_eq!(to_gray(&[1.0, 1.0]), vec![0, 0]);
        assert_eq!(
            to_gray(&[0.0, f32::INFINITY, 1.0]),
            vec![0, 255, 255],
            "infinities clip"
        );
    }

    #[test]
    fn bad_layouts_are_errors() {
        let volume = Volume::filled([4, 3, 5], 0.0);
        let layout = |rows, cols, first| MontageLayout { rows, cols, first };
        assert!(montage_tiles(&volume, layout(1, 5, 0)).is_ok());
        let err = montage_tiles(&volume, layout(2, 3, 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a 2×3 montage from slice 0 needs slices 0..6, but the volume has 5"
        );
        assert!(montage_tiles(&volume, layout(1, 1, 5)).is_err());
        assert!(montage_tiles(&volume, layout(0, 1, 0)).is_err());
        assert!(montage_tiles(&volume, layout(usize::MAX, 2, 0)).is_err());
        assert!(axial_tile(&volume, 5).is_err());
        assert!(axial_slice_png(&volume, 0, 100_000).is_err());
    }
}
