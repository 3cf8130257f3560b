//! The demo: the whole pipeline on synthetic phantoms, as one library call.
//!
//! [`run_demo`] synthesises a phantom dataset and two held-out scans, trains the Keras example's
//! model on them, evaluates the best weights on the validation scans, predicts the held-out
//! scans, draws the curves and writes the HTML report — the same library calls a user makes
//! with `ct3d synth`, `train`, `eval`, `predict`, `plot` and `report`. It prints nothing: a
//! [`DemoObserver`] hears about every step (the `ct3d demo` command prints them; a test listens).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ct3d_model::{DeviceChoice, ExponentialDecay, ModelConfig, ModelParams};
use ct3d_volume::nifti_io::{self, OutputDtype, WriteError};
use ct3d_volume::preprocess::PreprocessConfig;
use ct3d_volume::synth::{self, PhantomConfig, SynthError};

use crate::config::{ConfigError, TrainConfig, TrainParams};
use crate::data::source::default_cache;
use crate::error::TrainError;
use crate::inference::{
    self as evaluate, EvalSplit, Evaluation, LoadedRun, Prediction, WeightsChoice,
};
use crate::observe::TrainObserver;
use crate::pictures::{self, PictureError};
use crate::report::{self, ReportError, ReportOptions};
use crate::request::TrainRequest;
use crate::training::{self as train, TrainOutcome};

/// The demo's sizes and training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    /// Phantom scans per class in the dataset.
    pub scans_per_class: usize,
    /// In-plane size of the phantoms, voxels.
    pub size_xy: usize,
    /// Fixed number of slices per phantom (`None`: drawn from 30 to 70, like MosMedData).
    pub depth: Option<usize>,
    /// The model's input (and preprocessing) size `[x, y, z]`, voxels.
    pub input: [usize; 3],
    /// Filters per conv block (the example's `64,64,128,256`).
    pub filters: Vec<usize>,
    /// Units of the hidden dense layer (the example's 512).
    pub dense: usize,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Epochs without a better validation accuracy before stopping.
    pub patience: usize,
    /// Volumes per training step.
    pub batch_size: usize,
    /// Adam's initial learning rate.
    pub learning_rate: f64,
    /// BatchNormalization momentum (Keras convention).
    pub batch_norm_momentum: f64,
}

impl DemoSettings {
    /// The quick settings of `ct3d demo`, chosen so that training finishes in a few minutes on
    /// 2 CPU cores and still separates the phantoms (validation accuracy ≥ 0.9): the example's
    /// model unchanged, at the smallest input its four blocks accept, on more scans than epochs.
    pub fn quick() -> Self {
        let model = ModelConfig::default();
        Self {
            scans_per_class: 60,
            size_xy: 128,
            depth: None,
            input: [48, 48, 48],
            filters: model.filters,
            dense: model.dense,
            epochs: 8,
            patience: 8,
            batch_size: 4,
            learning_rate: 1e-3,
            // ~170 steps: with Keras's 0.99 the moving statistics would still be 18 % their
            // initial values and lag the fast-moving weights, and inference would disagree
            // with training.
            batch_norm_momentum: 0.9,
        }
    }

    /// The Keras example's settings on MosMedData-sized phantoms (`ct3d demo --full`: hours on
    /// a CPU).
    pub fn full() -> Self {
        let model = ModelConfig::default();
        Self {
            scans_per_class: 100,
            size_xy: 512,
            depth: None,
            input: PreprocessConfig::default().size,
            filters: model.filters,
            dense: model.dense,
            epochs: 100,
            patience: 15,
            batch_size: 2,
            learning_rate: 1e-4,
            batch_norm_momentum: 0.99,
        }
    }

    /// The training parameters the demo trains with (before their check): the example's, with
    /// these sizes and the demo's seed. A variant (more epochs, another augmentation) starts here.
    pub fn train_params(&self) -> Result<TrainParams, ConfigError> {
        Ok(TrainParams {
            epochs: self.epochs,
            patience: self.patience,
            batch_size: self.batch_size,
            seed: DEMO_SEED,
            schedule: ExponentialDecay {
                initial: self.learning_rate,
                ..Default::default()
            },
            preprocess: PreprocessConfig::sized(self.input)?,
            model: ModelParams {
                filters: self.filters.clone(),
                dense: self.dense,
                batch_norm_momentum: self.batch_norm_momentum,
                ..ModelParams::default()
            },
            ..TrainParams::default()
        })
    }
}

/// What [`run_demo`] runs, and where.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working folder for data, cache, run, pictures and report (made by the demo, or empty).
    pub out: PathBuf,
    /// Sizes and training settings.
    pub settings: DemoSettings,
    /// Where to train.
    pub device: DeviceChoice,
}

/// The demo's steps, in order, as [`DemoObserver::step`] announces them.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoStep {
    /// Synthesise the dataset: this many scans per class.
    Synthesise {
        /// Scans per class.
        per_class: usize,
    },
    /// Synthesise the two held-out scans.
    HeldOut,
    /// Train at this input size for up to this many epochs.
    Train {
        /// Input size `[x, y, z]`, voxels.
        input: [usize; 3],
        /// Maximum number of epochs.
        epochs: usize,
    },
    /// Evaluate the best weights on the validation scans.
    Evaluate,
    /// Predict the held-out scans.
    Predict,
    /// Draw the curves and write the report.
    Report,
}

impl DemoStep {
    /// How many steps the demo has.
    pub const COUNT: usize = 6;

    /// This step's number, 1 to [`DemoStep::COUNT`].
    pub fn number(&self) -> usize {
        match self {
            Self::Synthesise { .. } => 1,
            Self::HeldOut => 2,
            Self::Train { .. } => 3,
            Self::Evaluate => 4,
            Self::Predict => 5,
            Self::Report => 6,
        }
    }
}

/// Hears about the demo's progress; every method but [`DemoObserver::training`] has an empty
/// default. `Sync`: phantoms are written on several threads.
pub trait DemoObserver: Sync {
    /// A step starts.
    fn step(&self, _step: &DemoStep) {}
    /// The dataset's phantoms are written: one call per scan, then `synthesised`.
    fn phantom_written(&self, _done: usize, _total: usize) {}
    /// The dataset is written: its scan files, and how long it took.
    fn synthesised(&self, _out: &Path, _paths: &[PathBuf], _elapsed: Duration) {}
    /// The held-out scans are written into `dir`.
    fn held_out(&self, _dir: &Path, _paths: &[PathBuf]) {}
    /// The observer of the training step.
    fn training(&self) -> &dyn TrainObserver;
    /// Training finished.
    fn trained(&self, _outcome: &TrainOutcome) {}
    /// The validation scans are evaluated; the ROC and confusion pictures are written.
    fn evaluated(&self, _run: &LoadedRun, _evaluation: &Evaluation, _pictures: &[PathBuf; 2]) {}
    /// A held-out scan is predicted.
    fn predicted(&self, _run: &LoadedRun, _prediction: &Prediction) {}
    /// A picture is written.
    fn wrote(&self, _path: &Path) {}
    /// The HTML report (`html_bytes` long) is written.
    fn reported(&self, _path: &Path, _html_bytes: usize) {}
}

/// What the demo produced.
pub struct DemoOutcome {
    /// The run folder.
    pub run: PathBuf,
    /// The training's outcome.
    pub trained: TrainOutcome,
    /// The best weights on the validation scans.
    pub evaluation: Evaluation,
    /// The held-out scans' predictions (normal first, then abnormal).
    pub predictions: Vec<Prediction>,
    /// The HTML report.
    pub report: PathBuf,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The folder holds something the demo did not make.
    #[error(
        "{}: not empty and not made by `ct3d demo` (no {DEMO_MARKER} file); the demo writes its \
         data, run and report there: choose a new or empty folder",
        .0.display()
    )]
    NotDemoFolder(PathBuf),
    /// A folder or the marker file could not be written.
    #[error("{}: cannot write", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A phantom could not be made.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// A phantom could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Training, evaluation or prediction failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A picture could not be drawn or written.
    #[error(transparent)]
    Picture(#[from] PictureError),
    /// The report could not be built or written.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Seed of the demo's phantoms and training; fixed so that every demo run is the same.
pub const DEMO_SEED: u64 = 0;

/// Seed of the held-out phantoms: far from the dataset's per-scan seeds.
const HELD_OUT_SEED: u64 = 0x00de_0000_0000;

/// Marks a folder as the demo's (created by it, or empty when it started), so a rerun reuses it.
pub const DEMO_MARKER: &str = ".ct3d-demo";

/// Runs the whole pipeline in `options.out`: `data/` (the phantoms and their cache),
/// `held-out/`, `run/`, `plots/` and `report.html`. A rerun reuses the folder (training starts
/// over); a non-empty folder the demo did not make is refused before anything is written.
pub fn run_demo(
    options: &DemoOptions,
    observer: &dyn DemoObserver,
) -> Result<DemoOutcome, DemoError> {
    let settings = &options.settings;
    let out = &options.out;
    claim_demo_folder(out)?;
    let data = out.join("data");
    let run = out.join("run");
    let plots = out.join("plots");
    let n = settings.scans_per_class;

    observer.step(&DemoStep::Synthesise { per_class: n });
    let started = Instant::now();
    let phantoms = PhantomConfig::sized(settings.size_xy, settings.depth);
    phantoms.validate()?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let paths = synth::write_dataset(
        &data,
        n,
        n,
        DEMO_SEED,
        &phantoms,
        |path, volume| nifti_io::write_volume(path, volume, OutputDtype::I16),
        || {
            let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            observer.phantom_written(done, 2 * n);
        },
    )?;
    observer.synthesised(&data, &paths, started.elapsed());

    observer.step(&DemoStep::HeldOut);
    let held_out_dir = out.join("held-out");
    let held_out = synth_held_out(&held_out_dir, &phantoms)?;
    observer.held_out(&held_out_dir, &held_out);

    observer.step(&DemoStep::Train {
        input: settings.input,
        epochs: settings.epochs,
    });
    let request = TrainRequest {
        cache: default_cache(&data),
        data: data.clone(),
        manifest: None,
        out: run.clone(),
        config: train_config(settings).map_err(TrainError::from)?,
        device: options.device,
        resume: false,
        force: true,
        skip_bad: false,
        given: Vec::new(),
    };
    let trained = train::train(&request, observer.training())?;
    observer.trained(&trained);

    observer.step(&DemoStep::Evaluate);
    let loaded = evaluate::load_run(&run, WeightsChoice::Best, options.device)?;
    let evaluation = evaluate::evaluate_recorded(&loaded, EvalSplit::Val, false)?;
    let roc_confusion =
        pictures::write_evaluation_pictures(&evaluation, &loaded.config.train.classes, &plots)?;
    observer.evaluated(&loaded, &evaluation, &roc_confusion);

    observer.step(&DemoStep::Predict);
    let mut predictions = Vec::new();
    for scan in &held_out {
        let prediction = evaluate::predict_scan(&loaded, scan)?;
        observer.predicted(&loaded, &prediction);
        predictions.push(prediction);
    }

    observer.step(&DemoStep::Report);
    let curves = plots.join("curves.png");
    pictures::save_png(&pictures::run_curves_png(&run)?, &curves)?;
    observer.wrote(&curves);
    // The demo's report also shows what test-time augmentation changes (8 copies: cheap at the
    // demo's size).
    let report_options = ReportOptions {
        tta: Some(8),
        ..ReportOptions::default()
    };
    let built = report::build_report(&loaded, WeightsChoice::Best, &report_options)?;
    let report = out.join("report.html");
    report::write_report(&built.html, &report)?;
    observer.reported(&report, built.html.len());
    Ok(DemoOutcome {
        run,
        trained,
        evaluation,
        predictions,
        report,
    })
}

/// The training configuration of `settings`: the example's, with the demo's sizes and seed.
fn train_config(settings: &DemoSettings) -> Result<TrainConfig, ConfigError> {
    settings.train_params()?.check()
}

/// Refuses a non-empty `out` that the demo did not make: it would train on whatever scans are in
/// its `data/` and overwrite its files. Otherwise creates `out` if needed and marks it.
fn claim_demo_folder(out: &Path) -> Result<(), DemoError> {
    let marker = out.join(DEMO_MARKER);
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty && !marker.is_file() {
        return Err(DemoError::NotDemoFolder(out.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    ct3d_volume::atomic::write_bytes_atomic(
        &marker,
        b"made by ct3d demo: a rerun of the demo may reuse this folder\n",
    )
    .map_err(io(&marker))
}

/// One normal and one abnormal phantom from seeds outside the dataset's, in their own folder.
fn synth_held_out(dir: &Path, phantoms: &PhantomConfig) -> Result<Vec<PathBuf>, DemoError> {
    let config = PhantomConfig {
        depth: PhantomConfig::default().depth,
        ..phantoms.clone()
    };
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths = Vec::new();
    for (class, name) in [
        (synth::ScanClass::Normal, "normal_held_out.nii.gz"),
        (synth::ScanClass::Abnormal, "abnormal_held_out.nii.gz"),
    ] {
        let volume = synth::generate_phantom(&config, class, HELD_OUT_SEED)?;
        let path = dir.join(name);
        nifti_io::write_volume(&path, &volume, OutputDtype::I16)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_reuses_only_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        // A new folder, then a rerun into it.
        let new = dir.path().join("new");
        claim_demo_folder(&new).unwrap();
        assert!(new.join(DEMO_MARKER).is_file());
        std::fs::create_dir_all(new.join("data/CT-0")).unwrap();
        claim_demo_folder(&new).unwrap();
        // An empty folder is taken.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        claim_demo_folder(&empty).unwrap();
        assert!(empty.join(DEMO_MARKER).is_file());
        // A user's folder is refused and left alone.
        let mine = dir.path().join("mine");
        std::fs::create_dir_all(mine.join("CT-0")).unwrap();
        let err = claim_demo_folder(&mine).unwrap_err().to_string();
        assert!(err.contains(&mine.display().to_string()), "{err}");
        assert!(err.contains("not made by `ct3d demo`"), "{err}");
        assert!(!mine.join(DEMO_MARKER).exists());
    }

    #[test]
    fn the_quick_demo_keeps_the_examples_model_and_the_full_one_its_settings() {
        let (quick, full) = (DemoSettings::quick(), DemoSettings::full());
        let example = ModelConfig::default();
        assert_eq!(
            (quick.filters.clone(), quick.dense),
            (example.filters.clone(), example.dense)
        );
        assert_eq!(full.input, [128, 128, 64]);
        assert_eq!((full.epochs, full.patience, full.batch_size), (100, 15, 2));
        assert_eq!(full.learning_rate, 1e-4);
        let config = train_config(&quick).unwrap();
        assert_eq!(config.model_config().input, quick.input);
        assert_eq!(config.preprocess.size, quick.input);
        assert_eq!(config.seed, DEMO_SEED);
    }
}
