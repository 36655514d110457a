//! Image–text matching (CLIP-style): the decoder state after a frame's image tokens and
//! the state at the end of a text on its own, each projected by its head into one space
//! of unit vectors, where their dot product is the cosine similarity.
//!
//! Nothing is generated: one prefill of the image (which captioning needs anyway) and one
//! short text-only pass per text, cached by the caller when the text is fixed (a trigger).

use image::RgbImage;

use crate::error::{Error, Result};
use crate::model::{DecoderSession, Head, HeadsGraph};
use crate::pipeline::{Glimpse, ImageContext};
use crate::text::match_ids;

/// How well one text matches a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchScore {
    pub text: String,
    /// Cosine similarity in [-1, 1].
    pub cosine: f32,
    /// Softmax over the texts given, of cosines times the model's learned scale.
    pub probability: f32,
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax of `cosines × scale`.
pub fn probabilities(cosines: &[f32], scale: f32) -> Vec<f32> {
    let max = cosines.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = cosines.iter().map(|c| ((c - max) * scale).exp()).collect();
    let total: f32 = e.iter().sum();
    e.iter().map(|x| x / total).collect()
}

impl Glimpse {
    /// Whether the package can match images and texts.
    pub fn can_match(&self) -> bool {
        self.heads.is_some()
    }

    fn heads(&self) -> Result<&HeadsGraph> {
        self.heads.as_ref().ok_or_else(|| Error::NoMatching {
            path: self.package.dir.clone(),
        })
    }

    /// The learned scale that turns cosines into softmax logits.
    pub fn logit_scale(&self) -> Result<f32> {
        self.heads()?;
        Ok(self
            .package
            .manifest
            .matching
            .as_ref()
            .map(|m| m.logit_scale)
            .unwrap_or(1.0))
    }

    /// A decoder session holding `image`'s tokens, and the image's embedding: the
    /// session continues into a caption or question without prefilling the image again.
    pub fn image_session_and_embedding(
        &self,
        image: &ImageContext,
    ) -> Result<(DecoderSession<'_>, Vec<f32>)> {
        let heads = self.heads()?;
        let mut session = self.session()?;
        let (_, state) = session.forward_with_state(&image.embeddings)?;
        Ok((session, heads.run(&state, Head::Image)?))
    }

    /// The unit-length embedding of a frame.
    pub fn image_embedding(&self, frame: &RgbImage) -> Result<Vec<f32>> {
        let image = self.see(frame)?;
        Ok(self.image_session_and_embedding(&image)?.1)
    }

    /// The unit-length embedding of a text.
    pub fn text_embedding(&self, text: &str) -> Result<Vec<f32>> {
        let heads = self.heads()?;
        let ids = match_ids(&self.tokenizer, text)?;
        if ids.len() > self.max_positions() {
            return Err(Error::TextTooLong {
                tokens: ids.len(),
                limit: self.max_positions(),
            });
        }
        let mut session = self.session()?;
        let (_, state) = session.forward_with_state(&self.embed(&ids)?)?;
        heads.run(&state, Head::Text)
    }

    /// Scores of `texts` against an image embedding, in the order given.
    pub fn scores(&self, image: &[f32], texts: &[(String, Vec<f32>)]) -> Result<Vec<MatchScore>> {
        if texts.is_empty() {
            return Err(Error::NoTexts);
        }
        let cosines: Vec<f32> = texts.iter().map(|(_, t)| cosine(image, t)).collect();
        let probs = probabilities(&cosines, self.logit_scale()?);
        Ok(texts
            .iter()
            .zip(cosines.iter().zip(probs))
            .map(|((text, _), (&cosine, probability))| MatchScore {
                text: text.clone(),
                cosine,
                probability,
            })
            .collect())
    }

    /// How well each of `texts` matches `frame`.
    pub fn match_texts(&self, frame: &RgbImage, texts: &[&str]) -> Result<Vec<MatchScore>> {
        if texts.is_empty() {
            return Err(Error::NoTexts);
        }
        let image = self.image_embedding(frame)?;
        let texts = texts
            .iter()
            .map(|t| Ok((t.to_string(), self.text_embedding(t)?)))
            .collect::<Result<Vec<_>>>()?;
        self.scores(&image, &texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_a_softmax_of_scaled_cosines() {
        let p = probabilities(&[0.5, 0.0], 2.0f32.ln());
        // logits ln2·0.5 and 0: e^(0.5 ln 2) = √2 against 1
        let want = 2f32.sqrt() / (1.0 + 2f32.sqrt());
        assert!((p[0] - want).abs() < 1e-6, "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        let p = probabilities(&[0.9, 0.1, -0.3], 100.0);
        assert!(p[0] > 0.999 && p[2] < 1e-30 + 1e-6);
    }

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-6);
    }
}
