//! Flag groups and value parsers shared by several commands, and their conversion to the
//! library's types (the library has no clap: `WeightsArg` becomes `WeightsChoice`, and so on).

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::Args;
use ct3d::evaluate::{EvalSplit, WeightsChoice};
use ct3d::train::DataSource;
use ct3d_model::{Architecture, DeviceChoice, ModelParams, ResNetParams, Shortcut};
use ct3d_volume::augment::Augmentations;
use ct3d_volume::augment::recipe::{self, RecipeError};
use ct3d_volume::preprocess::{ConfigError, DEFAULT_SIZE, PreprocessConfig, PreprocessParams};

/// `--size`'s default as typed (`128,128,64`): the library's [`DEFAULT_SIZE`], written once.
pub fn default_size() -> &'static str {
    static TEXT: LazyLock<String> =
        LazyLock::new(|| DEFAULT_SIZE.map(|side| side.to_string()).join(","));
    &TEXT
}

/// `n` and the noun, in the plural unless `n` is 1: "1 epoch", "2 epochs", "0 scans".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Parses `W,H,D` (e.g. `128,128,64`) into a size in voxels.
pub fn parse_size(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [w, h, d] = parts.as_slice() else {
        return Err(format!("expected W,H,D such as 128,128,64, got {text:?}"));
    };
    let parse = |s: &str| -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive whole number of voxels")),
            Ok(n) => Ok(n),
        }
    };
    Ok([parse(w)?, parse(h)?, parse(d)?])
}

/// Parses conv filter counts such as `64,64,128,256` (at least one, each ≥ 1).
pub fn parse_filters(text: &str) -> Result<Filters, String> {
    text.split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a positive number of filters")),
            Ok(n) => Ok(n),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Filters)
}

/// Parses `MIN,MAX` Hounsfield units (e.g. `-1000,400`).
pub fn parse_window(text: &str) -> Result<[f32; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lo, hi] = parts.as_slice() else {
        return Err(format!("expected MIN,MAX such as -1000,400, got {text:?}"));
    };
    let parse = |s: &str| -> Result<f32, String> {
        s.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} is not a number of Hounsfield units"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo >= hi {
        return Err(format!(
            "the window's MIN ({lo}) must be below its MAX ({hi})"
        ));
    }
    Ok([lo, hi])
}

/// `--weights best|last`: the flag's spelling of [`WeightsChoice`] (the library has no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsArg {
    /// The epoch with the lowest validation loss (`best.safetensors`).
    Best,
    /// The last completed epoch (`last.safetensors`).
    Last,
}

impl From<WeightsArg> for WeightsChoice {
    fn from(arg: WeightsArg) -> Self {
        match arg {
            WeightsArg::Best => WeightsChoice::Best,
            WeightsArg::Last => WeightsChoice::Last,
        }
    }
}

/// `--split val|all`: the flag's spelling of [`EvalSplit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// The run's validation part: the scans `config.json` records as validation (for other
    /// data: the run's split rule applied to it).
    Val,
    /// Every scan (of the run: every recorded scan).
    All,
}

impl From<SplitArg> for EvalSplit {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Val => EvalSplit::Val,
            SplitArg::All => EvalSplit::All,
        }
    }
}

/// A count that must be at least 1; clap refuses 0 with its usual "invalid value" error.
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// Preprocessing parameters shared by `preprocess` and `prepare`.
#[derive(Debug, Args)]
pub struct PreprocessFlags {
    /// Output size in voxels as W,H,D (the example uses 128,128,64).
    #[arg(long, value_name = "W,H,D", default_value = default_size(), value_parser = parse_size)]
    pub size: [usize; 3],
    /// Hounsfield window as MIN,MAX; values outside are clipped, then scaled to [0, 1].
    #[arg(long, value_name = "MIN,MAX", default_value = "-1000,400", value_parser = parse_window, allow_hyphen_values = true)]
    pub hu_window: [f32; 2],
}

/// `--augment LIST` and `--augment-file FILE`: an augmentation recipe (shared by `train`, `cv`,
/// `show` and `montage`).
#[derive(Debug, Args)]
pub struct AugmentFlags {
    /// Augmentations, in order, with default settings: names from rotate (the example's random
    /// rotation), flip, affine, intensity, gamma, noise, blur, cutout (boxes set to air),
    /// e.g. rotate,flip,affine,noise.
    #[arg(long, value_name = "LIST")]
    pub augment: Option<String>,
    /// Augmentation recipe, .json or .toml: a list of transforms with their settings
    /// (`[[augment]]` tables with `kind = "noise"`, `std = 0.05`, …; see the README). With
    /// --augment, the list gives the order and the file the settings of the transforms it holds.
    #[arg(long, value_name = "FILE")]
    pub augment_file: Option<PathBuf>,
}

impl AugmentFlags {
    /// The recipe given, or `None` when neither flag is.
    pub fn recipe(&self) -> Result<Option<Augmentations>, RecipeError> {
        Ok(match (&self.augment, &self.augment_file) {
            (None, None) => None,
            (Some(names), None) => Some(recipe::from_names(names)?),
            (None, Some(file)) => Some(recipe::read(file)?),
            (Some(names), Some(file)) => Some(recipe::named_with_file(names, file)?),
        })
    }
}

/// `--series UID`: which DICOM series to read from a folder holding several.
#[derive(Debug, Args)]
pub struct SeriesArg {
    /// Read the DICOM series with this SeriesInstanceUID from a folder holding several (a folder
    /// with several series and no --series is an error listing them).
    #[arg(long = "series", value_name = "UID")]
    pub uid: Option<String>,
}

/// Filters per conv block, parsed from one `N,N,...` value (a newtype so that clap treats the
/// list as one value: giving `--filters` twice is an error, not a silent append).
#[derive(Debug, Clone)]
pub struct Filters(pub Vec<usize>);

/// Where to compute.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu (pure-Rust, default), cuda or vulkan (GPU builds only: `--features cuda|vulkan`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceChoice,
}

/// Where the scans are: class folders or a CSV manifest (exactly one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DataArgs {
    /// Dataset folder with one sub-folder per class.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// CSV manifest instead of class folders: a header row, then path,label[,patient] per scan
    /// (paths relative to the CSV's folder; label 0/1 or the --negative/--positive name;
    /// k-fold keeps a patient's scans in one fold).
    #[arg(long, value_name = "FILE.csv")]
    pub manifest: Option<PathBuf>,
}

impl DataArgs {
    /// The library's description of the data.
    pub fn source(self) -> DataSource {
        match (self.data, self.manifest) {
            (_, Some(manifest)) => DataSource::Manifest(manifest),
            (Some(data), None) => DataSource::Folder(data),
            // The argument group requires one of them.
            (None, None) => DataSource::Folder(PathBuf::from(".")),
        }
    }
}

/// Which class folders hold negatives and positives.
#[derive(Debug, Args)]
pub struct ClassArgs {
    /// Folder name of the negative (label 0) class (in a manifest: its label name, besides 0).
    #[arg(long, default_value = "CT-0", value_name = "NAME")]
    pub negative: String,
    /// Folder name of the positive (label 1) class (in a manifest: its label name, besides 1).
    #[arg(long, default_value = "CT-23", value_name = "NAME")]
    pub positive: String,
}

/// `--yes`: skip the check that the work fits in disk and memory.
#[derive(Debug, Args)]
pub struct YesArg {
    /// Start even if the cache would not fit on the disk or one training step (or the
    /// preparation) would not fit in the available memory (checked from the scans' headers and
    /// the model's layer sizes before anything is written).
    #[arg(long)]
    pub yes: bool,
}

/// The network's shape, shared by `train`, `cv` and `summary`.
#[derive(Debug, Args)]
pub struct ArchitectureArgs {
    /// Network: seed_cnn (the Keras example's CNN), or resnet10, resnet18, resnet34, resnet50
    /// (3D ResNets in MedicalNet's layout, parameter names as MONAI's; they use --widths and
    /// --shortcut, not --filters, --dense or --dropout).
    #[arg(long, value_name = "NAME", default_value = "seed_cnn", value_parser = parse_architecture)]
    pub arch: Architecture,
    /// Filters of each conv block (seed_cnn), one value per block: the example's 64,64,128,256 is four
    /// blocks; fewer values make a shallower network, more a deeper one; smaller is faster. Each
    /// --size axis needs at least 3·2^n − 2 voxels for n blocks (46 for four, 22 for three).
    #[arg(
        long,
        value_name = "N,N,...",
        default_value = "64,64,128,256",
        value_parser = parse_filters
    )]
    pub filters: Filters,
    /// Units of the hidden dense layer (seed_cnn).
    #[arg(long, default_value_t = 512)]
    pub dense: usize,
    /// Channels of the four ResNet stages before the bottleneck expansion (MONAI's
    /// block_inplanes; MedicalNet's weights need the default).
    #[arg(long, value_name = "W,W,W,W", default_value = "64,128,256,512", value_parser = parse_widths)]
    pub widths: [usize; 4],
    /// ResNet shortcut where a block changes shape: B, a 1×1×1 convolution + BatchNorm (MONAI's
    /// default; MedicalNet's resnet10/50 weights), or A, zero-padded identity (MedicalNet's
    /// resnet18/34 weights).
    #[arg(long, value_name = "A|B", default_value = "B", value_parser = parse_shortcut)]
    pub shortcut: Shortcut,
    /// Give shortcut B's convolution a bias (MONAI's default `bias_downsample=True`; MedicalNet
    /// has none).
    #[arg(long)]
    pub downsample_bias: bool,
}

impl ArchitectureArgs {
    /// The network's parameters: `base` (dropout, momentum) with these flags' sizes; the
    /// ResNet settings are recorded only for a ResNet.
    pub fn model_params(&mut self, base: ModelParams) -> ModelParams {
        let resnet = self.arch.resnet_depth().map(|_| ResNetParams {
            widths: self.widths,
            shortcut: self.shortcut,
            downsample_bias: self.downsample_bias,
        });
        ModelParams {
            filters: std::mem::take(&mut self.filters.0),
            dense: self.dense,
            resnet,
            ..base
        }
    }
}

/// Parses an architecture name; an unknown one is answered with the list of known ones.
pub fn parse_architecture(text: &str) -> Result<Architecture, String> {
    Architecture::from_name(text.trim()).ok_or_else(|| {
        let known: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
        format!(
            "unknown architecture {text:?}; known ones: {}",
            known.join(", ")
        )
    })
}

/// Parses a ResNet shortcut type, `A` or `B` (either case).
pub fn parse_shortcut(text: &str) -> Result<Shortcut, String> {
    match text.trim() {
        "A" | "a" => Ok(Shortcut::A),
        "B" | "b" => Ok(Shortcut::B),
        _ => Err(format!("expected shortcut type A or B, got {text:?}")),
    }
}

/// Parses four ResNet stage widths such as `64,128,256,512` (each ≥ 1).
pub fn parse_widths(text: &str) -> Result<[usize; 4], String> {
    let widths = parse_filters(text)?.0;
    <[usize; 4]>::try_from(widths.as_slice())
        .map_err(|_| format!("expected four stage widths such as 64,128,256,512, got {text:?}"))
}

/// Other data to evaluate on (default: the run's own).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct EvalDataArgs {
    /// Data folder with one sub-folder per class (default: the run's own data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// CSV manifest (path,label[,patient]) to evaluate on instead of a data folder.
    #[arg(long, value_name = "FILE.csv")]
    pub manifest: Option<PathBuf>,
}

impl EvalDataArgs {
    /// The other data, if any (`None`: the run's own recorded scans).
    pub fn source(self) -> Option<DataSource> {
        match (self.data, self.manifest) {
            (_, Some(manifest)) => Some(DataSource::Manifest(manifest)),
            (Some(data), None) => Some(DataSource::Folder(data)),
            (None, None) => None,
        }
    }
}

impl PreprocessFlags {
    /// The library's preprocessing settings, checked.
    pub fn config(&self) -> Result<PreprocessConfig, ConfigError> {
        PreprocessParams {
            hu_min: self.hu_window[0],
            hu_max: self.hu_window[1],
            size: self.size,
        }
        .check()
    }
}

impl YesArg {
    /// Runs `check` (a [`ct3d::resources`] check) unless `--yes` skips it.
    pub fn check(
        &self,
        check: impl FnOnce() -> Result<(), ct3d::resources::ResourceError>,
    ) -> anyhow::Result<()> {
        if !self.yes {
            check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("128,128,64").unwrap(), [128, 128, 64]);
        assert_eq!(parse_size(" 48, 48 ,48").unwrap(), [48, 48, 48]);
        assert!(parse_size("128,128").is_err());
        assert!(parse_size("128,0,64").is_err());
        assert!(parse_size("a,b,c").is_err());
    }

    #[test]
    fn architecture_widths_and_shortcut_parsing() {
        assert_eq!(
            parse_architecture("resnet34").unwrap(),
            Architecture::Resnet34
        );
        assert_eq!(
            parse_architecture("resnet").unwrap_err(),
            "unknown architecture \"resnet\"; known ones: seed_cnn, resnet10, resnet18, resnet34, resnet50"
        );
        assert_eq!(parse_widths("8,16,32,64").unwrap(), [8, 16, 32, 64]);
        assert!(parse_widths("8,16,32").is_err());
        assert!(parse_widths("8,0,32,64").is_err());
        assert_eq!(parse_shortcut("a").unwrap(), Shortcut::A);
        assert!(parse_shortcut("C").is_err());
    }

    #[test]
    fn filters_parsing() {
        assert_eq!(parse_filters("4,4,8,8").unwrap().0, vec![4, 4, 8, 8]);
        assert!(parse_filters("4,0,8").is_err());
        assert!(parse_filters("4,,8").is_err());
    }

    #[test]
    fn counts_are_plural_unless_one() {
        assert_eq!(count(1, "epoch"), "1 epoch");
        assert_eq!(count(2, "epoch"), "2 epochs");
        assert_eq!(count(0, "scan"), "0 scans");
    }

    #[test]
    fn window_parsing() {
        assert_eq!(parse_window("-1000,400").unwrap(), [-1000.0, 400.0]);
        assert!(parse_window("400,-1000").is_err());
        assert!(parse_window("nan,1").is_err());
        assert!(parse_window("1").is_err());
    }
}
