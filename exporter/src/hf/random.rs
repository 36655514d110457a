//! `glimpse-export random-hf`: a Fuyu checkpoint folder with random weights, laid out as
//! the published adept/fuyu-8b one (flat `config.json`, bf16 shards of the published
//! names with an index, `preprocessor_config.json`, a tokenizer of Fuyu's size and
//! special-token ids). It measures import, load and speed at real sizes without
//! downloading anything; the weights are written one tensor at a time.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::safetensors::{self, Dtype};

/// A model shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ff: usize,
    pub vocab: usize,
    pub max_positions: usize,
}

pub const PRESETS: [Preset; 4] = [
    // adept/fuyu-8b's configuration (9.4 B parameters)
    Preset {
        name: "fuyu-8b",
        hidden: 4096,
        layers: 36,
        heads: 64,
        ff: 16_384,
        vocab: 262_144,
        max_positions: 16_384,
    },
    // about 1.3 B parameters with Fuyu's vocabulary
    Preset {
        name: "fuyu-1b",
        hidden: 1536,
        layers: 16,
        heads: 24,
        ff: 6144,
        vocab: 262_144,
        max_positions: 16_384,
    },
    // about 100 M parameters, three quarters of them the embeddings and head of a
    // 72 000-token vocabulary (the smallest that keeps Fuyu's special token ids)
    Preset {
        name: "fuyu-100m",
        hidden: 512,
        layers: 8,
        heads: 8,
        ff: 2048,
        vocab: 72_000,
        max_positions: 4096,
    },
    // seconds to write: for trying the commands
    Preset {
        name: "fuyu-tiny",
        hidden: 64,
        layers: 2,
        heads: 4,
        ff: 256,
        vocab: 72_000,
        max_positions: 4096,
    },
];

pub fn preset(name: &str) -> Option<Preset> {
    PRESETS.iter().copied().find(|p| p.name == name)
}

/// Fuyu-8B's special token ids.
const BOS: usize = 1;
const EOS: usize = 2;
const BOA: usize = 3;
const SPEAKER: usize = 71_011;
const NEWLINE: usize = 71_019;
/// Largest shard, as `save_pretrained` splits by default.
const SHARD_BYTES: usize = 5_000_000_000;
const PATCH_DIM: usize = 3 * 30 * 30;

impl Preset {
    /// Every tensor, with its published name and shape, in the published order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, f, v) = (self.hidden, self.ff, self.vocab);
        let hd = d / self.heads;
        let mut t = vec![
            ("vision_embed_tokens.weight".to_string(), vec![d, PATCH_DIM]),
            ("vision_embed_tokens.bias".to_string(), vec![d]),
            (
                "language_model.model.embed_tokens.weight".to_string(),
                vec![v, d],
            ),
        ];
        for i in 0..self.layers {
            let p = format!("language_model.model.layers.{i}");
            for (n, s) in [
                ("input_layernorm.weight", vec![d]),
                ("input_layernorm.bias", vec![d]),
                ("self_attn.query_key_value.weight", vec![3 * d, d]),
                ("self_attn.query_key_value.bias", vec![3 * d]),
                ("self_attn.q_layernorm.weight", vec![hd]),
                ("self_attn.q_layernorm.bias", vec![hd]),
                ("self_attn.k_layernorm.weight", vec![hd]),
                ("self_attn.k_layernorm.bias", vec![hd]),
                ("self_attn.dense.weight", vec![d, d]),
                ("self_attn.dense.bias", vec![d]),
                ("post_attention_layernorm.weight", vec![d]),
                ("post_attention_layernorm.bias", vec![d]),
                ("mlp.dense_h_to_4h.weight", vec![f, d]),
                ("mlp.dense_h_to_4h.bias", vec![f]),
                ("mlp.dense_4h_to_h.weight", vec![d, f]),
                ("mlp.dense_4h_to_h.bias", vec![d]),
            ] {
                t.push((format!("{p}.{n}"), s));
            }
        }
        t.push((
            "language_model.model.final_layernorm.weight".into(),
            vec![d],
        ));
        t.push(("language_model.model.final_layernorm.bias".into(), vec![d]));
        t.push(("language_model.lm_head.weight".into(), vec![v, d]));
        t
    }

    pub fn parameters(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["FuyuForCausalLM"],
            "model_type": "fuyu",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.ff,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "hidden_act": "relu2",
            "max_position_embeddings": self.max_positions,
            "layer_norm_eps": 1e-5,
            "rope_theta": 25000.0,
            "partial_rotary_factor": 0.5,
            "qk_layernorm": true,
            "patch_size": 30,
            "num_channels": 3,
            "image_size": 300,
            "image_token_id": SPEAKER,
            "bos_token_id": BOS,
            "eos_token_id": EOS,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
        })
    }
}

/// A word-level tokenizer of `vocab` tokens with Fuyu-8B's special ids and a few words.
fn tokenizer(vocab: usize) -> serde_json::Value {
    let mut names: Vec<String> = (0..vocab).map(|i| format!("t{i}")).collect();
    for (id, n) in [
        (0, "<unk>"),
        (BOS, "<s>"),
        (EOS, "|ENDOFTEXT|"),
        (BOA, "<0x04>"),
        (SPEAKER.min(vocab - 2), "|SPEAKER|"),
        (NEWLINE.min(vocab - 1), "|NEWLINE|"),
    ] {
        names[id] = n.to_string();
    }
    let words = "Generate a coco-style caption. What is in the picture ? how many people are there";
    for (i, w) in words.split(' ').enumerate() {
        names[10 + i] = w.to_string();
    }
    let vocab_map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i.into()))
        .collect();
    let added: Vec<serde_json::Value> = [0, BOS, EOS, BOA]
        .iter()
        .map(|&id| {
            serde_json::json!({"id": id, "content": names[id], "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "<unk>"},
    })
}

/// Uniform values in `[-scale, scale]` (plus `offset`) from a small seeded generator.
fn values(n: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            offset + scale * (2.0 * u - 1.0)
        })
        .collect()
}

/// The indices of `tensors` (bf16) in each shard of at most [`SHARD_BYTES`], in order.
fn shards(tensors: &[(String, Vec<usize>)]) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut size = 0;
    for (i, (_, s)) in tensors.iter().enumerate() {
        let bytes = s.iter().product::<usize>() * 2;
        if size + bytes > SHARD_BYTES && !shards.last().unwrap().is_empty() {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().unwrap().push(i);
        size += bytes;
    }
    shards
}

/// Writes a random-weight checkpoint of `preset` to `out` (which must not exist).
pub fn write(preset: &Preset, out: &Path, progress: bool) -> Result<u64> {
    if out.exists() {
        bail!(
            "{} already exists: remove it or choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    json("config.json", &preset.config())?;
    json(
        "preprocessor_config.json",
        &serde_json::json!({
            "image_processor_type": "FuyuImageProcessor",
            "do_resize": true, "do_pad": true, "do_rescale": true, "do_normalize": true,
            "image_mean": 0.5, "image_std": 0.5, "padding_value": 1.0,
            "rescale_factor": 1.0 / 255.0,
            "patch_size": {"height": 30, "width": 30},
            "size": {"height": 1080, "width": 1920},
        }),
    )?;
    json("tokenizer.json", &tokenizer(preset.vocab))?;

    let tensors = preset.tensors();
    let shards = shards(&tensors);
    let total: u64 = tensors
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64 * 2)
        .sum();
    let bar = crate::progress::bar(
        progress,
        total,
        "{msg} [{bar:30}] {bytes}/{total_bytes}, {elapsed}",
    );
    let mut weight_map = serde_json::Map::new();
    let count = shards.len();
    for (k, idx) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{count:05}.safetensors", k + 1);
        bar.set_message(file.clone());
        let list: Vec<(String, Vec<usize>)> = idx.iter().map(|&i| tensors[i].clone()).collect();
        for (n, _) in &list {
            weight_map.insert(n.clone(), file.clone().into());
        }
        safetensors::write(&out.join(&file), &list, Dtype::Bf16, |j| {
            let (name, shape) = &list[j];
            let n = shape.iter().product::<usize>();
            let seed = idx[j] as u64 + 1;
            let v = if name.contains("layernorm.weight") {
                values(n, seed, 0.1, 1.0)
            } else if name.ends_with(".bias") {
                values(n, seed, 0.02, 0.0)
            } else {
                // about the spread of a trained model's weights: 1/sqrt(fan-in)
                values(n, seed, (3.0 / shape[shape.len() - 1] as f32).sqrt(), 0.0)
            };
            bar.inc(n as u64 * 2);
            Ok(v)
        })?;
    }
    bar.finish_and_clear();
    json(
        safetensors::INDEX_FILE,
        &serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
    )?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_keep_the_order_and_stay_under_the_limit() {
        let tensors = preset("fuyu-8b").unwrap().tensors();
        let shards = shards(&tensors);
        let order: Vec<usize> = shards.concat();
        assert_eq!(order, (0..tensors.len()).collect::<Vec<_>>());
        let bytes = |s: &[usize]| -> usize {
            s.iter()
                .map(|&i| tensors[i].1.iter().product::<usize>() * 2)
                .sum()
        };
        // 18.8 GB of bf16 in four shards of at most 5 GB, none of them empty
        assert_eq!(
            shards.len(),
            4,
            "{:?}",
            shards.iter().map(|s| bytes(s)).collect::<Vec<_>>()
        );
        assert!(
            shards
                .iter()
                .all(|s| !s.is_empty() && bytes(s) <= SHARD_BYTES)
        );
        // a tensor larger than a shard still gets one of its own
        let big = vec![
            ("a".to_string(), vec![2, SHARD_BYTES]),
            ("b".to_string(), vec![1]),
        ];
        assert_eq!(super::shards(&big), vec![vec![0], vec![1]]);
    }

    #[test]
    fn fuyu_8b_has_its_published_parameter_count() {
        let p = preset("fuyu-8b").unwrap();
        // 9.41 B: 2 × 262144 × 4096 embeddings and head, 36 layers, the patch projection
        assert_eq!(p.parameters(), 9_408_238_592);
        assert!((1.2e9..1.3e9).contains(&(preset("fuyu-1b").unwrap().parameters() as f64)));
        assert!((0.09e9..0.11e9).contains(&(preset("fuyu-100m").unwrap().parameters() as f64)));
    }

    #[test]
    fn a_written_checkpoint_imports() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = tmp.path().join("ckpt");
        let p = preset("fuyu-tiny").unwrap();
        let bytes = write(&p, &ckpt, false).unwrap();
        assert_eq!(bytes as usize, p.parameters() * 2);
        let out = tmp.path().join("pkg");
        let done = super::super::import(&super::super::ImportOptions {
            dir: &ckpt,
            out: &out,
            name: None,
            precisions: &[glimpse_runtime::package::Precision::Q4],
            max_image: Some("300x300".parse().unwrap()),
            progress: false,
        })
        .unwrap();
        assert_eq!(done.manifest.special_tokens.image, 71_011);
        assert_eq!(done.manifest.canvas.width, 1920);
        let g = glimpse_runtime::Glimpse::load(&out).unwrap();
        let frame = image::RgbImage::new(640, 480);
        // 300x225 → 10 × 8 patches and 8 newlines
        assert_eq!(g.image_tokens(640, 480), 88);
        assert!(g.caption(&frame).is_ok());
    }
}
