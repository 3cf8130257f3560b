//! Do the explanations mean something? On a model trained exactly as `ct3d demo` trains it
//! (easy phantoms, 48×48×48, 8 epochs), for the correctly classified abnormal validation
//! phantoms: Grad-CAM's peak falls inside the ground-truth lesion mask (the pointing game), most
//! of the map's energy lies inside the lungs, and re-initialising the weights changes the map
//! (Adebayo et al. 2018's model-randomisation sanity check). The ground truth is regenerated
//! from the demo's seed (`scan_seed`), tissue label by tissue label.

use ct3d::demo::{DEMO_SEED, DemoObserver, DemoOptions, DemoSettings, run_demo};
use ct3d::evaluate::{EvalSplit, WeightsChoice, evaluate_recorded, load_run};
use ct3d::explain::{ExplainSettings, Explainer, Method};
use ct3d::observe::{Silent, TrainObserver};
use ct3d_model::explain::{GradExplainer, GradMethod, Target};
use ct3d_model::{Classifier, DeviceChoice};
use ct3d_volume::synth::{PhantomConfig, ScanClass, Tissue, generate_labeled_phantom, scan_seed};

struct Quiet;
impl DemoObserver for Quiet {
    fn training(&self) -> &dyn TrainObserver {
        &Silent
    }
}

/// Average ranks (ties share the mean rank), for Spearman's correlation.
fn ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for k in i..=j {
            ranks[order[k]] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    ranks
}

fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

// The bar (pointing game ≥ 0.8, energy inside the lungs ≥ 0.8) is not met yet. Measured
// on 2026-11-30 (the demo's run, 17 correctly classified abnormal validation phantoms; the lungs
// are 16 % of a scan, so a uniform map scores 0.16 energy), pointing game and lung energy:
// Grad-CAM block1 0/17 and 0.13, block2 11/17 and 0.26, block3 4/17 and 0.24, block4 0 and
// 0.10; Grad-CAM++ block2 0/17 and 0.10, block3 1/17 and 0.08; LayerCAM (tried, not kept)
// block1 8/17 and 0.39, block2 2/17 and 0.11; occlusion 12³ patches 4/17 and 0.35 (positive
// part). Every method, occlusion included, puts most of the evidence on the body outside the
// lungs, so the model itself leans on more than the lesions: the next step is the model (longer
// training, augmentation against shortcuts), not the map. Kept as the target, not weakened;
// run with `--ignored`.
#[test]
#[ignore = "issue 14 item 2 not met yet: pointing game 0.24, lung energy 0.24 (see comment)"]
fn grad_cam_of_a_demo_model_points_at_the_lesions_inside_the_lungs() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DemoSettings::quick();
    let options = DemoOptions {
        out: dir.path().join("demo"),
        settings: settings.clone(),
        device: DeviceChoice::Cpu,
    };
    run_demo(&options, &Quiet).unwrap();
    let run = load_run(
        &options.out.join("run"),
        WeightsChoice::Best,
        DeviceChoice::Cpu,
    )
    .unwrap();
    let evaluation = evaluate_recorded(&run, EvalSplit::Val, false).unwrap();
    let explain_settings = ExplainSettings {
        method: Method::GradCam,
        layer: Some("block3".to_owned()),
        target: Target::Positive,
    };
    let explainer = Explainer::new(&run, explain_settings).unwrap();
    let phantoms = PhantomConfig::sized(settings.size_xy, settings.depth);
    let (mut hits, mut correct, mut energies) = (0, 0, Vec::new());
    let mut sanity = None;
    for scan in &evaluation.scans {
        if scan.label != 1 || scan.probability <= 0.5 {
            continue;
        }
        correct += 1;
        let name = scan
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let index: usize = name["phantom_".len()..name.len() - ".nii.gz".len()]
            .parse()
            .unwrap();
        let seed = scan_seed(DEMO_SEED, ScanClass::Abnormal, index);
        let truth = generate_labeled_phantom(&phantoms, ScanClass::Abnormal, seed).unwrap();
        let explanation = explainer.explain(&scan.path, &mut |_, _| {}).unwrap();
        let map = &explanation.scan_map;
        assert_eq!(map.shape(), truth.volume.shape());
        let [i, j, k] = explanation.peak_voxel;
        if truth.lesion_mask().get(i, j, k) == 1.0 {
            hits += 1;
        }
        let lungs = |t: &Tissue| matches!(t, Tissue::Lung | Tissue::Vessel | Tissue::GroundGlass);
        let total: f64 = map.data().iter().map(|&v| f64::from(v)).sum();
        let inside: f64 = map
            .data()
            .iter()
            .zip(&truth.tissue)
            .filter(|(_, t)| lungs(t))
            .map(|(&v, _)| f64::from(v))
            .sum();
        energies.push(inside / total.max(f64::MIN_POSITIVE));
        if sanity.is_none() {
            sanity = Some(explanation.preprocessed.clone());
        }
    }
    assert!(
        correct >= 5,
        "only {correct} abnormal validation scans classified correctly"
    );
    let pointing = f64::from(hits) / f64::from(correct);
    let energy = energies.iter().sum::<f64>() / energies.len() as f64;
    let least = energies.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "pointing game {hits}/{correct} = {pointing:.3}; map energy inside the lungs: mean {energy:.3}, least {least:.3}"
    );
    assert!(pointing >= 0.8, "pointing game {hits}/{correct}");
    assert!(energy >= 0.8, "energy inside the lungs {energy:.3}");

    // Sanity check: the same scan's map from re-initialised weights ranks voxels differently.
    let volume = sanity.unwrap();
    let trained = GradExplainer::new(&run.model);
    let random_network = run
        .config
        .train
        .architecture
        .init(&run.config.train.model_config(), &run.device, 12_345)
        .unwrap();
    let random = GradExplainer::new(&random_network);
    let layer = run
        .model
        .layer_names()
        .iter()
        .position(|n| n == "block3")
        .unwrap();
    let a = trained
        .input_map(&volume, layer, GradMethod::GradCam, Target::Positive)
        .unwrap()
        .0;
    let b = random
        .input_map(&volume, layer, GradMethod::GradCam, Target::Positive)
        .unwrap()
        .0;
    let rho = spearman(a.data(), b.data());
    println!("Spearman rank correlation, trained vs re-initialised weights: {rho:.3}");
    assert!(
        rho < 0.5,
        "re-initialising the weights left the map alike (ρ = {rho:.3})"
    );
}
