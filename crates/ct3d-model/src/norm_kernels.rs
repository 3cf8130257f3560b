//! Batch normalization kernels on channels-first `f32` data (`[batch, channels, positions]`):
//! training forward with the batch's statistics, its backward pass, and inference with given
//! statistics, each in one or two passes over the data, parallel over channels.
//!
//! # Why
//! burn's generic batch norm (what `flex` runs) transposes the activation to `[channels, …]`
//! twice per pass and runs about five element-wise passes forward and ten backward, each
//! allocating a full-size tensor; on the seed's first block (63 MB per batch of two) that was a
//! quarter of a CPU training step, most of it in page faults (`perf`). Here the statistics are
//! accumulated in `f64` per channel (in a fixed order: results do not depend on the thread
//! count), then one pass writes the output.
//!
//! Formulas (as burn's `batch_norm_train`, biased variance): `x̂ = (x − μ) / √(σ² + ε)`,
//! `y = γ·x̂ + β`; backward `dβ = Σ dy`, `dγ = Σ dy·x̂`,
//! `dx = γ/√(σ² + ε) · (dy − dβ/N − x̂·dγ/N)` with `N = batch · positions`.

use rayon::prelude::*;

/// The runs of one channel: `batch` slices of `positions` values.
fn channel_runs<T>(data: &mut [T], channels: usize, positions: usize) -> Vec<Vec<&mut [T]>> {
    let mut runs: Vec<Vec<&mut [T]>> = (0..channels).map(|_| Vec::new()).collect();
    for (i, run) in data.chunks_mut(positions).enumerate() {
        runs[i % channels].push(run);
    }
    runs
}

fn check(len: usize, batch: usize, channels: usize, positions: usize) {
    assert!(
        channels > 0 && positions > 0 && batch > 0,
        "empty batch norm input"
    );
    assert_eq!(len, batch * channels * positions, "batch norm input length");
}

/// The normalization's per-channel scale `γ / √(σ² + ε)`.
fn scale(gamma: f32, var: f64, epsilon: f64) -> f32 {
    (gamma as f64 / (var + epsilon).sqrt()) as f32
}

/// `1 / √(σ² + ε)` per channel.
fn inverse_std(var: &[f32], epsilon: f64) -> Vec<f64> {
    var.iter()
        .map(|&v| 1.0 / (v as f64 + epsilon).sqrt())
        .collect()
}

/// The input gradient's coefficients `[a, b, d]` of one channel, `dx = a·dy − b·(x − μ) + d`:
/// `dx = k·dy − k·dβ/N − k·x̂·dγ/N` with `k = γ/√(σ² + ε)` and `x̂ = (x − μ)/√(σ² + ε)`, kept
/// centred (see [`normalize_channels_first`]).
fn backward_coefficients(
    gamma: f32,
    inv_std: f64,
    dbeta: f64,
    dgamma: f64,
    count: f64,
) -> [f32; 3] {
    let k = gamma as f64 * inv_std;
    [
        k as f32,
        (k * dgamma * inv_std / count) as f32,
        (-k * dbeta / count) as f32,
    ]
}

/// Training-mode forward pass: returns `(output, mean, biased variance)`; `mean` and variance
/// are `[channels]`.
///
/// - `x`: `[batch, channels, positions]`; `gamma`, `beta`: `[channels]`; `epsilon` > 0.
pub fn train_forward(
    x: &[f32],
    (batch, channels, positions): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    check(x.len(), batch, channels, positions);
    let count = (batch * positions) as f64;
    let stats: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let runs =
                || (0..batch).map(move |n| &x[(n * channels + c) * positions..][..positions]);
            let mean = runs().flatten().map(|&v| v as f64).sum::<f64>() / count;
            let var = runs()
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .collect();
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale(gamma[c], stats[c].1, epsilon))
        .collect();
    let means: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let output = normalize_channels_first(x, (channels, positions), &means, &scales, beta);
    let var = stats.iter().map(|s| s.1 as f32).collect();
    (output, means, var)
}

/// Gradients of [`train_forward`]: `(dx, dgamma, dbeta)` from the output gradient `dy` and the
/// statistics it returned.
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    x: &[f32],
    dy: &[f32],
    (batch, channels, positions): (usize, usize, usize),
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    check(x.len(), batch, channels, positions);
    assert_eq!(dy.len(), x.len(), "batch norm gradient length");
    let count = (batch * positions) as f64;
    let inv_std = inverse_std(var, epsilon);
    let sums: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
            let m = mean[c] as f64;
            for n in 0..batch {
                let at = (n * channels + c) * positions;
                for (&v, &g) in x[at..at + positions].iter().zip(&dy[at..at + positions]) {
                    sum_dy += g as f64;
                    sum_dy_xhat += g as f64 * (v as f64 - m);
                }
            }
            (sum_dy, sum_dy_xhat * inv_std[c])
        })
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    channel_runs(&mut dx, channels, positions)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, runs)| {
            let (sum_dy, sum_dy_xhat) = sums[c];
            let [a, b, d] = backward_coefficients(gamma[c], inv_std[c], sum_dy, sum_dy_xhat, count);
            let m = mean[c];
            for (n, run) in runs.into_iter().enumerate() {
                let at = (n * channels + c) * positions;
                let (xs, gs) = (&x[at..at + positions], &dy[at..at + positions]);
                for ((o, &v), &g) in run.iter_mut().zip(xs).zip(gs) {
                    *o = a * g - b * (v - m) + d;
                }
            }
        });
    let dgamma = sums.iter().map(|s| s.1 as f32).collect();
    let dbeta = sums.iter().map(|s| s.0 as f32).collect();
    (dx, dgamma, dbeta)
}

/// Inference with given statistics: `y = γ·(x − mean)/√(var + ε) + β`, one pass.
pub fn inference(
    x: &[f32],
    (batch, channels, positions): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> Vec<f32> {
    check(x.len(), batch, channels, positions);
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale(gamma[c], var[c] as f64, epsilon))
        .collect();
    normalize_channels_first(x, (channels, positions), &mean[..channels], &scales, beta)
}

/// `(x − mean)·scale + beta` per channel of channels-first data, centred first:
/// `x·scale + (β − μ·scale)` would cancel digits when |μ| ≫ σ.
fn normalize_channels_first(
    x: &[f32],
    (channels, positions): (usize, usize),
    mean: &[f32],
    scale: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    let mut output = vec![0.0f32; x.len()];
    output
        .par_chunks_mut(positions)
        .zip(x.par_chunks(positions))
        .enumerate()
        .for_each(|(i, (out, src))| {
            let c = i % channels;
            let (m, scale, shift) = (mean[c], scale[c], beta[c]);
            for (o, &v) in out.iter_mut().zip(src) {
                *o = (v - m) * scale + shift;
            }
        });
    output
}

/// Rows (positions × batch) per partial sum of the channels-last kernels: a fixed split, so
/// the order of the additions, and hence the result, does not depend on the thread count.
const ROW_CHUNK: usize = 2048;

/// Per-channel `f64` sums of `f(row)` over all rows of a `[rows, channels]` buffer, chunked
/// and combined in a fixed order.
fn channel_sums(
    rows: usize,
    channels: usize,
    terms: usize,
    f: impl Fn(usize, &mut [f64]) + Sync,
) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = (0..rows.div_ceil(ROW_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut sums = vec![0.0f64; terms * channels];
            for row in chunk * ROW_CHUNK..((chunk + 1) * ROW_CHUNK).min(rows) {
                f(row, &mut sums);
            }
            sums
        })
        .collect();
    let mut total = vec![0.0f64; terms * channels];
    for partial in partials {
        total.iter_mut().zip(&partial).for_each(|(t, p)| *t += p);
    }
    total
}

/// [`train_forward`] for channels-last data, `x`: `[rows, channels]` with `rows = batch ·
/// positions` (the layout of the fused convolution's output, so no transpose is needed).
pub fn train_forward_channels_last(
    x: &[f32],
    channels: usize,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        channels > 0 && !x.is_empty() && x.len().is_multiple_of(channels),
        "batch norm input"
    );
    let rows = x.len() / channels;
    let sums = channel_sums(rows, channels, 1, |r, sums| {
        for (s, &v) in sums.iter_mut().zip(&x[r * channels..(r + 1) * channels]) {
            *s += v as f64;
        }
    });
    let mean: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
    let squares = channel_sums(rows, channels, 1, |r, sums| {
        let row = &x[r * channels..(r + 1) * channels];
        for ((s, &v), &m) in sums.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    });
    let var: Vec<f64> = squares.iter().map(|s| s / rows as f64).collect();
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale(gamma[c], var[c], epsilon))
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let output = normalize_channels_last(x, &mean32, &scales, beta);
    (output, mean32, var.iter().map(|&v| v as f32).collect())
}

/// `(x − mean)·scale + beta` per channel of channels-last rows, centred first (see
/// [`normalize_channels_first`]).
fn normalize_channels_last(x: &[f32], mean: &[f32], scale: &[f32], beta: &[f32]) -> Vec<f32> {
    let channels = mean.len();
    let mut output = vec![0.0f32; x.len()];
    output
        .par_chunks_mut(ROW_CHUNK * channels)
        .zip(x.par_chunks(ROW_CHUNK * channels))
        .for_each(|(out, src)| {
            for (o_row, x_row) in out
                .chunks_exact_mut(channels)
                .zip(src.chunks_exact(channels))
            {
                for c in 0..channels {
                    o_row[c] = (x_row[c] - mean[c]) * scale[c] + beta[c];
                }
            }
        });
    output
}

/// [`train_backward`] for channels-last `x` and `dy` (`[rows, channels]`).
#[allow(clippy::too_many_arguments)]
pub fn train_backward_channels_last(
    x: &[f32],
    dy: &[f32],
    channels: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        channels > 0 && !x.is_empty() && x.len().is_multiple_of(channels),
        "batch norm input"
    );
    assert_eq!(dy.len(), x.len(), "batch norm gradient length");
    let rows = x.len() / channels;
    let count = rows as f64;
    let inv_std = inverse_std(var, epsilon);
    // sums[0..C]: Σ dy; sums[C..2C]: Σ dy·(x − μ).
    let sums = channel_sums(rows, channels, 2, |r, sums| {
        let (xs, gs) = (
            &x[r * channels..(r + 1) * channels],
            &dy[r * channels..(r + 1) * channels],
        );
        let (sum_dy, sum_dy_x) = sums.split_at_mut(channels);
        for c in 0..channels {
            sum_dy[c] += gs[c] as f64;
            sum_dy_x[c] += gs[c] as f64 * (xs[c] as f64 - mean[c] as f64);
        }
    });
    let dbeta: Vec<f64> = sums[..channels].to_vec();
    let dgamma: Vec<f64> = (0..channels)
        .map(|c| sums[channels + c] * inv_std[c])
        .collect();
    let coefficients: Vec<[f32; 3]> = (0..channels)
        .map(|c| backward_coefficients(gamma[c], inv_std[c], dbeta[c], dgamma[c], count))
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(ROW_CHUNK * channels)
        .zip(
            x.par_chunks(ROW_CHUNK * channels)
                .zip(dy.par_chunks(ROW_CHUNK * channels)),
        )
        .for_each(|(out, (xs, gs))| {
            for ((o, xr), gr) in out
                .chunks_exact_mut(channels)
                .zip(xs.chunks_exact(channels))
                .zip(gs.chunks_exact(channels))
            {
                for c in 0..channels {
                    let [a, b, d] = coefficients[c];
                    o[c] = a * gr[c] - b * (xr[c] - mean[c]) + d;
                }
            }
        });
    (
        dx,
        dgamma.iter().map(|&v| v as f32).collect(),
        dbeta.iter().map(|&v| v as f32).collect(),
    )
}

/// [`inference`] for channels-last `x` (`[rows, channels]`).
pub fn inference_channels_last(
    x: &[f32],
    channels: usize,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> Vec<f32> {
    assert!(
        channels > 0 && !x.is_empty() && x.len().is_multiple_of(channels),
        "batch norm input"
    );
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale(gamma[c], var[c] as f64, epsilon))
        .collect();
    normalize_channels_last(x, &mean[..channels], &scales, beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [−3, 7) from an xorshift stream per seed (independent streams, so the output
    /// gradient is not an affine function of the input, whose input gradient would vanish).
    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 10.0 - 3.0
            })
            .collect()
    }

    /// f64 reference of the forward pass and of the gradients of `Σ y·dy`.
    #[allow(clippy::type_complexity)]
    fn reference(
        x: &[f32],
        dy: &[f32],
        (b, c_n, p): (usize, usize, usize),
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = (b * p) as f64;
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dg, mut db) = (vec![0.0; c_n], vec![0.0; c_n]);
        for c in 0..c_n {
            let idx: Vec<usize> = (0..b)
                .flat_map(|k| ((k * c_n + c) * p..(k * c_n + c + 1) * p).collect::<Vec<_>>())
                .collect();
            let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / n;
            let var = idx
                .iter()
                .map(|&i| (x[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + eps).sqrt();
            for &i in &idx {
                let xhat = (x[i] as f64 - mean) * inv;
                y[i] = gamma[c] as f64 * xhat + beta[c] as f64;
                db[c] += dy[i] as f64;
                dg[c] += dy[i] as f64 * xhat;
            }
            for &i in &idx {
                let xhat = (x[i] as f64 - mean) * inv;
                dx[i] = gamma[c] as f64 * inv * (dy[i] as f64 - db[c] / n - xhat * dg[c] / n);
            }
        }
        (y, dx, dg, db, vec![])
    }

    fn close(name: &str, got: &[f32], want: &[f64]) {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{name}: worst {worst}, scale {scale}"
        );
    }

    #[test]
    fn kernels_match_f64_reference() {
        let dims = (2, 3, 37);
        let x = data(2 * 3 * 37, 1);
        let dy = data(2 * 3 * 37, 2);
        let (gamma, beta) = (vec![0.5, -1.5, 2.0], vec![0.1, 0.0, -0.3]);
        let (y_ref, dx_ref, dg_ref, db_ref, _) = reference(&x, &dy, dims, &gamma, &beta, 1e-3);
        let (y, mean, var) = train_forward(&x, dims, &gamma, &beta, 1e-3);
        close("output", &y, &y_ref);
        let (dx, dg, db) = train_backward(&x, &dy, dims, &gamma, &mean, &var, 1e-3);
        close("dx", &dx, &dx_ref);
        close("dgamma", &dg, &dg_ref);
        close("dbeta", &db, &db_ref);
        // Inference with the batch's own statistics is the training output.
        let y_inf = inference(&x, dims, &gamma, &beta, &mean, &var, 1e-3);
        close("inference", &y_inf, &y_ref);
    }

    /// `[batch, channels, positions]` → `[batch, positions, channels]`.
    fn to_last(x: &[f32], (b, c_n, p): (usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for n in 0..b {
            for c in 0..c_n {
                for i in 0..p {
                    out[(n * p + i) * c_n + c] = x[(n * c_n + c) * p + i];
                }
            }
        }
        out
    }

    #[test]
    fn channels_last_kernels_match_channels_first() {
        // More rows than one chunk, so the partial sums are combined.
        let dims = (2, 3, 2500);
        let x = data(2 * 3 * 2500, 5);
        let dy = data(2 * 3 * 2500, 6);
        let (gamma, beta) = (vec![0.5, -1.5, 2.0], vec![0.1, 0.0, -0.3]);
        let (y_ref, dx_ref, dg_ref, db_ref, _) = reference(&x, &dy, dims, &gamma, &beta, 1e-3);
        let (xl, dyl) = (to_last(&x, dims), to_last(&dy, dims));
        let (y, mean, var) = train_forward_channels_last(&xl, 3, &gamma, &beta, 1e-3);
        close("output", &y, &to_last_f64(&y_ref, dims));
        let (dx, dg, db) = train_backward_channels_last(&xl, &dyl, 3, &gamma, &mean, &var, 1e-3);
        close("dx", &dx, &to_last_f64(&dx_ref, dims));
        close("dgamma", &dg, &dg_ref);
        close("dbeta", &db, &db_ref);
        let y_inf = inference_channels_last(&xl, 3, &gamma, &beta, &mean, &var, 1e-3);
        close("inference", &y_inf, &to_last_f64(&y_ref, dims));
    }

    fn to_last_f64(x: &[f64], dims: (usize, usize, usize)) -> Vec<f64> {
        let as32: Vec<f32> = (0..x.len()).map(|i| i as f32).collect();
        to_last(&as32, dims)
            .iter()
            .map(|&i| x[i as usize])
            .collect()
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let dims = (2, 5, 1000);
        let x = data(10_000, 3);
        let dy = data(10_000, 4);
        let (gamma, beta) = (vec![1.0; 5], vec![0.0; 5]);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let (y, m, v) = train_forward(&x, dims, &gamma, &beta, 1e-3);
                    let grads = train_backward(&x, &dy, dims, &gamma, &m, &v, 1e-3);
                    let (yl, ml, vl) = train_forward_channels_last(&x, 5, &gamma, &beta, 1e-3);
                    let gl = train_backward_channels_last(&x, &dy, 5, &gamma, &ml, &vl, 1e-3);
                    (y, m, v, grads, yl, ml, vl, gl)
                })
        };
        assert!(run(1) == run(3));
    }
}
