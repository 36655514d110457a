//! `glimpse-export train`: the training loop, with progress, validation, checkpoints,
//! resume, a loss curve and final metrics.
//!
//! A run directory holds everything needed to resume or export:
//! `run.json` (model config, canvas, options, data summary), `tokenizer.json`,
//! `model.safetensors`, `optimizer.bin`, `progress.json` (step and loss history), and at the
//! end `loss.csv`, `loss.png` and `metrics.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::Canvas;
use glimpse_runtime::scene::Rng;
use glimpse_runtime::text::TextTokenizer;

use crate::data::{
    Batch, BatchBuilder, DEFAULT_CACHE_MB, ExampleSource, IndexOptions, SyntheticData, WordNoise,
    load_folder,
};
use crate::model::contrastive::contrastive_loss;
use crate::model::fuyu::{Layout, masked_cross_entropy};
use crate::model::weights::Weights;
use crate::model::{Fuyu, Rotary};
use crate::tokenizer;

pub const RUN_FILE: &str = "run.json";
pub const CHECKPOINT_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.bin";
/// The folder of a run's kept checkpoints (`train --keep-checkpoints`).
pub const KEPT_DIR: &str = "checkpoints";
pub const PROGRESS_FILE: &str = "progress.json";
pub const METRICS_FILE: &str = "metrics.json";
/// Steps between the plain progress lines of a run whose standard error is not a terminal
/// (validation lines come every `val_every`).
const LOG_EVERY: usize = 25;

/// The model's shape as chosen on the command line; the vocabulary comes from the tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: usize,
    pub seed: u64,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub max_positions: usize,
    pub canvas: Canvas,
    /// A folder with `captions.jsonl`; synthetic scenes when absent.
    pub data: Option<PathBuf>,
    /// How the folder's lines are split and what happens to bad ones.
    #[serde(default)]
    pub folder: IndexOptions,
    /// Megabytes of decoded folder images kept in memory (they are read as batches need
    /// them).
    #[serde(default = "default_image_cache_mb")]
    pub image_cache_mb: u64,
    /// Augment the folder's training images (crops, flips where no text speaks of sides,
    /// light, blur, noise, JPEG), seeded by `seed`.
    #[serde(default)]
    pub augment: bool,
    pub val_every: usize,
    pub checkpoint_every: usize,
    pub val_examples: usize,
    /// Weight of the contrastive image–text loss beside the captioning loss; 0 trains no
    /// matching heads.
    #[serde(default)]
    pub contrastive: f32,
    /// Width of the shared image–text space.
    #[serde(default = "default_match_dim")]
    pub match_dim: usize,
    /// Synthetic data: examples made from each scene (its caption, then questions).
    #[serde(default = "default_per_scene")]
    pub per_scene: usize,
    /// Most text tokens packed into one row with their image (see [`crate::data::Batch`]);
    /// 0 gives each example a row.
    #[serde(default)]
    pub pack: usize,
    /// Synthetic data: the earlier mix (each example the caption with this probability,
    /// else a question) instead of caption-then-questions. Runs written before the option
    /// existed resume with it (0.4).
    #[serde(default = "earlier_caption_share")]
    pub caption_share: Option<f32>,
    /// A run whose last checkpoint and tokenizer this run starts from (its model shape
    /// and canvas are taken too); a new schedule and optimiser state.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Probability of each word swap of [`WordNoise`] in the training inputs (0: none).
    #[serde(default)]
    pub word_noise: f32,
    /// Synthetic data: share of training scenes drawn with three or four objects only
    /// (a curriculum on the crowded scenes; 0: every count alike).
    #[serde(default)]
    pub crowded: f32,
    /// Synthetic data: share of training scenes drawn on frames of other shapes,
    /// portrait and wide ([`crate::data::REFRAMED`]; 0: the training frames alone).
    #[serde(default)]
    pub reframe: f32,
    /// Synthetic data: share of training scenes drawn with every nuisance range halfway
    /// to the shifted split's ([`crate::data::HARSH`]; 0: the training ranges alone).
    #[serde(default)]
    pub harsh: f32,
    /// Share of synthetic training scenes whose small and large radii meet halfway
    /// (`--sizes-meet`).
    #[serde(default)]
    pub sizes_meet: f32,
    /// With `init`: decoder blocks added on top of the starting model's, each starting as
    /// the identity (see [`deepen`]).
    #[serde(default)]
    pub add_layers: usize,
    /// With `init`: every width of the starting model (residual stream, heads, MLP)
    /// multiplied by this factor, the wider model computing what the narrower one did
    /// (see [`widen`]); 1 leaves it as it is.
    #[serde(default = "one")]
    pub widen: usize,
    /// With `init`: the canvas (width, height) to move the starting model to, its patch
    /// size kept and its learned patch positions resampled (see [`regrid`]); none keeps
    /// the starting model's canvas.
    #[serde(default)]
    pub regrid: Option<(u32, u32)>,
    /// With `init`: the patch size (pixels on a side) to move the starting model to, its
    /// patch projection and patch positions resampled (see [`regrid`]); none keeps it.
    #[serde(default)]
    pub repatch: Option<u32>,
    /// With `init`: train the matching heads alone, on the contrastive loss; every other
    /// weight, and so every caption and answer, stays the starting model's.
    #[serde(default)]
    pub matching_only: bool,
    /// With `init`: a second model to blend into the starting weights (see
    /// [`crate::model::blend`]); none starts from `init` alone.
    #[serde(default)]
    pub blend: Option<Blend>,
    /// Keep each checkpoint's weights under `checkpoints/` (see [`kept_checkpoint`]), so
    /// that any of them can be exported (`export RUN --step N`) after the run went on.
    #[serde(default)]
    pub keep_checkpoints: bool,
}

/// A second model of the starting model's shape and tokenizer, blended into it: a run or
/// package, or the mean of several, or of runs' kept checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blend {
    /// The runs or packages; with more than one (or with `steps`), their mean.
    #[serde(deserialize_with = "one_or_many")]
    pub with: Vec<PathBuf>,
    /// The kept checkpoints of each run in `with` to average (`train --keep-checkpoints`);
    /// none takes each one's last checkpoint, or a package's weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<usize>,
    /// Its share of every weight.
    pub share: f32,
    /// The matching heads and temperature stay the starting model's, unblended.
    #[serde(default)]
    pub keep_heads: bool,
    /// Batches of the run's training data to fit the matching heads on, so that the
    /// blend's embeddings are the starting model's (see [`crate::refit`]); 0 leaves them
    /// blended, or kept with `keep_heads`.
    #[serde(default)]
    pub fit_heads: usize,
}

impl Blend {
    /// `--blend-steps` takes kept checkpoints, which only training runs have: a package
    /// among `with` is refused, naming it.
    pub fn check_steps(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        match self.with.iter().find(|p| crate::unpack::is_package(p)) {
            Some(p) => bail!(
                "--blend {}: a package keeps no checkpoints; --blend-steps averages a training run's",
                p.display()
            ),
            None => Ok(()),
        }
    }
}

fn one() -> usize {
    1
}

/// `Blend::with` as runs before several models could be blended wrote it, one path, or as
/// a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

fn default_image_cache_mb() -> u64 {
    DEFAULT_CACHE_MB
}

fn default_match_dim() -> usize {
    64
}

fn default_per_scene() -> usize {
    2
}

fn earlier_caption_share() -> Option<f32> {
    Some(0.4)
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 4000,
            batch_size: 160,
            lr: 2e-3,
            warmup: 200,
            seed: 7,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            d_ff: 512,
            max_positions: 96,
            canvas: Canvas {
                width: 192,
                height: 144,
                patch: 24,
            },
            data: None,
            folder: IndexOptions::default(),
            image_cache_mb: DEFAULT_CACHE_MB,
            augment: false,
            val_every: 250,
            checkpoint_every: 250,
            val_examples: 320,
            contrastive: 0.5,
            match_dim: default_match_dim(),
            per_scene: 10,
            pack: 160,
            caption_share: None,
            init: None,
            word_noise: 0.0,
            crowded: 0.0,
            reframe: 0.0,
            harsh: 0.0,
            sizes_meet: 0.0,
            add_layers: 0,
            widen: 1,
            regrid: None,
            repatch: None,
            matching_only: false,
            blend: None,
            keep_checkpoints: false,
        }
    }
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub model: ModelConfig,
    pub canvas: Canvas,
    pub options: TrainOptions,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub step: usize,
    pub elapsed_s: f64,
    /// (step, mean training loss since the previous record)
    pub train_loss: Vec<(usize, f32)>,
    /// (step, validation loss)
    pub val_loss: Vec<(usize, f32)>,
    /// (step, mean contrastive loss since the previous record), when trained with it
    #[serde(default)]
    pub match_loss: Vec<(usize, f32)>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    // Written beside and renamed, so an interrupted run never leaves half a file.
    let text = serde_json::to_string_pretty(value)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_run(dir: &Path) -> Result<RunInfo> {
    read_json(&dir.join(RUN_FILE))
}

/// The compute device: `BURN_DEVICE` or the first enabled backend (GPU before CPU).
pub fn device() -> Device {
    Device::default()
}

/// Parameters a checkpoint or package may lack: the matching heads, new in runs that add
/// the contrastive loss to a model trained without it (they start from scratch).
pub(crate) fn is_matching_head(name: &str) -> bool {
    name.starts_with("image_head") || name.starts_with("text_head") || name == "logit_scale"
}

/// Loads the trained model of a run directory for inference.
pub fn load_model(dir: &Path, run: &RunInfo, device: &Device) -> Result<Fuyu> {
    let path = dir.join(CHECKPOINT_FILE);
    anyhow::ensure!(path.is_file(), "{} has no checkpoint yet", dir.display());
    load_weights_file(&path, run, device)
}

/// A kept checkpoint's file name is `KEPT_PREFIX`, the step (six digits at least), then
/// `KEPT_SUFFIX`: [`kept_checkpoint`] writes it and [`kept_steps`] reads it back.
const KEPT_PREFIX: &str = "step-";
const KEPT_SUFFIX: &str = ".safetensors";

/// Where a run kept the weights of its checkpoint at `step` (`train --keep-checkpoints`).
pub fn kept_checkpoint(dir: &Path, step: usize) -> PathBuf {
    dir.join(KEPT_DIR)
        .join(format!("{KEPT_PREFIX}{step:06}{KEPT_SUFFIX}"))
}

/// The steps whose checkpoints a run kept, in order.
pub fn kept_steps(dir: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = std::fs::read_dir(dir.join(KEPT_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix(KEPT_PREFIX)?
                .strip_suffix(KEPT_SUFFIX)?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Loads the model a run kept at `step` (`train --keep-checkpoints`).
pub fn load_kept_model(dir: &Path, run: &RunInfo, step: usize, device: &Device) -> Result<Fuyu> {
    let path = kept_checkpoint(dir, step);
    if !path.is_file() {
        let steps = kept_steps(dir);
        if steps.is_empty() {
            bail!(
                "--step {step}: {} kept no checkpoints (train it with --keep-checkpoints)",
                dir.display()
            );
        }
        let list: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        bail!(
            "--step {step}: {} kept no checkpoint at that step; it has steps {}",
            dir.display(),
            list.join(", ")
        );
    }
    load_weights_file(&path, run, device)
}

fn load_weights_file(path: &Path, run: &RunInfo, device: &Device) -> Result<Fuyu> {
    let mut model = Fuyu::new(&run.model, &run.canvas, run.options.match_dim, device);
    let mut store = SafetensorsStore::from_file(path.to_path_buf()).allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", path.display()))?;
    let missing: Vec<_> = result
        .missing
        .iter()
        .filter(|m| !is_matching_head(&m.0))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{}: missing tensors {:?}",
        path.display(),
        missing
    );
    Ok(model)
}

/// `model` with the parameters of `w` (Glimpse's names, see `weights::collect`) loaded
/// into it; parameters `w` lacks keep their values.
pub fn model_from_weights(mut model: Fuyu, w: &Weights) -> Result<Fuyu> {
    // burn names a LayerNorm's scale and shift gamma and beta
    let burn_name = |n: &str| {
        if n.contains("layernorm.") {
            n.replace("layernorm.weight", "layernorm.gamma")
                .replace("layernorm.bias", "layernorm.beta")
        } else {
            n.to_string()
        }
    };
    let names: Vec<(String, Vec<usize>)> = w
        .iter()
        .map(|(n, a)| (burn_name(n), a.dims.clone()))
        .collect();
    let arrays: Vec<&crate::model::weights::Array> = w.values().collect();
    let path = std::env::temp_dir().join(format!(
        "glimpse-weights-{}-{}.safetensors",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    crate::hf::safetensors::write(&path, &names, crate::hf::safetensors::Dtype::F32, |i| {
        Ok(arrays[i].data.clone())
    })?;
    let mut store = SafetensorsStore::from_file(path.clone()).allow_partial(true);
    let loaded = model.load_from(&mut store);
    let _ = std::fs::remove_file(&path);
    let result = loaded.map_err(|e| anyhow::anyhow!("cannot load the weights: {e}"))?;
    if !result.unused.is_empty() {
        bail!("weights the model has no place for: {:?}", result.unused);
    }
    Ok(model)
}

fn save_model(model: &Fuyu, dir: &Path) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let mut store = SafetensorsStore::from_file(path.clone()).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Learning rate at `step`: linear warm-up, then cosine decay to a tenth.
fn learning_rate(o: &TrainOptions, step: usize) -> f64 {
    if step < o.warmup {
        return o.lr * (step + 1) as f64 / o.warmup as f64;
    }
    let t = (step - o.warmup) as f64 / (o.steps - o.warmup).max(1) as f64;
    o.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
}

pub struct Tensors {
    pub patches: Tensor<4>,
    pub ids: Tensor<2, Int>,
    pub targets: Tensor<2, Int>,
    pub weights: Tensor<2>,
    /// Host-side layout of the rows, for [`Layout::packed`].
    pub positions: Vec<i64>,
    pub segments: Vec<i64>,
    pub matching: Option<MatchTensors>,
}

pub struct MatchTensors {
    pub rows: Tensor<1, Int>,
    pub ids: Tensor<2, Int>,
    pub last: Tensor<1, Int>,
    pub positives: Tensor<2>,
}

/// The batch as tensors on `device`; the batch's buffers move into them.
pub fn to_tensors(b: Batch, canvas: &Canvas, device: &Device) -> Tensors {
    let (n, t) = (b.size, b.text_len);
    Tensors {
        patches: Tensor::from_data(
            TensorData::new(
                b.patches,
                [n, canvas.rows(), canvas.cols(), canvas.patch_dim()],
            ),
            device,
        ),
        ids: Tensor::from_data(TensorData::new(b.ids, [n, t]), device),
        targets: Tensor::from_data(TensorData::new(b.targets, [n, t]), device),
        weights: Tensor::from_data(TensorData::new(b.weights, [n, t]), device),
        positions: b.positions,
        segments: b.segments,
        matching: b.matching.map(|m| {
            let k = m.rows.len();
            MatchTensors {
                rows: Tensor::from_data(TensorData::new(m.rows, [k]), device),
                ids: Tensor::from_data(TensorData::new(m.ids, [k, m.len]), device),
                last: Tensor::from_data(TensorData::new(m.last, [k]), device),
                positives: Tensor::from_data(TensorData::new(m.positives, [k, k]), device),
            }
        }),
    }
}

/// What the contrastive loss trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// No contrastive loss.
    Off,
    /// The whole model, beside the captioning loss.
    Joint,
    /// The matching heads alone: the states they read come from the model run without
    /// autodiff, so their gradient reaches nothing else.
    HeadsOnly,
}

impl Matching {
    fn of(o: &TrainOptions) -> Matching {
        match (o.contrastive > 0.0, o.matching_only) {
            (false, _) => Matching::Off,
            (true, false) => Matching::Joint,
            (true, true) => Matching::HeadsOnly,
        }
    }
}

/// Losses of the model on a batch: captioning and answering (answer tokens only), and
/// the contrastive loss when `matching` is on and the batch has matching texts.
pub struct Losses {
    pub text: Tensor<1>,
    pub matching: Option<Tensor<1>>,
}

pub fn batch_loss(
    model: &Fuyu,
    rotary: &Rotary,
    cfg: &ModelConfig,
    canvas: &Canvas,
    t: Tensors,
    matching: Matching,
) -> Losses {
    let [rows, text_len] = t.ids.dims();
    let layout = Layout::packed(
        rotary,
        canvas.image_tokens(),
        &t.positions,
        &t.segments,
        rows,
    );
    // heads alone: the rest of the model runs without autodiff, so it records no graph
    let plain;
    let body = if matching == Matching::HeadsOnly {
        plain = model.valid();
        &plain
    } else {
        model
    };
    let hidden = body.forward_hidden_packed(t.patches, t.ids, rotary, &layout, cfg.n_heads);
    let [b, _, d] = hidden.dims();
    let image_state = hidden
        .clone()
        .narrow(1, canvas.image_tokens() - 1, 1)
        .reshape([b, d]);
    let logits = body
        .lm_head
        .forward(hidden.narrow(1, canvas.image_tokens(), text_len));
    let text = masked_cross_entropy(logits, t.targets, t.weights);
    let matching = match t.matching {
        Some(m) if matching != Matching::Off => {
            let images = model.image_embedding(image_state.select(0, m.rows));
            let texts = model.text_embedding(body.text_state(m.ids, m.last, rotary, cfg.n_heads));
            Some(contrastive_loss(
                images,
                texts,
                model.logit_scale.val(),
                m.positives,
            ))
        }
        _ => None,
    };
    Losses { text, matching }
}

fn source(o: &TrainOptions) -> Result<Box<dyn ExampleSource>> {
    Ok(match &o.data {
        None => Box::new(SyntheticData {
            caption_share: o.caption_share,
            crowded: o.crowded,
            reframe: o.reframe,
            harsh: o.harsh,
            sizes_meet: o.sizes_meet,
            ..SyntheticData::new(o.seed, o.per_scene)
        }),
        Some(dir) => {
            let data = load_folder(dir, o.folder, o.val_examples, o.image_cache_mb << 20)?;
            if o.augment {
                Box::new(data.with_augment(o.seed))
            } else {
                Box::new(data)
            }
        }
    })
}

/// What a fine-tuning run starts from.
struct Start {
    config: ModelConfig,
    canvas: Canvas,
    match_dim: usize,
    tokenizer: TextTokenizer,
    model: Fuyu,
}

/// The model, tokenizer and shape of `--init` (or of `--blend`, as `flag` says): a run's
/// last checkpoint, or a package's f32 weights.
fn start_from(init: &Path, flag: &str, device: &Device) -> Result<Start> {
    let doing = if flag == "--init" {
        "starting from"
    } else {
        "blending in"
    };
    if crate::unpack::is_package(init) {
        let u = crate::unpack::unpack(init, device)?;
        eprintln!(
            "{doing} package {} ({}): its model shape, canvas, tokenizer and f32 weights",
            init.display(),
            u.manifest.name
        );
        return Ok(Start {
            config: u.manifest.model.clone(),
            canvas: u.manifest.canvas,
            match_dim: u.match_dim,
            tokenizer: tokenizer::load(&u.tokenizer)?,
            model: u.model,
        });
    }
    let from = read_run(init).with_context(|| {
        format!(
            "{flag} {}: neither a training run nor a package",
            init.display()
        )
    })?;
    let tok = tokenizer::load(&init.join(tokenizer::FILE))?;
    let model = load_model(init, &from, device)?;
    let from_step = read_json::<Progress>(&init.join(PROGRESS_FILE))
        .map(|p| p.step)
        .unwrap_or(0);
    eprintln!(
        "{doing} {} (step {from_step}): its model shape, canvas and tokenizer",
        init.display()
    );
    Ok(Start {
        config: from.model,
        canvas: from.canvas,
        match_dim: from.options.match_dim,
        tokenizer: tok,
        model,
    })
}

/// `from` blended with `blend`'s model (see [`blend_target`]); its heads fitted on
/// `src`'s training batches when asked.
fn blend_with(
    from: Start,
    blend: Option<&Blend>,
    src: &dyn ExampleSource,
    o: &TrainOptions,
    device: &Device,
) -> Result<Start> {
    let Some(blend) = blend else {
        return Ok(from);
    };
    let (target, what) = blend_target(&from, blend, device)?;
    let own = crate::model::weights::collect(&from.model);
    let mut mixed = crate::model::blend::blend(&own, &target, blend.share)
        .with_context(|| format!("--blend {what}"))?;
    if blend.keep_heads {
        mixed.extend(own.into_iter().filter(|(name, _)| is_matching_head(name)));
    }
    eprintln!(
        "blended with {what} ({:.0} % of it{})",
        blend.share * 100.0,
        if blend.keep_heads {
            ", the matching heads kept"
        } else {
            ""
        }
    );
    let blended = model_from_weights(from.model.clone(), &mixed)?;
    let model = if blend.fit_heads > 0 {
        fit_blend_heads(&from, blended, src, o, blend.fit_heads, device)
            .context("--blend-fit-heads")?
    } else {
        blended
    };
    Ok(Start { model, ..from })
}

/// The weights `from` is blended toward, and what they are in words: `--blend`'s run or
/// package, or the mean of several, or with `--blend-steps` the mean of each run's kept
/// checkpoints at those steps (weight averaging along one run, then across runs). Every
/// model must have `from`'s shape, canvas, matching width and tokenizer.
fn blend_target(from: &Start, blend: &Blend, device: &Device) -> Result<(Weights, String)> {
    blend.check_steps()?;
    let mut mean = Mean::default();
    for with in &blend.with {
        let what = format!("--blend {}", with.display());
        let b = start_from(with, "--blend", device)?;
        check_blendable(from, &b, &what)?;
        if blend.steps.is_empty() {
            mean.add(crate::model::weights::collect(&b.model), &what)?;
            continue;
        }
        let run = read_run(with)?;
        for &step in &blend.steps {
            let model = load_kept_model(with, &run, step, device)
                .with_context(|| format!("{what}, --blend-steps {step}"))?;
            mean.add(crate::model::weights::collect(&model), &what)?;
        }
    }
    let names = blend
        .with
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let steps = blend
        .steps
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let what = match (blend.steps.len(), mean.count) {
        (0, 1) => names,
        (0, n) => format!("the mean of {n} models ({names})"),
        (_, 1) => format!("{names} at step {steps}"),
        (_, n) => format!("the mean of {n} checkpoints ({names} at steps {steps})"),
    };
    let weights = mean.sum.context("--blend names no model")?;
    Ok((weights, what))
}

/// A running mean of models' weights.
#[derive(Default)]
struct Mean {
    sum: Option<Weights>,
    count: usize,
}

impl Mean {
    fn add(&mut self, w: Weights, what: &str) -> Result<()> {
        self.count += 1;
        self.sum = Some(match self.sum.take() {
            None => w,
            Some(m) => crate::model::blend::blend(&m, &w, 1.0 / self.count as f32)
                .with_context(|| what.to_string())?,
        });
        Ok(())
    }
}

/// Whether `b` (`what`) can be blended into `from`: one shape, canvas, matching width and
/// tokenizer.
fn check_blendable(from: &Start, b: &Start, what: &str) -> Result<()> {
    anyhow::ensure!(
        b.config == from.config,
        "{what}: its model shape {:?} is not the starting model's {:?}",
        b.config,
        from.config
    );
    anyhow::ensure!(
        b.canvas == from.canvas && b.match_dim == from.match_dim,
        "{what}: its canvas or matching width is not the starting model's"
    );
    anyhow::ensure!(
        b.tokenizer.inner().get_vocab(true) == from.tokenizer.inner().get_vocab(true),
        "{what}: its tokenizer is not the starting model's"
    );
    Ok(())
}

/// `new`, a blend of `old`'s model, with its matching heads fitted so that its embeddings
/// are `old`'s on `batches` training batches of `src` (see [`crate::refit`]); says how
/// well they fit.
fn fit_blend_heads(
    old: &Start,
    new: Fuyu,
    src: &dyn ExampleSource,
    o: &TrainOptions,
    batches: usize,
    device: &Device,
) -> Result<Fuyu> {
    let (cfg, canvas) = (&old.config, old.canvas);
    let builder = BatchBuilder {
        tokenizer: &old.tokenizer,
        canvas,
        max_positions: cfg.max_positions,
        pack: o.pack,
    };
    let made = (0..batches).map(|i| {
        src.train_batch(i as u64, o.batch_size)
            .and_then(|examples| builder.build(&examples))
    });
    let setup = crate::refit::FitSetup {
        rotary: &Rotary::new(cfg, device),
        canvas,
        n_heads: cfg.n_heads,
        device,
    };
    let bar = crate::progress::bar(
        true,
        batches as u64,
        "fitting the matching heads {bar:30} {pos}/{len} batches, eta {eta}",
    );
    let (model, report) = crate::refit::fit_heads(&old.model, new, made, &setup, &bar)?;
    bar.finish_and_clear();
    eprintln!("{report}");
    Ok(model)
}

/// Words of the corpus seen twice or more that the tokenizer splits become tokens (see
/// [`tokenizer::extend`]); the embedding gets a row and the LM head a column for each,
/// starting as the mean of the pieces the word was made of.
fn grow(from: Start, corpus: &[String], device: &Device) -> Result<Start> {
    let grown = tokenizer::extend(&from.tokenizer, corpus, 2)?;
    let n = grown.pieces.len();
    if n == 0 {
        return Ok(from);
    }
    let (v, d) = (from.config.vocab_size, from.config.d_model);
    anyhow::ensure!(
        from.tokenizer.inner().get_vocab_size(true) == v,
        "the tokenizer has {} tokens but the model {v}",
        from.tokenizer.inner().get_vocab_size(true)
    );
    let mean = |pieces: &[u32], at: &dyn Fn(usize) -> f32| {
        pieces.iter().map(|&p| at(p as usize)).sum::<f32>() / pieces.len() as f32
    };
    let mut w = crate::model::weights::collect(&from.model);
    let table = w
        .get_mut("embed_tokens.weight")
        .context("the model has no embedding table")?;
    for pieces in &grown.pieces {
        let row: Vec<f32> = (0..d)
            .map(|j| mean(pieces, &|p| table.data[p * d + j]))
            .collect();
        table.data.extend(row);
    }
    table.dims = vec![v + n, d];
    let head = w
        .get_mut("lm_head.weight")
        .context("the model has no LM head")?;
    let mut grown_head = Vec::with_capacity(d * (v + n));
    for i in 0..d {
        let row = &head.data[i * v..(i + 1) * v];
        grown_head.extend_from_slice(row);
        grown_head.extend(grown.pieces.iter().map(|pieces| mean(pieces, &|p| row[p])));
    }
    head.data = grown_head;
    head.dims = vec![d, v + n];
    if let Some(bias) = w.get_mut("lm_head.bias") {
        let extra: Vec<f32> = grown
            .pieces
            .iter()
            .map(|pieces| mean(pieces, &|p| bias.data[p]))
            .collect();
        bias.data.extend(extra);
        bias.dims = vec![v + n];
    }
    let config = ModelConfig {
        vocab_size: v + n,
        ..from.config
    };
    let fresh = Fuyu::new(&config, &from.canvas, from.match_dim, device);
    let model = model_from_weights(fresh, &w)?;
    eprintln!(
        "the tokenizer grew by {n} tokens for words of the data it did not have ({v} -> {}): new rows in the embedding and the LM head",
        v + n
    );
    Ok(Start {
        config,
        tokenizer: grown.tokenizer,
        model,
        ..from
    })
}

/// `add` decoder blocks on top of `from`'s, each starting as the identity: fresh random
/// weights everywhere but its two output projections (the attention's `dense` and the
/// MLP's `mlp_down`), which start at zero, so each block adds nothing to the residual
/// stream and the deeper model computes what `from` did. Training then grows them from
/// the gradient at those projections.
fn deepen(from: Start, add: usize, device: &Device) -> Result<Start> {
    if add == 0 {
        return Ok(from);
    }
    let n = from.config.n_layers;
    let config = ModelConfig {
        n_layers: n + add,
        ..from.config.clone()
    };
    let fresh = Fuyu::new(&config, &from.canvas, from.match_dim, device);
    let mut w = crate::model::weights::collect(&from.model);
    let new = crate::model::weights::collect(&fresh);
    for (name, mut array) in new {
        let Some(layer) = name
            .strip_prefix("layers.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if layer < n {
            continue;
        }
        if name.contains(".dense.") || name.contains(".mlp_down.") {
            array.data.iter_mut().for_each(|v| *v = 0.0);
        }
        w.insert(name, array);
    }
    let model = model_from_weights(fresh, &w)?;
    eprintln!(
        "{add} decoder block(s) added on top ({n} -> {}), each starting as the identity",
        n + add
    );
    Ok(Start {
        config,
        model,
        ..from
    })
}

/// `from` moved to a canvas of `size` (width, height) and patches of `patch` pixels,
/// either kept where it is none (see [`crate::model::regrid`]). The context grows or
/// shrinks by the change in image tokens, so the texts keep the room they had.
fn regrid(
    from: Start,
    size: Option<(u32, u32)>,
    patch: Option<u32>,
    device: &Device,
) -> Result<Start> {
    let old = from.canvas;
    let (width, height) = size.unwrap_or((old.width, old.height));
    let canvas = Canvas {
        width,
        height,
        patch: patch.unwrap_or(old.patch),
    };
    if canvas == old {
        return Ok(from);
    }
    canvas.validate().map_err(|e| {
        anyhow::anyhow!(
            "--canvas {width}x{height} with --patch {} for the model of --init: {e}",
            canvas.patch
        )
    })?;
    let text_room = from.config.max_positions.saturating_sub(old.image_tokens());
    let config = ModelConfig {
        max_positions: canvas.image_tokens() + text_room,
        ..from.config.clone()
    };
    let mut w = crate::model::weights::collect(&from.model);
    let table = w
        .get("patch_position")
        .context("the starting model has no patch_position")?;
    let moved = crate::model::regrid::resample_positions(table, canvas.rows(), canvas.cols())?;
    w.insert("patch_position".into(), moved);
    if canvas.patch != old.patch {
        let kernel = w
            .get("vision_embed.weight")
            .context("the starting model has no vision_embed.weight")?;
        let (from_p, to_p) = (old.patch as usize, canvas.patch as usize);
        let resampled = crate::model::regrid::resample_patch_kernel(kernel, from_p, to_p)?;
        w.insert("vision_embed.weight".into(), resampled);
    }
    let fresh = Fuyu::new(&config, &canvas, from.match_dim, device);
    let model = model_from_weights(fresh, &w)?;
    eprintln!(
        "moved to a {width}x{height} canvas ({}x{} patches of {} pixels, was {}x{} of {}): {} image tokens, context {} -> {}",
        canvas.cols(),
        canvas.rows(),
        canvas.patch,
        old.cols(),
        old.rows(),
        old.patch,
        canvas.image_tokens(),
        from.config.max_positions,
        config.max_positions
    );
    Ok(Start {
        config,
        canvas,
        model,
        ..from
    })
}

/// `from` made `k` times wider (see [`crate::model::widen`]): the same function, with room
/// for each unit's copies to learn apart.
fn widen(from: Start, k: usize, seed: u64, device: &Device) -> Result<Start> {
    if k == 1 {
        return Ok(from);
    }
    let weights = crate::model::weights::collect(&from.model);
    let (wide, config) = crate::model::widen::widen(&weights, &from.config, k, seed)?;
    let fresh = Fuyu::new(&config, &from.canvas, from.match_dim, device);
    let model = model_from_weights(fresh, &wide)?;
    eprintln!(
        "widened {k} times: d_model {} -> {}, {} -> {} heads, MLP {} -> {}, each new unit a copy of an old one",
        from.config.d_model,
        config.d_model,
        from.config.n_heads,
        config.n_heads,
        from.config.d_ff,
        config.d_ff
    );
    Ok(Start {
        config,
        model,
        ..from
    })
}

/// What a resumed run may change; a new run takes both from its [`TrainOptions`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Changes {
    /// A new last step: later stretches the learning-rate schedule to it, earlier (but past
    /// the step reached) compresses it and ends the run sooner.
    pub steps: Option<usize>,
    /// A new weight for the contrastive loss, from the step reached on.
    pub contrastive: Option<f32>,
    /// Keep every checkpoint from the step reached on (`--keep-checkpoints`).
    pub keep_checkpoints: bool,
}

/// Trains into `out`, resuming there if `resume` and a run exists, with `changes` applied
/// to a resumed run.
pub fn train(
    out: &Path,
    options: TrainOptions,
    resume: bool,
    changes: Changes,
) -> Result<Progress> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let device = device().autodiff();
    let opened = open(out, options, resume, changes, &device)?;
    let Opened {
        run,
        tokenizer: tok,
        mut model,
        mut optim,
        mut progress,
        source,
    } = opened;
    let o = run.options.clone();
    let mut meter = Meter::new(progress.elapsed_s);
    if o.steps == 0 {
        // `--steps 0`: the starting model (blended, moved, grown) is the run's checkpoint;
        // no batches are drawn
        checkpoint(out, &model, &optim, &progress)?;
    } else {
        let src = match source {
            Some(src) => src,
            None => self::source(&o)?,
        };
        let steps = Steps {
            out,
            run: &run,
            tok: Arc::new(tok),
            device: &device,
        };
        model = steps.run(src, model, &mut optim, &mut progress, &mut meter)?;
    }
    progress.step = o.steps;
    progress.elapsed_s = meter.elapsed_s();
    write_json(&out.join(PROGRESS_FILE), &progress)?;
    crate::report::write_curves(out, &progress)?;
    write_metrics(out, &progress, &model, &o, &meter)?;
    Ok(progress)
}

/// The training loop of one session of a run, from the step its progress reached.
struct Steps<'a> {
    out: &'a Path,
    run: &'a RunInfo,
    tok: Arc<TextTokenizer>,
    device: &'a Device,
}

impl Steps<'_> {
    /// Trains `model` to the run's last step, validating and checkpointing on the way.
    fn run(
        &self,
        src: Box<dyn ExampleSource>,
        mut model: Fuyu,
        optim: &mut burn::optim::ModuleOptimizer,
        progress: &mut Progress,
        meter: &mut Meter,
    ) -> Result<Fuyu> {
        let (o, cfg, canvas) = (&self.run.options, &self.run.model, self.run.canvas);
        let rotary = Rotary::new(cfg, self.device);
        let val_batches = validation_batches(src.as_ref(), &self.tok, canvas, cfg, o)?;
        let first = progress.step;
        let (batches, producer) = spawn_batches(src, self.tok.clone(), o, canvas, first)?;
        let bar = progress_bar(o.steps, first);
        let trainer = Trainer {
            o,
            cfg,
            canvas: &canvas,
            rotary: &rotary,
            device: self.device,
            matching: Matching::of(o),
        };
        for step in first..o.steps {
            let batch = batches.recv().context("the batch producer stopped")??;
            model = trainer.step(model, optim, batch, step, meter)?;
            let done = step + 1;
            bar.set_position(done as u64);
            bar.set_message(meter.message());
            let last = done == o.steps;
            if bar.is_hidden() && done % LOG_EVERY == 0 && done % o.val_every != 0 && !last {
                // not a terminal: a plain line now and then, so a logged run shows it is moving
                eprintln!("step {done:>6}/{} {}", o.steps, bar.message());
            }
            if done % o.val_every == 0 || last {
                let line = trainer.validate(&model, &val_batches, done, progress, meter);
                if bar.is_hidden() {
                    // not a terminal (a log file, CI): plain lines instead of the bar
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            if done % o.checkpoint_every == 0 || last {
                progress.step = done;
                progress.elapsed_s = meter.elapsed_s();
                checkpoint(self.out, &model, optim, progress)?;
                if o.keep_checkpoints {
                    keep_checkpoint(self.out, done)?;
                }
            }
        }
        drop(batches);
        let _ = producer.join();
        bar.finish_and_clear();
        Ok(model)
    }
}

/// The run to train in `out`: its checkpoint when `resume` and it has one, else a new
/// run from `options` (from `--init`'s package when given).
fn open(
    out: &Path,
    options: TrainOptions,
    resume: bool,
    changes: Changes,
    device: &Device,
) -> Result<Opened> {
    let exists = holds_checkpoint(out, resume)?;
    if exists && !resume {
        bail!(
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    if exists {
        resume_run(out, changes, device)
    } else if let Some(init) = options.init.clone() {
        start_from_init(out, &init, options, device)
    } else {
        start_fresh(out, options, device)
    }
}

/// The validation examples of `src`, in batches of the run's size.
fn validation_batches(
    src: &dyn ExampleSource,
    tok: &TextTokenizer,
    canvas: Canvas,
    cfg: &ModelConfig,
    o: &TrainOptions,
) -> Result<Vec<Batch>> {
    let builder = BatchBuilder {
        tokenizer: tok,
        canvas,
        max_positions: cfg.max_positions,
        pack: o.pack,
    };
    src.validation(o.val_examples)
        .chunks(o.batch_size)
        .map(|c| builder.build(c))
        .collect()
}

/// What every training step of a run shares.
struct Trainer<'a> {
    o: &'a TrainOptions,
    cfg: &'a ModelConfig,
    canvas: &'a Canvas,
    rotary: &'a Rotary,
    device: &'a Device,
    matching: Matching,
}

impl Trainer<'_> {
    /// One optimiser step on `batch`, its losses noted in `meter`.
    fn step(
        &self,
        model: Fuyu,
        optim: &mut burn::optim::ModuleOptimizer,
        batch: Batch,
        step: usize,
        meter: &mut Meter,
    ) -> Result<Fuyu> {
        let (o, canvas) = (self.o, self.canvas);
        meter.tokens += batch.size * (canvas.image_tokens() + batch.text_len);
        let t = to_tensors(batch, canvas, self.device);
        let losses = batch_loss(&model, self.rotary, self.cfg, canvas, t, self.matching);
        let value = losses.text.clone().into_scalar::<f32>();
        if let Some(m) = &losses.matching {
            meter.matching.push(m.clone().into_scalar::<f32>());
        }
        if !value.is_finite() || meter.matching.last().is_some_and(|m| !m.is_finite()) {
            bail!("training diverged at step {step}: loss is {value}");
        }
        meter.text.push(value);
        // heads alone: a batch without matching texts gives them nothing to learn, and a
        // step on the other weights' zero gradients would still decay them
        let loss = match (losses.matching, self.matching) {
            (Some(m), Matching::HeadsOnly) => Some(m),
            (None, Matching::HeadsOnly) => None,
            (Some(m), _) => Some(losses.text + m * o.contrastive),
            (None, _) => Some(losses.text),
        };
        Ok(match loss {
            Some(loss) => {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                optim.step(learning_rate(o, step), model, grads)
            }
            None => model,
        })
    }

    /// The validation loss after step `done`, with the training losses since the last
    /// one, recorded in `progress`; returns the line that reports them.
    fn validate(
        &self,
        model: &Fuyu,
        val_batches: &[Batch],
        done: usize,
        progress: &mut Progress,
        meter: &mut Meter,
    ) -> String {
        let match_note = meter.match_note();
        let (mean, m) = meter.take_means();
        progress.train_loss.push((done, mean));
        if let Some(m) = m {
            progress.match_loss.push((done, m));
        }
        let val = validation_loss(
            model,
            self.rotary,
            self.cfg,
            self.canvas,
            val_batches,
            self.device,
        );
        progress.val_loss.push((done, val));
        format!(
            "step {done:>6}/{}  train loss {mean:.4}{match_note}  val loss {val:.4}  {:.0} tok/s  {:.0} s",
            self.o.steps,
            meter.tokens_per_second(),
            meter.elapsed_s()
        )
    }
}

/// A run ready to train: what it is, where it stands, and its data when opening it read
/// them already (a new run trains its tokenizer on them and describes them).
struct Opened {
    run: RunInfo,
    tokenizer: TextTokenizer,
    model: Fuyu,
    optim: burn::optim::ModuleOptimizer,
    progress: Progress,
    source: Option<Box<dyn ExampleSource>>,
}

/// Whether `out` holds a run with a checkpoint to continue. A run stopped before its
/// first checkpoint left only its `run.json` and tokenizer: it is started again, or with
/// `resume` refused, since the options to start it with are not the ones given.
fn holds_checkpoint(out: &Path, resume: bool) -> Result<bool> {
    let started = out.join(RUN_FILE).is_file();
    let checkpointed = out.join(PROGRESS_FILE).is_file();
    if started && !checkpointed {
        anyhow::ensure!(
            !resume,
            "{} holds a run stopped before its first checkpoint: nothing to resume; run the \
             command that started it again, without --resume, to start it over",
            out.display()
        );
        eprintln!(
            "{} holds a run stopped before its first checkpoint: starting over",
            out.display()
        );
    }
    Ok(started && checkpointed)
}

/// The run in `out` at its last checkpoint, with `changes` applied and recorded.
fn resume_run(out: &Path, changes: Changes, device: &Device) -> Result<Opened> {
    let mut run = read_run(out)?;
    let tokenizer = tokenizer::load(&out.join(tokenizer::FILE))?;
    let progress: Progress = read_json(&out.join(PROGRESS_FILE))?;
    let model = load_model(out, &run, device)?;
    let optim = optimizer()
        .load(out.join(OPTIMIZER_FILE))
        .map_err(|e| anyhow::anyhow!("cannot load optimizer state: {e}"))?;
    eprintln!(
        "resuming {} at step {}/{}",
        out.display(),
        progress.step,
        run.options.steps
    );
    if let Some(steps) = changes.steps
        && steps != run.options.steps
    {
        anyhow::ensure!(
            steps > progress.step,
            "--steps {steps}: the run in {} is already at step {}",
            out.display(),
            progress.step
        );
        // the learning-rate schedule stretches or shrinks to the new end
        eprintln!(
            "the schedule now ends at step {steps} (was {})",
            run.options.steps
        );
        run.options.steps = steps;
    }
    if let Some(w) = changes.contrastive
        && w != run.options.contrastive
    {
        eprintln!(
            "contrastive loss weight {} from step {} on (was {})",
            w, progress.step, run.options.contrastive
        );
        run.options.contrastive = w;
    }
    if changes.keep_checkpoints && !run.options.keep_checkpoints {
        eprintln!("keeping every checkpoint from step {} on", progress.step);
        run.options.keep_checkpoints = true;
    }
    write_json(&out.join(RUN_FILE), &run)?;
    Ok(Opened {
        run,
        tokenizer,
        model,
        optim,
        progress,
        source: None,
    })
}

/// A new run in `out` fine-tuning `init` (a run or a package): its shape, canvas and
/// tokenizer win over `options`', then grown, deepened, widened and moved as asked.
fn start_from_init(
    out: &Path,
    init: &Path,
    mut options: TrainOptions,
    device: &Device,
) -> Result<Opened> {
    let from = start_from(init, "--init", device)?;
    let src = source(&options)?;
    let from = blend_with(from, options.blend.as_ref(), src.as_ref(), &options, device)?;
    options.match_dim = from.match_dim;
    // new data brings its own words (a user's folder, or phrasings the scene generator
    // gained since the model was trained): they become tokens of their own
    let from = grow(from, &src.corpus(), device)?;
    let from = deepen(from, options.add_layers, device)?;
    let from = widen(from, options.widen, options.seed, device)?;
    let from = regrid(from, options.regrid, options.repatch, device)?;
    options.max_positions = from.config.max_positions;
    options.canvas = from.canvas;
    options.n_layers = from.config.n_layers;
    options.d_model = from.config.d_model;
    options.n_heads = from.config.n_heads;
    options.d_ff = from.config.d_ff;
    tokenizer::save(&from.tokenizer, &out.join(tokenizer::FILE))?;
    let run = RunInfo {
        model: from.config,
        canvas: from.canvas,
        data: src.describe(),
        options,
    };
    write_json(&out.join(RUN_FILE), &run)?;
    Ok(Opened {
        run,
        tokenizer: from.tokenizer,
        model: from.model,
        optim: optimizer(),
        progress: Progress::default(),
        source: Some(src),
    })
}

/// A new run in `out` from random weights of `options`' shape, with a tokenizer trained
/// on the data's texts. The same seed gives the same weights: a run is reproduced by
/// repeating its command.
fn start_fresh(out: &Path, options: TrainOptions, device: &Device) -> Result<Opened> {
    options.canvas.validate().map_err(anyhow::Error::msg)?;
    let src = source(&options)?;
    let tokenizer = tokenizer::train(&src.corpus(), 2048)?;
    tokenizer::save(&tokenizer, &out.join(tokenizer::FILE))?;
    let model_cfg = ModelConfig {
        vocab_size: tokenizer.inner().get_vocab_size(true),
        d_model: options.d_model,
        n_layers: options.n_layers,
        n_heads: options.n_heads,
        d_ff: options.d_ff,
        rotary_fraction: 0.5,
        rope_theta: 25_000.0,
        layer_norm_eps: 1e-5,
        max_positions: options.max_positions,
    };
    model_cfg.validate().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        options.canvas.image_tokens() + 8 <= options.max_positions,
        "the canvas takes {} image tokens: --max-positions {} leaves no room for text",
        options.canvas.image_tokens(),
        options.max_positions
    );
    device.seed(options.seed);
    let model = Fuyu::new(&model_cfg, &options.canvas, options.match_dim, device);
    let run = RunInfo {
        model: model_cfg,
        canvas: options.canvas,
        data: src.describe(),
        options,
    };
    write_json(&out.join(RUN_FILE), &run)?;
    Ok(Opened {
        run,
        tokenizer,
        model,
        optim: optimizer(),
        progress: Progress::default(),
        source: Some(src),
    })
}

/// Training batches from step `first` on, made on another thread while the model
/// trains (with word noise drawn per step, so a resumed run sees what it would have).
fn spawn_batches(
    src: Box<dyn ExampleSource>,
    tok: Arc<TextTokenizer>,
    o: &TrainOptions,
    canvas: Canvas,
    first: usize,
) -> Result<(Receiver<Result<Batch>>, JoinHandle<()>)> {
    let noise = (o.word_noise > 0.0)
        .then(|| WordNoise::new(&tok, o.word_noise))
        .transpose()?;
    let (tx, rx) = sync_channel::<Result<Batch>>(4);
    let o = o.clone();
    let producer = std::thread::spawn(move || {
        let builder = BatchBuilder {
            tokenizer: &tok,
            canvas,
            max_positions: o.max_positions,
            pack: o.pack,
        };
        for step in first..o.steps {
            let b = src
                .train_batch(step as u64, o.batch_size)
                .and_then(|examples| match &noise {
                    Some(noise) => {
                        let mut rng = Rng::for_item(o.seed ^ 0x6e6f_6973, step as u64);
                        builder.build_noisy(&examples, noise, &mut rng)
                    }
                    None => builder.build(&examples),
                });
            if tx.send(b).is_err() {
                break;
            }
        }
    });
    Ok((rx, producer))
}

/// The progress bar of a run of `steps`, at `first`.
fn progress_bar(steps: usize, first: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64).with_position(first as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// The losses since the last validation, and this session's pace.
struct Meter {
    text: Vec<f32>,
    matching: Vec<f32>,
    /// Image and text tokens trained on in this session.
    tokens: usize,
    started: Instant,
    /// Seconds the run trained in earlier sessions.
    elapsed_before: f64,
}

impl Meter {
    fn new(elapsed_before: f64) -> Meter {
        Meter {
            text: Vec::new(),
            matching: Vec::new(),
            tokens: 0,
            started: Instant::now(),
            elapsed_before,
        }
    }

    fn mean(v: &[f32]) -> f32 {
        v.iter().sum::<f32>() / v.len().max(1) as f32
    }

    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// Seconds the run has trained, all sessions together.
    fn elapsed_s(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// " match L" while the contrastive loss is on, else nothing.
    fn match_note(&self) -> String {
        if self.matching.is_empty() {
            String::new()
        } else {
            format!(" match {:.4}", Self::mean(&self.matching))
        }
    }

    /// The bar's message: the losses' means since the last validation and the pace.
    fn message(&self) -> String {
        format!(
            "loss {:.4}{} {:.0} tok/s",
            Self::mean(&self.text),
            self.match_note(),
            self.tokens_per_second()
        )
    }

    /// The means since the last validation (text, and matching if on), starting anew.
    fn take_means(&mut self) -> (f32, Option<f32>) {
        let text = Self::mean(&self.text);
        let matching = (!self.matching.is_empty()).then(|| Self::mean(&self.matching));
        self.text.clear();
        self.matching.clear();
        (text, matching)
    }
}

/// The model, the optimizer's state and the progress, for `--resume` and `export`.
fn checkpoint(
    out: &Path,
    model: &Fuyu,
    optim: &burn::optim::ModuleOptimizer,
    progress: &Progress,
) -> Result<()> {
    save_model(model, out)?;
    optim
        .save(out.join(OPTIMIZER_FILE))
        .map_err(|e| anyhow::anyhow!("cannot write optimizer state: {e}"))?;
    write_json(&out.join(PROGRESS_FILE), progress)
}

/// A copy of the checkpoint just written, under [`KEPT_DIR`].
fn keep_checkpoint(out: &Path, step: usize) -> Result<()> {
    let to = kept_checkpoint(out, step);
    std::fs::create_dir_all(out.join(KEPT_DIR))
        .with_context(|| format!("cannot create {}", out.join(KEPT_DIR).display()))?;
    std::fs::copy(out.join(CHECKPOINT_FILE), &to)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}

/// `metrics.json`: what the run came to and this session's pace.
fn write_metrics(
    out: &Path,
    progress: &Progress,
    model: &Fuyu,
    o: &TrainOptions,
    meter: &Meter,
) -> Result<()> {
    let params: usize = crate::model::weights::collect(model)
        .values()
        .map(|a| a.data.len())
        .sum();
    let metrics = serde_json::json!({
        "steps": progress.step,
        "batch_size": o.batch_size,
        "parameters": params,
        "train_seconds": progress.elapsed_s,
        "final_train_loss": progress.train_loss.last().map(|x| x.1),
        "final_val_loss": progress.val_loss.last().map(|x| x.1),
        "contrastive_weight": o.contrastive,
        "final_match_loss": progress.match_loss.last().map(|x| x.1),
        "tokens_per_second_last_session": meter.tokens_per_second(),
    });
    write_json(&out.join(METRICS_FILE), &metrics)
}

fn optimizer() -> burn::optim::ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

fn validation_loss(
    model: &Fuyu,
    rotary: &Rotary,
    cfg: &ModelConfig,
    canvas: &Canvas,
    batches: &[Batch],
    device: &Device,
) -> f32 {
    let mut total = 0.0;
    let mut count = 0.0;
    for b in batches {
        let t = to_tensors(b.clone(), canvas, device);
        let loss = batch_loss(model, rotary, cfg, canvas, t, Matching::Off)
            .text
            .detach();
        total += loss.into_scalar::<f32>() * b.answer_tokens as f32;
        count += b.answer_tokens as f32;
    }
    total / count.max(1.0)
}

/// The tokenizer of a run directory.
pub fn run_tokenizer(dir: &Path) -> Result<TextTokenizer> {
    tokenizer::load(&dir.join(tokenizer::FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::text_corpus;

    /// Packing an image's examples into one row changes the cost, not the result: the
    /// same captioning and contrastive losses as one row per example, for synthetic scenes
    /// and for a folder of images.
    #[test]
    fn packed_rows_give_the_losses_of_separate_rows() {
        let tok = tokenizer::train(&text_corpus(1, 100), 2000).unwrap();
        let cfg = ModelConfig {
            vocab_size: tok.inner().get_vocab_size(true),
            max_positions: 64,
            ..crate::model::fuyu::tests::tiny().0
        };
        let canvas = Canvas {
            width: 48,
            height: 36,
            patch: 12,
        };
        let device = Device::default();
        let model = Fuyu::new(&cfg, &canvas, 8, &device);
        let rotary = Rotary::new(&cfg, &device);
        let synthetic = SyntheticData::new(3, 4).train_batch(0, 12).unwrap();
        // a user's folder: its images' captions and questions come together too
        let dir = tempfile::tempdir().unwrap();
        crate::data::write_scenes(dir.path(), 3, glimpse_runtime::scene::Split::Val, 0, 4).unwrap();
        let options = crate::data::IndexOptions {
            val_fraction: 0.0,
            skip_bad: false,
        };
        let folder = crate::data::load_folder(dir.path(), options, 8, 1 << 20)
            .unwrap()
            .train_batch(0, 12)
            .unwrap();
        for (examples, rows) in [(synthetic, 3), (folder, 2)] {
            let build = |pack| {
                BatchBuilder {
                    tokenizer: &tok,
                    canvas,
                    max_positions: cfg.max_positions,
                    pack,
                }
                .build(&examples)
                .unwrap()
            };
            let (separate, packed) = (build(0), build(200));
            assert_eq!((separate.size, packed.size), (12, rows));
            assert_eq!(separate.examples, packed.examples);
            assert_eq!(separate.answer_tokens, packed.answer_tokens);
            let losses = |b: Batch| {
                let l = batch_loss(
                    &model,
                    &rotary,
                    &cfg,
                    &canvas,
                    to_tensors(b, &canvas, &device),
                    Matching::Joint,
                );
                (
                    l.text.into_scalar::<f32>(),
                    l.matching
                        .expect("the images have captions")
                        .into_scalar::<f32>(),
                )
            };
            let (a, b) = (losses(separate), losses(packed));
            assert!((a.0 - b.0).abs() < 1e-5, "text loss {} vs {}", a.0, b.0);
            assert!((a.1 - b.1).abs() < 1e-5, "match loss {} vs {}", a.1, b.1);
            // and the layout matters: the same packed ids read as one causal text differ
            let mut wrong = build(200);
            wrong.segments.iter_mut().for_each(|s| *s = 0);
            assert!((losses(wrong).0 - a.0).abs() > 1e-4);
        }
    }

    #[test]
    fn runs_written_before_packing_resume_with_their_own_data_mix() {
        let mut old = serde_json::to_value(TrainOptions::default()).unwrap();
        let map = old.as_object_mut().unwrap();
        for key in ["per_scene", "pack", "caption_share", "init"] {
            map.remove(key);
        }
        let old: TrainOptions = serde_json::from_value(old).unwrap();
        assert_eq!(
            (old.per_scene, old.pack, old.caption_share),
            (2, 0, Some(0.4))
        );
        let new: TrainOptions =
            serde_json::from_value(serde_json::to_value(TrainOptions::default()).unwrap()).unwrap();
        assert_eq!(
            (new.per_scene, new.pack, new.caption_share),
            (10, 160, None)
        );
    }

    fn tiny(steps: usize) -> TrainOptions {
        TrainOptions {
            steps,
            batch_size: 8,
            per_scene: 4,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            max_positions: 64,
            canvas: Canvas {
                width: 48,
                height: 36,
                patch: 12,
            },
            val_every: 100,
            checkpoint_every: 100,
            val_examples: 8,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn a_run_started_from_another_keeps_its_shape_tokenizer_and_weights() {
        let dir = std::env::temp_dir().join(format!("glimpse-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a"), dir.join("b"));
        train(&a, tiny(2), false, Changes::default()).unwrap();
        // the new run asks for another shape; the checkpoint's wins
        let mut options = tiny(1);
        options.d_model = 32;
        options.lr = 0.0; // no update: the weights must come out as they went in
        options.warmup = 1;
        options.init = Some(a.clone());
        train(&b, options, false, Changes::default()).unwrap();
        let (ra, rb) = (read_run(&a).unwrap(), read_run(&b).unwrap());
        assert_eq!(rb.model.d_model, 16);
        assert_eq!(
            serde_json::to_value(&ra.model).unwrap(),
            serde_json::to_value(&rb.model).unwrap()
        );
        assert_eq!(
            std::fs::read(a.join(tokenizer::FILE)).unwrap(),
            std::fs::read(b.join(tokenizer::FILE)).unwrap()
        );
        let device = Device::default();
        let weights = |dir: &Path, run: &RunInfo| {
            load_model(dir, run, &device)
                .unwrap()
                .vision_embed
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(weights(&a, &ra), weights(&b, &rb));
        // a run without a checkpoint cannot be a starting point
        let mut bad = tiny(1);
        bad.init = Some(dir.join("nothing"));
        let err = train(&dir.join("c"), bad, false, Changes::default()).unwrap_err();
        assert!(format!("{err:#}").contains("nothing"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tiny run `a`, and `c` fine-tuned from it at a high learning rate, so that the
    /// two differ in nearly every weight.
    fn two_runs(a: &Path, c: &Path) {
        train(a, tiny(2), false, Changes::default()).unwrap();
        let mut other = tiny(2);
        other.seed = 8;
        other.init = Some(a.to_path_buf());
        other.lr = 5e-2;
        other.warmup = 1;
        train(c, other, false, Changes::default()).unwrap();
    }

    #[test]
    fn a_run_started_from_a_blend_starts_on_the_line_between_its_two_models() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str| dir.path().join(name);
        two_runs(&run("a"), &run("c"));
        // no steps: the run's checkpoint is the blend itself
        let mut options = tiny(0);
        options.init = Some(run("a"));
        let blend = |with: &Path, keep_heads| Blend {
            with: vec![with.to_path_buf()],
            steps: vec![],
            share: 0.25,
            keep_heads,
            fit_heads: 0,
        };
        options.blend = Some(blend(&run("c"), false));
        train(&run("b"), options.clone(), false, Changes::default()).unwrap();
        options.blend = Some(blend(&run("c"), true));
        train(&run("k"), options.clone(), false, Changes::default()).unwrap();
        let device = Device::default();
        let weights = |dir: &Path| {
            let info = read_run(dir).unwrap();
            crate::model::weights::collect(&load_model(dir, &info, &device).unwrap())
        };
        let (a, c) = (weights(&run("a")), weights(&run("c")));
        let (b, k) = (weights(&run("b")), weights(&run("k")));
        let mut moved = 0;
        for (name, wa) in &a {
            let kept = is_matching_head(name);
            for (i, (x, z)) in wa.data.iter().zip(&c[name].data).enumerate() {
                let want = x + 0.25 * (z - x);
                let y = b[name].data[i];
                assert!(
                    (y - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}: {y} for {want}"
                );
                let y = k[name].data[i];
                let want = if kept { *x } else { want };
                assert!(
                    (y - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name} kept: {y} for {want}"
                );
                moved += usize::from(x != z);
            }
        }
        assert!(
            moved > 1000,
            "the two models differ in {moved} weights only"
        );
        assert_ne!(a["image_head.weight"], c["image_head.weight"]);
        // a model of another shape is refused, naming the flag
        let mut wide = tiny(1);
        wide.d_model = 32;
        train(&run("w"), wide, false, Changes::default()).unwrap();
        options.blend = Some(blend(&run("w"), false));
        let err = train(&run("x"), options.clone(), false, Changes::default()).unwrap_err();
        assert!(format!("{err:#}").contains("--blend"), "{err:#}");
        // so is a path that holds no model, named with its flag
        options.blend = Some(blend(&run("nothing"), false));
        let err = train(&run("y"), options, false, Changes::default()).unwrap_err();
        let says = format!("{err:#}");
        assert!(
            says.contains("--blend") && says.contains("nothing"),
            "{says}"
        );
        assert!(!says.contains("--init"), "{says}");
    }

    #[test]
    fn blend_steps_blend_toward_the_mean_of_runs_kept_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str| dir.path().join(name);
        train(&run("a"), tiny(2), false, Changes::default()).unwrap();
        for (name, seed) in [("c", 8), ("d", 9)] {
            let mut o = tiny(3);
            o.seed = seed;
            o.init = Some(run("a"));
            o.lr = 5e-2;
            o.warmup = 1;
            o.checkpoint_every = 1;
            o.keep_checkpoints = true;
            train(&run(name), o, false, Changes::default()).unwrap();
        }
        let blended = |out: &str, steps: Vec<usize>| {
            let mut o = tiny(0);
            o.init = Some(run("a"));
            o.blend = Some(Blend {
                with: vec![run("c"), run("d")],
                steps,
                share: 0.5,
                keep_heads: false,
                fit_heads: 0,
            });
            train(&run(out), o, false, Changes::default())
        };
        blended("b", vec![1, 3]).unwrap();
        let device = Device::default();
        let collect = |m: &Fuyu| crate::model::weights::collect(m);
        let kept = |name: &str, step| {
            let info = read_run(&run(name)).unwrap();
            collect(&load_kept_model(&run(name), &info, step, &device).unwrap())
        };
        let last = |name: &str| {
            let info = read_run(&run(name)).unwrap();
            collect(&load_model(&run(name), &info, &device).unwrap())
        };
        let (a, b) = (last("a"), last("b"));
        let four = [kept("c", 1), kept("c", 3), kept("d", 1), kept("d", 3)];
        let mut apart = 0;
        for (name, wa) in &a {
            for (i, (x, y)) in wa.data.iter().zip(&b[name].data).enumerate() {
                let mean = four.iter().map(|w| w[name].data[i]).sum::<f32>() / 4.0;
                let want = 0.5 * x + 0.5 * mean;
                assert!(
                    (y - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{name}[{i}]: {y} for {want}"
                );
                // the mean is not any one checkpoint's: steps 1 and 3 and the two runs differ
                apart += usize::from((mean - four[0][name].data[i]).abs() > 1e-6);
            }
        }
        assert!(
            apart > 1000,
            "the checkpoints differ in {apart} weights only"
        );
        // the run records what it was blended from, and reads back
        let info = read_run(&run("b")).unwrap();
        let recorded = info.options.blend.unwrap();
        assert_eq!(recorded.with, vec![run("c"), run("d")]);
        assert_eq!(recorded.steps, vec![1, 3]);
        // a step a run did not keep is refused, naming the flag and the step
        let err = format!("{:#}", blended("x", vec![1, 7]).unwrap_err());
        assert!(err.contains("--blend-steps 7"), "{err}");
    }

    #[test]
    fn a_blend_recorded_by_earlier_runs_as_one_path_reads_back() {
        let old = r#"{"with": "runs/harsh", "share": 0.5, "keep_heads": true}"#;
        let b: Blend = serde_json::from_str(old).unwrap();
        assert_eq!(b.with, vec![PathBuf::from("runs/harsh")]);
        assert!(b.steps.is_empty() && b.keep_heads && b.fit_heads == 0);
    }

    #[test]
    fn fitted_heads_give_the_starting_models_embeddings_on_the_blend() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str| dir.path().join(name);
        two_runs(&run("a"), &run("c"));
        let blend = |share, keep_heads, fit_heads| {
            let mut o = tiny(0);
            o.init = Some(run("a"));
            o.blend = Some(Blend {
                with: vec![run("c")],
                steps: vec![],
                share,
                keep_heads,
                fit_heads,
            });
            o
        };
        train(&run("kept"), blend(0.5, true, 0), false, Changes::default()).unwrap();
        train(
            &run("fit"),
            blend(0.5, false, 40),
            false,
            Changes::default(),
        )
        .unwrap();
        train(
            &run("same"),
            blend(0.0, false, 40),
            false,
            Changes::default(),
        )
        .unwrap();
        let device = Device::default();
        let model = |name: &str| {
            let info = read_run(&run(name)).unwrap();
            load_model(&run(name), &info, &device).unwrap()
        };
        // embeddings before unit length on batches the fit did not see
        let o = tiny(0);
        let info = read_run(&run("a")).unwrap();
        let tok = run_tokenizer(&run("a")).unwrap();
        let src = source(&o).unwrap();
        let builder = BatchBuilder {
            tokenizer: &tok,
            canvas: info.canvas,
            max_positions: info.model.max_positions,
            pack: o.pack,
        };
        let rotary = Rotary::new(&info.model, &device);
        let setup = crate::refit::FitSetup {
            rotary: &rotary,
            canvas: info.canvas,
            n_heads: info.model.n_heads,
            device: &device,
        };
        let embed = |m: &Fuyu| {
            let mut all = Vec::new();
            for i in 1000..1010 {
                let b = builder
                    .build(&src.train_batch(i, o.batch_size).unwrap())
                    .unwrap();
                let t = to_tensors(b, &info.canvas, &device);
                let (images, texts) = crate::refit::head_states(m, &t, &setup).unwrap();
                for e in [m.image_head.forward(images), m.text_head.forward(texts)] {
                    all.extend(e.into_data().try_to_vec::<f32>().unwrap());
                }
            }
            all
        };
        let target = embed(&model("a"));
        let error = |name: &str| {
            let e = embed(&model(name));
            let sq: f32 = e.iter().zip(&target).map(|(x, y)| (x - y) * (x - y)).sum();
            let norm: f32 = target.iter().map(|y| y * y).sum();
            sq / norm
        };
        let (kept, fit, same) = (error("kept"), error("fit"), error("same"));
        assert!(same < 1e-4, "a blend of nothing, heads fitted: {same}");
        assert!(kept > 1e-3, "the blend did not move the states: {kept}");
        assert!(fit < kept / 2.0, "fitted {fit}, kept {kept}");
        // the fit moves the heads and nothing else
        let w = |name: &str| crate::model::weights::collect(&model(name));
        let (wk, wf, wa) = (w("kept"), w("fit"), w("a"));
        for (name, x) in &wk {
            if name == "logit_scale" {
                assert_eq!(&wa[name], &wf[name]);
            } else if is_matching_head(name) {
                assert_ne!(x, &wf[name], "{name}");
            } else {
                assert_eq!(x, &wf[name], "{name}");
            }
        }
        // too little data to fit a head on is refused, naming the flag
        let err = train(&run("few"), blend(0.5, false, 1), false, Changes::default()).unwrap_err();
        assert!(format!("{err:#}").contains("--blend-fit-heads"), "{err:#}");
    }

    #[test]
    fn matching_only_trains_the_matching_heads_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        train(&a, tiny(2), false, Changes::default()).unwrap();
        let mut options = tiny(3);
        options.init = Some(a.clone());
        options.matching_only = true;
        options.lr = 1e-2;
        options.warmup = 1;
        train(&b, options, false, Changes::default()).unwrap();
        let device = Device::default();
        let weights = |dir: &Path| {
            let run = read_run(dir).unwrap();
            crate::model::weights::collect(&load_model(dir, &run, &device).unwrap())
        };
        let (before, after) = (weights(&a), weights(&b));
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        let mut heads = Vec::new();
        for (name, w) in &before {
            if is_matching_head(name) {
                heads.push(name.as_str());
                assert_ne!(
                    after[name], *w,
                    "{name} did not move in a matching-only run"
                );
            } else {
                assert_eq!(after[name], *w, "{name} changed in a matching-only run");
            }
        }
        // both projections, weights and biases, and the temperature
        assert_eq!(heads.len(), 5, "{heads:?}");
    }

    /// A fresh model of `cfg` on `canvas` as a fine-tuning start, with a matching space of 8
    /// and a tokenizer of one caption.
    fn tiny_start(cfg: &ModelConfig, canvas: Canvas, device: &Device) -> Start {
        Start {
            config: cfg.clone(),
            canvas,
            match_dim: 8,
            tokenizer: tokenizer::train(&["a small red circle".to_string()], 64).unwrap(),
            model: Fuyu::new(cfg, &canvas, 8, device),
        }
    }

    #[test]
    fn blocks_added_on_top_start_as_the_identity() {
        let device = Device::default();
        let o = tiny(1);
        let cfg = ModelConfig {
            vocab_size: 40,
            d_model: o.d_model,
            n_layers: o.n_layers,
            n_heads: o.n_heads,
            d_ff: o.d_ff,
            rotary_fraction: 0.5,
            rope_theta: 25_000.0,
            layer_norm_eps: 1e-5,
            max_positions: o.max_positions,
        };
        device.seed(3);
        let start = tiny_start(&cfg, o.canvas, &device);
        let (patches, ids) = crate::model::fuyu::tests::two_inputs(&o.canvas, &device);
        let rotary = Rotary::new(&cfg, &device);
        let logits = |m: &Fuyu| {
            m.forward(patches.clone(), ids.clone(), &rotary, cfg.n_heads)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let before = logits(&start.model);
        let deeper = deepen(start, 2, &device).unwrap();
        assert_eq!(deeper.config.n_layers, 3);
        assert_eq!(deeper.model.layers.len(), 3);
        let after = logits(&deeper.model);
        let worst = crate::model::fuyu::tests::max_abs_diff(&before, &after);
        assert!(worst < 1e-5, "logits moved by {worst}");
        // the new blocks are fresh, not copies of the old one: only their outputs are zero
        let w = crate::model::weights::collect(&deeper.model);
        let nonzero = |n: &str| w[n].data.iter().any(|v| *v != 0.0);
        assert!(nonzero("layers.1.qkv.weight") && nonzero("layers.2.mlp_up.weight"));
        assert!(!nonzero("layers.1.dense.weight") && !nonzero("layers.2.mlp_down.weight"));
        assert_ne!(w["layers.0.qkv.weight"].data, w["layers.1.qkv.weight"].data);
    }

    #[test]
    fn a_model_moved_to_a_larger_canvas_keeps_its_weights_and_text_room() {
        let device = Device::default();
        let (cfg, canvas) = crate::model::fuyu::tests::tiny();
        device.seed(5);
        let start = tiny_start(&cfg, canvas, &device);
        let before = crate::model::weights::collect(&start.model);
        // 8x4 in patches of 4 (2x1 patches) -> 16x12 (4x3 patches)
        let moved = regrid(start, Some((16, 12)), None, &device).unwrap();
        let big = moved.canvas;
        assert_eq!((big.cols(), big.rows(), big.patch), (4, 3, 4));
        let text_room = cfg.max_positions - canvas.image_tokens();
        assert_eq!(moved.config.max_positions, big.image_tokens() + text_room);
        let after = crate::model::weights::collect(&moved.model);
        for (name, a) in &before {
            if name != "patch_position" {
                assert_eq!(a, &after[name], "{name} changed");
            }
        }
        // the old grid's corners are the new grid's corners
        let (old, new) = (&before["patch_position"], &after["patch_position"]);
        assert_eq!(new.dims, vec![3, 4, cfg.d_model]);
        let d = cfg.d_model;
        assert_eq!(old.data[..d], new.data[..d]);
        assert_eq!(
            old.data[old.data.len() - d..],
            new.data[new.data.len() - d..]
        );
        // and the moved model runs on the new canvas's patches
        let (patches, ids) = crate::model::fuyu::tests::two_inputs(&big, &device);
        let rotary = Rotary::new(&moved.config, &device);
        let logits = moved.model.forward(patches, ids, &rotary, cfg.n_heads);
        assert_eq!(logits.dims(), [2, big.image_tokens() + 4, cfg.vocab_size]);
        // a canvas the patch does not divide is refused, naming the flag
        let start = tiny_start(&cfg, canvas, &device);
        let Err(err) = regrid(start, Some((18, 12)), None, &device) else {
            panic!("an 18x12 canvas in patches of 4 was accepted");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains("--canvas 18x12") && err.contains("--patch 4"),
            "{err}"
        );
    }

    #[test]
    fn a_model_moved_to_smaller_patches_sees_a_flat_frame_as_before() {
        let device = Device::default();
        let (cfg, canvas) = crate::model::fuyu::tests::tiny();
        device.seed(7);
        let start = tiny_start(&cfg, canvas, &device);
        let before = crate::model::weights::collect(&start.model);
        // 8x4 in patches of 4 (2x1 patches) -> patches of 2 (4x2 patches)
        let moved = regrid(start, None, Some(2), &device).unwrap();
        let small = moved.canvas;
        assert_eq!((small.width, small.height), (canvas.width, canvas.height));
        assert_eq!((small.cols(), small.rows(), small.patch), (4, 2, 2));
        let text_room = cfg.max_positions - canvas.image_tokens();
        assert_eq!(moved.config.max_positions, small.image_tokens() + text_room);
        let after = crate::model::weights::collect(&moved.model);
        for (name, a) in &before {
            if name != "patch_position" && name != "vision_embed.weight" {
                assert_eq!(a, &after[name], "{name} changed");
            }
        }
        assert_eq!(after["vision_embed.weight"].dims, vec![12, cfg.d_model]);
        // a patch of one colour projects to the same vector with either kernel
        use crate::model::regrid::tests::project_flat;
        let colour = [0.25, -0.5, 0.75];
        let a = project_flat(&before["vision_embed.weight"], colour);
        let b = project_flat(&after["vision_embed.weight"], colour);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{a:?} against {b:?}");
        }
        // the moved model runs on the new patches
        let (patches, ids) = crate::model::fuyu::tests::two_inputs(&small, &device);
        let rotary = Rotary::new(&moved.config, &device);
        let logits = moved.model.forward(patches, ids, &rotary, cfg.n_heads);
        assert_eq!(logits.dims(), [2, small.image_tokens() + 4, cfg.vocab_size]);
        // a patch that does not divide the canvas is refused, naming both
        let start = tiny_start(&cfg, canvas, &device);
        let Err(err) = regrid(start, None, Some(3), &device) else {
            panic!("patches of 3 on an 8x4 canvas were accepted");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains("--canvas 8x4") && err.contains("--patch 3"),
            "{err}"
        );
    }
}
