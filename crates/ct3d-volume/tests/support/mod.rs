//! Helpers shared by the integration tests: fixture locations, the optional real-data folder and a
//! minimal `.npy` reader for the golden files written by `tools/golden/*.py`.

use std::path::{Path, PathBuf};

use ct3d_volume::Volume;

/// `crates/ct3d-volume/tests/data/<sub>`.
pub fn data_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

/// `crates/ct3d-volume/tests/data/golden`.
pub fn golden_dir() -> PathBuf {
    data_dir("golden")
}

/// `<checkout>/../shared/realdata`, or `None` (after printing a notice naming `test`) when absent.
pub fn realdata(test: &str) -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/realdata"
    ));
    if dir.is_dir() {
        Some(dir.to_owned())
    } else {
        println!("{test}: skipped, {} is absent", dir.display());
        None
    }
}

/// An array read from a `.npy` file: its shape and its values as `f64`, in the file's memory order
/// (first axis fastest for the Fortran-order files the generator writes).
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl NpyArray {
    /// The array as a `Volume` (`[x, y, z]`, up to three axes; missing trailing axes are 1).
    pub fn to_volume(&self) -> Volume {
        assert!(
            self.shape.len() <= 3,
            "not a volume: shape {:?}",
            self.shape
        );
        let mut shape = [1usize; 3];
        shape[..self.shape.len()].copy_from_slice(&self.shape);
        Volume::new(shape, self.values.iter().map(|&v| v as f32).collect())
            .expect("npy length matches shape")
    }
}

/// Reads a little-endian `.npy` (version 1–3) of `<i2`, `<f4` or `<f8`, Fortran order (or with at
/// most one axis longer than 1, where the order does not matter).
pub fn read_npy(path: &Path) -> NpyArray {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => panic!("{}: unsupported npy version {v}", path.display()),
    };
    let header = std::str::from_utf8(&bytes[header_start..header_start + header_len]).unwrap();
    let field = |key: &str| -> &str {
        let at = header
            .find(key)
            .unwrap_or_else(|| panic!("{}: no {key} in {header}", path.display()));
        &header[at + key.len()..]
    };
    let descr = field("'descr':").trim_start().trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').unwrap()];
    let fortran = field("'fortran_order':").trim_start().starts_with("True");
    let shape_text = field("'shape':").trim_start().trim_start_matches('(');
    let shape: Vec<usize> = shape_text[..shape_text.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        fortran || shape.iter().filter(|&&n| n > 1).count() <= 1,
        "{}: C-order multi-dimensional arrays are not supported",
        path.display()
    );
    let data = &bytes[header_start + header_len..];
    let values: Vec<f64> = match descr {
        "<i2" => data
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            .collect(),
        "<f4" => data
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{}: unsupported dtype {other}", path.display()),
    };
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "{}: truncated data",
        path.display()
    );
    NpyArray { shape, values }
}

/// Reads `name` from the golden directory.
pub fn golden(name: &str) -> NpyArray {
    read_npy(&golden_dir().join(name))
}

/// Largest absolute difference between `actual` and `expected` (NaN counts as infinite), with the
/// flat index where it occurs.
pub fn max_abs_error(actual: &[f32], expected: &[f64]) -> (f64, usize) {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| {
            let d = (f64::from(a) - e).abs();
            if d.is_nan() { f64::INFINITY } else { d }
        })
        .enumerate()
        .fold(
            (0.0, 0),
            |(best, at), (i, d)| if d > best { (d, i) } else { (best, at) },
        )
}

/// A float32 Fortran-order array's shape and values (first index fastest), as `f32`.
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let array = read_npy(path);
    let values = array.values.iter().map(|&v| v as f32).collect();
    (array.shape, values)
}
