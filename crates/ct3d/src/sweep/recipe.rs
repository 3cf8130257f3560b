//! Recipe files: a named set of `ct3d train` options, written as TOML so that a sweep's recipes
//! can be reviewed and versioned next to the paper they serve.
//!
//! ```toml
//! name = "resnet10-aug"          # optional; default: the file's name without .toml
//! [train]                        # `ct3d train` flags without their dashes
//! arch = "resnet10"
//! augment = ["flip", "affine"]   # a list is joined with commas: --augment flip,affine
//! augment-file = "aug.toml"      # relative paths are relative to this file
//! learning-rate = 3e-4
//! no-augment = false             # true gives the bare flag, false leaves it out
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The flags a sweep sets for each task itself, refused in recipes and extra train options.
pub const RESERVED_FLAGS: &[&str] = &[
    "data", "manifest", "out", "folds", "fold", "seed", "split", "resume", "force",
];

/// Flags whose value is a file, resolved against the recipe file's folder.
const PATH_FLAGS: &[&str] = &["augment-file", "init", "cache"];

/// A named set of `ct3d train` options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Its name (letters, digits, `-`, `_`, `.`): the folder `runs/<name>` and the summary's row.
    pub name: String,
    /// The file it was read from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Its `ct3d train` arguments.
    pub args: Vec<String>,
}

/// A recipe file that cannot be used. One line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a recipe.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    name: Option<String>,
    #[serde(default)]
    train: toml::Table,
}

impl Recipe {
    /// The recipe of a sweep given none: `default`, with no options of its own.
    pub fn default_recipe() -> Self {
        Self {
            name: "default".to_owned(),
            file: None,
            args: Vec::new(),
        }
    }

    /// Reads a recipe file (see the module documentation).
    pub fn from_file(path: &Path) -> Result<Self, RecipeError> {
        let invalid = |reason: String| RecipeError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: RecipeFile = toml::from_str(&text)
            .map_err(|e| invalid(e.message().replace('\n', " ").trim().to_owned()))?;
        let name = match file.name {
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        check_name(&name).map_err(invalid)?;
        let folder = path.parent().unwrap_or(Path::new(""));
        let mut args = Vec::new();
        for (key, value) in &file.train {
            let flag = format!("--{key}");
            let text = match value {
                toml::Value::Boolean(true) => {
                    args.push(flag);
                    continue;
                }
                toml::Value::Boolean(false) => continue,
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        toml::Value::Float(f) => Ok(f.to_string()),
                        _ => Err(invalid(format!(
                            "train.{key}: a list may hold only strings and numbers"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => {
                    return Err(invalid(format!(
                        "train.{key}: expected a string, number, boolean or list"
                    )));
                }
            };
            let text = if PATH_FLAGS.contains(&key.as_str()) && Path::new(&text).is_relative() {
                let joined = folder.join(&text);
                std::path::absolute(&joined)
                    .unwrap_or(joined)
                    .to_string_lossy()
                    .into_owned()
            } else {
                text
            };
            args.push(flag);
            args.push(text);
        }
        check_flags(&args, &path.display().to_string()).map_err(invalid)?;
        Ok(Self {
            name,
            file: Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned())),
            args,
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "recipe name {name:?}: use letters, digits, '-', '_' and '.' only (it names a folder)"
        ))
    }
}

/// Refuses the flags a sweep sets per task (`--seed`, `--out`, …) in `args`, from `what`.
pub(crate) fn check_flags(args: &[String], what: &str) -> Result<(), String> {
    for arg in args {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let flag = flag.split('=').next().unwrap_or(flag);
        if RESERVED_FLAGS.contains(&flag) {
            return Err(format!(
                "{what}: --{flag} is set by the sweep for each task; leave it out"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_file_becomes_train_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.toml");
        std::fs::write(
            &path,
            "[train]\nfilters = [8, 8, 16, 32]\nlearning-rate = 0.0003\nno-augment = true\n\
             dropout = 0.5\nskip-bad = false\naugment-file = \"aug.toml\"\n",
        )
        .unwrap();
        let recipe = Recipe::from_file(&path).unwrap();
        assert_eq!(recipe.name, "wide");
        let aug = dir.path().join("aug.toml").to_string_lossy().into_owned();
        assert_eq!(
            recipe.args,
            [
                "--augment-file",
                aug.as_str(),
                "--dropout",
                "0.5",
                "--filters",
                "8,8,16,32",
                "--learning-rate",
                "0.0003",
                "--no-augment"
            ]
        );
    }

    #[test]
    fn bad_recipes_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        for (text, expected) in [
            ("[train]\nseed = 3\n", "--seed is set by the sweep"),
            ("name = \"a/b\"\n", "use letters, digits"),
            ("[train]\nfilters = [[1]]\n", "only strings and numbers"),
            ("epochs = 3\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Recipe::from_file(&path).unwrap_err().to_string();
            assert!(error.contains("r.toml"), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
