//! Captions that several views of a frame agree on.
//!
//! A model that reads a frame in patches can lose an object whose centre shares a patch
//! column with its neighbour's. Cropping a few pixels off the frame's left or right edge
//! moves every object to another place on the patch grid, so each view is captioned
//! anew; the caption kept is the one whose log-probability, summed over all the views,
//! is highest. It costs about as many prefills and decodes as there are views, and a
//! teacher-forced pass of each distinct caption through each view.

use image::RgbImage;

use crate::generate::Stop;
use crate::model::DecoderSession;
use crate::pipeline::{Answer, Glimpse, ImageContext, Timings};
use crate::text::{Prompt, TokenStream};
use crate::{Error, Result};

/// The crops of each view, left and right, in sixths of a patch as the frame is fitted
/// to the model: the frame itself, then shifts of a third and two thirds of a patch from
/// either side, then crops from both.
const CROPS: [(u32, u32); 7] = [(0, 0), (2, 0), (4, 0), (0, 2), (0, 4), (2, 2), (1, 3)];

/// The most views a caption is made from.
pub const MAX_VIEWS: usize = CROPS.len();

/// The pixels to crop off the left and right of a `width`-pixel frame for each of the
/// first `views` views, when one patch of the model covers `patch_px` frame pixels. A
/// crop that would leave less than half the frame is dropped.
pub fn crops(views: usize, width: u32, patch_px: f64) -> Vec<(u32, u32)> {
    let sixth = patch_px / 6.0;
    CROPS
        .iter()
        .take(views.clamp(1, MAX_VIEWS))
        .map(|&(l, r)| {
            (
                (l as f64 * sixth).round() as u32,
                (r as f64 * sixth).round() as u32,
            )
        })
        .filter(|&(l, r)| (l + r) * 2 <= width)
        .collect()
}

/// Natural log of the softmax of `logits` at `id`.
fn log_prob(logits: &[f32], id: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    (logits[id as usize] - max) as f64 - sum.ln()
}

impl Glimpse {
    /// The caption of `frame` that `views` views of it agree on (see the [module
    /// docs](self)); `views` 1 is [`Glimpse::caption`]. The timings add up every view's
    /// (its image prefill included), the scoring of the captions counted as decoding.
    pub fn caption_views(&self, frame: &RgbImage, views: usize) -> Result<Answer> {
        self.caption_views_from(frame, views, None)
    }

    /// [`Glimpse::caption_views`] of a frame already seen: `image` is the frame's own
    /// context and `seen` a decoder session holding it ([`Glimpse::image_session`]), so
    /// the frame itself is not run through vision and prefilled again. The timings leave
    /// out that view's image prefill, done before.
    pub fn caption_views_seen(
        &self,
        frame: &RgbImage,
        views: usize,
        image: &ImageContext,
        seen: DecoderSession<'_>,
    ) -> Result<Answer> {
        self.caption_views_from(frame, views, Some((image, seen)))
    }

    fn caption_views_from<'g>(
        &'g self,
        frame: &RgbImage,
        views: usize,
        given: Option<(&ImageContext, DecoderSession<'g>)>,
    ) -> Result<Answer> {
        if !(1..=MAX_VIEWS).contains(&views) {
            return Err(Error::Inference(format!(
                "views must be 1 to {MAX_VIEWS}, not {views}"
            )));
        }
        if views == 1 {
            return match given {
                Some((image, seen)) => {
                    let stream = TokenStream::new(&self.tokenizer, &Prompt::Caption)?;
                    self.run_after_image(seen, image, &stream, &mut |_| {})
                }
                None => self.caption(frame),
            };
        }
        let mut seen = self.see_views(frame, views, given)?;
        let scoring = std::time::Instant::now();
        let mut best: Option<(f64, usize)> = None;
        for (i, a) in seen.answers.iter().enumerate() {
            if seen.answers[..i].iter().any(|b| b.tokens == a.tokens) {
                continue;
            }
            let total = self.log_prob_over(&seen.prompted, a)?;
            if best.is_none_or(|(b, _)| total > b) {
                best = Some((total, i));
            }
        }
        let (_, i) = best.ok_or_else(|| Error::Inference("no view of the frame".into()))?;
        // the teacher-forced passes are decoding too
        seen.timings.decode_s += scoring.elapsed().as_secs_f64();
        let mut chosen = seen.answers.swap_remove(i);
        chosen.timings = seen.timings;
        Ok(chosen)
    }

    /// Each of the first `views` views of `frame` captioned greedily, with its session
    /// after the image and the caption prompt and the logits there; the frame itself
    /// (the first view) from `given` when it has been seen already.
    fn see_views<'g>(
        &'g self,
        frame: &RgbImage,
        views: usize,
        mut given: Option<(&ImageContext, DecoderSession<'g>)>,
    ) -> Result<Views<'g>> {
        let (w, h) = frame.dimensions();
        let fitted = self.image_format().fitted_size(&self.canvas(), w, h).0;
        let patch_px = self.canvas().patch as f64 * w as f64 / fitted.max(1) as f64;
        let stream = TokenStream::new(&self.tokenizer, &Prompt::Caption)?;
        let prompt = self.embed(&stream.text_ids)?;
        let mut seen = Views {
            answers: Vec::new(),
            prompted: Vec::new(),
            timings: Timings::default(),
        };
        for (left, right) in crops(views, w, patch_px) {
            let owned;
            let (image, mut session) = match given.take() {
                Some((image, session)) if (left, right) == (0, 0) => (image, session),
                _ => {
                    let view =
                        image::imageops::crop_imm(frame, left, 0, w - left - right, h).to_image();
                    owned = self.see(&view)?;
                    let t = std::time::Instant::now();
                    let session = self.image_session(&owned)?;
                    seen.timings.prefill_s += t.elapsed().as_secs_f64();
                    (&owned, session)
                }
            };
            let a = self.run_after_image(session.clone(), image, &stream, &mut |_| {})?;
            add(&mut seen.timings, &a.timings);
            let t = std::time::Instant::now();
            let logits = session.forward_last(&prompt)?;
            seen.timings.prefill_s += t.elapsed().as_secs_f64();
            seen.prompted.push((session, logits));
            seen.answers.push(a);
        }
        Ok(seen)
    }

    /// The log-probability of `a`'s tokens (and its end, if it ended), summed over the
    /// views, each teacher-forced from a copy of the view's prompted session.
    fn log_prob_over(
        &self,
        prompted: &[(DecoderSession<'_>, Vec<f32>)],
        a: &Answer,
    ) -> Result<f64> {
        let mut ids = a.tokens.clone();
        if a.stop == Stop::End {
            ids.push(self.tokenizer.special().eos);
        }
        let mut total = 0.0;
        for (session, first) in prompted {
            let mut session = session.clone();
            let mut logits = first.clone();
            for (k, &id) in ids.iter().enumerate() {
                total += log_prob(&logits, id);
                if k + 1 < ids.len() {
                    logits = session.forward_last(&self.embed(&[id])?)?;
                }
            }
        }
        Ok(total)
    }
}

/// What [`Glimpse::see_views`] made of the views: each one's greedy caption, its session
/// after the image and the caption prompt with the logits there (every caption is scored
/// from a copy of it, so the prompt is prefilled once a view), and the time it took.
struct Views<'g> {
    answers: Vec<Answer>,
    prompted: Vec<(DecoderSession<'g>, Vec<f32>)>,
    timings: Timings,
}

fn add(sum: &mut Timings, t: &Timings) {
    sum.preprocess_s += t.preprocess_s;
    sum.vision_s += t.vision_s;
    sum.prefill_s += t.prefill_s;
    sum.decode_s += t.decode_s;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_fractions_of_a_patch_and_leave_most_of_the_frame() {
        // 17.8 frame pixels a patch (a 320-pixel frame on 16-pixel patches of 288)
        let c = crops(7, 320, 16.0 * 320.0 / 288.0);
        assert_eq!(c.len(), 7);
        assert_eq!(c[0], (0, 0));
        assert_eq!(c[1], (6, 0));
        assert_eq!(c[2], (12, 0));
        assert_eq!(c[4], (0, 12));
        assert_eq!(c[6], (3, 9));
        assert_eq!(crops(3, 320, 17.8).len(), 3);
        assert_eq!(crops(99, 320, 17.8).len(), MAX_VIEWS);
        // a frame a few pixels wide keeps only the crops that leave half of it
        let narrow = crops(7, 20, 17.8);
        assert!(narrow.iter().all(|&(l, r)| (l + r) * 2 <= 20), "{narrow:?}");
        assert!(narrow.len() < 7 && narrow.contains(&(0, 0)));
    }

    #[test]
    fn log_prob_is_the_log_softmax() {
        let p = log_prob(&[0.0, (3f32).ln()], 1);
        assert!((p - (0.75f64).ln()).abs() < 1e-6, "{p}");
    }
}
