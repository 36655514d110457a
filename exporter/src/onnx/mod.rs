//! The package's ONNX graphs, written op by op from the trained weights:
//! [`vision`] (patches → image embeddings), [`embedding`] (ids → embeddings) and
//! [`decoder`] (embeddings + KV cache → logits, final states + KV cache), and
//! [`heads`] (a final state → image or text embedding, for matching).

pub mod builder;
pub mod decoder;
pub mod embedding;
pub mod heads;
pub mod precision;
pub mod vision;

use anyhow::{Result, anyhow};

use crate::model::weights::{Array, Weights};

pub(crate) fn get<'w>(w: &'w Weights, name: &str) -> Result<&'w Array> {
    w.get(name)
        .ok_or_else(|| anyhow!("weight {name} is missing from the model"))
}
