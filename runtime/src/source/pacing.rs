//! Frames per second for sources that have no clock of their own.

use std::time::{Duration, Instant};

/// Spaces frames `1/fps` apart; `None` means as fast as the reader takes them.
#[derive(Debug, Clone)]
pub struct Pacing {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacing {
    pub fn new(fps: Option<f64>) -> Pacing {
        let interval = fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| Duration::from_secs_f64(1.0 / f));
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
        self.next = Some(due.max(now) + interval);
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
        assert!(!Pacing::new(None).is_paced());
        assert!(!Pacing::new(Some(0.0)).is_paced());
    }
}
