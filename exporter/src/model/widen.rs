//! A model made `k` times wider that computes exactly what it did (Net2WiderNet).
//!
//! Every width of the decoder is multiplied by `k`: the residual stream (`d_model`), the
//! number of heads (each head keeps its size, so the rotary tables do not change) and the
//! MLP (`d_ff`). Each unit of the wider model is a copy of one of the narrower model's:
//!
//! - a weight that *makes* a widened unit (an output column of a Linear, an embedding
//!   row's value, a LayerNorm's scale and shift) is copied to each copy of the unit;
//! - a weight that *reads* a widened unit (an input row of a Linear) is split among the
//!   copies, in random shares that add up to the original weight.
//!
//! The residual stream of the wider model is then `k` copies of the narrower one's side by
//! side, so every LayerNorm sees the same mean and variance, each attention head is there
//! `k` times with the same scores, and each Linear's output is what it was. The random
//! split is what lets training make the copies differ: with equal shares every copy would
//! get the same gradient and stay a copy forever.

use anyhow::{Context, Result, bail, ensure};

use super::weights::{Array, Weights};
use glimpse_runtime::ModelConfig;

/// How far a copy's share of a split weight may be from `1/k`, as a fraction of `1/k`.
const SPLIT_SPREAD: f32 = 0.5;

/// What widening does to one dimension of a parameter.
#[derive(Clone, Copy, PartialEq)]
enum Axis {
    /// Left as it is.
    Keep,
    /// A widened unit is made along it: values copied to each copy.
    Copy,
    /// A widened unit is read along it: values split among the copies.
    Split,
}

/// The role of each dimension of parameter `name`, or `None` for a name this module does
/// not know (an error: a parameter left out would break the equivalence).
fn axes(name: &str) -> Option<Vec<Axis>> {
    use Axis::*;
    let layer_part = name.strip_prefix("layers.").map(|rest| {
        let dot = rest.find('.').unwrap_or(rest.len());
        rest[dot..].trim_start_matches('.')
    });
    let axes = match (name, layer_part) {
        (_, Some(part)) => match part {
            "input_layernorm.weight"
            | "input_layernorm.bias"
            | "post_attention_layernorm.weight"
            | "post_attention_layernorm.bias"
            | "qkv.bias"
            | "dense.bias"
            | "mlp_up.bias"
            | "mlp_down.bias" => vec![Copy],
            // per head: every head keeps its size
            "q_layernorm.weight" | "q_layernorm.bias" | "k_layernorm.weight"
            | "k_layernorm.bias" => vec![Keep],
            // `[in, out]`; qkv's outputs are laid out `[heads, 3, head_dim]`, so copying
            // the whole row adds the heads' copies after the originals
            "qkv.weight" | "dense.weight" | "mlp_up.weight" | "mlp_down.weight" => {
                vec![Split, Copy]
            }
            _ => return None,
        },
        ("vision_embed.weight" | "embed_tokens.weight", None) => vec![Keep, Copy],
        ("vision_embed.bias" | "image_newline", None) => vec![Copy],
        ("final_layernorm.weight" | "final_layernorm.bias", None) => vec![Copy],
        ("patch_position", None) => vec![Keep, Keep, Copy],
        ("lm_head.weight" | "image_head.weight" | "text_head.weight", None) => {
            vec![Split, Keep]
        }
        ("lm_head.bias" | "image_head.bias" | "text_head.bias" | "logit_scale", None) => {
            vec![Keep]
        }
        _ => return None,
    };
    Some(axes)
}

/// splitmix64: the shares of the split weights, the same for the same seed.
struct Shares(u64);

impl Shares {
    fn next_unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `k` shares that add up to one, each within `SPLIT_SPREAD` of `1/k`.
    fn draw(&mut self, k: usize) -> Vec<f32> {
        let base = 1.0 / k as f32;
        let mut shares: Vec<f32> = (0..k)
            .map(|_| base * (1.0 + SPLIT_SPREAD * (2.0 * self.next_unit() - 1.0)))
            .collect();
        let sum: f32 = shares.iter().sum();
        shares.iter_mut().for_each(|s| *s /= sum);
        shares
    }
}

/// `array` widened `k` times along each axis that is not [`Axis::Keep`].
fn widen_array(array: &Array, axes: &[Axis], k: usize, shares: &mut Shares) -> Array {
    let dims: Vec<usize> = array
        .dims
        .iter()
        .zip(axes)
        .map(|(&n, &a)| if a == Axis::Keep { n } else { n * k })
        .collect();
    let total: usize = dims.iter().product();
    let mut data = Vec::with_capacity(total);
    let split = axes.iter().position(|&a| a == Axis::Split);
    // with a split axis, `k` shares for each original value, drawn in the values' order
    let split_shares: Vec<f32> = match split {
        Some(_) => (0..array.data.len()).flat_map(|_| shares.draw(k)).collect(),
        None => Vec::new(),
    };
    let mut index = vec![0usize; dims.len()];
    for _ in 0..total {
        let mut source = 0;
        for (d, (&i, &n)) in index.iter().zip(&array.dims).enumerate() {
            source = source * n + if axes[d] == Axis::Keep { i } else { i % n };
        }
        let mut value = array.data[source];
        if let Some(s) = split {
            let copy = index[s] / array.dims[s];
            value *= split_shares[source * k + copy];
        }
        data.push(value);
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Array { dims, data }
}

/// `weights` of a model shaped `config`, widened `k` times; and the wider shape.
pub fn widen(
    weights: &Weights,
    config: &ModelConfig,
    k: usize,
    seed: u64,
) -> Result<(Weights, ModelConfig)> {
    ensure!(k >= 1, "a model is widened by a whole factor of at least 1");
    let wider = ModelConfig {
        d_model: config.d_model * k,
        n_heads: config.n_heads * k,
        d_ff: config.d_ff * k,
        ..config.clone()
    };
    wider.validate().map_err(anyhow::Error::msg)?;
    let mut shares = Shares(seed);
    let mut out = Weights::new();
    for (name, array) in weights {
        let axes = axes(name).with_context(|| format!("no rule to widen parameter {name}"))?;
        if axes.len() != array.dims.len() {
            bail!(
                "parameter {name} has {} dimensions, widening expects {}",
                array.dims.len(),
                axes.len()
            );
        }
        out.insert(name.clone(), widen_array(array, &axes, k, &mut shares));
    }
    Ok((out, wider))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fuyu::tests::{max_abs_diff, tiny, two_inputs};
    use crate::model::{Fuyu, Rotary};
    use burn::prelude::*;

    #[test]
    fn a_wider_model_computes_what_the_narrower_one_did() {
        let device = Device::default();
        device.seed(5);
        let (cfg, canvas) = tiny();
        let model = Fuyu::new(&cfg, &canvas, 8, &device);
        let (patches, ids) = two_inputs(&canvas, &device);
        let run = |m: &Fuyu, c: &ModelConfig| {
            let rotary = Rotary::new(c, &device);
            let logits = m.forward(patches.clone(), ids.clone(), &rotary, c.n_heads);
            let hidden = m.forward_hidden(patches.clone(), ids.clone(), &rotary, c.n_heads);
            let image = m.image_head.forward(hidden.narrow(1, 0, 1));
            (
                logits.into_data().try_to_vec::<f32>().unwrap(),
                image.into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let before = run(&model, &cfg);
        let weights = super::super::weights::collect(&model);
        for k in [2, 3] {
            let (wide, wider) = widen(&weights, &cfg, k, 11).unwrap();
            assert_eq!(
                (wider.d_model, wider.n_heads, wider.d_ff, wider.head_dim()),
                (16 * k, 2 * k, 32 * k, cfg.head_dim())
            );
            let fresh = Fuyu::new(&wider, &canvas, 8, &device);
            let wide_model = crate::train::model_from_weights(fresh, &wide).unwrap();
            let after = run(&wide_model, &wider);
            for (what, a, b) in [
                ("logits", &before.0, &after.0),
                ("image head", &before.1, &after.1),
            ] {
                assert_eq!(a.len(), b.len());
                let worst = max_abs_diff(a, b);
                let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
                assert!(
                    worst < 1e-4 * scale.max(1.0),
                    "k {k}: {what} moved by {worst} (largest {scale})"
                );
            }
        }
    }

    #[test]
    fn copies_are_made_exactly_and_reads_split_unevenly() {
        let device = Device::default();
        device.seed(9);
        let (cfg, canvas) = tiny();
        let model = Fuyu::new(&cfg, &canvas, 8, &device);
        let weights = super::super::weights::collect(&model);
        let (wide, _) = widen(&weights, &cfg, 2, 1).unwrap();
        // the residual stream's second copy of the patch projection is the first one
        let (old, new) = (
            &weights["vision_embed.weight"],
            &wide["vision_embed.weight"],
        );
        let (d, n) = (old.dims[1], new.dims[1]);
        for row in 0..old.dims[0] {
            let first = &new.data[row * n..row * n + d];
            assert_eq!(first, &old.data[row * d..(row + 1) * d]);
            assert_eq!(first, &new.data[row * n + d..(row + 1) * n]);
        }
        // a read of the stream: the two shares add up to the weight and differ from half
        let (old, new) = (
            &weights["layers.1.mlp_up.weight"],
            &wide["layers.1.mlp_up.weight"],
        );
        let (rows, cols) = (old.dims[0], old.dims[1]);
        let mut uneven = 0;
        for r in 0..rows {
            for c in 0..cols {
                let w = old.data[r * cols + c];
                let a = new.data[r * 2 * cols + c];
                let b = new.data[(r + rows) * 2 * cols + c];
                assert!(
                    (a + b - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{a} + {b} != {w}"
                );
                uneven += usize::from((a - b).abs() > 0.05 * w.abs());
            }
        }
        assert!(
            uneven > rows * cols * 3 / 4,
            "only {uneven} of {} split unevenly",
            rows * cols
        );
        // the same seed gives the same model, another seed another split
        assert_eq!(widen(&weights, &cfg, 2, 1).unwrap().0, wide);
        assert_ne!(widen(&weights, &cfg, 2, 2).unwrap().0, wide);
        // a parameter nobody knows how to widen is named
        let mut odd = weights.clone();
        odd.insert(
            "layers.0.extra.weight".into(),
            weights["logit_scale"].clone(),
        );
        let err = widen(&odd, &cfg, 2, 1).unwrap_err();
        assert!(
            format!("{err:#}").contains("layers.0.extra.weight"),
            "{err:#}"
        );
    }
}
