//! The library's errors worded with the CLI's flags.
//!
//! The libraries speak of their own terms: a run folder that exists is to be "resumed or started
//! over", an unreadable scan "left out", a resource check "overridden". Which flag does that is
//! the CLI's business, so the flag names live here and nowhere in the libraries: [`message`] prints
//! an error's chain once, on one line (as anyhow's `{:#}` does), and where a link of the chain is
//! a library error whose fix is a flag, it words that link with the flag (or adds the flag's
//! hint at the end of the line). The libraries' errors carry what this needs as data (a variant
//! per kind of fix, its values), so nothing here parses a message.
//!
//! Every place the CLI prints a library error uses this: the final `error:` line ([`message`])
//! and errors reported along the way, such as a skipped scan or one failed prediction among
//! several ([`line`]).

use std::error::Error;

use ct3d::config::{ConfigError, FoldError};
use ct3d::cv::CvError;
use ct3d::demo::DemoError;
use ct3d::error::{RunError, TrainError};
use ct3d::pictures::PictureError;
use ct3d::report::ReportError;
use ct3d::resources::ResourceError;
use ct3d_fetch::FetchError;
use ct3d_volume::augment::recipe::RecipeError;
use ct3d_volume::cache::CacheError;
use ct3d_volume::cache_admin::CacheAdminError;
use ct3d_volume::dataset::{ClassFolderHint, DatasetError};
use ct3d_volume::dicom::DicomError;
use ct3d_volume::format::ScanError;
use ct3d_volume::preprocess::PreprocessError;

/// The one-line message of `err` (what follows `error: `): its chain, each link once, worded with
/// the CLI's flags where the library's error calls for one.
pub fn message(err: &anyhow::Error) -> String {
    worded(&err.chain().collect::<Vec<_>>())
}

/// [`message`] for a library error that is reported but does not end the command (a skipped
/// scan, one unreadable file of several).
pub fn line(err: &(dyn Error + 'static)) -> String {
    let mut links = vec![err];
    let mut cause = err.source();
    while let Some(next) = cause {
        links.push(next);
        cause = next.source();
    }
    worded(&links)
}

/// The links joined with ": ", each in the CLI's words, then the hints that go at the end.
fn worded(links: &[&(dyn Error + 'static)]) -> String {
    let mut text = String::new();
    let mut hints = String::new();
    for (i, &link) in links.iter().enumerate() {
        if i > 0 {
            text.push_str(": ");
        }
        let (fact, hint) = with_flags(link);
        text.push_str(&fact.unwrap_or_else(|| link.to_string()));
        if let Some(hint) = hint {
            hints.push_str(hint);
        }
    }
    text + &hints
}

/// For one link: its text in the CLI's words when it differs from the library's, and a hint to
/// add at the end of the line. A link that displays as an error it wraps (a `transparent`
/// variant) is looked through to that error.
fn with_flags(link: &(dyn Error + 'static)) -> (Option<String>, Option<&'static str>) {
    let mut hint = None;
    let mut error = link;
    loop {
        if let Some(e) = error.downcast_ref::<TrainError>() {
            if let TrainError::BadScan(_) = e {
                hint = Some(" (pass --skip-bad to leave unreadable scans out)");
            }
            if let Some(text) = train_error(e) {
                return (Some(text), hint);
            }
        }
        if let Some(CacheError::Folder { .. }) = error.downcast_ref::<CacheError>() {
            hint = Some("; pass --cache DIR to keep it elsewhere");
        }
        match wrapped(error) {
            Some(inner) => error = inner,
            None => return (leaf(error), hint),
        }
    }
}

/// The error a `transparent` variant displays as, if `error` is one.
fn wrapped<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    if let Some(e) = error.downcast_ref::<TrainError>() {
        return match e {
            TrainError::Config(e) => Some(e),
            TrainError::Dataset(e) => Some(e),
            TrainError::Manifest(e) => Some(e),
            TrainError::Folds(e) => Some(e),
            TrainError::Cache(e) | TrainError::BadScan(e) => Some(e),
            TrainError::Split(e) => Some(e),
            TrainError::RecordedData(e) => Some(e),
            TrainError::Run(e) => Some(e),
            TrainError::Calibration(e) => Some(e),
            TrainError::Device(e) => Some(e),
            TrainError::Model(e) => Some(e),
            TrainError::Weights(e) => Some(e),
            TrainError::Loader(e) => Some(e),
            TrainError::ReadScan(e) => Some(e),
            TrainError::Preprocess(e) => Some(e),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<ConfigError>() {
        return match e {
            ConfigError::Preprocess(e) => Some(e),
            ConfigError::Folds(e) => Some(e),
            ConfigError::Model(e) => Some(e),
            ConfigError::OutOfRange { .. } => None,
        };
    }
    if let Some(e) = error.downcast_ref::<CvError>() {
        return match e {
            CvError::Train(e) => Some(e),
            CvError::Folds(e) => Some(e),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<ReportError>() {
        return match e {
            ReportError::Train(e) => Some(e),
            ReportError::Picture(e) => Some(e),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<DemoError>() {
        return match e {
            DemoError::Train(e) => Some(e),
            DemoError::Picture(e) => Some(e),
            DemoError::Report(e) => Some(e),
            _ => None,
        };
    }
    if let Some(PictureError::Plot(e)) = error.downcast_ref::<PictureError>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<CacheError>() {
        return match e {
            CacheError::Process(failure) => Some(failure.error.as_ref()),
            CacheError::Settings(e) => Some(e),
            CacheError::Entry(e) => Some(e),
            _ => None,
        };
    }
    if let Some(CacheAdminError::Index(e)) = error.downcast_ref::<CacheAdminError>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<PreprocessError>() {
        return match e {
            PreprocessError::Read(e) => Some(e),
            PreprocessError::Scan(e) => Some(e),
            PreprocessError::Config(e) => Some(e),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<ScanError>() {
        return match e {
            ScanError::Nifti(e) => Some(e),
            ScanError::Dicom(e) => Some(e),
            ScanError::Format(e) => Some(e.as_ref()),
            _ => None,
        };
    }
    None
}

/// An error that states its own fact, in the CLI's words when its fix is a flag.
fn leaf(error: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = error.downcast_ref::<RecipeError>() {
        return Some(match e {
            RecipeError::Unknown { .. } | RecipeError::EmptyName(_) => format!("--augment: {e}"),
            _ => format!("--augment-file {e}"),
        });
    }
    if let Some(e) = error.downcast_ref::<RunError>() {
        return run_error(e);
    }
    if let Some(e) = error.downcast_ref::<TrainError>() {
        return train_error(e);
    }
    if let Some(ConfigError::OutOfRange { key, reason }) = error.downcast_ref::<ConfigError>() {
        let flag = crate::train::TRAIN_SETTINGS
            .iter()
            .find(|(_, _, keys)| keys.contains(key))
            .map_or(*key, |(_, flag, _)| flag);
        return Some(format!("{flag} {reason}"));
    }
    if let Some(e) = error.downcast_ref::<FoldError>() {
        return fold_error(e);
    }
    if let Some(CvError::OtherSettings { dir, differences }) = error.downcast_ref::<CvError>() {
        return Some(format!(
            "{}: this fold was trained with other settings ({}); rerun with the same options, or \
             pass --force to retrain every fold",
            dir.display(),
            differences.join(", ")
        ));
    }
    if let Some(ResourceError { size, problems }) = error.downcast_ref::<ResourceError>() {
        let [x, y, z] = size;
        return Some(format!(
            "--size {x},{y},{z}: {}; pass --yes to try anyway",
            problems.join("; ")
        ));
    }
    if let Some(DatasetError::MissingClass {
        path,
        class,
        classes,
        present,
    }) = error.downcast_ref::<DatasetError>()
    {
        return Some(format!(
            "{}: class folder {class}/ not found (folders present: {}){}",
            path.display(),
            present.join(", "),
            class_flags(&ClassFolderHint::new(classes, present))
        ));
    }
    if let Some(DicomError::SeveralSeries {
        path,
        count,
        listing,
    }) = error.downcast_ref::<DicomError>()
    {
        return Some(format!(
            "{path}: {count} DICOM series in the folder, choose one with --series UID: {listing}",
            path = path.display()
        ));
    }
    if let Some(ScanError::SeriesOnFile { path }) = error.downcast_ref::<ScanError>() {
        return Some(format!(
            "{}: --series selects a series in a DICOM folder, but this is a file",
            path.display()
        ));
    }
    if let Some(FetchError::NotEmpty { folder }) = error.downcast_ref::<FetchError>() {
        return Some(format!(
            "{}: already exists and is not empty (--force replaces it)",
            folder.display()
        ));
    }
    None
}

/// The library counts folds; the flags are `--folds K` and `--fold I`.
fn fold_error(error: &FoldError) -> Option<String> {
    Some(match error {
        FoldError::TooFewFolds(count) => {
            format!("--folds {count}: cross-validation needs at least 2 folds")
        }
        FoldError::NoSuchFold { fold, count } => {
            format!("--fold {fold}: folds are numbered 1 to {count}")
        }
        FoldError::ClassTooSmall {
            class,
            scans,
            count,
        } => format!(
            "class {class:?} has {}: too few for {count} folds (every fold needs at least one \
             scan of each class); use --folds {scans} or fewer",
            crate::args::count(*scans, "scan")
        ),
        FoldError::GroupsTooFew { .. } => return None,
    })
}

fn run_error(error: &RunError) -> Option<String> {
    Some(match error {
        RunError::Exists(path) => format!(
            "{}: the run folder already exists; pass --resume to continue it or --force to start \
             over",
            path.display()
        ),
        RunError::NothingToResume(path) => format!(
            "{}: nothing to resume (no state.json); start a new run without --resume",
            path.display()
        ),
        RunError::NotARun(path) => format!(
            "{}: not a ct3d run folder (no config.json or state.json) and not empty; --force only \
             replaces ct3d runs: choose a new or empty --out folder",
            path.display()
        ),
        _ => return None,
    })
}

fn train_error(error: &TrainError) -> Option<String> {
    Some(match error {
        TrainError::SettingChanged { run, change } => format!(
            "{}: {} differs from the run's recorded setting (recorded {}, given {}); a resumed run \
             keeps its settings: leave it out, or start a new run with --force",
            run.display(),
            change.key,
            change.recorded,
            change.given
        ),
        TrainError::EpochsBelowCompleted {
            run,
            epochs,
            completed,
        } => format!(
            "{}: --epochs {epochs} is fewer than the {completed} epochs already trained; pass \
             --epochs {completed} or more",
            run.display()
        ),
        TrainError::EarlyStopped { run, epoch } => format!(
            "{}: the run ended by early stopping at epoch {epoch}, so more epochs would stop again \
             at once; start a new run instead (--force, perhaps with a larger --patience)",
            run.display()
        ),
        TrainError::AlreadyPreprocessed { path, reason } => format!(
            "{}: looks already preprocessed ({reason}); predict wants raw CT scans in Hounsfield \
             units; pass --preprocessed to use the file as model-ready input",
            path.display()
        ),
        TrainError::NotModelReady { path, problem } => format!(
            "{}: not model-ready ({problem}); --preprocessed expects `ct3d preprocess` output, \
             drop it for a raw scan in Hounsfield units",
            path.display()
        ),
        TrainError::ModelReadyShape { path, shape, input } => {
            let [x, y, z] = shape;
            let [w, h, d] = input;
            format!(
                "{}: --preprocessed input is {x}×{y}×{z} voxels but the run's model takes \
                 {w}×{h}×{d} (make it with `ct3d preprocess --size {w},{h},{d}`, or give the raw \
                 scan without --preprocessed)",
                path.display()
            )
        }
        TrainError::OtherParameters { path, difference } => format!(
            "{}: preprocessed with other parameters than the run's: {difference} (preprocess the \
             raw scan again with the run's, or predict the raw scan without --preprocessed)",
            path.display()
        ),
        _ => return None,
    })
}

/// The class folder suggestion as the `--negative`/`--positive` flags, starting with "; ".
fn class_flags(hint: &ClassFolderHint) -> String {
    match hint {
        ClassFolderHint::None => String::new(),
        ClassFolderHint::NameBoth => {
            "; name the class folders with --negative NAME --positive NAME".to_owned()
        }
        ClassFolderHint::Positive(other) => format!("; pass --positive {other}"),
        ClassFolderHint::Negative(other) => format!("; pass --negative {other}"),
        ClassFolderHint::Both { negative, positive } => {
            format!("; pass --negative {negative} --positive {positive}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;

    fn io_error() -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, "denied")
    }

    /// Settings and folds: the library names the setting (`train_fraction`) or counts folds; the
    /// line names the flag, and otherwise says what the library says.
    #[test]
    fn settings_and_folds_are_named_by_their_flags() {
        let split = ConfigError::OutOfRange {
            key: "train_fraction",
            reason: "must be strictly between 0 and 1",
        };
        let err = anyhow::Error::from(TrainError::from(split));
        assert_eq!(message(&err), "--split must be strictly between 0 and 1");
        let fold = ConfigError::Folds(FoldError::NoSuchFold { fold: 4, count: 3 });
        assert_eq!(fold.to_string(), "fold 4: folds are numbered 1 to 3");
        assert_eq!(message(&fold.into()), "--fold 4: folds are numbered 1 to 3");
        let small = FoldError::ClassTooSmall {
            class: "CT-0".into(),
            scans: 3,
            count: 4,
        };
        let library = small.to_string();
        let err = anyhow::Error::from(CvError::Train(TrainError::Folds(small)));
        assert_eq!(
            message(&err),
            library.replace("use 3 folds or fewer", "use --folds 3 or fewer")
        );
        assert!(message(&err).ends_with("use --folds 3 or fewer"));
        assert_eq!(
            line(&FoldError::TooFewFolds(1)),
            "--folds 1: cross-validation needs at least 2 folds"
        );
    }

    #[test]
    fn the_chain_is_printed_once_with_the_causes() {
        let err = anyhow::Error::new(RunError::Io {
            path: PathBuf::from("run/state.json"),
            source: io_error(),
        })
        .context("saving the run");
        assert_eq!(message(&err), "saving the run: run/state.json: denied");
        assert_eq!(message(&err), format!("{err:#}"));
    }

    #[test]
    fn run_folder_errors_name_the_flags() {
        let err = anyhow::Error::new(TrainError::Run(RunError::Exists(PathBuf::from("runs/a"))));
        assert_eq!(
            message(&err),
            "runs/a: the run folder already exists; pass --resume to continue it or --force to \
             start over"
        );
        let err = anyhow::Error::new(CvError::Train(TrainError::Run(RunError::NothingToResume(
            PathBuf::from("runs/b"),
        ))));
        assert_eq!(
            message(&err),
            "runs/b: nothing to resume (no state.json); start a new run without --resume"
        );
        let err = anyhow::Error::new(TrainError::EpochsBelowCompleted {
            run: PathBuf::from("runs/c"),
            epochs: 3,
            completed: 5,
        });
        assert_eq!(
            message(&err),
            "runs/c: --epochs 3 is fewer than the 5 epochs already trained; pass --epochs 5 or more"
        );
    }

    #[test]
    fn a_bad_scan_ends_with_the_skip_flag_after_its_cause() {
        let err = anyhow::Error::new(TrainError::BadScan(CacheError::Io {
            path: PathBuf::from("data/CT-0/a.nii"),
            source: io_error(),
        }));
        assert_eq!(
            message(&err),
            "data/CT-0/a.nii: denied (pass --skip-bad to leave unreadable scans out)"
        );
        // Not a stopping scan: no hint.
        let err = anyhow::Error::new(TrainError::Cache(CacheError::Io {
            path: PathBuf::from("data/CT-0/a.nii"),
            source: io_error(),
        }));
        assert_eq!(message(&err), "data/CT-0/a.nii: denied");
    }

    #[test]
    fn an_unwritable_cache_names_the_cache_flag() {
        let err = anyhow::Error::new(CacheError::Folder {
            path: PathBuf::from("data/.ct3d-cache"),
            source: io_error(),
        });
        assert_eq!(
            message(&err),
            "data/.ct3d-cache: cannot create or write the preprocessing cache: denied; pass \
             --cache DIR to keep it elsewhere"
        );
    }

    #[test]
    fn resources_and_class_folders_name_their_flags() {
        let err = anyhow::Error::new(ResourceError {
            size: [64, 64, 32],
            problems: vec!["the cache needs ~1.0 GB for 2 scans but /d has 0.5 GB free".to_owned()],
        });
        assert_eq!(
            message(&err),
            "--size 64,64,32: the cache needs ~1.0 GB for 2 scans but /d has 0.5 GB free; pass \
             --yes to try anyway"
        );
        let missing = DatasetError::MissingClass {
            path: PathBuf::from("data"),
            class: "CT-23".to_owned(),
            classes: ["CT-0".to_owned(), "CT-23".to_owned()],
            present: vec!["CT-0".to_owned(), "CT-1".to_owned()],
        };
        assert_eq!(
            line(&TrainError::Dataset(missing)),
            "data: class folder CT-23/ not found (folders present: CT-0, CT-1); pass --positive CT-1"
        );
        let both = ClassFolderHint::Both {
            negative: "normal".to_owned(),
            positive: "abnormal".to_owned(),
        };
        assert_eq!(
            class_flags(&both),
            "; pass --negative normal --positive abnormal"
        );
        assert_eq!(
            class_flags(&ClassFolderHint::NameBoth),
            "; name the class folders with --negative NAME --positive NAME"
        );
    }

    #[test]
    fn a_series_on_a_file_names_the_series_flag_through_the_cache() {
        let scan = ScanError::SeriesOnFile {
            path: PathBuf::from("a.nii"),
        };
        let err = TrainError::BadScan(CacheError::Process(ct3d_volume::cache::ProcessFailure {
            path: PathBuf::from("a.nii"),
            error: Box::new(PreprocessError::Scan(scan)),
        }));
        assert_eq!(
            line(&err),
            "a.nii: --series selects a series in a DICOM folder, but this is a file (pass \
             --skip-bad to leave unreadable scans out)"
        );
    }

    #[test]
    fn errors_without_a_flag_keep_the_library_words() {
        let err = anyhow::Error::new(RunError::Corrupt {
            path: PathBuf::from("run/state.json"),
            reason: "expected value".to_owned(),
        });
        assert_eq!(message(&err), format!("{err:#}"));
    }
}
