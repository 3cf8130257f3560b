//! Times the seed's preprocessing and augmentation on in-memory volumes (no file I/O):
//! `process_volume` on a 512×512×50 HU scan (the MosMedData shape) and `rotate_augment` on a
//! 128×128×64 volume, on one thread and on rayon's default pool.
//!
//! With `--scan FILE` it also times `process_file` (read + preprocess) on that file, the whole
//! per-scan step the Python reference's `process_scan` measures.
//!
//! Run with `cargo run --release -p ct3d-volume --example bench_preprocess [-- RUNS] [--scan FILE]`;
//! prints one JSON object per measurement (median and minimum of RUNS runs, default 21, in
//! milliseconds).
//! Compare with `python3 bench/reference_preprocess.py` (scipy on the same shapes).

use std::time::Instant;

use ct3d_volume::Volume;
use ct3d_volume::augment::{SEED_ANGLES, rotate_augment};
use ct3d_volume::nifti_io::read_volume;
use ct3d_volume::preprocess::{PreprocessConfig, process_file, process_volume};

/// A deterministic chest-like HU phantom: air, body, lungs, a bone ring and ±40 HU noise.
fn phantom_hu(shape: [usize; 3]) -> Volume {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let [nx, ny, _] = shape;
    Volume::from_fn(shape, |x, y, z| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 80.0 - 40.0;
        let u = (x as f32 / nx as f32 - 0.5) * 2.0;
        let v = (y as f32 / ny as f32 - 0.5) * 2.0;
        let body = (u / 0.9).powi(2) + (v / 0.75).powi(2);
        let lung =
            |cx: f32| ((u - cx) / 0.3).powi(2) + (v / (0.45 + 0.002 * z as f32)).powi(2) < 1.0;
        let hu = if body >= 1.0 {
            -1024.0
        } else if lung(-0.4) || lung(0.35) {
            -850.0
        } else if (u / 0.8).powi(2) + (v / 0.65).powi(2) > 1.0 {
            900.0
        } else {
            40.0
        };
        (hu + noise).round()
    })
}

/// Median and minimum wall time of `runs` calls, in milliseconds, after one warm-up call.
fn time_ms(runs: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    f(0);
    let mut times: Vec<f64> = (0..runs)
        .map(|run| {
            let start = Instant::now();
            f(run);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// Runs `f` on `pool`, or on rayon's global pool.
fn in_pool<R: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

fn report(name: &str, shape: [usize; 3], threads: usize, runs: usize, (median, min): (f64, f64)) {
    println!(
        "{{\"bench\": \"{name}\", \"shape\": {shape:?}, \"threads\": {threads}, \"runs\": {runs}, \
         \"median_ms\": {median:.3}, \"min_ms\": {min:.3}}}"
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = 21usize;
    let mut scan_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--scan" {
            scan_file = Some(args.next().ok_or("--scan needs a file")?);
        } else {
            runs = arg
                .parse()
                .map_err(|e| format!("RUNS must be a positive integer: {e}"))?;
        }
    }
    if runs == 0 {
        return Err("RUNS must be a positive integer".into());
    }
    let scan_shape = [512, 512, 50];
    let scan = phantom_hu(scan_shape);
    let config = PreprocessConfig::default();
    let unit = process_volume(&scan, &config)?;

    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let default_threads = rayon::current_num_threads();
    for (pool, threads) in [(Some(&single), 1), (None, default_threads)] {
        if let Some(path) = &scan_file {
            let path = std::path::Path::new(path);
            let shape = read_volume(path)?.shape();
            let whole = time_ms(runs, |_| {
                in_pool(pool, || {
                    std::hint::black_box(process_file(path, &config).ok())
                });
            });
            report("process_file", shape, threads, runs, whole);
            let read = time_ms(runs, |_| {
                in_pool(pool, || std::hint::black_box(read_volume(path).ok()));
            });
            report("read_volume", shape, threads, runs, read);
        }
        let preprocess = time_ms(runs, |_| {
            in_pool(pool, || {
                std::hint::black_box(process_volume(&scan, &config).ok())
            });
        });
        report("process_volume", scan_shape, threads, runs, preprocess);
        let augment = time_ms(runs, |i| {
            let angle = SEED_ANGLES[i % SEED_ANGLES.len()];
            in_pool(pool, || std::hint::black_box(rotate_augment(&unit, angle)));
        });
        report("rotate_augment", unit.shape(), threads, runs, augment);
    }
    Ok(())
}
