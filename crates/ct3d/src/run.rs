//! The run folder: everything a training run leaves behind, and the commit protocol that lets a
//! run killed at any moment (even `kill -9` mid-write) resume exactly.
//!
//! ```text
//! RUN/
//!   config.json                    every hyper-parameter, the data files with hashes, seed, version
//!   history.csv                    one row per completed epoch
//!   best.safetensors               weights of the epoch with the lowest val_loss (Keras names)
//!   last.safetensors               weights after the last completed epoch
//!   optimizer.safetensors          Adam moments and iteration count after that epoch
//!   state.json                     the commit point: epochs done, callback state, checkpoint names
//!   checkpoints/epoch-NNNN.*       the files state.json points to
//!   .ct3d.lock                     held (flock) by the process writing the run; its PID inside
//! ```
//!
//! Each epoch writes its weights and optimizer state under new names in `checkpoints/`, then
//! atomically replaces `state.json` (the commit), then refreshes the friendly copies
//! (`last`/`best`/`optimizer.safetensors`) and deletes checkpoints nothing points to. A crash
//! before the commit leaves the previous state intact; a crash after it is repaired on resume by
//! redoing the idempotent copy step.
//!
//! Only one process writes a run folder at a time: it holds an exclusive advisory lock on
//! `.ct3d.lock` ([`FolderLock`]) for as long as it writes, which the kernel releases when the
//! process ends in any way (`kill -9` included), so a dead owner never blocks the folder.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ct3d_model::{AdamConfig, ExponentialDecay, ModelConfig};
use ct3d_volume::atomic::write_bytes_atomic;
use ct3d_volume::augment::Augmentations;
use ct3d_volume::preprocess::PreprocessConfig;
use serde::{Deserialize, Serialize};

use crate::callbacks::CallbackState;
use crate::folds::FoldSpec;
use crate::history::EpochRecord;

/// Class folder names and the words the prediction sentences use for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    /// Folder of label-0 scans (seed: `CT-0`).
    pub negative_folder: String,
    /// Folder of label-1 scans (seed: `CT-23`).
    pub positive_folder: String,
    /// What label 0 is called in sentences (seed: "normal").
    pub negative_name: String,
    /// What label 1 is called in sentences (seed: "abnormal").
    pub positive_name: String,
}

impl Default for Classes {
    fn default() -> Self {
        Self {
            negative_folder: "CT-0".into(),
            positive_folder: "CT-23".into(),
            negative_name: "normal".into(),
            positive_name: "abnormal".into(),
        }
    }
}

/// Every hyper-parameter of a training run; [`Default`] is the Keras example's setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Maximum number of epochs (seed: 100).
    pub epochs: usize,
    /// Volumes per training step (seed: 2).
    pub batch_size: usize,
    /// Learning-rate schedule (seed: 1e-4 × 0.96 every 100 000 steps, staircase).
    pub schedule: ExponentialDecay,
    /// Adam's constants (Keras: β1 0.9, β2 0.999, ε 1e-7).
    pub adam: AdamConfig,
    /// Early-stopping patience on `val_acc`, in epochs (seed: 15).
    pub patience: usize,
    /// Fraction of each class used for training, in sorted file-name order (seed: 0.7).
    pub train_fraction: f64,
    /// The augmentations applied to training volumes, in order (seed: one random rotation,
    /// [`Augmentations::seed`]). Runs recorded before the list existed have `true` (that list)
    /// or `false` (none) here, and read back as such.
    pub augment: Augmentations,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Preprocessing of raw scans; its `size` is the model's input size.
    pub preprocess: PreprocessConfig,
    /// The architecture (its `input` always equals `preprocess.size`).
    pub model: ModelConfig,
    /// Which folders are which class.
    pub classes: Classes,
    /// k-fold cross-validation: validate on fold `fold` of `count` (see [`crate::folds`])
    /// instead of the per-class `train_fraction` split. Absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<FoldSpec>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 2,
            schedule: ExponentialDecay::default(),
            adam: AdamConfig::default(),
            patience: 15,
            train_fraction: 0.7,
            augment: Augmentations::seed(),
            seed: 0,
            preprocess: PreprocessConfig::default(),
            model: ModelConfig::default(),
            classes: Classes::default(),
            folds: None,
        }
    }
}

/// A training configuration that cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A numeric option out of range.
    #[error("{option} {reason}")]
    OutOfRange {
        /// The option's name as the CLI spells it.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The model or preprocessing settings are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl TrainConfig {
    /// Checks everything once, so no function deeper down re-checks or panics.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |option, ok: bool, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    option,
                    reason: reason.to_owned(),
                })
            }
        };
        range("--epochs", self.epochs >= 1, "must be at least 1")?;
        if let Some(spec) = &self.folds {
            spec.validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        range("--batch-size", self.batch_size >= 1, "must be at least 1")?;
        range(
            "--split",
            self.train_fraction > 0.0 && self.train_fraction < 1.0,
            "must be strictly between 0 and 1",
        )?;
        range(
            "--learning-rate",
            self.schedule.initial.is_finite() && self.schedule.initial > 0.0,
            "must be a positive number",
        )?;
        self.preprocess
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.model.input != self.preprocess.size {
            return Err(ConfigError::Invalid(format!(
                "the model input {:?} differs from the preprocessing size {:?}",
                self.model.input, self.preprocess.size
            )));
        }
        self.model
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// Which part of the data a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitPart {
    /// Used for training.
    Train,
    /// Used for validation.
    Validation,
}

/// One scan of the run's data, as recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Absolute path of the scan.
    pub path: PathBuf,
    /// 0 (negative) or 1 (positive).
    pub label: u8,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Train or validation.
    pub split: SplitPart,
    /// The patient (group) from the manifest's `patient` column, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// `config.json`: what the run was, enough to reproduce it or to preprocess new scans the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// ct3d's version that created the run.
    pub ct3d_version: String,
    /// The device the run trained on (`cpu`, `cuda`, `vulkan`).
    pub device: String,
    /// The data folder (absolute); for a manifest, the manifest's folder.
    pub data_root: PathBuf,
    /// The CSV manifest the data was listed in (absolute), when it was not class folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// The preprocessing cache folder (absolute).
    pub cache: PathBuf,
    /// Hyper-parameters.
    pub train: TrainConfig,
    /// Every scan with its label, hash and split.
    pub files: Vec<DataFile>,
    /// Each time `--resume --epochs` changed `train.epochs`, in order. Absent in older runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_changes: Vec<ScheduleChange>,
}

/// A change of a run's number of epochs when it was resumed (`--resume --epochs N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleChange {
    /// Epochs completed when the schedule changed.
    pub after_epoch: usize,
    /// `train.epochs` before.
    pub from: usize,
    /// `train.epochs` after.
    pub to: usize,
}

/// `state.json`: the commit point of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs completed and committed.
    pub completed_epochs: usize,
    /// Optimizer steps taken so far.
    pub steps: u64,
    /// Checkpoint and early-stopping state after the last completed epoch.
    pub callbacks: CallbackState,
    /// The history so far (also in `history.csv`).
    pub history: Vec<EpochRecord>,
    /// Weights after the last completed epoch, relative to the run folder.
    pub last_weights: Option<String>,
    /// Optimizer state after the last completed epoch, relative to the run folder.
    pub last_optimizer: Option<String>,
    /// Weights of the best epoch so far, relative to the run folder.
    pub best_weights: Option<String>,
    /// Why training ended, once it has (`"completed"`, `"early stopping"`).
    pub finished: Option<String>,
}

impl RunState {
    /// The state of a run that has not finished an epoch.
    pub fn new(patience: usize) -> Self {
        Self {
            completed_epochs: 0,
            steps: 0,
            callbacks: CallbackState::new(patience),
            history: Vec::new(),
            last_weights: None,
            last_optimizer: None,
            best_weights: None,
            finished: None,
        }
    }
}

/// A run folder problem. Displays as one line naming the path.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The folder exists and neither resuming nor overwriting was asked for.
    #[error(
        "{0}: the run folder already exists; pass --resume to continue it or --force to start over"
    )]
    Exists(PathBuf),
    /// `--resume` on a folder that holds no run.
    #[error("{0}: nothing to resume (no state.json); start a new run without --resume")]
    NothingToResume(PathBuf),
    /// `--force` on a folder that holds other files than a ct3d run.
    #[error(
        "{0}: not a ct3d run folder (no config.json or state.json) and not empty; --force only \
         replaces ct3d runs: choose a new or empty --out folder"
    )]
    NotARun(PathBuf),
    /// Another live process holds the folder's lock.
    #[error(
        "{}: in use by another ct3d process (PID {}); wait for it or stop it",
        folder.display(),
        pid.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
    )]
    InUse {
        /// The locked folder.
        folder: PathBuf,
        /// The holder's process id, as it recorded it in the lock file.
        pid: Option<u32>,
    },
    /// A file of the run could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `ct3d cv` folder was given where a run folder was expected.
    #[error(
        "{}: a cross-validation folder (ct3d cv), not a run: {}",
        root.display(),
        fold_hint(folds)
    )]
    CrossValidationFolder {
        /// The folder given.
        root: PathBuf,
        /// Its fold runs (`fold-1`, `fold-2`, …), in fold order.
        folds: Vec<PathBuf>,
    },
    /// A JSON file of the run is damaged.
    #[error("{path}: not a valid ct3d run file ({reason})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

/// Paths inside a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (nothing is touched).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Prepares a folder for a new run; the caller holds its [`FolderLock`]. A folder holding
    /// anything but the lock file is refused unless `force`. With `force`, a folder holding a ct3d
    /// run is emptied except for the lock file (nothing the previous run or its reports wrote
    /// survives), and any other non-empty folder is refused, so that a mistyped `--out` never
    /// deletes a user's files.
    pub fn create(root: &Path, force: bool) -> Result<Self, RunError> {
        let dir = Self::new(root);
        let entries = folder_entries(root)?;
        if !entries.is_empty() {
            if !force {
                return Err(RunError::Exists(root.to_owned()));
            }
            check_replaceable(root)?;
            dir.clear(entries)?;
        }
        fs::create_dir_all(dir.checkpoints()).map_err(|source| RunError::Io {
            path: dir.checkpoints(),
            source,
        })?;
        Ok(dir)
    }

    /// Removes every entry but the lock file. Entries are first moved into a hidden trash folder
    /// (the run files first, so the folder stops being a resumable run at once), which is then
    /// deleted: an interruption leaves a folder that `--force` recognises and finishes.
    fn clear(&self, mut entries: Vec<String>) -> Result<(), RunError> {
        let trash = self.root.join(TRASH);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RunError::Io { path, source }
        };
        if trash.exists() {
            fs::remove_dir_all(&trash).map_err(io(&trash))?;
        }
        fs::create_dir(&trash).map_err(io(&trash))?;
        entries.retain(|name| name != TRASH);
        entries.sort_by_key(|name| match name.as_str() {
            "config.json" => 0,
            "state.json" => 1,
            _ => 2,
        });
        for name in entries {
            let from = self.root.join(&name);
            fs::rename(&from, trash.join(&name)).map_err(io(&from))?;
        }
        fs::remove_dir_all(&trash).map_err(io(&trash))
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// `history.csv`.
    pub fn history(&self) -> PathBuf {
        self.root.join("history.csv")
    }

    /// `best.safetensors`.
    pub fn best_weights(&self) -> PathBuf {
        self.root.join("best.safetensors")
    }

    /// `last.safetensors`.
    pub fn last_weights(&self) -> PathBuf {
        self.root.join("last.safetensors")
    }

    /// `optimizer.safetensors`.
    pub fn optimizer(&self) -> PathBuf {
        self.root.join("optimizer.safetensors")
    }

    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Relative names of epoch `epoch`'s weight and optimizer checkpoints.
    pub fn epoch_checkpoint_names(epoch: usize) -> (String, String) {
        (
            format!("checkpoints/epoch-{epoch:04}.safetensors"),
            format!("checkpoints/epoch-{epoch:04}.optimizer.safetensors"),
        )
    }

    /// Writes `config.json` atomically.
    pub fn write_config(&self, config: &RunConfig) -> Result<(), RunError> {
        write_json(&self.config(), config)
    }

    /// Reads `config.json`. A `ct3d cv` folder (it holds `fold-I` runs and `cv.json`, no
    /// `config.json`) is explained, with its fold runs, instead of "no such file".
    pub fn read_config(&self) -> Result<RunConfig, RunError> {
        if !self.config().exists()
            && let Some(folds) = cross_validation_folds(&self.root)
        {
            return Err(RunError::CrossValidationFolder {
                root: self.root.clone(),
                folds,
            });
        }
        read_json(&self.config())
    }

    /// Reads `state.json`; a folder without one holds no resumable run.
    pub fn read_state(&self) -> Result<RunState, RunError> {
        if !self.state().exists() {
            return Err(RunError::NothingToResume(self.root.clone()));
        }
        read_json(&self.state())
    }

    /// Commits `state` (atomically replacing `state.json`), then refreshes the friendly copies
    /// and `history.csv` and prunes unreferenced checkpoints. Calling it again with the same
    /// state repairs a folder whose previous call was interrupted after the commit.
    pub fn commit(&self, state: &RunState) -> Result<(), RunError> {
        write_json(&self.state(), state)?;
        self.refresh_copies(state)
    }

    /// Brings `last`/`best`/`optimizer.safetensors` and `history.csv` in line with `state` and
    /// deletes checkpoints that `state` does not reference.
    pub fn refresh_copies(&self, state: &RunState) -> Result<(), RunError> {
        let copies = [
            (&state.last_weights, self.last_weights()),
            (&state.best_weights, self.best_weights()),
            (&state.last_optimizer, self.optimizer()),
        ];
        for (source, target) in copies {
            if let Some(name) = source {
                copy_atomic(&self.root.join(name), &target)?;
            }
        }
        let csv = crate::history::to_csv(&state.history);
        write_bytes_atomic(&self.history(), csv.as_bytes()).map_err(|source| RunError::Io {
            path: self.history(),
            source,
        })?;
        let keep: Vec<PathBuf> = [
            &state.last_weights,
            &state.best_weights,
            &state.last_optimizer,
        ]
        .into_iter()
        .flatten()
        .map(|name| self.root.join(name))
        .collect();
        let checkpoints = self.checkpoints();
        let entries = fs::read_dir(&checkpoints).map_err(|source| RunError::Io {
            path: checkpoints.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !keep.contains(&path) {
                remove_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

/// The fold runs of a `ct3d cv` folder in fold order, or `None` when `root` is not one (it has
/// neither `cv.json` nor a `fold-I` folder holding a run).
fn cross_validation_folds(root: &Path) -> Option<Vec<PathBuf>> {
    let mut folds: Vec<(u64, PathBuf)> = fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix("fold-")?.parse().ok()?;
            entry.path().is_dir().then(|| (number, entry.path()))
        })
        .collect();
    folds.sort();
    let is_cv = root.join("cv.json").is_file()
        || folds
            .iter()
            .any(|(_, dir)| dir.join("config.json").is_file());
    is_cv.then(|| folds.into_iter().map(|(_, dir)| dir).collect())
}

fn fold_hint(folds: &[PathBuf]) -> String {
    if folds.is_empty() {
        return "it holds no fold runs (fold-1, fold-2, …)".to_owned();
    }
    let names: Vec<String> = folds.iter().map(|f| f.display().to_string()).collect();
    format!("pass one of its fold runs, {}", names.join(", "))
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), RunError> {
    let bytes = fs::read(from).map_err(|source| RunError::Io {
        path: from.to_owned(),
        source,
    })?;
    write_bytes_atomic(to, &bytes).map_err(|source| RunError::Io {
        path: to.to_owned(),
        source,
    })
}

fn remove_if_exists(path: &Path) -> Result<(), RunError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RunError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Name of the lock file in a run (or cross-validation) folder.
pub const LOCK_FILE: &str = ".ct3d.lock";

/// Where `--force` moves a replaced run's files before deleting them.
const TRASH: &str = ".ct3d-replaced";

/// The names in `root` other than the lock file (none when `root` does not exist).
fn folder_entries(root: &Path) -> Result<Vec<String>, RunError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RunError::Io {
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RunError::Io {
            path: root.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    Ok(names)
}

/// Refuses to let `--force` empty `root` unless it is missing, empty, or a ct3d run folder: one
/// with `config.json` or `state.json`, or only what a run killed before recording itself leaves
/// (`checkpoints/`, the lock file, an interrupted replacement, stale temporary files).
pub fn check_replaceable(root: &Path) -> Result<(), RunError> {
    let entries = folder_entries(root)?;
    let run_files = entries
        .iter()
        .any(|name| name == "config.json" || name == "state.json");
    let leftovers_only = entries.iter().all(|name| {
        name == "checkpoints" || name == TRASH || (name.starts_with('.') && name.contains(".tmp-"))
    });
    if run_files || leftovers_only {
        Ok(())
    } else {
        Err(RunError::NotARun(root.to_owned()))
    }
}

/// An exclusive claim on a folder by this process, released when dropped or when the process
/// ends (the kernel drops advisory locks of a dead process, `kill -9` included).
///
/// The lock is `flock` on `FOLDER/.ct3d.lock` through [`File::try_lock`]; the file holds the
/// owner's PID so that a refused process can name it. The file itself is never removed or
/// replaced: a process that opened it just before it was unlinked would lock a file nobody else
/// sees.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    /// False where the file system offers no locks (then nothing is enforced).
    locked: bool,
}

impl FolderLock {
    /// Locks the existing folder `folder`, or fails at once with [`RunError::InUse`].
    pub fn acquire(folder: &Path) -> Result<Self, RunError> {
        let path = folder.join(LOCK_FILE);
        let io = |source| RunError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let locked = match file.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => {
                return Err(RunError::InUse {
                    folder: folder.to_owned(),
                    pid: holder_pid(&path),
                });
            }
            Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(
                    "{}: this file system has no file locks; nothing stops two ct3d processes \
                     from writing this folder at once",
                    path.display()
                );
                false
            }
            Err(fs::TryLockError::Error(source)) => return Err(io(source)),
        };
        if locked {
            // Written in place, not atomically: the lock belongs to this very file (inode).
            file.set_len(0).map_err(io)?;
            (&file)
                .write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
        }
        Ok(Self { file, locked })
    }

    /// Creates `folder` (and its parents) if needed, then locks it as [`FolderLock::acquire`].
    pub fn acquire_creating(folder: &Path) -> Result<Self, RunError> {
        fs::create_dir_all(folder).map_err(|source| RunError::Io {
            path: folder.to_owned(),
            source,
        })?;
        Self::acquire(folder)
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if self.locked {
            // An idle folder's lock file is empty; the kernel releases the lock when the file
            // closes right after this.
            let _ = self.file.set_len(0);
        }
    }
}

/// The PID the lock's holder wrote. It writes it right after locking, so an empty file is
/// read again for a moment before giving up.
fn holder_pid(path: &Path) -> Option<u32> {
    for _ in 0..20 {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// A setting given for a resumed run that differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// The configuration key, e.g. `schedule.initial` (see [`TrainConfig`]'s JSON).
    pub key: String,
    /// The recorded value, as JSON (arrays without brackets: `48,48,48`).
    pub recorded: String,
    /// The given value, in the same form.
    pub given: String,
}

/// The first of `keys` (dotted configuration keys such as `schedule.initial` or `model.filters`)
/// whose value differs between `recorded` and `given`. A key that neither has is equal.
pub fn changed_setting(
    recorded: &TrainConfig,
    given: &TrainConfig,
    keys: &[String],
) -> Option<SettingChange> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(recorded), serde_json::to_value(given)) else {
        return None;
    };
    keys.iter().find_map(|key| {
        let pointer = format!("/{}", key.replace('.', "/"));
        let (x, y) = (a.pointer(&pointer), b.pointer(&pointer));
        (x != y).then(|| SettingChange {
            key: key.clone(),
            recorded: setting_text(x),
            given: setting_text(y),
        })
    })
}

/// A configuration value as users type it: `0.0001`, `48,48,48`, `CT-0`, `none`.
fn setting_text(value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(text)) => text.clone(),
        // An empty augmentation list, `--no-augment`.
        Some(Value::Array(items)) if items.is_empty() => "none".to_owned(),
        // An entry of a tagged list (the augmentations) by its kind: `random_rotation`.
        Some(Value::Object(map)) if map.get("kind").is_some_and(Value::is_string) => {
            setting_text(map.get("kind"))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| setting_text(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        // `-1000`, as typed, rather than JSON's `-1000.0`.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| RunError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_bytes_atomic(path, text.as_bytes()).map_err(|source| RunError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunError> {
    let text = fs::read_to_string(path).map_err(|source| RunError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| RunError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Serde for the `f64` fields of the run's JSON files that keeps what JSON numbers cannot hold:
/// infinities (the callbacks' starting values) and NaN (the loss of a diverged run) are written
/// as the strings `"inf"`, `"-inf"` and `"NaN"`, every other value as a plain number.
pub(crate) mod json_f64 {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            v if v.is_finite() => serializer.serialize_f64(v),
            v if v.is_nan() => serializer.serialize_str("NaN"),
            v if v > 0.0 => serializer.serialize_str("inf"),
            _ => serializer.serialize_str("-inf"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(F64Visitor)
    }

    struct F64Visitor;

    impl Visitor<'_> for F64Visitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number, \"inf\", \"-inf\" or \"NaN\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_folder_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        RunDir::create(&root, false).unwrap();
        let err = RunDir::create(&root, false).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        // --force removes everything the previous run and its reports wrote, but the lock.
        fs::write(root.join("notes.txt"), "mine").unwrap();
        fs::write(root.join("state.json"), "{}").unwrap();
        fs::write(root.join("report.html"), "old report").unwrap();
        fs::create_dir_all(root.join("plots")).unwrap();
        fs::write(root.join("plots/curves.png"), "old").unwrap();
        let lock = FolderLock::acquire(&root).unwrap();
        RunDir::create(&root, true).unwrap();
        let mut left: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [LOCK_FILE, "checkpoints"]);
        drop(lock);
    }

    #[test]
    fn force_refuses_a_folder_that_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mine");
        fs::create_dir_all(root.join("CT-0")).unwrap();
        fs::write(root.join("notes.txt"), "mine").unwrap();
        let err = RunDir::create(&root, true).unwrap_err();
        assert!(matches!(err, RunError::NotARun(_)), "{err}");
        assert!(err.to_string().contains("not a ct3d run folder"), "{err}");
        assert!(root.join("notes.txt").exists() && root.join("CT-0").is_dir());
        // What a run killed before recording itself leaves is a run folder.
        let bare = dir.path().join("bare");
        fs::create_dir_all(bare.join("checkpoints")).unwrap();
        fs::write(bare.join(".config.json.tmp-12-0"), "{").unwrap();
        fs::write(bare.join(LOCK_FILE), "").unwrap();
        RunDir::create(&bare, true).unwrap();
        assert!(!bare.join(".config.json.tmp-12-0").exists());
    }

    #[test]
    fn a_locked_folder_names_its_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FolderLock::acquire(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(
            fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            format!("{pid}\n")
        );
        let err = FolderLock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(err, RunError::InUse { pid: Some(p), .. } if p == pid),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("in use by another ct3d process (PID {pid})")),
            "{text}"
        );
        drop(lock);
        let again = FolderLock::acquire(dir.path()).unwrap();
        drop(again);
        // Released: the file stays (never unlinked) and names nobody.
        assert_eq!(fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), "");
    }

    #[test]
    fn old_configs_with_an_augment_flag_read_as_lists() {
        // Runs recorded before the augmentation list wrote `"augment": true` or `false`.
        let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
        for (flag, list) in [
            (true, Augmentations::seed()),
            (false, Augmentations::none()),
        ] {
            json["augment"] = serde_json::Value::Bool(flag);
            let config: TrainConfig = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(config.augment, list);
            assert_eq!(
                config,
                TrainConfig {
                    augment: list.clone(),
                    ..TrainConfig::default()
                }
            );
            // Written back, the list is recorded.
            let written = serde_json::to_value(&config).unwrap();
            assert_eq!(written["augment"], serde_json::to_value(&list).unwrap());
        }
        // A whole old run folder's config.json loads through the run folder.
        let dir = tempfile::tempdir().unwrap();
        let mut run_config = serde_json::json!({
            "ct3d_version": "0.1.0",
            "device": "cpu",
            "data_root": "/data",
            "cache": "/cache",
            "train": serde_json::to_value(TrainConfig::default()).unwrap(),
            "files": [],
        });
        run_config["train"]["augment"] = serde_json::Value::Bool(false);
        fs::write(
            dir.path().join("config.json"),
            serde_json::to_string_pretty(&run_config).unwrap(),
        )
        .unwrap();
        let loaded = RunDir::new(dir.path()).read_config().unwrap();
        assert_eq!(loaded.train.augment, Augmentations::none());
    }

    #[test]
    fn changed_augmentations_are_named_by_kind() {
        let recorded = TrainConfig::default();
        let given = TrainConfig {
            augment: Augmentations::none(),
            ..TrainConfig::default()
        };
        let change = changed_setting(&recorded, &given, &["augment".to_owned()]).unwrap();
        assert_eq!(change.recorded, "random_rotation");
        assert_eq!(change.given, "none");
    }

    #[test]
    fn changed_settings_are_found_by_key() {
        let recorded = TrainConfig::default();
        let given = TrainConfig {
            epochs: 3,
            schedule: ExponentialDecay {
                initial: 0.5,
                ..ExponentialDecay::default()
            },
            ..TrainConfig::default()
        };
        let keys = |list: &[&str]| list.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            changed_setting(&recorded, &given, &keys(&["seed", "schedule.initial"])),
            Some(SettingChange {
                key: "schedule.initial".into(),
                recorded: "0.0001".into(),
                given: "0.5".into(),
            })
        );
        assert_eq!(
            changed_setting(&recorded, &given, &keys(&["seed", "model.filters"])),
            None
        );
        let sized = TrainConfig {
            preprocess: PreprocessConfig {
                size: [48, 48, 48],
                ..PreprocessConfig::default()
            },
            ..TrainConfig::default()
        };
        let change = changed_setting(&recorded, &sized, &keys(&["preprocess.size"])).unwrap();
        assert_eq!(
            (change.recorded.as_str(), change.given.as_str()),
            ("128,128,64", "48,48,48")
        );
    }

    #[test]
    fn commit_copies_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), false).unwrap();
        let mut state = RunState::new(15);
        for epoch in 1..=3 {
            let (w, o) = RunDir::epoch_checkpoint_names(epoch);
            fs::write(run.root().join(&w), format!("w{epoch}")).unwrap();
            fs::write(run.root().join(&o), format!("o{epoch}")).unwrap();
            state.completed_epochs = epoch;
            state.last_weights = Some(w.clone());
            state.last_optimizer = Some(o);
            if epoch == 2 {
                state.best_weights = Some(w);
            }
            run.commit(&state).unwrap();
        }
        assert_eq!(fs::read_to_string(run.last_weights()).unwrap(), "w3");
        assert_eq!(fs::read_to_string(run.best_weights()).unwrap(), "w2");
        assert_eq!(fs::read_to_string(run.optimizer()).unwrap(), "o3");
        let mut left: Vec<_> = fs::read_dir(run.checkpoints())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "epoch-0002.safetensors",
                "epoch-0003.optimizer.safetensors",
                "epoch-0003.safetensors"
            ]
        );
        assert_eq!(run.read_state().unwrap(), state);
    }

    #[test]
    fn resume_without_state_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunDir::new(dir.path()).read_state().unwrap_err();
        assert!(err.to_string().contains("nothing to resume"), "{err}");
    }

    #[test]
    fn a_cross_validation_folder_names_its_fold_runs() {
        let dir = tempfile::tempdir().unwrap();
        let cv = dir.path().join("cv");
        for fold in [2, 1, 10] {
            fs::create_dir_all(cv.join(format!("fold-{fold}"))).unwrap();
        }
        fs::write(cv.join("cv.json"), "{}").unwrap();
        let err = RunDir::new(&cv).read_config().unwrap_err();
        let fold = |i: usize| cv.join(format!("fold-{i}")).display().to_string();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: a cross-validation folder (ct3d cv), not a run: pass one of its fold runs, \
                 {}, {}, {}",
                cv.display(),
                fold(1),
                fold(2),
                fold(10)
            )
        );
        // An interrupted cv (no cv.json yet) is recognised by a fold holding a run; empty
        // fold-like folders alone are not enough.
        fs::remove_file(cv.join("cv.json")).unwrap();
        let err = RunDir::new(&cv).read_config().unwrap_err();
        assert!(matches!(err, RunError::Io { .. }), "{err}");
        fs::write(cv.join("fold-1").join("config.json"), "{}").unwrap();
        assert!(matches!(
            RunDir::new(&cv).read_config(),
            Err(RunError::CrossValidationFolder { .. })
        ));
        // Any other folder without config.json still says so.
        let err = RunDir::new(dir.path()).read_config().unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("state.json"), "{ truncated").unwrap();
        let err = RunDir::new(dir.path()).read_state().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
