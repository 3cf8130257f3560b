//! The Keras example's training augmentation: rotate every `(x, y)` plane by an angle picked from
//! [`SEED_ANGLES`], then clip to `[0, 1]`.
//!
//! The seed picks the angle with Python's global `random.choice`, so a run cannot be repeated and
//! depends on how `tf.data` schedules its threads. Here the angle is a pure function of
//! `(seed, epoch, sample index)` ([`angle_for`]): the same run gives the same augmentations on any
//! number of threads, and any sample of any epoch can be reproduced on its own.

use crate::rng::splitmix64;
use crate::{Volume, spline};

/// The seed's rotation angles in degrees: `angles = [-20, -10, -5, 5, 10, 20]`.
pub const SEED_ANGLES: [f32; 6] = [-20.0, -10.0, -5.0, 5.0, 10.0, 20.0];

/// The augmentation angle (degrees, one of [`SEED_ANGLES`]) for sample `index` in `epoch` of a run
/// seeded with `seed`: a hash of the triple, so it does not depend on call order or threads, and
/// each angle is equally likely.
pub fn angle_for(seed: u64, epoch: u64, index: u64) -> f32 {
    let hash = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index);
    // Multiply-high maps the 64-bit hash onto the six choices (bias below 2^-61).
    let choice = ((u128::from(hash) * SEED_ANGLES.len() as u128) >> 64) as usize;
    SEED_ANGLES[choice]
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
}
