//! The console's state: the current frame, the image prefix kept for follow-up
//! questions, and what was measured.

use std::time::Instant;

use heapless::HistoryBuffer;

use crate::model::DecoderSession;
use crate::source::Frame;
use crate::text::{Prompt, TokenStream};
use crate::watch::median;
use crate::{Glimpse, ImageContext, Stop};

/// Kept latency samples per kind (the most recent ones).
const SAMPLES: usize = 64;

/// The work done for one frame that every question about it starts from.
struct Prefix<'g> {
    seq: u64,
    label: String,
    image: ImageContext,
    session: DecoderSession<'g>,
}

/// One answer and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub text: String,
    /// Whether the text is whole or was cut at a limit.
    pub stop: Stop,
    pub frame: String,
    /// From the request to the first answer token.
    pub ttft_s: f64,
    /// Whether the frame's image prefix was already in the cache.
    pub follow_up: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ConsoleStats {
    pub frames: u64,
    pub answered: u64,
    pub errors: u64,
    pub rejected_lines: u64,
    pub first_ttft_s: HistoryBuffer<f64, SAMPLES>,
    pub follow_up_ttft_s: HistoryBuffer<f64, SAMPLES>,
}

impl ConsoleStats {
    pub fn first_ttft_median_s(&self) -> Option<f64> {
        median(self.first_ttft_s.as_slice())
    }

    pub fn follow_up_ttft_median_s(&self) -> Option<f64> {
        median(self.follow_up_ttft_s.as_slice())
    }

    /// How many times faster a follow-up reaches its first token.
    pub fn follow_up_speedup(&self) -> Option<f64> {
        Some(self.first_ttft_median_s()? / self.follow_up_ttft_median_s()?)
    }
}

pub struct Console<'g> {
    glimpse: &'g Glimpse,
    frame: Option<Frame>,
    frozen: bool,
    prefix: Option<Prefix<'g>>,
    /// Views each caption is made from (1: the frame alone).
    views: usize,
    pub stats: ConsoleStats,
}

impl<'g> Console<'g> {
    pub fn new(glimpse: &'g Glimpse) -> Self {
        Console {
            glimpse,
            frame: None,
            frozen: false,
            prefix: None,
            views: 1,
            stats: ConsoleStats::default(),
        }
    }

    /// Captions made from `views` views of the frame ([`Glimpse::caption_views`]),
    /// written whole once chosen; 0 or 1: the frame alone, streamed.
    pub fn with_views(mut self, views: usize) -> Result<Self, String> {
        self.views = views.max(1);
        crate::views::check(self.views).map_err(|e| e.to_string())?;
        Ok(self)
    }

    /// A new frame from the source; ignored while frozen.
    pub fn offer_frame(&mut self, frame: Frame) {
        self.stats.frames += 1;
        if !self.frozen {
            self.frame = Some(frame);
        }
    }

    /// Views each caption is made from.
    pub fn views(&self) -> usize {
        self.views
    }

    pub fn frame_label(&self) -> Option<&str> {
        self.frame.as_ref().map(|f| f.label.as_str())
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    pub fn snap(&mut self) {
        self.frozen = true;
    }

    pub fn live(&mut self) {
        self.frozen = false;
    }

    /// Answers `prompt` about the current frame, passing text to `on_text` as decoded.
    pub fn answer(
        &mut self,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answered, String> {
        let r = self.answer_inner(prompt, on_text);
        match &r {
            Ok(a) => {
                self.stats.answered += 1;
                if a.follow_up {
                    self.stats.follow_up_ttft_s.write(a.ttft_s);
                } else {
                    self.stats.first_ttft_s.write(a.ttft_s);
                }
            }
            Err(_) => self.stats.errors += 1,
        }
        r
    }

    fn answer_inner(
        &mut self,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answered, String> {
        let start = Instant::now();
        let g = self.glimpse;
        let frame = self.frame.as_ref().ok_or("no frame yet")?;
        let stream = TokenStream::new(&g.tokenizer, prompt).map_err(|e| e.to_string())?;
        let fresh = match &self.prefix {
            Some(p) => p.seq != frame.seq || p.label != frame.label,
            None => true,
        };
        if fresh {
            // drop the old prefix first: only one frame's cache is held
            self.prefix = None;
            let image = g.see(&frame.image).map_err(|e| e.to_string())?;
            let session = g.image_session(&image).map_err(|e| e.to_string())?;
            self.prefix = Some(Prefix {
                seq: frame.seq,
                label: frame.label.clone(),
                image,
                session,
            });
        }
        let p = self.prefix.as_ref().expect("prefix just set");
        if self.views > 1 && *prompt == Prompt::Caption {
            // the frame's own view continues the cached prefix; the text comes whole
            let a = g
                .caption_views_seen(&frame.image, self.views, &p.image, p.session.clone())
                .map_err(|e| e.to_string())?;
            on_text(&a.text);
            return Ok(Answered {
                ttft_s: start.elapsed().as_secs_f64(),
                text: a.text,
                stop: a.stop,
                frame: p.label.clone(),
                follow_up: !fresh,
            });
        }
        let mut first: Option<f64> = None;
        let answer = g
            .run_after_image(p.session.clone(), &p.image, &stream, &mut |piece| {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
                on_text(piece)
            })
            .map_err(|e| e.to_string())?;
        Ok(Answered {
            ttft_s: first.unwrap_or_else(|| start.elapsed().as_secs_f64()),
            text: answer.text,
            stop: answer.stop,
            frame: p.label.clone(),
            follow_up: !fresh,
        })
    }

    /// The `stats` command's text.
    pub fn describe_stats(&self) -> String {
        let s = &self.stats;
        let ms = |x: Option<f64>| {
            x.map(|v| format!("{:.2} ms", v * 1e3))
                .unwrap_or("-".into())
        };
        let frame = match self.frame_label() {
            Some(l) => format!("{l} ({})", if self.frozen { "frozen" } else { "live" }),
            None => "none yet".into(),
        };
        let speedup = s
            .follow_up_speedup()
            .map(|x| format!(", follow-ups {x:.1}x faster"))
            .unwrap_or_default();
        format!(
            "frame: {frame}\nframes received: {}\nanswers: {} (errors {}, rejected lines {})\ntime to first token: first question median {} ({}), follow-up median {} ({}){speedup}",
            s.frames,
            s.answered,
            s.errors,
            s.rejected_lines,
            ms(s.first_ttft_median_s()),
            s.first_ttft_s.len(),
            ms(s.follow_up_ttft_median_s()),
            s.follow_up_ttft_s.len(),
        )
    }

    pub fn stats_json(&self) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "frame": self.frame_label(),
            "frozen": self.frozen,
            "frames": s.frames,
            "answered": s.answered,
            "errors": s.errors,
            "rejected_lines": s.rejected_lines,
            "first_ttft_ms": s.first_ttft_median_s().map(|v| v * 1e3),
            "follow_up_ttft_ms": s.follow_up_ttft_median_s().map(|v| v * 1e3),
            "follow_up_speedup": s.follow_up_speedup(),
        })
    }
}
