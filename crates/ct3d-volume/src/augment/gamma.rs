//! Random gamma contrast: the values' range `[min, max]` is mapped onto `[0, 1]`, raised to the
//! power `γ`, and mapped back (the contrast curve of MONAI's `AdjustContrast`; `γ = exp(u)` with
//! `u` uniform in `[−log_gamma, log_gamma]`, as TorchIO's `RandomGamma` draws it).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, fires, require, require_probability, symmetric};
use crate::Volume;
use crate::rng::SplitMix64;

const KIND: &str = "random_gamma";

/// With probability `probability`, [`adjust_gamma`] with `γ = exp(u)`, `u` uniform in
/// `[−log_gamma, log_gamma]`. Takes two draws (probability, `u`). Recorded as
/// `{"kind": "random_gamma", "log_gamma": 0.3, "probability": 1.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GammaSettings")]
pub struct RandomGamma {
    /// Largest `|ln γ|`, in `[0, 2]`.
    log_gamma: f64,
    /// Chance that the transform acts on a sample, in `[0, 1]`.
    probability: f64,
}

/// [`RandomGamma`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GammaSettings {
    log_gamma: f64,
    probability: f64,
}

impl Default for GammaSettings {
    fn default() -> Self {
        let RandomGamma {
            log_gamma,
            probability,
        } = RandomGamma::default();
        Self {
            log_gamma,
            probability,
        }
    }
}

impl TryFrom<GammaSettings> for RandomGamma {
    type Error = SettingError;

    fn try_from(s: GammaSettings) -> Result<Self, SettingError> {
        Self::new(s.log_gamma, s.probability)
    }
}

impl RandomGamma {
    /// `γ` between `exp(−log_gamma)` and `exp(log_gamma)` (`log_gamma` in `[0, 2]`: beyond, the
    /// curve flattens the volume to its minimum or maximum), applied with `probability`.
    pub fn new(log_gamma: f64, probability: f64) -> Result<Self, SettingError> {
        require(
            (0.0..=2.0).contains(&log_gamma),
            KIND,
            "log_gamma",
            log_gamma,
            "must be between 0 and 2",
        )?;
        require_probability(probability, KIND, "probability")?;
        Ok(Self {
            log_gamma,
            probability,
        })
    }

    /// `Some(γ)` for the next two draws of `rng`, `None` when it does not act.
    pub fn draw(&self, rng: &mut SplitMix64) -> Option<f64> {
        let acts = fires(rng, self.probability);
        let gamma = symmetric(rng, self.log_gamma).exp();
        acts.then_some(gamma)
    }
}

/// `γ` in `[e^−0.3, e^0.3] ≈ [0.74, 1.35]` (TorchIO's default range), always.
impl Default for RandomGamma {
    fn default() -> Self {
        Self {
            log_gamma: 0.3,
            probability: 1.0,
        }
    }
}

impl Augment for RandomGamma {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        match self.draw(rng) {
            Some(gamma) => adjust_gamma(volume, gamma),
            None => volume.clone(),
        }
    }

    fn apply_owned(&self, mut volume: Volume, rng: &mut SplitMix64) -> Volume {
        if let Some(gamma) = self.draw(rng) {
            adjust_gamma_in_place(&mut volume, gamma);
        }
        volume
    }
}

/// `random gamma (γ e^±0.3, p 1)`.
impl fmt::Display for RandomGamma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "random gamma (γ e^±{}, p {})",
            self.log_gamma, self.probability
        )
    }
}

/// `volume` through the contrast curve `min + (max − min) · ((v − min) / (max − min))^gamma`,
/// `min` and `max` being the volume's finite extremes, computed in `f64` and rounded once:
/// the range is kept, `gamma < 1` brightens, `> 1` darkens. A constant volume (or one without
/// finite values) is returned unchanged; NaN stays NaN.
pub fn adjust_gamma(volume: &Volume, gamma: f64) -> Volume {
    let mut out = volume.clone();
    adjust_gamma_in_place(&mut out, gamma);
    out
}

/// [`adjust_gamma`] in place.
pub fn adjust_gamma_in_place(volume: &mut Volume, gamma: f64) {
    let Some(stats) = volume.stats() else {
        return;
    };
    let (lo, hi) = (f64::from(stats.min), f64::from(stats.max));
    let range = hi - lo;
    if range <= 0.0 {
        return;
    }
    for v in volume.data_mut() {
        // Clamp guards the curve against an infinite value (outside [min, max] by definition).
        let unit = ((f64::from(*v) - lo) / range).clamp(0.0, 1.0);
        if v.is_finite() {
            *v = (lo + range * unit.powf(gamma)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_keeps_the_range_and_bends_the_middle() {
        let v = Volume::new([4, 1, 1], vec![1.0, 2.0, 3.0, f32::NAN]).unwrap();
        let out = adjust_gamma(&v, 2.0);
        assert_eq!(out.get(0, 0, 0), 1.0);
        assert_eq!(out.get(2, 0, 0), 3.0);
        assert_eq!(out.get(1, 0, 0), 1.5);
        assert!(out.get(3, 0, 0).is_nan());
        let flat = Volume::filled([2, 2, 2], 0.3);
        assert_eq!(adjust_gamma(&flat, 0.5), flat);
    }

    #[test]
    fn gammas_stay_in_range_and_repeat_per_seed() {
        let t = RandomGamma::new(0.5, 1.0).unwrap();
        let mut rng = SplitMix64::new(3);
        for _ in 0..500 {
            let g = t.draw(&mut rng).unwrap();
            assert!((0.5f64.exp().recip()..=0.5f64.exp()).contains(&g));
        }
        let v = Volume::from_fn([3, 3, 3], |x, y, z| (x + y + z) as f32 / 6.0);
        assert_eq!(
            t.apply(&v, &mut SplitMix64::new(8)),
            t.apply(&v, &mut SplitMix64::new(8))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            RandomGamma::new(3.0, 1.0).unwrap_err().to_string(),
            "random_gamma log_gamma 3: must be between 0 and 2"
        );
        assert!(RandomGamma::new(0.3, -0.1).is_err());
    }
}
