//! Pictures: the montage's orientation against the seed's numpy code (golden file from
//! `tools/golden/gen_montage_golden.py`), the slice and montage PNGs pixel by pixel, and charts
//! that decode and show what they claim.

use std::path::PathBuf;

use ct3d_plot::charts::{Curves, confusion_png, curves_png, roc_png};
use ct3d_plot::slices::{MontageLayout, axial_slice_png, axial_tile, montage_png, montage_tiles};
use ct3d_plot::{PlotError, Png};
use ct3d_volume::Volume;
use serde_json::Value;

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/montage_golden.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn numbers(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn golden_volume(case: &Value) -> Volume {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    Volume::new([shape[0], shape[1], shape[2]], numbers(&case["volume"])).unwrap()
}

fn decode(png: &Png) -> image::DynamicImage {
    let image = image::load_from_memory(&png.bytes).expect("a valid PNG");
    assert_eq!((image.width(), image.height()), (png.width, png.height));
    image
}

#[test]
fn montage_tiles_match_the_seeds_plot_slices() {
    let case = golden();
    let volume = golden_volume(&case);
    let layout = MontageLayout {
        rows: case["rows"].as_u64().unwrap() as usize,
        cols: case["cols"].as_u64().unwrap() as usize,
        first: case["first"].as_u64().unwrap() as usize,
    };
    let tiles = montage_tiles(&volume, layout).unwrap();
    let expected = case["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), expected.len());
    let tile_shape = &case["tile_shape"];
    for (k, (tile, want)) in tiles.iter().zip(expected).enumerate() {
        assert_eq!(
            [tile.rows as u64, tile.cols as u64],
            [
                tile_shape[0].as_u64().unwrap(),
                tile_shape[1].as_u64().unwrap()
            ]
        );
        assert_eq!(tile.values, numbers(want), "tile {k}");
    }
}

#[test]
fn single_slice_matches_imshow_of_the_array() {
    let case = golden();
    let volume = golden_volume(&case);
    let z = case["single_slice"]["z"].as_u64().unwrap() as usize;
    let tile = axial_tile(&volume, z).unwrap();
    assert_eq!(tile.values, numbers(&case["single_slice"]["pixels"]));
}

/// One bright voxel at `[x = 1, y = 0, z = 2]` in an asymmetric volume: where it lands in the
/// pictures pins rows = x, columns = y (mirrored in the montage), tiles = z in reading order.
#[test]
fn a_marked_voxel_lands_where_the_seed_draws_it() {
    let (nx, ny, nz) = (4, 3, 6);
    let mut volume = Volume::filled([nx, ny, nz], 0.0);
    let i = volume.index(1, 0, 2);
    volume.data_mut()[i] = 1.0;
    // Keep every tile non-flat so that its own stretch maps 0 to black.
    for z in 0..nz {
        let j = volume.index(nx - 1, ny - 1, z);
        volume.data_mut()[j] = 0.5;
    }

    let scale = 2;
    let slice = decode(&axial_slice_png(&volume, 2, scale).unwrap()).to_luma8();
    assert_eq!(
        slice.dimensions(),
        ((ny * scale) as u32, (nx * scale) as u32)
    );
    let white: Vec<(u32, u32)> = slice
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] == 255)
        .map(|(c, r, _)| (r, c))
        .collect();
    // rows 2..4 (x = 1), columns 0..2 (y = 0)
    assert_eq!(white, vec![(2, 0), (2, 1), (3, 0), (3, 1)]);

    let layout = MontageLayout {
        rows: 2,
        cols: 3,
        first: 0,
    };
    let montage = decode(&montage_png(&volume, layout, 1).unwrap()).to_luma8();
    assert_eq!(montage.dimensions(), ((3 * ny) as u32, (2 * nx) as u32));
    let white: Vec<(u32, u32)> = montage
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] == 255)
        .map(|(c, r, _)| (r, c))
        .collect();
    // Slice 2 is the third tile of the first row: columns 2·ny.., row x = 1, column ny − 1 − 0.
    // Every other tile's maximum is its 0.5 marker at x = nx − 1, y = ny − 1 (mirrored: column 0).
    let mut expected: Vec<(u32, u32)> = (0..6)
        .filter(|&k| k != 2)
        .map(|k| ((k / 3 * nx + nx - 1) as u32, (k % 3 * ny) as u32))
        .collect();
    expected.push((1, (2 * ny + ny - 1) as u32));
    expected.sort_unstable();
    assert_eq!(white, expected);
}

#[test]
fn too_few_slices_is_a_clear_error() {
    let volume = Volume::filled([8, 8, 30], 0.0);
    let err = montage_png(&volume, MontageLayout::default(), 1).unwrap_err();
    assert!(matches!(err, PlotError::MontageTooLarge { depth: 30, .. }));
    assert_eq!(
        err.to_string(),
        "a 4×10 montage from slice 0 needs slices 0..40, but the volume has 30"
    );
    assert!(matches!(
        axial_slice_png(&volume, 30, 1),
        Err(PlotError::SliceOutOfRange {
            slice: 30,
            depth: 30
        })
    ));
}

fn count_color(image: &image::RgbImage, color: [u8; 3]) -> usize {
    image.pixels().filter(|p| p.0 == color).count()
}

#[test]
fn curves_draw_both_series_in_both_panels() {
    let curves = Curves {
        train_accuracy: vec![0.5, 0.6, 0.8, 0.9],
        validation_accuracy: vec![0.5, 0.5, 0.7, f64::NAN],
        train_loss: vec![0.7, 0.6, 0.4, 0.3],
        validation_loss: vec![0.7, 0.65, 0.5, 0.45],
    };
    let png = curves_png(&curves, 1000, 350).unwrap();
    let image = decode(&png).to_rgb8();
    let (left, right) = (
        image::imageops::crop_imm(&image, 0, 0, 500, 350).to_image(),
        image::imageops::crop_imm(&image, 500, 0, 500, 350).to_image(),
    );
    for panel in [&left, &right] {
        assert!(count_color(panel, [0x1f, 0x77, 0xb4]) > 100, "train line");
        assert!(count_color(panel, [0xff, 0x7f, 0x0e]) > 100, "val line");
        // Titles, ticks and labels are drawn: plenty of dark text pixels.
        assert!(
            panel
                .pixels()
                .filter(|p| p.0.iter().all(|&c| c < 60))
                .count()
                > 300
        );
    }
    assert!(curves_png(&Curves::default(), 1000, 350).is_err());
    // One epoch still shows its points.
    let one = Curves {
        train_accuracy: vec![0.5],
        validation_accuracy: vec![0.5],
        train_loss: vec![0.7],
        validation_loss: vec![0.69],
    };
    let image = decode(&curves_png(&one, 600, 300).unwrap()).to_rgb8();
    assert!(count_color(&image, [0x1f, 0x77, 0xb4]) > 10);
}

#[test]
fn roc_curve_and_confusion_matrix() {
    let png = roc_png(
        &[(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)],
        Some(0.875),
        400,
    )
    .unwrap();
    let image = decode(&png).to_rgb8();
    assert_eq!(image.dimensions(), (400, 400));
    assert!(count_color(&image, [0x1f, 0x77, 0xb4]) > 200);
    assert!(
        roc_png(&[], None, 400).is_ok(),
        "one-class evaluations still get a picture"
    );

    let png = confusion_png([[9, 1], [0, 10]], ["normal", "abnormal"], 400).unwrap();
    let image = decode(&png).to_rgb8();
    // The darkest cell is the largest count (true abnormal, predicted abnormal: bottom right),
    // the lightest the zero (bottom left). Sample each cell near its corner, away from the text.
    let corner = |col: u32, row: u32| {
        let (left, top) = (120 + col * 128, 48 + row * 132);
        image.get_pixel(left + 12, top + 12).0
    };
    let darkness = |p: [u8; 3]| 765 - p.iter().map(|&c| u32::from(c)).sum::<u32>();
    assert!(darkness(corner(1, 1)) > darkness(corner(0, 0)));
    assert!(darkness(corner(0, 0)) > darkness(corner(1, 0)));
    assert_eq!(corner(0, 1), [0xf7, 0xfb, 0xff]);
    assert!(confusion_png([[0, 0], [0, 0]], ["a", "b"], 0).is_err());
}
