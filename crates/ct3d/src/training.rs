//! The training loop (`ct3d train`): the Keras example's `model.fit`, reproducibly and
//! resumably.
//!
//! From class folders (or a CSV manifest) of raw scans: `prepare` cache → per-class 70/30 split,
//! patient-grouped when the data has patients ([`crate::data::split`]; or fold `i` of a stratified
//! k-fold, [`crate::data::folds`]) → each epoch a seeded shuffle, on-the-fly rotation
//! augmentation on a worker thread, Adam steps, validation ([`crate::inference`]), the two
//! callbacks (best-`val_loss` checkpoint, early stopping on `val_acc`), and an atomic commit of
//! the run folder (see [`crate::run`]). With the same seed two CPU runs produce the same history,
//! and a run killed at any moment resumes to the same result as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ct3d_model::input::batch_tensor;
use ct3d_model::pytorch::{InitReport, load_state_dict};
use ct3d_model::train_step::train_step_weighted;
use ct3d_model::weights::{load_optimizer, load_weights, save_optimizer, save_weights};
use ct3d_model::{Adam, Architecture, BatchNormStats, Network, freeze_encoder};
use ct3d_volume::cache::PreparedItem;
use ct3d_volume::rng::derive_seed;

use crate::config::{
    DataFile, RunConfig, Sampler, ScheduleChange, TrainConfig, TrainParams, changed_setting,
};
use crate::data::folds::run_split;
use crate::data::loader::{self, Augmentation, streams};
use crate::data::prepare::prepare_data;
use crate::data::source::{data_files, recorded_split};
use crate::data::split::{PatientSplitSummary, SplitError};
use crate::error::{RunError, TrainError};
use crate::history::EpochRecord;
use crate::inference::{PREFETCH, evaluate_items};
use crate::observe::TrainObserver;
use crate::request::TrainRequest;
use crate::run::{FolderLock, RunDir, RunState, check_replaceable};

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

    let (prepared, patients) = prepare_data(
        &request.source(),
        &request.cache,
        request.skip_bad,
        &train_config,
        observer,
    )?;
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
            TrainError::Split(reason) => TrainError::SplitData {
                path: match (&reason, &request.manifest) {
                    (_, Some(manifest)) => manifest.clone(),
                    (SplitError::TooFewScans { class, .. }, None) => request.data.join(class),
                    (SplitError::TooFewPatients { .. }, None) => request.data.clone(),
                },
                reason,
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
    let mut model = train_config.architecture.init(
        &train_config.model_config(),
        &autodiff,
        derive_seed(train_config.seed, &[streams::INIT]),
    )?;
    let mut optimizer = Adam::new(train_config.adam);
    if let (Some(weights), Some(optimizer_file)) = (&state.last_weights, &state.last_optimizer) {
        model = load_weights(model, &run.root().join(weights))?;
        optimizer = load_optimizer(train_config.adam, &model, &run.root().join(optimizer_file))?;
    } else if let Some(init) = &train_config.init {
        // A resumed run continues from its own checkpoint; `init` only seeds a new one.
        let (loaded, report) = initialise(model, init, train_config.architecture)?;
        model = loaded;
        observer.initialised(init, &report);
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
            // Re-applied every epoch, so a run resumed inside the frozen epochs freezes too.
            model = freeze_encoder(model, epoch <= train_config.freeze_encoder_epochs);
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
            if train_config.recompute_batch_norm {
                recompute_batch_norm(
                    &model,
                    &autodiff,
                    &prepared.items,
                    &split.train,
                    &train_config,
                )?;
            }
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
            save_optimizer(&optimizer, &model, &run.root().join(&optimizer_name))?;
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
    let extended = TrainParams {
        epochs,
        ..recorded.train.params()
    }
    .check()?;
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
    recorded.train = extended;
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

/// One pass over the shuffled training set. Returns the model, the sample-weighted mean loss and
/// the accuracy (as Keras reports them), and the time spent waiting for data.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    mut model: Network,
    device: &burn::tensor::Device,
    optimizer: &mut Adam,
    items: &[PreparedItem],
    train: &[usize],
    config: &TrainConfig,
    epoch: usize,
    observer: &dyn TrainObserver,
) -> Result<(Network, f64, f64, Duration), TrainError> {
    let order = match config.sampler {
        Sampler::Shuffle => loader::epoch_order(train, config.seed, epoch as u64),
        Sampler::Balanced => {
            let labels: Vec<u8> = items.iter().map(|item| item.label).collect();
            loader::balanced_epoch_order(train, &labels, config.seed, epoch as u64)
        }
    };
    // The class weights come from the training split's counts, whatever the sampler draws.
    let class_weights = config.class_weight.weights(
        train
            .iter()
            .filter_map(|&i| items.get(i).map(|item| item.label)),
    );
    let augmentation = Some(Augmentation {
        list: &config.augment,
        seed: config.seed,
        epoch: epoch as u64,
    });
    let total_batches = order.len().div_ceil(config.batch_size);
    let size = config.preprocess.size;
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
            let weights: Option<Vec<f32>> = class_weights.map(|w| {
                batch
                    .labels
                    .iter()
                    .map(|&label| w[usize::from(label > 0.5)])
                    .collect()
            });
            let outcome = train_step_weighted(
                current,
                optimizer,
                input,
                &batch.labels,
                weights.as_deref(),
                lr,
                dropout_seed,
            )?;
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

/// [`TrainParams::recompute_batch_norm`]: the training split, un-augmented and in its recorded
/// order (so the result does not depend on the epoch), through the network in training mode; the
/// moving statistics become the mean of the batches' statistics.
fn recompute_batch_norm(
    model: &Network,
    device: &burn::tensor::Device,
    items: &[PreparedItem],
    train: &[usize],
    config: &TrainConfig,
) -> Result<(), TrainError> {
    let size = config.preprocess.size;
    let mut stats = BatchNormStats::default();
    loader::for_each_batch(
        items,
        train,
        config.batch_size,
        size,
        None,
        PREFETCH,
        |batch| -> Result<(), TrainError> {
            let n = batch.labels.len();
            stats.observe(model, batch_tensor(batch.input, n, size, device)?)?;
            Ok(())
        },
    )?;
    stats.apply(model);
    Ok(())
}

/// `model` with the weights of `file`: a ct3d weights file (`.safetensors`, every tensor loaded)
/// or otherwise a PyTorch state dict ([`load_state_dict`]).
fn initialise(
    model: Network,
    file: &Path,
    architecture: Architecture,
) -> Result<(Network, InitReport), TrainError> {
    if file.extension().is_some_and(|ext| ext == "safetensors") {
        let model = load_weights(model, file)?;
        // Everything the network has came from the file (load_weights refuses anything less).
        let mut names = Vec::new();
        ct3d_model::weights::visit_names(&model, |name| names.push(name.to_owned()));
        let report = InitReport {
            loaded: names,
            ..InitReport::default()
        };
        return Ok((model, report));
    }
    Ok(load_state_dict(model, file, architecture.name())?)
}
