//! The package's `tokenizer.json`, checked against the manifest.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::package::SpecialTokens;

pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialTokens,
}

impl TextTokenizer {
    /// Loads `path` and checks its vocabulary size and special tokens against the manifest.
    pub fn load(path: &Path, vocab_size: usize, special: SpecialTokens) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let size = inner.get_vocab_size(true);
        if size != vocab_size {
            return Err(Error::VocabMismatch {
                path: path.to_path_buf(),
                manifest: vocab_size,
                tokenizer: size,
            });
        }
        for (name, id) in special.named() {
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
        Ok(Self { inner, special })
    }

    pub fn from_tokenizer(inner: Tokenizer, special: SpecialTokens) -> Self {
        Self { inner, special }
    }

    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Token ids of plain text, without special tokens.
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
