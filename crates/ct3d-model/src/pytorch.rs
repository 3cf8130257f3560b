//! Pretrained weights from a PyTorch state dict (`.pth`, `.pt`) into a network whose parameters
//! carry PyTorch names ([`Layout::PyTorch`]: the ResNets).
//!
//! The file is read by burn-store's pickle reader (`pytorch-reader`), which never runs Python
//! code: it understands tensors, dicts, lists and plain values, and anything else is either
//! ignored (a value that holds no tensor) or refused.
//!
//! # Names
//! Nested dicts are flattened with dots. Accepted forms of one name, `conv1.weight`:
//! - MONAI's and torchvision-style state dicts: `conv1.weight`;
//! - MedicalNet's checkpoints: `{"state_dict": {"module.conv1.weight": …}}` (saved from
//!   `nn.DataParallel`), i.e. `state_dict.module.conv1.weight`; when a `state_dict` entry
//!   exists, tensors outside it (optimizer state) are skipped.
//!
//! # What is loaded, skipped, newly initialised
//! Every parameter of the network must be in the file with its exact shape, except the head
//! (`fc.*`), which keeps its fresh initialisation when the file lacks it or has another number
//! of classes. File tensors the network has no place for are skipped when they are known to be
//! harmless — BatchNorm's `num_batches_tracked` counters, MedicalNet's segmentation head
//! `conv_seg.*`, another head — and refused otherwise, so that a file for another depth, width or
//! shortcut type fails on its first odd tensor instead of loading half a network.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, Param};
use burn::tensor::Tensor;
use burn_store::pytorch::PytorchReader;
use burn_store::pytorch_reader::{DType, Tensor as FileTensor};

use crate::architecture::Classifier;
use crate::weights::{Layout, ParamName};

/// Why a PyTorch state dict cannot initialise a network. Each message is one line naming the
/// file and, where there is one, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum PytorchError {
    /// The file could not be opened or parsed as a PyTorch file.
    #[error("cannot read PyTorch weights {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader found (one line).
        reason: String,
    },
    /// The file parsed but holds no tensors.
    #[error("{} is not a PyTorch state dict: it holds no tensors", path.display())]
    NotStateDict {
        /// The file.
        path: PathBuf,
    },
    /// The network stores its weights in another layout (the seed CNN's are Keras's).
    #[error("PyTorch weights {} cannot initialise {architecture}: only networks with PyTorch names (the ResNets) load state dicts", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The network's architecture name.
        architecture: String,
    },
    /// A tensor the network needs is absent.
    #[error("PyTorch weights {} have no tensor {name}; were they saved for another depth or shortcut type?", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// PyTorch name of the tensor.
        name: String,
    },
    /// A tensor the network has no place for.
    #[error("PyTorch weights {}: tensor {name} does not belong to this network; were they saved for another depth or shortcut type?", path.display())]
    Unknown {
        /// The file.
        path: PathBuf,
        /// The tensor's name as normalised (without `state_dict.` and `module.`).
        name: String,
    },
    /// A tensor has another shape than the network's parameter.
    #[error("PyTorch weights {}: {name} has shape {found:?} but the network expects {expected:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// PyTorch name of the tensor.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the network needs.
        expected: Vec<usize>,
    },
    /// A tensor of an element type other than `float32` or `float64`.
    #[error("PyTorch weights {}: {name} is stored as {dtype}, expected float32 or float64", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// PyTorch name of the tensor.
        name: String,
        /// Element type in the file.
        dtype: String,
    },
}

/// What [`load_state_dict`] did, by PyTorch name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Parameters replaced by the file's tensors.
    pub loaded: Vec<String>,
    /// File tensors left unused, with the reason.
    pub skipped: Vec<(String, &'static str)>,
    /// Parameters the file did not provide, which keep their fresh initialisation (the head).
    pub initialised: Vec<String>,
}

impl std::fmt::Display for InitReport {
    /// One line: `loaded 62 tensors; skipped 21 (num_batches_tracked: 20, conv_seg: 1);
    /// newly initialised: fc.weight, fc.bias`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loaded {} tensors", self.loaded.len())?;
        if !self.skipped.is_empty() {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, reason) in &self.skipped {
                *reasons.entry(reason).or_default() += 1;
            }
            let reasons: Vec<String> = reasons
                .into_iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            write!(
                f,
                "; skipped {} ({})",
                self.skipped.len(),
                reasons.join(", ")
            )?;
        }
        if !self.initialised.is_empty() {
            write!(f, "; newly initialised: {}", self.initialised.join(", "))?;
        }
        Ok(())
    }
}

/// Replaces `model`'s parameters with the tensors of the PyTorch state dict at `path` (see the
/// module docs for names and rules), keeping its device and training state.
pub fn load_state_dict<C: Classifier>(
    model: C,
    path: &Path,
    architecture: &str,
) -> Result<(C, InitReport), PytorchError> {
    let (tensors, mut skipped) = read_state_dict(path)?;
    let mut loader = Loader::<C> {
        path: Vec::new(),
        file_path: path,
        tensors: &tensors,
        architecture,
        used: HashSet::new(),
        report: InitReport::default(),
        error: None,
        marker: std::marker::PhantomData,
    };
    let model = model.map(&mut loader);
    if let Some(error) = loader.error {
        return Err(error);
    }
    let Loader {
        used, mut report, ..
    } = loader;
    for (name, tensor) in &tensors {
        if used.contains(name) {
            continue;
        }
        let reason = if name.ends_with("num_batches_tracked") {
            "num_batches_tracked"
        } else if name.starts_with("conv_seg.") {
            "MedicalNet's segmentation head conv_seg"
        } else if name.starts_with("fc.") {
            // Only a head of another shape gets here: one that fits was loaded.
            "head of another shape"
        } else {
            let _ = tensor;
            return Err(PytorchError::Unknown {
                path: path.to_owned(),
                name: name.clone(),
            });
        };
        skipped.push((name.clone(), reason));
    }
    report.skipped = skipped;
    Ok((model, report))
}

type Skipped = Vec<(String, &'static str)>;

/// The file's tensors by normalised name (sorted, so errors name the same tensor every time),
/// and those dropped before matching (outside `state_dict`).
fn read_state_dict(path: &Path) -> Result<(BTreeMap<String, FileTensor>, Skipped), PytorchError> {
    let reader = PytorchReader::new(path).map_err(|error| PytorchError::Read {
        path: path.to_owned(),
        reason: error.to_string().replace('\n', " "),
    })?;
    let all = reader.into_tensors();
    if all.is_empty() {
        return Err(PytorchError::NotStateDict {
            path: path.to_owned(),
        });
    }
    let nested = all.keys().any(|name| name.starts_with("state_dict."));
    let mut tensors = BTreeMap::new();
    let mut skipped = Vec::new();
    for (name, tensor) in all {
        let name = match (nested, name.strip_prefix("state_dict.")) {
            (true, Some(inner)) => inner.to_owned(),
            (true, None) => {
                skipped.push((name, "outside state_dict"));
                continue;
            }
            (false, _) => name,
        };
        let name = name
            .strip_prefix("module.")
            .map(str::to_owned)
            .unwrap_or(name);
        tensors.insert(name, tensor);
    }
    skipped.sort();
    Ok((tensors, skipped))
}

struct Loader<'a, C> {
    path: Vec<String>,
    file_path: &'a Path,
    tensors: &'a BTreeMap<String, FileTensor>,
    architecture: &'a str,
    used: HashSet<String>,
    report: InitReport,
    error: Option<PytorchError>,
    marker: std::marker::PhantomData<C>,
}

impl<C: Classifier> Loader<'_, C> {
    /// The values for a parameter of `module_path` and burn shape `shape`: `Ok(None)` keeps the
    /// parameter as it is (a head the file does not fit).
    fn values(
        &mut self,
        module_path: &str,
        shape: &[usize],
    ) -> Result<Option<Vec<f32>>, PytorchError> {
        let file_path = self.file_path.to_owned();
        let Some(ParamName { name, layout, .. }) = C::param_name(module_path) else {
            return Err(PytorchError::Unsupported {
                path: file_path,
                architecture: self.architecture.to_owned(),
            });
        };
        if layout != Layout::PyTorch {
            return Err(PytorchError::Unsupported {
                path: file_path,
                architecture: self.architecture.to_owned(),
            });
        }
        let head = C::is_head(module_path);
        let Some(tensor) = self.tensors.get(&name) else {
            if head {
                self.report.initialised.push(name);
                return Ok(None);
            }
            return Err(PytorchError::Missing {
                path: file_path,
                name,
            });
        };
        if tensor.shape() != shape {
            if head {
                self.report.initialised.push(name);
                return Ok(None);
            }
            return Err(PytorchError::Shape {
                path: file_path,
                name,
                found: tensor.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        let bytes = tensor.read().map_err(|error| PytorchError::Read {
            path: file_path.clone(),
            reason: error.to_string().replace('\n', " "),
        })?;
        let values = match tensor.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            dtype => {
                return Err(PytorchError::Dtype {
                    path: file_path,
                    name,
                    dtype: format!("{dtype:?}"),
                });
            }
        };
        self.used.insert(name.clone());
        self.report.loaded.push(name);
        Ok(Some(values))
    }
}

impl<C: Classifier> ModuleMapper for Loader<'_, C> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let module_path = self.path.join(".");
        let shape = param.lazy_shape().dims::<D>();
        match self.values(&module_path, &shape) {
            Ok(Some(values)) => crate::weights::with_values(param, values, shape),
            Ok(None) => param,
            Err(error) => {
                self.error = Some(error);
                param
            }
        }
    }
}
