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

use ct3d_volume::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

use crate::callbacks::CallbackState;
use crate::config::RunConfig;
use crate::history::EpochRecord;

// The configuration types and the run folder's error lived here before they had modules of
// their own; their old paths keep working.
pub use crate::config::{
    Classes, ConfigError, DataFile, ScheduleChange, SettingChange, SplitPart, TrainConfig,
    changed_setting,
};
pub use crate::error::RunError;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_configs_with_an_augment_flag_read_as_lists() {
        use crate::config::TrainParams;
        use ct3d_volume::augment::Augmentations;
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
                TrainParams {
                    augment: list.clone(),
                    ..TrainParams::default()
                }
                .check()
                .unwrap()
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

    /// A `config.json` as runs wrote it before the architecture was recorded: it loads as the
    /// seed CNN with its own model fields, and is written back with `"architecture"`.
    #[test]
    fn a_config_without_an_architecture_is_the_seed_cnn() {
        use ct3d_model::{Architecture, ModelConfig};
        const OLD: &str = r#"{
  "ct3d_version": "0.1.0",
  "device": "cpu",
  "data_root": "/data",
  "cache": "/data/.ct3d-cache",
  "train": {
    "epochs": 3,
    "batch_size": 2,
    "schedule": { "initial": 0.0001, "decay_steps": 100000, "rate": 0.96, "staircase": true },
    "adam": { "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7 },
    "patience": 15,
    "train_fraction": 0.7,
    "augment": true,
    "seed": 7,
    "preprocess": { "hu_min": -1000.0, "hu_max": 400.0, "size": [46, 46, 46] },
    "model": {
      "input": [46, 46, 46],
      "filters": [4, 4, 8, 8],
      "dense": 16,
      "dropout": 0.25,
      "batch_norm_momentum": 0.9
    },
    "classes": {
      "negative_folder": "CT-0",
      "positive_folder": "CT-23",
      "negative_name": "normal",
      "positive_name": "abnormal"
    }
  },
  "files": [
    { "path": "/data/CT-0/a.nii.gz", "label": 0, "sha256": "00", "split": "train" }
  ]
}"#;
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        fs::write(run.config(), OLD).unwrap();
        let config = run.read_config().unwrap();
        assert_eq!(config.train.architecture, Architecture::SeedCnn);
        // Its `model.input` was always the preprocessing size, which the network now takes.
        assert_eq!(
            config.train.model_config(),
            ModelConfig {
                input: [46, 46, 46],
                filters: vec![4, 4, 8, 8],
                dense: 16,
                dropout: 0.25,
                batch_norm_momentum: 0.9,
                resnet: None,
            }
        );

        run.write_config(&config).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(run.config()).unwrap()).unwrap();
        assert_eq!(written["train"]["architecture"], "seed_cnn");
        assert_eq!(
            written["train"]["model"]["input"],
            serde_json::json!([46, 46, 46])
        );
        assert_eq!(run.read_config().unwrap(), config);
    }

    #[test]
    fn existing_folder_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        RunDir::create(&root, false).unwrap();
        let err = RunDir::create(&root, false).unwrap_err();
        assert!(
            matches!(err, RunError::Exists(ref p) if p == &root),
            "{err}"
        );
        assert!(
            err.to_string().contains("resume the run or start it over"),
            "{err}"
        );
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
