//! One image file, given once.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{Frame, FrameSource, SourceError};
use crate::frame::load_image;

pub struct ImageFile {
    path: PathBuf,
    done: bool,
}

impl ImageFile {
    pub fn new(path: impl Into<PathBuf>) -> Result<ImageFile, SourceError> {
        let path = path.into();
        if !path.is_file() {
            return Err(SourceError::Unavailable(format!(
                "{}: no such image file",
                path.display()
            )));
        }
        Ok(ImageFile { path, done: false })
    }
}

impl FrameSource for ImageFile {
    fn describe(&self) -> String {
        format!("image {}", self.path.display())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        if self.done {
            return Err(SourceError::End);
        }
        self.done = true;
        let t = Instant::now();
        // the one frame there is: if it cannot be read, the source has failed
        let image = load_image(&self.path).map_err(|e| SourceError::Unavailable(e.to_string()))?;
        Ok(Frame {
            image,
            seq: 0,
            label: self.path.display().to_string(),
            captured_at: SystemTime::now(),
            capture_s: t.elapsed().as_secs_f64(),
        })
    }
}
