//! The token stream, as in Fuyu: image tokens (a placeholder per patch and a newline per
//! patch row), then beginning-of-sequence, the prompt, beginning-of-answer; the answer
//! follows. Captioning is the empty prompt.

use crate::error::Result;
use crate::frame::Canvas;

use super::TextTokenizer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Caption,
    Question(String),
}

impl Prompt {
    pub fn text(&self) -> &str {
        match self {
            Prompt::Caption => "",
            Prompt::Question(q) => q.trim(),
        }
    }
}

/// Text token ids that follow the image: `<s> prompt <answer>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStream {
    pub text_ids: Vec<u32>,
}

/// Token ids of a text on its own, for image–text matching: `<s> text </s>`, no image.
/// The decoder state at the closing `</s>` is the text's embedding.
pub fn match_ids(tok: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    let sp = tok.special();
    let mut ids = vec![sp.bos];
    ids.extend(tok.encode(text.trim())?);
    ids.push(sp.eos);
    Ok(ids)
}

impl TokenStream {
    pub fn new(tok: &TextTokenizer, prompt: &Prompt) -> Result<TokenStream> {
        let sp = tok.special();
        let mut text_ids = vec![sp.bos];
        text_ids.extend(tok.encode(prompt.text())?);
        text_ids.push(sp.boa);
        Ok(TokenStream { text_ids })
    }

    /// The whole stream with image placeholders, as training and the reference define it.
    pub fn full_ids(&self, tok: &TextTokenizer, canvas: &Canvas) -> Vec<u32> {
        let sp = tok.special();
        let mut ids = Vec::with_capacity(canvas.image_tokens() + self.text_ids.len());
        for _ in 0..canvas.rows() {
            ids.extend(std::iter::repeat_n(sp.image, canvas.cols()));
            ids.push(sp.newline);
        }
        ids.extend(&self.text_ids);
        ids
    }
}
