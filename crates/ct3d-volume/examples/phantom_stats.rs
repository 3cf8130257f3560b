//! Prints how much of each abnormal phantom's lungs the ground-glass opacities cover:
//! `cargo run --release -p ct3d-volume --example phantom_stats -- [SCANS] [SIZE_XY] [hard]`.

use ct3d_volume::synth::{Difficulty, PhantomConfig, ScanClass, Tissue, generate_labeled_phantom};

fn main() {
    let mut args = std::env::args().skip(1);
    let scans: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(128);
    let difficulty = match args.next().as_deref() {
        Some("hard") => Difficulty::Hard,
        _ => Difficulty::Easy,
    };
    let config = PhantomConfig::sized(size, None).with_difficulty(difficulty);
    let mut fractions = Vec::new();
    for seed in 0..scans {
        let scan =
            generate_labeled_phantom(&config, ScanClass::Abnormal, seed).expect("valid config");
        let count = |f: &dyn Fn(Tissue) -> bool| scan.tissue.iter().filter(|&&t| f(t)).count();
        let lung = count(&|t| matches!(t, Tissue::Lung | Tissue::Vessel | Tissue::GroundGlass));
        let ggo = count(&|t| t == Tissue::GroundGlass);
        let fraction = ggo as f64 / lung as f64;
        fractions.push(fraction);
        println!(
            "seed {seed}: ground glass covers {:.1} % of the lungs",
            100.0 * fraction
        );
    }
    fractions.sort_by(f64::total_cmp);
    println!(
        "min {:.1} %, median {:.1} %, max {:.1} %",
        100.0 * fractions[0],
        100.0 * fractions[fractions.len() / 2],
        100.0 * fractions[fractions.len() - 1]
    );
}
