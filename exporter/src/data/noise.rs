//! Word noise: some words of a training text swapped in the model's input, its targets kept.
//!
//! Two shortcuts hurt a model that must read the image:
//! - a caption's next word predicted from the words before it rather than from the frame
//!   ("red" is followed by the shape seen most often in red, so a colour–shape pair never
//!   seen together is named by the shape its colour came with);
//! - a question read by its exact wording, so that one unfamiliar filler word changes the
//!   answer.
//!
//! With probability `p` each colour, shape and size word of an answer is swapped, as input,
//! for another word of its class, and each question token that names nothing (not a colour,
//! shape, size or number) and does not tell the question's kind ("colour", "shape", "how
//! many", "left", …) for another such token. The word the model must predict at every
//! position stays the true one, so what it learns to lean on is the image.

use std::collections::HashSet;

use anyhow::Result;
use glimpse_runtime::scene::{self, Color, Rng, Shape, Size};
use glimpse_runtime::text::TextTokenizer;

/// Words that tell which kind of question is asked: swapping one would leave a question
/// whose answer no longer follows from its words ("what shape is the red star?" answered
/// "red"), so they are kept like the naming words.
const KIND_WORDS: [&str; 15] = [
    "color", "colour", "shape", "shapes", "objects", "things", "how", "many", "count", "number",
    "left", "right", "size", "big", "side",
];

pub struct WordNoise {
    p: f32,
    /// Single-token words that may stand for each other: colours, shapes, sizes.
    classes: Vec<Vec<u32>>,
    /// Every token of a word that names something or tells the question's kind; never
    /// swapped out of a question, never swapped into one.
    naming: HashSet<u32>,
    /// Tokens a question's other tokens may become.
    fillers: Vec<u32>,
    special: HashSet<u32>,
}

impl WordNoise {
    pub fn new(tok: &TextTokenizer, p: f32) -> Result<Self> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&p),
            "word noise must be a probability from 0 to 1, not {p}"
        );
        let single = |words: Vec<&str>| -> Result<Vec<u32>> {
            let mut ids = Vec::new();
            for w in words {
                if let [id] = tok.encode(w)?[..] {
                    ids.push(id);
                }
            }
            Ok(ids)
        };
        let classes = vec![
            single(Color::ALL.iter().map(|c| c.word()).collect())?,
            single(Shape::ALL.iter().map(|s| s.word()).collect())?,
            single(Size::ALL.iter().map(|s| s.word()).collect())?,
        ]
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
        let mut naming = HashSet::new();
        for w in scene::vocabulary()
            .iter()
            .map(String::as_str)
            .chain(KIND_WORDS)
        {
            naming.extend(tok.encode(w)?);
        }
        let sp = tok.special();
        let special: HashSet<u32> = [sp.bos, sp.eos, sp.boa, sp.pad, sp.image, sp.newline]
            .into_iter()
            .chain(
                tok.inner()
                    .get_added_tokens_decoder()
                    .into_keys()
                    .collect::<Vec<_>>(),
            )
            .collect();
        let mut fillers: Vec<u32> = tok
            .inner()
            .get_vocab(false)
            .into_values()
            .filter(|id| !naming.contains(id) && !special.contains(id))
            .collect();
        // the vocabulary comes from a hash map: a fixed order keeps runs reproducible
        fillers.sort_unstable();
        Ok(Self {
            p,
            classes,
            naming,
            fillers,
            special,
        })
    }

    /// The input ids of one text (`<s> prompt <answer> answer </s>`, the `<answer>` token
    /// at `boa`) with the noise applied.
    pub fn apply(&self, ids: &[u32], boa: usize, rng: &mut Rng) -> Vec<u32> {
        ids.iter()
            .enumerate()
            .map(|(j, &id)| {
                if self.special.contains(&id) || !rng.chance(self.p) {
                    return id;
                }
                if j < boa {
                    if self.naming.contains(&id) || self.fillers.is_empty() {
                        id
                    } else {
                        *rng.pick(&self.fillers)
                    }
                } else {
                    match self.classes.iter().find(|c| c.contains(&id)) {
                        Some(class) => {
                            // another word of the class, never the same one
                            let i = class.iter().position(|&x| x == id).unwrap_or(0);
                            class[(i + 1 + rng.below(class.len() - 1)) % class.len()]
                        }
                        None => id,
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ExampleSource, text_corpus};

    fn tokenizer() -> TextTokenizer {
        crate::tokenizer::train(&text_corpus(3, 300), 512).unwrap()
    }

    fn words(tok: &TextTokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| tok.inner().id_to_token(id).unwrap_or_default())
            .collect()
    }

    #[test]
    fn answers_swap_words_within_their_class_and_questions_keep_what_they_name() {
        let tok = tokenizer();
        let sp = tok.special();
        let noise = WordNoise::new(&tok, 0.5).unwrap();
        let question = tok.encode("what shape is the red object?").unwrap();
        let answer = tok
            .encode("a large red circle left of a small blue star")
            .unwrap();
        let mut ids = vec![sp.bos];
        ids.extend(&question);
        let boa = ids.len();
        ids.push(sp.boa);
        ids.extend(&answer);
        ids.push(sp.eos);
        let class_of = |id: u32| noise.classes.iter().position(|c| c.contains(&id));
        let mut swapped = (0, 0);
        for seed in 0..200 {
            let out = noise.apply(&ids, boa, &mut Rng::new(seed));
            assert_eq!(out.len(), ids.len());
            for (j, (&a, &b)) in ids.iter().zip(&out).enumerate() {
                if noise.special.contains(&a) {
                    assert_eq!(a, b, "a special token changed");
                } else if j < boa {
                    if noise.naming.contains(&a) {
                        assert_eq!(a, b, "{:?} changed in the question", words(&tok, &[a]));
                    } else if a != b {
                        assert!(!noise.naming.contains(&b), "{:?}", words(&tok, &[b]));
                        swapped.0 += 1;
                    }
                } else if a != b {
                    assert_eq!(class_of(a), class_of(b), "{:?}", words(&tok, &[a, b]));
                    assert!(class_of(a).is_some(), "{:?} swapped", words(&tok, &[a]));
                    swapped.1 += 1;
                }
            }
        }
        // "red", "large", "circle", "small", "blue", "star": six words of three classes
        assert_eq!(noise.classes.len(), 3);
        let answer_words = answer.iter().filter(|&&id| class_of(id).is_some()).count();
        assert_eq!(answer_words, 6);
        let near = |n: usize, of: usize| (n as f32 / (of * 200) as f32 - 0.5).abs() < 0.06;
        assert!(near(swapped.1, answer_words), "{} answer swaps", swapped.1);
        let question_fillers = question.iter().filter(|id| !noise.naming.contains(id));
        assert!(
            near(swapped.0, question_fillers.count()),
            "{} question swaps",
            swapped.0
        );
    }

    #[test]
    fn a_noisy_batch_changes_inputs_only() {
        let tok = tokenizer();
        let noise = WordNoise::new(&tok, 0.2).unwrap();
        let builder = crate::data::BatchBuilder {
            tokenizer: &tok,
            canvas: crate::train::TrainOptions::default().canvas,
            max_positions: 96,
            pack: 160,
        };
        let examples = crate::data::SyntheticData::new(5, 7)
            .train_batch(0, 70)
            .unwrap();
        let clean = builder.build(&examples).unwrap();
        let noisy = builder
            .build_noisy(&examples, &noise, &mut Rng::new(3))
            .unwrap();
        assert_eq!(noisy.targets, clean.targets);
        assert_eq!(noisy.weights, clean.weights);
        assert_eq!(noisy.positions, clean.positions);
        assert_eq!(noisy.patches, clean.patches);
        let changed = clean.ids.iter().zip(&noisy.ids).filter(|(a, b)| a != b);
        assert!(changed.count() > clean.answer_tokens / 20);
        let again = builder
            .build_noisy(&examples, &noise, &mut Rng::new(3))
            .unwrap();
        assert_eq!(again.ids, noisy.ids, "the same draws give the same batch");
    }

    #[test]
    fn the_words_that_tell_a_questions_kind_are_kept() {
        let tok = tokenizer();
        let noise = WordNoise::new(&tok, 1.0).unwrap();
        for (_, template) in scene::phrasings(scene::Wording::Trained) {
            let question = template
                .replace("{a}", "red star")
                .replace("{b}", "blue circle")
                .replace("{c}", "red")
                .replace("{s}", "star")
                .replace("{p}", "stars");
            let ids = tok.encode(&question).unwrap();
            let out = noise.apply(&ids, ids.len(), &mut Rng::new(5));
            let said = words(&tok, &out).concat();
            for kind_word in KIND_WORDS.iter().chain(&["red", "star"]) {
                assert_eq!(
                    question.contains(kind_word),
                    said.contains(kind_word),
                    "{question:?} became {said:?}"
                );
            }
            assert_ne!(out, ids, "nothing of {question:?} was swapped at p = 1");
        }
    }

    #[test]
    fn no_noise_changes_nothing() {
        let tok = tokenizer();
        let noise = WordNoise::new(&tok, 0.0).unwrap();
        let ids = tok.encode("is there a red star? yes").unwrap();
        assert_eq!(noise.apply(&ids, 3, &mut Rng::new(1)), ids);
        assert!(WordNoise::new(&tok, 1.5).is_err());
    }
}
