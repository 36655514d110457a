//! `glimpse.json`: what a model package holds and how to run it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Precision;
use crate::frame::{Canvas, ImageFormat};
use crate::model::ModelConfig;
use crate::text::PromptFormat;

/// Version of the package layout this runtime reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "glimpse.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const VISION_FILE: &str = "vision.onnx";
pub const EMBEDDING_FILE: &str = "embedding.onnx";
pub const DECODER_FILE: &str = "decoder.onnx";
pub const HEADS_FILE: &str = "heads.onnx";

/// Ids of the tokens with a role in the token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub pad: u32,
    /// Beginning of sequence: follows the image.
    pub bos: u32,
    /// End of sequence: generation stops here.
    pub eos: u32,
    /// Beginning of answer: generated text follows it.
    pub boa: u32,
    /// Image newline: ends each patch row.
    pub newline: u32,
    /// Image placeholder: stands for a patch in the token stream.
    pub image: u32,
}

impl SpecialTokens {
    /// (token text, id) of every special token.
    pub fn named(&self) -> [(&'static str, u32); 6] {
        [
            (PAD, self.pad),
            (BOS, self.bos),
            (EOS, self.eos),
            (BOA, self.boa),
            (NEWLINE, self.newline),
            (IMAGE, self.image),
        ]
    }
}

/// The text of each special token in the tokenizer (manifest field `special_token_names`);
/// Glimpse's own tokenizer uses the names below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokenNames {
    pub pad: String,
    pub bos: String,
    pub eos: String,
    pub boa: String,
    pub newline: String,
    pub image: String,
}

impl Default for SpecialTokenNames {
    fn default() -> Self {
        SpecialTokenNames {
            pad: PAD.into(),
            bos: BOS.into(),
            eos: EOS.into(),
            boa: BOA.into(),
            newline: NEWLINE.into(),
            image: IMAGE.into(),
        }
    }
}

impl SpecialTokenNames {
    /// (token text, id) of every special token.
    pub fn with_ids(&self, ids: &SpecialTokens) -> [(&str, u32); 6] {
        [
            (&self.pad, ids.pad),
            (&self.bos, ids.bos),
            (&self.eos, ids.eos),
            (&self.boa, ids.boa),
            (&self.newline, ids.newline),
            (&self.image, ids.image),
        ]
    }
}

pub const PAD: &str = "<pad>";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const BOA: &str = "<answer>";
pub const NEWLINE: &str = "<newline>";
pub const IMAGE: &str = "<image>";

/// A file of the package and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn f32_only() -> Vec<Precision> {
    vec![Precision::F32]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub model: ModelConfig,
    pub canvas: Canvas,
    pub special_tokens: SpecialTokens,
    /// The special tokens' texts in the tokenizer, when they are not Glimpse's own.
    #[serde(default, skip_serializing_if = "is_default")]
    pub special_token_names: SpecialTokenNames,
    /// How frames become patches, when not Glimpse's own way.
    #[serde(default, skip_serializing_if = "is_default")]
    pub image: ImageFormat,
    /// The prompt texts of captions and questions, when not Glimpse's own.
    #[serde(default, skip_serializing_if = "is_default")]
    pub prompt: PromptFormat,
    /// Numeric precision of the plain-named graphs' weights (`f32`).
    pub precision: String,
    /// Every precision the package carries graphs for (see [`Precision::file`]); packages
    /// written before there was a choice carry f32 only.
    #[serde(default = "f32_only")]
    pub precisions: Vec<Precision>,
    /// Default limit on generated tokens.
    pub max_new_tokens: usize,
    /// Every file of the package (relative path → checksum).
    pub files: BTreeMap<String, FileEntry>,
    /// How the training data was made (free form).
    #[serde(default)]
    pub data: serde_json::Value,
    /// Evaluation results of this package (free form, written by `glimpse-export eval`).
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Image–text matching, when the model was trained for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<Matching>,
}

/// The matching heads: `heads.onnx` maps a decoder state (`last_hidden_state` at the last
/// image token, or at the `</s>` of a text on its own) to a unit-length embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matching {
    /// The heads graph (always f32: it is two small products).
    pub file: String,
    /// Width of the shared space.
    pub dim: usize,
    /// The learned `1/τ` that turns cosines into logits for probabilities.
    pub logit_scale: f32,
}
