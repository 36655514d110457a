//! Frame → patches: the first step of the data flow.
//!
//! A frame is scaled down (never up) to fit the model canvas with its aspect kept, padded
//! to the bottom and right, normalised to `[-1, 1]`, and cut into `P×P` patches in
//! row-major order, each flattened channel-last. Training and the runtime both call
//! [`Canvas::patches`], so the model sees the same numbers in both.

mod format;
pub(crate) mod load;
mod resize;

pub use format::{Grid, ImageFormat, Rounding, Size};
pub use load::{MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, decode_image, load_image};
pub use resize::resize_rgb;
pub(crate) use resize::to_u8;

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// The fixed image area the model reads, and its patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub patch: u32,
}

/// Patches of one frame: `rows × cols` patches of `dim = 3·P·P` values each, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    pub rows: usize,
    pub cols: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Largest canvas side a package may declare (Fuyu-8B's canvas is 1920x1080).
pub const MAX_CANVAS_SIDE: u32 = 4096;
/// Largest patch side a package may declare (Fuyu: 30).
pub const MAX_PATCH: u32 = 256;

impl Canvas {
    pub fn rows(&self) -> usize {
        (self.height / self.patch) as usize
    }

    pub fn cols(&self) -> usize {
        (self.width / self.patch) as usize
    }

    pub fn patch_dim(&self) -> usize {
        // 3·P·P overflows u32 for patches over 37 837 px: saturating, in usize (a
        // validated canvas has P ≤ 256)
        let p = self.patch as usize;
        p.saturating_mul(p).saturating_mul(3)
    }

    /// Image tokens in the decoder's sequence: one per patch plus one newline per row.
    pub fn image_tokens(&self) -> usize {
        self.rows() * (self.cols() + 1)
    }

    /// Checks the canvas is a whole number of patches and within [`MAX_CANVAS_SIDE`] and
    /// [`MAX_PATCH`], so that every size derived from it fits in memory and in `usize`.
    pub fn validate(&self) -> Result<(), String> {
        if self.patch == 0 || self.width == 0 || self.height == 0 {
            return Err(format!("canvas {self:?} has a zero dimension"));
        }
        if self.width > MAX_CANVAS_SIDE || self.height > MAX_CANVAS_SIDE {
            return Err(format!(
                "canvas {}x{} is larger than {MAX_CANVAS_SIDE} pixels on a side",
                self.width, self.height
            ));
        }
        if self.patch > MAX_PATCH {
            return Err(format!(
                "canvas patch size {} is larger than {MAX_PATCH} pixels",
                self.patch
            ));
        }
        if !self.width.is_multiple_of(self.patch) || !self.height.is_multiple_of(self.patch) {
            return Err(format!(
                "canvas {}x{} is not a multiple of the patch size {}",
                self.width, self.height, self.patch
            ));
        }
        Ok(())
    }

    /// Size a `w × h` frame is scaled to: fit inside the canvas, aspect kept, never enlarged.
    pub fn fitted_size(&self, w: u32, h: u32) -> (u32, u32) {
        ImageFormat::default().fitted_size(self, w, h)
    }

    /// The whole preprocessing of Glimpse's own format: fit, pad, normalise and cut
    /// into patches.
    pub fn patches(&self, frame: &RgbImage) -> Patches {
        ImageFormat::default().patches(self, frame)
    }
}

impl ImageFormat {
    /// The whole preprocessing: fit, pad, normalise and cut into patches (row-major,
    /// each channel-last).
    pub fn patches(&self, canvas: &Canvas, frame: &RgbImage) -> Patches {
        let (fw, fh) = self.fitted_size(canvas, frame.width(), frame.height());
        let fitted;
        let img = if (fw, fh) == frame.dimensions() {
            frame
        } else {
            fitted = resize_rgb(frame, fw, fh);
            &fitted
        };
        let (rows, cols) = self.grid_for(canvas, frame.width(), frame.height());
        let p = canvas.patch as usize;
        let dim = canvas.patch_dim();
        let mut data = vec![0.0f32; rows * cols * dim];
        let raw = img.as_raw();
        let stride = fw as usize * 3;
        let pad = [0, 1, 2].map(|c| self.normalise(self.pad, c));
        for r in 0..rows {
            for c in 0..cols {
                let base = (r * cols + c) * dim;
                for py in 0..p {
                    let y = r * p + py;
                    for px in 0..p {
                        let x = c * p + px;
                        let o = base + (py * p + px) * 3;
                        for ch in 0..3 {
                            data[o + ch] = if x < fw as usize && y < fh as usize {
                                self.normalise(raw[y * stride + x * 3 + ch] as f32, ch)
                            } else {
                                pad[ch]
                            };
                        }
                    }
                }
            }
        }
        Patches {
            rows,
            cols,
            dim,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canvas() -> Canvas {
        Canvas {
            width: 8,
            height: 4,
            patch: 2,
        }
    }

    #[test]
    fn patches_are_row_major_and_channel_last() {
        // 8x4 frame, exactly the canvas: pixel (x, y) has colour (x, y, 7)
        let img = RgbImage::from_fn(8, 4, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let p = canvas().patches(&img);
        assert_eq!((p.rows, p.cols, p.dim), (2, 4, 12));
        let norm = |v: u8| (v as f32 / 255.0 - 0.5) / 0.5;
        // patch (row 1, col 2) covers x 4..6, y 2..4; its value 1 (row 0, col 0, channel 1) is y=2
        let base = (4 + 2) * 12;
        assert_eq!(p.data[base], norm(4));
        assert_eq!(p.data[base + 1], norm(2));
        assert_eq!(p.data[base + 2], norm(7));
        // (row 0 in patch, col 1) is x=5
        assert_eq!(p.data[base + 3], norm(5));
        // (row 1 in patch, col 0) is y=3
        assert_eq!(p.data[base + 6 + 1], norm(3));
    }

    #[test]
    fn small_frames_are_padded_not_enlarged() {
        let img = RgbImage::from_pixel(3, 2, image::Rgb([0, 0, 0]));
        assert_eq!(canvas().fitted_size(3, 2), (3, 2));
        let p = canvas().patches(&img);
        assert_eq!(p.data[0], -1.0); // black pixel
        // patch (0, 1) covers x 2..4: x=3 is padding
        assert_eq!(p.data[12 + 3], 1.0);
        // the second patch row is y 2..4: all padding
        assert!(p.data[4 * 12..].iter().all(|&v| v == 1.0));
    }

    #[test]
    fn canvases_beyond_the_limits_are_refused_and_sizes_do_not_overflow() {
        let huge_patch = Canvas {
            width: 40_000,
            height: 40_000,
            patch: 40_000,
        };
        assert_eq!(
            huge_patch.patch_dim() as u64,
            4_800_000_000u64.min(usize::MAX as u64)
        );
        assert!(huge_patch.validate().unwrap_err().contains("4096"));
        let big_patch = Canvas {
            width: 1024,
            height: 1024,
            patch: 512,
        };
        assert!(big_patch.validate().unwrap_err().contains("patch size 512"));
        let fuyu = Canvas {
            width: 1920,
            height: 1080,
            patch: 30,
        };
        assert!(fuyu.validate().is_ok());
    }

    #[test]
    fn large_frames_keep_their_aspect() {
        let c = Canvas {
            width: 128,
            height: 96,
            patch: 16,
        };
        assert_eq!(c.fitted_size(640, 480), (128, 96));
        assert_eq!(c.fitted_size(1920, 1080), (128, 72));
        assert_eq!(c.fitted_size(100, 400), (24, 96));
        assert_eq!(c.image_tokens(), 6 * 9);
        assert!(c.validate().is_ok());
        assert!(
            Canvas {
                width: 100,
                height: 96,
                patch: 16
            }
            .validate()
            .is_err()
        );
    }
}
