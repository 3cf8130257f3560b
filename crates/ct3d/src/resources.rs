//! A sanity check before big work: will a `prepare`, `train` or `cv` fit on this machine?
//!
//! `train --size 1000,1000,1000` on sixteen scans once wrote 64 GB of cache, filled the disk and
//! was killed by the OOM killer. Before preparing or training, [`estimate`] works out, from file
//! metadata, NIfTI headers and the configuration only (no scan is read):
//!
//! - **cache bytes**: the entries the preparation will add (scans not yet cached, see
//!   [`plan_prepare`]) × `4·x·y·z` bytes plus each entry's header and trailer;
//! - **preparing memory**: per worker thread, the largest raw scan still to prepare as `f32` plus
//!   one float copy of it (the general rotation path's normalised volume) plus the output volume;
//! - **training memory** ([`training_memory`], CPU device only): the activations of one batch
//!   (the sum of the layer output sizes × batch × 4 bytes × [`BACKWARD_FACTOR`]), plus the
//!   parameters with their gradients and Adam moments, plus the batches the loader keeps in
//!   flight (the prepared set itself stays on disk: the loader reads entries on demand). On a GPU
//!   the activations live in device memory, which is not queried, so only the cache and the
//!   preparation are checked there.
//!
//! [`Needs::refusal`] compares them with the free space where the cache goes and the available
//! memory ([`Available::here`]: `statvfs`, `/proc/meminfo`'s `MemAvailable` and the cgroup limit)
//! and gives a refusal ([`ResourceError`]) naming the estimate and what is available (a front end
//! adds how to override the check). What cannot be measured (no `/proc`) is not checked.

use std::path::{Path, PathBuf};

use ct3d_model::{Architecture, DeviceChoice, ModelConfig};
use ct3d_volume::cache_admin::plan_prepare;
use ct3d_volume::dataset::Dataset;
use ct3d_volume::preprocess::PreprocessConfig;

use crate::config::TrainConfig;
use crate::data::source::DataSource;
use crate::request::{CvRequest, TrainRequest};
use crate::run::RunDir;

/// Peak training memory of the CPU backend per byte of summed layer outputs of one batch.
///
/// Measured with `/usr/bin/time -v` (maximum resident set size) on `ct3d train --epochs 1` with
/// the seed's filters and batch 2 on 64×64×40 phantoms: 158 MB at a 64³ input (layer outputs
/// 172 MB) and 384 MB at 96³ (608 MB), i.e. about 70 MB plus 0.53 × the layer outputs. The fused
/// kernels never hold a block's full convolution output (only its pooled eighth, plus one
/// convolution-output gradient at a time in the backward pass), hence less than 1; the factor
/// keeps about twice the measured slope as headroom, so that runs that fit are never refused.
pub const BACKWARD_FACTOR: f64 = 1.0;

/// Batches the training loader holds at once: the prefetched ones, the one being assembled and
/// the one the model uses.
const LOADER_BATCHES: u64 = 4;

/// Memory a worker needs besides the volumes (buffers, stacks).
const WORKER_OVERHEAD: u64 = 64 << 20;

/// The refusal: one line with the estimates that do not fit and what is available. The fix is
/// to override the check (which a front end words as its own option) or to choose a smaller
/// size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "output size {}×{}×{}: {}; override the check to try anyway",
    size[0], size[1], size[2], problems.join("; ")
)]
pub struct ResourceError {
    /// The preprocessing output size `[x, y, z]` in voxels.
    pub size: [usize; 3],
    /// What does not fit, one clause each ("the cache needs ~64.0 GB for 16 scans but /data
    /// has 12.3 GB free").
    pub problems: Vec<String>,
}

/// What a preparation and (optionally) a training run need.
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// The preprocessing output size.
    pub size: [usize; 3],
    /// Scans the preparation will compute (not yet cached).
    pub scans_to_prepare: usize,
    /// Bytes those scans' cache entries add.
    pub cache_bytes: u64,
    /// Peak memory of the preparation, in bytes.
    pub prepare_memory: u64,
    /// Scans preprocessed at the same time.
    pub prepare_workers: usize,
    /// Training: the batch size and the peak memory of one training step, in bytes.
    pub training: Option<(usize, u64)>,
}

/// What this machine has where the work will happen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Available {
    /// Free bytes for an unprivileged user on the filesystem of the cache, with the existing
    /// folder it was measured at.
    pub disk: Option<(u64, PathBuf)>,
    /// Memory available to this process, in bytes.
    pub memory: Option<u64>,
}

impl Available {
    /// Measures the free disk space where `cache_dir` is (or would be created) and the memory
    /// available now.
    pub fn here(cache_dir: &Path) -> Self {
        Self {
            disk: free_disk(cache_dir),
            memory: available_memory(),
        }
    }
}

/// `1234567890` → `1.2 GB` (decimal units, as disks are sold and `df -H` prints).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn voxels(size: [usize; 3]) -> u64 {
    size.iter()
        .fold(1u64, |acc, &n| acc.saturating_mul(n as u64))
}

/// Bytes of the layer outputs of one forward pass of `architecture` over `batch` volumes
/// (`f32`). For the seed CNN: the input, and per block the convolution output, the pooled output
/// and the batch-normalised output; for a ResNet, [`ct3d_model::resnet::activation_values`]. The
/// configuration must be valid ([`Architecture::validate`]).
pub fn activation_bytes(architecture: Architecture, model: &ModelConfig, batch: usize) -> u64 {
    let per_volume = match architecture.resnet_depth() {
        Some(depth) => ct3d_model::resnet::activation_values(depth, model),
        None => model
            .block_shapes()
            .iter()
            .fold(voxels(model.input), |acc, b| {
                let block = voxels(b.conv).saturating_add(voxels(b.pooled).saturating_mul(2));
                acc.saturating_add(block.saturating_mul(b.filters as u64))
            }),
    };
    per_volume.saturating_mul(batch as u64).saturating_mul(4)
}

/// Peak memory of one training step of `batch` volumes: activations × [`BACKWARD_FACTOR`],
/// parameters with gradients and Adam's two moments, and the loader's batches in flight.
pub fn training_memory(architecture: Architecture, model: &ModelConfig, batch: usize) -> u64 {
    let activations =
        (activation_bytes(architecture, model, batch) as f64 * BACKWARD_FACTOR) as u64;
    let parameters = architecture.param_counts(model).total as u64 * 4 * 4;
    let loader = voxels(model.input)
        .saturating_mul(batch as u64)
        .saturating_mul(4 * LOADER_BATCHES);
    activations
        .saturating_add(parameters)
        .saturating_add(loader)
}

/// Peak memory of preprocessing with `workers` threads when the largest scan has
/// `largest_scan_voxels` voxels: its `f32` volume and one float copy, plus the output of `size`.
pub fn prepare_memory(largest_scan_voxels: u64, size: [usize; 3], workers: usize) -> u64 {
    let per_worker = largest_scan_voxels
        .saturating_mul(8)
        .saturating_add(voxels(size).saturating_mul(4))
        .saturating_add(WORKER_OVERHEAD);
    per_worker.saturating_mul(workers as u64)
}

/// Voxels of a raw scan from its header (a DICOM series folder: its bytes / 2, as for 16-bit
/// pixels), or `None` if unreadable (the preparation will report it).
fn scan_voxels(scan: &Path) -> Option<u64> {
    if scan.is_dir() {
        let bytes: u64 = std::fs::read_dir(scan)
            .ok()?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        return Some(bytes / 2);
    }
    ct3d_volume::nifti_io::read_header(scan)
        .ok()
        .map(|h| h.voxel_count() as u64)
}

/// What preparing `dataset` into `cache_dir` with `preprocess` on `workers` threads, and then
/// training `model` with batches of `training.1` (if given), needs.
pub fn estimate(
    dataset: &Dataset,
    cache_dir: &Path,
    preprocess: &PreprocessConfig,
    workers: usize,
    training: Option<(Architecture, &ModelConfig, usize)>,
) -> Needs {
    let plan = plan_prepare(dataset, cache_dir, preprocess);
    let largest = plan
        .to_compute
        .iter()
        .filter_map(|scan| scan_voxels(scan))
        .max()
        .unwrap_or(0);
    let prepare_workers = workers.clamp(1, plan.to_compute.len().max(1));
    Needs {
        size: preprocess.size,
        scans_to_prepare: plan.to_compute.len(),
        cache_bytes: plan.bytes_to_add(preprocess.size),
        prepare_memory: if plan.to_compute.is_empty() {
            0
        } else {
            prepare_memory(largest, preprocess.size, prepare_workers)
        },
        prepare_workers,
        training: training.map(|(architecture, model, batch)| {
            (batch, training_memory(architecture, model, batch))
        }),
    }
}

impl Needs {
    /// The refusal when something does not fit in `available`, else `None`.
    pub fn refusal(&self, available: &Available) -> Option<ResourceError> {
        let mut problems = Vec::new();
        if let Some((free, at)) = &available.disk
            && self.cache_bytes > *free
        {
            problems.push(format!(
                "the cache needs ~{} for {} scans but {} has {} free",
                format_bytes(self.cache_bytes),
                self.scans_to_prepare,
                at.display(),
                format_bytes(*free)
            ));
        }
        if let Some(memory) = available.memory {
            if self.prepare_memory > memory {
                problems.push(format!(
                    "preparing needs ~{} of memory ({} scans at a time), {} available",
                    format_bytes(self.prepare_memory),
                    self.prepare_workers,
                    format_bytes(memory)
                ));
            }
            if let Some((batch, bytes)) = self.training
                && bytes > memory
            {
                problems.push(format!(
                    "training needs ~{} of memory for one batch of {batch}, {} available",
                    format_bytes(bytes),
                    format_bytes(memory)
                ));
            }
        }
        if problems.is_empty() {
            return None;
        }
        Some(ResourceError {
            size: self.size,
            problems,
        })
    }
}

/// Refuses a `prepare` of the scans of `source` (with the `[negative, positive]` class folder or
/// label names) on `workers` threads that would not fit (see the module docs). An unusable
/// dataset is left to `prepare` to report.
pub fn check_prepare(
    source: &DataSource,
    cache_dir: &Path,
    [negative, positive]: [&str; 2],
    preprocess: &PreprocessConfig,
    workers: usize,
) -> Result<(), ResourceError> {
    let dataset = match source {
        DataSource::Folder(dir) => Dataset::from_class_folders(dir, negative, positive).ok(),
        DataSource::Manifest(csv) => Dataset::from_manifest(csv, negative, positive).ok(),
    };
    let Some(dataset) = dataset else {
        return Ok(());
    };
    let needs = estimate(&dataset, cache_dir, preprocess, workers, None);
    refuse(&needs, cache_dir)
}

/// Refuses a training run that would not fit: its preparation and one training step (with the
/// recorded configuration when resuming). Anything that keeps the run from starting anyway (a
/// missing dataset, an existing run folder) is left to `train` to report.
pub fn check_train(request: &TrainRequest) -> Result<(), ResourceError> {
    let config = if request.resume {
        match RunDir::new(&request.out).read_config() {
            Ok(recorded) => recorded.train,
            Err(_) => return Ok(()),
        }
    } else if request.out.exists() && !request.force {
        return Ok(());
    } else {
        request.config.clone()
    };
    check_training(&request.source(), &request.cache, &config, request.device)
}

/// [`check_train`] for `ct3d cv` (the folds share one preparation and train one at a time).
pub fn check_cv(request: &CvRequest) -> Result<(), ResourceError> {
    check_training(
        &request.source,
        &request.cache,
        &request.config,
        request.device,
    )
}

fn check_training(
    source: &DataSource,
    cache_dir: &Path,
    config: &TrainConfig,
    device: DeviceChoice,
) -> Result<(), ResourceError> {
    let Ok(dataset) = source.load(&config.classes) else {
        return Ok(());
    };
    let needs = estimate(
        &dataset,
        cache_dir,
        &config.preprocess,
        rayon::current_num_threads(),
        (device == DeviceChoice::Cpu).then_some((
            config.architecture,
            &config.model_config(),
            config.batch_size,
        )),
    );
    refuse(&needs, cache_dir)
}

fn refuse(needs: &Needs, cache_dir: &Path) -> Result<(), ResourceError> {
    match needs.refusal(&Available::here(cache_dir)) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// Free space for unprivileged users on the filesystem holding `path` (or its nearest existing
/// ancestor, where it will be created), and that folder.
#[cfg(unix)]
fn free_disk(path: &Path) -> Option<(u64, PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path).ok()?;
    let existing = absolute.ancestors().find(|p| p.exists())?.to_owned();
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated path and `stats` points to writable memory of the
    // struct's size; statvfs only writes into it, and we read it only on success.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let free = u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize));
    Some((free, existing))
}

#[cfg(not(unix))]
fn free_disk(_path: &Path) -> Option<(u64, PathBuf)> {
    None
}

/// `MemAvailable` from `/proc/meminfo`, lowered to what the cgroup (container) limit leaves.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo.lines().find_map(|line| {
        let kb = line
            .strip_prefix("MemAvailable:")?
            .trim()
            .strip_suffix("kB")?;
        kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
    })?;
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cgroup_room = read("memory.max")
        .zip(read("memory.current"))
        .map(|(max, current)| max.saturating_sub(current));
    Some(cgroup_room.map_or(available, |room| room.min(available)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct3d_volume::cache::CacheEntry;

    #[test]
    fn bytes_read_like_df() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_000), "1.0 kB");
        assert_eq!(format_bytes(12_300_000_000), "12.3 GB");
        assert_eq!(format_bytes(64_000_000_000), "64.0 GB");
        assert_eq!(format_bytes(999_990_000), "1.0 GB");
        assert_eq!(format_bytes(u64::MAX), "18446.7 PB");
    }

    #[test]
    fn activations_follow_the_summary_shapes() {
        // The seed's model at 128×128×64: conv 126·126·62·64, pooled 63·63·31·64 twice, …
        let model = ModelConfig::default();
        let per_volume: u64 = 128 * 128 * 64
            + 64 * (126 * 126 * 62 + 2 * 63 * 63 * 31)
            + 64 * (61 * 61 * 29 + 2 * 30 * 30 * 14)
            + 128 * (28 * 28 * 12 + 2 * 14 * 14 * 6)
            + 256 * (12 * 12 * 4 + 2 * 6 * 6 * 2);
        let seed = Architecture::SeedCnn;
        assert_eq!(activation_bytes(seed, &model, 2), per_volume * 2 * 4);
        // The example's run (batch 2) needs well under a GB on the CPU.
        let bytes = training_memory(seed, &model, 2);
        assert!((500_000_000..1_000_000_000).contains(&bytes), "{bytes}");
        // 1000³ needs hundreds of GB.
        let huge = ModelConfig {
            input: [1000; 3],
            ..ModelConfig::default()
        };
        assert!(training_memory(seed, &huge, 2) > 500_000_000_000);
        // A ResNet at a size too small for the seed CNN: counted by its own layers.
        let small = ModelConfig {
            input: [24, 24, 16],
            ..ModelConfig::default()
        };
        let resnet = training_memory(Architecture::Resnet18, &small, 2);
        // 33 M parameters with gradients and moments dominate: 16 bytes each.
        assert!(resnet > 33_000_000 * 16, "{resnet}");
    }

    fn needs() -> Needs {
        Needs {
            size: [1000, 1000, 1000],
            scans_to_prepare: 16,
            cache_bytes: 64_000_003_328,
            prepare_memory: 9_000_000_000,
            prepare_workers: 2,
            training: Some((2, 180_000_000_000)),
        }
    }

    #[test]
    fn refusal_names_what_does_not_fit_and_the_override() {
        let available = Available {
            disk: Some((12_300_000_000, PathBuf::from("/data"))),
            memory: Some(23_100_000_000),
        };
        let refusal = needs().refusal(&available).unwrap();
        assert_eq!(
            refusal.problems,
            [
                "the cache needs ~64.0 GB for 16 scans but /data has 12.3 GB free",
                "training needs ~180.0 GB of memory for one batch of 2, 23.1 GB available"
            ]
        );
        assert_eq!(
            refusal.to_string(),
            "output size 1000×1000×1000: the cache needs ~64.0 GB for 16 scans but /data has \
             12.3 GB free; training needs ~180.0 GB of memory for one batch of 2, 23.1 GB \
             available; override the check to try anyway"
        );
        // Enough of everything: nothing to say.
        let plenty = Available {
            disk: Some((100_000_000_000, PathBuf::from("/data"))),
            memory: Some(200_000_000_000),
        };
        assert_eq!(needs().refusal(&plenty), None);
        // What cannot be measured is not checked.
        assert_eq!(needs().refusal(&Available::default()), None);
        let memory_only = Available {
            disk: None,
            memory: Some(5_000_000_000),
        };
        let line = needs().refusal(&memory_only).unwrap().to_string();
        assert!(
            line.contains(
                "preparing needs ~9.0 GB of memory (2 scans at a time), 5.0 GB available"
            ) && !line.contains("cache"),
            "{line}"
        );
    }

    #[test]
    fn preparing_counts_each_worker() {
        let one = prepare_memory(512 * 512 * 60, [128, 128, 64], 1);
        assert_eq!(
            one,
            512 * 512 * 60 * 8 + 128 * 128 * 64 * 4 + WORKER_OVERHEAD
        );
        assert_eq!(prepare_memory(512 * 512 * 60, [128, 128, 64], 4), 4 * one);
    }

    #[test]
    fn a_new_dataset_is_all_to_prepare_and_the_machine_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        for (class, n) in [("CT-0", 2), ("CT-23", 1)] {
            std::fs::create_dir_all(data.join(class)).unwrap();
            for i in 0..n {
                let volume = ct3d_volume::Volume::filled([8, 6, 4], -1000.0);
                ct3d_volume::nifti_io::write_volume(
                    &data.join(class).join(format!("s{i}.nii")),
                    &volume,
                    ct3d_volume::nifti_io::OutputDtype::I16,
                )
                .unwrap();
            }
        }
        let dataset = Dataset::from_class_folders(&data, "CT-0", "CT-23").unwrap();
        let cache = dir.path().join("cache");
        let config = PreprocessConfig::sized([10, 10, 10]).unwrap();
        let needs = estimate(&dataset, &cache, &config, 8, None);
        assert_eq!(needs.scans_to_prepare, 3);
        assert_eq!(
            needs.cache_bytes,
            3 * CacheEntry::file_len([10, 10, 10]).unwrap()
        );
        assert_eq!(needs.prepare_workers, 3);
        assert_eq!(
            needs.prepare_memory,
            prepare_memory(8 * 6 * 4, [10, 10, 10], 3)
        );
        assert_eq!(needs.training, None);
        assert!(!cache.exists(), "estimating creates nothing");
        // The cache folder does not exist yet: the disk is measured at its parent.
        let available = Available::here(&cache);
        if cfg!(target_os = "linux") {
            let (free, at) = available.disk.expect("statvfs works on Linux");
            assert!(free > 0);
            assert_eq!(at, std::path::absolute(dir.path()).unwrap());
            assert!(available.memory.is_some_and(|m| m > 0));
        }
    }
}
