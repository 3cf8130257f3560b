//! ONNX export: a trained [`Network`] as a standard ONNX graph (opset 17) that ONNX Runtime,
//! TensorRT or Triton run without ct3d.
//!
//! The graph is the network in inference mode: BatchNorm with its moving statistics, no
//! dropout. Input `input`: `[N, 1, X, Y, Z]` float32, the preprocessed volume in [0, 1] (`x`
//! slowest after the channel, as ct3d's tensors; `N` is dynamic or fixed). Outputs `logit`
//! `[N, 1]` and `probability` `[N, 1]` = sigmoid(logit / T), T being the run's calibration
//! temperature (1 without one), so the probability is what `ct3d predict` prints.
//!
//! The file is written with prost from the official schema (`onnx.proto` of ONNX 1.23.1, its
//! generated types in [`proto`]); nothing is assembled by hand. Each architecture lays out its own
//! nodes next to its forward pass (`seed_cnn::Model::to_onnx`, `resnet::ResNet::to_onnx`), so
//! the two cannot drift apart unnoticed: the export test runs both in ONNX Runtime against ct3d.

use burn::module::{Module as _, Param, RunningState};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use prost::Message as _;

use crate::Network;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto;

use proto::tensor_proto::DataType;
use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 17;

/// ONNX IR version 8 (the one opset 17 came with, read by every ONNX Runtime since 1.13).
const IR_VERSION: i64 = 8;

/// The batch dimension of the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// Any batch size (`N` symbolic).
    Dynamic,
    /// Exactly this many volumes per call.
    Fixed(usize),
}

/// What to export besides the network.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// The batch dimension.
    pub batch: BatchSize,
    /// Calibration temperature T applied before the sigmoid (`None`: T = 1, no node).
    pub temperature: Option<f64>,
    /// Metadata properties (key, value), in order: preprocessing, classes, provenance.
    pub metadata: Vec<(String, String)>,
    /// The producer's version (ct3d's).
    pub producer_version: String,
}

/// Why a network cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The batch size is zero.
    #[error("batch size 0: give at least 1, or a dynamic batch")]
    ZeroBatch,
    /// The temperature is not a positive finite number.
    #[error("calibration temperature {0} is not a positive number")]
    Temperature(f64),
}

/// Serialises `network` (in inference mode) as an ONNX model; see the module docs for the
/// graph's inputs and outputs.
pub fn export(network: &Network, options: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    if options.batch == BatchSize::Fixed(0) {
        return Err(OnnxError::ZeroBatch);
    }
    if let Some(t) = options.temperature
        && !(t.is_finite() && t > 0.0)
    {
        return Err(OnnxError::Temperature(t));
    }
    // `valid` folds burn's per-thread BatchNorm updates into the values read here (as saving
    // weights does).
    let network = network.valid();
    let mut graph = Graph::default();
    let logit = match &network {
        Network::SeedCnn(model) => model.to_onnx(&mut graph, "input"),
        Network::ResNet(model) => model.to_onnx(&mut graph, "input"),
    };
    graph.node("Identity", &[&logit], "logit", vec![]);
    let scaled = match options.temperature {
        Some(t) if t != 1.0 => {
            let temperature = graph.constant("temperature", &[], vec![t as f32]);
            graph.op("Div", &["logit", &temperature], vec![])
        }
        _ => "logit".to_owned(),
    };
    graph.node("Sigmoid", &[&scaled], "probability", vec![]);

    let input_size = crate::Classifier::input_size(&network);
    let batch = match options.batch {
        BatchSize::Dynamic => Dim::Param("N"),
        BatchSize::Fixed(n) => Dim::Value(n as i64),
    };
    let mut input_dims = vec![batch.clone(), Dim::Value(1)];
    input_dims.extend(input_size.iter().map(|&s| Dim::Value(s as i64)));
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("ct3d".to_owned()),
        producer_version: Some(options.producer_version.clone()),
        doc_string: Some(
            "3D CT classifier exported by ct3d: input [N, 1, X, Y, Z] float32 in [0, 1] \
             (see the metadata for the preprocessing); outputs logit and probability [N, 1]."
                .to_owned(),
        ),
        graph: Some(GraphProto {
            name: Some(network.architecture().name().to_owned()),
            node: graph.nodes,
            initializer: graph.initializers,
            input: vec![value_info("input", &input_dims)],
            output: vec![
                value_info("logit", &[batch.clone(), Dim::Value(1)]),
                value_info("probability", &[batch, Dim::Value(1)]),
            ],
            ..Default::default()
        }),
        metadata_props: options
            .metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key.clone()),
                value: Some(value.clone()),
            })
            .collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

#[derive(Debug, Clone)]
enum Dim {
    Value(i64),
    Param(&'static str),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use proto::tensor_shape_proto::{Dimension, dimension};
    use proto::type_proto::{Tensor as TensorType, Value};
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(Value::TensorType(TensorType {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Dim::Value(v) => dimension::Value::DimValue(*v),
                                Dim::Param(p) => dimension::Value::DimParam((*p).to_owned()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The nodes and weights of a graph under construction, with fresh value names.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

/// An attribute of a node.
pub(crate) enum Attr {
    Ints(&'static str, Vec<i64>),
    Int(&'static str, i64),
    Float(&'static str, f32),
}

impl Attr {
    fn proto(self) -> AttributeProto {
        use proto::attribute_proto::AttributeType;
        match self {
            Attr::Ints(name, values) => AttributeProto {
                name: Some(name.to_owned()),
                r#type: Some(AttributeType::Ints as i32),
                ints: values,
                ..Default::default()
            },
            Attr::Int(name, value) => AttributeProto {
                name: Some(name.to_owned()),
                r#type: Some(AttributeType::Int as i32),
                i: Some(value),
                ..Default::default()
            },
            Attr::Float(name, value) => AttributeProto {
                name: Some(name.to_owned()),
                r#type: Some(AttributeType::Float as i32),
                f: Some(value),
                ..Default::default()
            },
        }
    }
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// Adds node `op_type(inputs) → output`.
    fn node(&mut self, op_type: &str, inputs: &[&str], output: &str, attrs: Vec<Attr>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: Some(format!("{op_type}_{}", self.nodes.len())),
            op_type: Some(op_type.to_owned()),
            attribute: attrs.into_iter().map(Attr::proto).collect(),
            ..Default::default()
        });
    }

    /// Adds node `op_type(inputs)` and returns its output's fresh name.
    pub(crate) fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        let output = self.fresh(&op_type.to_lowercase());
        self.node(op_type, inputs, &output, attrs);
        output
    }

    /// A float32 initializer `name` of `dims` holding `values` (row-major); returns its name.
    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_owned()
    }

    /// An int64 initializer `name` of shape `[values.len()]`; returns its name.
    pub(crate) fn constant_i64(&mut self, name: &str, values: &[i64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_owned()
    }

    /// A parameter tensor as an initializer named `name`.
    pub(crate) fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) -> String {
        let tensor = param.val();
        let dims = tensor.dims();
        self.constant(name, &dims, values(tensor))
    }

    /// `Conv(x, weight[, bias])` with `kernel³`, `stride³` and `padding` on every side.
    pub(crate) fn conv(
        &mut self,
        x: &str,
        name: &str,
        weight: &Param<Tensor<5>>,
        bias: Option<&Param<Tensor<1>>>,
        stride: usize,
        padding: usize,
    ) -> String {
        let kernel = weight.val().dims()[2..].to_vec();
        let w = self.param(&format!("{name}.weight"), weight);
        let b = bias.map(|b| self.param(&format!("{name}.bias"), b));
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let p = padding as i64;
        let s = stride as i64;
        self.op(
            "Conv",
            &inputs,
            vec![
                Attr::Ints("kernel_shape", kernel.iter().map(|&k| k as i64).collect()),
                Attr::Ints("strides", vec![s; 3]),
                Attr::Ints("pads", vec![p; 6]),
                Attr::Ints("dilations", vec![1; 3]),
                Attr::Int("group", 1),
            ],
        )
    }

    /// Inference-mode `BatchNormalization` with `norm`'s moving statistics.
    pub(crate) fn batch_norm(&mut self, x: &str, name: &str, norm: &BatchNorm) -> String {
        let scale = self.param(&format!("{name}.weight"), &norm.gamma);
        let bias = self.param(&format!("{name}.bias"), &norm.beta);
        let mean = self.running(&format!("{name}.running_mean"), &norm.running_mean);
        let var = self.running(&format!("{name}.running_var"), &norm.running_var);
        self.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![Attr::Float("epsilon", norm.epsilon as f32)],
        )
    }

    fn running(&mut self, name: &str, state: &RunningState<Tensor<1>>) -> String {
        let tensor = state.value();
        let dims = tensor.dims();
        self.constant(name, &dims, values(tensor))
    }

    /// `MaxPool` with `kernel³`, `stride³` and `padding` on every side (padding never wins).
    pub(crate) fn max_pool(
        &mut self,
        x: &str,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> String {
        self.op(
            "MaxPool",
            &[x],
            vec![
                Attr::Ints("kernel_shape", vec![kernel as i64; 3]),
                Attr::Ints("strides", vec![stride as i64; 3]),
                Attr::Ints("pads", vec![padding as i64; 6]),
            ],
        )
    }

    /// `[N, C, …]` → `[N, C]`: the mean over all voxels.
    pub(crate) fn global_average(&mut self, x: &str) -> String {
        let pooled = self.op("GlobalAveragePool", &[x], vec![]);
        self.op("Flatten", &[&pooled], vec![Attr::Int("axis", 1)])
    }

    /// `x · W + b` for `x` `[N, in]`; `transposed` when `weight` is `[out, in]` (PyTorch's
    /// layout) rather than `[in, out]` (burn's and Keras's).
    pub(crate) fn dense(
        &mut self,
        x: &str,
        name: &str,
        weight: &Param<Tensor<2>>,
        bias: Option<&Param<Tensor<1>>>,
        transposed: bool,
    ) -> String {
        let w = self.param(&format!("{name}.weight"), weight);
        let b = bias.map(|b| self.param(&format!("{name}.bias"), b));
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        self.op(
            "Gemm",
            &inputs,
            vec![Attr::Int("transB", i64::from(transposed))],
        )
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}
