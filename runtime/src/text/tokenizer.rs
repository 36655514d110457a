//! The package's `tokenizer.json`, checked against the manifest.

use std::path::Path;

use tokenizers::Tokenizer;

use super::PromptFormat;
use crate::error::{Error, Result};
use crate::package::{SpecialTokenNames, SpecialTokens};

/// Reads a `tokenizer.json` (a package's, or a checkpoint's at import): an unreadable
/// file, bad JSON, or one the tokenizer library refuses is an error naming it.
pub fn parse_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bad = |reason: String| Error::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    // tokenizers panics on some malformed files (a decoder cut short): the JSON is checked
    // first, and a panic that still escapes becomes an error
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let parsed = std::panic::catch_unwind(|| text.parse::<Tokenizer>())
        .map_err(|_| bad("the tokenizer library could not read it".into()))?;
    parsed.map_err(|e| bad(e.to_string()))
}

pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialTokens,
    prompt: PromptFormat,
}

impl TextTokenizer {
    /// Loads `path` and checks its vocabulary size and special tokens (ids and names)
    /// against the manifest.
    pub fn load(
        path: &Path,
        vocab_size: usize,
        special: SpecialTokens,
        names: &SpecialTokenNames,
    ) -> Result<Self> {
        let mut inner = parse_tokenizer(path)?;
        let size = inner.get_vocab_size(true);
        if size != vocab_size {
            return Err(Error::VocabMismatch {
                path: path.to_path_buf(),
                manifest: vocab_size,
                tokenizer: size,
            });
        }
        for (name, id) in names.with_ids(&special) {
            if inner.token_to_id(name) != Some(id) {
                return Err(Error::Tokenizer {
                    path: path.to_path_buf(),
                    reason: format!(
                        "special token {name} should have id {id} but has {:?}",
                        inner.token_to_id(name)
                    ),
                });
            }
        }
        // User text is text: `</s>` typed in a question is five characters, not the end
        // of the sequence. The stream's special tokens are placed by id, never by matching.
        inner.set_encode_special_tokens(true);
        Ok(Self {
            inner,
            special,
            prompt: PromptFormat::default(),
        })
    }

    pub fn from_tokenizer(mut inner: Tokenizer, special: SpecialTokens) -> Self {
        inner.set_encode_special_tokens(true);
        Self {
            inner,
            special,
            prompt: PromptFormat::default(),
        }
    }

    /// The same tokenizer with the package's prompt texts.
    pub fn with_prompt(mut self, prompt: PromptFormat) -> Self {
        self.prompt = prompt;
        self
    }

    pub fn prompt_format(&self) -> &PromptFormat {
        &self.prompt
    }

    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Token ids of plain text. Special tokens are never matched in it: the text
    /// `<answer>` gives ordinary tokens, never the id of `<answer>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Inference(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of generated ids; special tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .inner
            .decode(ids, true)
            .map_err(|e| Error::Inference(format!("cannot decode tokens {ids:?}: {e}")))?;
        Ok(text.trim().to_string())
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
