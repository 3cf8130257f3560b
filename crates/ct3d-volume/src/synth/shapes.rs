//! The geometric primitives phantoms are drawn from, in millimetres: in-plane ellipses,
//! ellipsoids with a rotated in-plane axis pair, and tubes (line segments with a radius), with
//! the distance and bounding-box queries that rendering a slice needs. Points are glam `DVec3`s;
//! every expression keeps the arithmetic order phantoms were first drawn with, so they stay bit
//! for bit the same.

use glam::DVec3;

/// An axis-aligned ellipse in the `(x, y)` plane, mm.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ellipse {
    pub cx: f64,
    pub cy: f64,
    pub rx: f64,
    pub ry: f64,
}

impl Ellipse {
    /// The same ellipse with both radii scaled by `s`.
    pub fn scaled(self, s: f64) -> Self {
        Self {
            rx: self.rx * s,
            ry: self.ry * s,
            ..self
        }
    }

    /// The x interval (mm) of the ellipse on the row at `y` mm.
    pub fn row_extent(&self, y: f64) -> Option<(f64, f64)> {
        let t = (y - self.cy) / self.ry;
        (t.abs() < 1.0).then(|| {
            let half = self.rx * (1.0 - t * t).sqrt();
            (self.cx - half, self.cx + half)
        })
    }
}

/// An ellipsoid with its in-plane axes rotated by the angle whose cosine and sine are given.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ellipsoid {
    pub center: DVec3,
    pub radii: DVec3,
    pub cos: f64,
    pub sin: f64,
}

impl Ellipsoid {
    /// Its cross-section bounding half-width and the squared normalised z distance at `z`.
    pub fn slice_at(&self, z: f64) -> Option<(f64, f64)> {
        let tz = (z - self.center.z) / self.radii.z;
        let tz2 = tz * tz;
        (tz2 < 1.0).then(|| (self.radii.x.max(self.radii.y) * (1.0 - tz2).sqrt(), tz2))
    }

    /// Squared normalised distance of `(x, y)` given the z term.
    pub fn norm2(&self, x: f64, y: f64, tz2: f64) -> f64 {
        let (dx, dy) = (x - self.center.x, y - self.center.y);
        let u = (dx * self.cos + dy * self.sin) / self.radii.x;
        let v = (-dx * self.sin + dy * self.cos) / self.radii.y;
        u * u + v * v + tz2
    }
}

/// A tube: the points within `radius` of the segment from `a` to `b`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub a: DVec3,
    pub b: DVec3,
    pub radius: f64,
}

impl Segment {
    /// Squared distance from `p` to the segment.
    pub fn distance2(&self, p: DVec3) -> f64 {
        let ab = self.b - self.a;
        let ap = p - self.a;
        let t = (ap.dot(ab) / ab.dot(ab).max(1e-12)).clamp(0.0, 1.0);
        let d = ap - ab * t;
        d.dot(d)
    }

    /// The in-plane bounding box (mm) of the part of the tube within its radius of height `z`.
    pub fn bounds_at(&self, z: f64) -> Option<[f64; 4]> {
        let r = self.radius;
        let (za, zb) = (self.a.z, self.b.z);
        if z < za.min(zb) - r || z > za.max(zb) + r {
            return None;
        }
        let dz = zb - za;
        let (t0, t1) = if dz.abs() < 1e-9 {
            (0.0, 1.0)
        } else {
            let (ta, tb) = ((z - r - za) / dz, (z + r - za) / dz);
            (ta.min(tb).clamp(0.0, 1.0), ta.max(tb).clamp(0.0, 1.0))
        };
        let p0 = self.a + (self.b - self.a) * t0;
        let p1 = self.a + (self.b - self.a) * t1;
        Some([
            p0.x.min(p1.x) - r,
            p0.x.max(p1.x) + r,
            p0.y.min(p1.y) - r,
            p0.y.max(p1.y) + r,
        ])
    }
}

/// `a` scaled to unit length (a zero vector stays finite: its length counts as at least 1e-12).
/// Not glam's `normalize`, which divides differently and asserts on zero.
pub(super) fn normalize(a: DVec3) -> DVec3 {
    a * (1.0 / a.dot(a).sqrt().max(1e-12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_distance_and_bounds() {
        let s = Segment {
            a: DVec3::new(0.0, 0.0, 0.0),
            b: DVec3::new(10.0, 0.0, 10.0),
            radius: 1.0,
        };
        assert!(s.distance2(DVec3::new(5.0, 0.0, 5.0)) < 1e-12);
        assert!((s.distance2(DVec3::new(-3.0, 4.0, 0.0)) - 25.0).abs() < 1e-9);
        let [x0, x1, ..] = s.bounds_at(5.0).unwrap();
        assert!((x0 - 3.0).abs() < 1e-9 && (x1 - 7.0).abs() < 1e-9);
        assert!(s.bounds_at(11.5).is_none());
    }

    #[test]
    fn vector_operations_keep_the_scalar_arithmetic() {
        // The phantoms were first drawn with hand-written `[f64; 3]` helpers; glam's operations
        // must round exactly as they did.
        let (a, b) = ([0.1, -2.7, 1e-3], [3.3, 0.25, -7.9]);
        let (va, vb) = (DVec3::from_array(a), DVec3::from_array(b));
        let dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        assert_eq!(va.dot(vb).to_bits(), dot.to_bits());
        assert_eq!(
            (va - vb).to_array(),
            [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
        );
        assert_eq!(
            (va + vb).to_array(),
            [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
        );
        assert_eq!((va * 0.3).to_array(), [a[0] * 0.3, a[1] * 0.3, a[2] * 0.3]);
        let inv = 1.0 / (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt().max(1e-12);
        assert_eq!(
            normalize(va).to_array(),
            [a[0] * inv, a[1] * inv, a[2] * inv]
        );
    }
}
