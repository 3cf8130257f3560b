//! The run's configuration: what the user asked a run to be (every hyper-parameter, the
//! classes, the fold of a cross-validation) and what `config.json` records of it. This is the
//! ground floor of the library: every other module may read a configuration, and this one reads
//! none of them.

use std::path::PathBuf;

use ct3d_model::{AdamConfig, Architecture, ExponentialDecay, ModelConfig, ModelParams};
use ct3d_volume::augment::Augmentations;
use ct3d_volume::preprocess::PreprocessConfig;
#[cfg(test)]
use ct3d_volume::preprocess::PreprocessParams;
use serde::{Deserialize, Serialize};

/// Class folder names and the words the prediction sentences use for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    /// Folder of label-0 scans (seed: `CT-0`).
    pub negative_folder: String,
    /// Folder of label-1 scans (seed: `CT-23`).
    pub positive_folder: String,
    /// What label 0 is called in sentences (seed: "normal").
    pub negative_name: String,
    /// What label 1 is called in sentences (seed: "abnormal").
    pub positive_name: String,
}

impl Default for Classes {
    fn default() -> Self {
        Self {
            negative_folder: "CT-0".into(),
            positive_folder: "CT-23".into(),
            negative_name: "normal".into(),
            positive_name: "abnormal".into(),
        }
    }
}

/// Every hyper-parameter of a training run as the user wrote it; [`Default`] is the Keras
/// example's setting. [`TrainParams::check`] turns it into the [`TrainConfig`] that training,
/// evaluation and prediction take.
///
/// Serialized as `config.json`'s `train`, with `model.input` written beside the model's other
/// fields (always `preprocess.size`; never read back), so that the file keeps the shape it has
/// always had.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainParams {
    /// Maximum number of epochs (seed: 100).
    pub epochs: usize,
    /// Volumes per training step (seed: 2).
    pub batch_size: usize,
    /// Learning-rate schedule (seed: 1e-4 × 0.96 every 100 000 steps, staircase).
    pub schedule: ExponentialDecay,
    /// Adam's constants (Keras: β1 0.9, β2 0.999, ε 1e-7).
    pub adam: AdamConfig,
    /// Early-stopping patience on `val_acc`, in epochs (seed: 15).
    pub patience: usize,
    /// Fraction of each class used for training, in sorted file-name order (seed: 0.7).
    pub train_fraction: f64,
    /// The augmentations applied to training volumes, in order (seed: one random rotation,
    /// [`Augmentations::seed`]). Runs recorded before the list existed have `true` (that list)
    /// or `false` (none) here, and read back as such.
    pub augment: Augmentations,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Preprocessing of raw scans (checked on its own: [`PreprocessConfig`]); its `size` is also
    /// the network's input size.
    pub preprocess: PreprocessConfig,
    /// The network's hyper-parameters apart from its input size (see
    /// [`TrainConfig::model_config`]). `config.json` also records `model.input`, which is
    /// `preprocess.size`, and is ignored when read.
    pub model: ModelParams,
    /// Which network `model` configures (`"seed_cnn"`). Absent in runs written before it was
    /// recorded, which all trained the seed CNN.
    #[serde(default)]
    pub architecture: Architecture,
    /// Which folders are which class.
    pub classes: Classes,
    /// k-fold cross-validation: validate on fold `fold` of `count` (see [`crate::data::folds`])
    /// instead of the per-class `train_fraction` split. Absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<FoldSpec>,
    /// Loss weight per class (seed: none). Absent in older runs, which had none.
    #[serde(default)]
    pub class_weight: ClassWeight,
    /// Which training scans an epoch visits (seed: each once, shuffled). Absent in older runs.
    #[serde(default)]
    pub sampler: Sampler,
    /// Weights the network starts from instead of a random initialisation: a PyTorch state dict
    /// (`.pth`/`.pt`, ResNets only; see [`ct3d_model::pytorch`]) or a ct3d weights file of the
    /// same architecture (`RUN/best.safetensors`). Used when a run starts, not when it resumes.
    /// Absent in older runs and when not given.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Epochs at the start during which only the network's head trains (the encoder is frozen);
    /// 0 (the default, and older runs) trains everything from the first epoch.
    #[serde(default)]
    pub freeze_encoder_epochs: usize,
    /// After every epoch, replace the batch-norm moving statistics by the mean of the batch
    /// statistics of the clean (un-augmented) training scans under the epoch's final weights
    /// ([`ct3d_model::BatchNormStats`], "precise BN"), before validating and saving. Training
    /// itself is unchanged; validation, the best epoch and every prediction use the recomputed
    /// values. Costs one forward pass over the training split per epoch. Off (the default, and
    /// older runs) keeps the moving averages, as Keras does.
    #[serde(default)]
    pub recompute_batch_norm: bool,
}

/// How the loss weighs the two classes' scans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every scan weighs 1 (the Keras example).
    #[default]
    None,
    /// Each class weighs `n / (2 · n_class)` over the training scans, scikit-learn's
    /// `compute_class_weight("balanced")` as Keras's `class_weight` takes it: both classes then
    /// contribute equally to the loss however unequal their counts (MosMedData: 254 normal vs
    /// 856 abnormal).
    Balanced,
}

impl ClassWeight {
    /// The `[negative, positive]` loss weights for training labels (`0`/`1`), or `None` for
    /// unweighted training. With only one class in the training scans there is nothing to
    /// balance (scikit-learn refuses it): both weigh 1.
    pub fn weights(self, labels: impl IntoIterator<Item = u8>) -> Option<[f32; 2]> {
        match self {
            ClassWeight::None => None,
            ClassWeight::Balanced => {
                let mut counts = [0usize; 2];
                for label in labels {
                    counts[usize::from(label.min(1))] += 1;
                }
                if counts.contains(&0) {
                    return Some([1.0, 1.0]);
                }
                let total = (counts[0] + counts[1]) as f64;
                Some(counts.map(|n| (total / (2.0 * n as f64)) as f32))
            }
        }
    }
}

/// Which training scans an epoch visits, in what order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Every training scan once, in a seeded shuffle (the Keras example).
    #[default]
    Shuffle,
    /// As many draws as training scans, with replacement, each class drawn with probability ½
    /// and then a scan of it uniformly (PyTorch's `WeightedRandomSampler` with weights
    /// `1 / n_class`); seeded per epoch.
    Balanced,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 2,
            schedule: ExponentialDecay::default(),
            adam: AdamConfig::default(),
            patience: 15,
            train_fraction: 0.7,
            augment: Augmentations::seed(),
            seed: 0,
            preprocess: PreprocessConfig::default(),
            model: ModelParams::default(),
            architecture: Architecture::default(),
            classes: Classes::default(),
            folds: None,
            class_weight: ClassWeight::None,
            sampler: Sampler::Shuffle,
            init: None,
            freeze_encoder_epochs: 0,
            recompute_batch_norm: false,
        }
    }
}

impl Serialize for TrainParams {
    /// The derived form, except that `model` is written as the whole network, input size included
    /// (see the type's documentation). Destructured, so a new field cannot be forgotten here.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let TrainParams {
            epochs,
            batch_size,
            schedule,
            adam,
            patience,
            train_fraction,
            augment,
            seed,
            preprocess,
            model,
            architecture,
            classes,
            folds,
            class_weight,
            sampler,
            init,
            freeze_encoder_epochs,
            recompute_batch_norm,
        } = self;
        let mut out = serializer.serialize_struct("TrainParams", 18)?;
        out.serialize_field("epochs", epochs)?;
        out.serialize_field("batch_size", batch_size)?;
        out.serialize_field("schedule", schedule)?;
        out.serialize_field("adam", adam)?;
        out.serialize_field("patience", patience)?;
        out.serialize_field("train_fraction", train_fraction)?;
        out.serialize_field("augment", augment)?;
        out.serialize_field("seed", seed)?;
        out.serialize_field("preprocess", preprocess)?;
        out.serialize_field("model", &model.at(preprocess.size))?;
        out.serialize_field("architecture", architecture)?;
        out.serialize_field("classes", classes)?;
        match folds {
            Some(folds) => out.serialize_field("folds", folds)?,
            None => out.skip_field("folds")?,
        }
        out.serialize_field("class_weight", class_weight)?;
        out.serialize_field("sampler", sampler)?;
        // Written only when set, so that a run without them records what it always did.
        match init {
            Some(init) => out.serialize_field("init", init)?,
            None => out.skip_field("init")?,
        }
        match freeze_encoder_epochs {
            0 => out.skip_field("freeze_encoder_epochs")?,
            epochs => out.serialize_field("freeze_encoder_epochs", epochs)?,
        }
        match recompute_batch_norm {
            false => out.skip_field("recompute_batch_norm")?,
            true => out.serialize_field("recompute_batch_norm", &true)?,
        }
        out.end()
    }
}

/// A training configuration that cannot run. Settings are named by their `config.json` keys
/// (`epochs`, `schedule.initial`); the CLI says which flag sets each.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A numeric setting out of range.
    #[error("{key} {reason}")]
    OutOfRange {
        /// The setting's key in `config.json`'s `train` (`epochs`, `batch_size`,
        /// `train_fraction`, `schedule.initial`).
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The preprocessing settings cannot work.
    #[error(transparent)]
    Preprocess(#[from] ct3d_volume::preprocess::ConfigError),
    /// The fold is not one of the folds.
    #[error(transparent)]
    Folds(#[from] FoldError),
    /// The network cannot be built with these hyper-parameters on inputs of the preprocessing
    /// size.
    #[error(transparent)]
    Model(#[from] ct3d_model::ModelError),
}

impl TrainParams {
    /// Checks everything once, into the [`TrainConfig`] that no function deeper down re-checks.
    pub fn check(self) -> Result<TrainConfig, ConfigError> {
        let range = |key, ok: bool, reason| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { key, reason })
            }
        };
        range("epochs", self.epochs >= 1, "must be at least 1")?;
        if let Some(spec) = &self.folds {
            spec.validate()?;
        }
        range("batch_size", self.batch_size >= 1, "must be at least 1")?;
        range(
            "train_fraction",
            self.train_fraction > 0.0 && self.train_fraction < 1.0,
            "must be strictly between 0 and 1",
        )?;
        range(
            "schedule.initial",
            self.schedule.initial.is_finite() && self.schedule.initial > 0.0,
            "must be a positive number",
        )?;
        self.architecture
            .validate(&self.model.at(self.preprocess.size))?;
        Ok(TrainConfig(self))
    }
}

/// A checked training configuration: only [`TrainParams::check`] (or reading a `config.json`,
/// which checks) makes one, so what takes it never validates again. Its settings are read
/// through [`Deref`](std::ops::Deref) (`config.epochs`); to change one, take the parameters
/// ([`TrainConfig::params`]) and check again. Serializes as [`TrainParams`] (`config.json`'s
/// `train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TrainParams", into = "TrainParams")]
pub struct TrainConfig(TrainParams);

impl Default for TrainConfig {
    /// The Keras example's setting (valid: see the test `the_defaults_are_valid`).
    fn default() -> Self {
        Self(TrainParams::default())
    }
}

impl std::ops::Deref for TrainConfig {
    type Target = TrainParams;

    fn deref(&self) -> &TrainParams {
        &self.0
    }
}

impl TrainConfig {
    /// The network to build: [`TrainParams::model`] on inputs of the preprocessing size.
    pub fn model_config(&self) -> ModelConfig {
        self.0.model.at(self.0.preprocess.size)
    }

    /// A copy of the parameters, to change and [`check`](TrainParams::check) again.
    pub fn params(&self) -> TrainParams {
        self.0.clone()
    }
}

impl TryFrom<TrainParams> for TrainConfig {
    type Error = ConfigError;

    fn try_from(params: TrainParams) -> Result<Self, ConfigError> {
        params.check()
    }
}

impl From<TrainConfig> for TrainParams {
    fn from(config: TrainConfig) -> Self {
        config.0
    }
}

/// Which part of the data a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitPart {
    /// Used for training.
    Train,
    /// Used for validation.
    Validation,
}

/// One scan of the run's data, as recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Absolute path of the scan.
    pub path: PathBuf,
    /// 0 (negative) or 1 (positive).
    pub label: u8,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Train or validation.
    pub split: SplitPart,
    /// The patient (group) from the manifest's `patient` column, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// `config.json`: what the run was, enough to reproduce it or to preprocess new scans the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// ct3d's version that created the run.
    pub ct3d_version: String,
    /// The device the run trained on (`cpu`, `cuda`, `vulkan`).
    pub device: String,
    /// The data folder (absolute); for a manifest, the manifest's folder.
    pub data_root: PathBuf,
    /// The CSV manifest the data was listed in (absolute), when it was not class folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// The preprocessing cache folder (absolute).
    pub cache: PathBuf,
    /// Hyper-parameters.
    pub train: TrainConfig,
    /// Every scan with its label, hash and split.
    pub files: Vec<DataFile>,
    /// Each time `--resume --epochs` changed `train.epochs`, in order. Absent in older runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_changes: Vec<ScheduleChange>,
}

/// A change of a run's number of epochs when it was resumed (`--resume --epochs N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleChange {
    /// Epochs completed when the schedule changed.
    pub after_epoch: usize,
    /// `train.epochs` before.
    pub from: usize,
    /// `train.epochs` after.
    pub to: usize,
}

/// Which fold of a k-fold cross-validation a run trains: recorded in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldSpec {
    /// K, the number of folds (at least 2).
    pub count: usize,
    /// The validation fold, 1 to K.
    pub fold: usize,
}

/// Why folds could not be assigned. One line, naming the class or the fold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// K below 2.
    #[error("{0} folds: cross-validation needs at least 2")]
    TooFewFolds(usize),
    /// The fold number is outside 1..=K.
    #[error("fold {fold}: folds are numbered 1 to {count}")]
    NoSuchFold {
        /// The fold asked for.
        fold: usize,
        /// K.
        count: usize,
    },
    /// A class has fewer scans than folds.
    #[error(
        "class {class:?} has {scans} {}: too few for {count} folds (every fold needs at least \
         one scan of each class); use {scans} folds or fewer",
        if *scans == 1 { "scan" } else { "scans" }
    )]
    ClassTooSmall {
        /// The class name.
        class: String,
        /// Its number of scans.
        scans: usize,
        /// K.
        count: usize,
    },
    /// Patient groups could not be spread so that every fold has both classes.
    #[error(
        "the patients cannot be spread over {count} folds with scans of both classes in each \
         (fold {fold} has no {class:?} scan: {patients} patients have one); use fewer folds"
    )]
    GroupsTooFew {
        /// K.
        count: usize,
        /// A fold without the class.
        fold: usize,
        /// The class it lacks.
        class: String,
        /// How many groups hold scans of that class.
        patients: usize,
    },
}

impl FoldSpec {
    /// Checks K ≥ 2 and 1 ≤ fold ≤ K.
    pub fn validate(&self) -> Result<(), FoldError> {
        if self.count < 2 {
            return Err(FoldError::TooFewFolds(self.count));
        }
        if self.fold == 0 || self.fold > self.count {
            return Err(FoldError::NoSuchFold {
                fold: self.fold,
                count: self.count,
            });
        }
        Ok(())
    }
}

/// A setting given for a resumed run that differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// The configuration key, e.g. `schedule.initial` (see [`TrainConfig`]'s JSON).
    pub key: String,
    /// The recorded value, as JSON (arrays without brackets: `48,48,48`).
    pub recorded: String,
    /// The given value, in the same form.
    pub given: String,
}

/// The first of `keys` (dotted configuration keys such as `schedule.initial` or `model.filters`)
/// whose value differs between `recorded` and `given`. A key that neither has is equal.
pub fn changed_setting(
    recorded: &TrainConfig,
    given: &TrainConfig,
    keys: &[String],
) -> Option<SettingChange> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(recorded), serde_json::to_value(given)) else {
        return None;
    };
    keys.iter().find_map(|key| {
        let pointer = format!("/{}", key.replace('.', "/"));
        let (x, y) = (a.pointer(&pointer), b.pointer(&pointer));
        (x != y).then(|| {
            let (recorded, given) = (setting_text(x), setting_text(y));
            // Values that read alike (augmentation lists of the same kinds, other settings)
            // are shown in full.
            let full =
                |v: Option<&serde_json::Value>| v.map_or("none".to_owned(), |v| v.to_string());
            let (recorded, given) = if recorded == given {
                (full(x), full(y))
            } else {
                (recorded, given)
            };
            SettingChange {
                key: key.clone(),
                recorded,
                given,
            }
        })
    })
}

/// A configuration value as users type it: `0.0001`, `48,48,48`, `CT-0`, `none`.
fn setting_text(value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(text)) => text.clone(),
        // An empty augmentation list, `--no-augment`.
        Some(Value::Array(items)) if items.is_empty() => "none".to_owned(),
        // An entry of a tagged list (the augmentations) by its kind: `random_rotation`.
        Some(Value::Object(map)) if map.get("kind").is_some_and(Value::is_string) => {
            setting_text(map.get("kind"))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| setting_text(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        // `-1000`, as typed, rather than JSON's `-1000.0`.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_augmentations_are_named_by_kind() {
        let recorded = TrainConfig::default();
        let given = TrainParams {
            augment: Augmentations::none(),
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        let change = changed_setting(&recorded, &given, &["augment".to_owned()]).unwrap();
        assert_eq!(change.recorded, "random_rotation");
        assert_eq!(change.given, "none");
        // The same kinds with other settings: the lists in full.
        let other_angles = TrainParams {
            augment: Augmentations::new(vec![ct3d_volume::augment::Augmentation::RandomRotation(
                ct3d_volume::augment::RandomRotation::new(vec![5.0]).unwrap(),
            )]),
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        let change = changed_setting(&recorded, &other_angles, &["augment".to_owned()]).unwrap();
        assert!(change.recorded.contains("-20.0"), "{}", change.recorded);
        assert!(
            change.given.contains(r#""angles":[5.0]"#) && change.given.contains("random_rotation"),
            "{}",
            change.given
        );
    }

    /// `config.json` as a run without folds or schedule changes records it (and as runs from
    /// before either existed wrote it): it reads back to the same value, and writes without the
    /// absent fields.
    #[test]
    fn a_recorded_configuration_reads_back_and_omits_absent_fields() {
        let config = RunConfig {
            ct3d_version: "0.1.0".to_owned(),
            device: "cpu".to_owned(),
            data_root: PathBuf::from("/data"),
            manifest: None,
            cache: PathBuf::from("/data/.ct3d-cache"),
            train: TrainConfig::default(),
            files: vec![DataFile {
                path: PathBuf::from("/data/CT-0/a.nii.gz"),
                label: 0,
                sha256: "ab".repeat(32),
                split: SplitPart::Validation,
                patient: None,
            }],
            schedule_changes: Vec::new(),
        };
        let json = serde_json::to_value(&config).unwrap();
        for absent in [
            "/manifest",
            "/train/folds",
            "/schedule_changes",
            "/files/0/patient",
            "/train/recompute_batch_norm",
        ] {
            assert!(json.pointer(absent).is_none(), "{absent} in {json}");
        }
        assert_eq!(json.pointer("/files/0/split").unwrap(), "validation");
        let back: RunConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        // A fold of a cross-validation is recorded, and checked with the configuration.
        let fold = TrainParams {
            folds: Some(FoldSpec { count: 3, fold: 2 }),
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        let json = serde_json::to_value(&fold).unwrap();
        assert_eq!(json["folds"], serde_json::json!({"count": 3, "fold": 2}));
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), fold);
        let outside = TrainParams {
            folds: Some(FoldSpec { count: 3, fold: 4 }),
            ..TrainParams::default()
        };
        assert_eq!(
            outside.clone().check().unwrap_err().to_string(),
            "fold 4: folds are numbered 1 to 3"
        );
        // A config.json that records such a fold does not load.
        let json = serde_json::to_value(&outside).unwrap();
        let err = serde_json::from_value::<TrainConfig>(json).unwrap_err();
        assert!(err.to_string().contains("fold 4"), "{err}");
    }

    /// Every setting survives `config.json`; `model.input` is written (the preprocessing size)
    /// but not read.
    #[test]
    fn every_setting_reads_back() {
        let params = TrainParams {
            epochs: 7,
            batch_size: 3,
            schedule: ExponentialDecay {
                initial: 0.5,
                decay_steps: 9,
                rate: 0.25,
                staircase: false,
            },
            adam: AdamConfig {
                beta_1: 0.8,
                ..AdamConfig::default()
            },
            patience: 4,
            train_fraction: 0.6,
            augment: Augmentations::none(),
            seed: 99,
            preprocess: PreprocessConfig::sized([50, 52, 54]).unwrap(),
            model: ModelParams {
                filters: vec![2, 3, 4, 5],
                dense: 6,
                dropout: 0.1,
                batch_norm_momentum: 0.5,
                resnet: Some(ct3d_model::ResNetParams {
                    widths: [2, 3, 4, 5],
                    shortcut: ct3d_model::Shortcut::A,
                    downsample_bias: true,
                }),
            },
            architecture: Architecture::Resnet34,
            classes: Classes {
                negative_folder: "a".into(),
                positive_folder: "b".into(),
                negative_name: "c".into(),
                positive_name: "d".into(),
            },
            folds: Some(FoldSpec { count: 4, fold: 3 }),
            class_weight: ClassWeight::Balanced,
            sampler: Sampler::Balanced,
            init: Some("pretrained.pth".into()),
            freeze_encoder_epochs: 2,
            recompute_batch_norm: true,
        };
        let mut json = serde_json::to_value(&params).unwrap();
        assert_eq!(json["class_weight"], "balanced");
        assert_eq!(json["sampler"], "balanced");
        assert_eq!(json["architecture"], "resnet34");
        assert_eq!(json["model"]["resnet"]["shortcut"], "A");
        assert_eq!(json["model"]["input"], serde_json::json!([50, 52, 54]));
        assert_eq!(
            serde_json::from_value::<TrainParams>(json.clone()).unwrap(),
            params
        );
        json["model"]["input"] = serde_json::json!([1, 1, 1]);
        let read: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(read.model_config().input, [50, 52, 54]);
    }

    /// scikit-learn's `compute_class_weight("balanced", classes=[0, 1], y=y)` for 1 negative and
    /// 3 positive scans is `[2.0, 0.6667]` (`n / (2 · n_class)`).
    #[test]
    fn balanced_class_weights_are_scikit_learns() {
        assert_eq!(ClassWeight::None.weights([0, 1, 1, 1]), None);
        let [negative, positive] = ClassWeight::Balanced.weights([0, 1, 1, 1]).unwrap();
        assert_eq!(negative, 2.0);
        assert!((positive - 2.0 / 3.0).abs() < 1e-7, "{positive}");
        assert_eq!(ClassWeight::Balanced.weights([1, 1]), Some([1.0, 1.0]));
        // Runs recorded before the fields existed read as the example's setting.
        let mut json = serde_json::to_value(TrainParams::default()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("class_weight");
        object.remove("sampler");
        let old: TrainParams = serde_json::from_value(json).unwrap();
        assert_eq!(
            (old.class_weight, old.sampler),
            (ClassWeight::None, Sampler::Shuffle)
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(
            TrainParams::default().check().unwrap(),
            TrainConfig::default()
        );
        let model = TrainConfig::default().model_config();
        assert_eq!(model, ModelConfig::default());
        assert_eq!(model.input, ct3d_volume::preprocess::DEFAULT_SIZE);
    }

    /// Settings are named by their keys in `config.json`, in the library's words.
    #[test]
    fn bad_settings_are_named_by_key() {
        let cases = [
            (
                TrainParams {
                    epochs: 0,
                    ..TrainParams::default()
                },
                "epochs must be at least 1",
            ),
            (
                TrainParams {
                    batch_size: 0,
                    ..TrainParams::default()
                },
                "batch_size must be at least 1",
            ),
            (
                TrainParams {
                    train_fraction: 1.0,
                    ..TrainParams::default()
                },
                "train_fraction must be strictly between 0 and 1",
            ),
            (
                TrainParams {
                    schedule: ExponentialDecay {
                        initial: f64::NAN,
                        ..ExponentialDecay::default()
                    },
                    ..TrainParams::default()
                },
                "schedule.initial must be a positive number",
            ),
        ];
        for (params, message) in cases {
            assert_eq!(params.check().unwrap_err().to_string(), message);
        }
        // The network is checked on inputs of the preprocessing size (one value).
        let small = TrainParams {
            preprocess: PreprocessConfig::sized([20, 64, 64]).unwrap(),
            ..TrainParams::default()
        };
        assert!(matches!(
            small.check(),
            Err(ConfigError::Model(
                ct3d_model::ModelError::InputTooSmall { .. }
            ))
        ));
    }

    #[test]
    fn changed_settings_are_found_by_key() {
        let recorded = TrainConfig::default();
        let given = TrainParams {
            epochs: 3,
            schedule: ExponentialDecay {
                initial: 0.5,
                ..ExponentialDecay::default()
            },
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        let keys = |list: &[&str]| list.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            changed_setting(&recorded, &given, &keys(&["seed", "schedule.initial"])),
            Some(SettingChange {
                key: "schedule.initial".into(),
                recorded: "0.0001".into(),
                given: "0.5".into(),
            })
        );
        assert_eq!(
            changed_setting(&recorded, &given, &keys(&["seed", "model.filters"])),
            None
        );
        let sized = TrainParams {
            preprocess: PreprocessParams {
                size: [48, 48, 48],
                ..PreprocessParams::default()
            }
            .check()
            .unwrap(),
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        let change = changed_setting(&recorded, &sized, &keys(&["preprocess.size"])).unwrap();
        assert_eq!(
            (change.recorded.as_str(), change.given.as_str()),
            ("128,128,64", "48,48,48")
        );
    }
}
