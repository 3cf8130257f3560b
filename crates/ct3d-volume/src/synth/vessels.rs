//! Pulmonary vessels: trees from each lung's hilum for the large vessels, plus a field of short
//! twigs scattered through the lung for the small peripheral ones (at 8 mm slice spacing these
//! look like the dots and short lines of a real scan without growing thousands of branches).

use glam::DVec3;

use super::anatomy::Lung;
use super::random::Rng;
use super::shapes::{Segment, normalize};

/// The vessels of the lung on `side` (0: right, at negative x; 1: left).
pub(super) fn vessels(rng: &mut Rng, lung: &Lung, side: usize) -> Vec<Segment> {
    let sign = if side == 0 { -1.0 } else { 1.0 };
    let s = lung.section;
    let hilum = DVec3::new(s.cx - sign * 0.55 * s.rx, s.cy, lung.z_center);
    let mut segments = vessel_trees(rng, lung, hilum, sign);
    // About one twig per 1.5 cm³ of lung.
    let twigs = (lung.volume() / 1500.0) as usize;
    segments.reserve(twigs);
    while segments.len() < segments.capacity() {
        // A uniform point in the lung's normalised ball, by rejection.
        let p = rng.in_cube();
        let r2 = p.dot(p);
        if r2 > 1.0 {
            continue;
        }
        let z = lung.z_center + p.z * if p.z < 0.0 { lung.below } else { lung.above };
        let Some(profile) = lung.profile(z) else {
            continue;
        };
        let a = DVec3::new(s.cx + p.x * s.rx * profile, s.cy + p.y * s.ry * profile, z);
        // Thinner toward the periphery, pointing away from the hilum.
        let radius = 1.8 - 1.2 * r2.sqrt() + rng.uniform(-0.2, 0.2);
        let dir = normalize(normalize(a - hilum) + rng.direction() * 0.6);
        let length = rng.uniform(8.0, 20.0);
        segments.push(Segment {
            a,
            b: a + dir * length,
            radius,
        });
    }
    segments
}

/// Large vessels: trunks from `hilum` aim at points spread through the lung (upper, middle and
/// lower zones, front and back) and branch in two for four more generations; lengths shrink by
/// 0.75 and radii by 0.72 per generation, and branch directions jitter around their parent's.
fn vessel_trees(rng: &mut Rng, lung: &Lung, hilum: DVec3, sign: f64) -> Vec<Segment> {
    const TRUNKS: usize = 6;
    const GENERATIONS: usize = 5;
    // Lengths sum to the trunk's reach: Σ 0.75^g for g < 5 ≈ 3.05.
    const LENGTH_SUM: f64 = 3.05;
    let s = lung.section;
    let radius0 = rng.uniform(3.5, 5.0);
    let mut segments = Vec::with_capacity(TRUNKS * ((1 << GENERATIONS) - 1));
    for trunk in 0..TRUNKS {
        let zone = [0.75, 0.0, -0.75][trunk % 3];
        let front_back = if trunk < 3 { -0.5 } else { 0.5 };
        // Drawn x, y, z, in this order.
        let x = s.cx + sign * rng.uniform(0.0, 0.6) * s.rx;
        let y = s.cy + (front_back + rng.uniform(-0.2, 0.2)) * s.ry;
        let z = lung.z_center
            + zone * if zone < 0.0 { lung.below } else { lung.above }
            + rng.uniform(-0.1, 0.1) * lung.above;
        let reach = DVec3::new(x, y, z) - hilum;
        let length0 = reach.dot(reach).sqrt() / LENGTH_SUM;
        let mut frontier = vec![(hilum, normalize(reach))];
        let (mut length, mut radius) = (length0, radius0);
        for _ in 0..GENERATIONS {
            let mut next = Vec::with_capacity(frontier.len() * 2);
            for (start, dir) in frontier {
                let end = start + dir * length;
                segments.push(Segment {
                    a: start,
                    b: end,
                    radius,
                });
                for _ in 0..2 {
                    let jitter = rng.direction() * 0.7;
                    next.push((end, normalize(dir + jitter)));
                }
            }
            frontier = next;
            length *= 0.75;
            radius *= 0.72;
        }
    }
    segments
}
