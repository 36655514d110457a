//! A Fuyu checkpoint's tensors under Glimpse's names, read one at a time.
//!
//! Both layouts transformers has saved are read: the published checkpoints'
//! (`language_model.model.layers.N...`, `vision_embed_tokens`, `language_model.lm_head`)
//! and the current model classes' (`model.language_model.layers.N...`,
//! `model.vision_embed_tokens`, `lm_head`). PyTorch Linear weights (`[out, in]`) are
//! transposed to the `[in, out]` the graph builders take, and every shape is checked
//! against `config.json` before use.

use std::borrow::Cow;
use std::cell::Cell;

use anyhow::{Context, Result, bail};

use super::config::FuyuConfig;
use super::safetensors::Checkpoint;
use crate::model::weights::Array;
use crate::onnx::Tensors;

/// Prefixes of the language model's tensors, in both layouts.
const TEXT_PREFIXES: [&str; 2] = ["language_model.model.", "model.language_model."];
const VISION_PREFIXES: [&str; 2] = ["vision_embed_tokens.", "model.vision_embed_tokens."];
const HEAD_PREFIXES: [&str; 2] = ["language_model.lm_head.", "lm_head."];

pub struct FuyuWeights<'c> {
    pub ckpt: &'c Checkpoint,
    pub config: &'c FuyuConfig,
    /// `|NEWLINE|`: its embedding row is the image-row newline.
    pub newline_id: u32,
    /// Tensors read so far (for progress).
    pub reads: Cell<usize>,
    /// Called after each tensor is read.
    pub on_read: Box<dyn Fn(&str) + 'c>,
}

/// Glimpse's name of a layer's sub-module → its name in a Persimmon layer.
fn layer_part(part: &str) -> Option<&'static str> {
    Some(match part {
        "input_layernorm" => "input_layernorm",
        "post_attention_layernorm" => "post_attention_layernorm",
        "qkv" => "self_attn.query_key_value",
        "dense" => "self_attn.dense",
        "q_layernorm" => "self_attn.q_layernorm",
        "k_layernorm" => "self_attn.k_layernorm",
        "mlp_up" => "mlp.dense_h_to_4h",
        "mlp_down" => "mlp.dense_4h_to_h",
        _ => return None,
    })
}

impl FuyuWeights<'_> {
    /// The checkpoint names a Glimpse name may have, and whether it is a Linear weight.
    fn candidates(&self, name: &str) -> Option<(Vec<String>, bool)> {
        let (module, param) = name.rsplit_once('.')?;
        let with = |prefixes: &[&str], rest: &str| -> Vec<String> {
            prefixes.iter().map(|p| format!("{p}{rest}")).collect()
        };
        let linear = param == "weight";
        Some(match module {
            "embed_tokens" => (with(&TEXT_PREFIXES, name), false),
            "final_layernorm" => (with(&TEXT_PREFIXES, name), false),
            "lm_head" => (with(&HEAD_PREFIXES, param), linear),
            "vision_embed" => (with(&VISION_PREFIXES, param), linear),
            _ => {
                let rest = module.strip_prefix("layers.")?;
                let (i, part) = rest.split_once('.')?;
                let hf = layer_part(part)?;
                let is_linear = linear && matches!(part, "qkv" | "dense" | "mlp_up" | "mlp_down");
                (
                    with(&TEXT_PREFIXES, &format!("layers.{i}.{hf}.{param}")),
                    is_linear,
                )
            }
        })
    }

    /// The shape `config.json` gives a tensor, in the checkpoint's own layout.
    fn expected_shape(&self, name: &str) -> Option<Vec<usize>> {
        let m = &self.config.model;
        let (d, hd, v, ff) = (m.d_model, m.head_dim(), m.vocab_size, m.d_ff);
        let pd = 3 * (self.config.patch as usize).pow(2);
        let (module, param) = name.rsplit_once('.')?;
        let part = module
            .strip_prefix("layers.")
            .and_then(|r| r.split_once('.'))
            .map(|(_, p)| p)
            .unwrap_or(module);
        let w = param == "weight";
        Some(match (part, w) {
            ("embed_tokens", _) => vec![v, d],
            ("lm_head", _) => vec![v, d],
            ("vision_embed", true) => vec![d, pd],
            ("qkv", true) => vec![3 * d, d],
            ("qkv", false) => vec![3 * d],
            ("dense", true) => vec![d, d],
            ("mlp_up", true) => vec![ff, d],
            ("mlp_up", false) => vec![ff],
            ("mlp_down", true) => vec![d, ff],
            ("q_layernorm" | "k_layernorm", _) => vec![hd],
            _ => vec![d],
        })
    }

    fn find(&self, name: &str) -> Option<(String, bool)> {
        let (cands, linear) = self.candidates(name)?;
        cands
            .into_iter()
            .find(|c| self.ckpt.info(c).is_some())
            .map(|c| (c, linear))
    }

    fn checked(&self, hf: &str, name: &str) -> Result<()> {
        let info = self
            .ckpt
            .info(hf)
            .with_context(|| format!("the checkpoint has no tensor {hf}"))?;
        if let Some(want) = self.expected_shape(name)
            && info.shape != want
        {
            bail!(
                "{}: tensor {hf} has shape {:?}, but config.json's sizes give {want:?}",
                info.file.display(),
                info.shape
            );
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Option<Array>> {
        if name == "image_newline" {
            let (hf, _) = self
                .find("embed_tokens.weight")
                .with_context(|| self.missing("embed_tokens.weight"))?;
            self.checked(&hf, "embed_tokens.weight")?;
            let row = self.newline_id as usize;
            let mut a = self.ckpt.read_rows(&hf, row..row + 1)?;
            a.dims = vec![a.data.len()];
            return Ok(Some(a));
        }
        if name == "patch_position" {
            return Ok(None); // Fuyu has no patch positions
        }
        let found = match self.find(name) {
            Some(f) => Some(f),
            None if name == "lm_head.weight" && self.config.tie_word_embeddings => {
                self.find("embed_tokens.weight").map(|(n, _)| (n, true))
            }
            None => None,
        };
        let Some((hf, linear)) = found else {
            // biases Fuyu's Linears all have; a missing one is a broken checkpoint
            if name.ends_with(".bias") && name.starts_with("lm_head") {
                return Ok(None);
            }
            bail!(self.missing(name));
        };
        // a tied LM head is the embedding table, and checked as one
        self.checked(&hf, name)?;
        let a = self.ckpt.read(&hf)?;
        Ok(Some(if linear { transpose(a) } else { a }))
    }

    fn missing(&self, name: &str) -> String {
        let (cands, _) = self.candidates(name).unwrap_or_default();
        format!(
            "{}: the checkpoint has no {} (looked for {})",
            self.ckpt.dir.display(),
            name,
            cands.join(" and ")
        )
    }
}

impl Tensors for FuyuWeights<'_> {
    fn tensor(&self, name: &str) -> Result<Option<Cow<'_, Array>>> {
        let t = self.read(name)?;
        self.reads.set(self.reads.get() + 1);
        (self.on_read)(name);
        Ok(t.map(Cow::Owned))
    }
}

/// `[out, in]` → `[in, out]`, in blocks so that both sides stay in cache.
pub fn transpose(a: Array) -> Array {
    let (rows, cols) = (a.dims[0], a.dims[1]);
    let mut out = vec![0f32; a.data.len()];
    const B: usize = 64;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = a.data[r * cols + c];
                }
            }
        }
    }
    Array {
        dims: vec![cols, rows],
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_value() {
        let a = Array {
            dims: vec![70, 130],
            data: (0..70 * 130).map(|i| i as f32).collect(),
        };
        let t = transpose(a.clone());
        assert_eq!(t.dims, vec![130, 70]);
        for r in 0..70 {
            for c in 0..130 {
                assert_eq!(t.data[c * 70 + r], a.data[r * 130 + c]);
            }
        }
    }
}
