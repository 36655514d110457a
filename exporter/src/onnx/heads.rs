//! `heads.onnx`: the matching heads. `hidden_state [B, d]` (the decoder's
//! `last_hidden_state` at one position) → `image_embeds [B, e]` and `text_embeds [B, e]`,
//! each scaled to unit length. Both heads run on whatever state comes in; the caller
//! reads the one that fits (the state after the image tokens, or after a text's `</s>`).

use anyhow::Result;

use glimpse_runtime::ModelConfig;
use glimpse_runtime::package::Precision;

use super::builder::{Elem, GraphBuilder, GraphFile, attr_int, fixed, sym};
use super::{Tensors, get};

fn head(g: &mut GraphBuilder, w: &dyn Tensors, name: &str, x: &str, out: &str) -> Result<()> {
    let wt = get(w, &format!("{name}.weight"))?;
    let bias = get(w, &format!("{name}.bias"))?;
    let y = super::precision::linear(g, name, x, &wt, Some(&bias), Precision::F32)?;
    let sq = g.node("Mul", &format!("{name}/square"), &[&y, &y], vec![]);
    let axes = g.ints(&format!("{name}/axes"), &[1], &[-1]);
    let sum = g.node(
        "ReduceSum",
        &format!("{name}/sum"),
        &[&sq, &axes],
        vec![attr_int("keepdims", 1)],
    );
    let norm = g.node("Sqrt", &format!("{name}/norm"), &[&sum], vec![]);
    let eps = g.weight(&format!("{name}/eps"), &[], &[1e-6]);
    let norm = g.node("Max", &format!("{name}/norm_floor"), &[&norm, &eps], vec![]);
    g.node("Div", out, &[&y, &norm], vec![]);
    let e = wt.dims[1];
    g.output(out, Elem::F32, &[sym("B"), fixed(e)]);
    Ok(())
}

pub fn build(w: &dyn Tensors, cfg: &ModelConfig, target: &GraphFile) -> Result<()> {
    let mut g = GraphBuilder::for_file("glimpse-heads", target)?;
    let x = g.input("hidden_state", Elem::F32, &[sym("B"), fixed(cfg.d_model)]);
    head(&mut g, w, "image_head", &x, "image_embeds")?;
    head(&mut g, w, "text_head", &x, "text_embeds")?;
    g.write(
        "Glimpse matching heads: decoder state to unit-length image and text embeddings",
        &target.path,
    )
}
