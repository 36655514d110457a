//! `glimpse-export import-hf`: a Hugging Face Fuyu checkpoint → a Glimpse package.
//!
//! The checkpoint folder is what `save_pretrained` writes: `config.json`, the weights
//! (`model.safetensors` or shards with `model.safetensors.index.json`), `tokenizer.json`
//! and the image processor's settings. The package holds the same three graphs as a
//! native one, their weights in ONNX external data, written one tensor at a time; its
//! manifest records what Fuyu does differently (patch grid, padding, prompt, token names).
//! The package is built in a temporary folder beside `--out` and moved there only when
//! complete: a failed import leaves nothing behind.

pub mod config;
pub mod random;
pub mod safetensors;
pub mod weights;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use glimpse_runtime::frame::{Canvas, Grid, Size};
use glimpse_runtime::package::{
    DECODER_FILE, EMBEDDING_FILE, FORMAT_VERSION, MANIFEST_FILE, Manifest, Precision,
    SpecialTokenNames, SpecialTokens, TOKENIZER_FILE, VISION_FILE,
};
use glimpse_runtime::text::PromptFormat;

use crate::onnx::{self, builder::GraphFile};
use config::FuyuConfig;
use safetensors::Checkpoint;
use weights::FuyuWeights;

pub const TOKENIZER: &str = "tokenizer.json";
/// Fuyu's beginning-of-answer token.
pub const BOA: &str = "<0x04>";
/// Fuyu's image-row newline token.
pub const NEWLINE: &str = "|NEWLINE|";
/// Fuyu-8B's captioning prompt.
pub const CAPTION_PROMPT: &str = "Generate a coco-style caption.\n";
/// Fuyu's prompts end with a newline.
pub const QUESTION_PROMPT: &str = "{question}\n";
/// Default limit on generated tokens for imported models.
pub const MAX_NEW_TOKENS: usize = 64;

pub struct ImportOptions<'a> {
    pub dir: &'a Path,
    pub out: &'a Path,
    pub name: Option<&'a str>,
    pub precisions: &'a [Precision],
    /// The manifest's default bound on the frame fed to the model.
    pub max_image: Option<Size>,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub out: PathBuf,
    pub manifest: Manifest,
    pub seconds: f64,
    /// Bytes of the checkpoint's weight files.
    pub checkpoint_bytes: u64,
}

/// The checkpoint's tokenizer: its size must be the config's vocabulary, and the
/// special tokens must be in it. Returns the ids and texts of the special tokens.
fn read_tokenizer(dir: &Path, cfg: &FuyuConfig) -> Result<(SpecialTokens, SpecialTokenNames)> {
    let path = dir.join(TOKENIZER);
    if !path.is_file() {
        bail!(
            "{} is missing: the checkpoint's tokenizer is needed",
            path.display()
        );
    }
    let tok = glimpse_runtime::text::parse_tokenizer(&path)?;
    let size = tok.get_vocab_size(true);
    if size != cfg.model.vocab_size {
        bail!(
            "{} has {size} tokens but config.json's vocab_size is {}: tokenizer and weights do not belong together",
            path.display(),
            cfg.model.vocab_size
        );
    }
    let name_of = |id: u32, role: &str| -> Result<String> {
        tok.id_to_token(id).with_context(|| {
            format!(
                "{}: config.json's {role} {id} is not in the tokenizer",
                path.display()
            )
        })
    };
    let id_of = |name: &str| -> Result<u32> {
        tok.token_to_id(name).with_context(|| {
            format!(
                "{}: it has no {name} token, which Fuyu's token stream needs",
                path.display()
            )
        })
    };
    let pad = cfg.pad_token_id.unwrap_or(cfg.eos_token_id);
    let ids = SpecialTokens {
        pad,
        bos: cfg.bos_token_id,
        eos: cfg.eos_token_id,
        boa: id_of(BOA)?,
        newline: id_of(NEWLINE)?,
        image: cfg.image_token_id,
    };
    let names = SpecialTokenNames {
        pad: name_of(pad, "pad_token_id")?,
        bos: name_of(ids.bos, "bos_token_id")?,
        eos: name_of(ids.eos, "eos_token_id")?,
        boa: BOA.into(),
        newline: NEWLINE.into(),
        image: name_of(ids.image, "image_token_id")?,
    };
    Ok((ids, names))
}

/// Removes the folder being built unless the import completed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

pub fn import(o: &ImportOptions) -> Result<Imported> {
    let t0 = Instant::now();
    if o.precisions.is_empty() {
        bail!("choose at least one precision");
    }
    if o.out.exists() {
        bail!(
            "{} already exists: remove it or choose another --out",
            o.out.display()
        );
    }
    let cfg = config::read_config(o.dir)?;
    let (canvas, mut image, _) = config::read_processor(o.dir, cfg.patch)?;
    if let Some(m) = o.max_image {
        image
            .check_max_image(&canvas, m)
            .map_err(|e| anyhow::anyhow!("--max-image: {e}"))?;
        image.max_image = Some(m);
    }
    let tokens = image.max_image_tokens(&canvas);
    if tokens >= cfg.model.max_positions {
        bail!(
            "the largest image takes {tokens} tokens, more than the model's {} positions: choose a smaller --max-image",
            cfg.model.max_positions
        );
    }
    let (special, names) = read_tokenizer(o.dir, &cfg)?;
    let ckpt = Checkpoint::open(o.dir)?;

    let tmp = staging_dir(o.out)?;
    let mut partial = Partial(Some(tmp.clone()));

    let graphs = write_graphs(o, &cfg, &canvas, &ckpt, special.newline, &tmp)?;
    std::fs::copy(o.dir.join(TOKENIZER), tmp.join(TOKENIZER_FILE))
        .with_context(|| format!("cannot copy {}", o.dir.join(TOKENIZER).display()))?;
    let files = crate::package::file_entries(
        &tmp,
        std::iter::once(TOKENIZER_FILE.to_string()).chain(graphs),
    )?;
    let name = o.name.map(str::to_string).unwrap_or_else(|| {
        o.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fuyu".into())
    });
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name,
        model: cfg.model.clone(),
        canvas,
        special_tokens: special,
        special_token_names: names,
        image,
        prompt: PromptFormat {
            caption: CAPTION_PROMPT.into(),
            question: QUESTION_PROMPT.into(),
        },
        precision: "f32".into(),
        precisions: o.precisions.to_vec(),
        max_new_tokens: MAX_NEW_TOKENS,
        files,
        data: serde_json::json!({
            "imported_from": "Hugging Face Fuyu checkpoint",
            "checkpoint": o.dir.display().to_string(),
            "checkpoint_bytes": ckpt.bytes,
        }),
        metrics: serde_json::json!({}),
        matching: None,
    };
    crate::train::write_json(&tmp.join(MANIFEST_FILE), &manifest)?;
    std::fs::rename(&tmp, o.out)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), o.out.display()))?;
    partial.0 = None;
    Ok(Imported {
        out: o.out.to_path_buf(),
        manifest,
        seconds: t0.elapsed().as_secs_f64(),
        checkpoint_bytes: ckpt.bytes,
    })
}

/// A fresh hidden folder beside `out` to build the package in (`.NAME.importing`), so an
/// interrupted import never leaves a package that looks whole.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = out
        .file_name()
        .with_context(|| format!("--out {} has no folder name", out.display()))?;
    let tmp = parent.join(format!(".{}.importing", file_name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

/// Writes the embedding, vision and decoder graphs of every precision asked for into
/// `dir`, reading the checkpoint's tensors as they are needed; returns their file names.
fn write_graphs(
    o: &ImportOptions,
    cfg: &FuyuConfig,
    canvas: &Canvas,
    ckpt: &Checkpoint,
    newline_id: u32,
    dir: &Path,
) -> Result<Vec<String>> {
    // tensors each precision reads: the decoder's, the embedding table and newline row,
    // the vision projection
    let per_precision = cfg.model.n_layers * 16 + 3 + 2 + 3;
    let bar = crate::progress::bar(
        o.progress,
        (per_precision * o.precisions.len()) as u64,
        "{msg:24} [{bar:30}] {pos}/{len} tensors, {elapsed}",
    );
    let w = FuyuWeights {
        ckpt,
        config: cfg,
        newline_id,
        reads: Cell::new(0),
        on_read: Box::new(|_| bar.inc(1)),
    };
    let mut graphs = Vec::new();
    for &p in o.precisions {
        let target = |file: &str| GraphFile {
            path: dir.join(file),
            external: true,
        };
        bar.set_message(format!("{p} embedding"));
        let file = p.file(EMBEDDING_FILE);
        onnx::embedding::build(&w, &cfg.model, p, &target(&file))?;
        graphs.push(file);
        bar.set_message(format!("{p} vision"));
        let file = p.file(VISION_FILE);
        onnx::vision::build(&w, &cfg.model, canvas, Grid::Image, p, &target(&file))?;
        graphs.push(file);
        bar.set_message(format!("{p} decoder"));
        let file = p.file(DECODER_FILE);
        onnx::decoder::build(&w, &cfg.model, p, &target(&file))?;
        graphs.push(file);
    }
    bar.finish_and_clear();
    Ok(graphs)
}
