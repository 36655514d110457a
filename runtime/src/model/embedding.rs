//! `embedding.onnx`: token ids `[1, S]` → embeddings `[1, S, d]`.

use std::path::Path;

use tract_onnx::prelude::*;

use super::check::GraphCheck;
use super::{ModelConfig, Plan, f32_values, into_plan, load_typed};
use crate::error::{Error, Result};

pub struct EmbeddingGraph {
    plan: Plan,
    output: usize,
    d_model: usize,
}

impl EmbeddingGraph {
    /// Loads the graph and checks its width and table against the manifest's model.
    pub fn load(path: &Path, cfg: &ModelConfig) -> Result<Self> {
        let model = load_typed(path)?;
        let c = GraphCheck {
            path,
            model: &model,
        };
        c.input("input_ids")?;
        let out = c.output("inputs_embeds")?;
        c.dims(
            out,
            "inputs_embeds",
            &[None, None, Some((cfg.d_model, "model.d_model"))],
        )?;
        for table in ["embed_tokens.weight", "embed_tokens.weight_int8"] {
            c.constant_rows(table, cfg.vocab_size, "model.vocab_size")?;
        }
        let output = super::output_index(&model, "inputs_embeds").unwrap_or(0);
        Ok(Self {
            plan: into_plan(path, model)?,
            output,
            d_model: cfg.d_model,
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
        let values = f32_values(&out[self.output])?;
        if values.len() != ids.len() * self.d_model {
            return Err(Error::Inference(format!(
                "the embedding graph gave {} values for {} tokens of width {}",
                values.len(),
                ids.len(),
                self.d_model
            )));
        }
        Ok(values)
    }
}
