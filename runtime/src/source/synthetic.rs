//! Frames from the scene generator: a camera for tests and demos whose every frame comes
//! with its ground truth (see [`crate::scene::sample`]).

use std::time::{Instant, SystemTime};

use super::{Frame, FrameSource, Pacing, SourceError};
use crate::scene::{Split, sample};

pub struct Synthetic {
    pub seed: u64,
    pub split: Split,
    next: u64,
    end: Option<u64>,
    pacing: Pacing,
}

impl Synthetic {
    /// Scenes `0, 1, ...` of `split` under `seed`; `count` of them (endless when `None`),
    /// `fps` per second (as fast as taken when `None`).
    pub fn new(seed: u64, split: Split, count: Option<u64>, fps: Option<f64>) -> Synthetic {
        Synthetic {
            seed,
            split,
            next: 0,
            end: count,
            pacing: Pacing::new(fps),
        }
    }

    /// The label a frame of scene `index` carries; [`Synthetic::index_of`] reads it back.
    pub fn label(&self, index: u64) -> String {
        format!(
            "synthetic {} scene {index} (seed {})",
            self.split.name(),
            self.seed
        )
    }

    /// The scene index in a label written by [`Synthetic::label`].
    pub fn index_of(label: &str) -> Option<u64> {
        let rest = label.split(" scene ").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!(
            "synthetic {} scenes (seed {})",
            self.split.name(),
            self.seed
        )
    }

    fn is_live(&self) -> bool {
        self.pacing.is_paced()
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        if self.end.is_some_and(|end| self.next >= end) {
            return Err(SourceError::End);
        }
        let index = self.next;
        self.next += 1;
        self.pacing.wait();
        let t = Instant::now();
        let image = sample(self.seed, self.split, index).image;
        Ok(Frame {
            image,
            seq: index,
            label: self.label(index),
            captured_at: SystemTime::now(),
            capture_s: t.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_generator_scenes_and_labels_round_trip() {
        let mut s = Synthetic::new(5, Split::Test, Some(2), None);
        let f = s.next_frame().unwrap();
        assert_eq!(f.image.as_raw(), sample(5, Split::Test, 0).image.as_raw());
        let g = s.next_frame().unwrap();
        assert_eq!(Synthetic::index_of(&g.label), Some(1));
        assert_eq!(s.next_frame().unwrap_err(), SourceError::End);
        assert_eq!(Synthetic::index_of("camera"), None);
    }
}
