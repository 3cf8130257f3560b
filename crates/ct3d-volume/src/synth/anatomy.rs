//! The anatomy of one phantom: every shape and tissue value of a scan, drawn once from the scan's
//! anatomy stream in a fixed order of named steps (grid, torso, lungs, heart, spine, ribs,
//! vessels, noise level, then the lesions from their own stream). Rendering a slice only reads
//! it. Lengths are in mm: x toward the patient's left, y posterior, z superior; the in-plane
//! origin is the grid centre and z = 0 the first slice.

use glam::DVec3;

use super::lesions::{Lesion, ground_glass};
use super::random::{ANATOMY_STREAM, LESION_STREAM, Rng};
use super::shapes::{Ellipse, Ellipsoid, Segment};
use super::vessels::vessels;
use super::{Difficulty, PhantomConfig, REFERENCE_SHAPE_XY, ScanClass, SynthError};
use crate::Volume;
use crate::volume::Affine;

/// Vertebral level height and disc thickness, mm.
pub(super) const VERTEBRA_PITCH_MM: f64 = 30.0;
pub(super) const DISC_MM: f64 = 7.0;
/// Rib spacing along z and the z extent of one rib's cross-section, mm.
pub(super) const RIB_PITCH_MM: f64 = 32.0;
pub(super) const RIB_CROSSING_MM: f64 = 14.0;

/// The voxel grid: `n × n × depth` voxels of `spacing` mm.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grid {
    pub n: usize,
    pub depth: usize,
    pub spacing: [f64; 3],
}

/// The body outline, its fat rim, and the table it lies on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Torso {
    pub body: Ellipse,
    /// Thickness of the subcutaneous fat rim, mm.
    pub fat_mm: f64,
    pub soft_hu: f64,
    pub fat_hu: f64,
    pub table: Ellipse,
}

/// One lung: an elliptic section that tapers toward the apex and ends at the diaphragm.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lung {
    /// Cross-section at its widest.
    pub section: Ellipse,
    /// Height (mm) of the widest section.
    pub z_center: f64,
    /// Distance from the widest section down to the diaphragm.
    pub below: f64,
    /// Distance from the widest section up to the apex.
    pub above: f64,
    /// Parenchyma HU at the section centre.
    pub hu: f64,
    /// HU increase per mm toward posterior (gravity-dependent density).
    pub hu_per_mm_posterior: f64,
}

impl Lung {
    /// Cross-section scale at height `z`: flat-domed base, rounded apex; `None` outside the lung.
    pub fn profile(&self, z: f64) -> Option<f64> {
        let t = (z - self.z_center)
            / if z < self.z_center {
                self.below
            } else {
                self.above
            };
        let s = if z < self.z_center {
            (1.0 - t * t * t * t).max(0.0).sqrt()
        } else {
            (1.0 - t * t).max(0.0).sqrt()
        };
        (s > 0.08).then_some(s)
    }

    /// Volume in mm³.
    pub fn volume(&self) -> f64 {
        // ∫ profile² dz over both halves: (4/5)·below + (2/3)·above.
        std::f64::consts::PI
            * self.section.rx
            * self.section.ry
            * (0.8 * self.below + 2.0 / 3.0 * self.above)
    }
}

/// The heart: an upright ellipsoid of soft tissue.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heart {
    pub shape: Ellipsoid,
    pub hu: f64,
}

/// The spine: vertebral body (or disc), spinal canal, neural arch and spinous process.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spine {
    pub vertebral_body: Ellipse,
    pub canal: Ellipse,
    pub spinous: Ellipse,
    pub cortical_hu: f64,
    pub cancellous_hu: f64,
    /// Phase (mm) of the disc repetition along z.
    pub disc_phase: f64,
}

/// One rib's cross-section, crossing the slices periodically along z.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rib {
    pub section: Ellipse,
    /// Phase (mm) of the rib's repetition along z.
    pub phase: f64,
}

/// Everything drawn for one scan; rendering a slice reads it only.
pub(super) struct Anatomy {
    /// The scan's seed (the noise streams derive from it).
    pub seed: u64,
    pub grid: Grid,
    pub torso: Torso,
    pub lungs: [Lung; 2],
    pub heart: Heart,
    pub spine: Spine,
    pub ribs: Vec<Rib>,
    pub rib_hu: f64,
    pub vessels: Vec<Segment>,
    pub vessel_hu: f64,
    pub lesions: Vec<Lesion>,
    pub noise_sigma: f64,
    /// Picks the noise distribution (see [`Difficulty`]).
    pub difficulty: Difficulty,
}

impl Anatomy {
    /// Draws the anatomy of scan `seed` of `class`. The steps draw from one stream in this
    /// order, which fixes every phantom: reordering them changes every scan.
    pub fn draw(config: &PhantomConfig, class: ScanClass, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ ANATOMY_STREAM);
        let grid = Grid::draw(&mut rng, config);
        let torso = Torso::draw(&mut rng, grid.half_fov(), config.difficulty);
        let lungs = draw_lungs(&mut rng, &torso, grid.length());
        let heart = Heart::draw(&mut rng, &torso, &lungs[0]);
        let spine = Spine::draw(&mut rng, &torso.body);
        let (ribs, rib_hu) = draw_ribs(&mut rng, &torso);
        let vessels = lungs
            .iter()
            .enumerate()
            .flat_map(|(side, lung)| vessels(&mut rng, lung, side))
            .collect();
        let vessel_hu = rng.uniform(30.0, 50.0);
        let noise_sigma = rng.uniform_in(&config.noise_sigma_hu);
        let lesions = match class {
            ScanClass::Normal => Vec::new(),
            ScanClass::Abnormal => ground_glass(
                &mut Rng::new(seed ^ LESION_STREAM),
                &lungs,
                config.difficulty,
            ),
        };
        Self {
            seed,
            grid,
            torso,
            lungs,
            heart,
            spine,
            ribs,
            rib_hu,
            vessels,
            vessel_hu,
            lesions,
            noise_sigma,
            difficulty: config.difficulty,
        }
    }

    /// `data` (the rendered slices) as a volume with the phantom's spacing and an affine that
    /// puts the grid centre at the world origin (see the module docs' geometry).
    pub fn into_volume(self, data: Vec<f32>) -> Result<Volume, SynthError> {
        let Grid { n, depth, spacing } = self.grid;
        let mut volume =
            Volume::new([n, n, depth], data).map_err(|e| SynthError::InvalidConfig {
                reason: e.to_string(),
            })?;
        let [sx, sy, sz] = spacing;
        let half = (n - 1) as f64 / 2.0;
        let affine: Affine = [
            [-sx, 0.0, 0.0, sx * half],
            [0.0, -sy, 0.0, sy * half],
            [0.0, 0.0, sz, -sz * (depth - 1) as f64 / 2.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        volume.spacing = spacing;
        volume.affine = affine;
        Ok(volume)
    }
}

impl Grid {
    /// Slice count, then the in-plane pixel size (a smaller grid has proportionally larger
    /// pixels, so the field of view stays that of a 512 grid), then the slice spacing: drawn
    /// only from a range of more than one value, so a fixed spacing (the easy phantoms') leaves
    /// every later draw as it was.
    fn draw(rng: &mut Rng, config: &PhantomConfig) -> Self {
        let n = config.shape_xy;
        let depth = rng.integer_in(&config.depth);
        let sxy = rng.uniform_in(&config.spacing_xy_mm) * REFERENCE_SHAPE_XY as f64 / n as f64;
        let range = &config.slice_spacing_mm;
        let sz = if range.start() < range.end() {
            rng.uniform_in(range)
        } else {
            *range.start()
        };
        Self {
            n,
            depth,
            spacing: [sxy, sxy, sz],
        }
    }

    /// Half the in-plane field of view, mm.
    fn half_fov(&self) -> f64 {
        self.spacing[0] * self.n as f64 / 2.0
    }

    /// Distance from the first to the last slice centre, mm.
    fn length(&self) -> f64 {
        (self.depth - 1) as f64 * self.spacing[2]
    }
}

/// Where the patient lies and how big they are, as fractions of half the field of view: the
/// body's half-width, and its centre's offset left–right and anterior–posterior (the numbers of
/// [`Difficulty`]'s docs).
struct Placement {
    half_width: (f64, f64),
    shift_x: (f64, f64),
    shift_y: (f64, f64),
}

impl Placement {
    fn of(difficulty: Difficulty) -> Self {
        match difficulty {
            Difficulty::Easy => Self {
                half_width: (0.70, 0.90),
                shift_x: (-0.03, 0.03),
                shift_y: (-0.06, 0.02),
            },
            // The largest patient, shifted most, just touches the field of view's edge
            // (0.92 + 0.08), and the table stays inside it even then (0.92 · 0.78 + 0.06 of
            // at least 154 mm leaves more than the 27 mm the table's gap and thickness need).
            Difficulty::Hard => Self {
                half_width: (0.55, 0.92),
                shift_x: (-0.08, 0.08),
                shift_y: (-0.12, 0.06),
            },
        }
    }
}

impl Torso {
    /// How much of the field of view the patient fills, how round the chest is, the fat rim,
    /// the tissue values and the gap to the table.
    fn draw(rng: &mut Rng, half_fov: f64, difficulty: Difficulty) -> Self {
        let place = Placement::of(difficulty);
        let rx = half_fov * rng.uniform(place.half_width.0, place.half_width.1);
        let ry = rx * rng.uniform(0.62, 0.78);
        let body = Ellipse {
            cx: rng.uniform(place.shift_x.0, place.shift_x.1) * half_fov,
            cy: rng.uniform(place.shift_y.0, place.shift_y.1) * half_fov,
            rx,
            ry,
        };
        let fat_mm = ry * rng.uniform(0.04, 0.15);
        let soft_hu = rng.uniform(35.0, 50.0);
        let fat_hu = rng.uniform(-115.0, -85.0);
        let table_gap = rng.uniform(4.0, 25.0);
        let table = Ellipse {
            cx: 0.0,
            cy: body.cy + ry + table_gap + 2.0,
            rx: half_fov * 0.85,
            ry: 2.0,
        };
        Self {
            body,
            fat_mm,
            soft_hu,
            fat_hu,
            table,
        }
    }
}

/// Both lungs (right, then left) in a scan `length` mm long: their size relative to the chest
/// varies per scan; bases are wider and lower than apices.
fn draw_lungs(rng: &mut Rng, torso: &Torso, length: f64) -> [Lung; 2] {
    let body = torso.body;
    let (rx, ry) = (body.rx, body.ry);
    let lung_scale = rng.uniform(0.80, 1.08);
    let wall = torso.fat_mm + 0.05 * rx;
    let z_center = length * rng.uniform(0.40, 0.52);
    let below = length * rng.uniform(0.40, 0.52);
    let above = length * rng.uniform(0.45, 0.60);
    let lung_hu = rng.uniform(-880.0, -820.0);
    let gradient = rng.uniform(0.1, 0.4);
    let mut lungs = [0usize, 1].map(|side| {
        let sign = if side == 0 { -1.0 } else { 1.0 };
        let center_x = body.cx + sign * 0.48 * rx;
        let half_width = (0.34 * rx * lung_scale).min(rx - wall - 0.48 * rx);
        Lung {
            section: Ellipse {
                cx: center_x,
                cy: body.cy + 0.02 * ry,
                rx: half_width,
                ry: 0.72 * ry * lung_scale.min(1.0),
            },
            z_center,
            below,
            above,
            hu: lung_hu,
            hu_per_mm_posterior: gradient,
        }
    });
    // The left lung (positive x) gives room to the heart.
    lungs[1].section.rx *= 0.93;
    lungs
}

impl Heart {
    /// Left of centre and anterior, low in the chest (placed by the lungs' common height).
    fn draw(rng: &mut Rng, torso: &Torso, lung: &Lung) -> Self {
        let Ellipse { cx, cy, rx, ry } = torso.body;
        let (z_center, below) = (lung.z_center, lung.below);
        let hu = torso.soft_hu + rng.uniform(-5.0, 10.0);
        Self {
            shape: Ellipsoid {
                center: DVec3::new(cx + 0.14 * rx, cy - 0.28 * ry, z_center - 0.35 * below),
                radii: DVec3::new(0.30 * rx, 0.36 * ry, 0.45 * below.max(1.0)),
                cos: 1.0,
                sin: 0.0,
            },
            hu,
        }
    }
}

impl Spine {
    /// Shapes scaled to the chest's depth, then the bone values and where the discs fall.
    fn draw(rng: &mut Rng, body: &Ellipse) -> Self {
        let ry = body.ry;
        let vertebral_body = Ellipse {
            cx: body.cx,
            cy: body.cy + 0.38 * ry,
            rx: 0.22 * ry,
            ry: 0.14 * ry,
        };
        let canal = Ellipse {
            cx: body.cx,
            cy: vertebral_body.cy + vertebral_body.ry + 0.075 * ry,
            rx: 0.07 * ry,
            ry: 0.065 * ry,
        };
        let spinous = Ellipse {
            cx: body.cx,
            cy: canal.cy + 0.17 * ry,
            rx: 0.045 * ry,
            ry: 0.09 * ry,
        };
        let cortical_hu = rng.uniform(800.0, 1000.0);
        let cancellous_hu = rng.uniform(400.0, 500.0);
        let disc_phase = rng.uniform(0.0, VERTEBRA_PITCH_MM);
        Self {
            vertebral_body,
            canal,
            spinous,
            cortical_hu,
            cancellous_hu,
            disc_phase,
        }
    }
}

/// 8–12 ribs on a ring inside the fat rim, and their HU value.
fn draw_ribs(rng: &mut Rng, torso: &Torso) -> (Vec<Rib>, f64) {
    let Torso { body, fat_mm, .. } = *torso;
    let (rx, ry) = (body.rx, body.ry);
    let bone_scale = ry / 100.0;
    let rib_count = rng.integer_in(&(8..=12));
    let rib_ring = Ellipse {
        rx: rx - fat_mm - 0.04 * rx,
        ry: ry - fat_mm - 0.04 * ry,
        ..body
    };
    let ribs = (0..rib_count)
        .map(|i| {
            // Spread over both sides, skipping the sternum (anterior) and the spine (posterior).
            let side = if i % 2 == 0 { 1.0 } else { -1.0 };
            let along = (i / 2) as f64 / rib_count.div_ceil(2) as f64;
            let sin = (-0.95 + 1.9 * along + rng.uniform(-0.05, 0.05)).clamp(-0.97, 0.97);
            let cos = (1.0 - sin * sin).sqrt();
            let radius = 5.0 * bone_scale + 1.0;
            Rib {
                section: Ellipse {
                    cx: rib_ring.cx + side * rib_ring.rx * cos,
                    cy: rib_ring.cy + rib_ring.ry * sin,
                    rx: radius * 1.4,
                    ry: radius,
                },
                phase: rng.uniform(0.0, RIB_PITCH_MM),
            }
        })
        .collect();
    let rib_hu = rng.uniform(550.0, 750.0);
    (ribs, rib_hu)
}
