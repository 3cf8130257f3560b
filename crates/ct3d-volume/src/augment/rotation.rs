//! The Keras example's training augmentation: rotate every `(x, y)` plane by an angle picked from
//! a list ([`SEED_ANGLES`] in the seed), then clip to `[0, 1]`.
//!
//! The seed picks the angle with Python's global `random.choice`, so a run cannot be repeated and
//! depends on how `tf.data` schedules its threads. Here the angle is drawn from the sample's own
//! stream ([`super::sample_stream`]), a pure function of `(seed, epoch, sample index)`
//! ([`angle_for`]): the same run gives the same augmentations on any number of threads, and any
//! sample of any epoch can be reproduced on its own.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Augment, sample_stream};
use crate::rng::SplitMix64;
use crate::{Volume, spline};

/// The seed's rotation angles in degrees: `angles = [-20, -10, -5, 5, 10, 20]`.
pub const SEED_ANGLES: [f32; 6] = [-20.0, -10.0, -5.0, 5.0, 10.0, 20.0];

/// Rotates every `(x, y)` plane by an angle drawn uniformly from `angles` (degrees), then clips
/// every value to `[0, 1]` ([`rotate_augment`]). Recorded as
/// `{"kind": "random_rotation", "angles": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RotationSettings")]
pub struct RandomRotation {
    /// Candidate angles in degrees, each equally likely; never empty, all finite.
    angles: Vec<f32>,
}

/// [`RandomRotation`] as written in `config.json`, before its check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationSettings {
    /// The seed's angles when left out (a recipe file may name the transform alone).
    #[serde(default = "seed_angles")]
    angles: Vec<f32>,
}

fn seed_angles() -> Vec<f32> {
    SEED_ANGLES.to_vec()
}

/// A rotation list that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RotationError {
    /// No angle to choose from.
    #[error("random_rotation needs at least one angle")]
    NoAngles,
    /// An angle is NaN or infinite.
    #[error("random_rotation angle {0} is not a finite number of degrees")]
    NotFinite(f32),
}

impl TryFrom<RotationSettings> for RandomRotation {
    type Error = RotationError;

    fn try_from(settings: RotationSettings) -> Result<Self, RotationError> {
        Self::new(settings.angles)
    }
}

impl RandomRotation {
    /// A rotation by one of `angles` (degrees, at least one, all finite).
    pub fn new(angles: Vec<f32>) -> Result<Self, RotationError> {
        if angles.is_empty() {
            return Err(RotationError::NoAngles);
        }
        if let Some(&bad) = angles.iter().find(|a| !a.is_finite()) {
            return Err(RotationError::NotFinite(bad));
        }
        Ok(Self { angles })
    }

    /// The seed's rotation: one of [`SEED_ANGLES`].
    pub fn seed() -> Self {
        Self {
            angles: SEED_ANGLES.to_vec(),
        }
    }

    /// The candidate angles, degrees.
    pub fn angles(&self) -> &[f32] {
        &self.angles
    }

    /// The angle (degrees) for the next draw of `rng`: multiply-high maps the 64-bit draw onto
    /// the choices (bias below 2⁻⁶¹), so each is equally likely.
    pub fn angle(&self, rng: &mut SplitMix64) -> f32 {
        self.angles[rng.below(self.angles.len())]
    }
}

/// The seed's rotation ([`RandomRotation::seed`]).
impl Default for RandomRotation {
    fn default() -> Self {
        Self::seed()
    }
}

impl Augment for RandomRotation {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        rotate_augment(volume, self.angle(rng))
    }
}

/// `random rotation (±5, 10, 20°)` for a list symmetric about 0, else the angles as listed.
impl fmt::Display for RandomRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symmetric = self.angles.iter().all(|a| *a != 0.0 && self.angles.contains(&-a));
        let shown: Vec<String> = if symmetric {
            let mut magnitudes: Vec<f32> = self.angles.iter().filter(|a| **a > 0.0).copied().collect();
            magnitudes.sort_by(f32::total_cmp);
            magnitudes.dedup();
            magnitudes.iter().map(|a| a.to_string()).collect()
        } else {
            self.angles.iter().map(|a| a.to_string()).collect()
        };
        let sign = if symmetric { "±" } else { "" };
        write!(f, "random rotation ({sign}{}°)", shown.join(", "))
    }
}

/// The augmentation angle (degrees, one of [`SEED_ANGLES`]) for sample `index` in `epoch` of a run
/// seeded with `seed`: the seed's rotation drawing from the sample's stream, so it does not depend
/// on call order or threads, and each angle is equally likely.
pub fn angle_for(seed: u64, epoch: u64, index: u64) -> f32 {
    RandomRotation::seed().angle(&mut sample_stream(seed, epoch, index))
}

/// The seed's `scipy_rotate` for a given angle: [`spline::rotate_planes`] of `volume` (values in
/// `[0, 1]`, `[x, y, z]`, any shape) by `angle_deg` degrees, then every value clipped to `[0, 1]`
/// (the cubic spline overshoots at edges). Shape and geometry are kept.
pub fn rotate_augment(volume: &Volume, angle_deg: f32) -> Volume {
    spline::rotate_planes_then(volume, f64::from(angle_deg), |v| v.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_are_deterministic_and_cover_the_choices() {
        let mut counts = [0usize; 6];
        for index in 0..6000 {
            let angle = angle_for(42, 3, index);
            assert_eq!(angle, angle_for(42, 3, index));
            counts[SEED_ANGLES.iter().position(|&a| a == angle).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        let differs = |f: &dyn Fn(u64) -> f32| (0..64).any(|i| f(i) != f(i + 1000));
        assert!(differs(&|i| angle_for(i, 0, 0)));
        assert!(differs(&|i| angle_for(0, i, 0)));
    }

    #[test]
    fn rotation_is_clipped_to_the_unit_interval() {
        let v = Volume::from_fn([12, 10, 3], |x, y, _| {
            if (3..8).contains(&x) && (2..6).contains(&y) {
                1.0
            } else {
                0.0
            }
        });
        let unclipped = spline::rotate_planes(&v, 10.0);
        assert!(
            unclipped.data().iter().any(|&x| !(0.0..=1.0).contains(&x)),
            "cubic overshoot expected"
        );
        let out = rotate_augment(&v, 10.0);
        assert!(out.data().iter().all(|&x| (0.0..=1.0).contains(&x)));
        for (o, u) in out.data().iter().zip(unclipped.data()) {
            assert_eq!(*o, u.clamp(0.0, 1.0));
        }
    }

    #[test]
    fn empty_or_non_finite_angle_lists_are_refused() {
        assert_eq!(RandomRotation::new(vec![]), Err(RotationError::NoAngles));
        assert!(matches!(
            RandomRotation::new(vec![5.0, f32::NAN]),
            Err(RotationError::NotFinite(_))
        ));
        assert_eq!(RandomRotation::seed().angles(), SEED_ANGLES);
    }
}
