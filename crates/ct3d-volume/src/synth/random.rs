//! Phantom randomness: the draws the anatomy needs (uniform ranges, integers, unit vectors,
//! approximately normal noise) on top of ct3d's SplitMix64, and the tags of the three
//! independent streams a phantom uses (anatomy, lesions, per-slice noise). Only IEEE-exact
//! arithmetic is used (rejection sampling instead of trigonometry), so draws are identical on
//! every platform.

use std::ops::RangeInclusive;

use glam::DVec3;

use crate::rng::{SplitMix64, mix64};

/// The anatomy's stream (mixed into the scan's seed).
pub(super) const ANATOMY_STREAM: u64 = 0xA7A7_0001;
/// The ground-glass opacities' stream.
pub(super) const LESION_STREAM: u64 = 0x6606_0002;
/// The noise stream (further mixed with the slice index).
pub(super) const NOISE_STREAM: u64 = 0x7015_0003;

/// Phantom randomness: the shared SplitMix64 plus the draws the geometry needs.
pub(super) struct Rng {
    inner: SplitMix64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self {
            inner: SplitMix64::new(mix64(seed)),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.inner.next_f64()
    }

    /// Uniform in `[lo, hi)` (or exactly `lo` when `lo == hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn uniform_in(&mut self, range: &RangeInclusive<f64>) -> f64 {
        self.uniform(*range.start(), *range.end())
    }

    /// Uniform integer in `range`.
    pub fn integer_in(&mut self, range: &RangeInclusive<usize>) -> usize {
        let span = (range.end() - range.start()) as u64 + 1;
        range.start() + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as usize
    }

    /// A point uniform in the cube `[-1, 1)³`, drawn x, y, z.
    pub fn in_cube(&mut self) -> DVec3 {
        let x = self.uniform(-1.0, 1.0);
        let y = self.uniform(-1.0, 1.0);
        let z = self.uniform(-1.0, 1.0);
        DVec3::new(x, y, z)
    }

    /// A random unit vector (by rejection from the cube: no trigonometry, see module docs).
    pub fn direction(&mut self) -> DVec3 {
        loop {
            let p = self.in_cube();
            let r2 = p.dot(p);
            if r2 > 1e-6 && r2 <= 1.0 {
                return p * (1.0 / r2.sqrt());
            }
        }
    }

    /// A random point on the unit circle, `(cos, sin)` of a uniform angle.
    pub fn unit_circle(&mut self) -> (f64, f64) {
        loop {
            let (c, s) = (self.uniform(-1.0, 1.0), self.uniform(-1.0, 1.0));
            let r2 = c * c + s * s;
            if r2 > 1e-6 && r2 <= 1.0 {
                let r = r2.sqrt();
                return (c / r, s / r);
            }
        }
    }

    /// Approximately standard-normal (Irwin–Hall sum of four 16-bit uniforms): one RNG call per
    /// voxel, and bounded at ±3.46 σ so noise never pushes a tissue into another's HU range.
    pub fn approx_normal(&mut self) -> f32 {
        const MEAN: f32 = 4.0 * 65535.0 / 2.0;
        // sqrt(4 * (65536² − 1) / 12)
        const STD: f32 = 37_837.23;
        let r = self.next_u64();
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        (sum as f32 - MEAN) * (1.0 / STD)
    }

    /// Closer to standard-normal than [`Rng::approx_normal`] (Irwin–Hall sum of twelve 16-bit
    /// uniforms, three RNG calls): tails reach ±6 σ, so noise can carry a voxel into another
    /// tissue's HU range, as in a real scan. No `ln`/`cos` (Box–Muller), see the module docs.
    pub fn gaussian(&mut self) -> f32 {
        const MEAN: f32 = 12.0 * 65535.0 / 2.0;
        // sqrt(12 · (65536² − 1) / 12), which is 65536 to f32 precision.
        const STD: f32 = 65_536.0;
        let mut sum = 0u64;
        for _ in 0..3 {
            let r = self.next_u64();
            sum += (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        }
        (sum as f32 - MEAN) * (1.0 / STD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_normal_has_unit_variance_and_bounded_tails() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| f64::from(rng.approx_normal())).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(samples.iter().all(|s| s.abs() <= 3.47));
    }

    #[test]
    fn gaussian_has_unit_variance_and_normal_tails() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| f64::from(rng.gaussian())).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(samples.iter().all(|s| s.abs() <= 6.0));
        // A normal distribution puts 0.27 % beyond ±3 σ; the 4-term sum (bounded at 3.46 σ)
        // puts about 0.1 %, the 12-term one close to the normal's.
        let beyond = samples.iter().filter(|s| s.abs() > 3.0).count() as f64 / n as f64;
        assert!((0.0018..=0.0036).contains(&beyond), "beyond 3 σ: {beyond}");
    }

    #[test]
    fn integer_in_covers_inclusive_range() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            seen[rng.integer_in(&(3..=6)) - 3] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
