//! Choosing what to ask a camera for: a pixel format Glimpse converts (YUYV, MJPEG) at
//! the size closest to the model canvas. Kept apart from the ioctls so it can be tested
//! without a device.

/// Pixel formats Glimpse reads from cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 4:2:2 luma/chroma, two bytes per pixel; cheap to convert.
    Yuyv,
    /// Motion JPEG: one JPEG per frame; needs a decode.
    Mjpeg,
}

impl PixelFormat {
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        match &code {
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            _ => None,
        }
    }
}

/// A format and size a camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraMode {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
}

/// The mode to stream for a `canvas_w`×`canvas_h` model canvas: the smallest offered
/// size that covers the canvas (downscaling keeps detail, upscaling invents none), or the
/// largest size when none covers it. YUYV wins a tie: it needs no decoding.
pub fn choose_mode(offered: &[CameraMode], canvas_w: u32, canvas_h: u32) -> Option<CameraMode> {
    let covers = |m: &CameraMode| m.width >= canvas_w && m.height >= canvas_h;
    let area = |m: &CameraMode| m.width as u64 * m.height as u64;
    let format_rank = |m: &CameraMode| match m.format {
        PixelFormat::Yuyv => 0,
        PixelFormat::Mjpeg => 1,
    };
    let covering = offered.iter().filter(|m| covers(m));
    if let Some(best) = covering.min_by_key(|m| (area(m), format_rank(m))) {
        return Some(*best);
    }
    offered
        .iter()
        .max_by_key(|m| (area(m), std::cmp::Reverse(format_rank(m))))
        .copied()
}

/// `want` rounded up onto a driver's stepwise size range `min..=max` by `step`; `None`
/// when the driver reports an empty range (min > max) or a zero size.
pub fn stepwise_fit(want: u32, min: u32, max: u32, step: u32) -> Option<u32> {
    if min > max || max == 0 {
        return None;
    }
    let (min, max, step) = (min as u64, max as u64, step.max(1) as u64);
    let v = (want as u64).clamp(min, max);
    let fitted = (min + (v - min).div_ceil(step) * step).min(max);
    u32::try_from(fitted).ok().filter(|&f| f > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(format: PixelFormat, width: u32, height: u32) -> CameraMode {
        CameraMode {
            format,
            width,
            height,
        }
    }

    #[test]
    fn picks_the_smallest_size_covering_the_canvas() {
        use PixelFormat::*;
        let offered = [
            mode(Yuyv, 1280, 720),
            mode(Yuyv, 640, 480),
            mode(Yuyv, 160, 120),
            mode(Mjpeg, 320, 240),
            mode(Mjpeg, 1920, 1080),
        ];
        assert_eq!(choose_mode(&offered, 192, 144), Some(mode(Mjpeg, 320, 240)));
        assert_eq!(choose_mode(&offered, 600, 400), Some(mode(Yuyv, 640, 480)));
        // too big for anything: the largest there is
        assert_eq!(
            choose_mode(&offered, 4000, 3000),
            Some(mode(Mjpeg, 1920, 1080))
        );
        assert_eq!(choose_mode(&[], 192, 144), None);
    }

    #[test]
    fn yuyv_wins_a_tie() {
        use PixelFormat::*;
        let offered = [mode(Mjpeg, 320, 240), mode(Yuyv, 320, 240)];
        assert_eq!(choose_mode(&offered, 192, 144).unwrap().format, Yuyv);
        assert_eq!(choose_mode(&offered, 999, 999).unwrap().format, Yuyv);
        assert_eq!(PixelFormat::from_fourcc(*b"MJPG"), Some(Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"NV12"), None);
    }

    #[test]
    fn stepwise_ranges_round_up_and_inverted_ones_are_skipped() {
        assert_eq!(stepwise_fit(192, 16, 1920, 16), Some(192));
        assert_eq!(stepwise_fit(200, 16, 1920, 16), Some(208));
        assert_eq!(stepwise_fit(5000, 16, 1920, 16), Some(1920));
        assert_eq!(stepwise_fit(10, 64, 1920, 0), Some(64));
        assert_eq!(stepwise_fit(192, 1920, 16, 16), None);
        assert_eq!(
            stepwise_fit(u32::MAX, 1, u32::MAX, u32::MAX),
            Some(u32::MAX)
        );
    }
}
