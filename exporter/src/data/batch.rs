//! Turning examples into the tensors the model trains on.
//!
//! Text of one example: `<s> prompt <answer> answer </s>`, after the image tokens. Position
//! `j` of the text predicts token `j + 1`; only answer tokens and the end of sequence count
//! in the loss. Shorter texts are padded at the end, which causal attention never looks at.

use glimpse_runtime::frame::Canvas;
use glimpse_runtime::package::SpecialTokens;
use glimpse_runtime::text::{Prompt, TextTokenizer, TokenStream};

use super::Example;

#[derive(Debug, Clone)]
pub struct Batch {
    pub size: usize,
    /// Text length after padding.
    pub text_len: usize,
    /// `[size, rows, cols, patch_dim]`
    pub patches: Vec<f32>,
    /// `[size, text_len]`
    pub ids: Vec<i64>,
    /// `[size, text_len]`: the token each text position should predict.
    pub targets: Vec<i64>,
    /// `[size, text_len]`: 1 where the prediction counts in the loss.
    pub weights: Vec<f32>,
    /// Tokens that count in the loss.
    pub answer_tokens: usize,
}

pub struct BatchBuilder<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub canvas: Canvas,
    pub max_positions: usize,
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
        let room = self.max_positions - self.canvas.image_tokens();
        let mut texts = Vec::new();
        let mut images = Vec::new();
        for ex in examples {
            let (ids, boa) = self.text_ids(ex)?;
            if ids.len() <= room {
                texts.push((ids, boa));
                images.push(ex);
            }
        }
        anyhow::ensure!(
            !texts.is_empty(),
            "every example is longer than the model's context"
        );
        let size = texts.len();
        let text_len = texts.iter().map(|(t, _)| t.len()).max().unwrap_or(1);
        let pad = self.tokenizer.special().pad as i64;
        let mut ids = vec![pad; size * text_len];
        let mut targets = vec![pad; size * text_len];
        let mut weights = vec![0.0f32; size * text_len];
        let mut answer_tokens = 0;
        for (b, (t, boa)) in texts.iter().enumerate() {
            for (j, &id) in t.iter().enumerate() {
                ids[b * text_len + j] = id as i64;
                if j + 1 < t.len() {
                    targets[b * text_len + j] = t[j + 1] as i64;
                    if j >= *boa {
                        weights[b * text_len + j] = 1.0;
                        answer_tokens += 1;
                    }
                }
            }
        }
        let mut patches = Vec::with_capacity(
            size * self.canvas.rows() * self.canvas.cols() * self.canvas.patch_dim(),
        );
        for ex in images {
            patches.extend(self.canvas.patches(&ex.image).data);
        }
        Ok(Batch {
            size,
            text_len,
            patches,
            ids,
            targets,
            weights,
            answer_tokens,
        })
    }
}
