//! Tokens ↔ text, and the token stream the decoder reads.

mod prompt;
mod tokenizer;

pub use prompt::{Prompt, PromptFormat, QUESTION, TokenStream, match_ids};
pub use tokenizer::{TextTokenizer, parse_tokenizer};
