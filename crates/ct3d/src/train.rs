//! `ct3d train`: the Keras example's `model.fit`, reproducibly and resumably.
//!
//! From class folders (or a CSV manifest) of raw scans: `prepare` cache → per-class 70/30 split,
//! patient-grouped when the data has patients ([`crate::split`]; or fold `i` of a stratified
//! k-fold, [`crate::folds`]) → each epoch a seeded
//! shuffle, on-the-fly rotation augmentation on a worker thread, Adam steps, validation, the two
//! callbacks (best-`val_loss` checkpoint, early stopping on `val_acc`), and an atomic commit of
//! the run folder (see [`crate::run`]). With the same seed two CPU runs produce the same history,
//! and a run killed at any moment resumes to the same result as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ct3d_model::input::batch_tensor;
use ct3d_model::weights::{load_optimizer, load_weights, save_optimizer, save_weights};
use ct3d_model::{Adam, DeviceChoice, Model, predict_proba, train_step};
use ct3d_volume::cache::{self, PrepareEvent, PrepareOptions, PreparedDataset, PreparedItem};
use ct3d_volume::dataset::Dataset;
use ct3d_volume::rng::derive_seed;

use crate::folds::fold_split;
use crate::history::EpochRecord;
use crate::loader::{self, Augmentation, streams};
use crate::metrics::binary_metrics;
use crate::run::{
    DataFile, FolderLock, RunConfig, RunDir, RunError, RunState, ScheduleChange, SettingChange,
    SplitPart, TrainConfig, changed_setting, check_replaceable,
};
use crate::split::{PatientSplitSummary, Split, SplitError, split_by_patient};

/// Batches assembled ahead of the model, like the example's `prefetch(2)`.
const PREFETCH: usize = 2;

/// What to train, where, and how to treat an existing run folder.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Folder with one sub-folder per class (with `manifest`: the manifest's folder, recorded as
    /// the run's data folder).
    pub data: PathBuf,
    /// A CSV manifest listing the scans (see [`ct3d_volume::manifest`]), instead of class
    /// folders in `data`.
    pub manifest: Option<PathBuf>,
    /// The run folder.
    pub out: PathBuf,
    /// The `prepare` cache folder.
    pub cache: PathBuf,
    /// Hyper-parameters. On resume the run's recorded ones are used, and those named in
    /// `given` must equal them (except `epochs`, which changes the schedule).
    pub config: TrainConfig,
    /// The settings of `config` that the user gave explicitly, as configuration keys of
    /// [`TrainConfig`]'s JSON (`epochs`, `schedule.initial`, `model.filters`, …). Only used on
    /// resume: a given setting that differs from the recorded one is refused
    /// ([`TrainError::SettingChanged`]), except `epochs`, which extends a run (or ends it
    /// earlier, but not before its completed epochs) and is recorded in `config.json`.
    pub given: Vec<String>,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Continue the run in `out` from its last complete epoch.
    pub resume: bool,
    /// Replace an existing run in `out`.
    pub force: bool,
    /// Leave out scans that cannot be read instead of failing (they are reported).
    pub skip_bad: bool,
}

impl TrainRequest {
    /// Where the scans are listed.
    pub fn source(&self) -> DataSource {
        match &self.manifest {
            Some(manifest) => DataSource::Manifest(manifest.clone()),
            None => DataSource::Folder(self.data.clone()),
        }
    }
}

/// Where a dataset's scans are listed: class folders or a CSV manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A folder with one sub-folder per class.
    Folder(PathBuf),
    /// A CSV manifest (`path,label[,patient]`).
    Manifest(PathBuf),
}

impl DataSource {
    /// Lists the scans, with the class folder names (or a manifest's label names) of `classes`.
    pub fn load(&self, classes: &crate::run::Classes) -> Result<Dataset, TrainError> {
        let (negative, positive) = (&classes.negative_folder, &classes.positive_folder);
        Ok(match self {
            Self::Folder(dir) => Dataset::from_class_folders(dir, negative, positive)?,
            Self::Manifest(csv) => Dataset::from_manifest(csv, negative, positive)?,
        })
    }

    /// The folder of the data: the class-folder root, or the manifest's folder.
    pub fn folder(&self) -> PathBuf {
        match self {
            Self::Folder(dir) => dir.clone(),
            Self::Manifest(csv) => csv
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
        }
    }
}

/// The train / validation split a new run uses: fold `i` of K when the configuration asks for
/// k-fold cross-validation (see [`crate::folds`]), else the per-class split of
/// [`split_by_patient`] (without patients: the Keras example's). `patients` has one entry per
/// label. A run, once started, keeps the split its `config.json` records ([`recorded_split`]).
pub fn run_split(
    labels: &[u8],
    patients: &[Option<String>],
    config: &TrainConfig,
) -> Result<Split, TrainError> {
    let class_names = [
        config.classes.negative_folder.as_str(),
        config.classes.positive_folder.as_str(),
    ];
    Ok(match config.folds {
        Some(spec) => fold_split(labels, patients, spec, config.seed, class_names)?,
        None => split_by_patient(labels, patients, class_names, config.train_fraction)?,
    })
}

/// The split recorded in a run's `files` (one per item, in item order), in [`Split`]'s order.
pub fn recorded_split(files: &[DataFile]) -> Split {
    let labels: Vec<u8> = files.iter().map(|f| f.label).collect();
    let in_train: Vec<bool> = files.iter().map(|f| f.split == SplitPart::Train).collect();
    Split::from_assignment(&labels, &in_train)
}

/// The patient of each prepared item (matched by path), in item order.
pub fn prepared_patients(dataset: &Dataset, items: &[PreparedItem]) -> Vec<Option<String>> {
    let by_path: std::collections::HashMap<&Path, &Option<String>> = dataset
        .items()
        .iter()
        .map(|item| (item.path.as_path(), &item.patient))
        .collect();
    items
        .iter()
        .map(|item| {
            by_path
                .get(item.source.as_path())
                .and_then(|p| (*p).clone())
        })
        .collect()
}

/// Hooks for progress display; every method has a do-nothing default.
pub trait TrainObserver: Sync {
    /// `done` of `total` scans prepared.
    fn prepare_progress(&self, _done: usize, _total: usize) {}
    /// A scan was left out (`--skip-bad`); `error` names it.
    fn skipped(&self, _error: &str) {}
    /// Training starts or resumes at `first_epoch` with this many training / validation scans.
    fn started(&self, _first_epoch: usize, _epochs: usize, _train: usize, _validation: usize) {}
    /// After [`TrainObserver::started`], when the data has patients: how the split divides them
    /// (no patient is on both sides).
    fn patient_split(&self, _summary: &PatientSplitSummary) {}
    /// `done` of `total` training batches of `epoch`, with the running mean loss and accuracy.
    fn batch(&self, _epoch: usize, _done: usize, _total: usize, _loss: f64, _acc: f64) {}
    /// An epoch finished and was committed.
    fn epoch(&self, _record: &EpochRecord, _epochs: usize, _data_wait: Duration) {}
    /// A resumed run's number of epochs changed (`--resume --epochs`), as recorded.
    fn schedule_changed(&self, _change: &ScheduleChange) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl TrainObserver for Silent {}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run folder.
    pub run: PathBuf,
    /// Every epoch, resumed ones included.
    pub history: Vec<EpochRecord>,
    /// Epoch of the best `val_loss` (whose weights are `best.safetensors`).
    pub best_epoch: usize,
    /// `"completed"` or `"early stopping"`.
    pub finished: String,
    /// Scans left out by `--skip-bad`, one line each.
    pub skipped: Vec<String>,
    /// Time the model waited for data over this process's epochs (prefetch effectiveness).
    pub data_wait: Duration,
    /// Epochs trained by this call (fewer than `history.len()` after a resume).
    pub epochs_run: usize,
}

/// Why training failed. One line naming the file or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid hyper-parameters.
    #[error(transparent)]
    Config(#[from] crate::run::ConfigError),
    /// The data folder is not a usable dataset.
    #[error(transparent)]
    Dataset(#[from] ct3d_volume::dataset::DatasetError),
    /// The CSV manifest is not a usable dataset.
    #[error(transparent)]
    Manifest(#[from] ct3d_volume::manifest::ManifestError),
    /// The data cannot be split into the requested folds.
    #[error(transparent)]
    Folds(#[from] crate::folds::FoldError),
    /// Preprocessing or the cache failed.
    #[error(transparent)]
    Cache(#[from] ct3d_volume::cache::CacheError),
    /// A scan could not be read or preprocessed, and unreadable scans were not to be left out.
    #[error("{0} (pass --skip-bad to leave unreadable scans out)")]
    BadScan(#[source] ct3d_volume::cache::CacheError),
    /// Too few scans for the split.
    #[error(transparent)]
    Split(#[from] crate::split::SplitError),
    /// One class cannot be split, naming the class folder (or, for patients, the data folder
    /// or the CSV manifest).
    #[error("{}: {source}", path.display())]
    SplitData {
        /// The class folder, the data folder or the CSV manifest.
        path: PathBuf,
        /// What is wrong with the split.
        source: crate::split::SplitError,
    },
    /// The scans a run recorded are missing or changed.
    #[error(transparent)]
    RecordedData(#[from] crate::evaluate::RecordedDataError),
    /// The run folder.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// The device could not be used.
    #[error(transparent)]
    Device(#[from] ct3d_model::DeviceSelectionError),
    /// The model rejected a configuration or batch.
    #[error(transparent)]
    Model(#[from] ct3d_model::ModelError),
    /// A weights or optimizer file.
    #[error(transparent)]
    Weights(#[from] ct3d_model::WeightsError),
    /// A batch could not be assembled.
    #[error(transparent)]
    Loader(#[from] loader::LoaderError),
    /// A scan could not be read or preprocessed (the message names it).
    #[error("{0}")]
    Scan(String),
    /// The data changed since the run started, so resuming would not reproduce it.
    #[error("{0}")]
    DataChanged(String),
    /// A setting given for a resumed run differs from the recorded one.
    #[error(
        "{}: {} differs from the run's recorded setting (recorded {}, given {}); a resumed run \
         keeps its settings: leave it out, or start a new run with --force",
        run.display(),
        change.key,
        change.recorded,
        change.given
    )]
    SettingChanged {
        /// The run folder.
        run: PathBuf,
        /// The setting and both values.
        change: SettingChange,
    },
    /// `--resume --epochs N` with N below the epochs already trained.
    #[error(
        "{}: --epochs {epochs} is fewer than the {completed} epochs already trained; pass \
         --epochs {completed} or more",
        run.display()
    )]
    EpochsBelowCompleted {
        /// The run folder.
        run: PathBuf,
        /// The number asked for.
        epochs: usize,
        /// Epochs committed.
        completed: usize,
    },
    /// `--resume --epochs N` on a run that early stopping ended.
    #[error(
        "{}: the run ended by early stopping at epoch {epoch}, so more epochs would stop again \
         at once; start a new run instead (--force, perhaps with a larger --patience)",
        run.display()
    )]
    EarlyStopped {
        /// The run folder.
        run: PathBuf,
        /// Its last epoch.
        epoch: usize,
    },
}

/// Trains (or resumes) a run as `request` says, reporting progress to `observer`.
pub fn train(
    request: &TrainRequest,
    observer: &dyn TrainObserver,
) -> Result<TrainOutcome, TrainError> {
    let device = request.device.resolve()?;
    // Recorded paths must work from any working directory, and another spelling of the same
    // folder (`./data/`) must not look like other data when resuming.
    let request = &TrainRequest {
        data: absolute_path(&request.data),
        manifest: request.manifest.as_deref().map(absolute_path),
        cache: absolute_path(&request.cache),
        ..request.clone()
    };
    let run = RunDir::new(&request.out);
    // Held until training ends; see `claim_folder`.
    let mut lock: Option<FolderLock>;
    let mut schedule_change = None;
    let (config, mut state) = if request.resume {
        lock = claim_folder(request, &run)?;
        let state = match run.read_state() {
            Ok(state) => Some(state),
            // Killed before its first commit: the recorded config.json is all there is, and
            // the run starts over with it.
            Err(RunError::NothingToResume(_)) if run.config().exists() => None,
            Err(error) => return Err(error.into()),
        };
        let mut recorded = run.read_config()?;
        let mut state = state.unwrap_or_else(|| RunState::new(recorded.train.patience));
        schedule_change = resume_settings(request, &run, &mut recorded, &mut state)?
            .map(|change| (change, recorded.clone()));
        // A crash between the commit and the friendly copies is repaired here.
        run.refresh_copies(&state)?;
        (recorded, state)
    } else {
        request.config.validate()?;
        // Refused before the (possibly long) preparation; the folder itself is only created
        // once the data is known to be usable, so a failed start leaves nothing behind.
        lock = claim_folder(request, &run)?;
        let state = RunState::new(request.config.patience);
        let config = RunConfig {
            ct3d_version: env!("CARGO_PKG_VERSION").to_owned(),
            device: request.device.to_string(),
            data_root: absolute_path(&request.source().folder()),
            manifest: request.manifest.clone(),
            cache: request.cache.clone(),
            train: request.config.clone(),
            files: Vec::new(),
            schedule_changes: Vec::new(),
        };
        (config, state)
    };
    let train_config = config.train.clone();

    let (prepared, patients) = prepare_data(request, &train_config, observer)?;
    let labels: Vec<u8> = prepared.items.iter().map(|item| item.label).collect();
    let data = request.manifest.as_ref().unwrap_or(&request.data);
    let split = if request.resume {
        // The recorded split, not a recomputed one: the data is the same (checked here), and a
        // later ct3d with another split rule must still continue the run it started.
        // Compared without their split (`&[]` marks every file validation here).
        let files = data_files(&prepared.items, &patients, &[]);
        let same = |a: &DataFile, b: &DataFile| {
            (&a.path, a.label, &a.sha256, &a.patient) == (&b.path, b.label, &b.sha256, &b.patient)
        };
        if files.len() != config.files.len()
            || !files.iter().zip(&config.files).all(|(a, b)| same(a, b))
        {
            return Err(TrainError::DataChanged(format!(
                "{}: the scans differ from those recorded in {} (added, removed or modified \
                 files); resuming would not reproduce the run — start a new run instead",
                data.display(),
                run.config().display()
            )));
        }
        recorded_split(&config.files)
    } else {
        let split = run_split(&labels, &patients, &train_config).map_err(|e| match e {
            TrainError::Split(source) => TrainError::SplitData {
                path: match (&source, &request.manifest) {
                    (_, Some(manifest)) => manifest.clone(),
                    (SplitError::TooFewScans { class, .. }, None) => request.data.join(class),
                    (SplitError::TooFewPatients { .. }, None) => request.data.clone(),
                },
                source,
            },
            e => e,
        })?;
        let files = data_files(&prepared.items, &patients, &split.train);
        if lock.is_none() {
            lock = Some(FolderLock::acquire_creating(&request.out)?);
        }
        RunDir::create(&request.out, request.force)?;
        run.write_config(&RunConfig { files, ..config })?;
        split
    };
    if let Some((change, updated)) = &schedule_change {
        // Recorded first: a crash before the state commit leaves a "completed" state with fewer
        // epochs than config.json asks for, which `resume_settings` treats as unfinished.
        run.write_config(updated)?;
        run.commit(&state)?;
        observer.schedule_changed(change);
    }

    let autodiff = device.clone().autodiff();
    let mut model = train_config
        .model
        .init(&autodiff, derive_seed(train_config.seed, &[streams::INIT]))?;
    let mut optimizer = Adam::new(train_config.adam);
    if let (Some(weights), Some(optimizer_file)) = (&state.last_weights, &state.last_optimizer) {
        model = load_weights(model, &run.root().join(weights))?;
        optimizer = load_optimizer(train_config.adam, &model, &run.root().join(optimizer_file))?;
    }

    let first_epoch = state.completed_epochs + 1;
    observer.started(
        first_epoch,
        train_config.epochs,
        split.train.len(),
        split.validation.len(),
    );
    if state.finished.is_none()
        && let Some(summary) = PatientSplitSummary::of(&split, &patients)
    {
        observer.patient_split(&summary);
    }
    let mut data_wait = Duration::ZERO;
    let mut epochs_run = 0;
    // A run that already ended (its last commit says so) has nothing left to do.
    if state.finished.is_none() {
        for epoch in first_epoch..=train_config.epochs {
            let started = Instant::now();
            let (trained, train_loss, train_acc, waited) = train_epoch(
                model,
                &autodiff,
                &mut optimizer,
                &prepared.items,
                &split.train,
                &train_config,
                epoch,
                observer,
            )?;
            model = trained;
            data_wait += waited;
            epochs_run += 1;
            let (val_loss, val_acc) = evaluate_items(
                &model,
                &prepared.items,
                &split.validation,
                &train_config,
                &device,
            )?;
            let record = EpochRecord {
                epoch,
                loss: train_loss,
                acc: train_acc,
                val_loss,
                val_acc,
                lr: train_config
                    .schedule
                    .learning_rate(optimizer.iterations().saturating_sub(1)),
                seconds: started.elapsed().as_secs_f64(),
            };
            let decision = state.callbacks.on_epoch_end(epoch, val_loss, val_acc);
            let (weights_name, optimizer_name) = RunDir::epoch_checkpoint_names(epoch);
            save_weights(&model, &run.root().join(&weights_name))?;
            save_optimizer(&optimizer, &run.root().join(&optimizer_name))?;
            state.completed_epochs = epoch;
            state.steps = optimizer.iterations();
            state.history.push(record);
            state.last_weights = Some(weights_name.clone());
            state.last_optimizer = Some(optimizer_name);
            if decision.save_best {
                state.best_weights = Some(weights_name);
            }
            let last_epoch = decision.stop || epoch == train_config.epochs;
            if last_epoch {
                state.finished = Some(
                    if decision.stop {
                        "early stopping"
                    } else {
                        "completed"
                    }
                    .to_owned(),
                );
            }
            run.commit(&state)?;
            observer.epoch(&record, train_config.epochs, waited);
            if decision.stop {
                break;
            }
        }
    }
    drop(lock);
    Ok(TrainOutcome {
        run: run.root().to_owned(),
        history: state.history.clone(),
        best_epoch: state.callbacks.best_epoch,
        finished: state.finished.clone().unwrap_or_default(),
        skipped: prepared.failures.iter().map(|f| f.error.clone()).collect(),
        data_wait,
        epochs_run,
    })
}

/// Locks the run folder before anything in it is read for resuming or removed by `--force`, so
/// that a second writer fails at once instead of corrupting the first one's run. A folder that
/// does not exist yet is locked when it is created, once the data is known to be usable.
fn claim_folder(request: &TrainRequest, run: &RunDir) -> Result<Option<FolderLock>, TrainError> {
    if request.resume {
        if !run.state().exists() && !run.config().exists() {
            return Err(RunError::NothingToResume(request.out.clone()).into());
        }
        return Ok(Some(FolderLock::acquire(&request.out)?));
    }
    if !request.out.exists() {
        return Ok(None);
    }
    if !request.force {
        return Err(RunError::Exists(request.out.clone()).into());
    }
    check_replaceable(&request.out)?;
    Ok(Some(FolderLock::acquire(&request.out)?))
}

/// Checks the settings given for a resumed run against `recorded`, and applies a changed
/// `--epochs` to `recorded` and `state` (the caller writes both). Returns that change.
///
/// More epochs continue the same run: the learning rate, shuffling, augmentation and dropout
/// depend only on the step and epoch, never on the total, so the result equals a run started
/// with the larger number. A run that early stopping ended is not extended: its patience is
/// used up, so it would stop again after one epoch.
fn resume_settings(
    request: &TrainRequest,
    run: &RunDir,
    recorded: &mut RunConfig,
    state: &mut RunState,
) -> Result<Option<ScheduleChange>, TrainError> {
    let others: Vec<String> = request
        .given
        .iter()
        .filter(|key| *key != "epochs")
        .cloned()
        .collect();
    if let Some(change) = changed_setting(&recorded.train, &request.config, &others) {
        return Err(TrainError::SettingChanged {
            run: run.root().to_owned(),
            change,
        });
    }
    // A schedule extended by a call that died before its first commit.
    if state.finished.as_deref() == Some("completed")
        && state.completed_epochs < recorded.train.epochs
    {
        state.finished = None;
    }
    let epochs = request.config.epochs;
    if !request.given.iter().any(|key| key == "epochs") || epochs == recorded.train.epochs {
        return Ok(None);
    }
    TrainConfig {
        epochs,
        ..recorded.train.clone()
    }
    .validate()?;
    let completed = state.completed_epochs;
    if epochs < completed {
        return Err(TrainError::EpochsBelowCompleted {
            run: run.root().to_owned(),
            epochs,
            completed,
        });
    }
    if state.finished.as_deref() == Some("early stopping") {
        return Err(TrainError::EarlyStopped {
            run: run.root().to_owned(),
            epoch: completed,
        });
    }
    let change = ScheduleChange {
        after_epoch: completed,
        from: recorded.train.epochs,
        to: epochs,
    };
    recorded.train.epochs = epochs;
    recorded.schedule_changes.push(change.clone());
    state.finished = (epochs == completed).then(|| "completed".to_owned());
    Ok(Some(change))
}

/// `path` made absolute, and canonical (symbolic links and `..` resolved) when it exists.
fn absolute_path(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Lists the dataset and brings the cache up to date for the run's preprocessing. Returns the
/// prepared items and their patients.
fn prepare_data(
    request: &TrainRequest,
    config: &TrainConfig,
    observer: &dyn TrainObserver,
) -> Result<(PreparedDataset, Vec<Option<String>>), TrainError> {
    let dataset = request.source().load(&config.classes)?;
    let options = PrepareOptions {
        config: config.preprocess.clone(),
        skip_bad: request.skip_bad,
        verify_entries: false,
    };
    let total = dataset.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let prepared = cache::prepare_default(&dataset, &request.cache, &options, |event| {
        match event {
            PrepareEvent::Started { .. } => return,
            PrepareEvent::Failed { error, .. } => observer.skipped(error),
            PrepareEvent::Hit { .. } | PrepareEvent::Processed { .. } => {}
        }
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        observer.prepare_progress(n, total);
    })
    .map_err(|error| match error.failed_scan() {
        Some(_) if !request.skip_bad => TrainError::BadScan(error),
        _ => error.into(),
    })?;
    let patients = prepared_patients(&dataset, &prepared.items);
    Ok((prepared, patients))
}

fn data_files(
    items: &[PreparedItem],
    patients: &[Option<String>],
    train: &[usize],
) -> Vec<DataFile> {
    items
        .iter()
        .zip(patients)
        .enumerate()
        .map(|(i, (item, patient))| DataFile {
            patient: patient.clone(),
            path: item.source.clone(),
            label: item.label,
            sha256: item.sha256.clone(),
            split: if train.contains(&i) {
                SplitPart::Train
            } else {
                SplitPart::Validation
            },
        })
        .collect()
}

/// One pass over the shuffled training set. Returns the model, the sample-weighted mean loss and
/// the accuracy (as Keras reports them), and the time spent waiting for data.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    mut model: Model,
    device: &burn::tensor::Device,
    optimizer: &mut Adam,
    items: &[PreparedItem],
    train: &[usize],
    config: &TrainConfig,
    epoch: usize,
    observer: &dyn TrainObserver,
) -> Result<(Model, f64, f64, Duration), TrainError> {
    let order = loader::epoch_order(train, config.seed, epoch as u64);
    let augmentation = Some(Augmentation {
        list: &config.augment,
        seed: config.seed,
        epoch: epoch as u64,
    });
    let total_batches = order.len().div_ceil(config.batch_size);
    let size = config.model.input;
    let mut loss_sum = 0.0;
    let mut correct = 0usize;
    let mut seen = 0usize;
    let mut batches = 0usize;
    let mut slot = Some(model);
    let waited = loader::for_each_batch(
        items,
        &order,
        config.batch_size,
        size,
        augmentation,
        PREFETCH,
        |batch| -> Result<(), TrainError> {
            let n = batch.labels.len();
            let input = batch_tensor(batch.input, n, size, device)?;
            let lr = config.schedule.learning_rate(optimizer.iterations());
            let dropout_seed = derive_seed(
                config.seed,
                &[streams::DROPOUT, epoch as u64, batches as u64],
            );
            let current = slot.take().expect("the model is put back after every step");
            let outcome = train_step(current, optimizer, input, &batch.labels, lr, dropout_seed)?;
            slot = Some(outcome.model);
            loss_sum += f64::from(outcome.loss) * n as f64;
            correct += outcome.correct;
            seen += n;
            batches += 1;
            observer.batch(
                epoch,
                batches,
                total_batches,
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
            );
            Ok(())
        },
    )?;
    model = slot.expect("the model is put back after every step");
    let seen = seen.max(1) as f64;
    Ok((model, loss_sum / seen, correct as f64 / seen, waited))
}

/// Loss and accuracy of `model` (inference mode) on `indices`, without augmentation.
fn evaluate_items(
    model: &Model,
    items: &[PreparedItem],
    indices: &[usize],
    config: &TrainConfig,
    device: &burn::tensor::Device,
) -> Result<(f64, f64), TrainError> {
    let (probabilities, labels) = predict_items(model, items, indices, config, device)?;
    let metrics = binary_metrics(&probabilities, &labels);
    Ok((metrics.loss, metrics.accuracy))
}

/// Probabilities of the positive class for `indices` (inference mode), with their labels.
pub fn predict_items(
    model: &Model,
    items: &[PreparedItem],
    indices: &[usize],
    config: &TrainConfig,
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, Vec<u8>), TrainError> {
    let size = config.model.input;
    let mut probabilities = Vec::with_capacity(indices.len());
    let mut labels = Vec::with_capacity(indices.len());
    loader::for_each_batch(
        items,
        indices,
        config.batch_size,
        size,
        None,
        PREFETCH,
        |batch| -> Result<(), TrainError> {
            let n = batch.labels.len();
            let input = batch_tensor(batch.input, n, size, device)?;
            probabilities.extend(predict_proba(model, input)?);
            labels.extend(batch.labels.iter().map(|&l| l as u8));
            Ok(())
        },
    )?;
    Ok((probabilities, labels))
}

/// The default cache folder for a data folder: `DATA/.ct3d-cache` (hidden, so it is never
/// mistaken for a class folder, and shared by every run on that data).
pub fn default_cache(data: &Path) -> PathBuf {
    data.join(".ct3d-cache")
}
