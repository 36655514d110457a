//! `embedding.onnx`: token ids `[1, S]` → embeddings `[1, S, d]`.

use std::path::Path;

use tract_onnx::prelude::*;

use super::{Plan, f32_values, into_plan, load_typed};
use crate::error::{Error, Result};

pub struct EmbeddingGraph {
    plan: Plan,
}

impl EmbeddingGraph {
    pub fn load(path: &Path) -> Result<Self> {
        let model = load_typed(path)?;
        Ok(Self {
            plan: into_plan(path, model)?,
        })
    }

    /// `ids.len() × d` values.
    pub fn run(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let input = Tensor::from_shape(&[1, ids.len()], &ids).map_err(Error::inference)?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(Error::inference)?;
        f32_values(&out[0])
    }
}
