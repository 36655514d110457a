//! The three ONNX graphs of a package, loaded and optimised by tract:
//! patches → image embeddings ([`VisionGraph`]), token ids → embeddings
//! ([`EmbeddingGraph`]), embeddings → logits with a KV cache ([`DecoderGraph`]); and,
//! for image–text matching, a final decoder state → unit embedding ([`HeadsGraph`]).

mod attention;
mod check;
mod config;
mod decoder;
mod embedding;
mod external;
mod fold;
mod half_cast;
mod heads;
mod parallel;
pub mod profile;
mod q4;
mod softmax;
mod sums;
mod threads;
mod vision;

use std::path::Path;

use tract_onnx::prelude::*;

pub use config::ModelConfig;
pub use decoder::{CacheGrowth, DecoderGraph, DecoderSession};
pub use embedding::EmbeddingGraph;
pub use heads::{Head, HeadsGraph};
pub use profile::{OpProfile, OpTime};
pub use threads::{set_threads, threads};
pub use vision::VisionGraph;

use crate::error::{Error, Result};

pub(crate) type Plan = Arc<TypedRunnableModel>;

/// Loads an ONNX file into a typed tract model (not yet decluttered).
pub(crate) fn load_typed(path: &Path) -> Result<TypedModel> {
    let err = graph_error(path);
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("MatMulNBits", q4::mat_mul_nbits);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut proto = onnx.proto_model_for_path(path).map_err(err)?;
    unparsed_operators(&onnx, &proto).map_err(err)?;
    let external = external::detach(&mut proto).map_err(err)?;
    let parsed = onnx.parse(&proto, dir.to_str()).map_err(err)?;
    drop(proto);
    if !parsed.unresolved_inputs.is_empty() {
        return Err(err(anyhow::anyhow!(
            "inputs {:?} are neither graph inputs nor initializers",
            parsed.unresolved_inputs
        )));
    }
    let mut model = parsed.model;
    external::attach(&mut model, dir, external).map_err(err)?;
    trace(path, "read");
    let mut model = model.into_typed().map_err(err)?;
    trace(path, "typed");
    if fold::fold_in_place(&mut model, |n| n.op_is::<q4::Q4Blocks>()).map_err(err)? > 0 {
        trace(path, "q4 weights as Q4_0 blocks");
    }
    Ok(model)
}

/// Refuses a graph with operators this build does not parse, naming them (tract would
/// name only the first, and only once it types the graph).
fn unparsed_operators(
    onnx: &tract_onnx::Onnx,
    proto: &tract_onnx::pb::ModelProto,
) -> TractResult<()> {
    let mut missing: Vec<&str> = proto
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .map(|n| n.op_type.as_str())
        .filter(|op| !onnx.op_register.0.contains_key(*op))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if cfg!(feature = "all-onnx-ops") {
        ""
    } else {
        " (this build parses only the operators of transformer graphs: build glimpse with the `all-onnx-ops` feature for all of tract's)"
    };
    anyhow::bail!(
        "uses ONNX operators this build does not parse: {}{hint}",
        missing.join(", ")
    )
}

/// tract's errors about the graph file `path`.
fn graph_error(path: &Path) -> impl Fn(TractError) -> Error + Copy + '_ {
    move |e| Error::Graph {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    }
}

/// With `GLIMPSE_TRACE_LOAD` set, notes on stderr how far a load has come: the time since
/// its start, the resident memory and its peak so far (where a large model's load spends
/// its time and memory, on a board as here).
pub(crate) fn trace(path: &Path, stage: &str) {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    if std::env::var_os("GLIMPSE_TRACE_LOAD").is_none() {
        return;
    }
    let elapsed = START.get_or_init(Instant::now).elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or("?".to_string(), |kib| format!("{:.0} MB", kib / 1024.0))
    };
    let file = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    crate::note!(
        "load {:>8.3} s  {:<42} resident {:>9}  peak {:>9}",
        elapsed.as_secs_f64(),
        format!("{file} {stage}"),
        mb("VmRSS:"),
        mb("VmHWM:")
    );
}

/// Declutters and optimises `model` (packing its weights for the kernels in place, see
/// [`fold`], and summing its int8 weights once, see [`sums`]) into a runnable plan.
pub(crate) fn into_plan(path: &Path, mut model: TypedModel) -> Result<Plan> {
    let err = graph_error(path);
    model.declutter().map_err(err)?;
    trace(path, "decluttered");
    let mut codegen = tract_onnx::tract_core::optim::Optimizer::codegen();
    codegen.add_pass(0, Box::new(fold::FoldWeightPacking));
    codegen.add_pass(0, Box::new(sums::FoldWeightSums));
    model
        .optimize_with_session(&mut codegen.session())
        .map_err(err)?;
    half_cast::replace_half_casts(&mut model).map_err(err)?;
    attention::replace_fused_attention(&mut model);
    trace(path, "optimised");
    model.into_runnable().map_err(err)
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
