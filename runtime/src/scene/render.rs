//! Drawing a scene graph as a camera would see it: textured background, anti-aliased
//! shapes, then brightness changes, blur, sensor noise and JPEG artefacts.

use image::{ImageFormat, RgbImage};

use super::graph::{Object, Scene, Shape};
use super::rng::Rng;

/// Outline of a shape in its own unit frame (radius 1, y pointing down), as a polygon;
/// `None` for the circle and the cross, which are tested directly.
fn polygon(shape: Shape) -> Option<Vec<(f32, f32)>> {
    match shape {
        Shape::Triangle => Some(vec![(0.0, -0.95), (0.95, 0.7), (-0.95, 0.7)]),
        Shape::Diamond => Some(vec![(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)]),
        Shape::Star => Some(
            (0..10)
                .map(|i| {
                    let a = std::f32::consts::PI * (i as f32 / 5.0 - 0.5);
                    let r = if i % 2 == 0 { 1.05 } else { 0.45 };
                    (r * a.cos(), r * a.sin())
                })
                .collect(),
        ),
        Shape::Circle | Shape::Square | Shape::Cross => None,
    }
}

fn in_polygon(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

struct Painter {
    obj: Object,
    poly: Option<Vec<(f32, f32)>>,
    cos: f32,
    sin: f32,
}

impl Painter {
    fn new(obj: Object) -> Self {
        let a = obj.tilt * std::f32::consts::TAU;
        Self {
            obj,
            poly: polygon(obj.shape),
            cos: a.cos(),
            sin: a.sin(),
        }
    }

    fn covers(&self, px: f32, py: f32) -> bool {
        let dx = (px - self.obj.x) / self.obj.radius;
        let dy = (py - self.obj.y) / self.obj.radius;
        let u = dx * self.cos + dy * self.sin;
        let v = -dx * self.sin + dy * self.cos;
        match self.obj.shape {
            Shape::Circle => u * u + v * v <= 1.0,
            Shape::Square => u.abs() <= 0.8 && v.abs() <= 0.8,
            Shape::Cross => {
                (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95)
            }
            _ => self.poly.as_deref().is_some_and(|p| in_polygon(p, u, v)),
        }
    }
}

fn background(rng: &mut Rng, w: u32, h: u32) -> Vec<[f32; 3]> {
    let base = rng.range_f32(70.0, 180.0);
    let tint = [
        rng.range_f32(-15.0, 15.0),
        rng.range_f32(-15.0, 15.0),
        rng.range_f32(-15.0, 15.0),
    ];
    let kind = rng.below(5);
    let contrast = rng.range_f32(8.0, 30.0);
    let period = rng.range_f32(12.0, 40.0);
    let vertical = rng.chance(0.5);
    // coarse grid for blotchy value noise
    let grid: Vec<f32> = (0..8 * 8).map(|_| rng.range_f32(-1.0, 1.0)).collect();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let t = match kind {
                0 => 0.0,
                1 => {
                    let s = if vertical {
                        fy / h as f32
                    } else {
                        fx / w as f32
                    };
                    (s - 0.5) * 2.0
                }
                2 => {
                    let s = if vertical { fx } else { fy };
                    if (s / period).floor() as i64 % 2 == 0 {
                        0.5
                    } else {
                        -0.5
                    }
                }
                3 => {
                    let a = (fx / period).floor() as i64 + (fy / period).floor() as i64;
                    if a % 2 == 0 { 0.4 } else { -0.4 }
                }
                _ => {
                    let gx = fx / w as f32 * 7.0;
                    let gy = fy / h as f32 * 7.0;
                    let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
                    let (tx, ty) = (gx - ix as f32, gy - iy as f32);
                    let g = |i: usize, j: usize| grid[j.min(7) * 8 + i.min(7)];
                    let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
                    let bottom = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
                    top * (1.0 - ty) + bottom * ty
                }
            };
            let v = base + contrast * t;
            out.push([v + tint[0], v + tint[1], v + tint[2]]);
        }
    }
    out
}

/// Renders `scene` with the camera perturbations drawn from `rng`.
pub fn render(scene: &Scene, rng: &mut Rng) -> RgbImage {
    let (w, h) = (scene.width, scene.height);
    let mut px = background(rng, w, h);
    const SUB: [(f32, f32); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    for obj in &scene.objects {
        let painter = Painter::new(*obj);
        let shade = rng.range_f32(0.9, 1.1);
        let rgb = obj.color.rgb().map(|c| (c as f32 * shade).min(255.0));
        let r = obj.radius * 1.1 + 1.0;
        let x0 = (obj.x - r).floor().max(0.0) as u32;
        let x1 = ((obj.x + r).ceil() as u32).min(w);
        let y0 = (obj.y - r).floor().max(0.0) as u32;
        let y1 = ((obj.y + r).ceil() as u32).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                let hits = SUB
                    .iter()
                    .filter(|(sx, sy)| painter.covers(x as f32 + sx, y as f32 + sy))
                    .count();
                if hits > 0 {
                    let a = hits as f32 / SUB.len() as f32;
                    let p = &mut px[(y * w + x) as usize];
                    for c in 0..3 {
                        p[c] = p[c] * (1.0 - a) + rgb[c] * a;
                    }
                }
            }
        }
    }
    let brightness = rng.range_f32(0.85, 1.15);
    let noise = rng.range_f32(0.0, 8.0);
    if rng.chance(0.3) {
        px = box_blur(&px, w, h);
    }
    let mut img = RgbImage::new(w, h);
    for (p, src) in img.pixels_mut().zip(&px) {
        for (out, &v) in p.0.iter_mut().zip(src) {
            let v = v * brightness + noise * rng.normal();
            *out = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    if rng.chance(0.5) {
        let quality = 35 + rng.below(56) as u8;
        if let Some(j) = jpeg_roundtrip(&img, quality) {
            img = j;
        }
    }
    img
}

fn box_blur(px: &[[f32; 3]], w: u32, h: u32) -> Vec<[f32; 3]> {
    let (w, h) = (w as i64, h as i64);
    let mut out = vec![[0.0; 3]; px.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            let mut n = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx >= 0 && yy >= 0 && xx < w && yy < h {
                        let p = px[(yy * w + xx) as usize];
                        for c in 0..3 {
                            acc[c] += p[c];
                        }
                        n += 1.0;
                    }
                }
            }
            out[(y * w + x) as usize] = acc.map(|a| a / n);
        }
    }
    out
}

fn jpeg_roundtrip(img: &RgbImage, quality: u8) -> Option<RgbImage> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .ok()?;
    Some(
        image::load_from_memory_with_format(&buf, ImageFormat::Jpeg)
            .ok()?
            .to_rgb8(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::graph::{Color, Size};

    #[test]
    fn shapes_are_drawn_in_their_colour_where_the_graph_puts_them() {
        let obj = Object {
            shape: Shape::Square,
            color: Color::Blue,
            size: Size::Large,
            x: 100.0,
            y: 80.0,
            radius: 30.0,
            tilt: 0.0,
        };
        let scene = Scene {
            width: 320,
            height: 240,
            objects: vec![obj],
        };
        let img = render(&scene, &mut Rng::new(4));
        let centre = img.get_pixel(100, 80).0;
        assert!(
            centre[2] > 150 && centre[0] < 110,
            "centre pixel {centre:?} is not blue"
        );
        let far = img.get_pixel(250, 200).0;
        let spread = far.iter().max().unwrap() - far.iter().min().unwrap();
        assert!(spread < 90, "background pixel {far:?} is too saturated");
    }

    #[test]
    fn star_and_circle_cover_differently() {
        let base = Object {
            shape: Shape::Star,
            color: Color::Red,
            size: Size::Large,
            x: 0.0,
            y: 0.0,
            radius: 10.0,
            tilt: 0.0,
        };
        let star = Painter::new(base);
        let circle = Painter::new(Object {
            shape: Shape::Circle,
            ..base
        });
        // between two star points at 80% radius: inside the circle, outside the star
        let a = std::f32::consts::PI * (1.0 / 5.0 - 0.5);
        let (x, y) = (8.0 * a.cos(), 8.0 * a.sin());
        assert!(circle.covers(x, y));
        assert!(!star.covers(x, y));
        assert!(star.covers(0.0, -9.5));
    }
}
