//! Training the tokenizer: byte-level BPE on the training text, lower-cased, with the
//! special tokens of the token stream at fixed ids 0–5.

use std::path::Path;

use anyhow::{Result, anyhow};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::Lowercase;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use glimpse_runtime::package::{BOA, BOS, EOS, IMAGE, NEWLINE, PAD, SpecialTokens};
use glimpse_runtime::text::TextTokenizer;

pub const FILE: &str = "tokenizer.json";

/// Ids of the special tokens, in the order they are given to the trainer.
pub const SPECIAL: SpecialTokens = SpecialTokens {
    pad: 0,
    bos: 1,
    eos: 2,
    boa: 3,
    newline: 4,
    image: 5,
};

/// Trains a tokenizer on `corpus`. The vocabulary stops growing once every word is whole.
pub fn train(corpus: &[String], max_vocab: usize) -> Result<TextTokenizer> {
    let specials = [PAD, BOS, EOS, BOA, NEWLINE, IMAGE]
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(max_vocab)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok: Tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default().into())
    .with_normalizer(Some(Lowercase.into()))
    .with_pre_tokenizer(Some(ByteLevel::new(true, true, true).into()))
    .with_post_processor(Some(ByteLevel::new(true, true, true).into()))
    .with_decoder(Some(ByteLevel::new(true, true, true).into()))
    .build()
    .map_err(|e| anyhow!("cannot build tokenizer: {e}"))?
    .into();
    tok.train(&mut trainer, corpus.iter())
        .map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
    for (name, id) in SPECIAL.named() {
        anyhow::ensure!(
            tok.token_to_id(name) == Some(id),
            "special token {name} got id {:?}, expected {id}",
            tok.token_to_id(name)
        );
    }
    Ok(TextTokenizer::from_tokenizer(tok, SPECIAL))
}

pub fn save(tok: &TextTokenizer, path: &Path) -> Result<()> {
    tok.inner()
        .save(path, false)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

pub fn load(path: &Path) -> Result<TextTokenizer> {
    let t =
        Tokenizer::from_file(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let size = t.get_vocab_size(true);
    Ok(TextTokenizer::load(
        path,
        size,
        SPECIAL,
        &Default::default(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_single_tokens_and_round_trip() {
        let corpus = crate::data::text_corpus(1, 200);
        let tok = train(&corpus, 2000).unwrap();
        let ids = tok.encode("What color is the circle?").unwrap();
        // what, color, is, the, circle, ?
        assert_eq!(ids.len(), 6, "{ids:?}");
        assert_eq!(tok.decode(&ids).unwrap(), "what color is the circle?");
        let cap = "a large red circle left of a small blue square";
        let ids = tok.encode(cap).unwrap();
        assert_eq!(ids.len(), 10);
        assert_eq!(tok.decode(&ids).unwrap(), cap);
        // special ids are decoded to nothing
        let mut with_special = vec![SPECIAL.bos];
        with_special.extend(&ids);
        with_special.push(SPECIAL.eos);
        assert_eq!(tok.decode(&with_special).unwrap(), cap);
        // unseen text still tokenizes, byte by byte
        assert!(!tok.encode("zebra ü").unwrap().is_empty());
    }
}
