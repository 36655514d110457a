//! Fuyu-style decoder-only vision-language model (burn).
//!
//! No vision encoder: each patch is flattened and projected by one Linear (plus a learned
//! position for its place on the canvas); a learned newline embedding closes each patch
//! row; text tokens follow. The decoder is
//! Persimmon's: LayerNorm with bias, a fused QKV projection laid out per head as
//! `[heads, 3, head_dim]`, LayerNorm on Q and K per head, rotary embeddings in
//! rotate_half form on part of each head, a squared-ReLU MLP, and an untied LM head.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Bool;
use burn::tensor::activation::{relu, softmax};

use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::Canvas;

#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: LayerNorm,
    pub qkv: Linear,
    pub q_layernorm: LayerNorm,
    pub k_layernorm: LayerNorm,
    pub dense: Linear,
    pub post_attention_layernorm: LayerNorm,
    pub mlp_up: Linear,
    pub mlp_down: Linear,
}

#[derive(Module, Debug)]
pub struct Fuyu {
    pub vision_embed: Linear,
    /// Learned position of each patch on the canvas, `[rows, cols, d]`. Fuyu has none and
    /// leaves layout to the decoder; with a fixed canvas this table is cheap, and a small
    /// model learns "left of" far sooner with it.
    pub patch_position: Param<Tensor<3>>,
    pub image_newline: Param<Tensor<1>>,
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub final_layernorm: LayerNorm,
    pub lm_head: Linear,
    /// Projection of the decoder state after the image tokens into the shared image–text
    /// space (CLIP-style matching; see [`super::contrastive`]).
    pub image_head: Linear,
    /// Projection of the decoder state at the end of a text-only sequence into that space.
    pub text_head: Linear,
    /// Log of the similarity scale, `1/τ`, learned (CLIP starts it at `ln(1/0.07)`).
    pub logit_scale: Param<Tensor<1>>,
}

/// Rotary `cos`/`sin` tables `[max_positions, rotary_dim]`, from [`ModelConfig::rotary_tables`].
#[derive(Clone, Debug)]
pub struct Rotary {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
    pub dim: usize,
}

impl Rotary {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (cos, sin) = cfg.rotary_tables();
        let shape = [cfg.max_positions, cfg.rotary_dim()];
        Rotary {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            dim: cfg.rotary_dim(),
        }
    }

    /// rotate_half rotary embedding of the first `dim` values of each head of `x`
    /// (`[batch, heads, seq, head_dim]`), with the tables of `layout`'s positions.
    fn apply(&self, x: Tensor<4>, layout: &Layout) -> Tensor<4> {
        let [_, _, _, head_dim] = x.dims();
        if self.dim == 0 {
            return x;
        }
        let half = self.dim / 2;
        let rot = x.clone().narrow(3, 0, self.dim);
        let x1 = rot.clone().narrow(3, 0, half);
        let x2 = rot.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let rot = rot * layout.cos.clone() + rotated * layout.sin.clone();
        if self.dim == head_dim {
            rot
        } else {
            let pass = x.narrow(3, self.dim, head_dim - self.dim);
            Tensor::cat(vec![rot, pass], 3)
        }
    }
}

/// Where each position of a sequence sits and what it may attend to: its rotary tables
/// and the attention mask, made once per forward pass and shared by every layer.
///
/// [`Layout::causal`] is the plain sequence the runtime runs. [`Layout::packed`] lets one
/// row carry several texts about the same image: each text sees the image and itself,
/// and starts at the position right after the image, so the row computes exactly what
/// the texts would give as separate rows, with the image tokens computed once.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `[1 or batch, 1, seq, rotary_dim]`
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// `[batch, 1, seq, seq]`: true where query `i` may not see key `j`.
    blocked: Tensor<4, Bool>,
}

impl Layout {
    /// Positions `0..seq`, each seeing itself and everything before it.
    pub fn causal(rotary: &Rotary, batch: usize, seq: usize) -> Self {
        let device = rotary.cos.device();
        let table = |t: &Tensor<2>| t.clone().narrow(0, 0, seq).unsqueeze_dims::<4>(&[0, 1]);
        Layout {
            cos: table(&rotary.cos),
            sin: table(&rotary.sin),
            blocked: Tensor::<2, Bool>::tril_mask([seq, seq], 0, &device)
                .unsqueeze_dims::<4>(&[0, 1])
                .expand([batch, 1, seq, seq]),
        }
    }

    /// `image` image tokens followed by texts: `segments[b][j]` names the text that text
    /// token `j` of row `b` belongs to (`[batch, text_len]`), and `positions` gives its
    /// position (`[batch, text_len]`). Image tokens take positions `0..image`.
    pub fn packed(
        rotary: &Rotary,
        image: usize,
        positions: &[i64],
        segments: &[i64],
        batch: usize,
    ) -> Self {
        let device = rotary.cos.device();
        let text = positions.len() / batch.max(1);
        let seq = image + text;
        let mut all = Vec::with_capacity(batch * seq);
        let mut blocked = Vec::with_capacity(batch * seq * seq);
        for b in 0..batch {
            all.extend(0..image as i64);
            all.extend_from_slice(&positions[b * text..(b + 1) * text]);
            let seg = &segments[b * text..(b + 1) * text];
            for i in 0..seq {
                for j in 0..seq {
                    let visible =
                        j <= i && (j < image || (i >= image && seg[i - image] == seg[j - image]));
                    blocked.push(!visible);
                }
            }
        }
        let index = Tensor::<1, Int>::from_data(TensorData::new(all, [batch * seq]), &device);
        let table = |t: &Tensor<2>| {
            t.clone()
                .select(0, index.clone())
                .reshape([batch, 1, seq, rotary.dim])
        };
        Layout {
            cos: table(&rotary.cos),
            sin: table(&rotary.sin),
            blocked: Tensor::from_data(TensorData::new(blocked, [batch, 1, seq, seq]), &device),
        }
    }
}

fn layer_norm(d: usize, eps: f32, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d)
        .with_epsilon(eps as f64)
        .init(device)
}

impl Block {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (d, hd, eps) = (cfg.d_model, cfg.head_dim(), cfg.layer_norm_eps);
        Block {
            input_layernorm: layer_norm(d, eps, device),
            qkv: LinearConfig::new(d, 3 * d).init(device),
            q_layernorm: layer_norm(hd, eps, device),
            k_layernorm: layer_norm(hd, eps, device),
            dense: LinearConfig::new(d, d).init(device),
            post_attention_layernorm: layer_norm(d, eps, device),
            mlp_up: LinearConfig::new(d, cfg.d_ff).init(device),
            mlp_down: LinearConfig::new(cfg.d_ff, d).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>, rotary: &Rotary, layout: &Layout, n_heads: usize) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let hd = d / n_heads;
        let h = self.input_layernorm.forward(x.clone());
        let qkv = self.qkv.forward(h).reshape([b, s, n_heads, 3, hd]);
        let part = |i: usize| qkv.clone().narrow(3, i, 1).reshape([b, s, n_heads, hd]);
        let q = self.q_layernorm.forward(part(0)).swap_dims(1, 2);
        let k = self.k_layernorm.forward(part(1)).swap_dims(1, 2);
        let v = part(2).swap_dims(1, 2);
        let q = rotary.apply(q, layout);
        let k = rotary.apply(k, layout);
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt());
        let blocked = layout.blocked.clone().expand([b, n_heads, s, s]);
        let attn = softmax(scores.mask_fill(blocked, -1.0e9), 3);
        let o = attn.matmul(v).swap_dims(1, 2).reshape([b, s, d]);
        let x = x + self.dense.forward(o);
        let h = relu(
            self.mlp_up
                .forward(self.post_attention_layernorm.forward(x.clone())),
        );
        x + self.mlp_down.forward(h.clone() * h)
    }
}

impl Fuyu {
    pub fn new(cfg: &ModelConfig, canvas: &Canvas, match_dim: usize, device: &Device) -> Self {
        let d = cfg.d_model;
        Fuyu {
            vision_embed: LinearConfig::new(canvas.patch_dim(), d).init(device),
            patch_position: Param::from_tensor(Tensor::random(
                [canvas.rows(), canvas.cols(), d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            image_newline: Param::from_tensor(Tensor::random(
                [d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            embed_tokens: EmbeddingConfig::new(cfg.vocab_size, d).init(device),
            layers: (0..cfg.n_layers).map(|_| Block::new(cfg, device)).collect(),
            final_layernorm: layer_norm(d, cfg.layer_norm_eps, device),
            lm_head: LinearConfig::new(d, cfg.vocab_size)
                .with_bias(false)
                .init(device),
            image_head: LinearConfig::new(d, match_dim).init(device),
            text_head: LinearConfig::new(d, match_dim).init(device),
            logit_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![super::contrastive::INITIAL_LOGIT_SCALE], [1]),
                device,
            )),
        }
    }

    /// Image embeddings: patches `[batch, rows, cols, patch_dim]` → `[batch, rows·(cols+1), d]`.
    pub fn embed_image(&self, patches: Tensor<4>) -> Tensor<3> {
        let [b, rows, cols, _] = patches.dims();
        let e = self.vision_embed.forward(patches) + self.patch_position.val().unsqueeze_dim(0);
        let d = e.dims()[3];
        let newline = self
            .image_newline
            .val()
            .reshape([1, 1, 1, d])
            .expand([b, rows, 1, d]);
        Tensor::cat(vec![e, newline], 2).reshape([b, rows * (cols + 1), d])
    }

    /// Final (normalised) decoder states `[batch, seq, d]` for a sequence of embeddings
    /// laid out as `layout` says.
    pub fn hidden(
        &self,
        x: Tensor<3>,
        rotary: &Rotary,
        layout: &Layout,
        n_heads: usize,
    ) -> Tensor<3> {
        let mut x = x;
        for layer in &self.layers {
            x = layer.forward(x, rotary, layout, n_heads);
        }
        self.final_layernorm.forward(x)
    }

    /// Final decoder states for a plain causal sequence of embeddings.
    pub fn hidden_causal(&self, x: Tensor<3>, rotary: &Rotary, n_heads: usize) -> Tensor<3> {
        let [b, s, _] = x.dims();
        self.hidden(x, rotary, &Layout::causal(rotary, b, s), n_heads)
    }

    /// Final decoder states for image patches followed by text ids.
    pub fn forward_hidden(
        &self,
        patches: Tensor<4>,
        text_ids: Tensor<2, Int>,
        rotary: &Rotary,
        n_heads: usize,
    ) -> Tensor<3> {
        let image = self.embed_image(patches);
        let text = self.embed_tokens.forward(text_ids);
        self.hidden_causal(Tensor::cat(vec![image, text], 1), rotary, n_heads)
    }

    /// Final decoder states for image patches followed by packed texts (see
    /// [`Layout::packed`]).
    pub fn forward_hidden_packed(
        &self,
        patches: Tensor<4>,
        text_ids: Tensor<2, Int>,
        rotary: &Rotary,
        layout: &Layout,
        n_heads: usize,
    ) -> Tensor<3> {
        let image = self.embed_image(patches);
        let text = self.embed_tokens.forward(text_ids);
        self.hidden(Tensor::cat(vec![image, text], 1), rotary, layout, n_heads)
    }

    /// Unit-length image embeddings `[n, match_dim]` from the decoder states at the last
    /// image token (`[n, d]`): by causal masking they have seen the image and nothing else.
    pub fn image_embedding(&self, state: Tensor<2>) -> Tensor<2> {
        super::contrastive::normalize(self.image_head.forward(state))
    }

    /// Unit-length text embeddings `[n, match_dim]` from the decoder states at the last
    /// token of text-only sequences (`[n, d]`).
    pub fn text_embedding(&self, state: Tensor<2>) -> Tensor<2> {
        super::contrastive::normalize(self.text_head.forward(state))
    }

    /// Decoder states `[n, d]` at the end of text-only sequences `ids` `[n, len]`, the
    /// last real token of row `i` being at `last[i]`.
    pub fn text_state(
        &self,
        ids: Tensor<2, Int>,
        last: Tensor<1, Int>,
        rotary: &Rotary,
        n_heads: usize,
    ) -> Tensor<2> {
        let h = self.hidden_causal(self.embed_tokens.forward(ids), rotary, n_heads);
        let [n, _, d] = h.dims();
        let index = last.reshape([n, 1, 1]).expand([n, 1, d]);
        h.gather(1, index).reshape([n, d])
    }

    /// Logits for image patches followed by text ids `[batch, text_len]`.
    pub fn forward(
        &self,
        patches: Tensor<4>,
        text_ids: Tensor<2, Int>,
        rotary: &Rotary,
        n_heads: usize,
    ) -> Tensor<3> {
        self.lm_head
            .forward(self.forward_hidden(patches, text_ids, rotary, n_heads))
    }
}

/// Mean cross-entropy of `logits` `[batch, seq, vocab]` against `targets` `[batch, seq]`,
/// counting only positions where `weights` (`[batch, seq]`, 0 or 1) is 1.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
) -> Tensor<1> {
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    let picked = logp
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    let total = weights.clone().sum().clamp_min(1.0);
    (picked * weights).sum().neg() / total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny() -> (ModelConfig, Canvas) {
        (
            ModelConfig {
                vocab_size: 20,
                d_model: 16,
                n_layers: 2,
                n_heads: 2,
                d_ff: 32,
                rotary_fraction: 0.5,
                rope_theta: 25_000.0,
                layer_norm_eps: 1e-5,
                max_positions: 32,
            },
            Canvas {
                width: 8,
                height: 4,
                patch: 4,
            },
        )
    }

    /// Two frames of random patches for `canvas` and two texts of four token ids, each
    /// below [`tiny`]'s vocabulary of 20.
    pub(crate) fn two_inputs(canvas: &Canvas, device: &Device) -> (Tensor<4>, Tensor<2, Int>) {
        let patches = Tensor::<4>::random(
            [2, canvas.rows(), canvas.cols(), canvas.patch_dim()],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 5, 9, 2, 7, 3, 19, 11], [2, 4]),
            device,
        );
        (patches, ids)
    }

    /// The largest absolute difference between two outputs of the same shape.
    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn later_tokens_never_change_earlier_logits() {
        let (cfg, canvas) = tiny();
        let device = Device::default();
        let model = Fuyu::new(&cfg, &canvas, 8, &device);
        let rotary = Rotary::new(&cfg, &device);
        let patches = Tensor::<4>::random(
            [1, canvas.rows(), canvas.cols(), canvas.patch_dim()],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let run = |ids: Vec<i64>| {
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 4]), &device);
            model
                .forward(patches.clone(), ids, &rotary, cfg.n_heads)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let a = run(vec![1, 7, 8, 9]);
        let b = run(vec![1, 7, 8, 15]);
        let v = cfg.vocab_size;
        let n = canvas.image_tokens() + 3; // positions before the changed token
        for i in 0..n * v {
            assert!((a[i] - b[i]).abs() < 1e-5, "logit {i} changed");
        }
        // the changed position itself does change
        assert!((n * v..(n + 1) * v).any(|i| (a[i] - b[i]).abs() > 1e-4));
    }
}
