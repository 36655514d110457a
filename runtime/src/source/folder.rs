//! A folder of PNG and JPEG files, in name order, optionally paced to a frame rate.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Frame, FrameSource, Pacing, SourceError};
use crate::frame::load_image;

pub struct Folder {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    pacing: Pacing,
}

/// Whether `path` has an image extension Glimpse reads.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

impl Folder {
    /// The images in `dir`; `fps` paces them like a camera would.
    pub fn open(dir: impl Into<PathBuf>, fps: Option<f64>) -> Result<Folder, SourceError> {
        let dir = dir.into();
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            SourceError::Unavailable(format!("cannot read folder {}: {e}", dir.display()))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(SourceError::Unavailable(format!(
                "folder {} holds no .png or .jpg images",
                dir.display()
            )));
        }
        Ok(Folder {
            dir,
            files,
            next: 0,
            pacing: Pacing::new(fps),
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for Folder {
    fn describe(&self) -> String {
        format!(
            "folder {} ({} images)",
            self.dir.display(),
            self.files.len()
        )
    }

    fn is_live(&self) -> bool {
        self.pacing.is_paced()
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let Some(path) = self.files.get(self.next).cloned() else {
            return Err(SourceError::End);
        };
        let seq = self.next as u64;
        self.next += 1;
        self.pacing.wait();
        let t = Instant::now();
        let image = load_image(&path).map_err(|e| {
            if self.dir.is_dir() {
                SourceError::BadFrame(e.to_string())
            } else {
                // the folder itself went away: no later frame can come
                SourceError::Unavailable(format!("folder {} is gone", self.dir.display()))
            }
        })?;
        Ok(Frame {
            image,
            seq,
            label: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            captured_at: SystemTime::now(),
            capture_s: t.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_images_in_name_order_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([9, 8, 7]));
        img.save(dir.path().join("b.png")).unwrap();
        img.save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("c.jpg"), b"not a jpeg").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let mut f = Folder::open(dir.path(), None).unwrap();
        assert_eq!(f.len(), 3);
        assert!(!f.is_live());
        assert_eq!(f.next_frame().unwrap().label, "a.png");
        let b = f.next_frame().unwrap();
        assert_eq!((b.label.as_str(), b.seq), ("b.png", 1));
        assert_eq!(b.image.get_pixel(0, 0).0, [9, 8, 7]);
        match f.next_frame() {
            Err(SourceError::BadFrame(m)) => assert!(m.contains("c.jpg"), "{m}"),
            other => panic!("expected a bad frame, got {other:?}"),
        }
        assert_eq!(f.next_frame().unwrap_err(), SourceError::End);
    }

    #[test]
    fn a_folder_deleted_while_read_fails_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let frames = dir.path().join("frames");
        std::fs::create_dir(&frames).unwrap();
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([9, 8, 7]));
        img.save(frames.join("a.png")).unwrap();
        img.save(frames.join("b.png")).unwrap();
        let mut f = Folder::open(&frames, None).unwrap();
        assert!(f.next_frame().is_ok());
        std::fs::remove_dir_all(&frames).unwrap();
        match f.next_frame() {
            Err(SourceError::Unavailable(m)) => assert!(m.contains("is gone"), "{m}"),
            other => panic!("expected the source to fail, got {other:?}"),
        }
    }

    #[test]
    fn empty_or_missing_folders_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Folder::open(dir.path(), None),
            Err(SourceError::Unavailable(m)) if m.contains("no .png")
        ));
        assert!(matches!(
            Folder::open(dir.path().join("nope"), None),
            Err(SourceError::Unavailable(_))
        ));
    }
}
