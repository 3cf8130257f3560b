//! Explanations: Grad-CAM and Grad-CAM++ of the seed CNN against TensorFlow's GradientTape
//! (golden files from `tools/golden/gen_gradcam_golden.py` in `tests/data/gradcam/`), the
//! forward split they rely on, and occlusion's bookkeeping.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use ct3d_model::explain::{
    GradExplainer, GradMethod, Occlusion, OcclusionFill, Target, occlusion, occlusion_with,
};
use ct3d_model::weights::load_weights;
use ct3d_model::{
    Architecture, Classifier, ModelParams, Network, ResNetParams, Shortcut, predict_proba,
};
use ct3d_volume::Volume;
use safetensors::SafeTensors;

/// The parity: ct3d's maps within 1e-4 of TensorFlow's, relative to the map's peak.
const TOLERANCE: f64 = 1e-4;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gradcam")
        .join(name)
}

fn f32s(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The generator's network: filters 4, 4, 8, dense 8, input 30×30×30, its weights loaded.
fn golden_network() -> Network {
    let config = ModelParams {
        filters: vec![4, 4, 8],
        dense: 8,
        ..ModelParams::default()
    }
    .at([30, 30, 30]);
    let network = Architecture::SeedCnn
        .init(&config, &Device::flex(), 1)
        .unwrap();
    load_weights(network, &data("seed_weights.safetensors")).unwrap()
}

/// A C-order (`z` fastest) array of `shape` as a volume.
fn volume_from_c_order(values: &[f32], [nx, ny, nz]: [usize; 3]) -> Volume {
    Volume::from_fn([nx, ny, nz], |x, y, z| values[(x * ny + y) * nz + z])
}

/// `max |a − e| / max |e|` over the map.
fn relative_to_peak(actual: &Volume, expected: &Volume) -> f64 {
    assert_eq!(actual.shape(), expected.shape());
    let peak = expected
        .data()
        .iter()
        .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let worst = actual
        .data()
        .iter()
        .zip(expected.data())
        .fold(0.0f64, |m, (&a, &e)| {
            m.max((f64::from(a) - f64::from(e)).abs())
        });
    worst / peak.max(1e-12)
}

#[test]
fn grad_cam_of_the_seed_cnn_equals_tensorflow_gradient_tape() {
    let bytes = std::fs::read(data("io.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let input = volume_from_c_order(&f32s(&file.tensor("input").unwrap()), [30, 30, 30]);
    let logit = f32s(&file.tensor("logit").unwrap())[0];
    let network = golden_network();
    let explainer = GradExplainer::new(&network);
    assert_eq!(explainer.layer_names(), ["block1", "block2", "block3"]);
    for (layer, name) in explainer.layer_names().iter().enumerate() {
        for (method, prefix) in [
            (GradMethod::GradCam, "gradcam"),
            (GradMethod::GradCamPlusPlus, "gradcampp"),
        ] {
            let view = file.tensor(&format!("{prefix}/{name}")).unwrap();
            let shape: [usize; 3] = view.shape().try_into().unwrap();
            let expected = volume_from_c_order(&f32s(&view), shape);
            let map = explainer
                .layer_map(&input, layer, method, Target::Positive)
                .unwrap();
            let difference = relative_to_peak(&map.map, &expected);
            println!("{prefix} {name}: max difference / peak = {difference:.2e}");
            assert!(
                difference <= TOLERANCE,
                "{prefix} {name}: {difference:.2e} relative to the peak"
            );
            assert!(
                (f64::from(map.logit) - f64::from(logit)).abs() <= 1e-4 * f64::from(logit).abs(),
                "logit {} vs TensorFlow's {logit}",
                map.logit
            );
            if method == GradMethod::GradCam {
                let weights = f32s(&file.tensor(&format!("weights/{name}")).unwrap());
                let peak = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                for (a, e) in map.weights.iter().zip(&weights) {
                    assert!((a - e).abs() <= 1e-4 * peak, "{name} weights {a} vs {e}");
                }
            }
        }
    }
    // The negative class's score is the negated logit: its channel weights flip sign.
    let positive = explainer
        .layer_map(&input, 2, GradMethod::GradCam, Target::Positive)
        .unwrap();
    let negative = explainer
        .layer_map(&input, 2, GradMethod::GradCam, Target::Negative)
        .unwrap();
    for (p, n) in positive.weights.iter().zip(&negative.weights) {
        assert!((p + n).abs() <= 1e-6 * p.abs().max(1.0));
    }
    // Upsampled to the input grid, the map keeps the input's shape.
    let (upsampled, _) = explainer
        .input_map(&input, 1, GradMethod::GradCam, Target::Positive)
        .unwrap();
    assert_eq!(upsampled.shape(), [30, 30, 30]);
}

#[test]
fn forward_from_after_forward_to_is_forward_for_every_architecture() {
    let device = Device::flex();
    let seed = ModelParams {
        filters: vec![2, 3],
        dense: 4,
        ..ModelParams::default()
    }
    .at([12, 10, 10]);
    let resnet = ModelParams {
        resnet: Some(ResNetParams {
            widths: [2, 2, 4, 4],
            shortcut: Shortcut::B,
            downsample_bias: false,
        }),
        ..ModelParams::default()
    }
    .at([16, 14, 12]);
    for (architecture, config, layers) in [
        (Architecture::SeedCnn, &seed, vec!["block1", "block2"]),
        (
            Architecture::Resnet18,
            &resnet,
            vec!["stem", "layer1", "layer2", "layer3", "layer4"],
        ),
    ] {
        let network = architecture.init(config, &device, 3).unwrap();
        assert_eq!(network.layer_names(), layers);
        let [x, y, z] = config.input;
        let values: Vec<f32> = (0..x * y * z)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let input =
            || Tensor::<5>::from_data(TensorData::new(values.clone(), [1, 1, x, y, z]), &device);
        let whole = Classifier::forward(&network, input())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (layer, name) in layers.iter().enumerate() {
            let split = network
                .forward_from(layer, network.forward_to(layer, input()))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(split, whole, "{architecture} split at {name}");
        }
        // Grad-CAM works behind the seam for every architecture.
        let volume = Volume::from_fn(config.input, |i, j, k| values[(i * y + j) * z + k]);
        let map = GradExplainer::new(&network)
            .layer_map(
                &volume,
                layers.len() - 1,
                GradMethod::GradCam,
                Target::Positive,
            )
            .unwrap();
        assert!(map.map.data().iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!((map.logit - whole[0]).abs() <= 1e-5 * whole[0].abs().max(1.0));
    }
}

#[test]
fn occlusion_credits_each_patch_its_probability_drop() {
    let network = golden_network();
    let volume = Volume::from_fn([30, 30, 30], |x, y, z| {
        if (x as f32 - 19.0).powi(2) + (y as f32 - 11.0).powi(2) + (z as f32 - 15.0).powi(2) < 40.0
        {
            0.9
        } else {
            0.2 + 0.01 * z as f32
        }
    });
    let probability = |v: &Volume| {
        let input =
            ct3d_model::input::batch_from_volumes(&[v], [30, 30, 30], &Device::flex()).unwrap();
        predict_proba(&network, input).unwrap()[0]
    };
    let mean = volume.data().iter().map(|&v| f64::from(v)).sum::<f64>() / volume.len() as f64;
    // One patch over everything: every voxel gets p(x) − p(all mean).
    let whole = Occlusion {
        patch: [30, 30, 30],
        stride: [30, 30, 30],
        batch: 4,
        fill: OcclusionFill::MeanImage,
        refine: 0,
    };
    let mut calls = Vec::new();
    let result = occlusion(&network, &volume, &whole, &mut |d, t| calls.push((d, t))).unwrap();
    let flat = Volume::filled([30, 30, 30], mean as f32);
    let drop = probability(&volume) - probability(&flat);
    assert!((result.probability - probability(&volume)).abs() < 1e-6);
    assert!(result.map.data().iter().all(|v| (v - drop).abs() < 1e-5));
    assert_eq!(calls, vec![(1, 1)]);
    // Two overlapping patches along x: the overlap averages both drops.
    let two = Occlusion {
        patch: [20, 30, 30],
        stride: [10, 30, 30],
        batch: 1,
        fill: OcclusionFill::MeanImage,
        refine: 0,
    };
    let result = occlusion(&network, &volume, &two, &mut |_, _| {}).unwrap();
    let hidden = |x0: usize| {
        let mut v = volume.clone();
        for x in x0..x0 + 20 {
            for y in 0..30 {
                for z in 0..30 {
                    let i = v.index(x, y, z);
                    v.data_mut()[i] = mean as f32;
                }
            }
        }
        probability(&volume) - probability(&v)
    };
    let (first, second) = (hidden(0), hidden(10));
    assert!((result.map.get(5, 3, 3) - first).abs() < 1e-5);
    assert!((result.map.get(25, 3, 3) - second).abs() < 1e-5);
    assert!((result.map.get(15, 3, 3) - (first + second) / 2.0).abs() < 1e-5);
    // Settings that do not fit are refused, not a panic.
    let too_big = Occlusion {
        patch: [31, 1, 1],
        stride: [1, 1, 1],
        batch: 1,
        fill: OcclusionFill::MeanImage,
        refine: 0,
    };
    assert!(occlusion(&network, &volume, &too_big, &mut |_, _| {}).is_err());
}

/// MONAI's `OcclusionSensitivity` on a linear scorer (`tools/golden/gen_occlusion_golden.py`,
/// torch 2.15, MONAI 1.6.1): for the Gaussian fill and the image mean, with and without overlap,
/// ct3d's windows are MONAI's and its map is `p(x)` minus MONAI's map.
#[test]
fn occlusion_equals_monai_on_a_linear_scorer() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/occlusion/monai_occlusion.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let triple = |v: &serde_json::Value| -> [usize; 3] {
        let f = floats(v);
        [f[0] as usize, f[1] as usize, f[2] as usize]
    };
    let size = triple(&golden["shape"]);
    let [_, ny, nz] = size;
    let values = floats(&golden["volume"]);
    let weights = floats(&golden["weights"]);
    let bias = golden["bias"].as_f64().unwrap();
    // The golden arrays are row-major [x][y][z]; a Volume is x fastest.
    let volume = Volume::from_fn(size, |x, y, z| values[(x * ny + y) * nz + z] as f32);
    let mut scorer = |data: Vec<f32>, n: usize| -> Result<Vec<f32>, ct3d_model::ModelError> {
        assert_eq!(data.len(), n * weights.len());
        Ok(data
            .chunks(weights.len())
            .map(|v| {
                let logit: f64 = v
                    .iter()
                    .zip(&weights)
                    .map(|(&a, &w)| f64::from(a) * w)
                    .sum::<f64>()
                    + bias;
                (1.0 / (1.0 + (-logit).exp())) as f32
            })
            .collect())
    };
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let fill = match case["mode"].as_str().unwrap() {
            "gaussian" => OcclusionFill::Gaussian,
            "mean_img" => OcclusionFill::MeanImage,
            other => panic!("unknown mode {other}"),
        };
        let settings = Occlusion {
            patch: triple(&case["patch"]),
            stride: triple(&case["stride"]),
            batch: 3,
            fill,
            refine: 0,
        };
        let starts: Vec<Vec<usize>> = case["starts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|axis| floats(axis).into_iter().map(|v| v as usize).collect())
            .collect();
        assert_eq!(settings.starts(size).to_vec(), starts, "{settings:?}");
        let result = occlusion_with(&volume, size, &settings, &mut scorer, &mut |_, _| {}).unwrap();
        assert!((f64::from(result.probability) - golden["p0"].as_f64().unwrap()).abs() < 1e-6);
        let expected = floats(&case["expected"]);
        let worst = (0..expected.len())
            .map(|i| {
                let (x, y, z) = (i / (ny * nz), (i / nz) % ny, i % nz);
                (f64::from(result.map.get(x, y, z)) - expected[i]).abs()
            })
            .fold(0.0, f64::max);
        // float32 probabilities near 0.9 differ by a few ulps (6e-8) between the two sums.
        assert!(worst < 2e-6, "{settings:?}: max difference {worst:e}");
    }
}
