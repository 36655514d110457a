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

use std::borrow::Cow;

use anyhow::{Result, anyhow};

use crate::model::weights::{Array, Weights};

/// Where the graph builders read weights from, by Glimpse's names (`layers.3.qkv.weight`,
/// linear weights `[in, out]`): a trained model's weights in memory, or a checkpoint read
/// one tensor at a time (see `crate::hf`), so that a graph of any size is written while
/// holding one tensor.
pub trait Tensors {
    /// The tensor `name`, or `None` when the model has no such tensor.
    fn tensor(&self, name: &str) -> Result<Option<Cow<'_, Array>>>;
}

impl Tensors for Weights {
    fn tensor(&self, name: &str) -> Result<Option<Cow<'_, Array>>> {
        Ok(self.get(name).map(Cow::Borrowed))
    }
}

pub(crate) fn get<'w>(w: &'w dyn Tensors, name: &str) -> Result<Cow<'w, Array>> {
    w.tensor(name)?
        .ok_or_else(|| anyhow!("weight {name} is missing from the model"))
}
