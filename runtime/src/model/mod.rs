//! The three ONNX graphs of a package, loaded and optimised by tract:
//! patches → image embeddings ([`VisionGraph`]), token ids → embeddings
//! ([`EmbeddingGraph`]), embeddings → logits with a KV cache ([`DecoderGraph`]); and,
//! for image–text matching, a final decoder state → unit embedding ([`HeadsGraph`]).

mod check;
mod config;
mod decoder;
mod embedding;
mod heads;
mod q4;
mod vision;

use std::path::Path;

use tract_onnx::prelude::*;

pub use config::ModelConfig;
pub use decoder::{DecoderGraph, DecoderSession};
pub use embedding::EmbeddingGraph;
pub use heads::{Head, HeadsGraph};
pub use vision::VisionGraph;

use crate::error::{Error, Result};

pub(crate) type Plan = Arc<TypedRunnableModel>;

/// Loads an ONNX file into a typed tract model (not yet decluttered).
pub(crate) fn load_typed(path: &Path) -> Result<TypedModel> {
    let err = |e: TractError| Error::Graph {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("MatMulNBits", q4::mat_mul_nbits);
    onnx.provider = Arc::new(ReadAt);
    let model = onnx.model_for_path(path).map_err(err)?;
    model.into_typed().map_err(err)
}

/// Reads a tensor's ONNX external data with one positioned read into its buffer.
/// (tract-onnx's default maps the whole data file for every tensor and copies out of the
/// mapping, a page fault per 4 KiB.)
struct ReadAt;

impl tract_onnx::data_resolver::ModelDataResolver for ReadAt {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file =
            std::fs::File::open(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let size = file.metadata()?.len() as usize;
        let length = length.unwrap_or(size.saturating_sub(offset));
        anyhow::ensure!(
            offset.checked_add(length).is_some_and(|end| end <= size),
            "{}: external data {offset}..{} is past its end ({size} bytes): truncated",
            p.display(),
            offset.saturating_add(length)
        );
        file.seek(SeekFrom::Start(offset as u64))?;
        buf.reserve_exact(length);
        let read = file.take(length as u64).read_to_end(buf)?;
        anyhow::ensure!(
            read == length,
            "{}: read {read} of {length} bytes of external data",
            p.display()
        );
        Ok(())
    }
}

pub(crate) fn into_plan(path: &Path, model: TypedModel) -> Result<Plan> {
    model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| Error::Graph {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })
}

/// Index of the model input named `name`.
pub(crate) fn input_index(model: &TypedModel, name: &str) -> Option<usize> {
    model
        .input_outlets()
        .ok()?
        .iter()
        .position(|o| model.node(o.node).name == name)
}

/// Index of the model output named `name` (by its label, or its node's name).
pub(crate) fn output_index(model: &TypedModel, name: &str) -> Option<usize> {
    model
        .output_outlets()
        .ok()?
        .iter()
        .position(|o| model.outlet_label(*o) == Some(name) || model.node(o.node).name == name)
}

/// The f32 values of an output tensor.
pub(crate) fn f32_values(t: &TValue) -> Result<Vec<f32>> {
    let view = t.to_plain_array_view::<f32>().map_err(Error::inference)?;
    Ok(view.iter().copied().collect())
}

/// The kernels of an optimized model's matrix products, with the packing of their
/// constant operand (`avx512vnni_mmm_i32_16x16 on PackedI8K4 { r: 16, align: 16 } (x17)`).
pub(crate) fn matmul_kernels(model: &TypedModel) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for node in model.nodes() {
        let name = node.op.name();
        let lower = name.to_lowercase();
        if !(lower.contains("mat") || lower.contains("mmm") || lower.contains("einsum")) {
            continue;
        }
        if name != "OptMatMul" {
            continue;
        }
        let info = node.op.info().unwrap_or_default().join("; ");
        // "... with [fma_mmm_f32_32x1]; Ops: matmul(k=128, PackedQ4_0[32]Z16•PackedF32..."
        let kernels = info
            .split_once(" with [")
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| info.clone());
        let packing = info
            .split_once("matmul(k=")
            .and_then(|(_, r)| r.split_once(", "))
            .and_then(|(_, r)| r.split_once('•'))
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        let line = format!("{kernels} on {packing}");
        match seen.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += 1,
            None => seen.push((line, 1)),
        }
    }
    seen.into_iter()
        .map(|(l, n)| format!("{l} (x{n})"))
        .collect()
}
