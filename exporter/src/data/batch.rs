//! Turning examples into the tensors the model trains on.
//!
//! Text of one example: `<s> prompt <answer> answer </s>`, after the image tokens. Position
//! `j` of the text predicts token `j + 1`; only answer tokens and the end of sequence count
//! in the loss. Shorter rows are padded at the end, which causal attention never looks at.
//!
//! Consecutive examples about the same image are packed into one row, up to
//! [`BatchBuilder::pack`] text tokens: the image tokens are computed once and each text
//! attends to them and to itself only, at the positions it would have alone
//! ([`crate::model::fuyu::Layout::packed`]). A scene's caption and its questions then cost
//! one image, not one each.

use glimpse_runtime::frame::Canvas;
use glimpse_runtime::package::SpecialTokens;
use std::borrow::Cow;
use std::sync::Arc;

use glimpse_runtime::text::{Prompt, TextTokenizer, TokenStream, match_ids};

use super::{Example, MatchText, WordNoise};
use glimpse_runtime::scene::Rng;

#[derive(Debug, Clone)]
pub struct Batch {
    /// Rows.
    pub size: usize,
    /// Examples packed into the rows.
    pub examples: usize,
    /// Text length of a row after padding.
    pub text_len: usize,
    /// `[size, rows, cols, patch_dim]`
    pub patches: Vec<f32>,
    /// `[size, text_len]`
    pub ids: Vec<i64>,
    /// `[size, text_len]`: the token each text position should predict.
    pub targets: Vec<i64>,
    /// `[size, text_len]`: 1 where the prediction counts in the loss.
    pub weights: Vec<f32>,
    /// `[size, text_len]`: the rotary position of each text token (the image takes
    /// `0..image_tokens`, so each text starts at `image_tokens`).
    pub positions: Vec<i64>,
    /// `[size, text_len]`: which text of its row each token belongs to (`-1`: padding).
    pub segments: Vec<i64>,
    /// Tokens that count in the loss.
    pub answer_tokens: usize,
    /// The contrastive part: one text per distinct image, when at least two images of
    /// the batch have matching texts.
    pub matching: Option<MatchBatch>,
}

/// Texts paired with the batch's distinct images, for the contrastive loss.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchBatch {
    /// `[n]`: the batch row whose image is image `i`.
    pub rows: Vec<i64>,
    /// `[n, len]`: `<s> text </s>`, padded at the end.
    pub ids: Vec<i64>,
    pub len: usize,
    /// `[n]`: index of each text's `</s>`.
    pub last: Vec<i64>,
    /// `[n, n]`: 1 where text `j` is true of image `i`.
    pub positives: Vec<f32>,
}

/// One row of a batch while it is built: the example whose image it shows, and its texts
/// (token ids, index of the `<answer>` token) with their total length.
struct Row<'e> {
    shows: &'e Example,
    texts: Vec<(Vec<u32>, usize)>,
    len: usize,
}

pub struct BatchBuilder<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub canvas: Canvas,
    pub max_positions: usize,
    /// Most text tokens packed into one row; a text longer than this gets a row alone.
    pub pack: usize,
}

impl BatchBuilder<'_> {
    /// Token ids of an example's text and the index of its `<answer>` token.
    pub fn text_ids(&self, ex: &Example) -> anyhow::Result<(Vec<u32>, usize)> {
        let special: SpecialTokens = self.tokenizer.special();
        let prompt = if ex.prompt.is_empty() {
            Prompt::Caption
        } else {
            Prompt::Question(ex.prompt.clone())
        };
        let mut ids = TokenStream::new(self.tokenizer, &prompt)?.text_ids;
        let boa = ids.len() - 1;
        ids.extend(self.tokenizer.encode(&ex.answer)?);
        ids.push(special.eos);
        Ok((ids, boa))
    }

    /// Builds a batch, leaving out examples too long for the context.
    pub fn build(&self, examples: &[Example]) -> anyhow::Result<Batch> {
        self.build_with(examples, None)
    }

    /// [`Self::build`] with `noise` applied to the input ids (the targets stay the
    /// texts' own), drawn from `rng`.
    pub fn build_noisy(
        &self,
        examples: &[Example],
        noise: &WordNoise,
        rng: &mut Rng,
    ) -> anyhow::Result<Batch> {
        self.build_with(examples, Some((noise, rng)))
    }

    /// The rows of a batch of `examples`: consecutive examples of one image share a row
    /// up to `self.pack` tokens; examples too long for the context are left out, and
    /// the number kept comes with the rows.
    fn pack_rows<'e>(&self, examples: &'e [Example]) -> anyhow::Result<(Vec<Row<'e>>, usize)> {
        let room = self.max_positions - self.canvas.image_tokens();
        let mut rows: Vec<Row> = Vec::new();
        let mut packed = 0;
        for ex in examples {
            let (ids, boa) = self.text_ids(ex)?;
            if ids.len() > room {
                continue;
            }
            packed += 1;
            match rows.last_mut() {
                Some(row)
                    if Arc::ptr_eq(&row.shows.image, &ex.image)
                        && row.len + ids.len() <= self.pack =>
                {
                    row.len += ids.len();
                    row.texts.push((ids, boa));
                }
                _ => rows.push(Row {
                    shows: ex,
                    len: ids.len(),
                    texts: vec![(ids, boa)],
                }),
            }
        }
        anyhow::ensure!(
            !rows.is_empty(),
            "every example is longer than the model's context"
        );
        Ok((rows, packed))
    }

    fn build_with(
        &self,
        examples: &[Example],
        mut noise: Option<(&WordNoise, &mut Rng)>,
    ) -> anyhow::Result<Batch> {
        let (rows, packed) = self.pack_rows(examples)?;
        let size = rows.len();
        let text_len = rows.iter().map(|r| r.len).max().unwrap_or(1);
        let image_tokens = self.canvas.image_tokens() as i64;
        let pad = self.tokenizer.special().pad as i64;
        let mut ids = vec![pad; size * text_len];
        let mut targets = vec![pad; size * text_len];
        let mut weights = vec![0.0f32; size * text_len];
        let mut positions = vec![image_tokens; size * text_len];
        let mut segments = vec![-1i64; size * text_len];
        let mut answer_tokens = 0;
        for (b, row) in rows.iter().enumerate() {
            let mut at = b * text_len;
            for (segment, (t, boa)) in row.texts.iter().enumerate() {
                let input = match noise.as_mut() {
                    Some((n, rng)) => Cow::Owned(n.apply(t, *boa, rng)),
                    None => Cow::Borrowed(t.as_slice()),
                };
                for (j, &id) in input.iter().enumerate() {
                    ids[at + j] = id as i64;
                    positions[at + j] = image_tokens + j as i64;
                    segments[at + j] = segment as i64;
                    if j + 1 < t.len() {
                        targets[at + j] = t[j + 1] as i64;
                        if j >= *boa {
                            weights[at + j] = 1.0;
                            answer_tokens += 1;
                        }
                    }
                }
                at += t.len();
            }
        }
        let shown: Vec<&Example> = rows.iter().map(|r| r.shows).collect();
        let matching = self.matching(&shown)?;
        let mut patches = Vec::with_capacity(
            size * self.canvas.rows() * self.canvas.cols() * self.canvas.patch_dim(),
        );
        for ex in shown {
            patches.extend(self.canvas.patches(&ex.image).data);
        }
        Ok(Batch {
            size,
            examples: packed,
            text_len,
            patches,
            ids,
            targets,
            weights,
            positions,
            segments,
            answer_tokens,
            matching,
        })
    }

    /// One matching text per distinct image of `examples` (the batch's rows).
    fn matching(&self, examples: &[&Example]) -> anyhow::Result<Option<MatchBatch>> {
        let mut rows = Vec::new();
        let mut texts: Vec<&MatchText> = Vec::new();
        for (row, ex) in examples.iter().enumerate() {
            let Some(m) = &ex.matching else { continue };
            if examples[..row]
                .iter()
                .any(|e| Arc::ptr_eq(&e.image, &ex.image))
            {
                continue;
            }
            rows.push(row as i64);
            texts.push(m);
        }
        if texts.len() < 2 {
            return Ok(None);
        }
        let n = texts.len();
        let mut id_rows = Vec::with_capacity(n);
        for t in &texts {
            let mut ids = match_ids(self.tokenizer, &t.text)?;
            ids.truncate(self.max_positions);
            id_rows.push(ids);
        }
        let len = id_rows.iter().map(Vec::len).max().unwrap_or(1);
        let pad = self.tokenizer.special().pad as i64;
        let mut ids = vec![pad; n * len];
        let mut last = Vec::with_capacity(n);
        for (i, r) in id_rows.iter().enumerate() {
            for (j, &id) in r.iter().enumerate() {
                ids[i * len + j] = id as i64;
            }
            last.push(r.len() as i64 - 1);
        }
        let mut positives = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i == j || texts[j].is_true_of(texts[i]) {
                    positives[i * n + j] = 1.0;
                }
            }
        }
        Ok(Some(MatchBatch {
            rows,
            ids,
            len,
            last,
            positives,
        }))
    }
}
