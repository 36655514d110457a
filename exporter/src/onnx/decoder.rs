//! `decoder.onnx`: the Persimmon-style decoder with a KV cache, onnxruntime-genai names.
//!
//! Inputs: `inputs_embeds [B, S, d]`, `position_ids [B, S]`,
//! `past_key_values.{i}.key|value [B, H, P, hd]`.
//! Outputs: `logits [B, 1, V]` and `last_hidden_state [B, 1, d]` at the last position only
//! (the normalised state the LM head reads; the matching heads read it too), `present.{i}.key|value [B, H, P + S, hd]`,
//! each present being exactly `Concat(past, new, axis=2)`.
//! Keys may be attended to when their position is at most the query's position id.

use anyhow::Result;

use glimpse_runtime::ModelConfig;

use super::builder::{Elem, GraphBuilder, GraphFile, attr_float, attr_int, attr_ints, fixed, sym};
use super::{Tensors, get, precision};
use glimpse_runtime::package::Precision;

struct Ctx<'a> {
    g: GraphBuilder,
    w: &'a dyn Tensors,
    cfg: &'a ModelConfig,
    precision: Precision,
}

impl Ctx<'_> {
    fn linear(&mut self, name: &str, x: &str) -> Result<String> {
        let wt = get(self.w, &format!("{name}.weight"))?;
        let bias = self.w.tensor(&format!("{name}.bias"))?;
        precision::linear(&mut self.g, name, x, &wt, bias.as_deref(), self.precision)
    }

    fn layer_norm(&mut self, name: &str, x: &str) -> Result<String> {
        let s = get(self.w, &format!("{name}.weight"))?;
        let b = get(self.w, &format!("{name}.bias"))?;
        let s = self.g.weight(&format!("{name}.weight"), &s.dims, &s.data);
        let b = self.g.weight(&format!("{name}.bias"), &b.dims, &b.data);
        Ok(self.g.node(
            "LayerNormalization",
            name,
            &[x, &s, &b],
            vec![
                attr_int("axis", -1),
                attr_float("epsilon", self.cfg.layer_norm_eps),
            ],
        ))
    }

    fn slice(&mut self, name: &str, x: &str, start: usize, end: usize, axis: i64) -> String {
        let s = self
            .g
            .ints(&format!("{name}/starts"), &[1], &[start as i64]);
        let e = self.g.ints(&format!("{name}/ends"), &[1], &[end as i64]);
        let a = self.g.ints(&format!("{name}/axes"), &[1], &[axis]);
        self.g.node("Slice", name, &[x, &s, &e, &a], vec![])
    }

    /// rotate_half rotary embedding on the first `rotary_dim` values of each head.
    fn rotary(&mut self, name: &str, x: &str, cos: &str, sin: &str) -> String {
        let hd = self.cfg.head_dim();
        let rot = self.cfg.rotary_dim();
        if rot == 0 {
            return x.to_string();
        }
        let half = rot / 2;
        let xr = self.slice(&format!("{name}/rot"), x, 0, rot, 3);
        let x1 = self.slice(&format!("{name}/x1"), &xr, 0, half, 3);
        let x2 = self.slice(&format!("{name}/x2"), &xr, half, rot, 3);
        let neg = self
            .g
            .node("Neg", &format!("{name}/neg_x2"), &[&x2], vec![]);
        let rotated = self.g.node(
            "Concat",
            &format!("{name}/rotate_half"),
            &[&neg, &x1],
            vec![attr_int("axis", 3)],
        );
        let a = self
            .g
            .node("Mul", &format!("{name}/mul_cos"), &[&xr, cos], vec![]);
        let b = self
            .g
            .node("Mul", &format!("{name}/mul_sin"), &[&rotated, sin], vec![]);
        let xr = self
            .g
            .node("Add", &format!("{name}/roped"), &[&a, &b], vec![]);
        if rot == hd {
            return xr;
        }
        let pass = self.slice(&format!("{name}/pass"), x, rot, hd, 3);
        self.g.node(
            "Concat",
            &format!("{name}/out"),
            &[&xr, &pass],
            vec![attr_int("axis", 3)],
        )
    }
}

/// The decoder with its linear layers (attention, MLP, LM head) at `precision`.
pub fn build(
    w: &dyn Tensors,
    cfg: &ModelConfig,
    precision: Precision,
    target: &GraphFile,
) -> Result<()> {
    let (d, h, hd, v) = (cfg.d_model, cfg.n_heads, cfg.head_dim(), cfg.vocab_size);
    let mut c = Ctx {
        g: GraphBuilder::for_file("glimpse-decoder", target)?,
        w,
        cfg,
        precision,
    };
    let embeds =
        c.g.input("inputs_embeds", Elem::F32, &[sym("B"), sym("S"), fixed(d)]);
    let positions = c.g.input("position_ids", Elem::I64, &[sym("B"), sym("S")]);
    let kv_dims = |seq: &str| [sym("B"), fixed(h), sym(seq), fixed(hd)];
    for i in 0..cfg.n_layers {
        for kv in ["key", "value"] {
            c.g.input(
                &format!("past_key_values.{i}.{kv}"),
                Elem::F32,
                &kv_dims("P"),
            );
        }
    }

    // Rotary tables gathered at the position ids: [B, 1, S, rotary_dim].
    let (cos_t, sin_t) = cfg.rotary_tables();
    let rot = cfg.rotary_dim();
    let axis1 = c.g.ints("axes_1", &[1], &[1]);
    let mut tables = Vec::new();
    for (name, t) in [("cos", cos_t), ("sin", sin_t)] {
        let t =
            c.g.weight(&format!("rotary.{name}"), &[cfg.max_positions, rot], &t);
        let g = c.g.node(
            "Gather",
            &format!("rotary/{name}_at_positions"),
            &[&t, &positions],
            vec![attr_int("axis", 0)],
        );
        tables.push(c.g.node(
            "Unsqueeze",
            &format!("rotary/{name}"),
            &[&g, &axis1],
            vec![],
        ));
    }
    let (cos, sin) = (tables[0].clone(), tables[1].clone());

    let mut x = embeds.clone();
    let mut causal_bias: Option<String> = None;
    let qkv_shape = c.g.ints("qkv_shape", &[5], &[0, 0, h as i64, 3, hd as i64]);
    let split_sizes = c.g.ints("qkv_split", &[3], &[1, 1, 1]);
    let axis3 = c.g.ints("axes_3", &[1], &[3]);
    let merge_shape = c.g.ints("merge_heads_shape", &[3], &[0, 0, d as i64]);
    let scale = c.g.weight("attn_scale", &[], &[1.0 / (hd as f32).sqrt()]);
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        let hs = c.layer_norm(&format!("{p}.input_layernorm"), &x)?;
        let qkv = c.linear(&format!("{p}.qkv"), &hs)?;
        let qkv = c.g.node(
            "Reshape",
            &format!("{p}/qkv_heads"),
            &[&qkv, &qkv_shape],
            vec![],
        );
        let parts = c.g.node_multi(
            "Split",
            &format!("{p}/split_qkv"),
            &[&qkv, &split_sizes],
            &[&format!("{p}/q5"), &format!("{p}/k5"), &format!("{p}/v5")],
            vec![attr_int("axis", 3)],
        );
        let mut heads = Vec::new();
        for (part, name) in parts.iter().zip(["q", "k", "v"]) {
            let t = c.g.node(
                "Squeeze",
                &format!("{p}/{name}_bshd"),
                &[part, &axis3],
                vec![],
            );
            let t = if name == "v" {
                t
            } else {
                c.layer_norm(&format!("{p}.{name}_layernorm"), &t)?
            };
            heads.push(c.g.node(
                "Transpose",
                &format!("{p}/{name}_bhsd"),
                &[&t],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            ));
        }
        let q = c.rotary(&format!("{p}/q_rotary"), &heads[0], &cos, &sin);
        let k = c.rotary(&format!("{p}/k_rotary"), &heads[1], &cos, &sin);
        let present_k = c.g.node(
            "Concat",
            &format!("present.{i}.key"),
            &[&format!("past_key_values.{i}.key"), &k],
            vec![attr_int("axis", 2)],
        );
        let present_v = c.g.node(
            "Concat",
            &format!("present.{i}.value"),
            &[&format!("past_key_values.{i}.value"), &heads[2]],
            vec![attr_int("axis", 2)],
        );
        let bias = match &causal_bias {
            Some(b) => b.clone(),
            None => {
                let b = causal_mask(&mut c.g, &present_k, &positions);
                causal_bias = Some(b.clone());
                b
            }
        };
        let kt = c.g.node(
            "Transpose",
            &format!("{p}/k_t"),
            &[&present_k],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        let s =
            c.g.node("MatMul", &format!("{p}/scores"), &[&q, &kt], vec![]);
        let s =
            c.g.node("Mul", &format!("{p}/scaled"), &[&s, &scale], vec![]);
        let s =
            c.g.node("Add", &format!("{p}/masked"), &[&s, &bias], vec![]);
        let a = c.g.node(
            "Softmax",
            &format!("{p}/attn"),
            &[&s],
            vec![attr_int("axis", -1)],
        );
        let o =
            c.g.node("MatMul", &format!("{p}/attn_v"), &[&a, &present_v], vec![]);
        let o = c.g.node(
            "Transpose",
            &format!("{p}/o_bshd"),
            &[&o],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let o = c.g.node(
            "Reshape",
            &format!("{p}/o_merged"),
            &[&o, &merge_shape],
            vec![],
        );
        let o = c.linear(&format!("{p}.dense"), &o)?;
        x =
            c.g.node("Add", &format!("{p}/residual_attn"), &[&x, &o], vec![]);
        let hs = c.layer_norm(&format!("{p}.post_attention_layernorm"), &x)?;
        let m = c.linear(&format!("{p}.mlp_up"), &hs)?;
        let m = c.g.node("Relu", &format!("{p}/relu"), &[&m], vec![]);
        let m =
            c.g.node("Mul", &format!("{p}/relu_squared"), &[&m, &m], vec![]);
        let m = c.linear(&format!("{p}.mlp_down"), &m)?;
        x =
            c.g.node("Add", &format!("{p}/residual_mlp"), &[&x, &m], vec![]);
    }
    // Only the last position is ever read (the next token, a matching state): the final
    // norm and the LM head run on it alone, so a prefill of thousands of image tokens never
    // materialises thousands of vocabulary-wide rows.
    let last = c.g.ints("last/starts", &[1], &[-1]);
    let end = c.g.ints("last/ends", &[1], &[i64::MAX]);
    let seq_axis = c.g.ints("last/axes", &[1], &[1]);
    let x = c.g.node(
        "Slice",
        "last/position",
        &[&x, &last, &end, &seq_axis],
        vec![],
    );
    let x = c.layer_norm("final_layernorm", &x)?;
    let lm = c.linear("lm_head", &x)?;
    c.g.node("Identity", "logits", &[&lm], vec![]);
    c.g.output("logits", Elem::F32, &[sym("B"), fixed(1), fixed(v)]);
    c.g.node("Identity", "last_hidden_state", &[&x], vec![]);
    c.g.output(
        "last_hidden_state",
        Elem::F32,
        &[sym("B"), fixed(1), fixed(cfg.d_model)],
    );
    for i in 0..cfg.n_layers {
        for kv in ["key", "value"] {
            c.g.output(&format!("present.{i}.{kv}"), Elem::F32, &kv_dims("P + S"));
        }
    }
    c.g.write(
        "Glimpse decoder: Persimmon-style blocks with a KV cache",
        &target.path,
    )
}

/// Additive attention bias `[B, 1, S, T]`: 0 where key position `t` ≤ the query's
/// position id, −1e9 elsewhere. `T` is read from the present keys' shape.
fn causal_mask(g: &mut GraphBuilder, present_k: &str, positions: &str) -> String {
    let shape = g.node("Shape", "mask/present_shape", &[present_k], vec![]);
    let two = g.ints("mask/seq_axis", &[], &[2]);
    let total = g.node(
        "Gather",
        "mask/total_len",
        &[&shape, &two],
        vec![attr_int("axis", 0)],
    );
    let zero = g.ints("mask/zero", &[], &[0]);
    let one = g.ints("mask/one", &[], &[1]);
    let keys = g.node(
        "Range",
        "mask/key_positions",
        &[&zero, &total, &one],
        vec![],
    );
    let last = g.ints("mask/axes_last", &[1], &[-1]);
    let queries = g.node(
        "Unsqueeze",
        "mask/query_positions",
        &[positions, &last],
        vec![],
    );
    let future = g.node("Greater", "mask/future", &[&keys, &queries], vec![]);
    let neg = g.weight("mask/neg", &[], &[-1.0e9]);
    let zero_f = g.weight("mask/zero_f", &[], &[0.0]);
    let bias = g.node("Where", "mask/bias_bst", &[&future, &neg, &zero_f], vec![]);
    let axis1 = g.ints("mask/axes_heads", &[1], &[1]);
    g.node("Unsqueeze", "mask/bias", &[&bias, &axis1], vec![])
}
