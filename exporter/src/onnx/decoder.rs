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
use crate::model::weights::Array;
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

    /// `x[index]` along the leading axis, that axis dropped.
    fn take(&mut self, name: &str, x: &str, index: i64) -> String {
        let i = self.g.ints(&format!("{name}/index"), &[], &[index]);
        self.g
            .node("Gather", name, &[x, &i], vec![attr_int("axis", 0)])
    }

    /// The attention's queries, keys and values `[B, H, S, hd]` from the `qkv` projection.
    ///
    /// The projection's outputs are stored reordered from Persimmon's `[H, 3, hd]` to
    /// `[3, H, hd]` (see [`qkv_by_part`]), so queries, keys and values sit apart after one
    /// transpose. Queries and keys are normalised per head together, then take their own
    /// scale and bias from one stacked table each, and are rotated together.
    fn attention_inputs(&mut self, p: &str, hs: &str, rope: Option<&Rope>) -> Result<[String; 3]> {
        let (h, hd) = (self.cfg.n_heads, self.cfg.head_dim());
        let wt = qkv_by_part(&*get(self.w, &format!("{p}.qkv.weight"))?, h, hd);
        let bias = self
            .w
            .tensor(&format!("{p}.qkv.bias"))?
            .map(|b| qkv_by_part(&b, h, hd));
        let qkv = precision::linear(
            &mut self.g,
            &format!("{p}.{QKV_BY_PART}"),
            hs,
            &wt,
            bias.as_ref(),
            self.precision,
        )?;
        let shape = self.g.ints(
            &format!("{p}/qkv_shape"),
            &[5],
            &[0, 0, 3, h as i64, hd as i64],
        );
        let qkv = self.g.node(
            "Reshape",
            &format!("{p}/qkv_parts"),
            &[&qkv, &shape],
            vec![],
        );
        // [B, S, 3, H, hd] → [3, B, H, S, hd]
        let qkv = self.g.node(
            "Transpose",
            &format!("{p}/qkv_pbhsd"),
            &[&qkv],
            vec![attr_ints("perm", &[2, 0, 3, 1, 4])],
        );
        let v = self.take(&format!("{p}/v"), &qkv, 2);
        let qk = self.slice(&format!("{p}/qk"), &qkv, 0, 2, 0);
        let ones = self
            .g
            .weight(&format!("{p}/qk_norm.ones"), &[hd], &vec![1.0; hd]);
        let qk = self.g.node(
            "LayerNormalization",
            &format!("{p}/qk_norm"),
            &[&qk, &ones],
            vec![
                attr_int("axis", -1),
                attr_float("epsilon", self.cfg.layer_norm_eps),
            ],
        );
        let mut stacked = |what: &str| -> Result<String> {
            let mut data = Vec::with_capacity(2 * hd);
            for part in ["q", "k"] {
                data.extend_from_slice(&get(self.w, &format!("{p}.{part}_layernorm.{what}"))?.data);
            }
            Ok(self.g.weight(
                &format!("{p}.{QK_LAYERNORM}.{what}"),
                &[2, 1, 1, 1, hd],
                &data,
            ))
        };
        let (scale, shift) = (stacked("weight")?, stacked("bias")?);
        let qk = self
            .g
            .node("Mul", &format!("{p}/qk_scaled"), &[&qk, &scale], vec![]);
        let qk = self
            .g
            .node("Add", &format!("{p}/qk_shifted"), &[&qk, &shift], vec![]);
        let qk = match rope {
            Some(rope) => rope.apply(&mut self.g, &format!("{p}/qk_rotary"), &qk),
            None => qk,
        };
        let q = self.take(&format!("{p}/q"), &qk, 0);
        let k = self.take(&format!("{p}/k"), &qk, 1);
        Ok([q, k, v])
    }

    /// Scaled dot-product attention of the queries over the past and the new keys, as one
    /// ONNX `Attention` node that also writes `present = Concat(past, new)` along the
    /// sequence for the keys and the values (the form tract turns into a cache held in the
    /// running state, grown in place by its fused attention); heads merged back to
    /// `[B, S, d]` and projected by `dense`.
    fn attention(
        &mut self,
        p: &str,
        i: usize,
        [q, k, v]: [&str; 3],
        bias: &str,
        shared: &Shared,
    ) -> Result<String> {
        let past = ["key", "value"].map(|kv| format!("past_key_values.{i}.{kv}"));
        let present = ["key", "value"].map(|kv| format!("present.{i}.{kv}"));
        let scale = 1.0 / (self.cfg.head_dim() as f32).sqrt();
        let g = &mut self.g;
        let [o, _, _] = g.attention(
            &format!("{p}/attention"),
            &[q, k, v, bias, &past[0], &past[1]],
            &[&format!("{p}/attn_out"), &present[0], &present[1]],
            vec![attr_float("scale", scale)],
        );
        let o = g.node(
            "Transpose",
            &format!("{p}/o_bshd"),
            &[&o],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let o = g.node(
            "Reshape",
            &format!("{p}/o_merged"),
            &[&o, &shared.merge_shape],
            vec![],
        );
        self.linear(&format!("{p}.dense"), &o)
    }

    /// The MLP block with its norm and residual: `x + down(relu(up(norm(x)))²)`.
    fn mlp(&mut self, p: &str, x: &str) -> Result<String> {
        let hs = self.layer_norm(&format!("{p}.post_attention_layernorm"), x)?;
        let m = self.linear(&format!("{p}.mlp_up"), &hs)?;
        let m = self.g.node("Relu", &format!("{p}/relu"), &[&m], vec![]);
        let m = self
            .g
            .node("Mul", &format!("{p}/relu_squared"), &[&m, &m], vec![]);
        let m = self.linear(&format!("{p}.mlp_down"), &m)?;
        Ok(self
            .g
            .node("Add", &format!("{p}/residual_mlp"), &[x, &m], vec![]))
    }
}

/// Constants every layer's attention reads.
struct Shared {
    /// `[0, 0, d]`: heads merged back into the model width.
    merge_shape: String,
}

/// The `qkv` projection's name in the graph, its outputs reordered by [`qkv_by_part`].
pub const QKV_BY_PART: &str = "qkv_by_part";
/// The name in the graph of the query and key norms' scales and biases, stacked
/// `[2, 1, 1, 1, hd]` (queries first).
pub const QK_LAYERNORM: &str = "qk_layernorm";

/// A `[in, 3·H·hd]` projection (or its `[3·H·hd]` bias) with its outputs reordered from
/// Persimmon's head-major `[H, 3, hd]` to part-major `[3, H, hd]`.
pub fn qkv_by_part(w: &Array, h: usize, hd: usize) -> Array {
    reorder_qkv(w, h, hd, false)
}

/// The inverse of [`qkv_by_part`]: a graph's part-major projection back in Persimmon's
/// head-major order.
pub fn qkv_by_head(w: &Array, h: usize, hd: usize) -> Array {
    reorder_qkv(w, h, hd, true)
}

fn reorder_qkv(w: &Array, h: usize, hd: usize, back: bool) -> Array {
    let mut data = Vec::with_capacity(w.data.len());
    for row in w.data.chunks(3 * h * hd) {
        for block in 0..3 * h {
            // the result's block `block` is the input's block `from`
            let from = if back {
                let (head, part) = (block / 3, block % 3);
                part * h + head
            } else {
                let (part, head) = (block / h, block % h);
                head * 3 + part
            };
            data.extend_from_slice(&row[from * hd..(from + 1) * hd]);
        }
    }
    Array {
        dims: w.dims.clone(),
        data,
    }
}

/// Rotary embedding of the first `rotary_dim` values of each head, as one multiply-add
/// over the whole head: `x·cos + x[perm]·sin`, where `perm` swaps the two halves of the
/// rotated part (`rotate_half`, its sign folded into the `sin` table) and leaves the rest
/// in place, with `cos` 1 and `sin` 0 there. The tables `[1, B, 1, S, hd]` are gathered
/// at the position ids once for all layers.
struct Rope {
    cos: String,
    sin: String,
    perm: String,
}

impl Rope {
    fn new(g: &mut GraphBuilder, cfg: &ModelConfig, positions: &str) -> Option<Rope> {
        let (hd, rot, n) = (cfg.head_dim(), cfg.rotary_dim(), cfg.max_positions);
        if rot == 0 {
            return None;
        }
        let half = rot / 2;
        let (cos_t, sin_t) = cfg.rotary_tables();
        let sign: Vec<f32> = (0..rot)
            .map(|i| if i < half { -1.0 } else { 1.0 })
            .collect();
        let sign = g.weight("rotary/rotate_half_sign", &[rot], &sign);
        let mut full = Vec::new();
        for (name, t) in [("cos", cos_t), ("sin", sin_t)] {
            let t = g.weight(&format!("rotary.{name}"), &[n, rot], &t);
            let t = if name == "sin" {
                g.node("Mul", "rotary/sin_signed", &[&t, &sign], vec![])
            } else {
                t
            };
            // the part of each head that is not rotated: multiplied by 1, its swap by 0
            let t = if rot < hd {
                let fill = if name == "cos" { 1.0 } else { 0.0 };
                let pass = g.weight(
                    &format!("rotary/{name}_pass"),
                    &[n, hd - rot],
                    &vec![fill; n * (hd - rot)],
                );
                g.node(
                    "Concat",
                    &format!("rotary/{name}_full"),
                    &[&t, &pass],
                    vec![attr_int("axis", 1)],
                )
            } else {
                t
            };
            let at = g.node(
                "Gather",
                &format!("rotary/{name}_at_positions"),
                &[&t, positions],
                vec![attr_int("axis", 0)],
            );
            // [B, S, hd] → [1, B, 1, S, hd]: one row per query/key part, any head
            let axes = g.ints(&format!("rotary/{name}_axes"), &[2], &[0, 2]);
            full.push(g.node(
                "Unsqueeze",
                &format!("rotary/{name}"),
                &[&at, &axes],
                vec![],
            ));
        }
        let perm: Vec<i64> = (0..hd)
            .map(|i| match i {
                i if i < half => i + half,
                i if i < rot => i - half,
                i => i,
            } as i64)
            .collect();
        let perm = g.ints("rotary/rotate_half", &[hd], &perm);
        let [cos, sin] = [full[0].clone(), full[1].clone()];
        Some(Rope { cos, sin, perm })
    }

    fn apply(&self, g: &mut GraphBuilder, name: &str, x: &str) -> String {
        let swapped = g.node(
            "Gather",
            &format!("{name}/rotate_half"),
            &[x, &self.perm],
            vec![attr_int("axis", -1)],
        );
        let a = g.node("Mul", &format!("{name}/mul_cos"), &[x, &self.cos], vec![]);
        let b = g.node(
            "Mul",
            &format!("{name}/mul_sin"),
            &[&swapped, &self.sin],
            vec![],
        );
        g.node("Add", &format!("{name}/roped"), &[&a, &b], vec![])
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

    let rope = Rope::new(&mut c.g, cfg, &positions);

    let mut x = embeds.clone();
    let mut causal_bias: Option<String> = None;
    let shared = Shared {
        merge_shape: c.g.ints("merge_heads_shape", &[3], &[0, 0, d as i64]),
    };
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        let hs = c.layer_norm(&format!("{p}.input_layernorm"), &x)?;
        let [q, k, v] = c.attention_inputs(&p, &hs, rope.as_ref())?;
        let bias = causal_bias
            .get_or_insert_with(|| causal_mask(&mut c.g, &embeds, &positions))
            .clone();
        let o = c.attention(&p, i, [&q, &k, &v], &bias, &shared)?;
        x =
            c.g.node("Add", &format!("{p}/residual_attn"), &[&x, &o], vec![]);
        x = c.mlp(&p, &x)?;
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
/// position id, −1e9 elsewhere. `T` = `P + S`, the past keys' length (read from the shape
/// of layer 0's past) and the new tokens'.
fn causal_mask(g: &mut GraphBuilder, embeds: &str, positions: &str) -> String {
    let past = g.node(
        "Shape",
        "mask/past_len",
        &["past_key_values.0.key"],
        vec![attr_int("start", 2), attr_int("end", 3)],
    );
    let new = g.node(
        "Shape",
        "mask/new_len",
        &[embeds],
        vec![attr_int("start", 1), attr_int("end", 2)],
    );
    let total = g.node("Add", "mask/total_len_1", &[&past, &new], vec![]);
    let scalar = g.ints("mask/scalar_shape", &[0], &[]);
    let total = g.node("Reshape", "mask/total_len", &[&total, &scalar], vec![]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qkv_outputs_go_from_heads_to_parts_and_back() {
        // 2 heads of 2 values, one input row: Persimmon's order is
        // (h0: q q k k v v)(h1: q q k k v v)
        let by_head = Array {
            dims: vec![2, 12],
            data: (0..24).map(|i| i as f32).collect(),
        };
        let by_part = qkv_by_part(&by_head, 2, 2);
        assert_eq!(by_part.dims, by_head.dims);
        // queries of both heads, then keys, then values, row by row
        let row0 = [0., 1., 6., 7., 2., 3., 8., 9., 4., 5., 10., 11.];
        assert_eq!(&by_part.data[..12], &row0);
        assert_eq!(by_part.data[12], 12.0);
        assert_eq!(by_part.data[14], 18.0);
        assert_eq!(qkv_by_head(&by_part, 2, 2), by_head);
        // one head: the two orders agree
        let one = qkv_by_part(&by_head, 1, 4);
        assert_eq!(one, by_head);
    }
}
