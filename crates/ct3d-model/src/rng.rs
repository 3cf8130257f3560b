//! The crate's own random numbers: SplitMix64, so that weight initialisation, dropout masks and
//! benchmark data depend only on a `u64` seed, never on a backend's generator or on thread
//! scheduling, and are identical on every device.

/// SplitMix64 (Steele, Lea & Flood, 2014): a 64-bit state advanced by a Weyl constant and
/// finalised by a bit mixer. Passes BigCrush; plenty for initialisation and dropout.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits (every value exactly representable in `f32`).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `len` values uniform in `[-limit, limit)`.
    pub(crate) fn uniform_vec(&mut self, len: usize, limit: f32) -> Vec<f32> {
        (0..len)
            .map(|_| (2.0 * self.next_f32() - 1.0) * limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_splitmix64_sequence() {
        // First outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_stream_and_values_in_range() {
        let a: Vec<u64> = {
            let mut rng = SplitMix64::new(7);
            (0..4).map(|_| rng.next_u64()).collect()
        };
        let mut rng = SplitMix64::new(7);
        let b: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], SplitMix64::new(8).next_u64());
        let values = SplitMix64::new(1).uniform_vec(10_000, 0.5);
        assert!(values.iter().all(|v| (-0.5..0.5).contains(v)));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.02, "mean {mean}");
    }
}
