//! The three ONNX graphs of a package, loaded and optimised by tract:
//! patches → image embeddings ([`VisionGraph`]), token ids → embeddings
//! ([`EmbeddingGraph`]), embeddings → logits with a KV cache ([`DecoderGraph`]).

mod config;
mod decoder;
mod embedding;
mod vision;

use std::path::Path;

use tract_onnx::prelude::*;

pub use config::ModelConfig;
pub use decoder::{DecoderGraph, DecoderSession};
pub use embedding::EmbeddingGraph;
pub use vision::VisionGraph;

use crate::error::{Error, Result};

pub(crate) type Plan = Arc<TypedRunnableModel>;

/// Loads an ONNX file into a typed tract model (not yet decluttered).
pub(crate) fn load_typed(path: &Path) -> Result<TypedModel> {
    let err = |e: TractError| Error::Graph {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let model = tract_onnx::onnx().model_for_path(path).map_err(err)?;
    model.into_typed().map_err(err)
}

pub(crate) fn into_plan(path: &Path, model: TypedModel) -> Result<Plan> {
    model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| Error::Graph {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })
}

/// Index of the model input named `name`.
pub(crate) fn input_index(model: &TypedModel, name: &str) -> Option<usize> {
    model
        .input_outlets()
        .ok()?
        .iter()
        .position(|o| model.node(o.node).name == name)
}

/// The f32 values of an output tensor.
pub(crate) fn f32_values(t: &TValue) -> Result<Vec<f32>> {
    let view = t.to_plain_array_view::<f32>().map_err(Error::inference)?;
    Ok(view.iter().copied().collect())
}
