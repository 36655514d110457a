//! Augmentation of a user's frames (`train --augment`): what a camera varies and a caption
//! does not care about. Each draw is seeded, so a run's batches are the same every time.
//!
//! - a small crop or shift, resized back: at most [`MAX_CROP`] of each side goes, so an
//!   object further than that from the border stays whole;
//! - a horizontal flip, half the time, only when no text of the image speaks of left or
//!   right;
//! - exposure (×0.7 to ×1.4), white balance (each channel ×0.9 to ×1.1) and saturation;
//! - sometimes a blur, sensor noise, or JPEG compression at a low quality.

use std::io::Cursor;

use anyhow::Result;
use image::RgbImage;

use glimpse_runtime::scene::Rng;

/// Largest share of a side a crop removes.
pub const MAX_CROP: f32 = 0.05;

/// One change made to a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Pixels removed from the left, top, right and bottom, then resized back.
    Crop([u32; 4]),
    Flip,
    /// Brightness factor.
    Exposure(f32),
    /// Red, green and blue gains.
    WhiteBalance([f32; 3]),
    /// 0: grey, 1: unchanged.
    Saturation(f32),
    /// Gaussian blur sigma, in pixels.
    Blur(f32),
    /// Standard deviation of the added noise, in 8-bit levels.
    Noise(f32),
    /// JPEG quality.
    Jpeg(u8),
}

/// Whether a text speaks of left or right (then a flip would make it false).
pub fn speaks_of_sides(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("left") || w.eq_ignore_ascii_case("right"))
}

/// The changes drawn for one frame of `width`×`height` from `seed`; `flip` says whether
/// the frame's texts allow a flip.
pub fn draw(seed: u64, width: u32, height: u32, flip: bool) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    if rng.chance(0.7) {
        let side = |rng: &mut Rng, n: u32| (rng.unit() * MAX_CROP * n as f32).floor() as u32;
        let crop = [
            side(&mut rng, width),
            side(&mut rng, height),
            side(&mut rng, width),
            side(&mut rng, height),
        ];
        if crop.iter().any(|&c| c > 0) {
            steps.push(Step::Crop(crop));
        }
    }
    if flip && rng.chance(0.5) {
        steps.push(Step::Flip);
    }
    steps.push(Step::Exposure(2f32.powf(rng.range_f32(-0.5, 0.5))));
    steps.push(Step::WhiteBalance([
        rng.range_f32(0.9, 1.1),
        rng.range_f32(0.9, 1.1),
        rng.range_f32(0.9, 1.1),
    ]));
    steps.push(Step::Saturation(rng.range_f32(0.7, 1.3)));
    if rng.chance(0.2) {
        steps.push(Step::Blur(rng.range_f32(0.3, 1.2)));
    }
    if rng.chance(0.3) {
        steps.push(Step::Noise(rng.range_f32(2.0, 8.0)));
    }
    if rng.chance(0.3) {
        steps.push(Step::Jpeg(rng.range_f32(30.0, 90.0) as u8));
    }
    steps
}

/// `image` with `steps` applied, in order; the size stays.
pub fn apply(image: &RgbImage, steps: &[Step], seed: u64) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    // the noise has its own stream, so adding a step before it does not change it
    let mut noise = Rng::new(seed ^ 0x6e6f_6973_6521);
    for step in steps {
        out = match *step {
            Step::Crop([l, t, r, b]) => {
                let (cw, ch) = (
                    w.saturating_sub(l + r).max(1),
                    h.saturating_sub(t + b).max(1),
                );
                let part =
                    image::imageops::crop_imm(&out, l.min(w - 1), t.min(h - 1), cw, ch).to_image();
                image::imageops::resize(&part, w, h, image::imageops::FilterType::Triangle)
            }
            Step::Flip => image::imageops::flip_horizontal(&out),
            Step::Exposure(f) => map(&out, |p| p.map(|v| v * f)),
            Step::WhiteBalance(g) => map(&out, |p| [p[0] * g[0], p[1] * g[1], p[2] * g[2]]),
            Step::Saturation(s) => map(&out, |p| {
                let grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                p.map(|v| grey + (v - grey) * s)
            }),
            Step::Blur(sigma) => image::imageops::blur(&out, sigma),
            Step::Noise(sd) => map(&out, |p| p.map(|v| v + noise.normal() * sd)),
            Step::Jpeg(quality) => {
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(&out)?;
                image::load(Cursor::new(bytes), image::ImageFormat::Jpeg)?.to_rgb8()
            }
        };
    }
    Ok(out)
}

/// Each pixel through `f` (on 0–255 floats), rounded and clamped back.
fn map(image: &RgbImage, mut f: impl FnMut([f32; 3]) -> [f32; 3]) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        let v = f(p.0.map(f32::from));
        p.0 = v.map(|x| x.round().clamp(0.0, 255.0) as u8);
    }
    out
}

/// `image` augmented from `seed`, its texts deciding whether it may be flipped.
pub fn augment<'t>(
    image: &RgbImage,
    texts: impl IntoIterator<Item = &'t str>,
    seed: u64,
) -> Result<RgbImage> {
    let flip = !texts.into_iter().any(speaks_of_sides);
    let steps = draw(seed, image.width(), image.height(), flip);
    apply(image, &steps, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with a bright square on the left.
    fn frame() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            if (8..24).contains(&x) && (16..32).contains(&y) {
                image::Rgb([220, 60, 40])
            } else {
                image::Rgb([90, 110, 130])
            }
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_frame_and_others_differ() {
        let f = frame();
        let a = augment(&f, ["a red square"], 11).unwrap();
        assert_eq!(a, augment(&f, ["a red square"], 11).unwrap());
        assert_eq!(a.dimensions(), f.dimensions());
        let distinct: std::collections::HashSet<Vec<u8>> = (0..20)
            .map(|s| augment(&f, ["a red square"], s).unwrap().into_raw())
            .collect();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn frames_whose_texts_speak_of_sides_are_never_flipped() {
        assert!(speaks_of_sides("is the cup left or right of the plate?"));
        assert!(speaks_of_sides("Right."));
        assert!(!speaks_of_sides("a bright frightening light"));
        let flips = |flip| {
            (0..200)
                .filter(|&s| draw(s, 64, 48, flip).contains(&Step::Flip))
                .count()
        };
        assert_eq!(flips(false), 0);
        let n = flips(true);
        assert!((70..130).contains(&n), "{n} flips of 200");
        // and a drawn flip mirrors the frame: the square moves to the right
        let f = apply(&frame(), &[Step::Flip], 0).unwrap();
        assert_eq!(f.get_pixel(63 - 10, 20).0, [220, 60, 40]);
        assert_eq!(f.get_pixel(10, 20).0, [90, 110, 130]);
        for s in 0..50 {
            let a = augment(&frame(), ["the square is on the left"], s).unwrap();
            // the square's side stays the brighter-red one
            let red = |x0: u32, x1: u32| -> u32 {
                (x0..x1)
                    .flat_map(|x| (16..32).map(move |y| (x, y)))
                    .map(|(x, y)| a.get_pixel(x, y).0[0] as u32)
                    .sum()
            };
            assert!(red(8, 24) > red(40, 56), "seed {s} moved the square");
        }
    }

    #[test]
    fn crops_stay_small_and_light_changes_stay_in_their_ranges() {
        for s in 0..300 {
            for step in draw(s, 200, 100, true) {
                match step {
                    Step::Crop([l, t, r, b]) => {
                        assert!(l <= 10 && r <= 10 && t <= 5 && b <= 5, "{step:?}");
                    }
                    Step::Exposure(f) => assert!((0.70..=1.42).contains(&f), "{f}"),
                    Step::WhiteBalance(g) => assert!(g.iter().all(|x| (0.9..=1.1).contains(x))),
                    Step::Jpeg(q) => assert!((30..=90).contains(&q)),
                    _ => {}
                }
            }
        }
        // exposure scales the light: a frame at half exposure is about half as bright
        let f = frame();
        let mean =
            |i: &RgbImage| i.as_raw().iter().map(|&v| v as f64).sum::<f64>() / i.len() as f64;
        let dark = apply(&f, &[Step::Exposure(0.5)], 0).unwrap();
        assert!((mean(&dark) / mean(&f) - 0.5).abs() < 0.01);
        // a JPEG round trip changes the pixels a little, not the picture
        let j = apply(&f, &[Step::Jpeg(40)], 0).unwrap();
        assert_ne!(j, f);
        assert!((mean(&j) - mean(&f)).abs() < 3.0);
    }
}
