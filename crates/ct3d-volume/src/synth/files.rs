//! Phantom datasets on disk: class folders of `phantom_NNNN.nii.gz` files, each scan seeded
//! independently from the dataset's seed, generated in parallel and handed to a writer; with
//! [`write_dataset_with_masks`], also each abnormal scan's lesion mask under [`MASK_FOLDER`].

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{PhantomConfig, ScanClass, SynthError, generate_labeled_phantom, generate_phantom};
use crate::Volume;
use crate::rng::mix64;

/// The seed of scan `index` of `class` in a dataset drawn with `dataset_seed`. Scans are seeded
/// independently, so adding scans to a dataset leaves the existing ones unchanged.
pub fn scan_seed(dataset_seed: u64, class: ScanClass, index: usize) -> u64 {
    let class_tag = match class {
        ScanClass::Normal => 0x4E4F_524D_414C_0000,
        ScanClass::Abnormal => 0x4142_4E4F_524D_0000,
    };
    mix64(mix64(mix64(dataset_seed) ^ class_tag) ^ index as u64)
}

/// The file name of scan `index` in its class folder: `phantom_0007.nii.gz`.
pub fn phantom_file_name(index: usize) -> String {
    format!("phantom_{index:04}.nii.gz")
}

/// The folder of [`write_dataset_with_masks`]'s lesion masks inside the output folder: `masks`,
/// beside the class folders and never inside them, so the dataset still loads as two classes of
/// scans.
pub const MASK_FOLDER: &str = "masks";

/// A phantom dataset to write: how many scans of each class, from which seed, drawn how.
#[derive(Debug, Clone, Copy)]
pub struct DatasetPlan<'a> {
    /// Normal scans (`CT-0`).
    pub normal: usize,
    /// Abnormal scans (`CT-23`).
    pub abnormal: usize,
    /// The dataset's seed; scan `i` of a class uses [`scan_seed`]`(seed, class, i)`.
    pub seed: u64,
    /// How every scan is drawn.
    pub config: &'a PhantomConfig,
}

/// What [`write_dataset_with_masks`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOutput {
    /// The scans, normal first, each class by index (as [`write_dataset`] returns them).
    pub scans: Vec<PathBuf>,
    /// The abnormal scans' lesion masks by index: `out/masks/phantom_0000.nii.gz`, … (normal
    /// scans have no lesion and get no mask).
    pub masks: Vec<PathBuf>,
}

/// Generates `normal` + `abnormal` phantoms in parallel and hands each to `writer` as
/// `out/CT-0/phantom_0000.nii.gz`, … and `out/CT-23/phantom_0000.nii.gz`, …, creating the class
/// folders. Scan `i` of a class uses [`scan_seed`]`(seed, class, i)`. `progress` is called once per
/// written scan (from worker threads). Returns the paths, normal scans first, each class by index.
///
/// The real writer is `|p, v| nifti_io::write_volume(p, v, OutputDtype::I16)`; any other writer
/// (e.g. one that records calls in a test) works the same. A writer's error becomes the
/// [`source`](std::error::Error::source) of [`SynthError::Write`], which names the file.
pub fn write_dataset<E>(
    out: &Path,
    normal: usize,
    abnormal: usize,
    seed: u64,
    config: &PhantomConfig,
    writer: impl Fn(&Path, &Volume) -> Result<(), E> + Sync,
    progress: impl Fn() + Sync,
) -> Result<Vec<PathBuf>, SynthError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let plan = DatasetPlan {
        normal,
        abnormal,
        seed,
        config,
    };
    write_all(out, &plan, &writer, None::<&NoMasks>, &progress).map(|written| written.scans)
}

/// [`write_dataset`] plus the ground-truth lesion mask of every abnormal scan, handed to
/// `mask_writer` as `out/masks/<the scan's file name>` ([`MASK_FOLDER`]; e.g. the mask of
/// `out/CT-23/phantom_0003.nii.gz` is `out/masks/phantom_0003.nii.gz`). A mask is
/// [`LabeledPhantom::lesion_mask`](super::LabeledPhantom::lesion_mask): the scan's voxel grid,
/// spacing and affine, 1 where an opacity contributes and 0 elsewhere. Normal scans have no
/// lesion and get no mask. The scans are the same as [`write_dataset`]'s; `progress` is called
/// once per scan (with its mask written). A mask writer's error becomes
/// [`SynthError::WriteMask`].
///
/// The real mask writer is `|p, m| nifti_io::write_volume(p, m, OutputDtype::U8)`.
pub fn write_dataset_with_masks<E, M>(
    out: &Path,
    plan: &DatasetPlan<'_>,
    writer: impl Fn(&Path, &Volume) -> Result<(), E> + Sync,
    mask_writer: impl Fn(&Path, &Volume) -> Result<(), M> + Sync,
    progress: impl Fn() + Sync,
) -> Result<SynthOutput, SynthError>
where
    E: std::error::Error + Send + Sync + 'static,
    M: std::error::Error + Send + Sync + 'static,
{
    write_all(out, plan, &writer, Some(&mask_writer), &progress)
}

/// The type of "no mask writer" for [`write_all`].
type NoMasks = fn(&Path, &Volume) -> Result<(), std::io::Error>;

/// Creates the folders, then generates and writes every scan (and, with a mask writer, every
/// abnormal scan's mask) in parallel.
fn write_all<E, M>(
    out: &Path,
    plan: &DatasetPlan<'_>,
    writer: &(impl Fn(&Path, &Volume) -> Result<(), E> + Sync),
    mask_writer: Option<&(impl Fn(&Path, &Volume) -> Result<(), M> + Sync)>,
    progress: &(impl Fn() + Sync),
) -> Result<SynthOutput, SynthError>
where
    E: std::error::Error + Send + Sync + 'static,
    M: std::error::Error + Send + Sync + 'static,
{
    let &DatasetPlan {
        normal,
        abnormal,
        seed,
        config,
    } = plan;
    config.validate()?;
    let create = |folder: &Path| {
        std::fs::create_dir_all(folder).map_err(|source| SynthError::CreateDir {
            path: folder.to_owned(),
            source,
        })
    };
    let mut jobs = Vec::with_capacity(normal + abnormal);
    for (class, count) in [(ScanClass::Normal, normal), (ScanClass::Abnormal, abnormal)] {
        let folder = out.join(class.folder_name());
        create(&folder)?;
        jobs.extend((0..count).map(|index| (class, index, folder.join(phantom_file_name(index)))));
    }
    let mask_folder = out.join(MASK_FOLDER);
    if mask_writer.is_some() {
        create(&mask_folder)?;
    }
    let written: Vec<(PathBuf, Option<PathBuf>)> = jobs
        .into_par_iter()
        .map(|(class, index, path)| {
            let seed = scan_seed(seed, class, index);
            let (volume, mask) = match mask_writer {
                Some(mask_writer) if class == ScanClass::Abnormal => {
                    let labeled = generate_labeled_phantom(config, class, seed)?;
                    let mask = labeled.lesion_mask();
                    let mask_path = mask_folder.join(phantom_file_name(index));
                    mask_writer(&mask_path, &mask).map_err(|source| SynthError::WriteMask {
                        path: mask_path.clone(),
                        source: Box::new(source),
                    })?;
                    (labeled.volume, Some(mask_path))
                }
                _ => (generate_phantom(config, class, seed)?, None),
            };
            writer(&path, &volume).map_err(|source| SynthError::Write {
                path: path.clone(),
                source: Box::new(source),
            })?;
            progress();
            Ok((path, mask))
        })
        .collect::<Result<_, SynthError>>()?;
    let (scans, masks): (Vec<_>, Vec<_>) = written.into_iter().unzip();
    Ok(SynthOutput {
        scans,
        masks: masks.into_iter().flatten().collect(),
    })
}
