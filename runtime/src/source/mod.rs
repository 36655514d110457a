//! Where frames come from: image files, folders, the scene generator and V4L2 cameras,
//! all behind one [`FrameSource`] trait so the captioning loop and the serial console do
//! not care which one feeds them.

mod devices;
mod file;
mod folder;
mod negotiate;
mod pacing;
pub mod pixel;
mod synthetic;

#[cfg(feature = "camera")]
mod camera;

use std::time::SystemTime;

use image::RgbImage;

pub use devices::{list_video_devices, missing_camera_message};
pub use file::ImageFile;
pub use folder::Folder;
pub use negotiate::{CameraMode, PixelFormat, choose_mode, stepwise_fit};
pub use pacing::{MAX_FPS, MIN_FPS, Pacing};
pub use synthetic::Synthetic;

#[cfg(feature = "camera")]
pub use camera::Camera;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub image: RgbImage,
    /// Position in the source's stream, counting from 0; skipped frames use numbers too.
    pub seq: u64,
    /// What the frame is: a file name, a scene number, a camera buffer.
    pub label: String,
    pub captured_at: SystemTime,
    /// Seconds spent getting the frame: reading, decoding, converting pixels.
    pub capture_s: f64,
}

/// Why a source gave no frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The source cannot be used at all (no such camera, no such folder).
    #[error("{0}")]
    Unavailable(String),
    /// The device went away; [`FrameSource::reconnect`] may bring it back.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// This frame is unusable (corrupt, wrong size); the next one may be fine.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// No more frames will come.
    #[error("no more frames")]
    End,
}

/// A stream of frames.
pub trait FrameSource: Send {
    /// For logs and errors: "camera /dev/video0 (YUYV 320x240)", "folder shots/ (12 images)".
    fn describe(&self) -> String;
    /// Whether frames arrive on the source's own clock (a camera, a paced folder). Live
    /// frames are not waited for: a reader that falls behind gets the newest one and the
    /// stale ones are dropped. Other sources wait until each frame is taken.
    fn is_live(&self) -> bool;
    /// The next frame; blocks until it is there.
    fn next_frame(&mut self) -> Result<Frame, SourceError>;
    /// Tries to reopen the device after [`SourceError::Disconnected`].
    fn reconnect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}

impl FrameSource for Box<dyn FrameSource> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        (**self).next_frame()
    }
    fn reconnect(&mut self) -> Result<(), SourceError> {
        (**self).reconnect()
    }
}
