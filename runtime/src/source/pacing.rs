//! Frames per second for sources that have no clock of their own.

use std::time::{Duration, Instant};

/// Spaces frames `1/fps` apart; `None` means as fast as the reader takes them.
#[derive(Debug, Clone)]
pub struct Pacing {
    interval: Option<Duration>,
    next: Option<Instant>,
}

/// Slowest pacing: one frame a day (the CLI accepts `--fps` from [`MIN_FPS`]).
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Range of `--fps` the CLI accepts.
pub const MIN_FPS: f64 = 0.001;
pub const MAX_FPS: f64 = 1000.0;

impl Pacing {
    /// `fps` must be finite and positive to pace; any rate slower than one frame a day is
    /// paced at one a day.
    pub fn new(fps: Option<f64>) -> Pacing {
        let interval = fps.filter(|f| f.is_finite() && *f > 0.0).map(|f| {
            Duration::try_from_secs_f64(1.0 / f)
                .unwrap_or(MAX_INTERVAL)
                .min(MAX_INTERVAL)
        });
        Pacing {
            interval,
            next: None,
        }
    }

    pub fn is_paced(&self) -> bool {
        self.interval.is_some()
    }

    /// Sleeps until the next frame is due.
    pub fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let due = self.next.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // Never try to catch up on missed frames: schedule from whichever is later.
        self.next = due.max(now).checked_add(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_frames_are_spaced() {
        let mut p = Pacing::new(Some(100.0));
        let t = Instant::now();
        for _ in 0..4 {
            p.wait();
        }
        // 3 intervals of 10 ms after the first frame
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(p.is_paced());
        assert!(!Pacing::new(None).is_paced());
        assert!(!Pacing::new(Some(0.0)).is_paced());
    }

    #[test]
    fn absurd_rates_are_bounded_not_a_panic() {
        for fps in [1e-300, f64::MIN_POSITIVE, 1e-9] {
            let p = Pacing::new(Some(fps));
            assert_eq!(p.interval, Some(MAX_INTERVAL), "{fps}");
        }
        assert_eq!(
            Pacing::new(Some(1e300)).interval,
            Some(Duration::ZERO),
            "a huge rate is no wait at all"
        );
        assert!(!Pacing::new(Some(f64::NAN)).is_paced());
    }
}
