//! `ct3d show`, `montage`, `plot` and `report`: argument plumbing around `ct3d::pictures`,
//! `ct3d::report` and `ct3d-plot`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ct3d::evaluate::{self, WeightsChoice};
use ct3d::pictures::{picture_format, run_curves_png, save_png};
use ct3d::report::{ReportOptions, build_report, write_report};
use ct3d_model::DeviceChoice;
use ct3d_plot::slices::{MontageLayout, axial_slice_png, montage_png};
use ct3d_volume::Volume;
use ct3d_volume::augment::rotate_augment;
use ct3d_volume::preprocess::{PreprocessConfig, process_volume};

/// How `show` and `montage` get the volume they draw.
pub struct VolumeSource<'a> {
    /// The scan (a NIfTI file or a DICOM series folder).
    pub scan: &'a Path,
    /// The DICOM series to read from a folder holding several (`SeriesInstanceUID`).
    pub series: Option<String>,
    /// `None`: draw the file's values as stored (e.g. HU, or an already preprocessed volume).
    pub preprocess: Option<PreprocessConfig>,
    /// Rotate every slice by this many degrees after preprocessing (the training augmentation).
    pub augment_angle: Option<f32>,
}

impl VolumeSource<'_> {
    fn load(&self) -> Result<Volume> {
        let volume = ct3d_volume::scan::read_scan(self.scan, self.series.as_deref())?;
        let volume = match &self.preprocess {
            Some(config) => process_volume(&volume, config)
                .with_context(|| format!("{}: preprocessing", self.scan.display()))?,
            None => volume,
        };
        Ok(match self.augment_angle {
            Some(angle) => rotate_augment(&volume, angle),
            None => volume,
        })
    }
}

/// Runs `ct3d show`.
pub fn show(source: &VolumeSource<'_>, slice: usize, scale: usize, output: &Path) -> Result<()> {
    // An unsupported output name is refused before the (possibly slow) reading.
    picture_format(output)?;
    let volume = source.load()?;
    let png = axial_slice_png(&volume, slice, scale)
        .with_context(|| source.scan.display().to_string())?;
    save_png(&png, output)?;
    let [x, y, z] = volume.shape();
    println!(
        "wrote {} ({}×{} px): slice {slice} of {x}×{y}×{z}",
        output.display(),
        png.width,
        png.height
    );
    Ok(())
}

/// Runs `ct3d montage`.
pub fn montage(
    source: &VolumeSource<'_>,
    layout: MontageLayout,
    scale: usize,
    output: &Path,
) -> Result<()> {
    picture_format(output)?;
    let volume = source.load()?;
    let png =
        montage_png(&volume, layout, scale).with_context(|| source.scan.display().to_string())?;
    save_png(&png, output)?;
    println!(
        "wrote {} ({}×{} px): slices {}–{} in {} rows of {}",
        output.display(),
        png.width,
        png.height,
        layout.first,
        layout.first + layout.rows * layout.cols - 1,
        layout.rows,
        layout.cols
    );
    Ok(())
}

/// Runs `ct3d plot`; the picture goes into the run folder (`RUN/curves.png`) unless `output`
/// says otherwise, as `report` does.
pub fn plot(run: &Path, output: Option<PathBuf>) -> Result<()> {
    let output = output.unwrap_or_else(|| run.join("curves.png"));
    picture_format(&output)?;
    let png = run_curves_png(run)?;
    save_png(&png, &output)?;
    println!("wrote {}", output.display());
    Ok(())
}

/// Runs `ct3d report`; returns the report's path.
pub fn report(
    run: &Path,
    output: Option<PathBuf>,
    weights: WeightsChoice,
    device: DeviceChoice,
    options: &ReportOptions,
) -> Result<PathBuf> {
    let output = output.unwrap_or_else(|| run.join("report.html"));
    let loaded = evaluate::load_run(run, weights, device)?;
    let spinner = crate::progress::spinner("evaluating the validation scans and drawing");
    let report = build_report(&loaded, weights, options);
    spinner.finish_and_clear();
    let report = report.map_err(|e| match e {
        ct3d::report::ReportError::Train(e) => crate::model_commands::name_data_override(e),
        e => e.into(),
    })?;
    crate::model_commands::warn_changed_data(&report.evaluation);
    write_report(&report.html, &output)?;
    println!(
        "wrote {} ({} KiB, self-contained; open it in a browser)",
        output.display(),
        report.html.len() / 1024
    );
    Ok(output)
}
