//! Random intensity scaling and shifting: `v · factor + offset` (MONAI's `RandScaleIntensity`
//! and `RandShiftIntensity` in one transform).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, fires, require, require_probability, symmetric};
use crate::Volume;
use crate::rng::SplitMix64;

const KIND: &str = "random_intensity";

/// With probability `probability`, every value `v` becomes `v · factor + offset` (in `f32`), with
/// `factor` uniform in `[1 − scale, 1 + scale]` and `offset` uniform in `[−shift, shift]`. Takes
/// three draws (probability, factor, offset). Recorded as
/// `{"kind": "random_intensity", "scale": 0.1, "shift": 0.1, "probability": 1.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "IntensitySettings")]
pub struct RandomIntensity {
    /// Largest relative change of the values' scale, in `[0, 1)`.
    scale: f64,
    /// Largest offset added (the values' units: `[0, 1]` after preprocessing), `≥ 0`.
    shift: f64,
    /// Chance that the transform acts on a sample, in `[0, 1]`.
    probability: f64,
}

/// [`RandomIntensity`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IntensitySettings {
    scale: f64,
    shift: f64,
    probability: f64,
}

impl Default for IntensitySettings {
    fn default() -> Self {
        let RandomIntensity {
            scale,
            shift,
            probability,
        } = RandomIntensity::default();
        Self {
            scale,
            shift,
            probability,
        }
    }
}

impl TryFrom<IntensitySettings> for RandomIntensity {
    type Error = SettingError;

    fn try_from(s: IntensitySettings) -> Result<Self, SettingError> {
        Self::new(s.scale, s.shift, s.probability)
    }
}

impl RandomIntensity {
    /// Factor in `[1 − scale, 1 + scale]` (`scale` in `[0, 1)`, so the factor stays positive),
    /// offset in `[−shift, shift]` (`shift` finite, `≥ 0`), applied with `probability`.
    pub fn new(scale: f64, shift: f64, probability: f64) -> Result<Self, SettingError> {
        require(
            (0.0..1.0).contains(&scale),
            KIND,
            "scale",
            scale,
            "must be at least 0 and below 1",
        )?;
        require(
            shift.is_finite() && shift >= 0.0,
            KIND,
            "shift",
            shift,
            "must be a finite number, at least 0",
        )?;
        require_probability(probability, KIND, "probability")?;
        Ok(Self {
            scale,
            shift,
            probability,
        })
    }

    /// `Some((factor, offset))` for the next three draws of `rng`, `None` when it does not act.
    pub fn draw(&self, rng: &mut SplitMix64) -> Option<(f32, f32)> {
        let acts = fires(rng, self.probability);
        let factor = 1.0 + symmetric(rng, self.scale);
        let offset = symmetric(rng, self.shift);
        acts.then_some((factor as f32, offset as f32))
    }
}

/// ±10 % scale, ±0.1 shift (a tenth of the `[0, 1]` range), always.
impl Default for RandomIntensity {
    fn default() -> Self {
        Self {
            scale: 0.1,
            shift: 0.1,
            probability: 1.0,
        }
    }
}

impl Augment for RandomIntensity {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        match self.draw(rng) {
            Some((factor, offset)) => scale_shift(volume, factor, offset),
            None => volume.clone(),
        }
    }

    fn apply_owned(&self, mut volume: Volume, rng: &mut SplitMix64) -> Volume {
        if let Some((factor, offset)) = self.draw(rng) {
            scale_shift_in_place(&mut volume, factor, offset);
        }
        volume
    }
}

/// `random intensity (scale ±10%, shift ±0.1, p 1)`.
impl fmt::Display for RandomIntensity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "random intensity (scale ±{}%, shift ±{}, p {})",
            self.scale * 100.0,
            self.shift,
            self.probability
        )
    }
}

/// Every value `v` of `volume` becomes `v * factor + offset`, in `f32` (numpy's
/// `volume * np.float32(factor) + np.float32(offset)` on a float32 array, bit for bit).
pub fn scale_shift(volume: &Volume, factor: f32, offset: f32) -> Volume {
    let mut out = volume.clone();
    scale_shift_in_place(&mut out, factor, offset);
    out
}

/// [`scale_shift`] in place.
pub fn scale_shift_in_place(volume: &mut Volume, factor: f32, offset: f32) {
    for v in volume.data_mut() {
        *v = *v * factor + offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_scaled_then_shifted() {
        let v = Volume::new([3, 1, 1], vec![0.0, 0.5, 1.0]).unwrap();
        assert_eq!(scale_shift(&v, 2.0, -0.25).data(), [-0.25, 0.75, 1.75]);
    }

    #[test]
    fn draws_stay_in_range_and_repeat_per_seed() {
        let t = RandomIntensity::new(0.2, 0.05, 1.0).unwrap();
        let mut rng = SplitMix64::new(1);
        for _ in 0..500 {
            let (factor, offset) = t.draw(&mut rng).unwrap();
            assert!((0.8..=1.2).contains(&factor) && offset.abs() <= 0.05);
        }
        let v = Volume::filled([2, 2, 2], 0.5);
        assert_eq!(
            t.apply(&v, &mut SplitMix64::new(4)),
            t.apply(&v, &mut SplitMix64::new(4))
        );
        let never = RandomIntensity::new(0.2, 0.05, 0.0).unwrap();
        let mut rng = SplitMix64::new(2);
        assert_eq!(never.apply(&v, &mut rng), v);
        // The stream advanced by the same three draws.
        let mut reference = SplitMix64::new(2);
        (0..3).for_each(|_| {
            reference.next_u64();
        });
        assert_eq!(rng.next_u64(), reference.next_u64());
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            RandomIntensity::new(1.0, 0.0, 1.0).unwrap_err().to_string(),
            "random_intensity scale 1: must be at least 0 and below 1"
        );
        assert!(RandomIntensity::new(0.1, -1.0, 1.0).is_err());
        assert!(RandomIntensity::new(0.1, 0.1, 2.0).is_err());
    }
}
