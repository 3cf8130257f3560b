//! Phantom generation: determinism, HU ranges per tissue, class separation, dataset writing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ct3d_volume::Volume;
use ct3d_volume::synth::{
    AIR_HU, DatasetPlan, Difficulty, LabeledPhantom, MASK_FOLDER, PhantomConfig, ScanClass,
    SynthError, Tissue, generate_labeled_phantom, generate_phantom, phantom_file_name, scan_seed,
    write_dataset, write_dataset_with_masks,
};

/// Small enough for debug-build tests, large enough that vessels and opacities have voxels.
fn small() -> PhantomConfig {
    PhantomConfig {
        shape_xy: 96,
        depth: 12..=20,
        ..PhantomConfig::default()
    }
}

fn labeled(class: ScanClass, seed: u64) -> LabeledPhantom {
    generate_labeled_phantom(&small(), class, seed).unwrap()
}

fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn is_lung(t: Tissue) -> bool {
    matches!(t, Tissue::Lung | Tissue::Vessel | Tissue::GroundGlass)
}

#[test]
fn same_seed_is_bit_identical_on_any_thread_count() {
    let config = small();
    for class in ScanClass::ALL {
        let one = with_threads(1, || generate_phantom(&config, class, 42).unwrap());
        let four = with_threads(4, || generate_phantom(&config, class, 42).unwrap());
        let bits = |v: &Volume| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(one.shape(), four.shape());
        assert_eq!(bits(&one), bits(&four));
        assert_eq!(one.spacing, four.spacing);
        assert_eq!(one.affine, four.affine);
    }
}

#[test]
fn different_seeds_give_different_scans() {
    let a = generate_phantom(&small(), ScanClass::Normal, 1).unwrap();
    let b = generate_phantom(&small(), ScanClass::Normal, 2).unwrap();
    assert!(a.shape() != b.shape() || a.data() != b.data());
    assert_ne!(a.spacing, b.spacing);
}

#[test]
fn labeled_and_plain_generation_agree() {
    let plain = generate_phantom(&small(), ScanClass::Abnormal, 5).unwrap();
    let labeled = labeled(ScanClass::Abnormal, 5);
    assert_eq!(plain, labeled.volume);
    assert_eq!(labeled.tissue.len(), plain.len());
}

#[test]
fn full_size_scan_has_mosmed_shape_spacing_and_geometry() {
    let volume = generate_phantom(&PhantomConfig::default(), ScanClass::Abnormal, 3).unwrap();
    let [x, y, z] = volume.shape();
    assert_eq!((x, y), (512, 512));
    assert!((30..=70).contains(&z), "depth {z}");
    assert!((0.6..=0.9).contains(&volume.spacing[0]));
    assert_eq!(volume.spacing[0], volume.spacing[1]);
    assert_eq!(volume.spacing[2], 8.0);
    // Voxel axes point Left, Posterior, Superior in RAS+ world mm.
    let a = volume.affine;
    assert_eq!(a[0][0], -volume.spacing[0]);
    assert_eq!(a[1][1], -volume.spacing[1]);
    assert_eq!(a[2][2], 8.0);
    assert_eq!(a[3], [0.0, 0.0, 0.0, 1.0]);
    let center = |axis: usize, n: usize| a[axis][axis] * (n - 1) as f64 / 2.0 + a[axis][3];
    assert!(center(0, x).abs() < 1e-9 && center(1, y).abs() < 1e-9 && center(2, z).abs() < 1e-9);
}

#[test]
fn shape_and_spacing_stay_in_configured_ranges() {
    let config = PhantomConfig {
        shape_xy: 64,
        depth: 8..=11,
        ..PhantomConfig::default()
    };
    let mut depths = std::collections::BTreeSet::new();
    for seed in 0..24 {
        let v = generate_phantom(&config, ScanClass::Normal, seed).unwrap();
        let [x, y, z] = v.shape();
        assert_eq!((x, y), (64, 64));
        assert!((8..=11).contains(&z));
        depths.insert(z);
        // A 64 grid covers a 512 grid's field of view: pixels 8× larger.
        assert!(
            (4.8..=7.2).contains(&v.spacing[0]),
            "spacing {:?}",
            v.spacing
        );
    }
    assert_eq!(
        depths.len(),
        4,
        "every depth in the range is drawn: {depths:?}"
    );
}

#[test]
fn values_are_whole_hu_with_air_outside_and_plausible_tissues() {
    for class in ScanClass::ALL {
        let p = labeled(class, 11);
        let data = p.volume.data();
        assert!(
            data.iter()
                .all(|v| v.fract() == 0.0 && (-1024.0..=1100.0).contains(v))
        );
        let [nx, ny, nz] = p.volume.shape();
        for z in 0..nz {
            for (x, y) in [(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1)] {
                assert_eq!(p.volume.get(x, y, z), AIR_HU);
            }
        }
        let mean_of = |tissue: Tissue| {
            let values: Vec<f64> = data
                .iter()
                .zip(&p.tissue)
                .filter(|&(_, &t)| t == tissue)
                .map(|(&v, _)| f64::from(v))
                .collect();
            assert!(!values.is_empty(), "no {tissue:?} voxels");
            values.iter().sum::<f64>() / values.len() as f64
        };
        assert_eq!(mean_of(Tissue::Air), f64::from(AIR_HU));
        assert!(
            data.iter()
                .zip(&p.tissue)
                .all(|(&v, &t)| (t == Tissue::Air) == (v == AIR_HU))
        );
        let lung = mean_of(Tissue::Lung);
        assert!((-900.0..=-800.0).contains(&lung), "lung mean {lung}");
        assert!((30.0..=60.0).contains(&mean_of(Tissue::SoftTissue)));
        assert!((-130.0..=-70.0).contains(&mean_of(Tissue::Fat)));
        assert!((20.0..=60.0).contains(&mean_of(Tissue::Vessel)));
        assert!((400.0..=1000.0).contains(&mean_of(Tissue::Bone)));
        // Bone and lung sit where a chest has them: the spine behind the lungs' centre.
        let mean_y = |tissue: Tissue| {
            let ys: Vec<f64> = p
                .tissue
                .iter()
                .enumerate()
                .filter(|&(_, &t)| t == tissue)
                .map(|(i, _)| ((i / nx) % ny) as f64)
                .collect();
            ys.iter().sum::<f64>() / ys.len() as f64
        };
        assert!(mean_y(Tissue::Bone) > mean_y(Tissue::Lung));
    }
}

#[test]
fn lungs_shrink_toward_top_and_bottom_slices() {
    let p = labeled(ScanClass::Normal, 8);
    let [nx, ny, nz] = p.volume.shape();
    let per_slice: Vec<usize> = p
        .tissue
        .chunks(nx * ny)
        .map(|s| s.iter().filter(|&&t| is_lung(t)).count())
        .collect();
    let widest = *per_slice.iter().max().unwrap();
    assert!(per_slice[0] < widest / 2, "{per_slice:?}");
    assert!(per_slice[nz - 1] < widest / 2, "{per_slice:?}");
}

#[test]
fn ground_glass_only_in_abnormal_scans_and_only_inside_lungs() {
    let in_ggo_range = |v: f32| v > -600.0 && v < -250.0;
    for index in 0..6 {
        let normal = labeled(ScanClass::Normal, scan_seed(9, ScanClass::Normal, index));
        assert!(!normal.tissue.contains(&Tissue::GroundGlass));
        let stray = normal
            .volume
            .data()
            .iter()
            .filter(|&&v| in_ggo_range(v))
            .count();
        assert_eq!(stray, 0, "normal scan {index} has GGO-range voxels");

        let abnormal = labeled(
            ScanClass::Abnormal,
            scan_seed(9, ScanClass::Abnormal, index),
        );
        let mut in_range = 0;
        for (&v, &t) in abnormal.volume.data().iter().zip(&abnormal.tissue) {
            if in_ggo_range(v) {
                assert_eq!(t, Tissue::GroundGlass, "GGO-range value {v} in {t:?}");
                in_range += 1;
            }
        }
        let lung = abnormal.tissue.iter().filter(|&&t| is_lung(t)).count();
        let ggo = abnormal
            .tissue
            .iter()
            .filter(|&&t| t == Tissue::GroundGlass)
            .count();
        let fraction = ggo as f64 / lung as f64;
        // MosMedData's CT-2 and CT-3 (the seed's CT-23) have 25–75 % of the lungs involved.
        assert!(
            (0.15..=0.85).contains(&fraction),
            "scan {index}: GGO is {fraction:.3} of the lungs"
        );
        assert!(
            in_range as f64 >= 0.3 * ggo as f64,
            "scan {index}: faint opacities"
        );
    }
}

#[test]
fn same_seed_abnormal_differs_from_normal_only_at_ground_glass() {
    let normal = labeled(ScanClass::Normal, 77);
    let abnormal = labeled(ScanClass::Abnormal, 77);
    assert_eq!(normal.volume.shape(), abnormal.volume.shape());
    let mut changed = 0;
    for ((a, b), t) in normal
        .volume
        .data()
        .iter()
        .zip(abnormal.volume.data())
        .zip(&abnormal.tissue)
    {
        if a != b {
            assert_eq!(*t, Tissue::GroundGlass);
            changed += 1;
        }
    }
    assert!(changed > 0);
    // Opacities replace aerated lung only: the same voxel of the normal scan is lung.
    for (n, a) in normal.tissue.iter().zip(&abnormal.tissue) {
        if *a == Tissue::GroundGlass {
            assert_eq!(*n, Tissue::Lung);
        }
    }
}

#[test]
fn global_mean_does_not_separate_the_classes() {
    let means = |class: ScanClass| -> Vec<f64> {
        (0..8)
            .map(|i| {
                let v = generate_phantom(&small(), class, scan_seed(21, class, i)).unwrap();
                v.stats().unwrap().mean
            })
            .collect()
    };
    let (normal, abnormal) = (means(ScanClass::Normal), means(ScanClass::Abnormal));
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    // Overlapping ranges: no threshold on the mean classifies all 16 scans.
    assert!(min(&abnormal) < max(&normal) && min(&normal) < max(&abnormal));
    // Body size varies enough that the spread dwarfs what the opacities add.
    assert!(max(&normal) - min(&normal) > 40.0, "{normal:?}");
}

#[test]
fn scan_seeds_are_distinct_per_class_and_index() {
    let mut seeds = std::collections::HashSet::new();
    for class in ScanClass::ALL {
        for index in 0..100 {
            assert!(seeds.insert(scan_seed(5, class, index)));
        }
    }
    assert_ne!(
        scan_seed(5, ScanClass::Normal, 0),
        scan_seed(6, ScanClass::Normal, 0)
    );
}

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

#[test]
fn write_dataset_writes_class_folders_with_derived_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        shape_xy: 48,
        depth: 6..=8,
        ..PhantomConfig::default()
    };
    let written = Mutex::new(Vec::<(PathBuf, Volume)>::new());
    let progress = AtomicUsize::new(0);
    let paths = write_dataset(
        dir.path(),
        2,
        3,
        17,
        &config,
        |path: &Path, volume: &Volume| {
            written
                .lock()
                .unwrap()
                .push((path.to_owned(), volume.clone()));
            Ok::<(), DiskFull>(())
        },
        || {
            progress.fetch_add(1, Ordering::Relaxed);
        },
    )
    .unwrap();

    let expected: Vec<PathBuf> = [
        ("CT-0", 0),
        ("CT-0", 1),
        ("CT-23", 0),
        ("CT-23", 1),
        ("CT-23", 2),
    ]
    .iter()
    .map(|&(folder, i)| dir.path().join(folder).join(phantom_file_name(i)))
    .collect();
    assert_eq!(paths, expected);
    assert_eq!(phantom_file_name(7), "phantom_0007.nii.gz");
    assert_eq!(progress.load(Ordering::Relaxed), 5);
    assert!(dir.path().join("CT-0").is_dir() && dir.path().join("CT-23").is_dir());

    let written = written.into_inner().unwrap();
    assert_eq!(written.len(), 5);
    for (path, volume) in &written {
        let class = if path.parent().unwrap().ends_with("CT-23") {
            ScanClass::Abnormal
        } else {
            ScanClass::Normal
        };
        let index = expected.iter().position(|p| p == path).unwrap()
            - if class == ScanClass::Abnormal { 2 } else { 0 };
        let again = generate_phantom(&config, class, scan_seed(17, class, index)).unwrap();
        assert_eq!(&again, volume, "{}", path.display());
    }
}

#[test]
fn adding_scans_keeps_existing_ones() {
    let config = PhantomConfig {
        shape_xy: 40,
        depth: 5..=6,
        ..PhantomConfig::default()
    };
    let collect = |normal: usize| {
        let dir = tempfile::tempdir().unwrap();
        let written = Mutex::new(Vec::new());
        write_dataset(
            dir.path(),
            normal,
            0,
            3,
            &config,
            |path: &Path, volume: &Volume| {
                let name = path.file_name().unwrap().to_owned();
                written.lock().unwrap().push((name, volume.clone()));
                Ok::<(), DiskFull>(())
            },
            || {},
        )
        .unwrap();
        let mut written = written.into_inner().unwrap();
        written.sort_by(|a, b| a.0.cmp(&b.0));
        written
    };
    let two = collect(2);
    let three = collect(3);
    assert_eq!(two[..], three[..2]);
}

#[test]
fn write_errors_name_the_file_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        shape_xy: 40,
        depth: 5..=5,
        ..PhantomConfig::default()
    };
    let err = write_dataset(
        dir.path(),
        1,
        0,
        0,
        &config,
        |_: &Path, _: &Volume| Err(DiskFull),
        || {},
    )
    .unwrap_err();
    assert!(matches!(err, SynthError::Write { .. }));
    // The message names the file and what failed; the writer's error is the source, not
    // repeated in the message (the binary prints the chain once).
    let message = err.to_string();
    let file = dir.path().join("CT-0").join("phantom_0000.nii.gz");
    assert_eq!(
        message,
        format!("{}: cannot write the phantom", file.display())
    );
    let source = std::error::Error::source(&err).expect("the writer's error is the source");
    assert_eq!(source.to_string(), "disk full");
}

#[test]
fn output_folder_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let err = write_dataset(
        &blocker,
        1,
        1,
        0,
        &small(),
        |_: &Path, _: &Volume| Ok::<(), DiskFull>(()),
        || {},
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SynthError::CreateDir { .. }));
    assert!(
        message.contains("CT-0") && !message.contains('\n'),
        "{message}"
    );
    // The cause is the source, not repeated in the message.
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(!message.contains(&source), "{message} / {source}");
}

#[test]
fn invalid_configs_are_rejected_with_the_field_named() {
    let cases = [
        (
            PhantomConfig {
                shape_xy: 8,
                ..small()
            },
            "shape_xy",
        ),
        (
            PhantomConfig {
                depth: 2..=9,
                ..small()
            },
            "depth",
        ),
        #[allow(clippy::reversed_empty_ranges)]
        (
            PhantomConfig {
                depth: 20..=10,
                ..small()
            },
            "depth",
        ),
        (
            PhantomConfig {
                spacing_xy_mm: 0.0..=0.9,
                ..small()
            },
            "spacing_xy_mm",
        ),
        (
            PhantomConfig {
                slice_spacing_mm: f64::NAN..=f64::NAN,
                ..small()
            },
            "slice_spacing_mm",
        ),
        #[allow(clippy::reversed_empty_ranges)]
        (
            PhantomConfig {
                slice_spacing_mm: 10.0..=8.0,
                ..small()
            },
            "slice_spacing_mm",
        ),
        (
            PhantomConfig {
                noise_sigma_hu: -1.0..=5.0,
                ..small()
            },
            "noise_sigma_hu",
        ),
    ];
    for (config, field) in cases {
        let err = generate_phantom(&config, ScanClass::Normal, 0).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(field) && !message.contains('\n'),
            "{message}"
        );
    }
}

#[test]
fn noise_free_config_gives_flat_tissues() {
    let config = PhantomConfig {
        noise_sigma_hu: 0.0..=0.0,
        ..small()
    };
    let p = generate_labeled_phantom(&config, ScanClass::Normal, 4).unwrap();
    let fat: Vec<f32> = p
        .volume
        .data()
        .iter()
        .zip(&p.tissue)
        .filter(|&(_, &t)| t == Tissue::Fat)
        .map(|(&v, _)| v)
        .collect();
    assert!(
        fat.windows(2).all(|w| w[0] == w[1]),
        "fat is one value without noise"
    );
}

/// FNV-1a over the voxel bits and the spacing.
fn fingerprint(volume: &Volume) -> u64 {
    let words = volume
        .data()
        .iter()
        .map(|v| u64::from(v.to_bits()))
        .chain(volume.spacing.iter().map(|s| s.to_bits()));
    words.fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Phantoms are the project's demo and test data: the same seed must give the same scan on every
/// platform and release. If the generator is changed on purpose, update these values.
#[test]
fn phantom_fingerprints_are_stable() {
    let config = PhantomConfig {
        shape_xy: 48,
        depth: 6..=9,
        ..PhantomConfig::default()
    };
    let normal = generate_phantom(&config, ScanClass::Normal, 1234).unwrap();
    let abnormal = generate_phantom(&config, ScanClass::Abnormal, 1234).unwrap();
    assert_eq!(fingerprint(&normal), 0x5a72_9c60_1b7f_0b09);
    assert_eq!(fingerprint(&abnormal), 0x4dc9_d393_c37f_cb09);
}

/// The default (easy) phantoms as files: SHA-256 of the `.nii` bytes the `synth` command writes
/// (header with spacing and affine, then the int16 voxels) for a small dataset of both classes.
/// Pins the whole file, not only the voxels: adding settings for other difficulties must leave
/// the default phantoms byte-identical. If the generator is changed on purpose, update these.
#[test]
fn default_phantom_files_are_byte_identical() {
    use ct3d_volume::nifti_io::{OutputDtype, write_volume};
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig::sized(64, None);
    let paths = write_dataset(
        dir.path(),
        2,
        2,
        7,
        &config,
        |path: &Path, volume: &Volume| {
            write_volume(&path.with_extension(""), volume, OutputDtype::I16)
        },
        || {},
    )
    .unwrap();
    let hashes: Vec<String> = paths
        .iter()
        .map(|p| hex::encode(ct3d_volume::cache::hash_file(&p.with_extension("")).unwrap()))
        .collect();
    let expected = [
        "e08dc4bd6b87cde5f88c573fb2fd9c46731e4a51fac13bf67f6db3f7ca162b7e",
        "ea13268d84494bfacfdeaf551863f29460b8f65b22fef046eb07a69a6c417792",
        "1e6392949220b8b7f1a5b89f5703ee8206489bd52947db7715963a342f1d8ef3",
        "dd1f995bb2707367141f9d4be18eb3dd9ab7cc1090ba5f0f50303805508f42a4",
    ];
    assert_eq!(hashes, expected);
}

/// [`small`] with the hard phantoms' settings.
fn small_hard() -> PhantomConfig {
    small().with_difficulty(Difficulty::Hard)
}

fn labeled_hard(class: ScanClass, seed: u64) -> LabeledPhantom {
    generate_labeled_phantom(&small_hard(), class, seed).unwrap()
}

/// The fraction of the lungs (lung, vessel and ground-glass voxels) that is ground glass.
fn involvement(p: &LabeledPhantom) -> f64 {
    let lung = p.tissue.iter().filter(|&&t| is_lung(t)).count();
    let ggo = p
        .tissue
        .iter()
        .filter(|&&t| t == Tissue::GroundGlass)
        .count();
    ggo as f64 / lung as f64
}

#[test]
fn difficulty_presets_carry_their_documented_settings() {
    assert_eq!(PhantomConfig::default().difficulty, Difficulty::Easy);
    assert_eq!(
        PhantomConfig::of(Difficulty::Easy),
        PhantomConfig::default()
    );
    assert_eq!(
        PhantomConfig::sized(64, Some(9)).with_difficulty(Difficulty::Easy),
        PhantomConfig::sized(64, Some(9))
    );
    let hard = PhantomConfig::of(Difficulty::Hard);
    assert_eq!(hard.difficulty, Difficulty::Hard);
    // MosMedData's geometry: 512×512 pixels of 0.6–0.9 mm, 30–70 slices 8–10 mm apart.
    assert_eq!(hard.shape_xy, 512);
    assert_eq!(hard.depth, 30..=70);
    assert_eq!(hard.spacing_xy_mm, 0.6..=0.9);
    assert_eq!(hard.slice_spacing_mm, 8.0..=10.0);
    assert_eq!(hard.noise_sigma_hu, 20.0..=45.0);
    // The grid size is kept, the rest comes from the preset.
    let sized = PhantomConfig::sized(64, Some(9)).with_difficulty(Difficulty::Hard);
    assert_eq!((sized.shape_xy, sized.depth.clone()), (64, 9..=9));
    assert_eq!(sized.slice_spacing_mm, hard.slice_spacing_mm);
    assert_eq!(sized.difficulty, Difficulty::Hard);
}

#[test]
fn hard_phantoms_are_deterministic_and_differ_from_easy() {
    let config = small_hard();
    for class in ScanClass::ALL {
        let one = with_threads(1, || generate_phantom(&config, class, 42).unwrap());
        let four = with_threads(4, || generate_phantom(&config, class, 42).unwrap());
        assert_eq!(fingerprint(&one), fingerprint(&four));
        assert_eq!(one.affine, four.affine);
        let easy = generate_phantom(&small(), class, 42).unwrap();
        assert_ne!(fingerprint(&one), fingerprint(&easy));
    }
    // As for easy phantoms, the abnormal scan of a seed is its normal scan plus opacities.
    let normal = labeled_hard(ScanClass::Normal, 77);
    let abnormal = labeled_hard(ScanClass::Abnormal, 77);
    assert_eq!(normal.volume.shape(), abnormal.volume.shape());
    for ((a, b), t) in normal
        .volume
        .data()
        .iter()
        .zip(abnormal.volume.data())
        .zip(&abnormal.tissue)
    {
        if a != b {
            assert_eq!(*t, Tissue::GroundGlass);
        }
    }
}

#[test]
fn hard_slices_are_8_to_10_mm_and_vary() {
    let mut spacings = Vec::new();
    for seed in 0..16 {
        let v = generate_phantom(&small_hard(), ScanClass::Normal, seed).unwrap();
        let sz = v.spacing[2];
        assert!((8.0..=10.0).contains(&sz), "slice spacing {sz}");
        assert_eq!(v.affine[2][2], sz);
        // The in-plane pixels stay those of a 0.6–0.9 mm 512 grid, scaled to 96.
        assert!((3.2..=4.8).contains(&v.spacing[0]), "{:?}", v.spacing);
        spacings.push(sz);
    }
    spacings.sort_by(f64::total_cmp);
    assert!(spacings[15] - spacings[0] > 1.0, "{spacings:?}");
}

#[test]
fn hard_involvement_is_ct1_like_and_fainter() {
    let mut fractions = Vec::new();
    for index in 0..8 {
        let seed = scan_seed(9, ScanClass::Abnormal, index);
        let hard = labeled_hard(ScanClass::Abnormal, seed);
        let fraction = involvement(&hard);
        // MosMedData's CT-1: up to 25 % of the lungs involved.
        assert!(
            (0.02..=0.30).contains(&fraction),
            "scan {index}: GGO is {fraction:.3} of the lungs"
        );
        fractions.push(fraction);
        let mean_ggo = |p: &LabeledPhantom| {
            let values: Vec<f64> = p
                .volume
                .data()
                .iter()
                .zip(&p.tissue)
                .filter(|&(_, &t)| t == Tissue::GroundGlass)
                .map(|(&v, _)| f64::from(v))
                .collect();
            values.iter().sum::<f64>() / values.len() as f64
        };
        let easy = labeled(ScanClass::Abnormal, seed);
        assert!(involvement(&easy) > fraction, "scan {index}");
        // Fainter: closer to aerated lung (≈ −850 HU) than the easy opacities.
        let (hard_hu, easy_hu) = (mean_ggo(&hard), mean_ggo(&easy));
        assert!(
            hard_hu < easy_hu - 80.0 && hard_hu > -850.0,
            "scan {index}: hard {hard_hu:.0} HU, easy {easy_hu:.0} HU"
        );
    }
    // The involvement varies from mild to moderate, not one value.
    fractions.sort_by(f64::total_cmp);
    assert!(fractions[7] > 2.0 * fractions[0], "{fractions:?}");
}

#[test]
fn hard_noise_is_stronger_whole_hu_and_within_the_scanner_range() {
    let soft_sd = |p: &LabeledPhantom| {
        let values: Vec<f64> = p
            .volume
            .data()
            .iter()
            .zip(&p.tissue)
            .filter(|&(_, &t)| t == Tissue::Fat)
            .map(|(&v, _)| f64::from(v))
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
    };
    for seed in 0..4 {
        let hard = labeled_hard(ScanClass::Normal, seed);
        let data = hard.volume.data();
        assert!(
            data.iter()
                .all(|v| v.fract() == 0.0 && (-1024.0..=1300.0).contains(v))
        );
        // Air stays exactly −1000 HU outside the body.
        for (&v, &t) in data.iter().zip(&hard.tissue) {
            if t == Tissue::Air {
                assert_eq!(v, AIR_HU);
            }
        }
        // Fat is one value per scan plus noise: its SD is the noise σ (20–45 HU).
        let sd = soft_sd(&hard);
        assert!((18.0..=47.0).contains(&sd), "seed {seed}: fat SD {sd:.1}");
        let easy = soft_sd(&labeled(ScanClass::Normal, seed));
        assert!(easy < 21.0, "seed {seed}: easy fat SD {easy:.1}");
    }
}

#[test]
fn hard_patients_vary_more_in_size_and_position() {
    // The body's width and left–right centre from its voxels (everything but air and the
    // table) on the first slice, as fractions of the field of view: what a network sees after
    // resizing the scan to its input grid.
    let body = |config: &PhantomConfig, seed: u64| {
        let p = generate_labeled_phantom(config, ScanClass::Normal, seed).unwrap();
        let [nx, ny, _] = p.volume.shape();
        let (mut lo, mut hi) = (usize::MAX, 0);
        for (i, &t) in p.tissue.iter().enumerate().take(nx * ny) {
            if !matches!(t, Tissue::Air | Tissue::Table) {
                lo = lo.min(i % nx);
                hi = hi.max(i % nx);
            }
        }
        let width = (hi - lo + 1) as f64 / nx as f64;
        let centre = ((lo + hi) as f64 / 2.0 - (nx - 1) as f64 / 2.0) / nx as f64;
        (width, centre)
    };
    let spread = |config: &PhantomConfig| {
        let (widths, centres): (Vec<f64>, Vec<f64>) = (0..24).map(|s| body(config, s)).unzip();
        let range = |v: &[f64]| {
            v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
        };
        (range(&widths), range(&centres))
    };
    let (easy_width, easy_centre) = spread(&small());
    let (hard_width, hard_centre) = spread(&small_hard());
    assert!(
        hard_width > 1.3 * easy_width,
        "width spread: hard {hard_width:.3}, easy {easy_width:.3} of the field of view"
    );
    assert!(
        hard_centre > 2.0 * easy_centre,
        "centre spread: hard {hard_centre:.3}, easy {easy_centre:.3} of the field of view"
    );
}

#[test]
fn lesion_mask_is_the_ground_glass_in_the_scan_grid() {
    for difficulty in [Difficulty::Easy, Difficulty::Hard] {
        let config = small().with_difficulty(difficulty);
        let abnormal = generate_labeled_phantom(&config, ScanClass::Abnormal, 3).unwrap();
        let mask = abnormal.lesion_mask();
        assert_eq!(mask.shape(), abnormal.volume.shape());
        assert_eq!(mask.spacing, abnormal.volume.spacing);
        assert_eq!(mask.affine, abnormal.volume.affine);
        let mut ones = 0;
        for (&m, &t) in mask.data().iter().zip(&abnormal.tissue) {
            assert_eq!(m == 1.0, t == Tissue::GroundGlass);
            assert!(m == 0.0 || m == 1.0);
            ones += usize::from(m == 1.0);
        }
        assert!(ones > 0, "{difficulty:?}");
        // The mask covers every voxel the opacities changed.
        let normal = generate_phantom(&config, ScanClass::Normal, 3).unwrap();
        for ((a, b), &m) in normal
            .data()
            .iter()
            .zip(abnormal.volume.data())
            .zip(mask.data())
        {
            if a != b {
                assert_eq!(m, 1.0);
            }
        }
        let clear = generate_labeled_phantom(&config, ScanClass::Normal, 3).unwrap();
        assert!(clear.lesion_mask().data().iter().all(|&m| m == 0.0));
    }
}

#[test]
fn lesion_masks_are_written_for_abnormal_scans_beside_the_class_folders() {
    use ct3d_volume::dataset::Dataset;
    use ct3d_volume::nifti_io::{Datatype, OutputDtype, read_header, read_volume, write_volume};
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        shape_xy: 48,
        depth: 6..=8,
        ..PhantomConfig::of(Difficulty::Hard)
    };
    let plan = DatasetPlan {
        normal: 2,
        abnormal: 3,
        seed: 17,
        config: &config,
    };
    let progress = AtomicUsize::new(0);
    let written = write_dataset_with_masks(
        dir.path(),
        &plan,
        |path: &Path, volume: &Volume| write_volume(path, volume, OutputDtype::I16),
        |path: &Path, mask: &Volume| write_volume(path, mask, OutputDtype::U8),
        || {
            progress.fetch_add(1, Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(progress.load(Ordering::Relaxed), 5);
    let masks = dir.path().join(MASK_FOLDER);
    assert_eq!(
        written.masks,
        (0..3)
            .map(|i| masks.join(phantom_file_name(i)))
            .collect::<Vec<_>>()
    );
    let mut on_disk: Vec<_> = std::fs::read_dir(&masks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, written.masks, "no mask for normal scans");

    // The scans are those write_dataset writes.
    let plain = tempfile::tempdir().unwrap();
    let scans = write_dataset(
        plain.path(),
        2,
        3,
        17,
        &config,
        |path: &Path, volume: &Volume| write_volume(path, volume, OutputDtype::I16),
        || {},
    )
    .unwrap();
    assert_eq!(written.scans.len(), scans.len());
    for (a, b) in written.scans.iter().zip(&scans) {
        assert_eq!(a.strip_prefix(dir.path()), b.strip_prefix(plain.path()));
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    // Each mask is uint8 in its scan's grid and non-empty; it marks the ground glass.
    for (index, mask_path) in written.masks.iter().enumerate() {
        let scan_path = dir.path().join("CT-23").join(phantom_file_name(index));
        let (scan, mask) = (
            read_header(&scan_path).unwrap(),
            read_header(mask_path).unwrap(),
        );
        assert_eq!(mask.datatype, Datatype::U8);
        assert_eq!(mask.shape, scan.shape);
        assert_eq!(mask.spacing, scan.spacing);
        assert_eq!(mask.affine, scan.affine);
        let values = read_volume(mask_path).unwrap();
        assert!(values.data().iter().all(|&v| v == 0.0 || v == 1.0));
        let expected = generate_labeled_phantom(
            &config,
            ScanClass::Abnormal,
            scan_seed(17, ScanClass::Abnormal, index),
        )
        .unwrap()
        .lesion_mask();
        assert_eq!(values.data(), expected.data(), "{}", mask_path.display());
        assert!(values.data().contains(&1.0), "{}", mask_path.display());
    }

    // The masks folder is not a class: the dataset lists the scans only.
    let dataset = Dataset::from_class_folders(dir.path(), "CT-0", "CT-23").unwrap();
    assert_eq!(dataset.class_counts(), [2, 3]);
    let listed: Vec<PathBuf> = dataset.items().iter().map(|i| i.path.clone()).collect();
    assert_eq!(listed, written.scans);
}

#[test]
fn mask_write_errors_name_the_mask_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        shape_xy: 40,
        depth: 5..=5,
        ..PhantomConfig::default()
    };
    let plan = DatasetPlan {
        normal: 0,
        abnormal: 1,
        seed: 0,
        config: &config,
    };
    let err = write_dataset_with_masks(
        dir.path(),
        &plan,
        |_: &Path, _: &Volume| Ok::<(), DiskFull>(()),
        |_: &Path, _: &Volume| Err(DiskFull),
        || {},
    )
    .unwrap_err();
    let file = dir.path().join(MASK_FOLDER).join("phantom_0000.nii.gz");
    assert!(matches!(err, SynthError::WriteMask { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: cannot write the lesion mask", file.display())
    );
}
