//! A package's f32 weights read back into a trainable model, so that `train --init PKG`
//! fine-tunes a package (the bundled one included) as it fine-tunes a run.
//!
//! The f32 graphs keep every parameter as an initializer under the name the exporter gave
//! it (`layers.3.qkv.weight`, see `model/weights.rs`); the rotary tables, masks and shape
//! constants beside them are not parameters and are left alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prost::Message;

use glimpse_runtime::frame::ImageFormat;
use glimpse_runtime::package::{
    DECODER_FILE, EMBEDDING_FILE, Manifest, Package, Precision, VISION_FILE,
};
use glimpse_runtime::text::PromptFormat;
use tract_onnx::pb::{ModelProto, TensorProto};

use crate::model::Fuyu;
use crate::model::weights::{Array, Weights, collect};
use crate::onnx::decoder::{QK_LAYERNORM, QKV_BY_PART, qkv_by_head};
use burn::prelude::Device;
use glimpse_runtime::ModelConfig;

/// ONNX's FLOAT element type.
const FLOAT: i32 = 1;

/// Whether `dir` is a package (it has a manifest) rather than a run.
pub fn is_package(dir: &Path) -> bool {
    dir.join(glimpse_runtime::package::MANIFEST_FILE).is_file()
}

/// The values of an f32 initializer, from the graph or its external data file.
fn values(t: &TensorProto, graph: &Path) -> Result<Vec<f32>> {
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    let raw = if t.external_data.is_empty() {
        t.raw_data.clone()
    } else {
        let field = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        let location = field("location").context("external data without a location")?;
        let file = graph.with_file_name(&location);
        let offset: u64 = field("offset").map_or(Ok(0), |v| v.parse())?;
        let length: usize = field("length")
            .context("external data without a length")?
            .parse()?;
        let mut f = std::fs::File::open(&file)
            .with_context(|| format!("cannot open {}", file.display()))?;
        use std::io::{Read, Seek};
        f.seek(std::io::SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; length];
        f.read_exact(&mut buf)
            .with_context(|| format!("{} is shorter than its graph says", file.display()))?;
        buf
    };
    if raw.len() % 4 != 0 {
        bail!("{} bytes are not a whole number of f32 values", raw.len());
    }
    Ok(raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Every f32 initializer of the graph at `path` whose name is in `wanted`.
fn read_graph(path: &Path, wanted: &Weights, into: &mut Weights) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let model = ModelProto::decode(bytes.as_slice())
        .with_context(|| format!("{} is not an ONNX model", path.display()))?;
    let graph = model
        .graph
        .with_context(|| format!("{} has no graph", path.display()))?;
    for t in &graph.initializer {
        let Some(want) = wanted.get(&t.name) else {
            continue;
        };
        if t.data_type != FLOAT {
            bail!(
                "{}: {} is not stored as f32 (ONNX type {})",
                path.display(),
                t.name,
                t.data_type
            );
        }
        let data = values(t, path).with_context(|| format!("{}: {}", path.display(), t.name))?;
        // a graph may hold a parameter with leading 1s (`image_newline` as [1, 1, 1, d])
        let squeeze = |d: &[usize]| d.iter().copied().filter(|&x| x != 1).collect::<Vec<_>>();
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        if squeeze(&dims) != squeeze(&want.dims) || data.len() != want.data.len() {
            bail!(
                "{}: {} has shape {dims:?} ({} values), the manifest's model needs {:?}",
                path.display(),
                t.name,
                data.len(),
                want.dims
            );
        }
        into.insert(
            t.name.clone(),
            Array {
                dims: want.dims.clone(),
                data,
            },
        );
    }
    Ok(())
}

/// `wanted` plus the names and shapes under which the decoder graph keeps two kinds of
/// parameters in its own layout (see `onnx::decoder`): each layer's `qkv` projection with
/// its outputs by part, and its query and key norms stacked.
fn with_graph_layout(wanted: &Weights, cfg: &ModelConfig) -> Weights {
    let mut all = wanted.clone();
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        for what in ["weight", "bias"] {
            if let Some(w) = wanted.get(&format!("{p}.qkv.{what}")) {
                all.insert(format!("{p}.{QKV_BY_PART}.{what}"), w.clone());
            }
            all.insert(
                format!("{p}.{QK_LAYERNORM}.{what}"),
                Array {
                    dims: vec![2, cfg.head_dim()],
                    data: vec![0.0; 2 * cfg.head_dim()],
                },
            );
        }
    }
    all
}

/// Puts the parameters read in the decoder graph's layout back under the model's names.
fn from_graph_layout(found: &mut Weights, cfg: &ModelConfig) {
    let (h, hd) = (cfg.n_heads, cfg.head_dim());
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        for what in ["weight", "bias"] {
            if let Some(w) = found.remove(&format!("{p}.{QKV_BY_PART}.{what}")) {
                found.insert(format!("{p}.qkv.{what}"), qkv_by_head(&w, h, hd));
            }
            if let Some(w) = found.remove(&format!("{p}.{QK_LAYERNORM}.{what}")) {
                for (part, data) in ["q", "k"].iter().zip(w.data.chunks(hd)) {
                    let a = Array {
                        dims: vec![hd],
                        data: data.to_vec(),
                    };
                    found.insert(format!("{p}.{part}_layernorm.{what}"), a);
                }
            }
        }
    }
}

/// What a package gives a fine-tuning run: its manifest, its tokenizer file, and its model
/// with the package's f32 weights.
pub struct Unpacked {
    pub manifest: Manifest,
    pub tokenizer: PathBuf,
    pub model: Fuyu,
    pub match_dim: usize,
}

/// Reads the package in `dir`, checks its f32 files' checksums, and builds its model from
/// its f32 graphs.
pub fn unpack(dir: &Path, device: &Device) -> Result<Unpacked> {
    let package = Package::open(dir)?;
    if !package.manifest.precisions.contains(&Precision::F32) {
        bail!(
            "{} carries no f32 graphs (only {}): a package is fine-tuned or exported again from its f32 weights; export one with --precision f32",
            dir.display(),
            package
                .manifest
                .precisions
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // the weights are trained on: a damaged file must not pass for a model
    package.verify(Precision::F32)?;
    let m = package.manifest;
    if m.image != ImageFormat::default() || m.prompt != PromptFormat::default() {
        bail!(
            "{} uses another model family's image format or prompt (an import): train and export read Glimpse's own packages; import the checkpoint again with import-hf",
            dir.display()
        );
    }
    // without matching heads in the package, the model's start afresh at the usual width
    let match_dim = m
        .matching
        .as_ref()
        .map_or(crate::train::TrainOptions::default().match_dim, |h| h.dim);
    // a fresh model of the manifest's shape names every parameter and its shape
    let fresh = Fuyu::new(&m.model, &m.canvas, match_dim, device);
    let wanted = collect(&fresh);
    let in_graphs = with_graph_layout(&wanted, &m.model);
    let mut found = Weights::new();
    let mut graphs = vec![VISION_FILE, EMBEDDING_FILE, DECODER_FILE];
    if let Some(h) = &m.matching {
        graphs.push(h.file.as_str());
    }
    for g in graphs {
        read_graph(&dir.join(g), &in_graphs, &mut found)?;
    }
    from_graph_layout(&mut found, &m.model);
    // the manifest keeps the matching temperature as exp(logit_scale)
    if let (Some(h), Some(want)) = (&m.matching, wanted.get("logit_scale")) {
        found.insert(
            "logit_scale".into(),
            Array {
                dims: want.dims.clone(),
                data: vec![h.logit_scale.ln(); want.data.len()],
            },
        );
    }
    let missing: Vec<&String> = wanted
        .keys()
        .filter(|k| !found.contains_key(*k))
        .filter(|k| m.matching.is_some() || !crate::train::is_matching_head(k))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: the f32 graphs lack {} parameters of the model, first {:?}",
            dir.display(),
            missing.len(),
            missing[0]
        );
    }
    let model = crate::train::model_from_weights(fresh, &found)?;
    Ok(Unpacked {
        tokenizer: dir.join(glimpse_runtime::package::TOKENIZER_FILE),
        manifest: m,
        model,
        match_dim,
    })
}
