//! Greedy decoding: prefill image and prompt in one decoder call, then one token per step
//! with the KV cache, until end of sequence, the token limit or the context is full
//! ([`Stop`] says which).

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{DecoderSession, EmbeddingGraph};
use crate::text::TextTokenizer;

/// Index of the largest value (the first one on ties).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stop {
    /// The model ended its answer (end-of-text token): the text is whole.
    #[default]
    End,
    /// The answer reached the token limit (`--max-tokens`, else the package's
    /// `max_new_tokens`) and the model had more to say: the text is cut.
    TokenLimit,
    /// The decoder's context (`max_positions`) is full: the text may be cut.
    ContextFull,
}

impl Stop {
    /// The name JSON outputs give it: `end`, `token_limit` or `context_full`.
    pub fn name(self) -> &'static str {
        match self {
            Stop::End => "end",
            Stop::TokenLimit => "token_limit",
            Stop::ContextFull => "context_full",
        }
    }

    /// A note for text outputs when the answer was cut, `None` when it is whole.
    pub fn cut_note(self) -> Option<&'static str> {
        match self {
            Stop::End => None,
            Stop::TokenLimit => Some("cut at the token limit (--max-tokens raises it)"),
            Stop::ContextFull => Some("cut where the model's context ends"),
        }
    }
}

/// What came out of one generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: Stop,
    /// Seconds spent in the prefill call, and decoding after it.
    pub prefill_s: f64,
    pub decode_s: f64,
}

/// Runs greedy decoding from `session` (already holding any shared prefix) after
/// appending `prefix` embeddings. `on_text` receives each new piece of text as it is decoded.
pub fn greedy(
    session: &mut DecoderSession<'_>,
    embedding: &EmbeddingGraph,
    tokenizer: &TextTokenizer,
    prefix: &[f32],
    max_positions: usize,
    max_new_tokens: usize,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generated> {
    let eos = tokenizer.special().eos;
    let t0 = Instant::now();
    let mut logits = session.forward_last(prefix)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut tokens = Vec::new();
    let mut shown = String::new();
    let stop = loop {
        let next = argmax(&logits);
        if next == eos {
            break Stop::End;
        }
        // at the limit, the step after the last token tells a whole answer from a cut one
        if tokens.len() >= max_new_tokens {
            break Stop::TokenLimit;
        }
        tokens.push(next);
        let text = tokenizer.decode(&tokens)?;
        if let Some(new) = text.strip_prefix(shown.as_str())
            && !new.is_empty()
        {
            on_text(new);
        }
        shown = text;
        if session.len() + 1 > max_positions {
            break Stop::ContextFull;
        }
        let e = embedding.run(&[next])?;
        logits = session.forward_last(&e)?;
    };
    Ok(Generated {
        text: tokenizer.decode(&tokens)?,
        tokens,
        stop,
        prefill_s,
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

/// Fails early when a prompt leaves no room for an answer token.
pub fn check_room(tokens: usize, max_positions: usize) -> Result<()> {
    if tokens + 1 > max_positions {
        return Err(Error::PromptTooLong {
            tokens,
            limit: max_positions,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }

    #[test]
    fn room_is_checked() {
        assert!(check_room(10, 11).is_ok());
        assert!(matches!(
            check_room(11, 11),
            Err(Error::PromptTooLong {
                tokens: 11,
                limit: 11
            })
        ));
    }
}
