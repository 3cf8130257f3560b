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
//! Randomness is a pure function of `(seed, epoch, sample index)`: every sample of every epoch
//! gets its own SplitMix64 stream ([`sample_stream`]), which the transforms draw from in list
//! order. The same run therefore gives the same augmentations on any number of threads, any
//! sample of any epoch can be reproduced on its own, and the seed's list reproduces the rotation
//! angles ct3d drew before the list existed, bit for bit.
//!
//! # Adding an augmentation
//! One new file in this folder holding the transform's settings struct (`Serialize`,
//! `Deserialize`, `Clone`, `Debug`, `PartialEq`) with its [`Augment`] and `Display`
//! implementations, plus one line in the `augmentations!` list below naming the module and the
//! struct; the variant's `kind` in `config.json` is the struct's name in `snake_case`.

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
}

/// Declares the transform modules and the [`Augmentation`] enum with one variant per
/// transform, and dispatches [`Augment`] to the variant's settings.
macro_rules! augmentations {
    ($($(#[$doc:meta])* $module:ident :: $variant:ident,)+) => {
        $(pub mod $module;)+
        $(pub use $module::$variant;)+

        /// One transform of an augmentation list, tagged by `kind` in `config.json`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Augmentation {
            $($(#[$doc])* $variant($variant),)+
        }

        impl Augmentation {
            /// The transform behind this entry.
            pub fn transform(&self) -> &dyn Augment {
                match self {
                    $(Self::$variant(transform) => transform,)+
                }
            }
        }
    };
}

// The registry: one line per transform (its module in this folder and its settings struct).
augmentations! {
    /// Rotate every `(x, y)` plane by an angle drawn from a list, clip to `[0, 1]`.
    rotation::RandomRotation,
}

pub use rotation::{SEED_ANGLES, angle_for, rotate_augment};

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.transform().fmt(f)
    }
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
            augmentation.transform().apply(&volume, &mut rng)
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
            r#"[{"kind": "random_flip"}]"#,
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
