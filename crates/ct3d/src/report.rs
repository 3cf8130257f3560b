//! `ct3d report`: one self-contained HTML file describing a run — configuration, data, curves,
//! best epoch, validation metrics with 95 % confidence intervals, ROC curve, confusion matrix,
//! reliability diagram, and montages of validation scans
//! with their predictions. Pictures are inline PNGs (`data:` URLs); the page loads nothing from
//! the network, so it can be mailed, archived or printed as it is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ct3d_model::explain::{GradExplainer, GradMethod, Target};
use ct3d_plot::Png;
use ct3d_plot::charts::curves_png;
use ct3d_plot::overlay::overlay_montage_png;
use ct3d_plot::slices::{MontageLayout, montage_png};
use ct3d_volume::atomic::write_bytes_atomic;
use ct3d_volume::preprocess::process_file;

use crate::config::{ClassWeight, Sampler, SplitPart};
use crate::error::TrainError;
use crate::history::EpochRecord;
use crate::inference::{
    EvalSplit, Evaluation, LoadedRun, ScanScore, TtaOptions, WeightsChoice, evaluate_recorded,
    tta_recipe,
};
use crate::metrics::{BinaryMetrics, Interval};
use crate::pictures::{
    CURVES_SIZE, PictureError, curves_from_history, evaluation_pictures, read_history,
    reliability_picture,
};
use crate::run::RunState;

/// What goes into a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Montages of correctly classified validation scans to show (most confident first).
    pub correct_examples: usize,
    /// Montages of misclassified validation scans to show (most confidently wrong first).
    pub wrong_examples: usize,
    /// Voxel magnification of the montages (the pictures are `scale ×` the model's input).
    pub montage_scale: usize,
    /// Evaluate the recorded validation scans that are there, as they are now, instead of
    /// refusing a run whose recorded scans are missing or changed (the page lists them).
    pub allow_changed_data: bool,
    /// Also evaluate the validation scans with test-time augmentation of this many copies
    /// ([`crate::inference::tta_recipe`], seed 0) and show accuracy and AUC with and without it.
    /// `None`: no comparison (it costs this many inferences per scan).
    pub tta: Option<usize>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            correct_examples: 2,
            wrong_examples: 2,
            montage_scale: 1,
            allow_changed_data: false,
            tta: None,
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Loading the run or evaluating it failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A picture failed.
    #[error(transparent)]
    Picture(#[from] PictureError),
    /// The report file could not be written.
    #[error("{path}: cannot write")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<ct3d_plot::PlotError> for ReportError {
    fn from(err: ct3d_plot::PlotError) -> Self {
        ReportError::Picture(PictureError::Plot(err))
    }
}

/// A finished report.
pub struct Report {
    /// The whole page.
    pub html: String,
    /// The validation evaluation shown in it.
    pub evaluation: Evaluation,
}

/// Builds the report of a loaded run: evaluates its recorded validation scans (those
/// `config.json` lists, see [`evaluate_recorded`]) with the loaded weights and draws every
/// picture.
pub fn build_report(
    run: &LoadedRun,
    weights: WeightsChoice,
    options: &ReportOptions,
) -> Result<Report, ReportError> {
    let root = run.dir.root();
    let history = read_history(root)?;
    let state = run.dir.read_state().map_err(TrainError::from)?;
    let evaluation = evaluate_recorded(run, EvalSplit::Val, options.allow_changed_data)?;
    // The comparison is only meaningful against predictions without it.
    let tta = match options.tta {
        Some(count) if count > 0 && run.tta.is_none() => {
            let mut augmented = run.clone();
            augmented.tta = Some(TtaOptions {
                count,
                seed: 0,
                recipe: tta_recipe(),
            });
            let with = evaluate_recorded(&augmented, EvalSplit::Val, options.allow_changed_data)?;
            Some((count, with.metrics))
        }
        _ => None,
    };
    let [width, height] = CURVES_SIZE;
    let curves = curves_png(&curves_from_history(&history), width, height)?;
    let classes = &run.config.train.classes;
    let eval_pictures = evaluation_pictures(&evaluation, classes)?;
    let reliability = reliability_picture(&evaluation)?;
    let examples = pick_examples(&evaluation.scans, options);
    let explainer = GradExplainer::new(&run.model);
    let layer = explainer.informative_layer();
    let layer_name = explainer.layer_names()[layer].clone();
    let mut montages = Vec::with_capacity(examples.len());
    for (scan, correct) in examples {
        let volume = process_file(&scan.path, &run.config.train.preprocess)
            .map_err(TrainError::Preprocess)?;
        let layout = layout_for_depth(volume.shape()[2]);
        let png = montage_png(&volume, layout, options.montage_scale)?;
        // Where the model looked: Grad-CAM for the positive class on the same montage.
        let (map, _) = explainer
            .input_map(&volume, layer, GradMethod::GradCam, Target::Positive)
            .map_err(TrainError::Model)?;
        let overlay = overlay_montage_png(&volume, &map, layout, options.montage_scale, 0.5)?;
        montages.push(Example {
            scan: scan.clone(),
            correct,
            layout,
            png,
            overlay,
        });
    }
    let html = render(&Page {
        run,
        weights,
        history: &history,
        state: &state,
        evaluation: &evaluation,
        curves: &curves,
        roc: &eval_pictures.roc,
        confusion: &eval_pictures.confusion,
        reliability: &reliability,
        examples: &montages,
        explained_layer: &layer_name,
        tta: tta.as_ref(),
    });
    Ok(Report { html, evaluation })
}

/// Writes `html` to `path` atomically.
pub fn write_report(html: &str, path: &Path) -> Result<(), ReportError> {
    write_bytes_atomic(path, html.as_bytes()).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The seed's 4 × 10 montage from the first slice when the volume has 40 slices or more;
/// otherwise as many full rows of 10 as fit (or one row of all slices).
pub fn layout_for_depth(depth: usize) -> MontageLayout {
    let cols = 10.min(depth.max(1));
    MontageLayout {
        rows: (depth / cols).clamp(1, 4),
        cols,
        first: 0,
    }
}

/// Up to `correct_examples` correct scans, alternating between the classes (negative first) and
/// most confident first within each, then up to `wrong_examples` wrong ones (most confidently
/// wrong first), each with whether it is correct.
fn pick_examples(scans: &[ScanScore], options: &ReportOptions) -> Vec<(ScanScore, bool)> {
    let confidence = |s: &ScanScore| (f64::from(s.probability) - 0.5).abs();
    let is_correct = |s: &ScanScore| (s.probability > 0.5) == (s.label == 1);
    let ranked = |keep: &dyn Fn(&ScanScore) -> bool| {
        let mut group: Vec<&ScanScore> = scans.iter().filter(|s| keep(s)).collect();
        group.sort_by(|a, b| confidence(b).total_cmp(&confidence(a)));
        group
    };
    let mut by_class = [
        ranked(&|s| is_correct(s) && s.label == 0).into_iter(),
        ranked(&|s| is_correct(s) && s.label == 1).into_iter(),
    ];
    let mut picked = Vec::new();
    let mut turn = 0;
    while picked.len() < options.correct_examples {
        let next = by_class[turn % 2]
            .next()
            .or_else(|| by_class[(turn + 1) % 2].next());
        let Some(scan) = next else { break };
        picked.push((scan.clone(), true));
        turn += 1;
    }
    let wrong = ranked(&|s| !is_correct(s));
    picked.extend(
        wrong
            .into_iter()
            .take(options.wrong_examples)
            .map(|s| (s.clone(), false)),
    );
    picked
}

struct Example {
    scan: ScanScore,
    correct: bool,
    layout: MontageLayout,
    png: Png,
    /// The montage with the Grad-CAM map overlaid.
    overlay: Png,
}

struct Page<'a> {
    run: &'a LoadedRun,
    weights: WeightsChoice,
    history: &'a [EpochRecord],
    state: &'a RunState,
    evaluation: &'a Evaluation,
    curves: &'a Png,
    roc: &'a Png,
    confusion: &'a Png,
    reliability: &'a Png,
    examples: &'a [Example],
    /// The block the Grad-CAM overlays come from.
    explained_layer: &'a str,
    /// Copies and metrics of the test-time augmented evaluation, when asked for.
    tta: Option<&'a (usize, BinaryMetrics)>,
}

const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #5b6472; --line: #d8dde5; --accent: #1f77b4; --ok: #217a3c; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 13px; }
.card .v { font-size: 22px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; align-items: start; }
figure { margin: 0 0 18px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.montage img { image-rendering: pixelated; width: 100%; max-width: 860px; }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
code { font-size: 13px; word-break: break-all; }
@media (max-width: 720px) { .pair { grid-template-columns: 1fr; } }
@page { size: A4; margin: 14mm; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  section, figure, .cards, table { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"#;

/// The with/without test-time augmentation rows, or nothing.
fn tta_table(tta: Option<&(usize, BinaryMetrics)>, without: &BinaryMetrics) -> String {
    let Some((count, with)) = tta else {
        return String::new();
    };
    format!(
        "<h3>Test-time augmentation</h3>\n<table>\n<tr><th></th><th class=\"num\">accuracy</th>\
         <th class=\"num\">ROC AUC</th></tr>\n\
         <tr><th>each scan once</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n\
         <tr><th>mean of {count} augmented copies (left-right flip, small rotations)</th>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n</table>\n",
        fmt_rate(Some(without.accuracy)),
        fmt_rate(without.auc),
        fmt_rate(Some(with.accuracy)),
        fmt_rate(with.auc),
    )
}

fn render(page: &Page<'_>) -> String {
    let run = page.run;
    let config = &run.config;
    let train = &config.train;
    let classes = &train.classes;
    let metrics = &page.evaluation.metrics;
    let intervals = metrics.intervals.as_ref();
    let ci = |pick: fn(&crate::metrics::Intervals) -> Option<Interval>| intervals.and_then(pick);
    let delong = intervals.and_then(|i| i.auc_delong).map(|d| Interval {
        lower: d.lower,
        upper: d.upper,
    });
    let run_name = run.dir.root().file_name().map_or_else(
        || run.dir.root().display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let best = page
        .history
        .iter()
        .find(|r| r.epoch == page.state.callbacks.best_epoch);
    let mut h = String::with_capacity(1 << 20);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ct3d report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&run_name)
    );
    let _ = write!(
        h,
        "<h1>ct3d report: {}</h1>\n<p class=\"sub\">The Keras example's 3D CNN, {} vs {}; \
         trained with ct3d {} on {}; {} of {} epochs ({}); {} weights evaluated.</p>\n",
        esc(&run_name),
        esc(&classes.negative_name),
        esc(&classes.positive_name),
        esc(&config.ct3d_version),
        esc(&config.device),
        page.state.completed_epochs,
        train.epochs,
        esc(page.state.finished.as_deref().unwrap_or("not finished")),
        match page.weights {
            WeightsChoice::Best => "best (lowest validation loss)",
            WeightsChoice::Last => "last",
        },
    );

    // Summary cards.
    h.push_str("<section>\n<div class=\"cards\">\n");
    let best_epoch = best.map_or("–".to_owned(), |r| r.epoch.to_string());
    for (key, value) in [
        ("best epoch", best_epoch),
        (
            "validation accuracy",
            fmt_rate_ci(Some(metrics.accuracy), ci(|i| i.accuracy)),
        ),
        ("ROC AUC", fmt_rate_ci(metrics.auc, delong)),
        (
            "sensitivity",
            fmt_rate_ci(metrics.sensitivity, ci(|i| i.sensitivity)),
        ),
        (
            "specificity",
            fmt_rate_ci(metrics.specificity, ci(|i| i.specificity)),
        ),
        ("validation scans", metrics.count.to_string()),
    ] {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"k\">{key}</div><div class=\"v\">{}</div></div>",
            esc(&value)
        );
    }
    h.push_str("</div>\n</section>\n");

    // Curves.
    h.push_str("<section>\n<h2>Training curves</h2>\n");
    figure(
        &mut h,
        page.curves,
        "accuracy and loss per epoch",
        &match best {
            Some(r) => format!(
                "Training (blue) and validation (orange). Best epoch {} (lowest validation loss): \
                 val_loss {:.4}, val_acc {:.4}.",
                r.epoch, r.val_loss, r.val_acc
            ),
            None => "Training (blue) and validation (orange).".to_owned(),
        },
        "",
    );
    h.push_str("</section>\n");

    // Metrics.
    let c = &metrics.confusion;
    let _ = write!(
        h,
        "<section>\n<h2>Validation metrics</h2>\n<table>\n\
         <tr><th>scans</th><td class=\"num\">{}</td><th>loss (binary cross-entropy)</th><td class=\"num\">{:.4}</td></tr>\n\
         <tr><th>accuracy</th><td class=\"num\">{}</td><th>ROC AUC</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>sensitivity (TP / (TP + FN))</th><td class=\"num\">{}</td><th>specificity (TN / (TN + FP))</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>true {neg} → predicted {neg} / {pos}</th><td class=\"num\">{} / {}</td>\
         <th>true {pos} → predicted {neg} / {pos}</th><td class=\"num\">{} / {}</td></tr>\n\
         <tr><th>Brier score</th><td class=\"num\">{}</td><th>expected calibration error (15 bins)</th><td class=\"num\">{}</td></tr>\n\
         </table>\n{}<p class=\"sub\">{}</p>\n<div class=\"pair\">\n",
        metrics.count,
        metrics.loss,
        fmt_rate_ci(Some(metrics.accuracy), ci(|i| i.accuracy)),
        fmt_rate_ci(metrics.auc, delong),
        fmt_rate_ci(metrics.sensitivity, ci(|i| i.sensitivity)),
        fmt_rate_ci(metrics.specificity, ci(|i| i.specificity)),
        c.true_negative,
        c.false_positive,
        c.false_negative,
        c.true_positive,
        fmt_rate(metrics.brier),
        fmt_rate(metrics.ece),
        tta_table(page.tta, metrics),
        esc(&interval_note(page.evaluation, metrics.threshold)),
        neg = esc(&classes.negative_name),
        pos = esc(&classes.positive_name),
    );
    figure(
        &mut h,
        page.roc,
        "ROC curve",
        "ROC curve of the validation scans; the dashed line is chance.",
        "",
    );
    figure(
        &mut h,
        page.confusion,
        "confusion matrix",
        &format!(
            "Rows: true class; columns: predicted class at probability {}.",
            metrics.threshold
        ),
        "",
    );
    figure(
        &mut h,
        page.reliability,
        "reliability diagram",
        &format!(
            "Mean predicted probability against the observed fraction of {} scans, in 15 \
             equal-width bins (empty bins left out); the dashed diagonal is perfect calibration.",
            classes.positive_name
        ),
        "",
    );
    h.push_str("</div>\n</section>\n");

    // Examples.
    h.push_str("<section>\n<h2>Validation scans with predictions</h2>\n");
    if page.examples.is_empty() {
        h.push_str("<p>No validation scans.</p>\n");
    }
    for example in page.examples {
        let s = &example.scan;
        let truth = if s.label == 1 {
            &classes.positive_name
        } else {
            &classes.negative_name
        };
        let verdict = if example.correct {
            "<span class=\"ok\">correct</span>"
        } else {
            "<span class=\"bad\">wrong</span>"
        };
        let l = example.layout;
        let caption = format!(
            "{verdict} — <code>{}</code>: true class {}, P({}) = {:.3}. Slices {}–{} of the \
             preprocessed volume, arranged as the Keras example's <code>plot_slices</code>.",
            esc(&display_name(&s.path)),
            esc(truth),
            esc(&classes.positive_name),
            s.probability,
            l.first,
            l.first + l.rows * l.cols - 1,
        );
        figure_html(
            &mut h,
            &example.png,
            &format!("montage of {}", display_name(&s.path)),
            &caption,
            "montage",
        );
    }
    h.push_str("</section>\n");

    // Where the model looked.
    h.push_str("<section>\n<h2>Where the model looked</h2>\n");
    let _ = writeln!(
        h,
        "<p>Grad-CAM for the class “{}” on <code>{}</code> (the deepest block that keeps at \
         least 4 voxels per axis), placed on the model's input and drawn over the same slices: \
         red where the block's evidence for “{}” is strongest, nothing where there is none. \
         <code>ct3d explain --run RUN SCAN --out DIR</code> writes such maps on each scan's own \
         grid as NIfTI, to overlay in a viewer.</p>",
        esc(&classes.positive_name),
        esc(page.explained_layer),
        esc(&classes.positive_name),
    );
    for example in page.examples {
        let s = &example.scan;
        let caption = format!(
            "<code>{}</code>: P({}) = {:.3}.",
            esc(&display_name(&s.path)),
            esc(&classes.positive_name),
            s.probability,
        );
        figure_html(
            &mut h,
            &example.overlay,
            &format!("Grad-CAM overlay of {}", display_name(&s.path)),
            &caption,
            "montage",
        );
    }
    h.push_str("</section>\n");

    // Data.
    let count = |label: u8, part: Option<SplitPart>| {
        config
            .files
            .iter()
            .filter(|f| f.label == label && part.is_none_or(|p| f.split == p))
            .count()
    };
    let split_text = match train.folds {
        Some(spec) => format!(
            "validation on fold {} of a stratified {}-fold split (seed {})",
            spec.fold, spec.count, train.seed
        ),
        None if config.files.iter().any(|f| f.patient.is_some()) => format!(
            "split per class by whole patients in data order, up to {:.0}% of each class for \
             training (no patient in both parts)",
            100.0 * train.train_fraction
        ),
        None => format!(
            "split per class in sorted file-name order, first {:.0}% for training",
            100.0 * train.train_fraction
        ),
    };
    let _ = write!(
        h,
        "<section>\n<h2>Data</h2>\n<p>From <code>{}</code> (cache <code>{}</code>); {}.</p>\n<table>\n\
         <tr><th>class</th><th>folder</th><th class=\"num\">train</th><th class=\"num\">validation</th><th class=\"num\">total</th></tr>\n",
        esc(&config
            .manifest
            .as_ref()
            .unwrap_or(&config.data_root)
            .display()
            .to_string()),
        esc(&config.cache.display().to_string()),
        esc(&split_text),
    );
    for (label, name, folder) in [
        (0u8, &classes.negative_name, &classes.negative_folder),
        (1u8, &classes.positive_name, &classes.positive_folder),
    ] {
        let _ = writeln!(
            h,
            "<tr><td>{} (label {label})</td><td><code>{}</code></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            esc(folder),
            count(label, Some(SplitPart::Train)),
            count(label, Some(SplitPart::Validation)),
            count(label, None),
        );
    }
    h.push_str("</table>\n");
    for (paths, what) in [
        (
            &page.evaluation.missing,
            "missing now, left out of the evaluation",
        ),
        (
            &page.evaluation.changed,
            "changed since training, evaluated as they are now",
        ),
    ] {
        if !paths.is_empty() {
            let names: Vec<String> = paths
                .iter()
                .map(|p| format!("<code>{}</code>", esc(&p.display().to_string())))
                .collect();
            let _ = writeln!(
                h,
                "<p class=\"bad\">{} recorded validation scans {what}: {}.</p>",
                paths.len(),
                names.join(", ")
            );
        }
    }
    h.push_str("</section>\n");

    // Configuration.
    let p = &train.preprocess;
    let m = &train.model_config();
    let params = m.param_counts();
    let filters: Vec<String> = m.filters.iter().map(|f| f.to_string()).collect();
    let rows: Vec<(&str, String)> = vec![
        (
            "HU window",
            format!("{} to {} HU, scaled to [0, 1]", p.hu_min, p.hu_max),
        ),
        (
            "input size",
            format!("{} × {} × {} voxels", p.size[0], p.size[1], p.size[2]),
        ),
        (
            "model",
            format!(
                "conv filters {}, dense {}, dropout {}; {} parameters ({} trainable)",
                filters.join(", "),
                m.dense,
                m.dropout,
                thousands(params.total),
                thousands(params.trainable)
            ),
        ),
        (
            "optimiser",
            format!(
                "Adam, learning rate {} × {} every {} steps",
                train.schedule.initial, train.schedule.rate, train.schedule.decay_steps
            ),
        ),
        (
            "training",
            format!(
                "batch {}, up to {} epochs, early stopping after {} epochs without better val_acc, \
                 augmentation {}",
                train.batch_size, train.epochs, train.patience, train.augment
            ),
        ),
        (
            "class balance",
            format!(
                "loss weights {}, sampler {}",
                match train.class_weight {
                    ClassWeight::None => "none (every scan 1)",
                    ClassWeight::Balanced => "balanced (n / (2 · n_class))",
                },
                match train.sampler {
                    Sampler::Shuffle => "each training scan once per epoch",
                    Sampler::Balanced => "class-balanced draws with replacement",
                }
            ),
        ),
        ("seed", train.seed.to_string()),
        ("device", config.device.clone()),
        ("run folder", run.dir.root().display().to_string()),
    ];
    h.push_str("<section>\n<h2>Configuration</h2>\n<table>\n");
    for (key, value) in rows {
        let _ = writeln!(h, "<tr><th>{key}</th><td>{}</td></tr>", esc(&value));
    }
    h.push_str("</table>\n</section>\n");

    // Every validation scan.
    h.push_str(
        "<section>\n<h2>Every validation scan</h2>\n<table>\n<tr><th>scan</th><th>true class</th>\
         <th class=\"num\">probability</th><th>result</th></tr>\n",
    );
    for s in &page.evaluation.scans {
        let truth = if s.label == 1 {
            &classes.positive_name
        } else {
            &classes.negative_name
        };
        let correct = (s.probability > 0.5) == (s.label == 1);
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{:.3}</td><td>{}</td></tr>",
            esc(&display_name(&s.path)),
            esc(truth),
            s.probability,
            if correct {
                "<span class=\"ok\">correct</span>"
            } else {
                "<span class=\"bad\">wrong</span>"
            }
        );
    }
    h.push_str("</table>\n</section>\n</main>\n</body>\n</html>\n");
    h
}

fn figure(h: &mut String, png: &Png, alt: &str, caption: &str, class: &str) {
    figure_html(h, png, alt, &esc(caption), class);
}

/// A figure whose caption is already HTML.
fn figure_html(h: &mut String, png: &Png, alt: &str, caption_html: &str, class: &str) {
    let _ = writeln!(
        h,
        "<figure class=\"{class}\"><img alt=\"{}\" width=\"{}\" height=\"{}\" src=\"data:image/png;base64,{}\">\
         <figcaption>{caption_html}</figcaption></figure>",
        esc(alt),
        png.width,
        png.height,
        base64::engine::general_purpose::STANDARD.encode(&png.bytes),
    );
}

/// The scan's class folder and file name (`CT-23/phantom_0003.nii.gz`).
fn display_name(path: &Path) -> String {
    let mut parts: Vec<String> = path
        .iter()
        .rev()
        .take(2)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}

fn fmt_rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

/// A rate with its 95 % interval: `0.750 (0.500–1.000)`.
fn fmt_rate_ci(value: Option<f64>, interval: Option<Interval>) -> String {
    match (value, interval) {
        (Some(_), Some(i)) => format!("{} ({:.3}–{:.3})", fmt_rate(value), i.lower, i.upper),
        _ => fmt_rate(value),
    }
}

/// What the intervals are and which probabilities were scored, under the metrics table.
fn interval_note(evaluation: &Evaluation, threshold: f64) -> String {
    let probabilities = format!(
        "Probabilities: {}; decision threshold {threshold}.",
        evaluation.probabilities
    );
    match &evaluation.metrics.intervals {
        Some(i) => format!(
            "{probabilities} In parentheses: 95 % confidence intervals; accuracy, sensitivity and \
             specificity by stratified bootstrap ({} resamples, seed {}), the ROC AUC by \
             DeLong's method (logit scale).",
            i.resamples, i.seed
        ),
        None => probabilities,
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_number_formats() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(thousands(1_352_897), "1,352,897");
        assert_eq!(thousands(999), "999");
        assert_eq!(fmt_rate(None), "–");
        assert_eq!(fmt_rate(Some(0.91234)), "0.912");
        let interval = Interval {
            lower: 0.5,
            upper: 0.96666,
        };
        assert_eq!(
            fmt_rate_ci(Some(0.75), Some(interval)),
            "0.750 (0.500–0.967)"
        );
        assert_eq!(fmt_rate_ci(None, Some(interval)), "–");
        assert_eq!(
            display_name(Path::new("/data/CT-23/phantom_0001.nii.gz")),
            "CT-23/phantom_0001.nii.gz"
        );
    }

    #[test]
    fn montage_layout_follows_the_seed_when_it_fits() {
        assert_eq!(layout_for_depth(64), MontageLayout::default());
        assert_eq!(
            layout_for_depth(48),
            MontageLayout {
                rows: 4,
                cols: 10,
                first: 0
            }
        );
        assert_eq!(layout_for_depth(25).rows, 2);
        assert_eq!(layout_for_depth(6).cols, 6);
        assert_eq!(layout_for_depth(6).rows, 1);
    }

    #[test]
    fn examples_are_split_into_correct_and_wrong() {
        let scan = |p: f32, label: u8| ScanScore {
            path: PathBuf::from(format!("{p}-{label}")),
            label,
            probability: p,
            tta: None,
        };
        let scans = vec![
            scan(0.9, 1),
            scan(0.6, 1),
            scan(0.2, 0),
            scan(0.95, 0),
            scan(0.4, 1),
        ];
        let picked = pick_examples(
            &scans,
            &ReportOptions {
                correct_examples: 2,
                wrong_examples: 5,
                ..ReportOptions::default()
            },
        );
        let got: Vec<(f32, bool)> = picked.iter().map(|(s, c)| (s.probability, *c)).collect();
        assert_eq!(
            got,
            vec![(0.2, true), (0.9, true), (0.95, false), (0.4, false)]
        );
        // Three correct ones: the negative class has one only, so the rest are positives.
        let picked = pick_examples(
            &scans,
            &ReportOptions {
                correct_examples: 3,
                wrong_examples: 0,
                ..ReportOptions::default()
            },
        );
        let got: Vec<f32> = picked.iter().map(|(s, _)| s.probability).collect();
        assert_eq!(got, vec![0.2, 0.9, 0.6]);
    }
}
