//! Training augmentation: an ordered list of transforms ([`Augmentations`]) applied to every
//! training volume, the seam through which new augmentations enter.
//!
//! Each transform is a settings struct that implements [`Augment`]: given a volume and a random
//! stream it returns the transformed volume. [`Augmentation`] is the closed set of transforms
//! (one enum variant each), serialized with a `kind` tag, so a run's `config.json` records its
//! list as `"augment": [{"kind": "random_rotation", "angles": [-20.0, …]}]`. The Keras
//! example's random rotation ([`RandomRotation::seed`]) is the default list; runs written before
//! the list existed recorded `"augment": true` (that list) or `false` (no augmentation), and
//! still read back as such.
//!
//! The transforms (short name, `kind`):
//!
//! | name | kind | what it does |
//! |---|---|---|
//! | `rotate` | `random_rotation` | the seed's in-plane rotation by an angle from a list, cubic, clipped |
//! | `flip` | `random_flip` | mirror each axis with its own probability |
//! | `affine` | `random_affine` | rotation about x, y and z, scaling, translation (mm); linear or cubic, constant or nearest padding |
//! | `intensity` | `random_intensity` | `v · factor + offset` |
//! | `gamma` | `random_gamma` | contrast curve `((v − min)/(max − min))^γ` on the volume's range |
//! | `noise` | `gaussian_noise` | additive Gaussian noise |
//! | `blur` | `gaussian_blur` | Gaussian smoothing (scipy's `gaussian_filter`) |
//! | `cutout` | `random_cutout` | boxes filled with one value, air by default (MONAI's `RandCoarseDropout`) |
//!
//! Every transform is a random draw of parameters followed by a deterministic function of them
//! (`flip_axes`, `affine_resample`, `gaussian_blur`, …), which `tests/augment_parity.rs` compares
//! with numpy/scipy at fixed parameters. [`recipe`] reads a list from names (`rotate,flip`) or a
//! JSON/TOML file.
//!
//! Randomness is a pure function of `(seed, epoch, sample index)`: every sample of every epoch
//! gets its own SplitMix64 stream ([`sample_stream`]), which the transforms draw from in list
//! order. The same run therefore gives the same augmentations on any number of threads, any
//! sample of any epoch can be reproduced on its own, and the seed's list reproduces the rotation
//! angles ct3d drew before the list existed, bit for bit. Each transform takes a fixed number of
//! draws from the stream whatever it draws (its probability included), so one transform's
//! settings never change what the next one draws; the noise draws one seed from the stream and
//! generates its voxels from streams derived from it, chunk by chunk, so it too is independent
//! of thread count.
//!
//! # Adding an augmentation
//! One new file in this folder holding the transform's settings struct (`Serialize`,
//! `Deserialize`, `Clone`, `Debug`, `PartialEq`, `Default`) with its [`Augment`] and `Display`
//! implementations, plus one line in the `augmentations!` list below naming the module, the
//! struct and its short name for `--augment`; the variant's `kind` in `config.json` is the
//! struct's name in `snake_case` (the short name is accepted there too).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Volume;
use crate::rng::{SplitMix64, derive_seed};

/// One transform of an augmentation list.
pub trait Augment: fmt::Display {
    /// `volume` (values in `[0, 1]`, `[x, y, z]`, any shape) transformed with randomness drawn
    /// from `rng`, the sample's stream ([`sample_stream`]); the result has the same shape and
    /// geometry unless the transform says otherwise. Pure: the same volume and stream state give
    /// the same result.
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume;

    /// [`Augment::apply`] on a volume the caller hands over, with the same result. Transforms
    /// that work in place (flips, intensity curves, noise) or can reuse the buffer (blur) do so
    /// instead of allocating: a fresh 4 MiB buffer per transform costs page faults, a measured
    /// part of a 128×128×64 pipeline (bench/augment.sh).
    fn apply_owned(&self, volume: Volume, rng: &mut SplitMix64) -> Volume {
        self.apply(&volume, rng)
    }
}

/// Declares the transform modules and the [`Augmentation`] enum with one variant per
/// transform, and dispatches [`Augment`] to the variant's settings.
macro_rules! augmentations {
    ($($(#[$doc:meta])* $module:ident :: $variant:ident = $name:literal,)+) => {
        $(pub mod $module;)+
        $(pub use $module::$variant;)+

        /// One transform of an augmentation list, tagged by `kind` in `config.json` (its short
        /// name is accepted as the tag too).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Augmentation {
            $($(#[$doc])* #[serde(alias = $name)] $variant($variant),)+
        }

        impl Augmentation {
            /// The short names of the transforms (`--augment rotate,flip`), in registry order.
            pub const NAMES: &[&str] = &[$($name,)+];

            /// The transform behind this entry.
            pub fn transform(&self) -> &dyn Augment {
                match self {
                    $(Self::$variant(transform) => transform,)+
                }
            }

            /// The transform called `name` (its short name or its `kind`) with its default
            /// settings; `None` for a name that is neither.
            pub fn named(name: &str) -> Option<Self> {
                $(
                    let default = Self::$variant($variant::default());
                    if name == $name || default.kind() == name {
                        return Some(default);
                    }
                )+
                None
            }

            /// The short name of this entry's transform (`flip`).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                }
            }
        }
    };
}

// The registry: one line per transform (its module in this folder and its settings struct).
augmentations! {
    /// Rotate every `(x, y)` plane by an angle drawn from a list, clip to `[0, 1]`.
    rotation::RandomRotation = "rotate",
    /// Mirror each axis with its own probability.
    flip::RandomFlip = "flip",
    /// Rotate about every axis, scale and translate, resampled linearly or with cubic splines.
    affine::RandomAffine = "affine",
    /// Scale and shift the values.
    intensity::RandomIntensity = "intensity",
    /// Gamma contrast curve over the volume's range.
    gamma::RandomGamma = "gamma",
    /// Add Gaussian noise.
    noise::GaussianNoise = "noise",
    /// Smooth with a Gaussian kernel.
    blur::GaussianBlur = "blur",
    /// Fill random boxes with one value (air by default).
    cutout::RandomCutout = "cutout",
}

pub mod recipe;

pub use rotation::{SEED_ANGLES, angle_for, rotate_augment};

impl Augmentation {
    /// This entry's `kind` in `config.json` (`random_flip`).
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
            .unwrap_or_default()
    }
}

/// A transform setting outside the range the transform can use: one line naming the transform's
/// `kind`, the setting and the value, e.g. `random_flip probabilities 1.5: must be between 0 and
/// 1`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} {setting} {value}: {expected}")]
pub struct SettingError {
    /// The transform's `kind` (`random_flip`).
    pub kind: &'static str,
    /// The setting's key (`probabilities`).
    pub setting: &'static str,
    /// The value given, as written.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// `Ok` when `ok`, else the [`SettingError`] for `value` of `setting` of `kind`.
pub(crate) fn require(
    ok: bool,
    kind: &'static str,
    setting: &'static str,
    value: impl fmt::Display,
    expected: &'static str,
) -> Result<(), SettingError> {
    if ok {
        Ok(())
    } else {
        Err(SettingError {
            kind,
            setting,
            value: value.to_string(),
            expected,
        })
    }
}

/// Checks that a probability is a number in `[0, 1]`.
pub(crate) fn require_probability(
    p: f64,
    kind: &'static str,
    setting: &'static str,
) -> Result<(), SettingError> {
    require(
        (0.0..=1.0).contains(&p),
        kind,
        setting,
        p,
        "must be between 0 and 1",
    )
}

/// One draw deciding whether a transform with `probability` acts on this sample. Always drawn,
/// so the stream advances the same whether it acts or not.
pub(crate) fn fires(rng: &mut SplitMix64, probability: f64) -> bool {
    rng.next_f64() < probability
}

/// Uniform in `[-range, range]` (one draw).
pub(crate) fn symmetric(rng: &mut SplitMix64, range: f64) -> f64 {
    range * (2.0 * rng.next_f64() - 1.0)
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.transform().fmt(f)
    }
}

thread_local! {
    /// One spare voxel buffer per thread, handed between transforms that need a second buffer
    /// (affine resampling, blur). A fresh 4 MiB allocation per transform costs its page faults
    /// again every sample; reusing one halves a 128×128×64 pipeline's time in the kernel.
    static SPARE: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A buffer of `len` values, reusing this thread's spare buffer when there is one: its values
/// are unspecified (an earlier volume's, or zeros), and the caller writes every one of them.
/// (Zeroing a buffer every caller overwrites anyway was 3 % of a pipeline.)
pub(crate) fn take_buffer(len: usize) -> Vec<f32> {
    let mut buffer = SPARE.take();
    buffer.resize(len, 0.0);
    buffer
}

/// Keeps `buffer` as this thread's spare (replacing any other) for the next [`take_buffer`].
pub(crate) fn recycle(buffer: Vec<f32>) {
    SPARE.set(buffer);
}

/// The random stream of sample `index` in `epoch` of a run seeded with `seed`: a pure function of
/// the triple (never of call order or threads). Its first output is the hash ct3d has always used
/// to pick a sample's rotation angle, `splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index)`.
pub fn sample_stream(seed: u64, epoch: u64, index: u64) -> SplitMix64 {
    SplitMix64::new(derive_seed(seed, &[epoch]) ^ index)
}

/// An ordered list of transforms, applied first to last; [`Default`] is the Keras example's
/// random rotation ([`Augmentations::seed`]).
///
/// Serialized as the list; deserialized from the list, or from the `true`/`false` that runs
/// recorded before the list existed (the seed's list / no augmentation).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Augmentations(Vec<Augmentation>);

impl Augmentations {
    /// The list `transforms`, applied in that order.
    pub fn new(transforms: Vec<Augmentation>) -> Self {
        Self(transforms)
    }

    /// The Keras example's augmentation: one [`RandomRotation::seed`].
    pub fn seed() -> Self {
        Self(vec![Augmentation::RandomRotation(RandomRotation::seed())])
    }

    /// No augmentation (the identity).
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The transforms in order.
    pub fn transforms(&self) -> &[Augmentation] {
        &self.0
    }

    /// Whether the list is empty (no augmentation).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `volume` passed through every transform in order, with the random stream of sample
    /// `index` in `epoch` of a run seeded with `seed` ([`sample_stream`]). The empty list returns
    /// `volume` itself.
    pub fn apply(&self, volume: Volume, seed: u64, epoch: u64, index: u64) -> Volume {
        if self.0.is_empty() {
            return volume;
        }
        let mut rng = sample_stream(seed, epoch, index);
        self.0.iter().fold(volume, |volume, augmentation| {
            augmentation.transform().apply_owned(volume, &mut rng)
        })
    }
}

impl Default for Augmentations {
    fn default() -> Self {
        Self::seed()
    }
}

/// The meaning of the `augment` flag of runs recorded before the list existed: `true` is the
/// seed's list, `false` none.
impl From<bool> for Augmentations {
    fn from(augment: bool) -> Self {
        if augment { Self::seed() } else { Self::none() }
    }
}

/// `"off"`, or the transforms' descriptions joined by `", then "`.
impl fmt::Display for Augmentations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("off");
        }
        for (i, augmentation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", then ")?;
            }
            augmentation.fmt(f)?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Augmentations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListOrFlag;

        impl<'de> serde::de::Visitor<'de> for ListOrFlag {
            type Value = Augmentations;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of augmentations, or true/false")
            }

            fn visit_bool<E: serde::de::Error>(self, augment: bool) -> Result<Augmentations, E> {
                Ok(augment.into())
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Augmentations, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(augmentation) = seq.next_element()? {
                    list.push(augmentation);
                }
                Ok(Augmentations(list))
            }
        }

        deserializer.deserialize_any(ListOrFlag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::splitmix64;

    /// A `[12, 10, 3]` volume in `[0, 1]` with a bright block (the cubic spline overshoots at its
    /// edges, so clipping matters).
    fn block() -> Volume {
        Volume::from_fn([12, 10, 3], |x, y, z| {
            if (3..8).contains(&x) && (2..6).contains(&y) {
                1.0
            } else {
                0.1 * z as f32
            }
        })
    }

    #[test]
    fn the_sample_stream_starts_with_the_historic_angle_hash() {
        for (seed, epoch, index) in [(0, 0, 0), (42, 3, 17), (u64::MAX, 100, 9999), (7, 1, 1)] {
            let hash = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index);
            assert_eq!(sample_stream(seed, epoch, index).next_u64(), hash);
        }
    }

    #[test]
    fn the_seed_list_reproduces_the_historic_rotation_bit_for_bit() {
        // Before the list existed, the loader computed `rotate_augment(v, angle_for(...))` with
        // the angle picked by multiply-high from the hash of the triple.
        let historic_angle = |seed: u64, epoch: u64, index: u64| {
            let hash = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index);
            SEED_ANGLES[((u128::from(hash) * 6) >> 64) as usize]
        };
        let volume = block();
        let list = Augmentations::seed();
        for seed in [0, 1, 42] {
            for epoch in 1..4 {
                for index in 0..8 {
                    let angle = historic_angle(seed, epoch, index);
                    assert_eq!(angle_for(seed, epoch, index), angle);
                    let expected = rotate_augment(&volume, angle);
                    let out = list.apply(volume.clone(), seed, epoch, index);
                    assert_eq!(out, expected);
                    assert!(
                        out.data()
                            .iter()
                            .zip(expected.data())
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                    );
                }
            }
        }
        assert_eq!(Augmentations::default(), list);
    }

    #[test]
    fn the_empty_list_is_the_identity() {
        let volume = block();
        let out = Augmentations::none().apply(volume.clone(), 3, 1, 2);
        assert_eq!(out, volume);
        assert_eq!(Augmentations::none().to_string(), "off");
    }

    #[test]
    fn transforms_apply_in_list_order_sharing_the_sample_stream() {
        let volume = block();
        let first = RandomRotation::new(vec![10.0]).unwrap();
        let second = RandomRotation::new(vec![-20.0, 5.0]).unwrap();
        let list = Augmentations::new(vec![
            Augmentation::RandomRotation(first.clone()),
            Augmentation::RandomRotation(second.clone()),
        ]);
        let (seed, epoch, index) = (9, 2, 5);
        let mut rng = sample_stream(seed, epoch, index);
        let expected = second.apply(&first.apply(&volume, &mut rng), &mut rng);
        assert_eq!(list.apply(volume.clone(), seed, epoch, index), expected);
        // The other order is a different volume: rotations clip, so they do not commute.
        let reversed = Augmentations::new(vec![
            Augmentation::RandomRotation(second),
            Augmentation::RandomRotation(first),
        ]);
        assert_ne!(reversed.apply(volume, seed, epoch, index), expected);
    }

    #[test]
    fn lists_round_trip_through_json_with_a_kind_tag() {
        let list = Augmentations::new(vec![
            Augmentation::RandomRotation(RandomRotation::seed()),
            Augmentation::RandomRotation(RandomRotation::new(vec![-3.5, 7.25]).unwrap()),
        ]);
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"kind": "random_rotation", "angles": [-20.0, -10.0, -5.0, 5.0, 10.0, 20.0]},
                {"kind": "random_rotation", "angles": [-3.5, 7.25]},
            ])
        );
        let back: Augmentations = serde_json::from_value(json).unwrap();
        assert_eq!(back, list);
        let empty: Augmentations = serde_json::from_str("[]").unwrap();
        assert_eq!(empty, Augmentations::none());
    }

    #[test]
    fn the_old_flag_reads_as_the_seed_list_or_none() {
        let on: Augmentations = serde_json::from_str("true").unwrap();
        let off: Augmentations = serde_json::from_str("false").unwrap();
        assert_eq!(on, Augmentations::seed());
        assert_eq!(off, Augmentations::none());
    }

    #[test]
    fn bad_lists_are_refused_when_read() {
        for text in [
            r#"[{"kind": "random_rotation", "angles": []}]"#,
            r#"[{"kind": "random_rotation", "angles": [1e40]}]"#,
            r#"[{"kind": "random_elastic"}]"#,
            r#"[{"kind": "random_flip", "probabilities": [1.5, 0.0, 0.0]}]"#,
            r#"[{"kind": "flip", "axes": [true]}]"#,
            r#"[{"kind": "random_rotation", "angles": [5.0], "axes": 2}]"#,
            r#""yes""#,
        ] {
            let err = serde_json::from_str::<Augmentations>(text).unwrap_err();
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn descriptions_name_every_transform() {
        assert_eq!(
            Augmentations::seed().to_string(),
            "random rotation (±5, 10, 20°)"
        );
        let list = Augmentations::new(vec![
            Augmentation::RandomRotation(RandomRotation::new(vec![-3.5, 7.0]).unwrap()),
            Augmentation::RandomRotation(RandomRotation::seed()),
        ]);
        assert_eq!(
            list.to_string(),
            "random rotation (-3.5, 7°), then random rotation (±5, 10, 20°)"
        );
    }
}
