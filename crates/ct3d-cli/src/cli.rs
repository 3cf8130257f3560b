//! The command line's shape: the top-level flags and the subcommands, each a variant holding its
//! `…Args` struct (defined, with its `run`, in the file of its group).

use clap::{Parser, Subcommand};

use crate::{
    calibrate, demo, explain, export, fetch, model, pictures, serve, sweep, train, volume,
};

/// Train and run 3D convolutional networks on CT volumes.
///
/// ct3d reproduces the Keras example "3D image classification from CT scans" number for number
/// (scipy-exact preprocessing, the same 3D CNN) and goes further: faster, reproducible, with
/// synthetic phantoms to try everything without downloading data.
///
/// Quick start:  ct3d demo
#[derive(Debug, Parser)]
#[command(name = "ct3d", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. The help text is here, on the variants, not on the `…Args` structs: clap
/// would take a flattened flag group's doc comment as the command's.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a scan's shape, datatype, voxel spacing, orientation and HU statistics.
    ///
    /// Accepts NIfTI-1 and NIfTI-2 files (.nii, .nii.gz, or a .hdr/.img pair; Analyze 7.5 pairs
    /// as SPM reads them), NRRD (.nrrd, or .nhdr with its data file), MetaImage (.mha, or .mhd
    /// with its data file) and folders holding a DICOM series. `--json` prints one JSON object per scan instead (shape, spacing, the 4×4 RAS+
    /// affine, datatype, value statistics), what the format parity tests compare.
    Info(volume::InfoArgs),
    /// Apply the Keras example's preprocessing to one scan and write the result.
    ///
    /// Steps, exactly as the example (scipy parity within 1e-5): clip HU to the window and scale
    /// to [0, 1]; rotate 90 degrees in the (x, y) plane (cubic spline); linear resize to --size.
    /// The output is a float32 NIfTI file.
    Preprocess(volume::PreprocessArgs),
    /// Rotate every axial slice of a volume by a fixed angle, as the training augmentation does.
    ///
    /// Cubic-spline rotation in the (x, y) plane (scipy's ndimage.rotate, reshape=False), points
    /// from outside the slice become 0, then values are clipped to [0, 1]. Training draws the angle
    /// from {-20, -10, -5, 5, 10, 20}; here you choose it, e.g. to look at the augmentation.
    Rotate(volume::RotateArgs),
    /// Preprocess a class-folder dataset into a cache, in parallel.
    ///
    /// DATA holds one folder per class (by default CT-0 = normal, CT-23 = abnormal). Results are
    /// cached by file content and preprocessing parameters: a second run is near-instant, and a
    /// changed file or parameter is recomputed, never served stale.
    Prepare(volume::PrepareArgs),
    /// Write synthetic phantom chest CT scans (int16 HU NIfTI) as a class-folder dataset.
    ///
    /// Normal scans (CT-0) have clear lungs; abnormal ones (CT-23) carry ground-glass opacities.
    /// Deterministic: the same --seed gives byte-identical files.
    ///
    /// Both difficulties have MosMedData's geometry (512×512 pixels of 0.6–0.9 mm, 30–70 slices).
    /// `--difficulty easy` (the default, unchanged) covers 20–65 % of the lungs with ground glass
    /// of -520…-330 HU: the seed's CNN separates it easily. `--difficulty hard` is a benchmark:
    /// CT-1-like involvement (5–25 % of the lungs) with fainter ground glass (-700…-560 HU, in
    /// clusters of 8–25 mm instead of 15–40 mm), Gaussian noise of σ 20–45 HU (easy: 10–20),
    /// patients of varied size (the body spans 55–92 % of the field of view; easy 70–90 %) and
    /// position (up to 8 % off centre; easy 3 %), and slices 8–10 mm apart (easy 8 mm).
    /// --lesion-masks writes the ground truth of the abnormal scans to OUT/masks/.
    Synth(volume::SynthArgs),
    /// Train the Keras example's 3D CNN on a class-folder dataset or a CSV manifest.
    ///
    /// Scans are preprocessed through the `prepare` cache, split per class in sorted file-name
    /// order (first --split train, rest validation), augmented on the fly (the example's random
    /// rotation, or the recipe of --augment/--augment-file: flip, affine, noise, …), and
    /// trained with Adam and binary cross-entropy, validating every epoch. RUN receives
    /// config.json, history.csv, best/last weights (safetensors, Keras layer names) and the
    /// optimizer state. Defaults are the example's; with the same --seed two CPU runs give the same
    /// history, and a run killed at any moment continues with --resume to the same result.
    Train(train::TrainArgs),
    /// Cross-validate: train and evaluate all K folds of a stratified k-fold split.
    ///
    /// Fold I's run (DIR/fold-I) validates on fold I and trains on the others, with the train
    /// options given (same seed for all folds: it also draws the folds). Each fold's best weights
    /// are evaluated on its validation fold; the per-fold loss, accuracy, ROC AUC, sensitivity and
    /// specificity and their mean ± sample SD are printed and written to DIR/cv.json and
    /// DIR/cv.csv. Rerunning skips finished folds and resumes an interrupted one.
    Cv(train::CvArgs),
    /// Cross-validation over several seeds and recipes as independent tasks: on a Slurm
    /// cluster (job arrays), a Kubernetes Indexed Job, or a local loop, with identical results.
    ///
    /// `ct3d sweep plan` writes DIR/sweep.json (every recipe × seed × fold, with its exact
    /// `ct3d train` arguments); `ct3d sweep submit DIR` submits them as a Slurm array plus a collect
    /// job; `ct3d sweep run-task DIR --index I` runs one (skipping it when finished, resuming it
    /// when killed); `ct3d sweep collect DIR` writes summary.csv/.json/.html. See README "Running
    /// on a cluster".
    Sweep(sweep::SweepArgs),
    /// Evaluate a trained run: loss, accuracy, ROC AUC, sensitivity, specificity, confusion matrix.
    ///
    /// Accuracy, sensitivity, specificity and AUC carry 95 % confidence intervals (stratified
    /// bootstrap, 2,000 seeded resamples; DeLong's interval for the AUC), and the Brier score and
    /// expected calibration error (15 bins) say how far the probabilities can be trusted. A run
    /// calibrated with `ct3d calibrate` is evaluated with its calibrated probabilities and
    /// threshold (--raw: without).
    Eval(model::EvalArgs),
    /// Predict raw scans with a trained run, printing the example's two sentences per scan.
    ///
    /// Scans are preprocessed with the run's recorded parameters. Folders are expanded to the scan
    /// files they hold. A scan that fails is reported (with --json/--csv: as an entry with an
    /// error) and the exit code is 1 after the others are predicted.
    Predict(model::PredictArgs),
    /// Show where the model looked: a heat map per scan, on the scan's own grid.
    ///
    /// Grad-CAM (default; or Grad-CAM++) weights a convolution block's channels by the gradient
    /// of the class score (--layer picks the block, default the last); occlusion hides patches of
    /// the scan and maps how much the probability drops. Each scan is preprocessed with the run's
    /// parameters; the map is brought back through the resize and the 90° rotation onto the raw
    /// scan's voxel grid and affine, written as float32 NIfTI (overlay it on the scan in 3D
    /// Slicer, ITK-SNAP or niivue), drawn over the montage as PNG, and summarised in one JSON
    /// line (probability, peak in voxels and scanner millimetres) per scan.
    ///
    /// Example: ct3d explain --run RUN scans/CT-23/ --out maps
    Explain(explain::ExplainArgs),
    /// Calibrate a trained run's probabilities: temperature scaling fitted on its validation scans.
    ///
    /// Finds the temperature T that minimises the validation scans' negative log-likelihood of
    /// sigmoid(logit / T), records it in RUN/calibration.json (with a decision threshold, if
    /// --threshold youden), and prints NLL, expected calibration error and Brier score before and
    /// after. `eval` and `predict` then give calibrated probabilities (and use the threshold),
    /// and say so; --raw gives the network's own. Runs without calibration.json are unchanged.
    Calibrate(calibrate::CalibrateArgs),
    /// Draw one axial slice of a scan as a grayscale PNG (the example's `plt.imshow(image[:, :, 30])`).
    ///
    /// The scan is preprocessed as for training (HU window, rotation, resize) unless --raw is
    /// given. Rows are the volume's x axis and columns its y axis, as imshow draws the array; the
    /// gray scale stretches the slice's minimum to black and maximum to white. --augment LIST (or
    /// --augment-file FILE) applies an augmentation recipe after preprocessing, drawn with
    /// --augment-seed S, to check it by eye.
    Show(pictures::ShowArgs),
    /// Draw a montage of consecutive slices, exactly as the example's `plot_slices` arranges them.
    ///
    /// Tiles run row by row from --first, without gaps; like the example's figure (which applies
    /// np.rot90 and np.transpose before reshaping), each tile is the slice mirrored left-right
    /// relative to `ct3d show`, and each tile's gray scale is stretched on its own.
    Montage(pictures::MontageArgs),
    /// Plot a run's accuracy and loss per epoch, training vs validation (the example's figure).
    Plot(pictures::PlotArgs),
    /// Write a self-contained HTML report of a run: configuration, data, curves, best epoch,
    /// validation metrics, ROC curve, confusion matrix, and montages of validation scans.
    ///
    /// Images are embedded, nothing is loaded from the network: the file can be shared or printed
    /// as it is. Evaluates the validation scans with the chosen weights.
    Report(pictures::ReportArgs),
    /// See what a preprocessing cache holds, and free it: `ct3d cache info DIR`,
    /// `ct3d cache clean DIR [--keep-size W,H,D] [--dry-run]`.
    Cache(volume::CacheArgs),
    /// Download a public dataset: `ct3d fetch mosmed --out DIR` gets the Keras example's scans.
    ///
    /// Resumable, verified (SHA-256) downloads, unpacked safely into class folders.
    Fetch(fetch::FetchArgs),
    /// Write a run's network as an ONNX model (opset 17) for ONNX Runtime, TensorRT or Triton.
    ///
    /// Inference mode (BatchNorm with its moving statistics, no dropout). Input `input`
    /// [N, 1, X, Y, Z] float32 in [0, 1] (the volume `ct3d preprocess` writes); outputs `logit` and
    /// `probability` [N, 1], the latter with the run's calibration temperature when `ct3d
    /// calibrate` fitted one, so it equals `ct3d predict`'s. The metadata properties (ct3d.*)
    /// record the preprocessing, class names, decision threshold, weights and config hash.
    Export(export::ExportArgs),
    /// Serve a run over HTTP: POST /v1/predict with a NIfTI (.nii or gzip) or a zip of one DICOM
    /// series answers JSON (probability, class, config hash, timings).
    ///
    /// GET /healthz, /readyz and /metrics (Prometheus). A fixed pool of workers (--workers) takes
    /// requests from a bounded queue (--queue): when it is full the answer is 503 with
    /// Retry-After. Bodies above --max-body-mib get 413, requests slower than --request-timeout
    /// 408, bad bodies 400 with a one-line JSON error; the service keeps serving. SIGTERM
    /// answers the requests in flight, then exits 0.
    Serve(serve::ServeArgs),
    /// Print the model's layers, output shapes and parameter counts, like Keras's model.summary().
    Summary(model::SummaryArgs),
    /// Time one training step and one-scan inference on random data (warm-up excluded, median).
    Bench(model::BenchArgs),
    /// Run the whole pipeline on synthetic phantoms and write a report.
    ///
    /// Synthesises a small phantom dataset (both classes) and two held-out scans, trains the
    /// example's model (at 48×48×48 for a few epochs: minutes on 2 CPU cores), evaluates it,
    /// predicts the held-out scans with the example's sentences, draws the pictures, and writes
    /// DIR/report.html. `--full` uses the example's own settings instead (hours on a CPU).
    Demo(demo::DemoArgs),
}
