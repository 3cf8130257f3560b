//! Charts of a training run and an evaluation: accuracy/loss curves, ROC curve, confusion matrix,
//! reliability diagram.
//!
//! Colours are matplotlib's first two (`C0` blue for training, `C1` orange for validation), so the
//! curves read like the seed's figure.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::font::{FAMILY, ensure_registered};
use crate::{PlotError, Png, check_side, encode_png};

/// matplotlib's `C0`.
const TRAIN_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// matplotlib's `C1`.
const VALIDATION_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// Per-epoch metrics of a run; entry `i` is epoch `i + 1`. Non-finite values are left out of
/// the drawing (e.g. a NaN loss), not drawn as zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// Training accuracy (Keras's `acc`), `[0, 1]`.
    pub train_accuracy: Vec<f64>,
    /// Validation accuracy (`val_acc`).
    pub validation_accuracy: Vec<f64>,
    /// Training binary cross-entropy (`loss`).
    pub train_loss: Vec<f64>,
    /// Validation binary cross-entropy (`val_loss`).
    pub validation_loss: Vec<f64>,
}

/// The seed's two-panel figure: "Model acc" and "Model loss" against epochs, train vs val, as a
/// `width × height` PNG.
pub fn curves_png(curves: &Curves, width: usize, height: usize) -> Result<Png, PlotError> {
    let epochs = [
        &curves.train_accuracy,
        &curves.validation_accuracy,
        &curves.train_loss,
        &curves.validation_loss,
    ]
    .iter()
    .map(|v| v.len())
    .max()
    .unwrap_or(0);
    if epochs == 0 {
        return Err(PlotError::InvalidSize(
            "the run has no epochs to plot".into(),
        ));
    }
    draw_rgb(width, height, |root| {
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        let panels = [
            (
                &left,
                "acc",
                &curves.train_accuracy,
                &curves.validation_accuracy,
            ),
            (&right, "loss", &curves.train_loss, &curves.validation_loss),
        ];
        for (area, metric, train, validation) in panels {
            metric_panel(area, metric, epochs, train, validation)?;
        }
        Ok(())
    })
}

fn metric_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    metric: &str,
    epochs: usize,
    train: &[f64],
    validation: &[f64],
) -> Result<(), PlotError> {
    let finite = |values: &[f64]| -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| ((i + 1) as f64, v))
            .collect()
    };
    let (train, validation) = (finite(train), finite(validation));
    let (mut lo, mut hi) = train
        .iter()
        .chain(&validation)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let x_range = if epochs == 1 {
        0.5..1.5
    } else {
        0.8..epochs as f64 + 0.2
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Model {metric}"), (FAMILY, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(58)
        .build_cartesian_2d(x_range, (lo - pad)..(hi + pad))
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("epochs")
        .y_desc(metric)
        .x_labels(epochs.min(10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_error)?;
    for (points, name, color) in [
        (train, "train", TRAIN_COLOR),
        (validation, "val", VALIDATION_COLOR),
    ] {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(draw_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        // Markers keep a one-epoch run (a single point) visible.
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(move |p| Circle::new(p, 3, color.filled())),
            )
            .map_err(draw_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// The ROC curve (false positive rate → true positive rate, points as from a threshold sweep
/// starting at `(0, 0)`) with the chance diagonal and the AUC in the title, as a square PNG of
/// `side` pixels.
pub fn roc_png(points: &[(f64, f64)], auc: Option<f64>, side: usize) -> Result<Png, PlotError> {
    draw_rgb(side, side, |root| {
        let title = match auc {
            Some(auc) if auc.is_finite() => format!("ROC curve (AUC = {auc:.3})"),
            _ => "ROC curve (AUC undefined: one class only)".to_owned(),
        };
        let mut chart = unit_square_chart(
            root,
            (&title, 20),
            "false positive rate (1 − specificity)",
            "true positive rate (sensitivity)",
        )?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                TRAIN_COLOR.stroke_width(3),
            ))
            .map_err(draw_error)?;
        Ok(())
    })
}

/// One point of a reliability diagram: a probability bin's mean predicted probability and
/// observed fraction of positives, both in `[0, 1]`, and how many scans it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReliabilityPoint {
    /// Mean predicted probability of the bin's scans.
    pub predicted: f64,
    /// Fraction of them that are positive.
    pub observed: f64,
    /// Scans in the bin.
    pub count: usize,
}

/// A reliability diagram (mean predicted probability → observed fraction of positives, one
/// marker per non-empty bin, joined in order) with the diagonal of perfect calibration, in the
/// ROC curve's style; `title` goes on top (say which probabilities and the ECE). A square PNG of
/// `side` pixels.
pub fn reliability_png(
    points: &[ReliabilityPoint],
    title: &str,
    side: usize,
) -> Result<Png, PlotError> {
    draw_rgb(side, side, |root| {
        let mut chart = unit_square_chart(
            root,
            (title, 18),
            "mean predicted probability",
            "observed fraction of positives",
        )?;
        let xy: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.predicted.is_finite() && p.observed.is_finite())
            .map(|p| (p.predicted, p.observed))
            .collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), TRAIN_COLOR.stroke_width(2)))
            .map_err(draw_error)?;
        chart
            .draw_series(
                xy.into_iter()
                    .map(|p| Circle::new(p, 5, TRAIN_COLOR.filled())),
            )
            .map_err(draw_error)?;
        Ok(())
    })
}

/// A 2×2 confusion matrix (rows: true class, columns: predicted class, negative first), cells
/// shaded by count like scikit-learn's `ConfusionMatrixDisplay`, as a square PNG of `side`
/// pixels. `counts[t][p]` is the number of scans of true class `t` predicted as `p`.
pub fn confusion_png(
    counts: [[usize; 2]; 2],
    class_names: [&str; 2],
    side: usize,
) -> Result<Png, PlotError> {
    draw_rgb(side, side, |root| {
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        let margin_left = w * 30 / 100;
        let margin_top = h * 12 / 100;
        let margin_bottom = h * 22 / 100;
        let cell_w = (w - margin_left - w * 6 / 100) / 2;
        let cell_h = (h - margin_top - margin_bottom) / 2;
        let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1);
        let font = |size: i32| (FAMILY, size.max(8)).into_font();
        let centered = |size: i32, color: &RGBColor| {
            font(size)
                .color(color)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ))
        };
        root.draw(&Text::new(
            "Confusion matrix",
            (margin_left + cell_w, margin_top / 2),
            centered(h / 22, &BLACK),
        ))
        .map_err(draw_error)?;
        for (t, row) in counts.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let x0 = margin_left + p as i32 * cell_w;
                let y0 = margin_top + t as i32 * cell_h;
                let shade = count as f64 / max as f64;
                let fill = blues(shade);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell_w, y0 + cell_h)],
                    fill.filled(),
                ))
                .map_err(draw_error)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell_w, y0 + cell_h)],
                    WHITE.stroke_width(2),
                ))
                .map_err(draw_error)?;
                let ink = if shade > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    (x0 + cell_w / 2, y0 + cell_h / 2),
                    centered(h / 12, &ink),
                ))
                .map_err(draw_error)?;
            }
        }
        for (i, name) in class_names.iter().enumerate() {
            root.draw(&Text::new(
                name.to_string(),
                (
                    margin_left / 2 + w / 40,
                    margin_top + i as i32 * cell_h + cell_h / 2,
                ),
                centered(h / 26, &BLACK),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                name.to_string(),
                (
                    margin_left + i as i32 * cell_w + cell_w / 2,
                    margin_top + 2 * cell_h + h / 25,
                ),
                centered(h / 26, &BLACK),
            ))
            .map_err(draw_error)?;
        }
        root.draw(&Text::new(
            "predicted",
            (margin_left + cell_w, h - margin_bottom / 3),
            centered(h / 24, &BLACK),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "true",
            (w / 28, margin_top + cell_h),
            centered(h / 24, &BLACK).transform(FontTransform::Rotate270),
        ))
        .map_err(draw_error)?;
        Ok(())
    })
}

/// matplotlib's "Blues" colour map, approximated linearly between its ends: 0 → near white,
/// 1 → dark blue.
fn blues(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    RGBColor(mix(0xf7, 0x08), mix(0xfb, 0x30), mix(0xff, 0x6b))
}

/// Draws on a white `width × height` RGB canvas and encodes it.
/// The axes the ROC curve and the reliability diagram share: both run from 0 to 1, with a light
/// mesh and the dashed diagonal (chance for ROC, perfect calibration for reliability).
/// `caption` is the title and its font size.
fn unit_square_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    (title, size): (&str, u32),
    x_desc: &str,
    y_desc: &str,
) -> Result<
    ChartContext<
        'a,
        BitMapBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    PlotError,
> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, size))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(-0.01..1.01, -0.01..1.01)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(6)
        .y_labels(6)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(draw_error)?;
    Ok(chart)
}

fn draw_rgb(
    width: usize,
    height: usize,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<Png, PlotError> {
    ensure_registered()?;
    let width = check_side("picture width", width)?;
    let height = check_side("picture height", height)?;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    encode_png(pixels, width, height, 3)
}

fn draw_error(err: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blues_runs_from_light_to_dark() {
        assert_eq!(blues(0.0), RGBColor(0xf7, 0xfb, 0xff));
        assert_eq!(blues(1.0), RGBColor(0x08, 0x30, 0x6b));
        assert_eq!(blues(7.0), blues(1.0));
    }
}
