//! A Fuyu checkpoint's `config.json` and its image processor's settings
//! (`preprocessor_config.json`, or the `image_processor` of `processor_config.json`), read
//! into Glimpse's [`ModelConfig`], [`Canvas`] and [`ImageFormat`].
//!
//! Each text-model field is looked up as transformers' `FuyuConfig` does: in
//! `text_config`, then at the top level (older configs are flat), then in
//! `rope_parameters`, then Fuyu-8B's default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::{Canvas, Grid, ImageFormat, Rounding};

pub const CONFIG_FILE: &str = "config.json";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
pub const PROCESSOR_FILE: &str = "processor_config.json";

/// What the import needs from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct FuyuConfig {
    pub model: ModelConfig,
    /// Side of the square patches the vision projection reads.
    pub patch: u32,
    /// `|SPEAKER|`: the placeholder of each patch.
    pub image_token_id: u32,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: Option<u32>,
    /// The LM head is the embedding table (no `lm_head` tensor).
    pub tie_word_embeddings: bool,
}

struct Fields<'a> {
    path: &'a Path,
    top: &'a Value,
    text: Option<&'a Value>,
}

impl Fields<'_> {
    fn find(&self, key: &str) -> Option<&Value> {
        fn rope<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
            v.get("rope_parameters").and_then(|r| r.get(key))
        }
        self.text
            .and_then(|t| t.get(key))
            .or_else(|| self.top.get(key))
            .filter(|v| !v.is_null())
            .or_else(|| self.text.and_then(|t| rope(t, key)))
            .or_else(|| rope(self.top, key))
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.find(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .with_context(|| {
                    format!(
                        "{}: {key} is {v}, not a positive integer",
                        self.path.display()
                    )
                }),
        }
    }

    fn f32(&self, key: &str, default: f32) -> Result<f32> {
        match self.find(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .with_context(|| format!("{}: {key} is {v}, not a number", self.path.display())),
        }
    }

    fn id(&self, key: &str) -> Result<Option<u32>> {
        match self.find(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .with_context(|| format!("{}: {key} is {v}, not a token id", self.path.display())),
        }
    }

    fn bool(&self, key: &str, default: bool) -> bool {
        self.find(key).and_then(|v| v.as_bool()).unwrap_or(default)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.find(key).and_then(|v| v.as_str())
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Reads and checks `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<FuyuConfig> {
    let path = dir.join(CONFIG_FILE);
    let top = read_json(&path)?;
    match top.get("model_type").and_then(|v| v.as_str()) {
        Some("fuyu") => {}
        Some(other) => bail!(
            "{}: model_type is {other:?}; glimpse-export import-hf reads Fuyu checkpoints (model_type \"fuyu\")",
            path.display()
        ),
        None => bail!(
            "{}: no model_type (a Fuyu checkpoint has \"fuyu\")",
            path.display()
        ),
    }
    let f = Fields {
        path: &path,
        top: &top,
        text: top.get("text_config").filter(|t| t.is_object()),
    };
    if let Some(act) = f.str("hidden_act")
        && act != "relu2"
    {
        bail!(
            "{}: hidden_act is {act:?}; Persimmon's squared ReLU (\"relu2\") is the only one supported",
            path.display()
        );
    }
    if !f.bool("qk_layernorm", true) {
        bail!(
            "{}: qk_layernorm is false; only Fuyu's query/key layer norms are supported",
            path.display()
        );
    }
    if f.usize("num_channels", 3)? != 3 {
        bail!("{}: num_channels must be 3 (RGB)", path.display());
    }
    let model = ModelConfig {
        vocab_size: f.usize("vocab_size", 262_144)?,
        d_model: f.usize("hidden_size", 4096)?,
        n_layers: f.usize("num_hidden_layers", 36)?,
        n_heads: f.usize("num_attention_heads", 64)?,
        d_ff: f.usize("intermediate_size", 16_384)?,
        rotary_fraction: f.f32("partial_rotary_factor", 0.5)?,
        rope_theta: f.f32("rope_theta", 25_000.0)?,
        layer_norm_eps: f.f32("layer_norm_eps", 1e-5)?,
        max_positions: f.usize("max_position_embeddings", 16_384)?,
    };
    model
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let patch = f.usize("patch_size", 30)?;
    let patch = u32::try_from(patch)
        .with_context(|| format!("{}: patch_size {patch} is too large", path.display()))?;
    let image_token_id = f.id("image_token_id")?.unwrap_or(71_011);
    let bos_token_id = f.id("bos_token_id")?.unwrap_or(1);
    let eos_token_id = f.id("eos_token_id")?.unwrap_or(2);
    let pad_token_id = f.id("pad_token_id")?;
    Ok(FuyuConfig {
        model,
        patch,
        image_token_id,
        bos_token_id,
        eos_token_id,
        pad_token_id,
        tie_word_embeddings: f.bool("tie_word_embeddings", false),
    })
}

/// The image processor's settings as saved (`preprocessor_config.json`, or the
/// `image_processor` of `processor_config.json`), with their file; `Null` without either.
fn processor_settings(dir: &Path) -> Result<(Option<PathBuf>, Value)> {
    let pre = dir.join(PREPROCESSOR_FILE);
    let proc = dir.join(PROCESSOR_FILE);
    Ok(if pre.is_file() {
        (Some(pre.clone()), read_json(&pre)?)
    } else if proc.is_file() {
        let v = read_json(&proc)?;
        let ip = v
            .get("image_processor")
            .cloned()
            .with_context(|| format!("{} has no image_processor settings", proc.display()))?;
        (Some(proc.clone()), ip)
    } else {
        (None, Value::Null)
    })
}

/// The processor's mean or std (`key`): one number, or one per channel; 0.5 when unset.
fn per_channel(v: &Value, key: &str, shown: &str) -> Result<[f32; 3]> {
    match v.get(key) {
        None | Some(Value::Null) => Ok([0.5; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x
                    .as_f64()
                    .with_context(|| format!("{shown}: {key} holds {x}, not a number"))?
                    as f32;
            }
            Ok(out)
        }
        Some(x) => {
            let x = x
                .as_f64()
                .with_context(|| format!("{shown}: {key} is {x}, not a number or three"))?;
            Ok([x as f32; 3])
        }
    }
}

/// The image processor's settings, and the file they came from (`None`: Fuyu-8B's
/// defaults, for a checkpoint saved without them).
pub fn read_processor(dir: &Path, patch: u32) -> Result<(Canvas, ImageFormat, Option<PathBuf>)> {
    let (path, v) = processor_settings(dir)?;
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the default image processor".into());
    let num = |key: &str, sub: Option<&str>, default: f64| -> Result<f64> {
        let v = match sub {
            Some(s) => v.get(key).and_then(|x| x.get(s)),
            None => v.get(key),
        };
        match v {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|x| x.is_finite())
                .with_context(|| format!("{shown}: {key} is {x}, not a number")),
        }
    };
    for flag in ["do_resize", "do_pad", "do_rescale", "do_normalize"] {
        if v.get(flag).and_then(|b| b.as_bool()) == Some(false) {
            bail!("{shown}: {flag} is false; only Fuyu's full preprocessing is supported");
        }
    }
    let rescale = num("rescale_factor", None, 1.0 / 255.0)?;
    if (rescale * 255.0 - 1.0).abs() > 1e-6 {
        bail!("{shown}: rescale_factor {rescale} is not 1/255");
    }
    let ph = num("patch_size", Some("height"), patch as f64)?;
    let pw = num("patch_size", Some("width"), patch as f64)?;
    if ph != patch as f64 || pw != patch as f64 {
        bail!("{shown}: patch_size {pw}x{ph} differs from config.json's patch_size {patch}");
    }
    let height = num("size", Some("height"), 1080.0)?;
    let width = num("size", Some("width"), 1920.0)?;
    let canvas = Canvas {
        width: width as u32,
        height: height as u32,
        patch,
    };
    canvas
        .validate()
        .map_err(|e| anyhow::anyhow!("{shown}: size {width}x{height}: {e}"))?;
    let format = ImageFormat {
        grid: Grid::Image,
        rounding: Rounding::Floor,
        // transformers pads the 0–255 image with padding_value before rescaling
        pad: num("padding_value", None, 1.0)? as f32,
        mean: per_channel(&v, "image_mean", &shown)?,
        std: per_channel(&v, "image_std", &shown)?,
        max_image: None,
    };
    format
        .validate(&canvas)
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    Ok((canvas, format, path))
}
