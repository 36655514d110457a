//! Antialiased bilinear (triangle filter) resampling, separable, in `f32`.
//!
//! When shrinking, the filter widens with the scale factor, so every source pixel
//! contributes: plain two-tap bilinear would alias the fine textures cameras see.

use image::RgbImage;

/// `v.round().clamp(0.0, 255.0) as u8`, bit for bit (NaN gives 0), without the call to
/// the maths library's `roundf` that `round` costs on x86-64 without SSE4.1: clamped, `v`
/// is non-negative and below 2^23, so it rounds half away from zero as its integer part
/// plus one when the (exact) remainder is at least a half.
#[inline]
pub(crate) fn to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u8;
    whole + u8::from(v - f32::from(whole) >= 0.5)
}

/// Per output coordinate: first source index and the normalised weights from there.
fn weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f32 / dst as f32;
    let support = scale.max(1.0);
    (0..dst)
        .map(|i| {
            let centre = (i as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(src);
            let mut w: Vec<f32> = (lo..hi)
                .map(|j| {
                    let d = ((j as f32 + 0.5 - centre) / support).abs();
                    (1.0 - d).max(0.0)
                })
                .collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            }
            (lo, w)
        })
        .collect()
}

/// Resizes an RGB image to `w × h`.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (dw, dh) = (w as usize, h as usize);
    let raw = img.as_raw();
    let wx = weights(sw, dw);
    let wy = weights(sh, dh);
    // horizontal pass: sh rows × dw columns
    let mut tmp = vec![0.0f32; sh * dw * 3];
    for y in 0..sh {
        let row = &raw[y * sw * 3..(y + 1) * sw * 3];
        for (x, (lo, ws)) in wx.iter().enumerate() {
            let mut acc = [0.0f32; 3];
            for (k, &wt) in ws.iter().enumerate() {
                let s = (lo + k) * 3;
                for c in 0..3 {
                    acc[c] += wt * row[s + c] as f32;
                }
            }
            tmp[(y * dw + x) * 3..(y * dw + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    // vertical pass
    let mut out = vec![0u8; dw * dh * 3];
    for (y, (lo, ws)) in wy.iter().enumerate() {
        for x in 0..dw {
            let mut acc = [0.0f32; 3];
            for (k, &wt) in ws.iter().enumerate() {
                let s = ((lo + k) * dw + x) * 3;
                for c in 0..3 {
                    acc[c] += wt * tmp[s + c];
                }
            }
            for c in 0..3 {
                out[(y * dw + x) * 3 + c] = to_u8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer has w*h*3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_u8_rounds_and_clamps_like_round_then_clamp() {
        let mut values = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e9, -1e9];
        for i in -2000..=270_000 {
            let v = i as f32 / 1000.0;
            values.extend([v, v.next_up(), v.next_down()]);
        }
        for k in 0..=256 {
            let half = k as f32 + 0.5;
            values.extend([half, half.next_up(), half.next_down(), -half]);
        }
        for v in values {
            assert_eq!(to_u8(v), v.round().clamp(0.0, 255.0) as u8, "{v}");
        }
    }

    #[test]
    fn flat_images_stay_flat_and_halving_averages() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([10, 200, 90]));
        let out = resize_rgb(&img, 16, 12);
        assert!(out.pixels().all(|p| p.0 == [10, 200, 90]));
        // alternating columns 0/200 average to about 100 when halved
        let stripes = RgbImage::from_fn(8, 2, |x, _| {
            image::Rgb([if x % 2 == 0 { 0 } else { 200 }; 3])
        });
        let half = resize_rgb(&stripes, 4, 1);
        for p in half.pixels() {
            assert!((p.0[0] as i32 - 100).abs() <= 30, "{:?}", p.0);
        }
    }
}
