//! Reading frames from files and bytes, with errors that name the file.
//!
//! Nothing is trusted before it is checked: only regular files are opened (a FIFO or a
//! device would block or never end), at most [`MAX_FILE_BYTES`] are read, the declared
//! size is checked against [`MAX_PIXELS`] before any pixel is decoded (a 400 kB PNG can
//! declare 144 megapixels), and a JPEG cut short is an error, not a grey-bottomed frame.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

/// Largest image file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest image decoded, in pixels (a 40-megapixel photo; frames are scaled down to the
/// canvas anyway).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Largest side of an image decoded, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// Decodes a PNG or JPEG file into RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = read_bounded(path)?;
    decode_image(&bytes).map_err(|e| match e {
        Error::Image { reason, .. } => Error::Image {
            path: Some(path.to_path_buf()),
            reason,
        },
        other => other,
    })
}

/// The bytes of a regular file of at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let image_err = |reason: String| Error::Image {
        path: Some(path.to_path_buf()),
        reason,
    };
    // stat before open: opening a FIFO for reading blocks until someone writes to it
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(image_err(
            "not a regular file (a directory, FIFO or device); give a PNG or JPEG file".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(image_err(format!(
            "the file is {} bytes, more than the {MAX_FILE_BYTES} an image may have",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // bounded even if the file grows while it is read
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(image_err(format!(
            "the file grew past {MAX_FILE_BYTES} bytes while it was read"
        )));
    }
    Ok(bytes)
}

/// Decodes an in-memory PNG or JPEG.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    decode_checked(bytes, None, None)
}

/// Decodes `bytes` (of `format`, or guessed from the bytes), refusing declared sizes over
/// the budget, a size other than `expect` when given, and truncated JPEGs.
pub(crate) fn decode_checked(
    bytes: &[u8],
    format: Option<ImageFormat>,
    expect: Option<(u32, u32)>,
) -> Result<RgbImage> {
    let err = |reason: String| Error::Image { path: None, reason };
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let mut r = ImageReader::new(Cursor::new(bytes));
        match format {
            Some(f) => r.set_format(f),
            None => {
                r = r
                    .with_guessed_format()
                    .map_err(|e| err(format!("cannot read its header: {e}")))?
            }
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_PIXELS * 4 + (16 << 20));
        r.limits(limits);
        Ok(r)
    };
    let r = reader()?;
    let format = r
        .format()
        .ok_or_else(|| err("not a PNG or JPEG file (unknown format)".into()))?;
    let (w, h) = r.into_dimensions().map_err(|e| err(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(err("image has no pixels".into()));
    }
    if w as u64 * h as u64 > MAX_PIXELS || w > MAX_SIDE || h > MAX_SIDE {
        return Err(err(format!(
            "image declares {w}x{h} pixels, more than the {} megapixels (and {MAX_SIDE} px a side) Glimpse decodes",
            MAX_PIXELS / 1_000_000
        )));
    }
    if let Some((ew, eh)) = expect
        && (w, h) != (ew, eh)
    {
        return Err(err(format!(
            "frame is {w}x{h}, the stream was set to {ew}x{eh}"
        )));
    }
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(err(
            "truncated JPEG: no end-of-image marker (the file was cut short)".into(),
        ));
    }
    let img = reader()?.decode().map_err(|e| err(e.to_string()))?;
    Ok(img.into_rgb8())
}

/// Whether a JPEG ends with its end-of-image marker (FF D9), allowing trailing padding
/// (zero bytes, as some cameras fill their whole buffer, and up to a kilobyte of anything
/// else). The marker cannot occur inside entropy-coded data (an FF there is followed by
/// 00 or a restart marker), so a file cut inside its scan has none near its end.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let tail = &bytes[end.saturating_sub(1024)..end];
    tail.windows(2).any(|w| w == [0xff, 0xd9])
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        // texture, so that most of the file is the entropy-coded scan
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y * 3) as u8])
        });
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn whole_jpegs_decode_and_cut_ones_are_refused() {
        let whole = jpeg(160, 120);
        assert_eq!(decode_image(&whole).unwrap().dimensions(), (160, 120));
        // cut inside the scan: the decoder alone would fill the rest with grey
        for cut in [whole.len() / 2, whole.len() - 2, whole.len() * 9 / 10] {
            let e = decode_image(&whole[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated JPEG"), "cut at {cut}: {e}");
        }
        // cut inside the headers: an error from the decoder itself
        assert!(decode_image(&whole[..100]).is_err());
        // a camera buffer padded with zeros after the end marker is whole
        let mut padded = whole.clone();
        padded.resize(whole.len() + 64 * 1024, 0);
        assert!(decode_image(&padded).is_ok());
    }

    #[test]
    fn declared_sizes_over_the_budget_are_refused_before_decoding() {
        // a PNG header declaring 12000x12000, followed by almost nothing
        let mut png = Vec::new();
        let small = image::GrayImage::new(1, 1);
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&small, 1, 1, image::ExtendedColorType::L8)
            .unwrap();
        // IHDR's width and height are bytes 16..24, its CRC (over bytes 12..29) 29..33
        png[16..20].copy_from_slice(&12000u32.to_be_bytes());
        png[20..24].copy_from_slice(&12000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_image(&png).unwrap_err().to_string();
        assert!(e.contains("12000x12000"), "{e}");
        assert!(decode_checked(&jpeg(8, 8), Some(ImageFormat::Jpeg), Some((16, 8))).is_err());
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}
