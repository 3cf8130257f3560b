//! Times the augmentation transforms on one 128×128×64 volume in `[0, 1]`, on one thread: each
//! transform alone at fixed parameters, and the five-transform pipeline the goal names
//! (flip, linear affine, intensity, Gaussian noise, Gaussian blur) as a training run applies it
//! (`Augmentations::apply`, drawing a new sample's parameters every run).
//!
//! Run with `cargo run --release -p ct3d-volume --example bench_augment [-- RUNS]`; prints one
//! JSON object per measurement (median and minimum of RUNS runs, default 21, in milliseconds).
//! Compare with `python3 bench/reference_augment.py` (numpy/scipy on the same shape), or run
//! both with `bench/augment.sh`.

use std::time::Instant;

use ct3d_volume::Volume;
use ct3d_volume::augment::affine::{AffineDraw, Interpolation, Padding};
use ct3d_volume::augment::blur::gaussian_blur;
use ct3d_volume::augment::flip::flip_axes;
use ct3d_volume::augment::gamma::adjust_gamma;
use ct3d_volume::augment::intensity::scale_shift;
use ct3d_volume::augment::noise::add_noise;
use ct3d_volume::augment::{Augmentation, Augmentations, affine::affine_resample, recipe};

/// A deterministic `[0, 1]` volume with smooth structure and mild noise.
fn unit_volume(shape: [usize; 3]) -> Volume {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let [nx, ny, nz] = shape;
    Volume::from_fn(shape, |x, y, z| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 0.04 - 0.02;
        let u = x as f32 / nx as f32 - 0.5;
        let v = y as f32 / ny as f32 - 0.5;
        let w = z as f32 / nz as f32;
        let disk = if u * u + v * v < 0.12 { 0.6 } else { 0.2 };
        (disk + 0.2 * w + noise).clamp(0.0, 1.0)
    })
}

/// CPU time of the calling thread in milliseconds (Linux), which a busy machine inflates far
/// less than wall time; `None` elsewhere.
fn thread_cpu_ms() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for clock_gettime to write.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
        ok.then(|| t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Median and minimum wall time of `runs` calls and their median thread CPU time, in
/// milliseconds, after one warm-up call. Everything runs on the calling thread (a one-thread
/// pool), so its CPU time is the work's.
fn time_ms(runs: usize, mut f: impl FnMut(usize)) -> (f64, f64, Option<f64>) {
    f(0);
    let mut times = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for run in 0..runs {
        let (start, cpu_start) = (Instant::now(), thread_cpu_ms());
        f(run + 1);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu_ms()) {
            cpu.push(b - a);
        }
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let cpu_median = (!cpu.is_empty()).then(|| cpu[cpu.len() / 2]);
    (times[times.len() / 2], times[0], cpu_median)
}

fn report(name: &str, runs: usize, (median, min, cpu): (f64, f64, Option<f64>)) {
    let cpu = cpu.map_or("null".to_owned(), |c| format!("{c:.3}"));
    println!(
        "{{\"bench\": \"{name}\", \"impl\": \"ct3d\", \"threads\": 1, \"runs\": {runs}, \
         \"median_ms\": {median:.3}, \"min_ms\": {min:.3}, \"cpu_median_ms\": {cpu}}}"
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(21);
    let volume = unit_volume([128, 128, 64]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("one-thread pool");
    pool.install(|| {
        let draw = AffineDraw {
            angles_deg: [3.0, -4.0, 12.0],
            scales: [1.05; 3],
            translation_mm: [2.0, -1.5, 1.0],
        };
        let (matrix, offset) = draw.sampling(volume.shape(), volume.spacing);
        let mut sink = 0.0f32;
        let mut keep = |v: Volume| sink += v.data()[v.len() / 2];
        report(
            "flip_xy",
            runs,
            time_ms(runs, |_| keep(flip_axes(&volume, [true, true, false]))),
        );
        report(
            "affine_linear",
            runs,
            time_ms(runs, |_| {
                keep(affine_resample(
                    &volume,
                    &matrix,
                    offset,
                    Interpolation::Linear,
                    Padding::Constant,
                ))
            }),
        );
        report(
            "affine_cubic",
            runs.min(5),
            time_ms(runs.min(5), |_| {
                keep(affine_resample(
                    &volume,
                    &matrix,
                    offset,
                    Interpolation::Cubic,
                    Padding::Constant,
                ))
            }),
        );
        report(
            "intensity",
            runs,
            time_ms(runs, |_| keep(scale_shift(&volume, 1.05, -0.02))),
        );
        report(
            "gamma",
            runs,
            time_ms(runs, |_| keep(adjust_gamma(&volume, 1.2))),
        );
        report(
            "noise",
            runs,
            time_ms(runs, |run| keep(add_noise(&volume, 0.03, run as u64))),
        );
        report(
            "blur_sigma1",
            runs,
            time_ms(runs, |_| keep(gaussian_blur(&volume, [1.0; 3]))),
        );

        let pipeline: Augmentations =
            recipe::from_names("flip,affine,intensity,noise,blur").expect("known names");
        assert_eq!(pipeline.transforms().len(), 5);
        assert!(matches!(
            pipeline.transforms()[1],
            Augmentation::RandomAffine(_)
        ));
        report(
            "pipeline_flip_affine_intensity_noise_blur",
            runs,
            time_ms(runs, |run| {
                keep(pipeline.apply(volume.clone(), 7, 1, run as u64))
            }),
        );
        eprintln!("checksum {sink}");
    });
}
