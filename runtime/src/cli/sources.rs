//! `--camera`, `--frames`, `--image`, `--synthetic`: picking a frame source.

use std::path::PathBuf;

use clap::Args;

use glimpse_runtime::frame::Canvas;
use glimpse_runtime::scene::Split;
use glimpse_runtime::source::{Folder, FrameSource, ImageFile, MAX_FPS, MIN_FPS, Synthetic};

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false, id = "source")]
pub struct SourceArgs {
    /// V4L2 camera device, e.g. /dev/video0 (needs a build with `--features camera`).
    #[arg(long, value_name = "DEVICE")]
    pub camera: Option<PathBuf>,
    /// Folder of PNG/JPEG frames, read in name order.
    #[arg(long, value_name = "DIR")]
    pub frames: Option<PathBuf>,
    /// One image file.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Scenes from the built-in generator (test split), for demos and tests.
    #[arg(long)]
    pub synthetic: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PacingArgs {
    /// Frames per second for --frames and --synthetic, 0.001 to 1000 (as fast as
    /// captioned if unset).
    #[arg(long, value_parser = parse_fps)]
    pub fps: Option<f64>,
    /// Seed of the --synthetic scenes.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// `--fps`: a number of frames per second within [`MIN_FPS`]..=[`MAX_FPS`].
pub fn parse_fps(s: &str) -> Result<f64, String> {
    let fps: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of frames per second"))?;
    if !(MIN_FPS..=MAX_FPS).contains(&fps) {
        return Err(format!(
            "{s} is outside the frame rates glimpse paces ({MIN_FPS} to {MAX_FPS})"
        ));
    }
    Ok(fps)
}

pub fn open(
    src: &SourceArgs,
    pacing: &PacingArgs,
    canvas: Canvas,
) -> Result<Box<dyn FrameSource>, String> {
    let source: Box<dyn FrameSource> = if let Some(dev) = &src.camera {
        open_camera(dev, canvas)?
    } else if let Some(dir) = &src.frames {
        Box::new(Folder::open(dir, pacing.fps).map_err(|e| e.to_string())?)
    } else if let Some(file) = &src.image {
        Box::new(ImageFile::new(file).map_err(|e| e.to_string())?)
    } else {
        Box::new(Synthetic::new(pacing.seed, Split::Test, None, pacing.fps))
    };
    Ok(source)
}

#[cfg(feature = "camera")]
fn open_camera(dev: &std::path::Path, canvas: Canvas) -> Result<Box<dyn FrameSource>, String> {
    let cam = glimpse_runtime::source::Camera::open(dev, (canvas.width, canvas.height))
        .map_err(|e| e.to_string())?;
    Ok(Box::new(cam))
}

#[cfg(not(feature = "camera"))]
fn open_camera(dev: &std::path::Path, _canvas: Canvas) -> Result<Box<dyn FrameSource>, String> {
    Err(format!(
        "cannot open {}: this glimpse was built without camera support; rebuild with `cargo build --release -p glimpse-runtime --features camera` (needs libclang)",
        dev.display()
    ))
}
