//! Random mirroring: each axis is flipped with its own probability (TorchIO's `RandomFlip`, MONAI's
//! `RandFlip` per axis).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, require_probability};
use crate::Volume;
use crate::rng::SplitMix64;

const KIND: &str = "random_flip";

/// Mirrors axis `k` of `[x, y, z]` with probability `probabilities[k]`, independently per axis.
/// Takes three draws from the sample's stream (one per axis, in `x, y, z` order) whatever the
/// probabilities. Recorded as `{"kind": "random_flip", "probabilities": [0.5, 0.0, 0.0]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FlipSettings")]
pub struct RandomFlip {
    /// Per-axis flip probability, `[x, y, z]`, each in `[0, 1]`.
    probabilities: [f64; 3],
}

/// [`RandomFlip`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FlipSettings {
    probabilities: [f64; 3],
}

impl Default for FlipSettings {
    fn default() -> Self {
        let RandomFlip { probabilities } = RandomFlip::default();
        Self { probabilities }
    }
}

impl TryFrom<FlipSettings> for RandomFlip {
    type Error = SettingError;

    fn try_from(settings: FlipSettings) -> Result<Self, SettingError> {
        Self::new(settings.probabilities)
    }
}

impl RandomFlip {
    /// A flip of axis `k` with probability `probabilities[k]` (each in `[0, 1]`).
    pub fn new(probabilities: [f64; 3]) -> Result<Self, SettingError> {
        for p in probabilities {
            require_probability(p, KIND, "probabilities")?;
        }
        Ok(Self { probabilities })
    }

    /// The per-axis probabilities, `[x, y, z]`.
    pub fn probabilities(&self) -> [f64; 3] {
        self.probabilities
    }

    /// Which axes to flip for the next three draws of `rng`.
    pub fn draw(&self, rng: &mut SplitMix64) -> [bool; 3] {
        self.probabilities.map(|p| rng.next_f64() < p)
    }
}

/// Left–right only (`x`, probability 0.5): the one mirror under which a chest stays a plausible
/// chest.
impl Default for RandomFlip {
    fn default() -> Self {
        Self {
            probabilities: [0.5, 0.0, 0.0],
        }
    }
}

impl Augment for RandomFlip {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        flip_axes(volume, self.draw(rng))
    }

    fn apply_owned(&self, mut volume: Volume, rng: &mut SplitMix64) -> Volume {
        flip_in_place(&mut volume, self.draw(rng));
        volume
    }
}

/// `random flip (x 50%, y 10%)`: the axes that may flip.
impl fmt::Display for RandomFlip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<String> = ["x", "y", "z"]
            .iter()
            .zip(self.probabilities)
            .filter(|(_, p)| *p > 0.0)
            .map(|(axis, p)| format!("{axis} {}%", p * 100.0))
            .collect();
        if axes.is_empty() {
            f.write_str("random flip (never)")
        } else {
            write!(f, "random flip ({})", axes.join(", "))
        }
    }
}

/// `volume` mirrored along every axis `k` with `axes[k]` true: `np.flip(volume, axes)`. Shape and
/// geometry are kept (the values move within the same voxel grid, as every augmentation does).
pub fn flip_axes(volume: &Volume, axes: [bool; 3]) -> Volume {
    if axes == [false; 3] {
        return volume.clone();
    }
    let [nx, ny, nz] = volume.shape();
    let data = volume.data();
    let mut out = Vec::with_capacity(data.len());
    for z in 0..nz {
        let sz = if axes[2] { nz - 1 - z } else { z };
        for y in 0..ny {
            let sy = if axes[1] { ny - 1 - y } else { y };
            let row = &data[nx * (sy + ny * sz)..][..nx];
            if axes[0] {
                out.extend(row.iter().rev());
            } else {
                out.extend_from_slice(row);
            }
        }
    }
    volume
        .with_data(volume.shape(), out)
        .expect("output has the input's shape")
}

/// [`flip_axes`] in place: rows reversed, then rows and planes swapped end for end.
pub fn flip_in_place(volume: &mut Volume, axes: [bool; 3]) {
    let [nx, ny, nz] = volume.shape();
    if volume.is_empty() {
        return;
    }
    let plane = nx * ny;
    let data = volume.data_mut();
    if axes[0] {
        data.chunks_exact_mut(nx).for_each(<[f32]>::reverse);
    }
    // Swaps the `i`-th and the mirrored run of `len` elements of `runs`, for the first half.
    let swap_ends = |runs: &mut [f32], len: usize, count: usize| {
        for i in 0..count / 2 {
            let (low, high) = runs.split_at_mut((count - 1 - i) * len);
            low[i * len..(i + 1) * len].swap_with_slice(&mut high[..len]);
        }
    };
    if axes[1] {
        for rows in data.chunks_exact_mut(plane) {
            swap_ends(rows, nx, ny);
        }
    }
    if axes[2] {
        swap_ends(data, plane, nz);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered() -> Volume {
        Volume::from_fn([4, 3, 2], |x, y, z| (x + 10 * y + 100 * z) as f32)
    }

    #[test]
    fn flips_mirror_the_chosen_axes() {
        let v = numbered();
        let f = flip_axes(&v, [true, false, true]);
        assert_eq!(f.get(0, 1, 0), v.get(3, 1, 1));
        assert_eq!(f.get(2, 2, 1), v.get(1, 2, 0));
        assert_eq!(flip_axes(&f, [true, false, true]), v);
        assert_eq!(flip_axes(&v, [false; 3]), v);
        let y = flip_axes(&v, [false, true, false]);
        assert_eq!(y.get(1, 0, 1), v.get(1, 2, 1));
    }

    #[test]
    fn flipping_in_place_equals_flipping_a_copy() {
        let v = Volume::from_fn([5, 4, 3], |x, y, z| (x + 10 * y + 100 * z) as f32);
        for bits in 0..8 {
            let axes = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
            let mut w = v.clone();
            flip_in_place(&mut w, axes);
            assert_eq!(w, flip_axes(&v, axes), "{axes:?}");
        }
        let mut empty = Volume::filled([0, 3, 2], 0.0);
        flip_in_place(&mut empty, [true; 3]);
        assert!(empty.is_empty());
    }

    #[test]
    fn draws_follow_the_probabilities_and_the_seed() {
        let flip = RandomFlip::new([1.0, 0.0, 0.5]).unwrap();
        let mut rng = SplitMix64::new(5);
        let mut z_flips = 0;
        for _ in 0..2000 {
            let [x, y, z] = flip.draw(&mut rng);
            assert!(x && !y);
            z_flips += usize::from(z);
        }
        assert!((900..1100).contains(&z_flips), "{z_flips}");
        let v = numbered();
        let a = flip.apply(&v, &mut SplitMix64::new(9));
        assert_eq!(a, flip.apply(&v, &mut SplitMix64::new(9)));
    }

    #[test]
    fn probabilities_outside_the_unit_interval_are_refused() {
        let err = RandomFlip::new([0.5, 1.5, 0.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "random_flip probabilities 1.5: must be between 0 and 1"
        );
        assert!(RandomFlip::new([f64::NAN, 0.0, 0.0]).is_err());
        assert_eq!(RandomFlip::default().to_string(), "random flip (x 50%)");
    }
}
