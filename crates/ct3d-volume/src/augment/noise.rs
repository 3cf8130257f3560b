//! Additive Gaussian noise (MONAI's `RandGaussianNoise`, TorchIO's `RandomNoise` with a fixed
//! standard deviation).
//!
//! A 128×128×64 volume needs a million normal numbers per sample, so they come from the ziggurat
//! method (Marsaglia & Tsang 2000, in Doornik's 2005 formulation with 128 blocks): one 64-bit
//! draw and one multiply for ~99 % of them, instead of a logarithm and a square root each.

use std::fmt;
use std::sync::OnceLock;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, fires, require, require_probability};
use crate::Volume;
use crate::rng::{SplitMix64, derive_seed};

const KIND: &str = "gaussian_noise";

/// Voxels per independent noise stream: chunks are filled in parallel, each from its own stream
/// derived from the sample's noise seed, so the result does not depend on the thread count.
const CHUNK: usize = 1 << 14;

/// With probability `probability`, adds independent `N(0, std²)` noise to every voxel
/// ([`add_noise`]). Takes two draws from the sample's stream (probability, noise seed).
/// Recorded as `{"kind": "gaussian_noise", "std": 0.03, "probability": 1.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NoiseSettings")]
pub struct GaussianNoise {
    /// Standard deviation in the values' units (`[0, 1]` after preprocessing), in `[0, 1]`.
    std: f64,
    /// Chance that the transform acts on a sample, in `[0, 1]`.
    probability: f64,
}

/// [`GaussianNoise`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NoiseSettings {
    std: f64,
    probability: f64,
}

impl Default for NoiseSettings {
    fn default() -> Self {
        let GaussianNoise { std, probability } = GaussianNoise::default();
        Self { std, probability }
    }
}

impl TryFrom<NoiseSettings> for GaussianNoise {
    type Error = SettingError;

    fn try_from(s: NoiseSettings) -> Result<Self, SettingError> {
        Self::new(s.std, s.probability)
    }
}

impl GaussianNoise {
    /// Noise of standard deviation `std` (in `[0, 1]`, the whole preprocessed range at most),
    /// added with `probability`.
    pub fn new(std: f64, probability: f64) -> Result<Self, SettingError> {
        require(
            (0.0..=1.0).contains(&std),
            KIND,
            "std",
            std,
            "must be between 0 and 1",
        )?;
        require_probability(probability, KIND, "probability")?;
        Ok(Self { std, probability })
    }

    /// `Some(noise seed)` for the next two draws of `rng`, `None` when it does not act.
    pub fn draw(&self, rng: &mut SplitMix64) -> Option<u64> {
        let acts = fires(rng, self.probability);
        let seed = rng.next_u64();
        acts.then_some(seed)
    }
}

/// σ = 0.03 (3 % of the `[0, 1]` range), always.
impl Default for GaussianNoise {
    fn default() -> Self {
        Self {
            std: 0.03,
            probability: 1.0,
        }
    }
}

impl Augment for GaussianNoise {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        match self.draw(rng) {
            Some(seed) => add_noise(volume, self.std, seed),
            None => volume.clone(),
        }
    }

    fn apply_owned(&self, mut volume: Volume, rng: &mut SplitMix64) -> Volume {
        if let Some(seed) = self.draw(rng) {
            add_noise_in_place(&mut volume, self.std, seed);
        }
        volume
    }
}

/// `gaussian noise (σ 0.03, p 1)`.
impl fmt::Display for GaussianNoise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gaussian noise (σ {}, p {})",
            self.std, self.probability
        )
    }
}

/// `volume` plus `std · z` at every voxel, `z` standard normal (rounded to `f32` after adding):
/// voxel chunk `k` (voxels `k · 16384 …`, in memory order) draws from
/// `SplitMix64::new(derive_seed(seed, &[k]))`, so the result is a pure function of
/// `(volume, std, seed)`.
pub fn add_noise(volume: &Volume, std: f64, seed: u64) -> Volume {
    let mut out = volume.clone();
    add_noise_in_place(&mut out, std, seed);
    out
}

/// [`add_noise`] in place.
pub fn add_noise_in_place(volume: &mut Volume, std: f64, seed: u64) {
    let table = ziggurat();
    volume
        .data_mut()
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(k, chunk)| {
            let mut rng = SplitMix64::new(derive_seed(seed, &[k as u64]));
            noise_chunk(table, &mut rng, std, chunk);
        });
}

/// Adds `std · z` to every value of `chunk`, the `z` drawn in order from `rng`. (Four draws at a
/// time with AVX2 was tried and measured slower: one group in nine holds a slow draw.)
fn noise_chunk(table: &Ziggurat, rng: &mut SplitMix64, std: f64, chunk: &mut [f32]) {
    for v in chunk {
        *v = (f64::from(*v) + std * normal_from(table, rng)) as f32;
    }
}

/// Blocks of the ziggurat.
const BLOCKS: usize = 128;
/// Where the tail starts (`x₁`).
const TAIL: f64 = 3.442_619_855_899;
/// The common area of the blocks.
const AREA: f64 = 9.912_563_035_262_17e-3;

/// The ziggurat's block edges `x[0..=128]` and the ratios `x[i + 1] / x[i]`.
struct Ziggurat {
    x: [f64; BLOCKS + 1],
    ratio: [f64; BLOCKS],
}

fn ziggurat() -> &'static Ziggurat {
    static TABLES: OnceLock<Ziggurat> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; BLOCKS + 1];
        let mut f = (-0.5 * TAIL * TAIL).exp();
        // Block 0 is the base strip plus the tail, of the same area as the others.
        x[0] = AREA / f;
        x[1] = TAIL;
        for i in 2..BLOCKS {
            x[i] = (-2.0 * (AREA / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        let ratio = std::array::from_fn(|i| x[i + 1] / x[i]);
        Ziggurat { x, ratio }
    })
}

/// Uniform in `(0, 1)`, never 0 (its logarithm is taken).
fn open_unit(rng: &mut SplitMix64) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// One standard normal number from `rng` (ziggurat).
pub fn standard_normal(rng: &mut SplitMix64) -> f64 {
    normal_from(ziggurat(), rng)
}

/// [`standard_normal`] with the tables looked up once by the caller (a million draws per volume).
#[inline(always)]
fn normal_from(table: &Ziggurat, rng: &mut SplitMix64) -> f64 {
    loop {
        let bits = rng.next_u64();
        // The top 53 bits give the signed uniform, the low 7 the block: disjoint bits.
        let u = 2.0 * ((bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) - 1.0;
        let i = (bits & 0x7f) as usize;
        if u.abs() < table.ratio[i] {
            return u * table.x[i];
        }
        let (accepted, next) = edge(table, rng.clone(), u, i);
        *rng = next;
        if let Some(x) = accepted {
            return x;
        }
    }
}

/// The ziggurat's rare draws (about 1 %): the tail for block 0, else the wedge test. The
/// generator goes in and out by value so that the hot loop of [`normal_from`] keeps its state
/// in a register (a reference here made every draw wait on a store; measured).
#[cold]
#[inline(never)]
fn edge(table: &Ziggurat, mut rng: SplitMix64, u: f64, i: usize) -> (Option<f64>, SplitMix64) {
    if i == 0 {
        let x = tail(&mut rng, u < 0.0);
        return (Some(x), rng);
    }
    let x = u * table.x[i];
    let f0 = (-0.5 * (table.x[i] * table.x[i] - x * x)).exp();
    let f1 = (-0.5 * (table.x[i + 1] * table.x[i + 1] - x * x)).exp();
    let accepted = (f1 + open_unit(&mut rng) * (f0 - f1) < 1.0).then_some(x);
    (accepted, rng)
}

/// A normal number beyond [`TAIL`] (Marsaglia's tail method), negative when asked.
fn tail(rng: &mut SplitMix64, negative: bool) -> f64 {
    loop {
        let x = open_unit(rng).ln() / TAIL;
        let y = open_unit(rng).ln();
        if -2.0 * y >= x * x {
            return if negative { x - TAIL } else { TAIL - x };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_numbers_have_the_normal_moments() {
        let mut rng = SplitMix64::new(11);
        let n = 400_000;
        let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        let kurtosis = draws.iter().map(|d| (d - mean).powi(4)).sum::<f64>() / n as f64 / var.powi(2);
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        assert!((kurtosis - 3.0).abs() < 0.05, "{kurtosis}");
        let beyond_tail = draws.iter().filter(|d| d.abs() > TAIL).count() as f64 / n as f64;
        // P(|z| > 3.4426) = 5.76e-4.
        assert!((beyond_tail - 5.76e-4).abs() < 2.5e-4, "{beyond_tail}");
    }

    #[test]
    fn noise_is_a_function_of_the_seed_alone() {
        let v = Volume::filled([40, 30, 20], 0.5);
        let a = add_noise(&v, 0.1, 7);
        assert_eq!(a, add_noise(&v, 0.1, 7));
        assert_ne!(a, add_noise(&v, 0.1, 8));
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| add_noise(&v, 0.1, 7));
        assert_eq!(a, single);
        let t = GaussianNoise::new(0.1, 0.0).unwrap();
        assert_eq!(t.apply(&v, &mut SplitMix64::new(1)), v);
    }

    #[test]
    fn noise_equals_the_scalar_ziggurat_bit_for_bit() {
        // The in-place, chunked fill draws exactly the numbers `standard_normal` gives, chunk
        // by chunk, on a volume whose length is not a multiple of the chunk.
        let v = Volume::from_fn([37, 29, 23], |x, y, z| ((x * 7 + y + z * 3) % 13) as f32 / 13.0);
        for (seed, std) in [(1, 0.03), (2, 0.5), (99, 1.0)] {
            let noisy = add_noise(&v, std, seed);
            let mut expected = v.clone();
            for (k, chunk) in expected.data_mut().chunks_mut(CHUNK).enumerate() {
                let mut rng = SplitMix64::new(derive_seed(seed, &[k as u64]));
                for x in chunk {
                    *x = (f64::from(*x) + std * standard_normal(&mut rng)) as f32;
                }
            }
            assert_eq!(noisy, expected, "seed {seed}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            GaussianNoise::new(-0.1, 1.0).unwrap_err().to_string(),
            "gaussian_noise std -0.1: must be between 0 and 1"
        );
        assert!(GaussianNoise::new(0.1, f64::NAN).is_err());
    }
}
