//! Reading frames from files and bytes, with errors that name the file.

use std::path::Path;

use image::RgbImage;

use crate::error::{Error, Result};

/// Decodes a PNG or JPEG file into RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    decode_image(&bytes).map_err(|e| match e {
        Error::Image { reason, .. } => Error::Image {
            path: Some(path.to_path_buf()),
            reason,
        },
        other => other,
    })
}

/// Decodes an in-memory PNG or JPEG.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    let img = image::load_from_memory(bytes).map_err(|e| Error::Image {
        path: None,
        reason: e.to_string(),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::Image {
            path: None,
            reason: "image has no pixels".into(),
        });
    }
    Ok(img.to_rgb8())
}
