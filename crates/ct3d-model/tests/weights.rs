//! Weights and optimizer state in safetensors: round trips, Keras names and layout, and the
//! one-line errors for files that do not fit.

use std::path::Path;

use crate::common::{default_kernels, random_batch, tiny_config};
use burn::tensor::Device;
use ct3d_model::weights::{load_optimizer, load_weights, save_optimizer, save_weights};
use ct3d_model::{Adam, AdamConfig, Model, ModelConfig, predict_proba, train_step};
use safetensors::SafeTensors;

/// A tiny model after two training steps (non-trivial moving statistics and Adam moments).
fn trained(config: &ModelConfig, device: &Device) -> (Model, Adam) {
    let mut model = config.init(device, 1).unwrap();
    let mut adam = Adam::new(AdamConfig::default());
    for step in 0..2u64 {
        let input = random_batch(step, 2, config.input, device);
        model = train_step(model, &mut adam, input, &[1.0, 0.0], 1e-2, step)
            .unwrap()
            .model;
    }
    (model, adam)
}

fn probe(model: &Model, config: &ModelConfig) -> Vec<f32> {
    predict_proba(model, random_batch(77, 2, config.input, &Device::flex())).unwrap()
}

#[test]
fn weights_round_trip_exactly_with_keras_names_and_layout() {
    let _kernels = default_kernels();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let device = Device::flex().autodiff();
    let (model, _) = trained(&config, &device);
    let path = dir.path().join("best.safetensors");
    save_weights(&model, &path).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(names.len(), 4 * 6 + 4);
    assert_eq!(
        file.tensor("conv3d/kernel").unwrap().shape(),
        [3, 3, 3, 1, 2]
    );
    assert_eq!(
        file.tensor("conv3d_3/kernel").unwrap().shape(),
        [3, 3, 3, 4, 5]
    );
    assert_eq!(
        file.tensor("batch_normalization_2/moving_variance")
            .unwrap()
            .shape(),
        [4]
    );
    assert_eq!(file.tensor("dense/kernel").unwrap().shape(), [5, 6]);
    assert_eq!(file.tensor("dense_1/kernel").unwrap().shape(), [6, 1]);
    // Training moved the moving mean away from its initial zeros, and it was saved.
    let moving_mean = file.tensor("batch_normalization/moving_mean").unwrap();
    assert!(moving_mean.data().iter().any(|&b| b != 0));

    // Loading into a differently initialised model reproduces predictions and the file.
    let other = load_weights(config.init(&device, 999).unwrap(), &path).unwrap();
    assert_eq!(probe(&other, &config), probe(&model, &config));
    let again = dir.path().join("again.safetensors");
    save_weights(&other, &again).unwrap();
    assert!(
        std::fs::read(&again).unwrap() == bytes,
        "re-saved file differs"
    );
    // And into a plain (inference) device.
    let plain = load_weights(config.init(&Device::flex(), 3).unwrap(), &path).unwrap();
    assert_eq!(probe(&plain, &config), probe(&model, &config));
}

#[test]
fn optimizer_state_round_trip_continues_identically() {
    let _kernels = default_kernels();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let device = Device::flex().autodiff();
    let (model, adam) = trained(&config, &device);
    let weights = dir.path().join("last.safetensors");
    let state = dir.path().join("optimizer.safetensors");
    save_weights(&model, &weights).unwrap();
    save_optimizer(&adam, &model, &state).unwrap();

    let resumed_model = load_weights(config.init(&device, 5).unwrap(), &weights).unwrap();
    let mut resumed_adam = load_optimizer(AdamConfig::default(), &resumed_model, &state).unwrap();
    assert_eq!(resumed_adam.iterations(), 2);

    let step = |model: Model, adam: &mut Adam| {
        let input = random_batch(2, 2, config.input, &device);
        train_step(model, adam, input, &[1.0, 0.0], 1e-2, 2).unwrap()
    };
    let mut adam = adam;
    let continued = step(model, &mut adam);
    let resumed = step(resumed_model, &mut resumed_adam);
    assert_eq!(continued.loss, resumed.loss);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    save_weights(&continued.model, &a).unwrap();
    save_weights(&resumed.model, &b).unwrap();
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "resumed training diverged"
    );
}

/// The load error with its causes, as the CLI prints it (`message: cause`).
fn load_error(config: &ModelConfig, path: &Path) -> String {
    let err = load_weights(config.init(&Device::flex(), 0).unwrap(), path).unwrap_err();
    ct3d_volume::chain(&err)
}

#[test]
fn mismatched_files_are_one_line_errors_naming_the_file() {
    let _kernels = default_kernels();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let path = dir.path().join("w.safetensors");
    save_weights(&config.init(&Device::flex(), 0).unwrap(), &path).unwrap();
    let shown = path.display().to_string();

    let wider = ModelConfig {
        filters: vec![2, 3, 4, 6],
        ..config.clone()
    };
    assert_eq!(
        load_error(&wider, &path),
        format!(
            "weights file {shown}: conv3d_3/kernel has shape [3, 3, 3, 4, 5] but the model expects [3, 3, 3, 4, 6]"
        )
    );

    let deeper = ModelConfig {
        filters: vec![2, 3, 4, 5, 5],
        input: [94, 94, 94],
        ..config.clone()
    };
    assert_eq!(
        load_error(&deeper, &path),
        format!(
            "weights file {shown} has no tensor conv3d_4/kernel; it was saved from a different architecture"
        )
    );

    let shallower = ModelConfig {
        filters: vec![2, 3, 4],
        ..config.clone()
    };
    let deep_file = dir.path().join("deep.safetensors");
    let four_equal = ModelConfig {
        filters: vec![2, 3, 4, 4],
        ..config.clone()
    };
    save_weights(&four_equal.init(&Device::flex(), 0).unwrap(), &deep_file).unwrap();
    assert_eq!(
        load_error(&shallower, &deep_file),
        format!(
            "weights file {}: tensor batch_normalization_3/beta does not belong to this model; it was saved from a different architecture",
            deep_file.display()
        )
    );

    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_error(&config, &truncated);
    assert!(
        err.starts_with(&format!(
            "weights file {} is corrupt or truncated: ",
            truncated.display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));

    let header_only = dir.path().join("header.safetensors");
    std::fs::write(&header_only, &bytes[..5]).unwrap();
    assert!(load_error(&config, &header_only).contains("is corrupt or truncated"));

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a weights file at all, just some text").unwrap();
    assert!(load_error(&config, &text).contains("is corrupt or truncated"));

    let missing = dir.path().join("absent.safetensors");
    assert!(
        load_error(&config, &missing)
            .starts_with(&format!("cannot read weights file {}: ", missing.display()))
    );
}

#[test]
fn optimizer_file_is_not_a_weights_file() {
    let _kernels = default_kernels();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let (model, adam) = trained(&config, &Device::flex().autodiff());
    let state = dir.path().join("optimizer.safetensors");
    save_optimizer(&adam, &model, &state).unwrap();
    let err = load_error(&config, &state);
    assert!(err.contains("has no tensor conv3d/kernel"), "{err}");
    let weights = dir.path().join("w.safetensors");
    save_weights(&model, &weights).unwrap();
    let err = load_optimizer(AdamConfig::default(), &model, &weights).unwrap_err();
    assert!(
        err.to_string()
            .contains("has no tensor optimizer/iterations"),
        "{err}"
    );
}
