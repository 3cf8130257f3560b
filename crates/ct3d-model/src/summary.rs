//! `model.summary()` as Keras prints it: a [`SummaryTable`] of layer names and types, output
//! shapes in Keras's channels-last `(None, x, y, z, channels)` form and parameter counts, which
//! each architecture fills in ([`crate::Architecture::summary_table`]) and this module lays out.

use std::fmt;

use crate::seed_cnn::{ModelConfig, ParamCounts};

/// One layer's line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    /// `name (Type)`, e.g. `conv3d_1 (Conv3D)`.
    pub layer: String,
    /// Keras's output shape, e.g. `(None, 61, 61, 29, 64)`.
    pub output: String,
    /// Weights of the layer (trainable or not).
    pub params: usize,
}

/// A network's layer table; its [`Display`](fmt::Display) is Keras's text, ending with the
/// three parameter-count lines:
///
/// ```text
/// Total params: 1,352,897
/// Trainable params: 1,351,873
/// Non-trainable params: 1,024
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryTable {
    /// The model's name in the header line (`Model: "3dcnn"`).
    pub title: String,
    /// The layers, input first.
    pub rows: Vec<SummaryRow>,
    /// The totals printed under the table.
    pub counts: ParamCounts,
}

/// The seed CNN's table for `config` as text (see [`crate::seed_cnn::summary_table`]); other
/// architectures go through [`crate::Architecture::summary`].
pub fn summary(config: &ModelConfig) -> String {
    crate::seed_cnn::summary_table(config).to_string()
}

impl fmt::Display for SummaryTable {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 3]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.layer.clone(),
                    row.output.clone(),
                    row.params.to_string(),
                ]
            })
            .collect();
        let header = ["Layer (type)", "Output Shape", "Param #"];
        let width = |column: usize| {
            rows.iter()
                .map(|r| r[column].len())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        };
        let (name_width, shape_width, count_width) = (width(0), width(1), width(2));
        let line_width = 1 + name_width + 2 + shape_width + 2 + count_width;
        let format_row = |cells: [&str; 3]| {
            format!(
                " {:<name_width$}  {:<shape_width$}  {:>count_width$}\n",
                cells[0], cells[1], cells[2]
            )
        };

        writeln!(out, "Model: \"{}\"", self.title)?;
        writeln!(out, "{}", "_".repeat(line_width))?;
        out.write_str(&format_row(header))?;
        writeln!(out, "{}", "=".repeat(line_width))?;
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                out.write_str("\n")?;
            }
            out.write_str(&format_row([&row[0], &row[1], &row[2]]))?;
        }
        writeln!(out, "{}", "=".repeat(line_width))?;
        writeln!(out, "Total params: {}", thousands(self.counts.total))?;
        writeln!(
            out,
            "Trainable params: {}",
            thousands(self.counts.trainable)
        )?;
        writeln!(
            out,
            "Non-trainable params: {}",
            thousands(self.counts.non_trainable)
        )
    }
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
