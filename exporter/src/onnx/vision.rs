//! `vision.onnx`: `patches [B, R, C, 3·P·P]` → `image_embeds [B, R·(C+1), d]`.
//! One Linear per patch plus a learned position per patch, then the learned newline
//! embedding after each patch row.

use anyhow::Result;

use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::Canvas;

use super::builder::{Dim, Elem, GraphBuilder, attr_int, fixed, sym};
use super::get;
use crate::model::weights::Weights;
use glimpse_runtime::package::Precision;

/// The vision graph with the patch projection at `precision`.
pub fn build(
    w: &Weights,
    cfg: &ModelConfig,
    canvas: &Canvas,
    precision: Precision,
) -> Result<Vec<u8>> {
    let d = cfg.d_model;
    let (rows, cols, pd) = (canvas.rows(), canvas.cols(), canvas.patch_dim());
    let mut g = GraphBuilder::new("glimpse-vision");
    let patches = g.input(
        "patches",
        Elem::F32,
        &[sym("B"), fixed(rows), fixed(cols), fixed(pd)],
    );
    let wt = get(w, "vision_embed.weight")?;
    let bias = get(w, "vision_embed.bias")?;
    let nl = get(w, "image_newline")?;
    let nl = g.weight("image_newline", &[1, 1, 1, d], &nl.data);
    let proj =
        super::precision::linear(&mut g, "vision_embed", &patches, wt, Some(bias), precision)?;
    let pos = get(w, "patch_position")?;
    let pos = g.weight("patch_position", &pos.dims, &pos.data);
    let proj = g.node("Add", "patch_position/add", &[&proj, &pos], vec![]);
    // newline broadcast to [B, R, 1, d]
    let shape = g.node(
        "Shape",
        "newline/batch_rows",
        &[&patches],
        vec![attr_int("start", 0), attr_int("end", 2)],
    );
    let tail = g.ints("newline/one_d", &[2], &[1, d as i64]);
    let shape = g.node(
        "Concat",
        "newline/shape",
        &[&shape, &tail],
        vec![attr_int("axis", 0)],
    );
    let nl = g.node("Expand", "newline/expand", &[&nl, &shape], vec![]);
    let rows_nl = g.node(
        "Concat",
        "rows_with_newline",
        &[&proj, &nl],
        vec![attr_int("axis", 2)],
    );
    let flat = g.ints("flatten_shape", &[3], &[0, -1, d as i64]);
    g.node("Reshape", "image_embeds", &[&rows_nl, &flat], vec![]);
    g.output(
        "image_embeds",
        Elem::F32,
        &[sym("B"), Dim::Fixed(rows * (cols + 1)), fixed(d)],
    );
    Ok(super::builder::encode(&g.finish(
        "Glimpse vision: patches to image embeddings with row newlines",
    )))
}
