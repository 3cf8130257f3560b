//! Rendering one axial slice of an [`Anatomy`]: tissues painted back to front (table, body, fat
//! rim, lungs, heart, ground glass, vessels, spine, ribs), each voxel labelled with its
//! [`Tissue`], then noise from the slice's own stream inside the body and the table. Slices read
//! the anatomy only, so they render in parallel.

use std::ops::Range;

use glam::DVec3;

use super::anatomy::{Anatomy, DISC_MM, RIB_CROSSING_MM, RIB_PITCH_MM, VERTEBRA_PITCH_MM};
use super::random::{NOISE_STREAM, Rng};
use super::shapes::Ellipse;
use super::{AIR_HU, Difficulty, Tissue};
use crate::rng::mix64;

/// The lowest value a CT scanner stores (hard phantoms' noise floor), HU.
const MIN_HU: f32 = -1024.0;

impl Anatomy {
    /// Voxel centre → mm along x (or y).
    fn mm(&self, i: usize) -> f64 {
        (i as f64 - (self.grid.n - 1) as f64 / 2.0) * self.grid.spacing[0]
    }

    /// Voxel indices whose centres lie in `[lo, hi]` mm.
    fn index_span(&self, lo: f64, hi: f64) -> Range<usize> {
        let n = self.grid.n;
        let c = (n - 1) as f64 / 2.0;
        let first = (lo / self.grid.spacing[0] + c).ceil().max(0.0);
        let last = (hi / self.grid.spacing[0] + c).floor().min((n - 1) as f64);
        if last < first {
            0..0
        } else {
            first as usize..last as usize + 1
        }
    }

    /// Calls `paint(row_slice, row_tissue, y_mm)` for each row the ellipse covers.
    fn fill_ellipse(
        &self,
        e: &Ellipse,
        out: &mut [f32],
        tissue: &mut [Tissue],
        mut paint: impl FnMut(&mut [f32], &mut [Tissue], f64),
    ) {
        let n = self.grid.n;
        for y in self.index_span(e.cy - e.ry, e.cy + e.ry) {
            let y_mm = self.mm(y);
            if let Some((lo, hi)) = e.row_extent(y_mm) {
                let xs = self.index_span(lo, hi);
                let row = y * n;
                paint(
                    &mut out[row + xs.start..row + xs.end],
                    &mut tissue[row + xs.start..row + xs.end],
                    y_mm,
                );
            }
        }
    }

    fn fill_constant(
        &self,
        e: &Ellipse,
        hu: f64,
        label: Tissue,
        out: &mut [f32],
        tissue: &mut [Tissue],
    ) {
        self.fill_ellipse(e, out, tissue, |values, labels, _| {
            values.fill(hu as f32);
            labels.fill(label);
        });
    }

    /// Renders slice `z` into `out` (`n × n`, `x` fastest), using `tissue` for the labels.
    pub fn render_slice(&self, z: usize, out: &mut [f32], tissue: &mut [Tissue]) {
        let z_mm = z as f64 * self.grid.spacing[2];
        out.fill(AIR_HU);
        tissue.fill(Tissue::Air);

        self.paint_torso(out, tissue);
        let any_lung = self.paint_lungs(z_mm, out, tissue);
        self.paint_heart(z_mm, out, tissue);
        if any_lung {
            self.paint_lesions(z_mm, out, tissue);
            self.paint_vessels(z_mm, out, tissue);
        }
        self.paint_spine(z_mm, out, tissue);
        if any_lung {
            self.paint_ribs(z_mm, out, tissue);
        }
        self.add_noise(z, out, tissue);
    }

    /// The table, the body in fat, and the soft tissue inside the fat rim.
    fn paint_torso(&self, out: &mut [f32], tissue: &mut [Tissue]) {
        let torso = &self.torso;
        self.fill_constant(&torso.table, 100.0, Tissue::Table, out, tissue);
        self.fill_constant(&torso.body, torso.fat_hu, Tissue::Fat, out, tissue);
        let inner = Ellipse {
            rx: torso.body.rx - torso.fat_mm,
            ry: torso.body.ry - torso.fat_mm,
            ..torso.body
        };
        self.fill_constant(&inner, torso.soft_hu, Tissue::SoftTissue, out, tissue);
    }

    /// The lungs' sections at `z_mm`, denser posteriorly. Returns whether the slice has lung.
    fn paint_lungs(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) -> bool {
        let mut any_lung = false;
        for lung in &self.lungs {
            if let Some(s) = lung.profile(z_mm) {
                any_lung = true;
                self.fill_ellipse(&lung.section.scaled(s), out, tissue, |values, labels, y| {
                    let hu = lung.hu + lung.hu_per_mm_posterior * (y - lung.section.cy);
                    values.fill(hu as f32);
                    labels.fill(Tissue::Lung);
                });
            }
        }
        any_lung
    }

    fn paint_heart(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let heart = &self.heart.shape;
        if let Some((_, tz2)) = heart.slice_at(z_mm) {
            let s = (1.0 - tz2).sqrt();
            let section = Ellipse {
                cx: heart.center.x,
                cy: heart.center.y,
                rx: heart.radii.x * s,
                ry: heart.radii.y * s,
            };
            self.fill_constant(&section, self.heart.hu, Tissue::SoftTissue, out, tissue);
        }
    }

    fn paint_lesions(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let n = self.grid.n;
        for lesion in &self.lesions {
            let Some((half, tz2)) = lesion.shape.slice_at(z_mm) else {
                continue;
            };
            let (cx, cy) = (lesion.shape.center.x, lesion.shape.center.y);
            let xs = self.index_span(cx - half, cx + half);
            for y in self.index_span(cy - half, cy + half) {
                let y_mm = self.mm(y);
                for x in xs.clone() {
                    let i = y * n + x;
                    if !matches!(tissue[i], Tissue::Lung | Tissue::GroundGlass) {
                        continue;
                    }
                    let r2 = lesion.shape.norm2(self.mm(x), y_mm, tz2);
                    if r2 < 1.0 {
                        // A plateau with a soft rim, like hazy ground glass.
                        let w = (1.6 * (1.0 - r2)).min(1.0) as f32;
                        out[i] += w * (lesion.hu as f32 - out[i]);
                        tissue[i] = Tissue::GroundGlass;
                    }
                }
            }
        }
    }

    fn paint_vessels(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let n = self.grid.n;
        for vessel in &self.vessels {
            let Some([x0, x1, y0, y1]) = vessel.bounds_at(z_mm) else {
                continue;
            };
            let r2 = vessel.radius * vessel.radius;
            let xs = self.index_span(x0, x1);
            for y in self.index_span(y0, y1) {
                let y_mm = self.mm(y);
                for x in xs.clone() {
                    let i = y * n + x;
                    if matches!(tissue[i], Tissue::Lung | Tissue::GroundGlass)
                        && vessel.distance2(DVec3::new(self.mm(x), y_mm, z_mm)) < r2
                    {
                        out[i] = self.vessel_hu as f32;
                        tissue[i] = Tissue::Vessel;
                    }
                }
            }
        }
    }

    fn paint_spine(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let spine = &self.spine;
        let soft_hu = self.torso.soft_hu;
        let vb = &spine.vertebral_body;
        if (z_mm + spine.disc_phase).rem_euclid(VERTEBRA_PITCH_MM) < DISC_MM {
            self.fill_constant(vb, soft_hu + 30.0, Tissue::SoftTissue, out, tissue);
        } else {
            self.fill_constant(vb, spine.cortical_hu, Tissue::Bone, out, tissue);
            let shell = 2.0_f64.max(self.grid.spacing[0]);
            let core = Ellipse {
                rx: vb.rx - shell,
                ry: vb.ry - shell,
                ..*vb
            };
            self.fill_constant(&core, spine.cancellous_hu, Tissue::Bone, out, tissue);
        }
        // The neural arch: a bony ring around the canal, and the spinous process behind it.
        let arch = spine.canal.scaled(1.6);
        let arch_hu = spine.cortical_hu * 0.8;
        self.fill_constant(&arch, arch_hu, Tissue::Bone, out, tissue);
        self.fill_constant(&spine.spinous, arch_hu, Tissue::Bone, out, tissue);
        self.fill_constant(
            &spine.canal,
            soft_hu - 15.0,
            Tissue::SoftTissue,
            out,
            tissue,
        );
    }

    /// The ribs whose periodic crossing includes `z_mm`.
    fn paint_ribs(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        for rib in &self.ribs {
            if (z_mm + rib.phase).rem_euclid(RIB_PITCH_MM) < RIB_CROSSING_MM {
                self.fill_constant(&rib.section, self.rib_hu, Tissue::Bone, out, tissue);
            }
        }
    }

    /// Noise of the scan's σ inside the body and the table, rounded to whole HU: bounded for
    /// easy phantoms; Gaussian-tailed for hard ones, floored at −1024 HU (a scanner's lowest
    /// value), which only the noisiest lung voxels reach.
    fn add_noise(&self, z: usize, out: &mut [f32], tissue: &[Tissue]) {
        let mut rng = Rng::new(self.seed ^ NOISE_STREAM ^ mix64(z as u64));
        let sigma = self.noise_sigma as f32;
        match self.difficulty {
            Difficulty::Easy => {
                for (value, &label) in out.iter_mut().zip(tissue) {
                    if label != Tissue::Air {
                        *value = (*value + sigma * rng.approx_normal()).round();
                    }
                }
            }
            Difficulty::Hard => {
                for (value, &label) in out.iter_mut().zip(tissue) {
                    if label != Tissue::Air {
                        *value = (*value + sigma * rng.gaussian()).round().max(MIN_HU);
                    }
                }
            }
        }
    }
}
