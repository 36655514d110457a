//! `vision.onnx`: `patches [B, R, C, 3·P·P]` → `image_embeds [B, R·(C+1), d]`.
//! One Linear per patch (plus a learned position per patch in Glimpse's own models), then
//! the newline embedding after each patch row. With a fixed grid (Glimpse's own canvas)
//! `R` and `C` are the canvas's; when the grid follows the image (Fuyu) they are symbolic.

use anyhow::Result;

use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::{Canvas, Grid};

use super::builder::{Dim, Elem, GraphBuilder, GraphFile, attr_int, fixed, sym};
use super::{Tensors, get};
use glimpse_runtime::package::Precision;
use tract_onnx::pb::tensor_proto::DataType;

use crate::model::weights::Array;

/// The vision graph with the patch projection at `precision`. Reads `vision_embed.weight`
/// (`[3·P·P, d]`), `vision_embed.bias`, `image_newline` (`[d]`) and, when the model has
/// one, `patch_position` (`[R, C, d]`).
pub fn build(
    w: &dyn Tensors,
    cfg: &ModelConfig,
    canvas: &Canvas,
    grid: Grid,
    precision: Precision,
    target: &GraphFile,
) -> Result<()> {
    let d = cfg.d_model;
    let pd = canvas.patch_dim();
    let (rows, cols, tokens) = match grid {
        Grid::Canvas => (
            fixed(canvas.rows()),
            fixed(canvas.cols()),
            Dim::Fixed(canvas.image_tokens()),
        ),
        Grid::Image => (sym("R"), sym("C"), sym("T")),
    };
    let mut g = GraphBuilder::for_file("glimpse-vision", target)?;
    let patches = g.input("patches", Elem::F32, &[sym("B"), rows, cols, fixed(pd)]);
    let wt = get(w, "vision_embed.weight")?;
    let bias = get(w, "vision_embed.bias")?;
    let nl = get(w, "image_newline")?;
    let nl = g.weight("image_newline", &[1, 1, 1, d], &nl.data);
    let mut proj = super::precision::linear(
        &mut g,
        "vision_embed",
        &patches,
        &wt,
        Some(&bias),
        precision,
    )?;
    if let Some(pos) = w.tensor("patch_position")? {
        let pos = positions(&mut g, &pos, precision);
        proj = g.node("Add", "patch_position/add", &[&proj, &pos], vec![]);
    }
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
    g.output("image_embeds", Elem::F32, &[sym("B"), tokens, fixed(d)]);
    g.write(
        "Glimpse vision: patches to image embeddings with row newlines",
        &target.path,
    )
}

/// The learned patch positions `[R, C, d]` as f32 at the graph's output: stored f32 in
/// f32 packages, f16 in f16 ones, and int8 with one scale per patch in the quantized ones,
/// as the token table is (`embedding.rs`), since on a fine grid they are a large share of
/// the vision graph.
fn positions(g: &mut GraphBuilder, pos: &Array, precision: Precision) -> String {
    match precision {
        Precision::F32 => g.weight("patch_position", &pos.dims, &pos.data),
        Precision::F16 => {
            let p = g.weight_as("patch_position", &pos.dims, &pos.data, Elem::F16);
            g.cast("patch_position/to_float", &p, Elem::F32)
        }
        Precision::Int8 | Precision::Q4 => {
            let d = *pos.dims.last().unwrap_or(&1);
            let (q, scales) = super::embedding::quantize_rows_of(&pos.data, d);
            let mut scale_dims = pos.dims.clone();
            if let Some(last) = scale_dims.last_mut() {
                *last = 1;
            }
            let qt = g.raw(
                "patch_position_int8",
                &pos.dims,
                DataType::Int8,
                q.iter().map(|v| *v as u8).collect(),
            );
            let st = g.weight("patch_position_scale", &scale_dims, &scales);
            let p = g.cast("patch_position/to_float", &qt, Elem::F32);
            g.node("Mul", "patch_position/scaled", &[&p, &st], vec![])
        }
    }
}
