//! Times the fused CPU kernels layer by layer at the seed's sizes (batch 2, 128×128×64 input):
//! `cargo run --release -p ct3d-model --example fused_conv_layers [-- --general]` (`--general`:
//! without the AVX-512 kernels, see `fused_conv::kernel_for`).
//!
//! GFLOP are the direct convolution's (2·MACs), also for the Winograd kernels, which do fewer
//! multiplications: the rate is then an effective one, comparable across kernels.
//!
//! Prints wall time and CPU time (summed over all threads, from `/proc/self/task/*/schedstat`
//! on Linux) for the forward pass, the backward pass, and the backward pass without the input
//! gradient, with GFLOP per wall second and per CPU second (2·MACs of the valid convolution;
//! backward counts the weight gradient and, except for the first layer, the input gradient).
//! CPU time is the number to compare when other work shares the machine.

use std::time::Instant;

use ct3d_model::fused_conv::{
    FusedConvShape, PackedWeights, backward, forward, kernel_for, set_avx512_kernels,
    to_channels_last,
};

/// CPU seconds used so far by all threads of this process (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// Best (wall, cpu) seconds of `repeats` calls.
fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..repeats {
        let (wall, cpu) = (Instant::now(), cpu_seconds());
        std::hint::black_box(f());
        best = (
            best.0.min(wall.elapsed().as_secs_f64()),
            best.1.min(cpu_seconds() - cpu),
        );
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--general") {
        set_avx512_kernels(false);
    }
    let batch = 2;
    let layers = [
        (1, 64, [128, 128, 64]),
        (64, 64, [63, 63, 31]),
        (64, 128, [30, 30, 14]),
        (128, 256, [14, 14, 6]),
    ];
    let repeats = 3;
    let mut totals = [(0.0, 0.0); 2];
    for (index, &(in_channels, out_channels, input)) in layers.iter().enumerate() {
        let shape = FusedConvShape {
            batch,
            in_channels,
            out_channels,
            input,
        };
        let x: Vec<f32> = (0..batch * in_channels * shape.input_positions())
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..out_channels * in_channels * 27)
            .map(|i| ((i * 104_729) % 1000) as f32 / 10_000.0 - 0.05)
            .collect();
        let b = vec![0.01f32; out_channels];
        let packed = PackedWeights::new(&w, in_channels, out_channels);
        let x_cl = to_channels_last(
            &x,
            batch,
            in_channels,
            shape.input_positions(),
            shape.input_tail(),
        );
        let [ox, oy, oz] = shape.conv_output();
        let gflop = 2.0 * (batch * ox * oy * oz * out_channels * in_channels * 27) as f64 / 1e9;
        let (out, arg) = forward(&shape, &x_cl, &packed, &b, true);
        let arg = arg.unwrap();
        let fwd = time(repeats, || forward(&shape, &x_cl, &packed, &b, true));
        let bwd = time(repeats, || {
            backward(&shape, &x_cl, &packed, &arg, &out, index > 0)
        });
        let dw = time(repeats, || {
            backward(&shape, &x_cl, &packed, &arg, &out, false)
        });
        let bwd_gflop = if index > 0 { 2.0 * gflop } else { gflop };
        println!(
            "layer {} {in_channels:>3}→{out_channels:<3} {input:?} ({:?} kernels)\n  forward  {:7.1} ms wall {:7.1} ms cpu ({:5.1} GFLOP/cpu-s)\n  backward {:7.1} ms wall {:7.1} ms cpu ({:5.1} GFLOP/cpu-s)\n  of which weights+bias {:7.1} ms wall {:7.1} ms cpu ({:5.1} GFLOP/cpu-s)",
            index + 1,
            kernel_for(&shape),
            fwd.0 * 1e3,
            fwd.1 * 1e3,
            gflop / fwd.1,
            bwd.0 * 1e3,
            bwd.1 * 1e3,
            bwd_gflop / bwd.1,
            dw.0 * 1e3,
            dw.1 * 1e3,
            gflop / dw.1,
        );
        totals[0].0 += fwd.0;
        totals[0].1 += fwd.1;
        totals[1].0 += bwd.0;
        totals[1].1 += bwd.1;
    }
    println!(
        "all four: forward {:.1} ms wall / {:.1} ms cpu, backward {:.1} ms wall / {:.1} ms cpu",
        totals[0].0 * 1e3,
        totals[0].1 * 1e3,
        totals[1].0 * 1e3,
        totals[1].1 * 1e3
    );
}
