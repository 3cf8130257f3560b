//! # ct3d
//!
//! The parts of ct3d above single volumes: dataset splits, metrics, training, evaluation,
//! prediction, pictures and the HTML report. The `ct3d` binary is a thin command-line layer over
//! this library and over `ct3d-volume`.
//!
//! ## How the library is organised
//!
//! In floors, as burn's guide divides a project into data, training and inference: a module
//! imports only from the floors below it (a unit test below checks that there is no import cycle
//! and no chain of more than six imports).
//!
//! 1. The ground: [`config`] (what a run is asked to be, and what `config.json` records: the
//!    user's [`config::TrainParams`] are checked once into the [`config::TrainConfig`] that
//!    every function below takes and none re-validates),
//!    [`metrics`], [`calibration`] (Brier score, ECE, temperature scaling, `calibration.json`),
//!    [`data::split`] (the train / validation split), [`data::loader`] (batches).
//! 2. [`history`] and [`callbacks`] (what each epoch records and decides), and [`error`], the
//!    library's one error type [`error::TrainError`]; [`intervals`] (bootstrap and DeLong
//!    confidence intervals).
//! 3. [`run`] (the run folder and its commit protocol), [`observe`] (progress hooks),
//!    [`data::source`] (where the scans are listed) and [`data::folds`] (k-fold assignment).
//! 4. [`inference`] (a trained model applied to scans), [`request`] (what a caller asks for) and
//!    [`data::prepare`] (the dataset prepared into the cache).
//! 5. [`training`] (the training loop), [`pictures`], [`explain`] (where the model looked),
//!    [`export`] (a run as an ONNX model) and
//!    the resource checks ([`resources`]).
//! 6. Cross-validation ([`cv`]) and the HTML report ([`report`]).
//! 7. On top: sweeps of cross-validations over seeds and recipes, run as independent tasks
//!    (a Slurm job array, [`sweep`]).
//!
//! The modules `train`, `evaluate`, `folds`, `split` and `loader` are the old paths of what
//! moved, kept so that callers keep compiling.

pub mod calibration;
pub mod callbacks;
pub mod config;
pub mod cv;
pub mod data;
pub mod demo;
pub mod error;
pub mod explain;
pub mod export;
pub mod history;
pub mod inference;
pub mod intervals;
pub(crate) mod json_f64;
pub mod metrics;
pub mod observe;
pub mod pictures;
pub mod report;
pub mod request;
pub mod resources;
pub mod run;
pub mod sweep;
pub mod training;

/// The old path of training ([`crate::training`]) and of what it used to hold: the request, the
/// data source, the observer and the error.
pub mod train {
    pub use crate::data::folds::run_split;
    pub use crate::data::source::{DataSource, default_cache, prepared_patients, recorded_split};
    pub use crate::error::TrainError;
    pub use crate::inference::predict_items;
    pub use crate::observe::{Silent, TrainObserver};
    pub use crate::request::TrainRequest;
    pub use crate::training::{TrainOutcome, train};
}

/// The old path of evaluation and prediction ([`crate::inference`]).
pub mod evaluate {
    pub use crate::error::RecordedDataError;
    pub use crate::inference::*;
}

/// The old path of [`crate::data::folds`], with the fold of a run ([`crate::config::FoldSpec`]).
pub mod folds {
    pub use crate::config::{FoldError, FoldSpec};
    pub use crate::data::folds::*;
}

/// The old path of [`crate::data::split`].
pub mod split {
    pub use crate::data::split::*;
}

/// The old path of [`crate::data::loader`].
pub mod loader {
    pub use crate::data::loader::*;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    // The binary is another crate (crates/ct3d-cli), so every file here is the library's, and
    // none can import the binary's code.

    /// The longest chain of imports (a module that uses one that uses one …) the library may
    /// have, counted in imports: 6 imports are 7 modules, from the top floor (sweeps, above
    /// cross-validation) to the ground.
    const MAX_IMPORT_CHAIN: usize = 6;

    /// Every module file of the library under `src`, but `lib.rs` (the root, which only declares
    /// modules).
    fn library_files(src: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut folders = vec![src.to_owned()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let relative = path.strip_prefix(src).unwrap().to_str().unwrap();
                    if relative != "lib.rs" {
                        files.push(path);
                    }
                }
            }
        }
        files.sort();
        files
    }

    /// A module file's module path: `run.rs` is `run`, `data/folds.rs` is `data::folds`,
    /// `data/mod.rs` is `data`.
    fn module_name(src: &Path, file: &Path) -> String {
        let relative = file.strip_prefix(src).unwrap().with_extension("");
        let parts: Vec<&str> = relative.iter().map(|p| p.to_str().unwrap()).collect();
        let parts = match parts.split_last() {
            Some((&"mod", parent)) => parent,
            _ => &parts[..],
        };
        parts.join("::")
    }

    /// The paths `text` names through `crate::…` or `super::…` (a `super` resolved against
    /// `module`), in code and in attributes (`#[serde(with = "crate::json_f64")]`), not in
    /// comments or unit tests. `crate::{a::X, b}` gives `a::X` and `b`.
    fn named_paths(module: &str, text: &str) -> Vec<String> {
        // Unit tests are not the library's structure (and their `super` is the module itself).
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let parent: Vec<&str> = module.split("::").collect();
        let parent = parent[..parent.len() - 1].join("::");
        let mut paths = Vec::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
            let mut rest = code.as_str();
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().next_back();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let join = |path: &str| {
                    if base.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{base}::{path}")
                    }
                };
                if let Some(group) = rest.strip_prefix('{') {
                    let (mut depth, mut item, mut end) = (0, String::new(), group.len());
                    for (i, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => {
                                end = i;
                                break;
                            }
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                paths.push(join(item.trim()));
                                item.clear();
                                continue;
                            }
                            _ => {}
                        }
                        item.push(c);
                    }
                    paths.push(join(item.trim()));
                    rest = &group[end..];
                } else {
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    paths.push(join(path.trim_end_matches(':')));
                }
            }
        }
        paths
    }

    /// The library's module graph: each module and the other modules it imports.
    fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let files = library_files(src);
        let modules: BTreeSet<String> = files.iter().map(|f| module_name(src, f)).collect();
        let mut graph = BTreeMap::new();
        for file in &files {
            let module = module_name(src, file);
            let text = std::fs::read_to_string(file).unwrap();
            let imports: BTreeSet<String> = named_paths(&module, &text)
                .into_iter()
                .filter_map(|path| {
                    // The longest module prefix: `data::folds::FoldSpec` is `data::folds`.
                    let parts: Vec<&str> = path.split("::").collect();
                    (1..=parts.len())
                        .rev()
                        .map(|n| parts[..n].join("::"))
                        .find(|prefix| modules.contains(prefix))
                })
                .filter(|target| *target != module)
                .collect();
            graph.insert(module, imports);
        }
        graph
    }

    /// The longest import chain starting at `module`, or the cycle found on the way.
    fn longest_chain(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        memo: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<String>, Vec<String>> {
        if let Some(done) = memo.get(module) {
            return Ok(done.clone());
        }
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Err(cycle);
        }
        path.push(module.to_owned());
        let mut best = Vec::new();
        for next in &graph[module] {
            let chain = longest_chain(next, graph, path, memo)?;
            if chain.len() > best.len() {
                best = chain;
            }
        }
        path.pop();
        best.insert(0, module.to_owned());
        memo.insert(module.to_owned(), best.clone());
        Ok(best)
    }

    /// The library is built in floors: no module imports one that (through others) imports it
    /// back, and the longest chain of imports is at most [`MAX_IMPORT_CHAIN`] long, so that a
    /// reader (or a change) never has to follow ten modules down to the ground.
    #[test]
    fn the_library_imports_in_floors_without_cycles() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let graph = import_graph(&src);
        assert!(graph.contains_key("run"), "{graph:?}");
        let mut memo = BTreeMap::new();
        let mut longest = Vec::new();
        for module in graph.keys() {
            match longest_chain(module, &graph, &mut Vec::new(), &mut memo) {
                Ok(chain) if chain.len() > longest.len() => longest = chain,
                Ok(_) => {}
                Err(cycle) => panic!("import cycle: {}", cycle.join(" → ")),
            }
        }
        let imports = longest.len() - 1;
        assert!(
            imports <= MAX_IMPORT_CHAIN,
            "{imports} imports in a row (at most {MAX_IMPORT_CHAIN}): {}",
            longest.join(" → ")
        );
    }

    /// The import parser itself: grouped, nested and `super` paths, and no comments.
    #[test]
    fn imports_are_read_from_code_not_comments() {
        let text = "//! see [`crate::a`]\nuse crate::{b::X, c::{D, E}};\nuse super::f::G;\n\
                    #[serde(with = \"crate::h\")]\nfn x() { crate::i::j(); } // crate::k\n";
        assert_eq!(
            named_paths("data::m", text),
            ["b::X", "c::{D, E}", "h", "i::j", "data::f::G"]
        );
    }

    /// The paths callers used before the library was split into floors still name the same
    /// items (the binary and other branches use them).
    #[test]
    fn the_old_paths_still_resolve() {
        fn same<T>(_: T, _: T) {}
        same(
            crate::train::train as fn(_, _) -> _,
            crate::training::train as fn(_, _) -> _,
        );
        same(
            crate::train::default_cache,
            crate::data::source::default_cache,
        );
        same(crate::evaluate::load_run, crate::inference::load_run);
        same(
            crate::evaluate::WeightsChoice::Best,
            crate::inference::WeightsChoice::Best,
        );
        let _: Option<crate::train::TrainRequest> = None::<crate::request::TrainRequest>;
        let _: Option<crate::cv::CvRequest> = None::<crate::request::CvRequest>;
        let _: Option<crate::train::DataSource> = None::<crate::data::source::DataSource>;
        let _: Option<crate::train::TrainError> = None::<crate::error::TrainError>;
        let _: Option<crate::evaluate::RecordedDataError> = None::<crate::error::RecordedDataError>;
        let _: Option<crate::run::RunError> = None::<crate::error::RunError>;
        let _: Option<crate::run::TrainConfig> = None::<crate::config::TrainConfig>;
        let _: Option<crate::run::ScheduleChange> = None::<crate::config::ScheduleChange>;
        let _: Option<crate::folds::FoldSpec> = None::<crate::config::FoldSpec>;
        let _: Option<crate::split::PatientSplitSummary> =
            None::<crate::data::split::PatientSplitSummary>;
        let _: Option<crate::loader::Batch> = None::<crate::data::loader::Batch>;
        let _: Option<crate::cv::FoldResult> = None::<crate::observe::FoldResult>;
        let _: &dyn crate::cv::CvObserver = &crate::train::Silent;
        let _: &dyn crate::observe::TrainObserver = &crate::train::Silent;
    }

    /// The library speaks in its own types; flags and clap belong to the binary (crates/ct3d-cli),
    /// which converts its value enums into the library's.
    #[test]
    fn the_library_does_not_use_clap() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = library_files(&src);
        assert!(
            files.iter().any(|f| f.ends_with("cv.rs")) && files.len() >= 13,
            "{files:?}"
        );
        for path in files.into_iter().chain([src.join("lib.rs")]) {
            let text = std::fs::read_to_string(&path).unwrap();
            // The clap test's own text names it; the rest of the file must not.
            let text = match path.ends_with("lib.rs") {
                true => text.split("#[cfg(test)]").next().unwrap().to_owned(),
                false => text,
            };
            assert!(!text.contains("clap"), "{} uses clap", path.display());
        }
    }
}
