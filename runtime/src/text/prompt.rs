//! The token stream, as in Fuyu: image tokens (a placeholder per patch and a newline per
//! patch row), then beginning-of-sequence, the prompt, beginning-of-answer; the answer
//! follows. How a request becomes prompt text is the package's [`PromptFormat`]: Glimpse's
//! own models caption from the empty prompt, Fuyu-8B from "Generate a coco-style caption.\n".

use serde::{Deserialize, Serialize};

use crate::error::Result;

use super::TextTokenizer;

/// The prompt texts of a package (manifest field `prompt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptFormat {
    /// The prompt of a caption.
    pub caption: String,
    /// The prompt of a question: `{question}` stands for the question, trimmed.
    pub question: String,
}

/// The placeholder for the question in [`PromptFormat::question`].
pub const QUESTION: &str = "{question}";

impl Default for PromptFormat {
    fn default() -> Self {
        PromptFormat {
            caption: String::new(),
            question: QUESTION.into(),
        }
    }
}

impl PromptFormat {
    /// The prompt text of a request.
    pub fn text(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::Caption => self.caption.clone(),
            Prompt::Question(q) => self.question.replace(QUESTION, q.trim()),
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.question.contains(QUESTION) {
            return Err(format!(
                "prompt.question {:?} has no {QUESTION} placeholder",
                self.question
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Caption,
    Question(String),
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
        text_ids.extend(tok.encode(&tok.prompt_format().text(prompt))?);
        text_ids.push(sp.boa);
        Ok(TokenStream { text_ids })
    }

    /// The whole stream with image placeholders for a `rows × cols` patch grid, as
    /// training and the reference define it.
    pub fn full_ids(&self, tok: &TextTokenizer, rows: usize, cols: usize) -> Vec<u32> {
        let sp = tok.special();
        let mut ids = Vec::with_capacity(rows * (cols + 1) + self.text_ids.len());
        for _ in 0..rows {
            ids.extend(std::iter::repeat_n(sp.image, cols));
            ids.push(sp.newline);
        }
        ids.extend(&self.text_ids);
        ids
    }
}
