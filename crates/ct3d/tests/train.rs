//! Library-level tests of `ct3d::train::train` on tiny phantoms (64×64 in-plane, model input
//! 48×48×48, filters 4,4,8,8): seed determinism, resuming after a crash at several moments, the
//! run folder's contents, and that the real pipeline can fit a small separable dataset.
//!
//! A crash is simulated by an observer that panics inside `train`: `epoch()` is called right
//! after an epoch's commit, `batch()` in the middle of an epoch, before anything of it is saved.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ct3d::config::TrainParams;
use ct3d::history::{EpochRecord, HISTORY_HEADER, from_csv};
use ct3d::run::{RunDir, RunState, SplitPart, TrainConfig};
use ct3d::train::{Silent, TrainObserver, TrainOutcome, TrainRequest, train};
use ct3d_model::weights::{load_optimizer, load_weights};
use ct3d_model::{Adam, DeviceChoice, ExponentialDecay, ModelParams};
use ct3d_volume::cache::hash_file;
use ct3d_volume::nifti_io::{OutputDtype, write_volume};
use ct3d_volume::preprocess::{PreprocessConfig, PreprocessParams};
use ct3d_volume::rng::SplitMix64;
use ct3d_volume::synth::{PhantomConfig, write_dataset};
use ct3d_volume::volume::Volume;

const SIZE: [usize; 3] = [48, 48, 48];

/// Writes `normal` + `abnormal` phantoms (64×64 in-plane) into `dir/data` and returns it.
fn phantoms(dir: &Path, normal: usize, abnormal: usize, seed: u64) -> PathBuf {
    let data = dir.join("data");
    let config = PhantomConfig {
        shape_xy: 64,
        ..PhantomConfig::default()
    };
    write_dataset(
        &data,
        normal,
        abnormal,
        seed,
        &config,
        |path, volume| write_volume(path, volume, OutputDtype::I16),
        || {},
    )
    .unwrap();
    data
}

/// The seed's settings, shrunk: input 48³, filters 4,4,8,8, a 16-unit dense layer.
fn small_config(seed: u64, epochs: usize) -> TrainConfig {
    small_params(seed, epochs).check().unwrap()
}

/// [`small_config`]'s parameters, to change before checking.
fn small_params(seed: u64, epochs: usize) -> TrainParams {
    TrainParams {
        epochs,
        seed,
        preprocess: PreprocessConfig::sized(SIZE).unwrap(),
        model: ModelParams {
            filters: vec![4, 4, 8, 8],
            dense: 16,
            ..ModelParams::default()
        },
        ..TrainParams::default()
    }
}

fn request(data: &Path, out: &Path, config: TrainConfig) -> TrainRequest {
    TrainRequest {
        data: data.to_owned(),
        manifest: None,
        out: out.to_owned(),
        cache: data.join(".cache"),
        config,
        device: DeviceChoice::Cpu,
        resume: false,
        force: false,
        skip_bad: false,
        given: Vec::new(),
    }
}

/// The history with wall-clock times zeroed: everything else must reproduce exactly.
fn without_seconds(rows: &[EpochRecord]) -> Vec<EpochRecord> {
    rows.iter()
        .map(|r| EpochRecord { seconds: 0.0, ..*r })
        .collect()
}

fn state_without_seconds(run: &Path) -> RunState {
    let mut state = RunDir::new(run).read_state().unwrap();
    state.history = without_seconds(&state.history);
    state
}

fn bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts that two finished runs are the same run: history (except `seconds`), state, every
/// weights and optimizer file byte for byte, and the same checkpoint files.
fn assert_same_run(expected: &Path, actual: &Path) {
    let history = |run: &Path| {
        let path = run.join("history.csv");
        without_seconds(&from_csv(&fs::read_to_string(&path).unwrap(), &path).unwrap())
    };
    assert_eq!(history(expected), history(actual), "history.csv");
    assert_eq!(
        state_without_seconds(expected),
        state_without_seconds(actual),
        "state.json"
    );
    for name in [
        "last.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(
            bytes(&expected.join(name)) == bytes(&actual.join(name)),
            "{name} differs between {} and {}",
            expected.display(),
            actual.display()
        );
    }
    let checkpoints = |run: &Path| file_names(&run.join("checkpoints"));
    assert_eq!(checkpoints(expected), checkpoints(actual), "checkpoints/");
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantoms(dir.path(), 6, 6, 3);
    let runs = ["a", "b", "c"].map(|name| dir.path().join(name));
    // The first run fills the cache and the second reads it: that must not matter either.
    let a = train(&request(&data, &runs[0], small_config(1, 3)), &Silent).unwrap();
    let b = train(&request(&data, &runs[1], small_config(1, 3)), &Silent).unwrap();
    assert_eq!(a.history.len(), 3);
    assert_eq!(without_seconds(&a.history), without_seconds(&b.history));
    assert_same_run(&runs[0], &runs[1]);
    assert!(
        bytes(&runs[0].join("config.json")) == bytes(&runs[1].join("config.json")),
        "config.json"
    );

    let c = train(&request(&data, &runs[2], small_config(2, 3)), &Silent).unwrap();
    assert_ne!(
        without_seconds(&a.history),
        without_seconds(&c.history),
        "another seed must give another history"
    );
    assert!(
        bytes(&runs[0].join("last.safetensors")) != bytes(&runs[2].join("last.safetensors")),
        "another seed must give other weights"
    );
}

/// `recompute_batch_norm` ("precise BN") only replaces the moving statistics between epochs:
/// training mode never reads them and the recompute takes no gradient step, so every training
/// step — the loss and accuracy columns, and the optimizer's moments — is that of the run
/// without it, while the saved inference weights differ. It is recorded and reproducible.
#[test]
fn recomputing_batch_norm_changes_only_the_moving_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantoms(dir.path(), 4, 4, 5);
    let [plain, precise, again] = ["plain", "precise", "again"].map(|name| dir.path().join(name));
    let precise_config = || {
        TrainParams {
            recompute_batch_norm: true,
            ..small_params(4, 2)
        }
        .check()
        .unwrap()
    };
    let a = train(&request(&data, &plain, small_config(4, 2)), &Silent).unwrap();
    let b = train(&request(&data, &precise, precise_config()), &Silent).unwrap();
    assert_eq!(a.history.len(), 2);
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(
            (x.loss, x.acc),
            (y.loss, y.acc),
            "epoch {}: training columns",
            x.epoch
        );
    }
    assert!(
        bytes(&plain.join("optimizer.safetensors"))
            == bytes(&precise.join("optimizer.safetensors")),
        "the training steps must not change"
    );
    assert!(
        bytes(&plain.join("last.safetensors")) != bytes(&precise.join("last.safetensors")),
        "the moving statistics must be replaced"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&bytes(&precise.join("config.json"))).unwrap();
    assert_eq!(config["train"]["recompute_batch_norm"], true, "{config}");

    train(&request(&data, &again, precise_config()), &Silent).unwrap();
    assert_same_run(&precise, &again);
}

#[test]
fn a_committed_state_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("run"), false).unwrap();
    // Before the first epoch the callbacks hold +inf and -inf, which JSON numbers cannot.
    let mut state = RunState::new(15);
    run.commit(&state).unwrap();
    assert_eq!(run.read_state().unwrap(), state);

    // Shortest decimal forms that a fast (not correctly rounding) float parser reads one unit
    // in the last place off; a resumed history must equal the uninterrupted one bit for bit.
    let record = EpochRecord {
        epoch: 1,
        loss: 0.9381765425205231,
        acc: 0.9611757480989835,
        val_loss: 1.2095605455522853,
        val_acc: 0.11034448250981299,
        lr: 1.1215412408514747,
        seconds: 0.1 + 0.2,
    };
    state
        .callbacks
        .on_epoch_end(1, record.val_loss, record.val_acc);
    state.history.push(record);
    state.completed_epochs = 1;
    run.commit(&state).unwrap();
    assert_eq!(run.read_state().unwrap(), state);

    // A diverged epoch: its NaN losses are kept, and so is everything else.
    state.history.push(EpochRecord {
        epoch: 2,
        loss: f64::NAN,
        val_loss: f64::NAN,
        ..record
    });
    state.callbacks.on_epoch_end(2, f64::NAN, record.val_acc);
    state.completed_epochs = 2;
    run.commit(&state).unwrap();
    let back = run.read_state().unwrap();
    assert!(back.history[1].loss.is_nan() && back.history[1].val_loss.is_nan());
    assert_eq!(back.history[0], record);
    assert_eq!(back.callbacks, state.callbacks);
    assert_eq!(back.completed_epochs, 2);
}

/// Where the simulated crash happens.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// Right after epoch `n` was committed.
    AfterCommit(usize),
    /// During epoch `n`, after `b` of its batches (nothing of epoch `n` saved yet).
    MidEpoch(usize, usize),
}

struct Crasher(Crash);

impl TrainObserver for Crasher {
    fn batch(&self, epoch: usize, done: usize, _total: usize, _loss: f64, _acc: f64) {
        if let Crash::MidEpoch(e, b) = self.0
            && (epoch, done) == (e, b)
        {
            panic!("simulated crash in epoch {epoch} after batch {done}");
        }
    }

    fn epoch(&self, record: &EpochRecord, _epochs: usize, _data_wait: std::time::Duration) {
        if let Crash::AfterCommit(e) = self.0
            && record.epoch == e
        {
            panic!("simulated crash right after epoch {e} was committed");
        }
    }
}

#[test]
fn a_crashed_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantoms(dir.path(), 6, 6, 4);
    let epochs = 4;
    let reference = dir.path().join("reference");
    train(
        &request(&data, &reference, small_config(7, epochs)),
        &Silent,
    )
    .unwrap();

    let crashes = [
        Crash::AfterCommit(1),
        Crash::AfterCommit(3),
        Crash::MidEpoch(3, 2),
        // Before the first commit: only config.json exists.
        Crash::MidEpoch(1, 1),
    ];
    for (i, crash) in crashes.into_iter().enumerate() {
        let run = dir.path().join(format!("crash-{i}"));
        let crashed = panic::catch_unwind(AssertUnwindSafe(|| {
            train(
                &request(&data, &run, small_config(7, epochs)),
                &Crasher(crash),
            )
        }));
        assert!(crashed.is_err(), "{crash:?}: the observer did not crash");
        let committed = match crash {
            Crash::AfterCommit(e) => e,
            Crash::MidEpoch(e, _) => e - 1,
        };
        let on_disk = RunDir::new(&run)
            .read_state()
            .map_or(0, |s| s.completed_epochs);
        assert_eq!(on_disk, committed, "{crash:?}: committed epochs");

        // Resuming uses the recorded hyper-parameters, whatever the request says.
        let resume = TrainRequest {
            resume: true,
            ..request(&data, &run, small_config(99, 9))
        };
        let outcome = train(&resume, &Silent).unwrap_or_else(|e| panic!("{crash:?}: {e}"));
        assert_eq!(outcome.history.len(), epochs, "{crash:?}");
        assert_same_run(&reference, &run);
    }
}

#[test]
fn the_run_folder_records_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantoms(dir.path(), 6, 6, 5);
    let run = dir.path().join("run");
    let mut config = small_params(11, 3);
    config.batch_size = 3;
    config.schedule = ExponentialDecay {
        initial: 2e-4,
        decay_steps: 4,
        rate: 0.5,
        staircase: true,
    };
    config.patience = 9;
    config.preprocess = PreprocessParams {
        hu_min: -900.0,
        hu_max: 300.0,
        ..config.preprocess.params()
    }
    .check()
    .unwrap();
    config.model.dropout = 0.25;
    config.classes.negative_name = "clear".into();
    config.classes.positive_name = "opaque".into();
    let config = config.check().unwrap();
    let outcome: TrainOutcome = train(&request(&data, &run, config.clone()), &Silent).unwrap();
    let dir_run = RunDir::new(&run);

    // config.json: every hyper-parameter (round-trips to the same TrainConfig), the version,
    // and every scan with its label, hash and split.
    let recorded = dir_run.read_config().unwrap();
    assert_eq!(recorded.train, config);
    assert_eq!(recorded.ct3d_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(recorded.device, "cpu");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir_run.config()).unwrap()).unwrap();
    for pointer in [
        "/train/epochs",
        "/train/batch_size",
        "/train/schedule/initial",
        "/train/schedule/decay_steps",
        "/train/schedule/rate",
        "/train/schedule/staircase",
        "/train/adam/beta_1",
        "/train/adam/beta_2",
        "/train/adam/epsilon",
        "/train/patience",
        "/train/train_fraction",
        "/train/augment",
        "/train/seed",
        "/train/preprocess/hu_min",
        "/train/preprocess/hu_max",
        "/train/preprocess/size",
        "/train/model/input",
        "/train/model/filters",
        "/train/model/dense",
        "/train/model/dropout",
        "/train/classes/negative_folder",
        "/train/classes/positive_folder",
        "/train/classes/negative_name",
        "/train/classes/positive_name",
        "/ct3d_version",
    ] {
        assert!(
            json.pointer(pointer).is_some(),
            "config.json lacks {pointer}"
        );
    }
    assert_eq!(json.pointer("/train/seed"), Some(&serde_json::json!(11)));
    assert_eq!(
        json.pointer("/train/architecture"),
        Some(&serde_json::json!("seed_cnn"))
    );
    assert_eq!(
        json.pointer("/train/architecture"),
        Some(&serde_json::json!("seed_cnn"))
    );
    assert_eq!(recorded.files.len(), 12);
    for (class, label) in [("CT-0", 0), ("CT-23", 1)] {
        let mut scans: Vec<PathBuf> = fs::read_dir(data.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        scans.sort();
        for (i, scan) in scans.iter().enumerate() {
            let file = recorded
                .files
                .iter()
                .find(|f| f.path == *scan)
                .unwrap_or_else(|| panic!("{} not in config.json", scan.display()));
            assert_eq!(file.label, label);
            let hex: String = hash_file(scan)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(file.sha256, hex, "{}", scan.display());
            // 70 % of 6 is 4: the first four in file-name order train.
            let split = if i < 4 {
                SplitPart::Train
            } else {
                SplitPart::Validation
            };
            assert_eq!(file.split, split, "{}", scan.display());
        }
    }

    // history.csv: the header and exactly the outcome's rows.
    let csv = fs::read_to_string(dir_run.history()).unwrap();
    assert_eq!(csv.lines().next(), Some(HISTORY_HEADER));
    assert_eq!(HISTORY_HEADER, "epoch,loss,acc,val_loss,val_acc,lr,seconds");
    let rows = from_csv(&csv, &dir_run.history()).unwrap();
    assert_eq!(rows, outcome.history);
    assert_eq!(
        rows.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // 8 training scans in batches of 3 make 3 steps per epoch; the last steps of epochs 1, 2
    // and 3 (steps 2, 5 and 8, from 0) fall in staircases 0, 1 and 2 of 4 steps each.
    let lrs: Vec<f64> = rows.iter().map(|r| r.lr).collect();
    assert_eq!(lrs, vec![2e-4, 1e-4, 5e-5]);
    for r in &rows {
        assert!(r.seconds > 0.0 && r.loss.is_finite() && r.val_loss.is_finite());
        assert!((0.0..=1.0).contains(&r.acc) && (0.0..=1.0).contains(&r.val_acc));
    }

    // best = the epoch with the lowest val_loss (the first of equals), last = the last epoch.
    let best = rows
        .iter()
        .fold(&rows[0], |b, r| if r.val_loss < b.val_loss { r } else { b });
    assert_eq!(outcome.best_epoch, best.epoch);
    let state = dir_run.read_state().unwrap();
    let (best_name, _) = RunDir::epoch_checkpoint_names(best.epoch);
    let (last_name, optimizer_name) = RunDir::epoch_checkpoint_names(3);
    assert!(bytes(&dir_run.best_weights()) == bytes(&run.join(&best_name)));
    assert!(bytes(&dir_run.last_weights()) == bytes(&run.join(&last_name)));
    assert!(bytes(&dir_run.optimizer()) == bytes(&run.join(&optimizer_name)));
    assert_eq!(state.completed_epochs, 3);
    assert_eq!(state.steps, 9);
    assert_eq!(state.finished.as_deref(), Some("completed"));

    // The files load into the recorded architecture; the optimizer state holds its step count.
    let model = recorded
        .train
        .model_config()
        .init(&DeviceChoice::Cpu.resolve().unwrap(), 0)
        .unwrap();
    let model = load_weights(model, &dir_run.best_weights()).unwrap();
    let model = load_weights(model, &dir_run.last_weights()).unwrap();
    let optimizer: Adam = load_optimizer(config.adam, &model, &dir_run.optimizer()).unwrap();
    assert_eq!(optimizer.iterations(), 9);
}

/// Scan `index` of a separable dataset: noisy lung-like background (≈ −800 HU) and, for the
/// positive class, a 20×20×16-voxel block of soft tissue (+100 HU) at a position that varies.
fn separable_scan(index: usize, positive: bool) -> Volume {
    let mut rng = SplitMix64::new(1000 + index as u64);
    let corner = [8 + 7 * index % 30, 34 - 5 * index % 26, 6 + 3 * index % 20];
    Volume::from_fn([64, 64, 40], |x, y, z| {
        let inside = (corner[0]..corner[0] + 20).contains(&x)
            && (corner[1]..corner[1] + 20).contains(&y)
            && (corner[2]..corner[2] + 16).contains(&z);
        if positive && inside {
            100.0
        } else {
            -800.0 + 60.0 * (rng.next_f32() - 0.5)
        }
    })
}

/// The real pipeline (NIfTI files → preprocessing cache → augmented batches → Adam) fits eight
/// training scans: an epoch with training accuracy 1.0 and a low loss within a bounded number
/// of epochs.
///
/// The synthetic phantoms are not used here: at 48³ their ground-glass opacities cover a few
/// voxels and the scan-to-scan variation of lung volume dominates, so a 4,4,8,8 model at batch
/// size 2 (BatchNorm in training mode normalises each pair) stays near chance for 60 epochs.
#[test]
fn the_pipeline_fits_eight_separable_scans() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (class, positive) in [("CT-0", false), ("CT-23", true)] {
        fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..5 {
            let index = 2 * i + usize::from(positive);
            let path = data.join(class).join(format!("scan_{i}.nii.gz"));
            write_volume(&path, &separable_scan(index, positive), OutputDtype::I16).unwrap();
        }
    }
    let mut config = small_params(1, 30);
    // 4 + 4 training scans; the seed's dense width and ten times its learning rate.
    config.train_fraction = 0.8;
    config.model.dense = 512;
    config.schedule.initial = 1e-3;
    config.patience = 30;
    let config = config.check().unwrap();
    let run = dir.path().join("run");
    let outcome = train(&request(&data, &run, config), &Silent).unwrap();
    let fitted = outcome
        .history
        .iter()
        .find(|r| r.acc == 1.0 && r.loss < 0.2);
    let summary: Vec<String> = outcome
        .history
        .iter()
        .map(|r| format!("{}: {:.3}/{:.3}", r.epoch, r.loss, r.acc))
        .collect();
    assert!(
        fitted.is_some(),
        "no epoch with training accuracy 1.0 and loss < 0.2 in {} epochs: {summary:?}",
        outcome.history.len()
    );
    println!("fitted at epoch {}: {summary:?}", fitted.unwrap().epoch);
}

/// Records what `started` reports: (training scans, validation scans).
struct SplitSpy(std::sync::Mutex<Option<(usize, usize)>>);

impl TrainObserver for SplitSpy {
    fn started(&self, _first_epoch: usize, _epochs: usize, train: usize, validation: usize) {
        *self.0.lock().unwrap() = Some((train, validation));
    }
}

#[test]
fn resuming_keeps_the_recorded_split() {
    // A run whose config.json records another split than today's rule would compute (as a run
    // of an older ct3d would): --resume continues with the recorded one instead of refusing or
    // recomputing it, so a change of the split rule never breaks resuming.
    let dir = tempfile::tempdir().unwrap();
    let data = phantoms(dir.path(), 4, 4, 6);
    let run = dir.path().join("run");
    train(&request(&data, &run, small_config(3, 1)), &Silent).unwrap();
    let config_path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config_path).unwrap()).unwrap();
    let files = config["files"].as_array_mut().unwrap();
    let validation: Vec<usize> = (0..files.len())
        .filter(|&i| files[i]["split"] == "validation")
        .collect();
    assert_eq!(validation.len(), 4, "2 + 2 validation scans of 4 + 4");
    files[validation[0]]["split"] = "train".into();
    fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    let spy = SplitSpy(std::sync::Mutex::new(None));
    let resume = TrainRequest {
        resume: true,
        ..request(&data, &run, small_config(3, 1))
    };
    train(&resume, &spy).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*spy.0.lock().unwrap(), Some((5, 3)));

    // Changed data is still refused.
    fs::copy(
        data.join("CT-0").join("phantom_0001.nii.gz"),
        data.join("CT-0").join("phantom_0000.nii.gz"),
    )
    .unwrap();
    let err = train(&resume, &Silent).unwrap_err().to_string();
    assert!(
        err.contains("the scans differ from those recorded"),
        "{err}"
    );
}

/// `ct3d::demo::run_demo` runs the whole pipeline as a library call (tiny settings here: the
/// command's are minutes of training) and tells its observer every step in order.
#[test]
fn the_demo_is_a_library_call() {
    use ct3d::demo::{DemoObserver, DemoOptions, DemoSettings, DemoStep, run_demo};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Steps(Mutex<Vec<usize>>, Mutex<Vec<PathBuf>>);
    impl DemoObserver for Steps {
        fn step(&self, step: &DemoStep) {
            self.0.lock().unwrap().push(step.number());
        }
        fn training(&self) -> &dyn TrainObserver {
            &Silent
        }
        fn wrote(&self, path: &Path) {
            self.1.lock().unwrap().push(path.to_owned());
        }
        fn reported(&self, path: &Path, html_bytes: usize) {
            assert_eq!(fs::metadata(path).unwrap().len(), html_bytes as u64);
            self.1.lock().unwrap().push(path.to_owned());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let settings = DemoSettings {
        scans_per_class: 5,
        size_xy: 32,
        depth: Some(24),
        input: [24, 24, 24],
        filters: vec![2, 2, 4],
        dense: 4,
        epochs: 1,
        ..DemoSettings::quick()
    };
    let observer = Steps::default();
    let options = DemoOptions {
        out: out.clone(),
        settings,
        device: DeviceChoice::Cpu,
    };
    let outcome = run_demo(&options, &observer).unwrap();
    assert_eq!(
        *observer.0.lock().unwrap(),
        (1..=DemoStep::COUNT).collect::<Vec<_>>()
    );
    assert_eq!(outcome.report, out.join("report.html"));
    assert!(outcome.report.is_file() && out.join("plots/curves.png").is_file());
    assert!(out.join("plots/roc.png").is_file() && out.join("plots/confusion.png").is_file());
    assert_eq!(outcome.predictions.len(), 2);
    assert_eq!(outcome.trained.history.len(), 1);
    // The recorded validation part of 5 + 5 scans (the example's 70/30 split: 2 per class).
    assert_eq!(outcome.evaluation.metrics.count, 4);
    let config = fs::read_to_string(outcome.run.join("config.json")).unwrap();
    assert!(config.contains("\"seed\": 0"), "{config}");
    // A rerun reuses the demo's own folder; a user's folder is refused before anything is written.
    run_demo(&options, &observer).unwrap();
    let mine = dir.path().join("mine");
    fs::create_dir_all(mine.join("CT-0")).unwrap();
    let refused = run_demo(
        &DemoOptions {
            out: mine.clone(),
            ..options.clone()
        },
        &observer,
    );
    let message = refused.err().unwrap().to_string();
    assert!(message.contains("not made by `ct3d demo`"), "{message}");
    assert_eq!(fs::read_dir(&mine).unwrap().count(), 1);
}

/// Class balance: `balanced` loss weights and the balanced sampler change training (same seed,
/// other losses), are recorded in `config.json`, and are deterministic (a rerun gives the same
/// files byte for byte).
#[test]
fn class_balance_is_recorded_and_deterministic() {
    use ct3d::config::{ClassWeight, Sampler};
    let dir = tempfile::tempdir().unwrap();
    // 3 normal and 9 abnormal scans: the abnormal class is three times as common.
    let data = phantoms(dir.path(), 3, 9, 6);
    let run_with = |name: &str, class_weight, sampler| {
        let config = TrainParams {
            class_weight,
            sampler,
            ..small_params(5, 2)
        }
        .check()
        .unwrap();
        let run = dir.path().join(name);
        let outcome = train(&request(&data, &run, config), &Silent).unwrap();
        (run, outcome.history)
    };
    let (_, plain) = run_with("plain", ClassWeight::None, Sampler::Shuffle);
    let (weighted_run, weighted) = run_with("weighted", ClassWeight::Balanced, Sampler::Shuffle);
    let (again_run, _) = run_with("again", ClassWeight::Balanced, Sampler::Shuffle);
    let (sampled_run, sampled) = run_with("sampled", ClassWeight::None, Sampler::Balanced);
    assert_same_run(&weighted_run, &again_run);
    // The same seed draws the same initial weights: only the loss weights or the draws differ.
    assert_ne!(plain[0].loss, weighted[0].loss);
    assert_ne!(plain[0].loss, sampled[0].loss);
    let recorded = RunDir::new(&weighted_run).read_config().unwrap();
    assert_eq!(recorded.train.class_weight, ClassWeight::Balanced);
    assert_eq!(recorded.train.sampler, Sampler::Shuffle);
    let recorded = RunDir::new(&sampled_run).read_config().unwrap();
    assert_eq!(recorded.train.sampler, Sampler::Balanced);
}
