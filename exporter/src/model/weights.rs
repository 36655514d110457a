//! Every parameter of [`Fuyu`] under a stable name, as plain `f32` arrays.
//!
//! The ONNX builders read weights from this map only, so they never depend on burn.
//! Linear weights keep burn's `[in, out]` layout, which is what ONNX `MatMul(x, W)` takes.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::Fuyu;

#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

pub type Weights = BTreeMap<String, Array>;

fn array<const D: usize>(t: &Param<Tensor<D>>) -> Array {
    let v = t.val();
    Array {
        dims: v.dims().to_vec(),
        data: v
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("float parameter"),
    }
}

fn linear(w: &mut Weights, name: &str, l: &Linear) {
    w.insert(format!("{name}.weight"), array(&l.weight));
    if let Some(b) = &l.bias {
        w.insert(format!("{name}.bias"), array(b));
    }
}

fn norm(w: &mut Weights, name: &str, n: &LayerNorm) {
    w.insert(format!("{name}.weight"), array(&n.gamma));
    if let Some(b) = &n.beta {
        w.insert(format!("{name}.bias"), array(b));
    }
}

pub fn collect(model: &Fuyu) -> Weights {
    let mut w = Weights::new();
    linear(&mut w, "vision_embed", &model.vision_embed);
    w.insert("patch_position".into(), array(&model.patch_position));
    w.insert("image_newline".into(), array(&model.image_newline));
    w.insert(
        "embed_tokens.weight".into(),
        array(&model.embed_tokens.weight),
    );
    for (i, b) in model.layers.iter().enumerate() {
        let p = format!("layers.{i}");
        norm(&mut w, &format!("{p}.input_layernorm"), &b.input_layernorm);
        linear(&mut w, &format!("{p}.qkv"), &b.qkv);
        norm(&mut w, &format!("{p}.q_layernorm"), &b.q_layernorm);
        norm(&mut w, &format!("{p}.k_layernorm"), &b.k_layernorm);
        linear(&mut w, &format!("{p}.dense"), &b.dense);
        norm(
            &mut w,
            &format!("{p}.post_attention_layernorm"),
            &b.post_attention_layernorm,
        );
        linear(&mut w, &format!("{p}.mlp_up"), &b.mlp_up);
        linear(&mut w, &format!("{p}.mlp_down"), &b.mlp_down);
    }
    norm(&mut w, "final_layernorm", &model.final_layernorm);
    linear(&mut w, "lm_head", &model.lm_head);
    linear(&mut w, "image_head", &model.image_head);
    linear(&mut w, "text_head", &model.text_head);
    w.insert("logit_scale".into(), array(&model.logit_scale));
    w
}
