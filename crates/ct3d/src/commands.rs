//! The subcommands: argument plumbing and printing around library calls.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ct3d_volume::nifti_io::{self, OutputDtype};
use ct3d_volume::preprocess::{self, PreprocessConfig};

/// Parses `W,H,D` (e.g. `128,128,64`) into a size in voxels.
pub fn parse_size(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [w, h, d] = parts.as_slice() else {
        return Err(format!("expected W,H,D such as 128,128,64, got {text:?}"));
    };
    let parse = |s: &str| -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive whole number of voxels")),
            Ok(n) => Ok(n),
        }
    };
    Ok([parse(w)?, parse(h)?, parse(d)?])
}

/// Parses `MIN,MAX` Hounsfield units (e.g. `-1000,400`).
pub fn parse_window(text: &str) -> Result<[f32; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lo, hi] = parts.as_slice() else {
        return Err(format!("expected MIN,MAX such as -1000,400, got {text:?}"));
    };
    let parse = |s: &str| -> Result<f32, String> {
        s.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} is not a number of Hounsfield units"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo >= hi {
        return Err(format!("the window's MIN ({lo}) must be below its MAX ({hi})"));
    }
    Ok([lo, hi])
}

pub fn info(scans: &[std::path::PathBuf]) -> Result<()> {
    let mut failed = 0usize;
    for (i, scan) in scans.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match nifti_io::read_volume(scan) {
            Ok(volume) => print_info(scan, &volume),
            Err(err) => {
                eprintln!("error: {err}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => bail!("{n} of {} scans could not be read", scans.len()),
    }
}

fn print_info(scan: &Path, volume: &ct3d_volume::Volume) {
    let [x, y, z] = volume.shape();
    let [sx, sy, sz] = volume.spacing;
    let codes: String = nifti_io::orientation_codes(&volume.affine).iter().collect();
    println!("{}", scan.display());
    println!("  shape        {x} × {y} × {z} voxels");
    if let Some(dtype) = &volume.provenance.datatype {
        println!("  datatype     {dtype}");
    }
    println!("  spacing      {sx:.4} × {sy:.4} × {sz:.4} mm");
    println!("  field        {:.1} × {:.1} × {:.1} mm", x as f64 * sx, y as f64 * sy, z as f64 * sz);
    println!("  orientation  {codes}");
    match volume.stats() {
        Some(s) => {
            println!("  values       min {:.1}, max {:.1}, mean {:.3} (HU for raw scans)", s.min, s.max, s.mean);
            if s.non_finite > 0 {
                println!("  warning      {} voxels are NaN or infinite", s.non_finite);
            }
        }
        None => println!("  values       no finite values"),
    }
}

pub fn preprocess(scan: &Path, output: &Path, config: &PreprocessConfig) -> Result<()> {
    let volume = preprocess::process_file(scan, config)?;
    nifti_io::write_volume(output, &volume, OutputDtype::F32)?;
    let [x, y, z] = volume.shape();
    println!("{} → {} ({x}×{y}×{z}, float32 in [0, 1])", scan.display(), output.display());
    Ok(())
}

pub fn rotate(input: &Path, output: &Path, angle: f64) -> Result<()> {
    if !angle.is_finite() {
        bail!("--angle must be a finite number of degrees, got {angle}");
    }
    let volume = nifti_io::read_volume(input)?;
    let rotated = ct3d_volume::augment::rotate_augment(&volume, angle as f32);
    nifti_io::write_volume(output, &rotated, OutputDtype::F32)?;
    println!("{} → {} (rotated {angle}°, clipped to [0, 1])", input.display(), output.display());
    Ok(())
}

pub fn prepare(
    data: &Path,
    cache: &Path,
    negative: &str,
    positive: &str,
    config: &PreprocessConfig,
    skip_bad: bool,
    jobs: Option<usize>,
) -> Result<()> {
    let _ = (data, cache, negative, positive, config, skip_bad, jobs);
    bail!("prepare: not wired yet")
}

pub fn synth(out: &Path, normal: usize, abnormal: usize, seed: u64, size_xy: usize) -> Result<()> {
    let _ = (out, normal, abnormal, seed, size_xy);
    bail!("synth: not wired yet")
}

pub fn demo(out: &Path) -> Result<()> {
    let _ = out;
    bail!("demo: not wired yet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("128,128,64").unwrap(), [128, 128, 64]);
        assert_eq!(parse_size(" 48, 48 ,48").unwrap(), [48, 48, 48]);
        assert!(parse_size("128,128").is_err());
        assert!(parse_size("128,0,64").is_err());
        assert!(parse_size("a,b,c").is_err());
    }

    #[test]
    fn window_parsing() {
        assert_eq!(parse_window("-1000,400").unwrap(), [-1000.0, 400.0]);
        assert!(parse_window("400,-1000").is_err());
        assert!(parse_window("nan,1").is_err());
        assert!(parse_window("1").is_err());
    }
}
