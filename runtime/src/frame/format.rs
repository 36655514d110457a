//! How a package wants its frames: the part of preprocessing that differs between model
//! families, recorded in the manifest (`image`).
//!
//! - Glimpse's own models read the whole canvas: a fixed grid of patches, the frame
//!   fitted with rounding and padded white.
//! - Fuyu reads as many patch rows and columns as the fitted frame covers (the grid
//!   follows the image), fits by truncating, and pads with the pixel value 1 before
//!   normalising (transformers' `FuyuImageProcessor`).

use serde::{Deserialize, Serialize};

use super::Canvas;

/// How the patch grid is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grid {
    /// Always the whole canvas: `canvas.rows() × canvas.cols()` patches.
    Canvas,
    /// The fitted frame rounded up to whole patches: fewer tokens for smaller frames.
    Image,
}

/// How a scaled side is turned into whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    Round,
    /// Truncation, as Python's `int(side · scale)`.
    Floor,
}

/// A width and a height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Size {
    type Err = String;

    /// `WxH`, e.g. `640x480`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT (for example 640x480)"))?;
        let side = |v: &str| match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{s:?}: {v:?} is not a positive number of pixels")),
        };
        Ok(Size {
            width: side(w)?,
            height: side(h)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageFormat {
    pub grid: Grid,
    pub rounding: Rounding,
    /// Value of padding pixels on the 0–255 scale, before normalisation.
    pub pad: f32,
    /// Per-channel mean and standard deviation on the 0–1 scale: a value `v` becomes
    /// `(v / 255 − mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Largest frame the model is fed (smaller than the canvas keeps prefill short on a
    /// board); `None` is the whole canvas. Only for grids that follow the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_image: Option<Size>,
}

impl Default for ImageFormat {
    /// Glimpse's own format.
    fn default() -> Self {
        ImageFormat {
            grid: Grid::Canvas,
            rounding: Rounding::Round,
            pad: 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
            max_image: None,
        }
    }
}

impl ImageFormat {
    /// Checks the format against the canvas (`field` names it in errors).
    pub fn validate(&self, canvas: &Canvas) -> Result<(), String> {
        if !self.pad.is_finite() || !(0.0..=255.0).contains(&self.pad) {
            return Err(format!("image.pad {} is outside 0–255", self.pad));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!(
                "image.mean {:?} and image.std {:?} must be finite, std positive",
                self.mean, self.std
            ));
        }
        if let Some(m) = self.max_image {
            self.check_max_image(canvas, m)?;
        }
        Ok(())
    }

    /// Checks a maximum image size for this format and canvas.
    pub fn check_max_image(&self, canvas: &Canvas, m: Size) -> Result<(), String> {
        if self.grid == Grid::Canvas {
            return Err(format!(
                "this package reads a fixed {}x{} canvas: a maximum image size ({m}) needs a package whose patch grid follows the image",
                canvas.width, canvas.height
            ));
        }
        if m.width == 0 || m.height == 0 || m.width > canvas.width || m.height > canvas.height {
            return Err(format!(
                "maximum image {m} must be at least 1x1 and fit in the model's canvas {}x{}",
                canvas.width, canvas.height
            ));
        }
        Ok(())
    }

    /// The box frames are fitted into.
    pub fn fit_box(&self, canvas: &Canvas) -> Size {
        self.max_image.unwrap_or(Size {
            width: canvas.width,
            height: canvas.height,
        })
    }

    /// Size a `w × h` frame is scaled to: inside the fit box, aspect kept, never enlarged.
    pub fn fitted_size(&self, canvas: &Canvas, w: u32, h: u32) -> (u32, u32) {
        let b = self.fit_box(canvas);
        match self.rounding {
            Rounding::Round => {
                let scale = (b.width as f64 / w as f64)
                    .min(b.height as f64 / h as f64)
                    .min(1.0);
                let fw = ((w as f64 * scale).round() as u32).clamp(1, b.width.max(1));
                let fh = ((h as f64 * scale).round() as u32).clamp(1, b.height.max(1));
                (fw, fh)
            }
            Rounding::Floor => {
                if w <= b.width && h <= b.height {
                    return (w, h);
                }
                let scale = (b.height as f64 / h as f64).min(b.width as f64 / w as f64);
                let fw = ((w as f64 * scale) as u32).clamp(1, b.width);
                let fh = ((h as f64 * scale) as u32).clamp(1, b.height);
                (fw, fh)
            }
        }
    }

    /// Patch rows and columns for a `w × h` frame.
    pub fn grid_for(&self, canvas: &Canvas, w: u32, h: u32) -> (usize, usize) {
        match self.grid {
            Grid::Canvas => (canvas.rows(), canvas.cols()),
            Grid::Image => {
                let (fw, fh) = self.fitted_size(canvas, w, h);
                let p = canvas.patch;
                (
                    (fh.div_ceil(p) as usize).min(canvas.rows()),
                    (fw.div_ceil(p) as usize).min(canvas.cols()),
                )
            }
        }
    }

    /// Image tokens (patches and row newlines) of a `w × h` frame.
    pub fn image_tokens(&self, canvas: &Canvas, w: u32, h: u32) -> usize {
        let (rows, cols) = self.grid_for(canvas, w, h);
        rows * (cols + 1)
    }

    /// Image tokens of the largest frame: an upper bound for every frame.
    pub fn max_image_tokens(&self, canvas: &Canvas) -> usize {
        let b = self.fit_box(canvas);
        self.image_tokens(canvas, b.width, b.height)
    }

    /// `(v / 255 − mean) / std` for channel `c`.
    pub(crate) fn normalise(&self, v: f32, c: usize) -> f32 {
        (v / 255.0 - self.mean[c]) / self.std[c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuyu(width: u32, height: u32) -> (ImageFormat, Canvas) {
        let f = ImageFormat {
            grid: Grid::Image,
            rounding: Rounding::Floor,
            pad: 1.0,
            ..ImageFormat::default()
        };
        (
            f,
            Canvas {
                width,
                height,
                patch: 30,
            },
        )
    }

    #[test]
    fn fuyu_grids_follow_the_image_and_its_documented_token_counts() {
        // the counts transformers' FuyuProcessor gives on fuyu-8b's 1920x1080 canvas
        let (f, c) = fuyu(1920, 1080);
        assert_eq!(f.image_tokens(&c, 320, 240), 96);
        assert_eq!(f.image_tokens(&c, 640, 480), 368);
        assert_eq!(f.image_tokens(&c, 1920, 1080), 2340);
        // larger frames shrink by truncation: 4000x1000 → 1920x480
        assert_eq!(f.fitted_size(&c, 4000, 1000), (1920, 480));
        assert_eq!(f.grid_for(&c, 4000, 1000), (16, 64));
        // never enlarged; partial patches count
        assert_eq!(f.fitted_size(&c, 45, 29), (45, 29));
        assert_eq!(f.grid_for(&c, 45, 29), (1, 2));
    }

    #[test]
    fn max_image_bounds_the_fit_and_is_checked() {
        let (mut f, c) = fuyu(1920, 1080);
        let m: Size = "300x300".parse().unwrap();
        f.max_image = Some(m);
        assert!(f.validate(&c).is_ok());
        assert_eq!(f.fitted_size(&c, 640, 480), (300, 225));
        assert_eq!(f.max_image_tokens(&c), 10 * 11);
        assert!(
            f.check_max_image(&c, "4000x10".parse().unwrap())
                .unwrap_err()
                .contains("1920x1080")
        );
        let native = ImageFormat::default();
        assert!(native.check_max_image(&c, m).unwrap_err().contains("fixed"));
        assert!("300".parse::<Size>().is_err());
        assert!("0x10".parse::<Size>().is_err());
    }
}
