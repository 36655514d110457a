//! Text-triggered alerts: `glimpse watch --trigger "a red circle" --threshold 0.45`.
//!
//! Each frame's image embedding is compared with the trigger text's (computed once). An
//! alert fires when the similarity rises to the threshold, and the trigger re-arms only
//! after it falls below a lower release level: one appearance, one alert, even when the
//! similarity wavers around the threshold.

use crate::Glimpse;
use crate::error::Result;
use crate::matching::cosine;

/// A crossing of the trigger's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The text now matches: alert.
    Rise,
    /// It no longer does: re-armed.
    Fall,
}

/// Two-level hysteresis: active from `threshold` up, inactive again below `release`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    pub threshold: f32,
    pub release: f32,
    pub active: bool,
}

impl Hysteresis {
    pub fn new(threshold: f32, release: f32) -> Self {
        Hysteresis {
            threshold,
            release: release.min(threshold),
            active: false,
        }
    }

    pub fn update(&mut self, value: f32) -> Option<Edge> {
        if !self.active && value >= self.threshold {
            self.active = true;
            Some(Edge::Rise)
        } else if self.active && value < self.release {
            self.active = false;
            Some(Edge::Fall)
        } else {
            None
        }
    }
}

/// Threshold when none is given (`glimpse watch --threshold`).
pub const DEFAULT_THRESHOLD: f32 = 0.45;

/// Release level below the threshold when none is given.
pub const DEFAULT_GAP: f32 = 0.05;

/// A trigger text, embedded once, with its hysteresis state.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub text: String,
    pub embedding: Vec<f32>,
    pub levels: Hysteresis,
}

impl Trigger {
    /// Fails when the package cannot match or the text is too long.
    pub fn new(
        glimpse: &Glimpse,
        text: &str,
        threshold: f32,
        release: Option<f32>,
    ) -> Result<Self> {
        Ok(Trigger {
            text: text.trim().to_string(),
            embedding: glimpse.text_embedding(text)?,
            levels: Hysteresis::new(threshold, release.unwrap_or(threshold - DEFAULT_GAP)),
        })
    }

    /// Similarity of an image embedding to the text, and the edge it crosses, if any.
    pub fn observe(&mut self, image_embedding: &[f32]) -> (f32, Option<Edge>) {
        let s = cosine(image_embedding, &self.embedding);
        (s, self.levels.update(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_appearance_gives_one_alert_despite_wavering() {
        let mut h = Hysteresis::new(0.5, 0.4);
        let seq = [0.1, 0.3, 0.52, 0.48, 0.55, 0.45, 0.6, 0.35, 0.2, 0.51, 0.1];
        let edges: Vec<_> = seq.iter().map(|&v| h.update(v)).collect();
        use Edge::*;
        assert_eq!(
            edges,
            vec![
                None,
                None,
                Some(Rise),
                None,
                None,
                None,
                None,
                Some(Fall),
                None,
                Some(Rise),
                Some(Fall)
            ]
        );
    }

    #[test]
    fn release_never_exceeds_threshold() {
        let mut h = Hysteresis::new(0.5, 0.9);
        assert_eq!(h.release, 0.5);
        assert_eq!(h.update(0.5), Some(Edge::Rise));
        assert_eq!(h.update(0.49), Some(Edge::Fall));
    }
}
