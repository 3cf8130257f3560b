//! The library's errors in one place: [`TrainError`], which every operation on a run returns
//! (training, evaluation, prediction, the report), and the two it gathers that belong to no lower
//! module: a run folder problem ([`RunError`]) and recorded scans that went missing or changed
//! ([`RecordedDataError`]). Each message is one line naming the file or the setting at fault,
//! and no message repeats the text of its cause.
//!
//! Messages speak of the library's terms (resuming a run, starting it over, leaving unreadable
//! scans out), never of a front end's options: the variants carry what a front end needs to
//! word the fix as its own options (the CLI maps them to its flag names).

use std::path::PathBuf;

/// Why training, evaluation or prediction failed: the library's error. One line naming the file
/// or option at fault.
///
/// A variant either is its cause (`transparent`: the cause's text and its own causes) or states
/// its own fact, quoting the cause's text where that text is the fact, and then keeps no source:
/// either way a printed chain of causes never says a thing twice.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid hyper-parameters.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data folder is not a usable dataset.
    #[error(transparent)]
    Dataset(#[from] ct3d_volume::dataset::DatasetError),
    /// The CSV manifest is not a usable dataset.
    #[error(transparent)]
    Manifest(#[from] ct3d_volume::manifest::ManifestError),
    /// The data cannot be split into the requested folds.
    #[error(transparent)]
    Folds(#[from] crate::config::FoldError),
    /// Preprocessing or the cache failed.
    #[error(transparent)]
    Cache(#[from] ct3d_volume::cache::CacheError),
    /// A scan could not be read or preprocessed, and unreadable scans were not to be left out:
    /// the fix is to leave them out, which a front end words as its own option. Displays as the
    /// cache's error.
    #[error(transparent)]
    BadScan(ct3d_volume::cache::CacheError),
    /// Too few scans for the split.
    #[error(transparent)]
    Split(#[from] crate::data::split::SplitError),
    /// One class cannot be split, naming the class folder (or, for patients, the data folder
    /// or the CSV manifest). The message quotes the split's, so it is not also a source.
    #[error("{}: {reason}", path.display())]
    SplitData {
        /// The class folder, the data folder or the CSV manifest.
        path: PathBuf,
        /// What is wrong with the split.
        reason: crate::data::split::SplitError,
    },
    /// The scans a run recorded are missing or changed.
    #[error(transparent)]
    RecordedData(#[from] RecordedDataError),
    /// The run folder.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Calibrating, or the run's calibration record.
    #[error(transparent)]
    Calibration(#[from] crate::calibration::CalibrationError),
    /// The device could not be used.
    #[error(transparent)]
    Device(#[from] ct3d_model::DeviceSelectionError),
    /// The model rejected a configuration or batch.
    #[error(transparent)]
    Model(#[from] ct3d_model::ModelError),
    /// A weights or optimizer file.
    #[error(transparent)]
    Weights(#[from] ct3d_model::WeightsError),
    /// The PyTorch state dict a run starts from (`init`).
    #[error(transparent)]
    Pytorch(#[from] ct3d_model::pytorch::PytorchError),
    /// A batch could not be assembled.
    #[error(transparent)]
    Loader(#[from] crate::data::loader::LoaderError),
    /// A scan could not be read (the message names it).
    #[error(transparent)]
    ReadScan(#[from] ct3d_volume::format::ScanError),
    /// A scan could not be read or preprocessed (the message names it).
    #[error(transparent)]
    Preprocess(#[from] ct3d_volume::preprocess::PreprocessError),
    /// A scan to predict looks already preprocessed: preprocessing it again would give a
    /// confident, meaningless answer. The fix is to predict it as model-ready input.
    #[error(
        "{}: looks already preprocessed ({reason}); predict wants raw CT scans in Hounsfield \
         units; predict it as model-ready input instead",
        path.display()
    )]
    AlreadyPreprocessed {
        /// The scan.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A volume given as model-ready input is not: its values are not those of `ct3d
    /// preprocess` output.
    #[error(
        "{}: not model-ready ({problem}); model-ready input is `ct3d preprocess` output, \
         predict a raw scan in Hounsfield units as a scan",
        path.display()
    )]
    NotModelReady {
        /// The volume's file.
        path: PathBuf,
        /// What is wrong with its values.
        problem: String,
    },
    /// A model-ready volume's shape is not the run's input size.
    #[error(
        "{}: model-ready input is {}×{}×{} voxels but the run's model takes {}×{}×{} \
         (preprocess it to that size, or predict the raw scan as a scan)",
        path.display(), shape[0], shape[1], shape[2], input[0], input[1], input[2]
    )]
    ModelReadyShape {
        /// The volume's file.
        path: PathBuf,
        /// Its `[x, y, z]` shape in voxels.
        shape: [usize; 3],
        /// The run's `[x, y, z]` input size in voxels.
        input: [usize; 3],
    },
    /// A model-ready volume records other preprocessing parameters than the run's.
    #[error(
        "{}: preprocessed with other parameters than the run's: {difference} (preprocess the \
         raw scan again with the run's, or predict the raw scan as a scan)",
        path.display()
    )]
    OtherParameters {
        /// The volume's file.
        path: PathBuf,
        /// The parameters that differ.
        difference: String,
    },
    /// The data changed since the run started, so resuming would not reproduce it.
    #[error("{0}")]
    DataChanged(String),
    /// A setting given for a resumed run differs from the recorded one.
    #[error(
        "{}: {} differs from the run's recorded setting (recorded {}, given {}); a resumed run \
         keeps its settings: keep the recorded one, or start the run over",
        run.display(),
        change.key,
        change.recorded,
        change.given
    )]
    SettingChanged {
        /// The run folder.
        run: PathBuf,
        /// The setting and both values.
        change: crate::config::SettingChange,
    },
    /// A resumed run asked for fewer epochs than it already trained.
    #[error(
        "{}: {epochs} epochs is fewer than the {completed} epochs already trained; ask for \
         {completed} or more",
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
    /// More epochs asked of a resumed run that early stopping ended.
    #[error(
        "{}: the run ended by early stopping at epoch {epoch}, so more epochs would stop again \
         at once; start the run over instead (perhaps with a larger patience)",
        run.display()
    )]
    EarlyStopped {
        /// The run folder.
        run: PathBuf,
        /// Its last epoch.
        epoch: usize,
    },
}

/// A run folder problem (see [`crate::run`]). Displays as one line naming the path.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The folder exists and neither resuming nor starting over was asked for.
    #[error("{0}: the run folder already exists; resume the run or start it over")]
    Exists(PathBuf),
    /// Resuming a folder that holds no run.
    #[error("{0}: nothing to resume (no state.json); start a new run instead")]
    NothingToResume(PathBuf),
    /// Starting over in a folder that holds other files than a ct3d run.
    #[error(
        "{0}: not a ct3d run folder (no config.json or state.json) and not empty; starting over \
         only replaces ct3d runs: choose a new or empty run folder"
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
    /// A file of the run could not be read or written. The message names the file; the I/O
    /// error is its source (a printed chain reads `FILE: why`).
    #[error("{}", path.display())]
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

fn fold_hint(folds: &[PathBuf]) -> String {
    if folds.is_empty() {
        return "it holds no fold runs (fold-1, fold-2, …)".to_owned();
    }
    let names: Vec<String> = folds.iter().map(|f| f.display().to_string()).collect();
    format!("pass one of its fold runs, {}", names.join(", "))
}

/// The run's recorded scans cannot be evaluated as recorded. One line naming the scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordedDataError {
    /// A recorded scan no longer exists.
    #[error(
        "{}: recorded in {} as a {part} scan of this run, but it is missing{}",
        path.display(),
        config.display(),
        more(*others, "is missing")
    )]
    Missing {
        /// The (first) missing scan.
        path: PathBuf,
        /// The run's `config.json`.
        config: PathBuf,
        /// `validation` or `training`.
        part: &'static str,
        /// How many other recorded scans are missing too.
        others: usize,
    },
    /// A recorded scan's bytes changed since the run recorded them.
    #[error(
        "{}: changed since the run recorded it in {} (SHA-256 {} then, {} now){}",
        path.display(),
        config.display(),
        short(recorded),
        short(now),
        more(*others, "changed")
    )]
    Changed {
        /// The (first) changed scan.
        path: PathBuf,
        /// The run's `config.json`.
        config: PathBuf,
        /// Its recorded SHA-256.
        recorded: String,
        /// Its SHA-256 now.
        now: String,
        /// How many other recorded scans changed too.
        others: usize,
    },
    /// Every scan to evaluate is missing.
    #[error("{}: none of the {count} recorded scans to evaluate exists any more", config.display())]
    NoneLeft {
        /// The run's `config.json`.
        config: PathBuf,
        /// How many scans were to be evaluated.
        count: usize,
    },
}

fn more(others: usize, what: &str) -> String {
    match others {
        0 => String::new(),
        1 => format!(" (1 more recorded scan {what})"),
        n => format!(" ({n} more recorded scans {})", what.replace("is ", "are ")),
    }
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// `error` and its causes on one line, `outer: inner: …` (a cause whose text the outer message
/// already holds is not repeated): what a record file or a service's JSON error says.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of an error's chain, outermost first.
    fn chain(error: &dyn std::error::Error) -> Vec<String> {
        let mut texts = vec![error.to_string()];
        let mut cause = error.source();
        while let Some(next) = cause {
            texts.push(next.to_string());
            cause = next.source();
        }
        texts
    }

    /// No message of the chain contains the one after it: printing the chain (`{:#}` of anyhow)
    /// says each thing once.
    fn assert_said_once(error: &TrainError) {
        let texts = chain(error);
        for pair in texts.windows(2) {
            assert!(!pair[0].contains(&pair[1]), "repeated cause: {texts:?}");
        }
    }

    #[test]
    fn no_message_repeats_its_cause() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let split = crate::data::split::SplitError::TooFewPatients {
            class: "CT-23".to_owned(),
            count: 3,
            patients: 1,
            percent: 70.0,
        };
        let errors = [
            TrainError::SplitData {
                path: PathBuf::from("data/CT-23"),
                reason: split.clone(),
            },
            TrainError::Split(split),
            TrainError::BadScan(ct3d_volume::cache::CacheError::Io {
                path: PathBuf::from("cache"),
                source: io(),
            }),
            TrainError::Run(RunError::NothingToResume(PathBuf::from("run"))),
            TrainError::Run(RunError::Io {
                path: PathBuf::from("run/state.json"),
                source: io(),
            }),
            TrainError::RecordedData(RecordedDataError::NoneLeft {
                config: PathBuf::from("run/config.json"),
                count: 2,
            }),
            TrainError::AlreadyPreprocessed {
                path: PathBuf::from("scan.nii"),
                reason: "values in [0, 1]".to_owned(),
            },
        ];
        for error in &errors {
            assert_said_once(error);
        }
        // The text itself is what it always was.
        assert_eq!(errors[0].to_string(), format!("data/CT-23: {}", errors[1]));
        // A scan that stopped the run is the cache's error; its cause follows in the chain.
        assert_eq!(errors[2].to_string(), "cache");
        assert_eq!(chain(&errors[2]), ["cache", "denied"]);
    }
}
