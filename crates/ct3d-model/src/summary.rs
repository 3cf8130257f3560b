//! `model.summary()` as Keras prints it for the seed's model: layer names and types, output
//! shapes in Keras's channels-last `(None, x, y, z, channels)` form, parameter counts.

use crate::model::{KERNEL, ModelConfig};

/// The Keras-like table for `config`, ending with the three parameter-count lines:
///
/// ```text
/// Total params: 1,352,897
/// Trainable params: 1,351,873
/// Non-trainable params: 1,024
/// ```
///
/// Computed from the configuration alone (no tensors). The configuration should be valid
/// ([`ModelConfig::validate`]); sizes of an invalid one are printed as computed.
pub fn summary(config: &ModelConfig) -> String {
    let mut rows: Vec<[String; 3]> = Vec::new();
    let [x, y, z] = config.input;
    rows.push([
        "input_1 (InputLayer)".to_owned(),
        format!("[(None, {x}, {y}, {z}, 1)]"),
        "0".to_owned(),
    ]);
    let mut in_channels = 1;
    for (index, block) in config.block_shapes().iter().enumerate() {
        let suffix = keras_suffix(index);
        let filters = block.filters;
        rows.push([
            format!("conv3d{suffix} (Conv3D)"),
            shape(block.conv, filters),
            (KERNEL.pow(3) * in_channels * filters + filters).to_string(),
        ]);
        rows.push([
            format!("max_pooling3d{suffix} (MaxPooling3D)"),
            shape(block.pooled, filters),
            "0".to_owned(),
        ]);
        rows.push([
            format!("batch_normalization{suffix} (BatchNormalization)"),
            shape(block.pooled, filters),
            (4 * filters).to_string(),
        ]);
        in_channels = filters;
    }
    rows.push([
        "global_average_pooling3d (GlobalAveragePooling3D)".to_owned(),
        format!("(None, {in_channels})"),
        "0".to_owned(),
    ]);
    rows.push([
        "dense (Dense)".to_owned(),
        format!("(None, {})", config.dense),
        (in_channels * config.dense + config.dense).to_string(),
    ]);
    rows.push([
        "dropout (Dropout)".to_owned(),
        format!("(None, {})", config.dense),
        "0".to_owned(),
    ]);
    rows.push([
        "dense_1 (Dense)".to_owned(),
        "(None, 1)".to_owned(),
        (config.dense + 1).to_string(),
    ]);

    let header = ["Layer (type)", "Output Shape", "Param #"];
    let name_width = rows
        .iter()
        .map(|r| r[0].len())
        .chain([header[0].len()])
        .max()
        .unwrap_or(0);
    let shape_width = rows
        .iter()
        .map(|r| r[1].len())
        .chain([header[1].len()])
        .max()
        .unwrap_or(0);
    let count_width = rows
        .iter()
        .map(|r| r[2].len())
        .chain([header[2].len()])
        .max()
        .unwrap_or(0);
    let line_width = 1 + name_width + 2 + shape_width + 2 + count_width;
    let format_row = |cells: [&str; 3]| {
        format!(
            " {:<name_width$}  {:<shape_width$}  {:>count_width$}\n",
            cells[0], cells[1], cells[2]
        )
    };

    let counts = config.param_counts();
    let mut out = String::from("Model: \"3dcnn\"\n");
    out.push_str(&"_".repeat(line_width));
    out.push('\n');
    out.push_str(&format_row(header));
    out.push_str(&"=".repeat(line_width));
    out.push('\n');
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&format_row([&row[0], &row[1], &row[2]]));
    }
    out.push_str(&"=".repeat(line_width));
    out.push('\n');
    out.push_str(&format!("Total params: {}\n", thousands(counts.total)));
    out.push_str(&format!(
        "Trainable params: {}\n",
        thousands(counts.trainable)
    ));
    out.push_str(&format!(
        "Non-trainable params: {}\n",
        thousands(counts.non_trainable)
    ));
    out
}

/// Keras's layer-name suffix for the `index`-th layer of a type: "", "_1", "_2", …
pub(crate) fn keras_suffix(index: usize) -> String {
    match index {
        0 => String::new(),
        n => format!("_{n}"),
    }
}

fn shape(size: [usize; 3], channels: usize) -> String {
    format!("(None, {}, {}, {}, {channels})", size[0], size[1], size[2])
}

/// `1352897` → `1,352,897`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_024), "1,024");
        assert_eq!(thousands(1_352_897), "1,352,897");
    }

    #[test]
    fn seed_summary_matches_keras() {
        let text = summary(&ModelConfig::default());
        assert!(text.ends_with(
            "Total params: 1,352,897\nTrainable params: 1,351,873\nNon-trainable params: 1,024\n"
        ));
        for expected in [
            "input_1 (InputLayer)",
            "[(None, 128, 128, 64, 1)]",
            "conv3d (Conv3D)",
            "(None, 126, 126, 62, 64)",
            "max_pooling3d (MaxPooling3D)",
            "(None, 63, 63, 31, 64)",
            "batch_normalization (BatchNormalization)",
            "conv3d_1 (Conv3D)",
            "(None, 61, 61, 29, 64)",
            "(None, 30, 30, 14, 64)",
            "conv3d_2 (Conv3D)",
            "(None, 28, 28, 12, 128)",
            "(None, 14, 14, 6, 128)",
            "conv3d_3 (Conv3D)",
            "(None, 12, 12, 4, 256)",
            "max_pooling3d_3 (MaxPooling3D)",
            "(None, 6, 6, 2, 256)",
            "batch_normalization_3 (BatchNormalization)",
            "global_average_pooling3d (GlobalAveragePooling3D)",
            "(None, 256)",
            "dense (Dense)",
            "(None, 512)",
            "dropout (Dropout)",
            "dense_1 (Dense)",
            "(None, 1)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Per-layer parameter counts from the seed's printed table.
        for (layer, count) in [
            ("conv3d (Conv3D)", "1792"),
            ("conv3d_1 (Conv3D)", "110656"),
            ("conv3d_2 (Conv3D)", "221312"),
            ("conv3d_3 (Conv3D)", "884992"),
            ("batch_normalization (BatchNormalization)", "256"),
            ("batch_normalization_3 (BatchNormalization)", "1024"),
            ("dense (Dense)", "131584"),
            ("dense_1 (Dense)", "513"),
        ] {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(layer))
                .unwrap();
            assert!(line.trim_end().ends_with(count), "{line}");
        }
    }
}
