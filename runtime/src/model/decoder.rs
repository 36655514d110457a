//! `decoder.onnx`: embeddings → next-token logits, with a KV cache.
//!
//! The graph follows onnxruntime-genai's names: `inputs_embeds`, `position_ids`,
//! `past_key_values.{i}.key/value` in, `logits` and `present.{i}.key/value` out, each
//! present being `Concat(past, new)` along the sequence axis. At load, tract's
//! `transformers_detect_all` transform turns every such concat into a cache that lives
//! inside the running state: the past is then neither an input nor an output. Where the
//! concat is part of an ONNX `Attention` node (packages written since that node), tract
//! fuses each cache with its attention and appends in place (run by the runtime's own
//! attention, `model::attention`); in older packages each step concatenates, copying the
//! whole past ([`DecoderGraph::cache_growth`] tells which).

use std::path::Path;

use tract_onnx::prelude::*;

use super::check::GraphCheck;
use super::{ModelConfig, OpProfile, Plan, f32_values, input_index, into_plan, load_typed};
use crate::error::{Error, Result};

/// The decoder's caches: how many attention layers grow theirs in place (fused with the
/// attention) and how many caches are grown by a concatenation that copies the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheGrowth {
    pub in_place: usize,
    pub by_copy: usize,
}

impl std::fmt::Display for CacheGrowth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.in_place, self.by_copy) {
            (n, 0) => write!(f, "grown in place, fused with the attention ({n} layers)"),
            (0, n) => write!(f, "grown by copying the past at each step ({n} caches)"),
            (a, b) => write!(f, "{a} layers grown in place, {b} caches by copying"),
        }
    }
}

pub struct DecoderGraph {
    plan: Plan,
    embeds_input: usize,
    positions_input: usize,
    /// Output index of `logits`.
    logits_output: usize,
    /// Output index of `last_hidden_state` (packages written before matching lack it).
    state_output: Option<usize>,
    d_model: usize,
    vocab_size: usize,
}

/// Checks the decoder's declared inputs, outputs and rotary tables against the manifest's
/// model: width, vocabulary, layers, heads, context and rotary settings.
fn check(path: &Path, model: &TypedModel, cfg: &ModelConfig) -> Result<()> {
    let c = GraphCheck { path, model };
    let d = Some((cfg.d_model, "model.d_model"));
    let embeds = c.input("inputs_embeds")?;
    c.dims(embeds, "inputs_embeds", &[None, None, d])?;
    c.input("position_ids")?;
    let logits = c.output("logits")?;
    c.dims(
        logits,
        "logits",
        &[None, None, Some((cfg.vocab_size, "model.vocab_size"))],
    )?;
    if let Some(state) = c.optional_output("last_hidden_state") {
        c.dims(state, "last_hidden_state", &[None, None, d])?;
    }
    let inputs = model.input_outlets().map_err(Error::inference)?;
    let pasts = inputs
        .iter()
        .filter(|o| model.node(o.node).name.starts_with("past_key_values."))
        .count();
    if pasts != 2 * cfg.n_layers {
        return Err(c.mismatch(format!(
            "it has {pasts} past_key_values inputs (a key and a value per layer), but the manifest's model.n_layers is {}",
            cfg.n_layers
        )));
    }
    let heads = Some((cfg.n_heads, "model.n_heads"));
    let head_dim = Some((cfg.head_dim(), "model.d_model / model.n_heads"));
    for i in 0..cfg.n_layers {
        for kv in ["key", "value"] {
            let name = format!("past_key_values.{i}.{kv}");
            let outlet = c.input(&name)?;
            c.dims(outlet, &name, &[None, heads, None, head_dim])?;
        }
    }
    check_rotary(&c, cfg)
}

/// The graph's rotary tables, when it carries them as `rotary.cos` / `rotary.sin`, must
/// be the manifest's: `max_positions` rows, the rotary width its heads and
/// `rotary_fraction` give, and the angles of its `rope_theta`.
fn check_rotary(c: &GraphCheck, cfg: &ModelConfig) -> Result<()> {
    let (want_cos, want_sin) = cfg.rotary_tables();
    for (name, want) in [("rotary.cos", want_cos), ("rotary.sin", want_sin)] {
        let Some(table) = c.constant(name) else {
            continue;
        };
        let shape = table.shape().to_vec();
        if shape.first() != Some(&cfg.max_positions) {
            return Err(c.mismatch(format!(
                "{name} covers {:?} positions, but the manifest's model.max_positions is {}",
                shape.first(),
                cfg.max_positions
            )));
        }
        if shape.get(1) != Some(&cfg.rotary_dim()) {
            return Err(c.mismatch(format!(
                "{name} rotates {:?} dimensions per head, but the manifest's model.rotary_fraction {} of its head size {} gives {}",
                shape.get(1),
                cfg.rotary_fraction,
                cfg.head_dim(),
                cfg.rotary_dim()
            )));
        }
        let got = table.cast_to::<f32>().map_err(Error::inference)?;
        let got = got.to_plain_array_view::<f32>().map_err(Error::inference)?;
        if let Some((i, (g, w))) = got
            .iter()
            .zip(&want)
            .enumerate()
            .find(|(_, (g, w))| (*g - *w).abs() > 1e-3)
        {
            return Err(c.mismatch(format!(
                "{name} differs from the table of the manifest's model.rope_theta {} (value {i}: {g} in the graph, {w} from the manifest)",
                cfg.rope_theta
            )));
        }
    }
    Ok(())
}

impl DecoderGraph {
    pub fn load(path: &Path, cfg: &ModelConfig) -> Result<Self> {
        // Keep tract-transformers linked: its transforms register themselves at link time.
        // A function of the module that registers them, and not its NNEF registry, which
        // would link every transformer operator's NNEF (de)serialiser (0.15 MB on aarch64).
        std::hint::black_box(tract_transformers::figure_out_causal_llm_b_s_p as fn(&_) -> _);
        super::threads::keep_attention_on_threads();
        let mut model = load_typed(path)?;
        check(path, &model, cfg)?;
        let graph_err = |reason: String| Error::Graph {
            path: path.to_path_buf(),
            reason,
        };
        let transform = tract_core::transform::get_transform("transformers_detect_all")
            .map_err(|e| graph_err(format!("{e:#}")))?
            .ok_or_else(|| graph_err("tract has no transformers_detect_all transform".into()))?;
        transform
            .transform(&mut model)
            .map_err(|e| graph_err(format!("{e:#}")))?;
        let embeds_input = input_index(&model, "inputs_embeds")
            .ok_or_else(|| graph_err("no input named inputs_embeds".into()))?;
        let positions_input = input_index(&model, "position_ids")
            .ok_or_else(|| graph_err("no input named position_ids".into()))?;
        let inputs = model
            .input_outlets()
            .map_err(|e| graph_err(e.to_string()))?
            .len();
        if inputs != 2 {
            let names: Vec<String> = model
                .input_outlets()
                .map(|o| o.iter().map(|o| model.node(o.node).name.clone()).collect())
                .unwrap_or_default();
            return Err(graph_err(format!(
                "after turning past/present pairs into caches the decoder still has inputs {names:?}; \
                 every present.* output must be Concat(past_key_values.*, new, axis=2)"
            )));
        }
        let state_output = super::output_index(&model, "last_hidden_state");
        let logits_output = super::output_index(&model, "logits")
            .ok_or_else(|| graph_err("no output named logits".into()))?;
        Ok(Self {
            plan: into_plan(path, model)?,
            embeds_input,
            positions_input,
            logits_output,
            state_output,
            d_model: cfg.d_model,
            vocab_size: cfg.vocab_size,
        })
    }

    /// The matrix-product kernels tract chose for this graph, e.g.
    /// `fma_mmm_f32_32x1 on PackedQ4_0[32]Z16 (x17)`: what actually runs the products.
    pub fn matmul_kernels(&self) -> Vec<String> {
        super::matmul_kernels(self.plan.model())
    }

    /// How the KV cache is grown: `in place` when tract fused every cache with the
    /// attention that reads it (packages with `Attention` nodes: tract's `InPlaceKvSdpa`,
    /// which `into_plan` replaces with the runtime's own `CachedAttention`), else `by
    /// copying` (a concatenation per step, which copies the whole past).
    pub fn cache_growth(&self) -> CacheGrowth {
        let ops = |name: &str| {
            self.plan
                .model()
                .nodes()
                .iter()
                .filter(|n| n.op.name() == name)
                .count()
        };
        CacheGrowth {
            in_place: ops("CachedAttention"),
            by_copy: ops("DynamicKeyValueCache"),
        }
    }

    /// A new sequence with an empty cache.
    pub fn session(&self) -> Result<DecoderSession<'_>> {
        Ok(DecoderSession {
            graph: self,
            state: self.plan.spawn().map_err(Error::inference)?,
            len: 0,
            profile: None,
        })
    }
}

/// One sequence being decoded: its cache and its length so far. Cloning it forks the
/// sequence (the cache is copied once), e.g. to ask several questions after one image.
#[derive(Clone)]
pub struct DecoderSession<'g> {
    graph: &'g DecoderGraph,
    state: TypedSimpleState,
    len: usize,
    /// Operator times of the runs since [`profile_ops`](Self::profile_ops), when profiling.
    profile: Option<OpProfile>,
}

impl DecoderSession<'_> {
    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Times every operator of the runs from now on (see [`OpProfile`]), until
    /// [`take_profile`](Self::take_profile).
    pub fn profile_ops(&mut self) {
        self.profile = Some(OpProfile::default());
    }

    /// The operator times since [`profile_ops`](Self::profile_ops), ending the profiling.
    pub fn take_profile(&mut self) -> Option<OpProfile> {
        self.profile.take()
    }

    /// Appends `embeds` (`n × d` values) to the sequence and returns the logits of every
    /// new position (`n × vocab` values), or of the last one only (`vocab` values) for
    /// graphs that compute only those (every graph `glimpse-export` writes now).
    pub fn forward(&mut self, embeds: &[f32]) -> Result<Vec<f32>> {
        Ok(self.run(embeds, false)?.0)
    }

    /// Like [`forward`](Self::forward), plus the final decoder state of the last new
    /// position (`d` values), which the matching heads read. Fails for decoders that do
    /// not output it.
    pub fn forward_with_state(&mut self, embeds: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let (logits, state) = self.run(embeds, true)?;
        let state = state.ok_or_else(|| {
            Error::Inference(
                "this package's decoder has no last_hidden_state output: re-export it".into(),
            )
        })?;
        Ok((logits, state))
    }

    fn run(&mut self, embeds: &[f32], want_state: bool) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let d = self.graph.d_model;
        if embeds.is_empty() || !embeds.len().is_multiple_of(d) {
            return Err(Error::Inference(format!(
                "{} embedding values is not a whole number of {d}-wide tokens",
                embeds.len()
            )));
        }
        let n = embeds.len() / d;
        let positions: Vec<i64> = (self.len..self.len + n).map(|p| p as i64).collect();
        let e = Tensor::from_shape(&[1, n, d], embeds).map_err(Error::inference)?;
        let p = Tensor::from_shape(&[1, n], &positions).map_err(Error::inference)?;
        let inputs: TVec<TValue> = if self.graph.embeds_input < self.graph.positions_input {
            tvec!(e.into(), p.into())
        } else {
            tvec!(p.into(), e.into())
        };
        let out = match &mut self.profile {
            Some(profile) => profile.run(&mut self.state, inputs),
            None => self.state.run(inputs),
        }
        .map_err(Error::inference)?;
        self.len += n;
        let logits = f32_values(&out[self.graph.logits_output])?;
        // graphs written since computing logits at the last position only give one row
        let v = self.graph.vocab_size;
        if logits.len() != n * v && logits.len() != v {
            return Err(Error::Inference(format!(
                "the decoder gave {} logits for {n} positions of a {v}-token vocabulary",
                logits.len(),
            )));
        }
        let state = match self.graph.state_output {
            Some(i) if want_state => {
                // only the last position, read through a view rather than copying them all
                let view = out[i]
                    .to_plain_array_view::<f32>()
                    .map_err(Error::inference)?;
                if view.len() < d {
                    return Err(Error::Inference(format!(
                        "the decoder's last_hidden_state has {} values, less than one {d}-wide state",
                        view.len()
                    )));
                }
                Some(view.iter().skip(view.len() - d).copied().collect())
            }
            _ => None,
        };
        Ok((logits, state))
    }

    /// Logits of the last position only.
    pub fn forward_last(&mut self, embeds: &[f32]) -> Result<Vec<f32>> {
        let v = self.graph.vocab_size;
        let mut all = self.forward(embeds)?;
        // forward checked that there are n·v ≥ v values
        Ok(all.split_off(all.len() - v))
    }
}
