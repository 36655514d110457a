//! Camera pixel formats to RGB: YUYV (BT.601, limited or full range) and MJPEG.
//!
//! Each conversion writes the RGB frame once, reading the camera buffer in place.

use image::RgbImage;

use super::SourceError;

/// How a camera codes luma and chroma values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YuvRange {
    /// Y in 16..=235, U and V in 16..=240: the V4L2 default for YUV formats.
    Limited,
    /// Y, U and V use 0..=255 (JPEG's convention).
    Full,
}

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// One pixel, BT.601, in 8.8 fixed point.
#[inline]
fn yuv_to_rgb(y: u8, u: u8, v: u8, range: YuvRange) -> [u8; 3] {
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    match range {
        YuvRange::Limited => {
            let c = 298 * (y as i32 - 16) + 128;
            [
                clamp((c + 409 * e) >> 8),
                clamp((c - 100 * d - 208 * e) >> 8),
                clamp((c + 516 * d) >> 8),
            ]
        }
        YuvRange::Full => {
            let c = 256 * y as i32 + 128;
            [
                clamp((c + 359 * e) >> 8),
                clamp((c - 88 * d - 183 * e) >> 8),
                clamp((c + 454 * d) >> 8),
            ]
        }
    }
}

/// Converts a packed YUYV frame (`Y0 U Y1 V` per pixel pair) into `out`, which is
/// resized to `width`×`height` if needed. A buffer of the wrong length is a bad frame.
pub fn yuyv_to_rgb(
    data: &[u8],
    width: u32,
    height: u32,
    range: YuvRange,
    out: &mut RgbImage,
) -> Result<(), SourceError> {
    let expected = width as usize * height as usize * 2;
    if !width.is_multiple_of(2) || data.len() < expected {
        return Err(SourceError::BadFrame(format!(
            "YUYV frame of {} bytes, expected {expected} for {width}x{height}",
            data.len()
        )));
    }
    if out.dimensions() != (width, height) {
        *out = RgbImage::new(width, height);
    }
    let rgb: &mut [u8] = out;
    for (src, dst) in data[..expected]
        .chunks_exact(4)
        .zip(rgb.chunks_exact_mut(6))
    {
        let (y0, u, y1, v) = (src[0], src[1], src[2], src[3]);
        dst[..3].copy_from_slice(&yuv_to_rgb(y0, u, v, range));
        dst[3..].copy_from_slice(&yuv_to_rgb(y1, u, v, range));
    }
    Ok(())
}

/// The YUYV (BT.601, limited range) a camera would send for `frame`, whose width must be
/// even: the inverse of [`yuyv_to_rgb`], for tests and benchmarks.
pub fn rgb_to_yuyv(frame: &RgbImage) -> Vec<u8> {
    let yuv = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(|v| v as f32);
        let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
        let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
        let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
        (y.round() as u8, u.round() as u8, v.round() as u8)
    };
    let (w, h) = frame.dimensions();
    assert!(w.is_multiple_of(2), "YUYV needs an even width, got {w}");
    let mut out = Vec::with_capacity((w * h * 2) as usize);
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, u, v) = yuv(frame.get_pixel(x, y));
            let (y1, _, _) = yuv(frame.get_pixel(x + 1, y));
            out.extend_from_slice(&[y0, u, y1, v]);
        }
    }
    out
}

/// Decodes one MJPEG frame; a corrupt JPEG or one not `width`×`height` is a bad frame.
pub fn decode_mjpeg(data: &[u8], width: u32, height: u32) -> Result<RgbImage, SourceError> {
    // the declared size is checked before any pixel is decoded
    crate::frame::load::decode_checked(data, Some(image::ImageFormat::Jpeg), Some((width, height)))
        .map_err(|e| match e {
            crate::Error::Image { reason, .. } => {
                SourceError::BadFrame(format!("corrupt MJPEG frame: {reason}"))
            }
            other => SourceError::BadFrame(format!("corrupt MJPEG frame: {other}")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_reference_colours() {
        // BT.601 limited: black, white, and the 75 % colour-bar red / full red
        assert_eq!(yuv_to_rgb(16, 128, 128, YuvRange::Limited), [0, 0, 0]);
        assert_eq!(
            yuv_to_rgb(235, 128, 128, YuvRange::Limited),
            [255, 255, 255]
        );
        assert_eq!(yuv_to_rgb(81, 90, 240, YuvRange::Limited), [255, 0, 0]);
        // the 8-bit codes of pure green are themselves rounded: within one step
        let g = yuv_to_rgb(145, 54, 34, YuvRange::Limited);
        assert!(g[0] <= 1 && g[1] >= 254 && g[2] <= 1, "{g:?}");
        assert_eq!(yuv_to_rgb(41, 240, 110, YuvRange::Limited), [0, 0, 255]);
        // out-of-range codes clamp instead of wrapping
        assert_eq!(yuv_to_rgb(0, 128, 128, YuvRange::Limited), [0, 0, 0]);
        assert_eq!(
            yuv_to_rgb(255, 128, 128, YuvRange::Limited),
            [255, 255, 255]
        );
    }

    #[test]
    fn full_range_reference_colours() {
        assert_eq!(yuv_to_rgb(0, 128, 128, YuvRange::Full), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(255, 128, 128, YuvRange::Full), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(128, 128, 128, YuvRange::Full), [128, 128, 128]);
        assert_eq!(yuv_to_rgb(76, 85, 255, YuvRange::Full), [254, 0, 0]);
    }

    #[test]
    fn yuyv_frame_shares_chroma_per_pixel_pair() {
        // 2x1 frame: a black and a white pixel sharing neutral chroma, then a red pair
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let mut out = RgbImage::new(1, 1);
        yuyv_to_rgb(&data, 4, 1, YuvRange::Limited, &mut out).unwrap();
        assert_eq!(out.dimensions(), (4, 1));
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(2, 0).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(3, 0).0, [255, 0, 0]);
    }

    #[test]
    fn short_yuyv_buffers_are_bad_frames() {
        let mut out = RgbImage::new(1, 1);
        let err = yuyv_to_rgb(&[0; 10], 4, 2, YuvRange::Limited, &mut out).unwrap_err();
        assert!(matches!(err, SourceError::BadFrame(m) if m.contains("expected 16")));
    }

    #[test]
    fn mjpeg_decodes_and_rejects_corrupt_or_resized_frames() {
        let img = RgbImage::from_pixel(16, 8, image::Rgb([200, 40, 40]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&img)
            .unwrap();
        let back = decode_mjpeg(&jpeg, 16, 8).unwrap();
        let p = back.get_pixel(3, 3).0;
        assert!(p[0].abs_diff(200) < 6 && p[1].abs_diff(40) < 6, "{p:?}");
        assert!(
            matches!(decode_mjpeg(&jpeg, 32, 8), Err(SourceError::BadFrame(m)) if m.contains("16x8"))
        );
        let truncated = &jpeg[..jpeg.len() / 3];
        assert!(matches!(
            decode_mjpeg(truncated, 16, 8),
            Err(SourceError::BadFrame(_))
        ));
        assert!(
            matches!(decode_mjpeg(b"garbage", 16, 8), Err(SourceError::BadFrame(m)) if m.contains("corrupt"))
        );
    }
}
