//! Model weights and optimizer state in safetensors files, named and laid out like Keras's.
//!
//! Works for any network through [`Classifier`]: each architecture names its parameters
//! ([`Classifier::param_name`]); this module reads and writes the files.
//!
//! # Layout of a weights file
//! One little-endian `F32` tensor per weight. The seed CNN's are named `layer/weight` with
//! Keras's layer names (the `i`-th layer of a type gets the suffix `_i` from the second on):
//!
//! | tensor                                   | shape                        |
//! |------------------------------------------|------------------------------|
//! | `conv3d{,_1,_2,_3}/kernel`               | `[3, 3, 3, in, out]`         |
//! | `conv3d{,_1,_2,_3}/bias`                 | `[out]`                      |
//! | `batch_normalization{,_1,…}/gamma`       | `[channels]`                 |
//! | `batch_normalization{,_1,…}/beta`        | `[channels]`                 |
//! | `batch_normalization{,_1,…}/moving_mean` | `[channels]`                 |
//! | `batch_normalization{,_1,…}/moving_variance` | `[channels]`             |
//! | `dense/kernel`, `dense/bias`             | `[256, 512]`, `[512]`        |
//! | `dense_1/kernel`, `dense_1/bias`         | `[512, 1]`, `[1]`            |
//!
//! Kernels are stored in **Keras's order** — `[kx, ky, kz, in, out]` for Conv3D, `[in, out]` for
//! Dense — not burn's `[out, in, kx, ky, kz]`, so the file loads into the Keras model
//! (`layer.set_weights([...])`) or any other tool without a transpose; `kx, ky, kz` follow the
//! input axes `[x, y, z]` (Keras's `W, H, D`). The header's `__metadata__` holds
//! `format = ct3d-keras-v1` (this layout). Identical weights give byte-identical files.
//!
//! # Optimizer state
//! [`save_optimizer`] writes Keras Adam's state the same way: `optimizer/iterations` (`I64`,
//! shape `[]`) and, per trainable weight, `optimizer/<weight>/m` and `optimizer/<weight>/v` in
//! the weight's Keras shape.
//!
//! # ResNets: PyTorch's names and layout
//! The ResNets ([`crate::resnet`]) name their tensors as a PyTorch state dict does
//! (`conv1.weight`, `layer1.0.bn1.running_mean`, `fc.weight`) and store them in PyTorch's
//! shapes (`[out, in, k, k, k]`, the head `[1, features]`): [`Layout::PyTorch`], `format =
//! ct3d-pytorch-v1`. Such a file loads into MONAI's network with `load_state_dict` (with
//! `strict=False`: it has no `num_batches_tracked`).
//!
//! All files are written atomically (temporary file + rename): a crash or a full disk leaves the
//! previous file intact. Every error is one line naming the file.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use ct3d_volume::atomic::write_bytes_atomic;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::architecture::Classifier;
use crate::train_step::{Adam, AdamConfig, Moments};

/// Why weights or optimizer state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("cannot read weights file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file could not be written (the previous file, if any, is intact).
    #[error("cannot write weights file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a complete safetensors file.
    #[error("weights file {} is corrupt or truncated: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser found.
        reason: String,
    },
    /// A weight the model needs is absent.
    #[error("weights file {} has no tensor {name}; it was saved from a different architecture", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// Keras name of the missing tensor.
        name: String,
    },
    /// A tensor has another shape than the model's weight.
    #[error("weights file {}: {name} has shape {found:?} but the model expects {expected:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// Keras name of the tensor.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the model needs (Keras order).
        expected: Vec<usize>,
    },
    /// A tensor is not stored as the expected element type.
    #[error("weights file {}: {name} is stored as {found}, expected {expected}", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// Keras name of the tensor.
        name: String,
        /// Element type in the file.
        found: String,
        /// Element type required.
        expected: &'static str,
    },
    /// The model has a parameter its architecture gives no name in a weights file, which only
    /// a change to a network without the matching change to its names can produce.
    #[error("cannot use weights file {}: the model's parameter `{parameter}` has no name in the file format", path.display())]
    Unnamed {
        /// The file.
        path: PathBuf,
        /// burn module path of the parameter.
        parameter: String,
    },
    /// The file holds a tensor the model has no place for.
    #[error("weights file {}: tensor {name} does not belong to this model; it was saved from a different architecture", path.display())]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// Name of the extra tensor.
        name: String,
    },
}

/// A parameter's place in a weights file, as its architecture defines it
/// ([`Classifier::param_name`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamName {
    /// The tensor's name in the file (`conv3d_1/kernel`).
    pub name: String,
    /// Whether the optimizer updates it (and [`save_optimizer`] stores moments for it); moving
    /// statistics are not trained.
    pub trainable: bool,
    /// How its values are laid out in the file.
    pub layout: Layout,
}

/// How a parameter's values are laid out in a weights file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Keras's order: Conv3D kernels `[kx, ky, kz, in, out]`, everything else as burn holds it
    /// (the seed CNN).
    Keras,
    /// Exactly as the parameter is held (`[out, in, kx, ky, kz]` kernels), which is PyTorch's
    /// order for the networks that use it (the ResNets).
    PyTorch,
}

impl Layout {
    /// The file's shape for a parameter of burn shape `shape`.
    fn file_shape(self, shape: &[usize]) -> Vec<usize> {
        match self {
            Layout::Keras => keras_shape(shape),
            Layout::PyTorch => shape.to_vec(),
        }
    }

    /// Burn-order `values` of burn shape `shape` in the file's order.
    fn burn_to_file(self, shape: &[usize], values: Vec<f32>) -> Vec<f32> {
        match self {
            Layout::Keras => to_keras_order(shape, values),
            Layout::PyTorch => values,
        }
    }

    /// The file's `values` of a parameter of burn shape `shape` in burn's order.
    fn file_to_burn(self, shape: &[usize], values: Vec<f32>) -> Vec<f32> {
        match self {
            Layout::Keras => from_keras_order(shape, values),
            Layout::PyTorch => values,
        }
    }
}

const ITERATIONS: &str = "optimizer/iterations";
/// Header `__metadata__` value of `format`: Keras names, Keras kernel layout, version 1.
const FORMAT: &str = "ct3d-keras-v1";
/// `format` of files in [`Layout::PyTorch`]: PyTorch names and shapes, version 1.
const FORMAT_PYTORCH: &str = "ct3d-pytorch-v1";

/// Writes every weight of `model` (including BatchNorm moving statistics) to `path`.
pub fn save_weights<C: Classifier>(model: &C, path: &Path) -> Result<(), WeightsError> {
    // `valid` folds burn's per-thread BatchNorm updates into the values read here.
    let entries = collect(&model.valid(), path)?;
    let format = file_format(entries.iter().map(|entry| entry.layout));
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .into_iter()
        .map(|entry| {
            let shape = entry.layout.file_shape(&entry.shape);
            let values = entry.layout.burn_to_file(&entry.shape, entry.values);
            (entry.name, shape, f32_bytes(&values))
        })
        .collect();
    write_file(path, &tensors, [], format)
}

/// Replaces every weight of `model` with the one stored in `path`, keeping the model's device
/// and training state. The file must hold exactly the model's weights, with the same shapes.
pub fn load_weights<C: Classifier>(model: C, path: &Path) -> Result<C, WeightsError> {
    let bytes = read_file(path)?;
    let file = parse(path, &bytes)?;
    let mut loader = Loader {
        name: C::param_name,
        path: Vec::new(),
        file: &file,
        file_path: path,
        used: HashSet::new(),
        error: None,
    };
    let model = model.map(&mut loader);
    if let Some(error) = loader.error {
        return Err(error);
    }
    reject_unused(path, &file, &loader.used)?;
    Ok(model)
}

/// Writes `optimizer`'s iteration count and moments to `path`, under the names `model` (the
/// module `optimizer` trains) gives its parameters.
pub fn save_optimizer<C: Classifier>(
    optimizer: &Adam,
    _model: &C,
    path: &Path,
) -> Result<(), WeightsError> {
    let mut tensors = Vec::new();
    let mut layouts = Vec::new();
    for (module_path, moments) in &optimizer.moments {
        let ParamName { name, layout, .. } =
            C::param_name(module_path).ok_or_else(|| unnamed(path, module_path))?;
        layouts.push(layout);
        let shape = layout.file_shape(&moments.shape);
        for (slot, tensor) in [("m", &moments.m), ("v", &moments.v)] {
            let values = layout.burn_to_file(&moments.shape, host_f32(tensor.clone()));
            tensors.push((
                format!("optimizer/{name}/{slot}"),
                shape.clone(),
                f32_bytes(&values),
            ));
        }
    }
    let iterations = i64::try_from(optimizer.iterations()).unwrap_or(i64::MAX);
    let format = file_format(layouts.into_iter());
    write_file(path, &tensors, [(ITERATIONS, iterations)], format)
}

/// Reads optimizer state saved by [`save_optimizer`] for `model` (which fixes the weights' names,
/// shapes and device).
pub fn load_optimizer<C: Classifier>(
    config: AdamConfig,
    model: &C,
    path: &Path,
) -> Result<Adam, WeightsError> {
    let bytes = read_file(path)?;
    let file = parse(path, &bytes)?;
    let iterations = read_iterations(path, &file)?;
    let mut used = HashSet::from([ITERATIONS.to_owned()]);
    let mut moments = HashMap::new();
    for entry in collect(model, path)?
        .into_iter()
        .filter(|entry| entry.trainable)
    {
        if iterations == 0 && file.tensor(&format!("optimizer/{}/m", entry.name)).is_err() {
            continue;
        }
        let device = entry.device.clone().without_autodiff();
        let mut slot = |slot: &str| -> Result<Tensor<1>, WeightsError> {
            let name = format!("optimizer/{}/{slot}", entry.name);
            let values = read_tensor(path, &file, &name, &entry.shape, entry.layout)?;
            used.insert(name);
            let numel = values.len();
            Ok(Tensor::from_data(TensorData::new(values, [numel]), &device))
        };
        let (m, v) = (slot("m")?, slot("v")?);
        moments.insert(
            entry.module_path,
            Moments {
                m,
                v,
                shape: entry.shape,
            },
        );
    }
    reject_unused(path, &file, &used)?;
    Ok(Adam::restore(config, iterations, moments))
}

/// Calls `f` with the file name of every parameter of `model`, in module order (parameters
/// without a name are left out).
pub fn visit_names<C: Classifier>(model: &C, f: impl FnMut(&str)) {
    struct Names<F> {
        name: fn(&str) -> Option<ParamName>,
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str)> ModuleVisitor for Names<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            if let Some(name) = (self.name)(&self.path.join(".")) {
                (self.f)(&name.name);
            }
        }
    }
    model.visit(&mut Names {
        name: C::param_name,
        path: Vec::new(),
        f,
    });
}

fn unnamed(path: &Path, module_path: &str) -> WeightsError {
    WeightsError::Unnamed {
        path: path.to_owned(),
        parameter: module_path.to_owned(),
    }
}

/// One parameter read back to the host.
struct Entry {
    module_path: String,
    name: String,
    /// burn's shape.
    shape: Vec<usize>,
    /// burn's element order.
    values: Vec<f32>,
    trainable: bool,
    layout: Layout,
    device: Device,
}

/// The header's `format` for a file whose tensors have `layouts` (one network has one layout;
/// an empty optimizer state is Keras's, as it always was).
fn file_format(mut layouts: impl Iterator<Item = Layout>) -> &'static str {
    match layouts.next() {
        Some(Layout::PyTorch) => FORMAT_PYTORCH,
        _ => FORMAT,
    }
}

/// Every parameter of `model` with its name; `file` is the weights file the error names.
fn collect<C: Classifier>(model: &C, file: &Path) -> Result<Vec<Entry>, WeightsError> {
    struct Collector {
        name: fn(&str) -> Option<ParamName>,
        path: Vec<String>,
        entries: Vec<Entry>,
        unnamed: Option<String>,
    }
    impl ModuleVisitor for Collector {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let module_path = self.path.join(".");
            let Some(ParamName {
                name,
                trainable,
                layout,
            }) = (self.name)(&module_path)
            else {
                self.unnamed.get_or_insert(module_path);
                return;
            };
            let tensor = param.val();
            self.entries.push(Entry {
                module_path,
                name,
                shape: tensor.dims().to_vec(),
                device: tensor.device(),
                values: host_f32(tensor),
                trainable,
                layout,
            });
        }
    }
    let mut collector = Collector {
        name: C::param_name,
        path: Vec::new(),
        entries: Vec::new(),
        unnamed: None,
    };
    model.visit(&mut collector);
    match collector.unnamed {
        Some(module_path) => Err(unnamed(file, &module_path)),
        None => Ok(collector.entries),
    }
}

/// `param` with its values replaced by `values` (`shape`), on the same device, keeping its id
/// and whether it requires a gradient: how a file's tensor goes into a network.
pub(crate) fn with_values<const D: usize>(
    param: Param<Tensor<D>>,
    values: Vec<f32>,
    shape: [usize; D],
) -> Param<Tensor<D>> {
    let (id, old, mapper) = param.consume();
    let loaded = Tensor::<D>::from_data(TensorData::new(values, shape), &old.device())
        .set_require_grad(old.is_require_grad());
    Param::from_mapped_value(id, loaded, mapper)
}

struct Loader<'a> {
    name: fn(&str) -> Option<ParamName>,
    path: Vec<String>,
    file: &'a SafeTensors<'a>,
    file_path: &'a Path,
    used: HashSet<String>,
    error: Option<WeightsError>,
}

impl ModuleMapper for Loader<'_> {
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
        let Some(ParamName { name, layout, .. }) = (self.name)(&module_path) else {
            self.error = Some(unnamed(self.file_path, &module_path));
            return param;
        };
        let shape = param.lazy_shape().dims::<D>();
        match read_tensor(self.file_path, self.file, &name, &shape, layout) {
            Ok(values) => {
                self.used.insert(name);
                with_values(param, values, shape)
            }
            Err(error) => {
                self.error = Some(error);
                param
            }
        }
    }
}

/// Reads tensor `name`, which must be `F32` with the `layout` form of burn shape `shape`, and
/// returns its values in burn's order.
fn read_tensor(
    path: &Path,
    file: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    layout: Layout,
) -> Result<Vec<f32>, WeightsError> {
    let view = file.tensor(name).map_err(|_| WeightsError::Missing {
        path: path.to_owned(),
        name: name.to_owned(),
    })?;
    if view.dtype() != Dtype::F32 {
        return Err(WeightsError::Dtype {
            path: path.to_owned(),
            name: name.to_owned(),
            found: format!("{:?}", view.dtype()),
            expected: "F32",
        });
    }
    let expected = layout.file_shape(shape);
    if view.shape() != expected.as_slice() {
        return Err(WeightsError::Shape {
            path: path.to_owned(),
            name: name.to_owned(),
            found: view.shape().to_vec(),
            expected,
        });
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(layout.file_to_burn(shape, values))
}

fn read_iterations(path: &Path, file: &SafeTensors<'_>) -> Result<u64, WeightsError> {
    let view = file.tensor(ITERATIONS).map_err(|_| WeightsError::Missing {
        path: path.to_owned(),
        name: ITERATIONS.to_owned(),
    })?;
    match (view.dtype(), view.data()) {
        (Dtype::I64, &[b0, b1, b2, b3, b4, b5, b6, b7]) => {
            let value = i64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
            u64::try_from(value).map_err(|_| WeightsError::Corrupt {
                path: path.to_owned(),
                reason: format!("{ITERATIONS} is negative ({value})"),
            })
        }
        (dtype, _) => Err(WeightsError::Dtype {
            path: path.to_owned(),
            name: ITERATIONS.to_owned(),
            found: format!("{dtype:?} of shape {:?}", view.shape()),
            expected: "I64 of shape []",
        }),
    }
}

fn reject_unused(
    path: &Path,
    file: &SafeTensors<'_>,
    used: &HashSet<String>,
) -> Result<(), WeightsError> {
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|name| !used.contains(*name))
        .collect();
    extra.sort_unstable();
    match extra.first() {
        Some(name) => Err(WeightsError::Unexpected {
            path: path.to_owned(),
            name: (*name).to_owned(),
        }),
        None => Ok(()),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, WeightsError> {
    std::fs::read(path).map_err(|source| WeightsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, WeightsError> {
    SafeTensors::deserialize(bytes).map_err(|error| WeightsError::Corrupt {
        path: path.to_owned(),
        reason: error.to_string().replace('\n', " "),
    })
}

/// Serialises `F32` tensors plus `I64` scalars and writes them atomically.
fn write_file<const S: usize>(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    scalars: [(&str, i64); S],
    format: &str,
) -> Result<(), WeightsError> {
    let scalar_bytes: Vec<(String, [u8; 8])> = scalars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.to_le_bytes()))
        .collect();
    let mut views = Vec::with_capacity(tensors.len() + S);
    for (name, shape, bytes) in tensors {
        views.push((name.clone(), view(Dtype::F32, shape.clone(), bytes, path)?));
    }
    for (name, bytes) in &scalar_bytes {
        views.push((name.clone(), view(Dtype::I64, Vec::new(), bytes, path)?));
    }
    // One key: safetensors writes metadata in HashMap order, and byte-identical files for
    // identical weights are worth keeping.
    let metadata = HashMap::from([("format".to_owned(), format.to_owned())]);
    let bytes = safetensors::tensor::serialize(views, Some(metadata)).map_err(|error| {
        WeightsError::Write {
            path: path.to_owned(),
            source: io::Error::other(error.to_string()),
        }
    })?;
    write_bytes_atomic(path, &bytes).map_err(|source| WeightsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn view<'a>(
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: &'a [u8],
    path: &Path,
) -> Result<TensorView<'a>, WeightsError> {
    TensorView::new(dtype, shape, bytes).map_err(|error| WeightsError::Write {
        path: path.to_owned(),
        source: io::Error::other(error.to_string()),
    })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn host_f32<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// Keras's shape for a burn shape: Conv3D kernels `[out, in, kx, ky, kz]` → `[kx, ky, kz, in,
/// out]`; everything else is already in Keras's order.
fn keras_shape(shape: &[usize]) -> Vec<usize> {
    match *shape {
        [out, inp, kx, ky, kz] => vec![kx, ky, kz, inp, out],
        _ => shape.to_vec(),
    }
}

/// Reorders burn-order values of a tensor of burn shape `shape` into Keras's order.
fn to_keras_order(shape: &[usize], values: Vec<f32>) -> Vec<f32> {
    let [out, inp, kx, ky, kz] = *shape else {
        return values;
    };
    let mut keras = vec![0.0; values.len()];
    for (burn_index, value) in values.into_iter().enumerate() {
        keras[kernel_keras_index(burn_index, [out, inp, kx, ky, kz])] = value;
    }
    keras
}

/// Inverse of [`to_keras_order`].
fn from_keras_order(shape: &[usize], values: Vec<f32>) -> Vec<f32> {
    let [out, inp, kx, ky, kz] = *shape else {
        return values;
    };
    (0..values.len())
        .map(|burn_index| values[kernel_keras_index(burn_index, [out, inp, kx, ky, kz])])
        .collect()
}

/// Position in Keras's `[kx, ky, kz, in, out]` of element `burn_index` of `[out, in, kx, ky, kz]`.
fn kernel_keras_index(burn_index: usize, [out, inp, kx, ky, kz]: [usize; 5]) -> usize {
    let c = burn_index % kz;
    let b = burn_index / kz % ky;
    let a = burn_index / (kz * ky) % kx;
    let i = burn_index / (kz * ky * kx) % inp;
    let o = burn_index / (kz * ky * kx * inp);
    (((a * ky + b) * kz + c) * inp + i) * out + o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_reordering_is_a_transpose_and_round_trips() {
        let shape = [4, 2, 3, 3, 3];
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|v| v as f32)
            .collect();
        let keras = to_keras_order(&shape, values.clone());
        // burn element (o=3, i=1, a=2, b=0, c=1) sits at Keras [2, 0, 1, 1, 3].
        let burn_index = (((3 * 2 + 1) * 3 + 2) * 3) * 3 + 1;
        let keras_index = (((2 * 3) * 3 + 1) * 2 + 1) * 4 + 3;
        assert_eq!(keras[keras_index], burn_index as f32);
        assert_eq!(from_keras_order(&shape, keras), values);
        assert_eq!(keras_shape(&shape), vec![3, 3, 3, 2, 4]);
        assert_eq!(keras_shape(&[256, 512]), vec![256, 512]);
    }
}

#[cfg(test)]
mod unnamed_tests {
    use super::*;
    use crate::architecture::Dropout;
    use crate::seed_cnn::{Model, ModelConfig};
    use burn::module::Module;

    /// The seed CNN under another module path, whose names forget the output layer's bias: the
    /// situation a network change without a matching names change creates.
    #[derive(Module, Debug)]
    struct Forgetful {
        inner: Model,
    }

    impl Classifier for Forgetful {
        fn input_size(&self) -> [usize; 3] {
            self.inner.input_size()
        }
        fn forward(&self, input: Tensor<5>) -> Tensor<2> {
            self.inner.forward(input)
        }
        fn forward_with_dropout(&self, input: Tensor<5>, keep_mask: Tensor<2>) -> Tensor<2> {
            Classifier::forward_with_dropout(&self.inner, input, keep_mask)
        }
        fn embedding(&self, input: Tensor<5>) -> Tensor<2> {
            self.inner.embedding(input)
        }
        fn dropout(&self) -> Option<Dropout> {
            self.inner.dropout()
        }
        fn is_trainable(&self) -> bool {
            self.inner.is_trainable()
        }
        fn batch_norms(&self) -> Vec<&burn::nn::BatchNorm> {
            Classifier::batch_norms(&self.inner)
        }
        fn layer_names(&self) -> Vec<String> {
            self.inner.layer_names()
        }
        fn forward_to(&self, layer: usize, input: Tensor<5>) -> Tensor<5> {
            self.inner.forward_to(layer, input)
        }
        fn forward_from(&self, layer: usize, activation: Tensor<5>) -> Tensor<2> {
            self.inner.forward_from(layer, activation)
        }
        fn layer_placement(&self, layer: usize) -> (f64, f64) {
            self.inner.layer_placement(layer)
        }
        fn is_head(module_path: &str) -> bool {
            Model::is_head(module_path)
        }
        fn param_name(module_path: &str) -> Option<ParamName> {
            match module_path {
                "inner.output.bias" => None,
                path => Model::param_name(path.strip_prefix("inner.")?),
            }
        }
    }

    #[test]
    fn a_parameter_without_a_name_is_an_error_not_a_panic() {
        let config = ModelConfig {
            input: [46, 46, 46],
            filters: vec![2, 2, 2, 2],
            dense: 4,
            ..ModelConfig::default()
        };
        let model = Forgetful {
            inner: config.init(&Device::flex(), 1).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let expected = format!(
            "cannot use weights file {}: the model's parameter `inner.output.bias` has no name in the file format",
            path.display()
        );
        let err = save_weights(&model, &path).unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(!path.exists());

        save_weights(&model.inner, &path).unwrap();
        let err = load_weights(model, &path).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}
