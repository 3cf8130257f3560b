//! Ground-glass opacities, what makes a phantom abnormal: soft-edged clusters of ellipsoids
//! (−520…−330 HU for easy phantoms, fainter and fewer for hard ones), mostly peripheral, drawn
//! from their own random stream so that the normal and the abnormal scan of a seed share
//! everything else.

use glam::DVec3;

use super::Difficulty;
use super::anatomy::Lung;
use super::random::Rng;
use super::shapes::Ellipsoid;

/// One ground-glass ellipsoid and its HU value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lesion {
    pub shape: Ellipsoid,
    pub hu: f64,
}

/// Ellipsoids per scan at most (bounds the generation time).
const MAX_GROUND_GLASS_LESIONS: usize = 150;

/// What a difficulty's opacities are like; each range is drawn uniformly.
struct GroundGlass {
    /// Summed lesion volume as a fraction of the lung volume, drawn once per scan.
    target: (f64, f64),
    /// A cluster's size (its ellipsoids' largest radius), mm.
    size_mm: (f64, f64),
    /// A cluster's HU value (each ellipsoid then varies it by ±25 HU).
    hu: (f64, f64),
}

impl GroundGlass {
    fn of(difficulty: Difficulty) -> Self {
        match difficulty {
            // Overlap and clipping at the lung border leave these covering roughly 20–65 % of
            // the lungs, the involvement of MosMedData's `CT-2` (25–50 %) and `CT-3` (50–75 %)
            // scans that make up the seed's `CT-23` class.
            Difficulty::Easy => Self {
                target: (0.35, 3.0),
                size_mm: (15.0, 40.0),
                hu: (-520.0, -330.0),
            },
            // About 5–25 % of the lungs (`CT-1`), fainter and in smaller clusters.
            Difficulty::Hard => Self {
                target: (0.07, 0.55),
                size_mm: (8.0, 25.0),
                hu: (-700.0, -560.0),
            },
        }
    }
}

/// Ground-glass clusters, mostly peripheral, added until their summed volume reaches a drawn
/// multiple of the lung volume (the involvement of `difficulty`, see [`GroundGlass::of`]).
pub(super) fn ground_glass(
    rng: &mut Rng,
    lungs: &[Lung; 2],
    difficulty: Difficulty,
) -> Vec<Lesion> {
    let settings = GroundGlass::of(difficulty);
    let lung_volume: f64 = lungs.iter().map(Lung::volume).sum();
    let target = lung_volume * rng.uniform(settings.target.0, settings.target.1);
    let mut lesions = Vec::new();
    let mut total = 0.0;
    while total < target && lesions.len() < MAX_GROUND_GLASS_LESIONS {
        let lung = &lungs[rng.integer_in(&(0..=1))];
        let t = rng.uniform(-0.7, 0.7);
        let z = lung.z_center + t * if t < 0.0 { lung.below } else { lung.above };
        let s = lung.profile(z).unwrap_or(0.5);
        let rho = rng.uniform(0.40, 0.85);
        let (cos, sin) = rng.unit_circle();
        let center = DVec3::new(
            lung.section.cx + rho * cos * lung.section.rx * s,
            lung.section.cy + rho * sin * lung.section.ry * s,
            z,
        );
        let size = rng.uniform(settings.size_mm.0, settings.size_mm.1);
        let hu = rng.uniform(settings.hu.0, settings.hu.1);
        for _ in 0..rng.integer_in(&(1..=3)) {
            // The direction is drawn before the distance.
            let direction = rng.direction();
            let offset = direction * (rng.uniform(0.0, 0.6) * size);
            let (cos, sin) = rng.unit_circle();
            let rx = size * rng.uniform(0.6, 1.0);
            let ry = size * rng.uniform(0.6, 1.0);
            let rz = size * rng.uniform(0.6, 1.1);
            total += 4.0 / 3.0 * std::f64::consts::PI * rx * ry * rz;
            lesions.push(Lesion {
                shape: Ellipsoid {
                    center: center + offset,
                    radii: DVec3::new(rx, ry, rz),
                    cos,
                    sin,
                },
                hu: hu + rng.uniform(-25.0, 25.0),
            });
        }
    }
    lesions
}
