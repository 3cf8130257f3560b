//! Phantom datasets on disk: class folders of `phantom_NNNN.nii.gz` files, each scan seeded
//! independently from the dataset's seed, generated in parallel and handed to a writer.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{PhantomConfig, ScanClass, SynthError, generate_phantom};
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
    config.validate()?;
    let mut jobs = Vec::with_capacity(normal + abnormal);
    for (class, count) in [(ScanClass::Normal, normal), (ScanClass::Abnormal, abnormal)] {
        let folder = out.join(class.folder_name());
        std::fs::create_dir_all(&folder).map_err(|source| SynthError::CreateDir {
            path: folder.clone(),
            source,
        })?;
        jobs.extend((0..count).map(|index| (class, index, folder.join(phantom_file_name(index)))));
    }
    jobs.into_par_iter()
        .map(|(class, index, path)| {
            let volume = generate_phantom(config, class, scan_seed(seed, class, index))?;
            writer(&path, &volume).map_err(|source| SynthError::Write {
                path: path.clone(),
                source: Box::new(source),
            })?;
            progress();
            Ok(path)
        })
        .collect()
}
