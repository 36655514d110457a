//! `embedding.onnx`: `input_ids [B, S]` → `inputs_embeds [B, S, d]`.

use anyhow::Result;

use glimpse_runtime::ModelConfig;

use super::builder::{Elem, GraphBuilder, attr_int, fixed, sym};
use super::get;
use crate::model::weights::Weights;

pub fn build(w: &Weights, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let mut g = GraphBuilder::new("glimpse-embedding");
    let ids = g.input("input_ids", Elem::I64, &[sym("B"), sym("S")]);
    let table = get(w, "embed_tokens.weight")?;
    let table = g.weight("embed_tokens.weight", &table.dims, &table.data);
    g.node(
        "Gather",
        "inputs_embeds",
        &[&table, &ids],
        vec![attr_int("axis", 0)],
    );
    g.output(
        "inputs_embeds",
        Elem::F32,
        &[sym("B"), sym("S"), fixed(cfg.d_model)],
    );
    Ok(super::builder::encode(
        &g.finish("Glimpse embedding: token ids to embeddings"),
    ))
}
