//! Random cutout: boxes of the volume set to one value (MONAI's `RandCoarseDropout` with
//! `dropout_holes=True` and a fill value; DeVries & Taylor 2017's cutout in 3D).
//!
//! Besides regularising, it shows the network volumes with a region hidden, which is what
//! occlusion sensitivity feeds it when it explains a prediction: trained with holes filled with
//! air (0, occlusion's Gaussian fill), a network meets no unfamiliar input there.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, fires, require, require_probability};
use crate::Volume;
use crate::rng::SplitMix64;

const KIND: &str = "random_cutout";

/// With probability `probability`, `holes` boxes are each filled with `fill`. A box's side along
/// each axis is drawn uniformly between `size[0]` and `size[1]` of that axis (a fraction,
/// rounded to whole voxels, at least 1), and its corner uniformly among the places where it
/// fits; boxes may overlap. Takes `1 + 6 · holes` draws (probability, then per hole three sides
/// and three corners). Recorded as
/// `{"kind": "random_cutout", "holes": 1, "size": [0.1, 0.3], "fill": 0.0, "probability": 0.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CutoutSettings")]
pub struct RandomCutout {
    /// Boxes per sample, 1 to 64.
    holes: usize,
    /// Smallest and largest side, as fractions of each axis, `0 < min ≤ max ≤ 1`.
    size: [f64; 2],
    /// The value a box is filled with (`[0, 1]` after preprocessing: 0 is the bottom of the
    /// intensity window, air for CT).
    fill: f32,
    /// Chance that the transform acts on a sample, in `[0, 1]`.
    probability: f64,
}

/// [`RandomCutout`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CutoutSettings {
    holes: usize,
    size: [f64; 2],
    fill: f32,
    probability: f64,
}

impl Default for CutoutSettings {
    fn default() -> Self {
        let RandomCutout {
            holes,
            size,
            fill,
            probability,
        } = RandomCutout::default();
        Self {
            holes,
            size,
            fill,
            probability,
        }
    }
}

impl TryFrom<CutoutSettings> for RandomCutout {
    type Error = SettingError;

    fn try_from(s: CutoutSettings) -> Result<Self, SettingError> {
        Self::new(s.holes, s.size, s.fill, s.probability)
    }
}

/// One box: its first voxel and its side, `[x, y, z]` voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// The box's first voxel.
    pub start: [usize; 3],
    /// Its side in voxels, each ≥ 1.
    pub size: [usize; 3],
}

impl RandomCutout {
    /// `holes` boxes (1 to 64) with sides between `size[0]` and `size[1]` of each axis
    /// (`0 < size[0] ≤ size[1] ≤ 1`), filled with the finite value `fill`, applied with
    /// `probability`.
    pub fn new(
        holes: usize,
        size: [f64; 2],
        fill: f32,
        probability: f64,
    ) -> Result<Self, SettingError> {
        require(
            (1..=64).contains(&holes),
            KIND,
            "holes",
            holes,
            "must be between 1 and 64",
        )?;
        require(
            size[0] > 0.0 && size[0] <= size[1] && size[1] <= 1.0,
            KIND,
            "size",
            format!("[{}, {}]", size[0], size[1]),
            "must be two fractions of an axis, 0 < smallest ≤ largest ≤ 1",
        )?;
        require(
            fill.is_finite(),
            KIND,
            "fill",
            fill,
            "must be a finite number",
        )?;
        require_probability(probability, KIND, "probability")?;
        Ok(Self {
            holes,
            size,
            fill,
            probability,
        })
    }

    /// The boxes for a volume of `shape` voxels from the next `1 + 6 · holes` draws of `rng`;
    /// `None` when the transform does not act.
    pub fn draw(&self, shape: [usize; 3], rng: &mut SplitMix64) -> Option<Vec<Hole>> {
        let acts = fires(rng, self.probability);
        let [low, high] = self.size;
        let holes = (0..self.holes)
            .map(|_| {
                let size: [usize; 3] = std::array::from_fn(|k| {
                    let fraction = low + (high - low) * rng.next_f64();
                    ((fraction * shape[k] as f64).round() as usize).clamp(1, shape[k].max(1))
                });
                let start = std::array::from_fn(|k| {
                    let places = shape[k].saturating_sub(size[k]) + 1;
                    ((rng.next_f64() * places as f64) as usize).min(places - 1)
                });
                Hole { start, size }
            })
            .collect();
        acts.then_some(holes)
    }
}

/// One hole of 10–30 % of each axis, filled with air, on half of the samples.
impl Default for RandomCutout {
    fn default() -> Self {
        Self {
            holes: 1,
            size: [0.1, 0.3],
            fill: 0.0,
            probability: 0.5,
        }
    }
}

impl Augment for RandomCutout {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        self.apply_owned(volume.clone(), rng)
    }

    fn apply_owned(&self, mut volume: Volume, rng: &mut SplitMix64) -> Volume {
        if let Some(holes) = self.draw(volume.shape(), rng) {
            for hole in holes {
                fill_box(&mut volume, hole, self.fill);
            }
        }
        volume
    }
}

/// `random cutout (1 hole, 10–30% of each axis, fill 0, p 0.5)`.
impl fmt::Display for RandomCutout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "random cutout ({} hole{}, {}–{}% of each axis, fill {}, p {})",
            self.holes,
            if self.holes == 1 { "" } else { "s" },
            self.size[0] * 100.0,
            self.size[1] * 100.0,
            self.fill,
            self.probability
        )
    }
}

/// Sets every voxel of `hole` (clipped to the volume) to `value`: numpy's
/// `v[x0:x0+sx, y0:y0+sy, z0:z0+sz] = value`.
pub fn fill_box(volume: &mut Volume, hole: Hole, value: f32) {
    let [nx, ny, nz] = volume.shape();
    let end = |k: usize, n: usize| (hole.start[k] + hole.size[k]).min(n);
    let (x1, y1, z1) = (end(0, nx), end(1, ny), end(2, nz));
    let data = volume.data_mut();
    for z in hole.start[2]..z1 {
        for y in hole.start[1]..y1 {
            let row = (z * ny + y) * nx;
            for v in &mut data[row + hole.start[0].min(x1)..row + x1] {
                *v = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_filled_and_nothing_else() {
        let mut v = Volume::from_fn([5, 4, 3], |x, y, z| (x + 10 * y + 100 * z) as f32);
        let original = v.clone();
        let hole = Hole {
            start: [1, 2, 0],
            size: [3, 5, 2],
        };
        fill_box(&mut v, hole, -1.0);
        for z in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    let inside = (1..4).contains(&x) && y >= 2 && z < 2;
                    let expected = if inside {
                        -1.0
                    } else {
                        original.get(x, y, z)
                    };
                    assert_eq!(v.get(x, y, z), expected, "{x} {y} {z}");
                }
            }
        }
    }

    #[test]
    fn holes_fit_the_volume_and_repeat_per_seed() {
        let t = RandomCutout::new(3, [0.2, 0.5], 0.0, 1.0).unwrap();
        let mut rng = SplitMix64::new(7);
        for _ in 0..300 {
            for hole in t.draw([48, 40, 10], &mut rng).unwrap() {
                for (k, n) in [48, 40, 10].into_iter().enumerate() {
                    let low = (0.2 * n as f64).round() as usize;
                    let high = (0.5 * n as f64).round() as usize;
                    assert!((low..=high).contains(&hole.size[k]), "{hole:?}");
                    assert!(hole.start[k] + hole.size[k] <= n, "{hole:?}");
                }
            }
        }
        let v = Volume::filled([8, 8, 8], 0.5);
        let out = t.apply(&v, &mut SplitMix64::new(3));
        assert_eq!(out, t.apply(&v, &mut SplitMix64::new(3)));
        assert!(out.data().contains(&0.0) && out.data().contains(&0.5));
    }

    #[test]
    fn a_transform_that_does_not_act_draws_as_much_as_one_that_does() {
        let never = RandomCutout::new(2, [0.1, 0.3], 0.0, 0.0).unwrap();
        let v = Volume::filled([6, 6, 6], 0.5);
        let mut rng = SplitMix64::new(2);
        assert_eq!(never.apply(&v, &mut rng), v);
        let mut reference = SplitMix64::new(2);
        (0..13).for_each(|_| {
            reference.next_u64();
        });
        assert_eq!(rng.next_u64(), reference.next_u64());
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            RandomCutout::new(0, [0.1, 0.3], 0.0, 0.5)
                .unwrap_err()
                .to_string(),
            "random_cutout holes 0: must be between 1 and 64"
        );
        assert!(RandomCutout::new(1, [0.4, 0.3], 0.0, 0.5).is_err());
        assert!(RandomCutout::new(1, [0.0, 0.3], 0.0, 0.5).is_err());
        assert!(RandomCutout::new(1, [0.1, 0.3], f32::NAN, 0.5).is_err());
        assert!(RandomCutout::new(1, [0.1, 0.3], 0.0, 1.5).is_err());
    }
}
