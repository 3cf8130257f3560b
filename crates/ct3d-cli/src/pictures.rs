//! `ct3d show`, `montage`, `plot` and `report`: their flags, around `ct3d::pictures`,
//! `ct3d::report` and `ct3d-plot`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ct3d::evaluate::{self, WeightsChoice};
use ct3d::pictures::{picture_format, run_curves_png, save_png};
use ct3d::report::{ReportOptions, build_report, write_report};
use ct3d_plot::slices::{MontageLayout, axial_slice_png, montage_png};
use ct3d_volume::Volume;
use ct3d_volume::augment::{Augmentations, rotate_augment};
use ct3d_volume::preprocess::{PreprocessConfig, process_volume};

use crate::args::{AugmentFlags, DeviceArgs, PreprocessFlags, SeriesArg, WeightsArg};

/// How `show` and `montage` prepare the volume they draw.
#[derive(Debug, Args)]
pub struct PictureArgs {
    /// Draw the file's values as stored (HU, or an already preprocessed volume) instead of
    /// preprocessing it.
    #[arg(long, conflicts_with_all = ["size", "hu_window"])]
    raw: bool,
    /// Rotate each slice by DEG degrees after preprocessing, to see the training augmentation
    /// (it draws from -20, -10, -5, 5, 10, 20).
    #[arg(long, value_name = "DEG", allow_hyphen_values = true, conflicts_with_all = ["augment", "augment_file"])]
    augment_angle: Option<f32>,
    #[command(flatten)]
    augment: AugmentFlags,
    /// The seed whose random draws the --augment recipe takes (each seed shows another draw).
    #[arg(long, value_name = "S", default_value_t = 0)]
    augment_seed: u64,
    #[command(flatten)]
    preprocess: PreprocessFlags,
    #[command(flatten)]
    series: SeriesArg,
}

impl PictureArgs {
    /// Where the volume to draw comes from.
    fn source(self, scan: &std::path::Path) -> Result<VolumeSource<'_>> {
        Ok(VolumeSource {
            scan,
            preprocess: (!self.raw).then(|| self.preprocess.config()).transpose()?,
            augment_angle: self.augment_angle,
            augment: self.augment.recipe()?.map(|list| (list, self.augment_seed)),
            series: self.series.uid,
        })
    }
}

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
    /// An augmentation list to apply after preprocessing, with the seed of its random draws (it
    /// draws as sample 0 of epoch 0 of a run with that seed).
    pub augment: Option<(Augmentations, u64)>,
}

impl VolumeSource<'_> {
    fn load(&self) -> Result<Volume> {
        let volume = ct3d_volume::scan::read_scan(self.scan, self.series.as_deref())?;
        let volume = match &self.preprocess {
            Some(config) => process_volume(&volume, config)
                .with_context(|| format!("{}: preprocessing", self.scan.display()))?,
            None => volume,
        };
        let volume = match self.augment_angle {
            Some(angle) => rotate_augment(&volume, angle),
            None => volume,
        };
        Ok(match &self.augment {
            Some((list, seed)) => list.apply(volume, *seed, 0, 0),
            None => volume,
        })
    }
}

/// The flags of `ct3d show` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The scan (.nii, .nii.gz, .hdr, .nrrd, .nhdr, .mha, .mhd, or a DICOM series folder).
    #[arg(value_name = "SCAN")]
    scan: PathBuf,
    /// Slice index along z, 0-based (the example shows slice 30).
    #[arg(long, default_value_t = 30)]
    slice: usize,
    /// Output picture: .png, or .jpg/.jpeg for a JPEG; written atomically.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    picture: PictureArgs,
    /// Each voxel becomes a SCALE×SCALE block of pixels.
    #[arg(long, default_value_t = 4, value_name = "SCALE")]
    scale: usize,
}

impl ShowArgs {
    /// Draws one slice.
    pub fn run(self) -> Result<()> {
        let (slice, scale, output) = (self.slice, self.scale, &self.output);
        let source = self.picture.source(&self.scan)?;
        let source = &source;
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
}

/// The flags of `ct3d montage` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct MontageArgs {
    /// The scan (.nii, .nii.gz, .hdr, .nrrd, .nhdr, .mha, .mhd, or a DICOM series folder).
    #[arg(value_name = "SCAN")]
    scan: PathBuf,
    /// Rows of tiles.
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// Columns of tiles.
    #[arg(long, default_value_t = 10)]
    cols: usize,
    /// First slice (0-based).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Output picture: .png, or .jpg/.jpeg for a JPEG; written atomically.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    picture: PictureArgs,
    /// Each voxel becomes a SCALE×SCALE block of pixels.
    #[arg(long, default_value_t = 1, value_name = "SCALE")]
    scale: usize,
}

impl MontageArgs {
    /// Draws the montage.
    pub fn run(self) -> Result<()> {
        let layout = MontageLayout {
            rows: self.rows,
            cols: self.cols,
            first: self.first,
        };
        let (scale, output) = (self.scale, &self.output);
        let source = self.picture.source(&self.scan)?;
        let source = &source;
        picture_format(output)?;
        let volume = source.load()?;
        let png = montage_png(&volume, layout, scale)
            .with_context(|| source.scan.display().to_string())?;
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
}

/// The flags of `ct3d plot` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The run folder written by `ct3d train`.
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// Output picture (default: RUN/curves.png): .png, or .jpg/.jpeg for a JPEG; written
    /// atomically.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

impl PlotArgs {
    /// Draws the curves; the picture goes into the run folder (`RUN/curves.png`) unless
    /// `--output` says otherwise, as `report` does.
    pub fn run(self) -> Result<()> {
        let (run, output) = (&self.run, self.output);
        let output = output.unwrap_or_else(|| run.join("curves.png"));
        picture_format(&output)?;
        let png = run_curves_png(run)?;
        save_png(&png, &output)?;
        println!("wrote {}", output.display());
        Ok(())
    }
}

/// The flags of `ct3d report` (its help text is on [`crate::cli::Command`]).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder written by `ct3d train`.
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// Output file (default: RUN/report.html); written atomically.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Which weights.
    #[arg(long, value_enum, default_value_t = WeightsArg::Best)]
    weights: WeightsArg,
    /// Montages of correctly and of wrongly classified validation scans to include (each).
    #[arg(long, default_value_t = 2, value_name = "N")]
    examples: usize,
    /// Evaluate the run's recorded validation scans that are still there, as they are now:
    /// missing ones are left out and changed ones scored anyway (both listed), instead of
    /// refusing.
    #[arg(long)]
    allow_changed_data: bool,
    /// Also evaluate the validation scans with test-time augmentation (N copies each: left-right
    /// flip, small rotations) and show accuracy and AUC with and without it (N× the inference).
    #[arg(long, value_name = "N")]
    tta: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl ReportArgs {
    /// Evaluates the validation scans and writes the report.
    pub fn run(self) -> Result<()> {
        let options = ReportOptions {
            correct_examples: self.examples,
            wrong_examples: self.examples,
            allow_changed_data: self.allow_changed_data,
            tta: self.tta,
            ..Default::default()
        };
        report(
            &self.run,
            self.output,
            self.weights.into(),
            self.device.device,
            &options,
        )
        .map(|_| ())
    }
}

/// Runs `ct3d report`; returns the report's path.
fn report(
    run: &Path,
    output: Option<PathBuf>,
    weights: WeightsChoice,
    device: ct3d_model::DeviceChoice,
    options: &ReportOptions,
) -> Result<PathBuf> {
    let output = output.unwrap_or_else(|| run.join("report.html"));
    let loaded = evaluate::load_run(run, weights, device)?;
    let spinner = crate::progress::spinner("evaluating the validation scans and drawing");
    let report = build_report(&loaded, weights, options);
    spinner.finish_and_clear();
    let report = report.map_err(|e| match e {
        ct3d::report::ReportError::Train(e) => crate::model::name_data_override(e),
        e => e.into(),
    })?;
    crate::model::warn_changed_data(&report.evaluation);
    write_report(&report.html, &output)?;
    print_report_written(&output, report.html.len());
    Ok(output)
}

/// The line that says where the report is, as `report` and `demo` print it.
pub fn print_report_written(path: &Path, html_bytes: usize) {
    println!(
        "wrote {} ({} KiB, self-contained; open it in a browser)",
        path.display(),
        html_bytes / 1024
    );
}
