//! Class-folder datasets: `dir/CT-0/*.nii.gz` (label 0) and `dir/CT-23/*.nii.gz` (label 1).
//!
//! This is the layout the seed example unpacks MosMedData into, and the one `ct3d demo` writes its
//! phantoms in. A scan is what [`crate::format`] lists: any regular file (or link to one) named
//! `*.nii`, `*.nii.gz` or `*.hdr` (an Analyze-style pair is listed once, by its header;
//! extensions match case-insensitively), or a sub-folder holding DICOM files, which is read as
//! one DICOM series (see [`crate::dicom`]).
//! Hidden files, such as the temporary files of an interrupted atomic write, and every other
//! extension are ignored. Items are listed negative class first, each class sorted by file name,
//! so a listing never depends on the order the filesystem returns.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The seed's negative (normal) class folder.
pub const DEFAULT_NEGATIVE_CLASS: &str = "CT-0";

/// The seed's positive (abnormal) class folder.
pub const DEFAULT_POSITIVE_CLASS: &str = "CT-23";

/// One scan and its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetItem {
    /// The scan file (the class folder joined with its name).
    pub path: PathBuf,
    /// 0 for the negative class, 1 for the positive class.
    pub label: u8,
    /// The patient (or other group) the scan belongs to, when the dataset says so (a manifest's
    /// `patient` column); k-fold cross-validation keeps a patient's scans in one fold.
    pub patient: Option<String>,
}

/// A binary dataset read from two class folders or from a CSV manifest
/// ([`crate::manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    root: PathBuf,
    manifest: Option<PathBuf>,
    class_names: [String; 2],
    items: Vec<DatasetItem>,
}

/// Why a dataset folder could not be listed. Displays as one line naming the folder.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The dataset folder does not exist.
    #[error("{}: dataset folder not found", path.display())]
    Missing {
        /// The folder asked for.
        path: PathBuf,
    },
    /// The dataset folder or a class folder is a file.
    #[error("{}: not a folder", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The dataset folder has no sub-folders at all.
    #[error("{}: no class folders in it (expected {negative}/ and {positive}/)", path.display())]
    NoClasses {
        /// The dataset folder.
        path: PathBuf,
        /// The negative class folder name.
        negative: String,
        /// The positive class folder name.
        positive: String,
    },
    /// One class folder is missing.
    #[error(
        "{}: class folder {class}/ not found (folders present: {}){}",
        path.display(),
        present.join(", "),
        ClassFolderHint::new(classes, present).sentence()
    )]
    MissingClass {
        /// The dataset folder.
        path: PathBuf,
        /// The missing class.
        class: String,
        /// The negative and positive class folder names asked for.
        classes: [String; 2],
        /// The sub-folders that do exist, sorted.
        present: Vec<String>,
    },
    /// A class folder holds no scans.
    #[error(
        "{}: class folder has no scans ({})",
        path.display(),
        crate::format::listed_kinds()
    )]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// Both classes were given the same folder.
    #[error("{}: negative and positive class are both {name}/", path.display())]
    SameClass {
        /// The dataset folder.
        path: PathBuf,
        /// The repeated class name.
        name: String,
    },
    /// A folder could not be read (the I/O error is the source).
    #[error("{}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl Dataset {
    /// Lists `dir/<negative>/` (label 0) and `dir/<positive>/` (label 1); the seed's folders are
    /// [`DEFAULT_NEGATIVE_CLASS`] and [`DEFAULT_POSITIVE_CLASS`].
    pub fn from_class_folders(
        dir: &Path,
        negative: &str,
        positive: &str,
    ) -> Result<Self, DatasetError> {
        if negative == positive {
            return Err(DatasetError::SameClass {
                path: dir.to_owned(),
                name: negative.to_owned(),
            });
        }
        require_dir(dir, true)?;
        let present = subfolders(dir)?;
        if present.is_empty() {
            return Err(DatasetError::NoClasses {
                path: dir.to_owned(),
                negative: negative.to_owned(),
                positive: positive.to_owned(),
            });
        }
        let mut items = Vec::new();
        for (label, class) in [(0u8, negative), (1u8, positive)] {
            let class_dir = dir.join(class);
            if !class_dir.exists() {
                return Err(DatasetError::MissingClass {
                    path: dir.to_owned(),
                    class: class.to_owned(),
                    classes: [negative.to_owned(), positive.to_owned()],
                    present,
                });
            }
            require_dir(&class_dir, false)?;
            let scans = list_scans(&class_dir)?;
            if scans.is_empty() {
                return Err(DatasetError::EmptyClass { path: class_dir });
            }
            items.extend(scans.into_iter().map(|path| DatasetItem {
                path,
                label,
                patient: None,
            }));
        }
        Ok(Self::from_parts(
            dir.to_owned(),
            None,
            [negative.to_owned(), positive.to_owned()],
            items,
        ))
    }

    /// A dataset from its parts: the readers of this crate build theirs with it, and a caller
    /// that already knows the scans uses it too (evaluation lists exactly the scans a training
    /// run recorded, whatever the folder holds now).
    pub fn from_parts(
        root: PathBuf,
        manifest: Option<PathBuf>,
        class_names: [String; 2],
        items: Vec<DatasetItem>,
    ) -> Self {
        Self {
            root,
            manifest,
            class_names,
            items,
        }
    }

    /// The dataset folder as given (for a manifest: the manifest's folder, which its relative
    /// paths are relative to).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CSV manifest the dataset was read from, if it was.
    pub fn manifest(&self) -> Option<&Path> {
        self.manifest.as_deref()
    }

    /// The class names, by label: `[negative, positive]` (class folder names, or the label names
    /// a manifest accepts besides 0 and 1).
    pub fn class_names(&self) -> [&str; 2] {
        [&self.class_names[0], &self.class_names[1]]
    }

    /// All scans: label 0 first, each class sorted by file name (a manifest: in row order).
    pub fn items(&self) -> &[DatasetItem] {
        &self.items
    }

    /// Number of scans.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always false for a dataset built by [`Dataset::from_class_folders`] or
    /// [`Dataset::from_manifest`] (empty classes are an error).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of scans per label: `[negative, positive]`.
    pub fn class_counts(&self) -> [usize; 2] {
        let positive = self.items.iter().filter(|item| item.label == 1).count();
        [self.items.len() - positive, positive]
    }
}

/// True for the file names the dataset lists as NIfTI scans (which formats a dataset lists, and
/// how, is [`crate::format`]'s business: see [`crate::format::is_listed_scan`]).
pub fn is_scan_file_name(name: &str) -> bool {
    !name.starts_with('.') && crate::format::nifti_listed_name(name)
}

/// Which folders present could serve as the class folders, for [`DatasetError::MissingClass`]:
/// the library's suggestion, which a front end words in its own terms (the CLI names its
/// `--negative`/`--positive` flags). With exactly two folders, which is negative is guessed from
/// its name ("normal", "0", …) and an already-right folder is kept; with more, only that the
/// classes must be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassFolderHint {
    /// Nothing to suggest (one folder: the other class is missing, no choice of names fixes it).
    None,
    /// More than two folders: the negative and positive class folders must be named.
    NameBoth,
    /// The negative class is right; take this folder as the positive one.
    Positive(String),
    /// The positive class is right; take this folder as the negative one.
    Negative(String),
    /// Take these two folders as the negative and positive classes.
    Both {
        /// The folder suggested as the negative class.
        negative: String,
        /// The folder suggested as the positive class.
        positive: String,
    },
}

impl ClassFolderHint {
    /// The suggestion for the `[negative, positive]` class folder names asked for, given the
    /// sub-folders `present` (sorted).
    pub fn new(classes: &[String; 2], present: &[String]) -> Self {
        let [negative, positive] = classes;
        let [a, b] = present else {
            return if present.len() > 2 {
                Self::NameBoth
            } else {
                Self::None
            };
        };
        if a == negative || b == negative {
            let other = if a == negative { b } else { a };
            return Self::Positive(other.clone());
        }
        if a == positive || b == positive {
            let other = if a == positive { b } else { a };
            return Self::Negative(other.clone());
        }
        let (neg, pos) = if looks_negative(b) && !looks_negative(a) {
            (b, a)
        } else {
            (a, b)
        };
        Self::Both {
            negative: neg.clone(),
            positive: pos.clone(),
        }
    }

    /// The suggestion in the library's words, starting with "; " (empty for [`Self::None`]).
    pub fn sentence(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::NameBoth => {
                "; name which folders are the negative and positive classes".to_owned()
            }
            Self::Positive(other) => format!("; take {other}/ as the positive class"),
            Self::Negative(other) => format!("; take {other}/ as the negative class"),
            Self::Both { negative, positive } => {
                format!("; take {negative}/ as the negative and {positive}/ as the positive class")
            }
        }
    }
}

/// Whether a class folder's name suggests the negative (normal) class.
fn looks_negative(name: &str) -> bool {
    let name = name.to_lowercase();
    let words: Vec<&str> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    [
        "normal", "negative", "neg", "healthy", "control", "controls", "benign", "0", "no", "non",
        "none",
    ]
    .iter()
    .any(|word| words.contains(word))
}

fn require_dir(path: &Path, is_root: bool) -> Result<(), DatasetError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DatasetError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(e) if is_root && e.kind() == io::ErrorKind::NotFound => Err(DatasetError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(DatasetError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Names of the non-hidden sub-folders of `dir`, sorted.
fn subfolders(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let io_error = |source| DatasetError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The scans of one class folder ([`crate::format::list_scans`]), sorted by file name.
fn list_scans(class_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    crate::format::list_scans(class_dir).map_err(|source| DatasetError::Io {
        path: class_dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(classes: [&str; 2], present: &[&str]) -> ClassFolderHint {
        ClassFolderHint::new(
            &classes.map(str::to_owned),
            &present.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
    }

    fn both(negative: &str, positive: &str) -> ClassFolderHint {
        ClassFolderHint::Both {
            negative: negative.to_owned(),
            positive: positive.to_owned(),
        }
    }

    #[test]
    fn missing_class_folders_suggest_the_classes() {
        let default = ["CT-0", "CT-23"];
        assert_eq!(
            hint(default, &["abnormal", "normal"]),
            both("normal", "abnormal")
        );
        assert_eq!(
            hint(default, &["covid", "no-covid"]),
            both("no-covid", "covid")
        );
        // No clue in the names: the sorted order, which the user can swap.
        assert_eq!(hint(default, &["a", "b"]), both("a", "b"));
        assert_eq!(
            hint(default, &["CT-0", "CT-1"]),
            ClassFolderHint::Positive("CT-1".to_owned())
        );
        assert_eq!(
            hint(default, &["CT-23", "healthy"]),
            ClassFolderHint::Negative("healthy".to_owned())
        );
        assert_eq!(hint(default, &["a", "b", "c"]), ClassFolderHint::NameBoth);
        assert_eq!(hint(default, &["CT-0"]), ClassFolderHint::None);
        // In the library's words.
        assert_eq!(
            both("normal", "abnormal").sentence(),
            "; take normal/ as the negative and abnormal/ as the positive class"
        );
        assert_eq!(ClassFolderHint::None.sentence(), "");
    }
}
