//! V4L2 cameras through the `v4l` crate (cargo feature `camera`): format negotiation,
//! mmap streaming, and reopening after the camera is unplugged.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use image::RgbImage;
use v4l::buffer::Type;
use v4l::format::Quantization;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::pixel::{YuvRange, decode_mjpeg, yuyv_to_rgb};
use super::{
    CameraMode, Frame, FrameSource, PixelFormat, SourceError, choose_mode, list_video_devices,
    missing_camera_message, stepwise_fit,
};

/// mmap buffers queued with the driver.
const BUFFERS: u32 = 4;
/// Longest wait for one frame.
const FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct Camera {
    path: PathBuf,
    canvas: (u32, u32),
    mode: CameraMode,
    range: YuvRange,
    stream: Option<Stream<'static>>,
    // Kept open for as long as the stream runs.
    _device: Option<Device>,
    seq: u64,
}

/// What the camera at `dev` offers in the formats Glimpse converts.
fn offered_modes(dev: &Device, canvas: (u32, u32)) -> std::io::Result<Vec<CameraMode>> {
    let mut modes = Vec::new();
    for desc in dev.enum_formats()? {
        let Some(format) = PixelFormat::from_fourcc(desc.fourcc.repr) else {
            continue;
        };
        for size in dev.enum_framesizes(desc.fourcc)? {
            match size.size {
                FrameSizeEnum::Discrete(d) => modes.push(CameraMode {
                    format,
                    width: d.width,
                    height: d.height,
                }),
                FrameSizeEnum::Stepwise(s) => {
                    // the canvas size rounded up onto the camera's grid; a driver whose
                    // range is inverted offers no usable size here
                    let width = stepwise_fit(canvas.0, s.min_width, s.max_width, s.step_width);
                    let height = stepwise_fit(canvas.1, s.min_height, s.max_height, s.step_height);
                    if let (Some(width), Some(height)) = (width, height) {
                        modes.push(CameraMode {
                            format,
                            width,
                            height,
                        });
                    }
                }
            }
        }
    }
    Ok(modes)
}

fn unavailable(path: &Path, what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("camera {}: {what}: {e}", path.display()))
}

impl Camera {
    /// Opens the camera at `path` and starts streaming the mode closest to the canvas.
    pub fn open(path: impl Into<PathBuf>, canvas: (u32, u32)) -> Result<Camera, SourceError> {
        let path = path.into();
        let mut cam = Camera {
            path,
            canvas,
            mode: CameraMode {
                format: PixelFormat::Yuyv,
                width: 0,
                height: 0,
            },
            range: YuvRange::Limited,
            stream: None,
            _device: None,
            seq: 0,
        };
        cam.start()?;
        Ok(cam)
    }

    pub fn mode(&self) -> CameraMode {
        self.mode
    }

    fn start(&mut self) -> Result<(), SourceError> {
        let path = self.path.clone();
        if !path.exists() {
            let present = list_video_devices(Path::new("/dev"));
            return Err(SourceError::Unavailable(missing_camera_message(
                &path, &present,
            )));
        }
        let dev = Device::with_path(&path).map_err(|e| unavailable(&path, "cannot open", e))?;
        let offered = offered_modes(&dev, self.canvas)
            .map_err(|e| unavailable(&path, "cannot query formats", e))?;
        let wanted = choose_mode(&offered, self.canvas.0, self.canvas.1).ok_or_else(|| {
            SourceError::Unavailable(format!(
                "camera {} offers neither YUYV nor MJPEG",
                path.display()
            ))
        })?;
        let set = dev
            .set_format(&Format::new(
                wanted.width,
                wanted.height,
                FourCC::new(&wanted.format.fourcc()),
            ))
            .map_err(|e| unavailable(&path, "cannot set format", e))?;
        let format = PixelFormat::from_fourcc(set.fourcc.repr).ok_or_else(|| {
            SourceError::Unavailable(format!(
                "camera {} switched to pixel format {} which Glimpse cannot read",
                path.display(),
                set.fourcc
            ))
        })?;
        self.mode = CameraMode {
            format,
            width: set.width,
            height: set.height,
        };
        self.range = match set.quantization {
            Quantization::FullRange => YuvRange::Full,
            _ => YuvRange::Limited,
        };
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)
            .map_err(|e| unavailable(&path, "cannot start streaming", e))?;
        // a camera silent this long is treated as unplugged, and reopened
        stream.set_timeout(FRAME_TIMEOUT);
        self.stream = Some(stream);
        self._device = Some(dev);
        Ok(())
    }
}

impl FrameSource for Camera {
    fn describe(&self) -> String {
        let m = self.mode;
        let f = m.format.fourcc();
        format!(
            "camera {} ({} {}x{})",
            self.path.display(),
            String::from_utf8_lossy(&f),
            m.width,
            m.height
        )
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(SourceError::Disconnected(format!(
                "camera {} is not streaming",
                self.path.display()
            )));
        };
        let (buf, meta) = stream.next().map_err(|e| {
            SourceError::Disconnected(format!("camera {}: {e}", self.path.display()))
        })?;
        let t = Instant::now();
        let seq = self.seq;
        self.seq += 1;
        let used = (meta.bytesused as usize).min(buf.len());
        let (w, h) = (self.mode.width, self.mode.height);
        let image = match self.mode.format {
            PixelFormat::Yuyv => {
                let mut rgb = RgbImage::new(w, h);
                yuyv_to_rgb(&buf[..used], w, h, self.range, &mut rgb)?;
                rgb
            }
            PixelFormat::Mjpeg => decode_mjpeg(&buf[..used], w, h)?,
        };
        Ok(Frame {
            image,
            seq,
            label: format!("{} #{seq}", self.path.display()),
            captured_at: SystemTime::now(),
            capture_s: t.elapsed().as_secs_f64(),
        })
    }

    fn reconnect(&mut self) -> Result<(), SourceError> {
        self.stream = None;
        self._device = None;
        self.start().map_err(|e| match e {
            SourceError::Unavailable(m) => SourceError::Disconnected(m),
            other => other,
        })
    }
}
