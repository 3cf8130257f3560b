//! Channels-first (burn's `[batch, C, positions]`) ↔ channels-last (the kernels'
//! `[batch, positions, C]`) conversions, tiled so that both the reads and the writes stay in
//! cache, with the zero tail the forward pass's overlapping rows read past each volume.

use rayon::prelude::*;

/// Channels-first `[batch, C, positions]` → channels-last `[batch, positions + tail, C]` with a
/// zero tail of `tail` positions after each volume.
pub fn to_channels_last(
    data: &[f32],
    batch: usize,
    channels: usize,
    positions: usize,
    tail: usize,
) -> Vec<f32> {
    assert_eq!(data.len(), batch * channels * positions);
    let stride = (positions + tail) * channels;
    let mut out = vec![0.0f32; batch * stride];
    if channels == 1 {
        for n in 0..batch {
            out[n * stride..n * stride + positions]
                .copy_from_slice(&data[n * positions..(n + 1) * positions]);
        }
        return out;
    }
    const TILE: usize = 64;
    out.par_chunks_mut(stride)
        .zip(data.par_chunks(channels * positions))
        .for_each(|(dst, src)| {
            dst[..positions * channels]
                .par_chunks_mut(TILE * channels)
                .enumerate()
                .for_each(|(tile, dst)| {
                    let p0 = tile * TILE;
                    let rows = dst.len() / channels;
                    for c in 0..channels {
                        let column = &src[c * positions + p0..c * positions + p0 + rows];
                        for (r, &v) in column.iter().enumerate() {
                            dst[r * channels + c] = v;
                        }
                    }
                });
        });
    out
}

/// Channels-last `[batch, positions, C]` (no tail) → channels-first `[batch, C, positions]`.
pub fn to_channels_first(
    data: &[f32],
    batch: usize,
    channels: usize,
    positions: usize,
) -> Vec<f32> {
    assert_eq!(data.len(), batch * channels * positions);
    let mut out = vec![0.0f32; data.len()];
    if channels == 1 {
        out.copy_from_slice(data);
        return out;
    }
    const TILE: usize = 64;
    let volume = channels * positions;
    out.par_chunks_mut(volume)
        .zip(data.par_chunks(volume))
        .for_each(|(dst, src)| {
            // Parallel over channel tiles; each reads the rows of its channels.
            dst.par_chunks_mut(positions * TILE.min(channels))
                .enumerate()
                .for_each(|(tile, dst)| {
                    let c0 = tile * TILE.min(channels);
                    let width = dst.len() / positions;
                    for p0 in (0..positions).step_by(TILE) {
                        let p1 = (p0 + TILE).min(positions);
                        for p in p0..p1 {
                            let row = &src[p * channels + c0..p * channels + c0 + width];
                            for (c, &v) in row.iter().enumerate() {
                                dst[c * positions + p] = v;
                            }
                        }
                    }
                });
        });
    out
}
