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

/// Most tokens [`extend`] adds.
pub const MAX_NEW_TOKENS: usize = 4096;

/// A tokenizer grown for a new corpus, and where each new token comes from.
pub struct Grown {
    pub tokenizer: TextTokenizer,
    /// For each new id (from the old vocabulary's size on, in order), the old ids of the
    /// pieces it joins; a new token's embedding starts as their mean.
    pub pieces: Vec<Vec<u32>>,
}

/// The words of `corpus` that `inner` splits into several tokens, as those tokens, seen
/// at least `min_count` times: the most frequent first, ties in token order.
fn split_words(inner: &Tokenizer, corpus: &[String], min_count: usize) -> Result<Vec<Vec<u32>>> {
    use std::collections::{BTreeMap, HashMap};
    let mut counts: HashMap<Vec<u32>, usize> = HashMap::new();
    for text in corpus {
        let enc = inner
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        let mut words: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (id, word) in enc.get_ids().iter().zip(enc.get_word_ids()) {
            if let Some(w) = word {
                words.entry(*w).or_default().push(*id);
            }
        }
        for ids in words.into_values().filter(|ids| ids.len() > 1) {
            *counts.entry(ids).or_default() += 1;
        }
    }
    let mut words: Vec<(Vec<u32>, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= min_count)
        .collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(words.into_iter().map(|(ids, _)| ids).collect())
}

/// Words of `corpus` seen at least `min_count` times that `tok` splits into several
/// tokens become tokens of their own. The new merges come after the old ones and the new
/// ids after the old vocabulary, so every old id keeps its token and every old merge its
/// rank: text made of the old words encodes as before.
pub fn extend(tok: &TextTokenizer, corpus: &[String], min_count: usize) -> Result<Grown> {
    use std::collections::{HashMap, HashSet};
    let inner = tok.inner();
    let words = split_words(inner, corpus, min_count)?;
    let mut json: serde_json::Value = serde_json::from_str(
        &inner
            .to_string(false)
            .map_err(|e| anyhow!("cannot serialise the tokenizer: {e}"))?,
    )?;
    let model = json
        .get_mut("model")
        .and_then(|m| m.as_object_mut())
        .ok_or_else(|| anyhow!("the tokenizer has no model"))?;
    let mut vocab: HashMap<String, u32> = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| anyhow!("the tokenizer's model has no vocabulary"))?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()? as u32)))
        .collect();
    let old_size = inner.get_vocab_size(true) as u32;
    let mut merges: HashSet<(String, String)> = model
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| anyhow!("the tokenizer's model has no merges"))?
        .iter()
        .filter_map(|m| {
            let pair = m.as_array()?;
            Some((
                pair.first()?.as_str()?.to_string(),
                pair.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut new_merges = Vec::new();
    let mut pieces: Vec<Vec<u32>> = Vec::new();
    let text = |id: u32| {
        inner
            .id_to_token(id)
            .ok_or_else(|| anyhow!("token id {id} has no text"))
    };
    for ids in words {
        let mut joined = text(ids[0])?;
        for k in 1..ids.len() {
            let next = text(ids[k])?;
            if merges.insert((joined.clone(), next.clone())) {
                new_merges.push(serde_json::json!([joined, next]));
            }
            joined.push_str(&next);
            if !vocab.contains_key(&joined) {
                if pieces.len() >= MAX_NEW_TOKENS {
                    break;
                }
                vocab.insert(joined.clone(), old_size + pieces.len() as u32);
                pieces.push(ids[..=k].to_vec());
            }
        }
    }
    let vocab_json: serde_json::Map<String, serde_json::Value> =
        vocab.into_iter().map(|(k, v)| (k, v.into())).collect();
    model.insert("vocab".into(), vocab_json.into());
    if let Some(m) = model.get_mut("merges").and_then(|m| m.as_array_mut()) {
        m.extend(new_merges);
    }
    let grown: Tokenizer = json
        .to_string()
        .parse()
        .map_err(|e| anyhow!("cannot rebuild the grown tokenizer: {e}"))?;
    anyhow::ensure!(
        grown.get_vocab_size(true) == old_size as usize + pieces.len(),
        "the grown tokenizer has {} tokens, expected {}",
        grown.get_vocab_size(true),
        old_size as usize + pieces.len()
    );
    Ok(Grown {
        tokenizer: TextTokenizer::from_tokenizer(grown, SPECIAL),
        pieces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_tokenizer_keeps_every_old_id_and_makes_new_words_whole() {
        let corpus = crate::data::text_corpus(1, 200);
        let tok = train(&corpus, 2000).unwrap();
        let old = tok.inner().get_vocab(true);
        let user: Vec<String> = [
            "a zebra next to a giraffe",
            "is the zebra left of the giraffe?",
            "the zebra",
            "a unicorn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let before = tok.encode("a zebra").unwrap();
        assert!(before.len() > 2, "{before:?}");
        let grown = extend(&tok, &user, 2).unwrap();
        let new = grown.tokenizer.inner().get_vocab(true);
        for (token, id) in &old {
            assert_eq!(new.get(token), Some(id), "{token} moved");
        }
        assert_eq!(new.len(), old.len() + grown.pieces.len());
        // the synthetic texts encode exactly as before
        for text in corpus.iter().take(200) {
            assert_eq!(
                grown.tokenizer.encode(text).unwrap(),
                tok.encode(text).unwrap(),
                "{text}"
            );
        }
        // words seen twice are one token each, after the old ids; a word seen once is not
        let ids = grown.tokenizer.encode("a zebra next to a giraffe").unwrap();
        let zebra = grown.tokenizer.encode(" zebra").unwrap();
        assert_eq!(zebra.len(), 1);
        assert!(zebra[0] as usize >= old.len());
        assert!(ids.contains(&zebra[0]));
        assert_eq!(grown.tokenizer.encode(" giraffe").unwrap().len(), 1);
        assert!(grown.tokenizer.encode(" unicorn").unwrap().len() > 1);
        assert_eq!(
            grown.tokenizer.decode(&ids).unwrap(),
            "a zebra next to a giraffe"
        );
        // each new token remembers the old pieces it joins
        let made_of = &grown.pieces[zebra[0] as usize - old.len()];
        let pieces = tok.encode(" zebra").unwrap();
        assert_eq!(made_of, &pieces);
        // growing again with nothing new adds nothing
        let again = extend(&grown.tokenizer, &user, 2).unwrap();
        assert!(again.pieces.is_empty());
    }

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
