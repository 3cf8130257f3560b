//! The bodies of the weight-file fuzz targets (`fuzz/`, `cargo +nightly fuzz run
//! weights_safetensors` and `weights_pytorch`), kept here so that plain `cargo test` on stable
//! replays the committed corpus through exactly the same code (`tests/fuzz_corpus.rs`).
//!
//! Weight files come from anywhere (`--init` takes a downloaded `.pth`; a run folder may be
//! copied between machines), so their readers are attack surface like the scan readers. Each
//! function writes the bytes to a private temporary file and loads it into small networks of
//! both architecture families through the public entry points. A returned error is fine; a
//! panic, an abort, a hang or an allocation far beyond the file's size is a finding.
//!
//! Not part of the stable API.

use std::path::Path;

use crate::{AdamConfig, Architecture, ModelParams, Network, ResNetParams, Shortcut};
use burn::tensor::Device;

/// A folder for one call: `/dev/shm` when it exists (a fuzzer's millions of writes stay in
/// memory), else the system's temporary folder.
fn scratch() -> Option<tempfile::TempDir> {
    let builder = tempfile::Builder::new()
        .prefix("ct3d-fuzz-")
        .tempdir_in("/dev/shm");
    builder.or_else(|_| tempfile::tempdir()).ok()
}

/// Small networks of each family, shaped as the weight fixtures under `tests/data/` (the seed
/// corpus), so that a seed loads all the way and mutations of it reach every check.
fn networks() -> Vec<(Architecture, Network)> {
    let device = Device::flex();
    // tests/data/gradcam/seed_weights.safetensors.
    let seed = ModelParams {
        filters: vec![4, 4, 8],
        dense: 8,
        ..ModelParams::default()
    }
    .at([30, 30, 30]);
    // tests/data/resnet/resnet10_b.*.
    let resnet = ModelParams {
        resnet: Some(ResNetParams {
            widths: [2, 4, 4, 8],
            shortcut: Shortcut::B,
            downsample_bias: false,
        }),
        ..ModelParams::default()
    }
    .at([16, 14, 12]);
    [
        (Architecture::SeedCnn, &seed),
        (Architecture::Resnet10, &resnet),
    ]
    .into_iter()
    .filter_map(|(architecture, config)| {
        architecture
            .init(config, &device, 1)
            .ok()
            .map(|network| (architecture, network))
    })
    .collect()
}

/// Writes `data` to `dir/name`.
fn write(dir: &Path, name: &str, data: &[u8]) -> Option<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, data).ok()?;
    Some(path)
}

/// `data` as a ct3d weights file (`best.safetensors`) and as its optimizer file, loaded into a
/// seed CNN and a ResNet.
pub fn weights_safetensors(data: &[u8]) {
    let Some(dir) = scratch() else { return };
    let Some(path) = write(dir.path(), "best.safetensors", data) else {
        return;
    };
    for (_, network) in networks() {
        let _ = crate::weights::load_optimizer(AdamConfig::default(), &network, &path);
        let _ = crate::weights::load_weights(network, &path);
    }
}

/// `data` as a PyTorch state dict (`--init model.pth`), loaded into a ResNet and offered to the
/// seed CNN (which refuses it).
pub fn weights_pytorch(data: &[u8]) {
    let Some(dir) = scratch() else { return };
    let Some(path) = write(dir.path(), "model.pth", data) else {
        return;
    };
    for (architecture, network) in networks() {
        let _ = crate::pytorch::load_state_dict(network, &path, architecture.name());
    }
}
