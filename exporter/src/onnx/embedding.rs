//! `embedding.onnx`: `input_ids [B, S]` → `inputs_embeds [B, S, d]`.
//!
//! Quantized packages store the table as int8 with one scale per token (a row gather, then
//! `Cast` and a multiply), f16 packages as f16; the output is f32 at every precision.

use anyhow::Result;
use tract_onnx::pb::tensor_proto::DataType;

use glimpse_runtime::ModelConfig;
use glimpse_runtime::package::Precision;

use super::builder::{Elem, GraphBuilder, GraphFile, attr_int, attr_to, fixed, sym};
use super::{Tensors, get};
use crate::model::weights::Array;

/// Symmetric int8 per row of a `[rows, d]` table: (values, scales `[rows]`).
pub fn quantize_rows(t: &Array) -> (Vec<i8>, Vec<f32>) {
    quantize_rows_of(&t.data, t.dims[1])
}

/// Symmetric int8 per row of `d` values of `data`: (values, one scale per row).
pub fn quantize_rows_of(data: &[f32], d: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(data.len() / d.max(1));
    for row in data.chunks_exact(d.max(1)) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

pub fn build(
    w: &dyn Tensors,
    cfg: &ModelConfig,
    precision: Precision,
    target: &GraphFile,
) -> Result<()> {
    let mut g = GraphBuilder::for_file("glimpse-embedding", target)?;
    let ids = g.input("input_ids", Elem::I64, &[sym("B"), sym("S")]);
    let table = get(w, "embed_tokens.weight")?;
    if precision == Precision::F32 {
        let table = g.weight("embed_tokens.weight", &table.dims, &table.data);
        g.node(
            "Gather",
            "inputs_embeds",
            &[&table, &ids],
            vec![attr_int("axis", 0)],
        );
    } else if precision == Precision::F16 {
        let table = g.weight_as("embed_tokens.weight", &table.dims, &table.data, Elem::F16);
        let rows = g.node(
            "Gather",
            "embed/rows",
            &[&table, &ids],
            vec![attr_int("axis", 0)],
        );
        g.cast("inputs_embeds", &rows, Elem::F32);
    } else {
        let (q, scales) = quantize_rows(&table);
        let qt = g.raw(
            "embed_tokens.weight_int8",
            &table.dims,
            DataType::Int8,
            q.iter().map(|v| *v as u8).collect(),
        );
        let st = g.weight("embed_tokens.weight_scale", &[table.dims[0], 1], &scales);
        let rows = g.node(
            "Gather",
            "embed/rows",
            &[&qt, &ids],
            vec![attr_int("axis", 0)],
        );
        let rows = g.node(
            "Cast",
            "embed/to_float",
            &[&rows],
            vec![attr_to("to", DataType::Float)],
        );
        let s = g.node(
            "Gather",
            "embed/scales",
            &[&st, &ids],
            vec![attr_int("axis", 0)],
        );
        g.node("Mul", "inputs_embeds", &[&rows, &s], vec![]);
    }
    g.output(
        "inputs_embeds",
        Elem::F32,
        &[sym("B"), sym("S"), fixed(cfg.d_model)],
    );
    g.write("Glimpse embedding: token ids to embeddings", &target.path)
}
