//! Augmentation lists as people write them: a comma-separated list of transform names
//! (`rotate,flip,affine,noise`, each with its default settings) and/or a recipe file, JSON or
//! TOML, giving the transforms' settings.
//!
//! A recipe file holds a list of transforms in the form `config.json` records them (`kind` is
//! the transform's kind or short name; settings left out take their defaults):
//!
//! ```toml
//! [[augment]]
//! kind = "flip"
//! probabilities = [0.5, 0.0, 0.0]
//!
//! [[augment]]
//! kind = "noise"
//! std = 0.05
//! ```
//!
//! or in JSON `{"augment": [{"kind": "flip", "probabilities": [0.5, 0, 0]}, {"kind": "noise"}]}`
//! (a bare list is accepted too). Given alone, the file is the list, in its order. Given with a
//! list of names, the names give the order and the file the settings of the transforms it holds
//! (each at most once, each named in the list).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Augmentation, Augmentations};

/// A list of names or a recipe file that does not describe an augmentation list. One line.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A name that is no transform's.
    #[error("no augmentation is called \"{name}\" (known: {known})")]
    Unknown {
        /// The name given.
        name: String,
        /// The known short names, comma-separated.
        known: String,
    },
    /// The list has an empty entry (`flip,,noise`) or is empty.
    #[error("\"{0}\" is not a list of augmentation names (e.g. rotate,flip)")]
    EmptyName(String),
    /// The recipe file cannot be read.
    #[error("{path}: cannot read", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file name ends neither in `.json` nor in `.toml`.
    #[error("{path}: a recipe file is .json or .toml", path = .0.display())]
    Format(PathBuf),
    /// The file is not a valid recipe: syntax, an unknown transform or setting, a setting out of
    /// range (the reason names it).
    #[error("{path}: {reason}", path = .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        reason: String,
    },
    /// With a list of names, the file sets a transform the list does not name, or one twice.
    #[error("{path}: {kind} {problem}", path = .path.display())]
    NotInList {
        /// The file.
        path: PathBuf,
        /// The transform's kind.
        kind: String,
        /// `is not in the list …` or `appears twice`.
        problem: String,
    },
}

/// The list named by `names` (`rotate,flip,affine,noise`: short names or kinds, separated by
/// commas, spaces ignored), each transform with its default settings.
pub fn from_names(names: &str) -> Result<Augmentations, RecipeError> {
    let mut list = Vec::new();
    for name in names.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(RecipeError::EmptyName(names.to_owned()));
        }
        let transform = Augmentation::named(name).ok_or_else(|| RecipeError::Unknown {
            name: name.to_owned(),
            known: Augmentation::NAMES.join(", "),
        })?;
        list.push(transform);
    }
    Ok(Augmentations::new(list))
}

/// A recipe file's contents.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    augment: Vec<Augmentation>,
}

/// Whether a recipe is JSON or TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeFormat {
    /// A list, or `{"augment": [...]}`.
    Json,
    /// `[[augment]]` tables.
    Toml,
}

impl RecipeFormat {
    /// The format of `path` by its extension (`.json`, `.toml`), if either.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// The list a recipe `text` in `format` holds; `Err` holds the reason on one line.
pub fn parse(text: &str, format: RecipeFormat) -> Result<Augmentations, String> {
    let list = match format {
        RecipeFormat::Json if text.trim_start().starts_with('[') => {
            serde_json::from_str::<Vec<Augmentation>>(text).map_err(|e| e.to_string())?
        }
        RecipeFormat::Json => {
            serde_json::from_str::<RecipeFile>(text)
                .map_err(|e| e.to_string())?
                .augment
        }
        RecipeFormat::Toml => {
            toml::from_str::<RecipeFile>(text)
                .map_err(|e| {
                    // The error's own display quotes the file over several lines: keep the
                    // message and the line number.
                    let line = e
                        .span()
                        .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
                    let message = e.message().replace('\n', " ");
                    match line {
                        Some(line) => format!("{message} (line {line})"),
                        None => message,
                    }
                })?
                .augment
        }
    };
    Ok(Augmentations::new(list))
}

/// The list in the recipe file at `path` (`.json` or `.toml`).
pub fn read(path: &Path) -> Result<Augmentations, RecipeError> {
    let format = RecipeFormat::of(path).ok_or_else(|| RecipeError::Format(path.to_owned()))?;
    let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, format).map_err(|reason| RecipeError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

/// The list `names` ([`from_names`]) with the settings of the transforms that the recipe file
/// at `path` holds: each file entry replaces the defaults of the named transform of its kind.
/// A file entry whose transform is not named, or a transform set twice, is refused.
pub fn named_with_file(names: &str, path: &Path) -> Result<Augmentations, RecipeError> {
    let named = from_names(names)?;
    let file = read(path)?;
    let mut used = vec![false; file.transforms().len()];
    let list = named
        .transforms()
        .iter()
        .map(|default| {
            let found = file
                .transforms()
                .iter()
                .position(|entry| std::mem::discriminant(entry) == std::mem::discriminant(default));
            match found {
                Some(i) => {
                    used[i] = true;
                    file.transforms()[i].clone()
                }
                None => default.clone(),
            }
        })
        .collect();
    for (i, entry) in file.transforms().iter().enumerate() {
        let twice = file.transforms()[..i]
            .iter()
            .any(|earlier| std::mem::discriminant(earlier) == std::mem::discriminant(entry));
        let problem = if twice {
            "appears twice".to_owned()
        } else if !used[i] {
            format!("is not in the list {names}")
        } else {
            continue;
        };
        return Err(RecipeError::NotInList {
            path: path.to_owned(),
            kind: entry.kind(),
            problem,
        });
    }
    Ok(Augmentations::new(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{GaussianNoise, RandomFlip, RandomRotation};

    #[test]
    fn names_give_default_transforms_in_order() {
        let list = from_names("rotate, flip,gaussian_noise").unwrap();
        assert_eq!(
            list,
            Augmentations::new(vec![
                Augmentation::RandomRotation(RandomRotation::seed()),
                Augmentation::RandomFlip(RandomFlip::default()),
                Augmentation::GaussianNoise(GaussianNoise::default()),
            ])
        );
        assert_eq!(from_names("rotate").unwrap(), Augmentations::seed());
        let names: Vec<&str> = list.transforms().iter().map(Augmentation::name).collect();
        assert_eq!(names, ["rotate", "flip", "noise"]);
    }

    #[test]
    fn unknown_or_empty_names_are_refused_on_one_line() {
        let err = from_names("rotate,blurr").unwrap_err().to_string();
        assert_eq!(
            err,
            "no augmentation is called \"blurr\" (known: rotate, flip, affine, intensity, gamma, \
             noise, blur, cutout)"
        );
        assert!(matches!(
            from_names("flip,,noise"),
            Err(RecipeError::EmptyName(_))
        ));
        assert!(from_names("").is_err());
    }

    #[test]
    fn json_and_toml_recipes_read_the_same_list() {
        let json = r#"{"augment": [{"kind": "flip", "probabilities": [0.5, 0.5, 0]},
                        {"kind": "gaussian_noise", "std": 0.05}]}"#;
        let toml = "[[augment]]\nkind = \"flip\"\nprobabilities = [0.5, 0.5, 0.0]\n\n\
                    [[augment]]\nkind = \"noise\"\nstd = 0.05\n";
        let from_json = parse(json, RecipeFormat::Json).unwrap();
        assert_eq!(parse(toml, RecipeFormat::Toml).unwrap(), from_json);
        let bare = r#"[{"kind": "random_flip", "probabilities": [0.5, 0.5, 0]}, {"kind": "noise", "std": 0.05}]"#;
        assert_eq!(parse(bare, RecipeFormat::Json).unwrap(), from_json);
        assert_eq!(
            from_json.transforms()[1],
            Augmentation::GaussianNoise(GaussianNoise::new(0.05, 1.0).unwrap())
        );
    }

    #[test]
    fn out_of_range_settings_are_named_on_one_line() {
        let toml = "[[augment]]\nkind = \"flip\"\nprobabilities = [0.5, 1.5, 0.0]\n";
        let err = parse(toml, RecipeFormat::Toml).unwrap_err();
        assert!(
            err.starts_with("random_flip probabilities 1.5: must be between 0 and 1"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let json = r#"[{"kind": "noise", "sdt": 0.1}]"#;
        let err = parse(json, RecipeFormat::Json).unwrap_err();
        assert!(err.contains("sdt"), "{err}");
        let unknown = parse("[[augment]]\nkind = \"elastic\"\n", RecipeFormat::Toml).unwrap_err();
        assert!(
            unknown.contains("elastic") && !unknown.contains('\n'),
            "{unknown}"
        );
    }

    #[test]
    fn names_take_their_settings_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipe.toml");
        std::fs::write(&path, "[[augment]]\nkind = \"noise\"\nstd = 0.2\n").unwrap();
        let list = named_with_file("flip,noise", &path).unwrap();
        assert_eq!(
            list.transforms(),
            [
                Augmentation::RandomFlip(RandomFlip::default()),
                Augmentation::GaussianNoise(GaussianNoise::new(0.2, 1.0).unwrap()),
            ]
        );
        let err = named_with_file("flip", &path).unwrap_err().to_string();
        assert!(
            err.ends_with("gaussian_noise is not in the list flip"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[[augment]]\nkind = \"noise\"\n[[augment]]\nkind = \"noise\"\n",
        )
        .unwrap();
        let err = named_with_file("noise", &path).unwrap_err().to_string();
        assert!(err.ends_with("gaussian_noise appears twice"), "{err}");
        let err = read(&dir.path().join("recipe.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("a recipe file is .json or .toml"), "{err}");
    }
}
