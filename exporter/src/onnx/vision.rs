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
        let pos = g.weight("patch_position", &pos.dims, &pos.data);
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
