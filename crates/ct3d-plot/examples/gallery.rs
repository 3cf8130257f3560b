//! Writes one of each chart, drawn from made-up numbers, to a folder for a look by eye:
//! `cargo run -p ct3d-plot --example gallery -- OUT_DIR`.

use ct3d_plot::charts::{Curves, confusion_png, curves_png, roc_png};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "gallery".into()));
    std::fs::create_dir_all(&out)?;
    let epochs = 30;
    let curve = |start: f64, end: f64, wobble: f64| -> Vec<f64> {
        (0..epochs)
            .map(|i| {
                let t = i as f64 / (epochs - 1) as f64;
                start
                    + (end - start) * (1.0 - (-4.0 * t).exp())
                    + wobble * ((i * 7 % 5) as f64 - 2.0)
            })
            .collect()
    };
    let curves = Curves {
        train_accuracy: curve(0.5, 0.95, 0.01),
        validation_accuracy: curve(0.5, 0.85, 0.03),
        train_loss: curve(0.7, 0.15, 0.01),
        validation_loss: curve(0.7, 0.35, 0.03),
    };
    std::fs::write(
        out.join("curves.png"),
        curves_png(&curves, 1200, 400)?.bytes,
    )?;
    let roc = [
        (0.0, 0.0),
        (0.0, 0.4),
        (0.1, 0.4),
        (0.1, 0.8),
        (0.3, 0.9),
        (0.6, 1.0),
        (1.0, 1.0),
    ];
    std::fs::write(out.join("roc.png"), roc_png(&roc, Some(0.91), 480)?.bytes)?;
    let confusion = confusion_png([[25, 5], [3, 27]], ["normal", "abnormal"], 480)?;
    std::fs::write(out.join("confusion.png"), confusion.bytes)?;
    println!("wrote {}", out.display());
    Ok(())
}
