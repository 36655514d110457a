//! `glimpse-export export`: a run directory → a model package.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use glimpse_runtime::frame::Grid;
use glimpse_runtime::package::{
    DECODER_FILE, EMBEDDING_FILE, FORMAT_VERSION, FileEntry, HEADS_FILE, MANIFEST_FILE, Manifest,
    Matching, Precision, TOKENIZER_FILE, VISION_FILE, external_data_file, sha256_file,
};

use crate::model::weights::{self, Weights};
use crate::onnx::builder::GraphFile;
use crate::train::{self, METRICS_FILE, PROGRESS_FILE, RunInfo};
use crate::{onnx, tokenizer};

/// Default limit on generated tokens: the longest caption has 23 words.
pub const MAX_NEW_TOKENS: usize = 32;

/// Writes the package of the run in `run_dir` to `out`, with graphs at each of
/// `precisions`. Returns the number of files. `run_dir` may also be a package: its f32
/// weights are then written again by this exporter (see [`export_package`]).
pub fn export(run_dir: &Path, out: &Path, name: &str, precisions: &[Precision]) -> Result<usize> {
    export_at(run_dir, out, name, precisions, None)
}

/// [`export`], from the checkpoint the run kept at `step` (`train --keep-checkpoints`)
/// when there is one, else from its last.
pub fn export_at(
    run_dir: &Path,
    out: &Path,
    name: &str,
    precisions: &[Precision],
    step: Option<usize>,
) -> Result<usize> {
    if crate::unpack::is_package(run_dir) {
        if step.is_some() {
            bail!(
                "--step picks a checkpoint of a training run; {} is a package",
                run_dir.display()
            );
        }
        return export_package(run_dir, out, name, precisions);
    }
    let run = train::read_run(run_dir)
        .with_context(|| format!("{} is not a training run", run_dir.display()))?;
    let device = train::device();
    let model = match step {
        Some(s) => train::load_kept_model(run_dir, &run, s, &device)?,
        None => train::load_model(run_dir, &run, &device)?,
    };
    let w = weights::collect(&model);
    let mut training = read_training_summary(run_dir);
    if let Some(s) = step {
        // the summary describes the run to its end; the weights are those of step `s`
        training["exported_step"] = serde_json::json!(s);
    }
    write_package(
        &w,
        &run,
        &run_dir.join(tokenizer::FILE),
        out,
        name,
        training,
        precisions,
    )
}

/// Writes a Glimpse package's f32 weights as a new package: the graphs in this exporter's
/// current layout, at any precisions. Its training record is kept; its evaluation is not
/// (run `eval --write` on the new package).
pub fn export_package(
    package: &Path,
    out: &Path,
    name: &str,
    precisions: &[Precision],
) -> Result<usize> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(package, out) {
        bail!(
            "--out {} is the package being read: write the new package to another directory",
            out.display()
        );
    }
    let device = train::device();
    let unpacked = crate::unpack::unpack(package, &device)?;
    let m = &unpacked.manifest;
    let mut options: train::TrainOptions = serde_json::from_value(m.data["options"].clone())
        .with_context(|| {
            format!(
                "{}: its manifest's data.options are not the training options of this exporter",
                package.display()
            )
        })?;
    if m.matching.is_none() {
        // no heads in the package, none in the new one
        options.contrastive = 0.0;
    }
    let run = RunInfo {
        model: m.model.clone(),
        canvas: m.canvas,
        options,
        data: m.data["training"].clone(),
    };
    let w = weights::collect(&unpacked.model);
    write_package(
        &w,
        &run,
        &unpacked.tokenizer,
        out,
        name,
        m.metrics["training"].clone(),
        precisions,
    )
}

fn read_training_summary(run_dir: &Path) -> serde_json::Value {
    let read = |f: &str| {
        std::fs::read_to_string(run_dir.join(f))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    };
    let mut v = read(METRICS_FILE).unwrap_or_else(|| serde_json::json!({}));
    if v.get("steps").is_none()
        && let Some(p) = read(PROGRESS_FILE)
    {
        v["steps"] = p["step"].clone();
    }
    v
}

/// Writes graphs (the three graphs once per precision), tokenizer and manifest for the
/// given weights.
pub fn write_package(
    w: &Weights,
    run: &RunInfo,
    tokenizer_path: &Path,
    out: &Path,
    name: &str,
    training: serde_json::Value,
    precisions: &[Precision],
) -> Result<usize> {
    if precisions.is_empty() {
        bail!("choose at least one precision");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cfg = &run.model;
    let mut graphs = vec![];
    // Glimpse's own models are small: their weights stay inside the .onnx files
    let target = |file: &str| GraphFile {
        path: out.join(file),
        external: false,
    };
    for &p in precisions {
        let file = p.file(EMBEDDING_FILE);
        onnx::embedding::build(w, cfg, p, &target(&file))?;
        graphs.push(file);
        let file = p.file(VISION_FILE);
        onnx::vision::build(w, cfg, &run.canvas, Grid::Canvas, p, &target(&file))?;
        graphs.push(file);
        let file = p.file(DECODER_FILE);
        onnx::decoder::build(w, cfg, p, &target(&file))?;
        graphs.push(file);
    }
    // The matching heads, when the run trained them.
    let matching = if run.options.contrastive > 0.0 {
        onnx::heads::build(w, cfg, &target(HEADS_FILE))?;
        graphs.push(HEADS_FILE.to_string());
        let scale = crate::onnx::get(w, "logit_scale")?.data[0]
            .min(crate::model::contrastive::MAX_LOGIT_SCALE)
            .exp();
        Some(Matching {
            file: HEADS_FILE.into(),
            dim: run.options.match_dim,
            logit_scale: scale,
        })
    } else {
        None
    };
    std::fs::copy(tokenizer_path, out.join(TOKENIZER_FILE))
        .with_context(|| format!("cannot copy {}", tokenizer_path.display()))?;
    let files = file_entries(
        out,
        std::iter::once(TOKENIZER_FILE.to_string()).chain(graphs),
    )?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        model: cfg.clone(),
        canvas: run.canvas,
        special_tokens: tokenizer::SPECIAL,
        special_token_names: Default::default(),
        image: Default::default(),
        prompt: Default::default(),
        precision: "f32".into(),
        precisions: precisions.to_vec(),
        max_new_tokens: MAX_NEW_TOKENS,
        files,
        data: serde_json::json!({
            "training": run.data,
            "options": run.options,
        }),
        metrics: serde_json::json!({ "training": training }),
        matching,
    };
    train::write_json(&out.join(MANIFEST_FILE), &manifest)?;
    Ok(manifest.files.len() + 1)
}

/// Checksums of the package files `names` in `dir`, with each graph's external data file
/// when it has one.
pub fn file_entries(
    dir: &Path,
    names: impl IntoIterator<Item = String>,
) -> Result<BTreeMap<String, FileEntry>> {
    let mut files = BTreeMap::new();
    for file in names {
        let data = external_data_file(&file);
        for name in [file, data] {
            let path = dir.join(&name);
            if !path.is_file() {
                continue;
            }
            let entry = FileEntry {
                sha256: sha256_file(&path)?,
                bytes: std::fs::metadata(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .len(),
            };
            files.insert(name, entry);
        }
    }
    Ok(files)
}

/// Records evaluation results under `metrics.eval` in the package manifest.
pub fn write_metrics(package: &Path, eval: serde_json::Value) -> Result<()> {
    let path = package.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut m: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid manifest", path.display()))?;
    if !m.metrics.is_object() {
        m.metrics = serde_json::json!({});
    }
    m.metrics["eval"] = eval;
    train::write_json(&path, &m)
}
