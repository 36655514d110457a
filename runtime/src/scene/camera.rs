//! What a camera adds to a scene that its words do not care about: the background, clutter
//! that is no object of the vocabulary, light, lens and sensor. [`Conditions`] holds the
//! ranges these are drawn from; the training ranges and the wider ones of the `shifted`
//! split are two values of it.

use super::rng::Rng;

/// The backgrounds a frame can have. The last two never appear in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Plain,
    Gradient,
    Stripes,
    Checker,
    Blotches,
    Rings,
    Weave,
}

/// The ranges a frame's nuisances are drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    pub backgrounds: &'static [Background],
    /// Mean level of the background, 0–255.
    pub brightness: (f32, f32),
    /// Largest saturation of the background's hue (0 grey, 1 pure).
    pub saturation: f32,
    /// Largest number of clutter blobs and lines.
    pub clutter: usize,
    /// Chance that one object is partly hidden behind a bar.
    pub occlusion: f32,
    /// Exposure in stops.
    pub exposure: (f32, f32),
    /// Largest change of one channel's gain (white balance, colour cast).
    pub cast: f32,
    /// Largest darkening of the corners.
    pub vignette: f32,
    /// Largest blur sigma, in pixels.
    pub blur: f32,
    /// Largest standard deviation of sensor noise, in 8-bit levels.
    pub noise: f32,
    /// Lowest JPEG quality (drawn half of the time, up to 90).
    pub jpeg: u8,
    /// Largest rotation of the frame, in degrees.
    pub rotation: f32,
    /// Largest move of a corner by perspective, as a share of the frame's side.
    pub perspective: f32,
    /// Frame sizes, the first one most often.
    pub frames: &'static [(u32, u32)],
    /// Radius of small and of large objects, as a share of the frame's shorter side.
    pub small: (f32, f32),
    pub large: (f32, f32),
    /// Share of scenes without any object.
    pub empty: f32,
    /// Fewest objects of a scene that is not empty (up to [`super::MAX_OBJECTS`]).
    pub fewest: usize,
}

impl Conditions {
    /// What training, validation and the test, compositional and paraphrase splits see.
    pub const TRAINING: Conditions = Conditions {
        backgrounds: &[
            Background::Plain,
            Background::Gradient,
            Background::Stripes,
            Background::Checker,
            Background::Blotches,
        ],
        brightness: (25.0, 230.0),
        saturation: 0.35,
        clutter: 4,
        occlusion: 0.15,
        exposure: (-0.8, 0.35),
        cast: 0.12,
        vignette: 0.35,
        blur: 1.2,
        noise: 10.0,
        jpeg: 30,
        rotation: 3.0,
        perspective: 0.03,
        frames: &[(320, 240), (320, 180), (272, 272), (312, 208)],
        small: (0.075, 0.115),
        large: (0.145, 0.19),
        empty: 0.08,
        fewest: 1,
    };

    /// The `shifted` split: every range wider than training's, and backgrounds, frame
    /// shapes and light never used in training.
    pub const SHIFTED: Conditions = Conditions {
        backgrounds: &[
            Background::Plain,
            Background::Gradient,
            Background::Blotches,
            Background::Rings,
            Background::Weave,
        ],
        brightness: (10.0, 245.0),
        saturation: 0.5,
        clutter: 7,
        occlusion: 0.25,
        exposure: (-1.1, 0.5),
        cast: 0.18,
        vignette: 0.5,
        blur: 1.8,
        noise: 16.0,
        jpeg: 15,
        rotation: 5.0,
        perspective: 0.05,
        frames: &[(320, 240), (240, 320), (352, 176), (256, 256)],
        small: (0.07, 0.12),
        large: (0.14, 0.2),
        empty: 0.08,
        fewest: 1,
    };

    /// These conditions with only scenes of `fewest` objects or more, besides the empty
    /// ones: the crowded scenes a training curriculum can add (`train --crowded`).
    pub const fn crowded(self, fewest: usize) -> Conditions {
        Conditions { fewest, ..self }
    }

    /// These conditions with every nuisance range moved the share `t` (0 to 1) of the
    /// way to `other`'s, keeping this one's backgrounds, frame shapes, empty share and
    /// object counts: a training curriculum of harsher light, lens and clutter than
    /// [`Conditions::TRAINING`] that still stops short of [`Conditions::SHIFTED`]
    /// (`train --harsh`).
    pub fn toward(self, other: &Conditions, t: f32) -> Conditions {
        let t = t.clamp(0.0, 1.0);
        let mix = |a: f32, b: f32| a + (b - a) * t;
        let range = |a: (f32, f32), b: (f32, f32)| (mix(a.0, b.0), mix(a.1, b.1));
        Conditions {
            brightness: range(self.brightness, other.brightness),
            saturation: mix(self.saturation, other.saturation),
            clutter: mix(self.clutter as f32, other.clutter as f32).round() as usize,
            occlusion: mix(self.occlusion, other.occlusion),
            exposure: range(self.exposure, other.exposure),
            cast: mix(self.cast, other.cast),
            vignette: mix(self.vignette, other.vignette),
            blur: mix(self.blur, other.blur),
            noise: mix(self.noise, other.noise),
            jpeg: mix(self.jpeg as f32, other.jpeg as f32).round() as u8,
            rotation: mix(self.rotation, other.rotation),
            perspective: mix(self.perspective, other.perspective),
            small: range(self.small, other.small),
            large: range(self.large, other.large),
            ..self
        }
    }

    /// These conditions with the small and large radii meeting halfway between them, small
    /// objects drawn up to that line and large ones from it, so that no radius between
    /// the two ranges is left unseen and the line where "small" turns into "large" is
    /// taught rather than guessed (`train --sizes-meet`).
    pub fn sizes_meeting(self) -> Conditions {
        let line = (self.small.1 + self.large.0) / 2.0;
        Conditions {
            small: (self.small.0, line),
            large: (line, self.large.1),
            ..self
        }
    }

    /// A frame size: the first one half of the time, else any.
    pub fn frame(&self, rng: &mut Rng) -> (u32, u32) {
        if rng.chance(0.5) {
            self.frames[0]
        } else {
            *rng.pick(self.frames)
        }
    }
}

/// A colour of the given hue (turns), saturation and value (0–255).
pub fn hsv(hue: f32, saturation: f32, value: f32) -> [f32; 3] {
    let h = hue.rem_euclid(1.0) * 6.0;
    let f = h - h.floor();
    let (p, q, t) = (
        value * (1.0 - saturation),
        value * (1.0 - saturation * f),
        value * (1.0 - saturation * (1.0 - f)),
    );
    match h as u32 {
        0 => [value, t, p],
        1 => [q, value, p],
        2 => [p, value, t],
        3 => [p, q, value],
        4 => [t, p, value],
        _ => [value, p, q],
    }
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The background's base colour: any hue and brightness of `c`, far enough from every
/// colour in `keep_clear` that objects of those colours stay visible on it.
pub fn background_colour(c: &Conditions, rng: &mut Rng, keep_clear: &[[u8; 3]]) -> [f32; 3] {
    let mut colour = [128.0; 3];
    for attempt in 0..12 {
        let value = rng.range_f32(c.brightness.0, c.brightness.1);
        // past a few tries, grey: some grey is always far from a saturated colour
        let saturation = if attempt < 8 {
            rng.range_f32(0.0, c.saturation)
        } else {
            0.0
        };
        colour = hsv(rng.unit(), saturation, value);
        let clear = keep_clear
            .iter()
            .all(|k| distance(colour, k.map(f32::from)) > 90.0);
        if clear {
            break;
        }
    }
    colour
}

/// The background of a `w`×`h` frame: `base` varied by the pattern of `kind`.
pub fn background(
    kind: Background,
    base: [f32; 3],
    rng: &mut Rng,
    w: u32,
    h: u32,
) -> Vec<[f32; 3]> {
    let contrast = rng.range_f32(8.0, 30.0);
    let period = rng.range_f32(12.0, 40.0);
    let vertical = rng.chance(0.5);
    let angle = rng.range_f32(0.0, std::f32::consts::PI);
    let (ca, sa) = (angle.cos(), angle.sin());
    let (cx, cy) = (rng.range_f32(0.0, w as f32), rng.range_f32(0.0, h as f32));
    // coarse grid for blotchy value noise
    let grid: Vec<f32> = (0..8 * 8).map(|_| rng.range_f32(-1.0, 1.0)).collect();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let t = match kind {
                Background::Plain => 0.0,
                Background::Gradient => {
                    let s = if vertical {
                        fy / h as f32
                    } else {
                        fx / w as f32
                    };
                    (s - 0.5) * 2.0
                }
                Background::Stripes => {
                    let s = if vertical { fx } else { fy };
                    if floor(s / period) % 2 == 0 {
                        0.5
                    } else {
                        -0.5
                    }
                }
                Background::Checker => {
                    let a = floor(fx / period) + floor(fy / period);
                    if a % 2 == 0 { 0.4 } else { -0.4 }
                }
                Background::Blotches => {
                    let gx = fx / w as f32 * 7.0;
                    let gy = fy / h as f32 * 7.0;
                    let (ix, iy) = (floor(gx).max(0) as usize, floor(gy).max(0) as usize);
                    let (tx, ty) = (gx - ix as f32, gy - iy as f32);
                    let g = |i: usize, j: usize| grid[j.min(7) * 8 + i.min(7)];
                    let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
                    let bottom = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
                    top * (1.0 - ty) + bottom * ty
                }
                Background::Rings => {
                    let r = (fx - cx).hypot(fy - cy);
                    0.5 * (r / period * std::f32::consts::TAU).sin()
                }
                Background::Weave => {
                    let u = fx * ca + fy * sa;
                    let v = -fx * sa + fy * ca;
                    let p = period * 0.5;
                    0.3 * ((u / p).sin() + (v / p).sin())
                }
            };
            let v = contrast * t;
            out.push([base[0] + v, base[1] + v, base[2] + v]);
        }
    }
    out
}

/// A muted colour no word of the vocabulary names.
fn muted(rng: &mut Rng) -> [f32; 3] {
    hsv(
        rng.unit(),
        rng.range_f32(0.0, 0.22),
        rng.range_f32(40.0, 220.0),
    )
}

/// Blobs with wobbly outlines and thin lines, in muted colours, drawn on `px`: things a
/// camera sees that are not objects of the vocabulary.
pub fn clutter(px: &mut [[f32; 3]], w: u32, h: u32, count: usize, rng: &mut Rng) {
    let unit = w.min(h) as f32;
    for _ in 0..count {
        let colour = muted(rng);
        if rng.chance(0.5) {
            let (cx, cy) = (rng.range_f32(0.0, w as f32), rng.range_f32(0.0, h as f32));
            let r = unit * rng.range_f32(0.04, 0.12);
            // the outline's radius wobbles by a third or more: never a circle
            let waves: Vec<(f32, f32, f32)> = (0..3)
                .map(|k| {
                    (
                        (2 + k * 2 + rng.below(2)) as f32,
                        rng.range_f32(0.15, 0.3),
                        rng.range_f32(0.0, std::f32::consts::TAU),
                    )
                })
                .collect();
            fill(px, w, h, (cx, cy), r * 1.8, colour, |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                let a = dy.atan2(dx);
                let edge: f32 = 1.0
                    + waves
                        .iter()
                        .map(|(f, amp, ph)| amp * (f * a + ph).sin())
                        .sum::<f32>();
                dx.hypot(dy) <= r * edge
            });
        } else {
            let (x0, y0) = (rng.range_f32(0.0, w as f32), rng.range_f32(0.0, h as f32));
            let len = unit * rng.range_f32(0.2, 0.6);
            let a = rng.range_f32(0.0, std::f32::consts::PI);
            let (dx, dy) = (a.cos(), a.sin());
            let half = rng.range_f32(0.5, 1.5);
            let centre = (x0 + dx * len / 2.0, y0 + dy * len / 2.0);
            fill(px, w, h, centre, len / 2.0 + 2.0, colour, |x, y| {
                let (u, v) = (x - centre.0, y - centre.1);
                let along = u * dx + v * dy;
                let across = -u * dy + v * dx;
                along.abs() <= len / 2.0 && across.abs() <= half
            });
        }
    }
}

/// A bar in a muted colour across part of a disc at `(x, y)` of radius `r`, hiding up
/// to about a quarter of it from one side.
pub fn occlude(px: &mut [[f32; 3]], w: u32, h: u32, (x, y, r): (f32, f32, f32), rng: &mut Rng) {
    let colour = muted(rng);
    let a = rng.range_f32(0.0, std::f32::consts::TAU);
    let (nx, ny) = (a.cos(), a.sin());
    // the bar's inner edge lies this far from the centre, towards the normal
    let edge = r * rng.range_f32(0.45, 0.7);
    let depth = r * 0.8;
    let centre = (x + nx * (edge + depth / 2.0), y + ny * (edge + depth / 2.0));
    fill(px, w, h, centre, r * 1.6, colour, |x, y| {
        let (u, v) = (x - centre.0, y - centre.1);
        let along = u * nx + v * ny;
        let across = -u * ny + v * nx;
        along.abs() <= depth / 2.0 && across.abs() <= r * 1.2
    });
}

/// Paints `colour` where `inside(x, y)` (a point of the frame) within `reach` of
/// `centre`, with 2×2 supersampling at the edges.
pub(super) fn fill(
    px: &mut [[f32; 3]],
    w: u32,
    h: u32,
    centre: (f32, f32),
    reach: f32,
    colour: [f32; 3],
    inside: impl Fn(f32, f32) -> bool,
) {
    const SUB: [(f32, f32); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let x0 = (centre.0 - reach).floor().max(0.0) as u32;
    let x1 = ((centre.0 + reach).ceil().max(0.0) as u32).min(w);
    let y0 = (centre.1 - reach).floor().max(0.0) as u32;
    let y1 = ((centre.1 + reach).ceil().max(0.0) as u32).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let hits = SUB
                .iter()
                .filter(|(sx, sy)| inside(x as f32 + sx, y as f32 + sy))
                .count();
            if hits > 0 {
                let a = hits as f32 / SUB.len() as f32;
                let p = &mut px[(y * w + x) as usize];
                for c in 0..3 {
                    p[c] = p[c] * (1.0 - a) + colour[c] * a;
                }
            }
        }
    }
}

/// Light: exposure, per-channel gains and vignetting, applied in place.
pub fn light(px: &mut [[f32; 3]], w: u32, h: u32, c: &Conditions, rng: &mut Rng) {
    let exposure = 2f32.powf(rng.range_f32(c.exposure.0, c.exposure.1));
    let gains = [0; 3].map(|_| 1.0 + rng.range_f32(-c.cast, c.cast));
    let vignette = rng.range_f32(0.0, c.vignette);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let corner = cx.hypot(cy);
    for y in 0..h {
        for x in 0..w {
            let r = (x as f32 + 0.5 - cx).hypot(y as f32 + 0.5 - cy) / corner;
            let f = exposure * (1.0 - vignette * r * r);
            let p = &mut px[(y * w + x) as usize];
            for ch in 0..3 {
                p[ch] *= f * gains[ch];
            }
        }
    }
}

/// Gaussian blur of standard deviation `sigma`, separable, edges repeated.
pub fn blur(px: &[[f32; 3]], w: u32, h: u32, sigma: f32) -> Vec<[f32; 3]> {
    let radius = (sigma * 2.5).ceil() as i64;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (w as i64, h as i64);
    let pass = |src: &[[f32; 3]], horizontal: bool| {
        let mut out = vec![[0.0f32; 3]; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (k, weight) in kernel.iter().enumerate() {
                    let d = k as i64 - radius;
                    let (xx, yy) = if horizontal {
                        ((x + d).clamp(0, w - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h - 1))
                    };
                    let p = src[(yy * w + xx) as usize];
                    for c in 0..3 {
                        acc[c] += p[c] * weight;
                    }
                }
                out[(y * w + x) as usize] = acc;
            }
        }
        out
    };
    pass(&pass(px, true), false)
}

/// A projective map of the plane, as the 3×3 matrix's first eight entries (the ninth is 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography([f32; 8]);

impl Homography {
    pub const IDENTITY: Homography = Homography([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);

    /// The map taking each of `from` to the matching point of `to`, if the points are in
    /// general position.
    pub fn between(from: [(f32, f32); 4], to: [(f32, f32); 4]) -> Option<Homography> {
        // two equations per point pair, in the unknowns h0..h7
        let mut m = [[0f64; 9]; 8];
        for (i, (&(x, y), &(u, v))) in from.iter().zip(&to).enumerate() {
            let (x, y, u, v) = (x as f64, y as f64, u as f64, v as f64);
            m[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            m[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        for col in 0..8 {
            let pivot = (col..8).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
            if m[pivot][col].abs() < 1e-9 {
                return None;
            }
            m.swap(col, pivot);
            let pivot_row = m[col];
            for (row, r) in m.iter_mut().enumerate() {
                if row != col {
                    let f = r[col] / pivot_row[col];
                    for (x, p) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut h = [0f32; 8];
        for (i, x) in h.iter_mut().enumerate() {
            *x = (m[i][8] / m[i][i]) as f32;
        }
        Some(Homography(h))
    }

    /// How much the map enlarges lengths around `(x, y)`: the square root of its
    /// Jacobian's determinant there (1 for the identity, `k` for a zoom by `k`).
    pub fn scale_at(&self, (x, y): (f32, f32)) -> f32 {
        let h = self.0.map(f64::from);
        let d = h[6] * x as f64 + h[7] * y as f64 + 1.0;
        let det = h[0] * (h[4] - h[5] * h[7]) - h[1] * (h[3] - h[5] * h[6])
            + h[2] * (h[3] * h[7] - h[4] * h[6]);
        (det / (d * d * d)).abs().sqrt() as f32
    }

    pub fn apply(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let h = &self.0;
        let d = h[6] * x + h[7] * y + 1.0;
        (
            (h[0] * x + h[1] * y + h[2]) / d,
            (h[3] * x + h[4] * y + h[5]) / d,
        )
    }
}

/// A small rotation and perspective of a `w`×`h` frame: the map from the scene's plane to
/// the frame and back.
pub fn tilt(c: &Conditions, w: u32, h: u32, rng: &mut Rng) -> (Homography, Homography) {
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let a = rng.range_f32(-c.rotation, c.rotation).to_radians();
    let (ca, sa) = (a.cos(), a.sin());
    // rotating shows the frame's corners: zoom in just enough to keep them covered
    let zoom = (ca + sa.abs() * (w.max(h) as f32 / w.min(h) as f32)) / (1.0 - 2.0 * c.perspective);
    let corners = [
        (0.0, 0.0),
        (w as f32, 0.0),
        (w as f32, h as f32),
        (0.0, h as f32),
    ];
    let moved = corners.map(|(x, y)| {
        let (dx, dy) = ((x - cx) / zoom, (y - cy) / zoom);
        let jitter =
            |side: u32, rng: &mut Rng| rng.range_f32(-1.0, 1.0) * c.perspective * side as f32;
        (
            cx + dx * ca - dy * sa + jitter(w, rng),
            cy + dx * sa + dy * ca + jitter(h, rng),
        )
    });
    // a point of the frame at `corners[i]` shows the scene's point `moved[i]`
    match (
        Homography::between(corners, moved),
        Homography::between(moved, corners),
    ) {
        (Some(frame_to_scene), Some(scene_to_frame)) => (scene_to_frame, frame_to_scene),
        _ => (Homography::IDENTITY, Homography::IDENTITY),
    }
}

/// The frame seen through `frame_to_scene`: each pixel samples the scene bilinearly.
/// `v.floor() as i64`, bit for bit where `v` is finite and its floor fits an `i64` (NaN
/// gives 0 either way), without the call to the maths library's `floorf` that `floor`
/// costs on x86-64 without SSE4.1; it runs for every pixel of a warp and a background.
#[inline]
fn floor(v: f32) -> i64 {
    let t = v as i64;
    t - i64::from((t as f32) > v)
}

pub fn warp(px: &[[f32; 3]], w: u32, h: u32, frame_to_scene: &Homography) -> Vec<[f32; 3]> {
    if *frame_to_scene == Homography::IDENTITY {
        return px.to_vec();
    }
    let at = |x: i64, y: i64| {
        px[(y.clamp(0, h as i64 - 1) * w as i64 + x.clamp(0, w as i64 - 1)) as usize]
    };
    let mut out = Vec::with_capacity(px.len());
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = frame_to_scene.apply((x as f32 + 0.5, y as f32 + 0.5));
            let (fx, fy) = (sx - 0.5, sy - 0.5);
            let (x0, y0) = (floor(fx), floor(fy));
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let (a, b, c, d) = (
                at(x0, y0),
                at(x0 + 1, y0),
                at(x0, y0 + 1),
                at(x0 + 1, y0 + 1),
            );
            let mut p = [0.0; 3];
            for ch in 0..3 {
                let top = a[ch] * (1.0 - tx) + b[ch] * tx;
                let bottom = c[ch] * (1.0 - tx) + d[ch] * tx;
                p[ch] = top * (1.0 - ty) + bottom * ty;
            }
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_floor() {
        let mut values = vec![f32::NAN, 0.0, -0.0, 1e12, -1e12];
        for i in -700_000..=700_000 {
            let v = i as f32 / 1000.0;
            values.extend([v, v.next_up(), v.next_down()]);
        }
        for v in values {
            assert_eq!(floor(v), v.floor() as i64, "{v}");
        }
    }

    #[test]
    fn a_homography_maps_its_four_points_and_back() {
        let from = [(0.0, 0.0), (320.0, 0.0), (320.0, 240.0), (0.0, 240.0)];
        let to = [(5.0, -3.0), (318.0, 4.0), (322.0, 236.0), (-2.0, 241.0)];
        let h = Homography::between(from, to).unwrap();
        let back = Homography::between(to, from).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let (u, v) = h.apply(*f);
            assert!(
                (u - t.0).abs() < 1e-3 && (v - t.1).abs() < 1e-3,
                "{f:?} → {u},{v}"
            );
        }
        let (x, y) = back.apply(h.apply((100.0, 70.0)));
        assert!((x - 100.0).abs() < 1e-2 && (y - 70.0).abs() < 1e-2);
        let square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)];
        assert_eq!(
            Homography::between(square, square),
            Some(Homography::IDENTITY)
        );
    }

    #[test]
    fn scale_at_is_the_local_enlargement_of_lengths() {
        let square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        let zoomed = square.map(|(x, y)| (2.0 * x + 3.0, 2.0 * y - 1.0));
        let zoom = Homography::between(square, zoomed).unwrap();
        assert!((zoom.scale_at((4.0, 7.0)) - 2.0).abs() < 1e-4);
        assert!((Homography::IDENTITY.scale_at((5.0, 5.0)) - 1.0).abs() < 1e-6);
        // a tilt's scale against a small square's area measured through `apply`
        let c = Conditions::SHIFTED;
        let (scene_to_frame, _) = tilt(&c, 320, 240, &mut Rng::new(5));
        for p in [(40.0, 30.0), (160.0, 120.0), (300.0, 220.0)] {
            let e = 0.5;
            let a = scene_to_frame.apply(p);
            let b = scene_to_frame.apply((p.0 + e, p.1));
            let d = scene_to_frame.apply((p.0, p.1 + e));
            let area = ((b.0 - a.0) * (d.1 - a.1) - (b.1 - a.1) * (d.0 - a.0)).abs();
            let measured = area.sqrt() / e;
            let s = scene_to_frame.scale_at(p);
            assert!(
                (s - measured).abs() < 1e-2 * s,
                "{s} against {measured} at {p:?}"
            );
            assert!(s > 1.0, "a tilt zooms in to keep the corners covered: {s}");
        }
    }

    #[test]
    fn a_tilt_keeps_the_frame_covered_by_the_scene() {
        for i in 0..200 {
            let mut rng = Rng::for_item(3, i);
            let c = Conditions::SHIFTED;
            let (w, h) = c.frame(&mut rng);
            let (_, frame_to_scene) = tilt(&c, w, h, &mut rng);
            for corner in [
                (0.0, 0.0),
                (w as f32, 0.0),
                (w as f32, h as f32),
                (0.0, h as f32),
            ] {
                let (x, y) = frame_to_scene.apply(corner);
                assert!(
                    (-1.0..=w as f32 + 1.0).contains(&x) && (-1.0..=h as f32 + 1.0).contains(&y),
                    "{w}x{h}: corner {corner:?} shows {x},{y}"
                );
            }
        }
    }

    #[test]
    fn backgrounds_keep_clear_of_the_objects_colours() {
        let red = [220, 30, 30];
        for i in 0..300 {
            let mut rng = Rng::for_item(9, i);
            let b = background_colour(&Conditions::SHIFTED, &mut rng, &[red]);
            assert!(distance(b, red.map(f32::from)) > 90.0, "{b:?}");
        }
    }

    #[test]
    fn blur_keeps_a_flat_frame_and_spreads_an_edge() {
        let (w, h) = (20, 10);
        let flat = vec![[100.0; 3]; 200];
        assert!(
            blur(&flat, w, h, 1.5)
                .iter()
                .all(|p| (p[0] - 100.0).abs() < 1e-3)
        );
        let edge: Vec<[f32; 3]> = (0..200)
            .map(|i| if i % 20 < 10 { [0.0; 3] } else { [200.0; 3] })
            .collect();
        let b = blur(&edge, w, h, 1.5);
        assert!(b[9][0] > 40.0 && b[10][0] < 160.0, "{:?} {:?}", b[9], b[10]);
        assert!(b[0][0] < 1.0 && b[19][0] > 199.0);
    }

    #[test]
    fn conditions_toward_shifted_stop_between_training_and_shifted() {
        let (t, sh) = (Conditions::TRAINING, Conditions::SHIFTED);
        assert_eq!(t.toward(&sh, 0.0), t);
        let half = t.toward(&sh, 0.5);
        // the backgrounds, frames, empty share and counts stay training's
        assert_eq!(half.backgrounds, t.backgrounds);
        assert_eq!(half.frames, t.frames);
        assert_eq!((half.empty, half.fewest), (t.empty, t.fewest));
        // every nuisance is harsher than training's and milder than shifted's
        let inside = |x: f32, a: f32, b: f32| a.min(b) < x && x < a.max(b);
        for (x, a, b) in [
            (half.brightness.0, t.brightness.0, sh.brightness.0),
            (half.brightness.1, t.brightness.1, sh.brightness.1),
            (half.saturation, t.saturation, sh.saturation),
            (half.clutter as f32, t.clutter as f32, sh.clutter as f32),
            (half.occlusion, t.occlusion, sh.occlusion),
            (half.exposure.0, t.exposure.0, sh.exposure.0),
            (half.exposure.1, t.exposure.1, sh.exposure.1),
            (half.cast, t.cast, sh.cast),
            (half.vignette, t.vignette, sh.vignette),
            (half.blur, t.blur, sh.blur),
            (half.noise, t.noise, sh.noise),
            (half.jpeg as f32, t.jpeg as f32, sh.jpeg as f32),
            (half.rotation, t.rotation, sh.rotation),
            (half.perspective, t.perspective, sh.perspective),
            (half.small.0, t.small.0, sh.small.0),
            (half.small.1, t.small.1, sh.small.1),
            (half.large.0, t.large.0, sh.large.0),
            (half.large.1, t.large.1, sh.large.1),
        ] {
            assert!(inside(x, a, b), "{x} is not between {a} and {b}");
        }
        // all the way: shifted's ranges on training's backgrounds and frames
        let all = t.toward(&sh, 1.0);
        assert_eq!(
            (all.blur, all.jpeg, all.clutter),
            (sh.blur, sh.jpeg, sh.clutter)
        );
        assert_eq!(all.frames, t.frames);
    }
}
