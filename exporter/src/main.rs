//! `glimpse-export`: train, export and evaluate Glimpse models.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use glimpse_exporter::data::{FolderIndex, IndexOptions};
use glimpse_exporter::eval::Lines;
use glimpse_exporter::train::{self, TrainOptions};
use glimpse_runtime::frame::Canvas;
use glimpse_runtime::package::Precision;

#[derive(Parser)]
#[command(
    name = "glimpse-export",
    version,
    about = "Train the Glimpse vision-language model, export it as an ONNX model package, and evaluate packages",
    after_help = "Typical use:\n  glimpse-export train --out runs/mine\n  glimpse-export export runs/mine --out models/mine\n  glimpse-export eval models/mine\n  glimpse --model models/mine caption photo.jpg"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (and its tokenizer) into a run directory.
    Train(Box<TrainArgs>),
    /// Write a model package (ONNX graphs, tokenizer, manifest) from a run directory.
    Export(ExportArgs),
    /// Evaluate a package with the runtime on the synthetic test splits, or on a folder of
    /// your own images (--data).
    Eval(EvalArgs),
    /// Compare the precisions a package carries: accuracy, token agreement with f32,
    /// size, load time, time to first token, decode speed and tract kernels.
    Compare(CompareArgs),
    /// Write synthetic scenes as PNG files, with their captions and questions in captions.jsonl.
    Scenes(ScenesArgs),
    /// Convert a Hugging Face Fuyu checkpoint folder (config.json, safetensors weights,
    /// tokenizer.json, preprocessor settings) into a model package.
    #[command(name = "import-hf")]
    ImportHf(ImportHfArgs),
    /// Write a Fuyu checkpoint folder with random weights at a real model's size (for
    /// measuring import, load and speed without downloading weights).
    #[command(name = "random-hf")]
    RandomHf(RandomHfArgs),
    /// Record tract's inputs and logits on some images as JSON, for checking a package
    /// with another ONNX runtime (scripts/check_onnx.py).
    Reference(ReferenceArgs),
}

#[derive(clap::Args)]
struct ReferenceArgs {
    /// Model package.
    package: PathBuf,
    /// Images to run.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// JSON file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ImportHfArgs {
    /// Checkpoint folder as `save_pretrained` writes it (for example a download of
    /// adept/fuyu-8b).
    dir: PathBuf,
    /// Package folder to create (must not exist yet).
    #[arg(long)]
    out: PathBuf,
    /// Precisions to write graphs for, comma-separated: f32, f16, int8, q4.
    #[arg(long, default_value = "q4", value_delimiter = ',', value_parser = parse_precision)]
    precision: Vec<Precision>,
    /// Package name recorded in the manifest (default: the checkpoint folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Default bound on the image fed to the model, WIDTHxHEIGHT (frames are shrunk to
    /// fit; fewer pixels, fewer image tokens, a shorter prefill). Default: the model's
    /// whole canvas (1920x1080 for Fuyu-8B). `glimpse --max-image` overrides it per run.
    #[arg(long, value_name = "WxH")]
    max_image: Option<glimpse_runtime::frame::Size>,
}

#[derive(clap::Args)]
struct RandomHfArgs {
    /// fuyu-8b (9.4 B parameters, 18.8 GB in bf16), fuyu-1b (1.3 B), fuyu-100m (0.1 B) or
    /// fuyu-tiny.
    #[arg(long, default_value = "fuyu-tiny")]
    preset: String,
    /// Checkpoint folder to create (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ScenesArgs {
    /// Directory to write into.
    #[arg(long)]
    out: PathBuf,
    /// train, val, test, compositional, shifted (wider camera nuisances, unseen
    /// backgrounds) or paraphrase (questions in held-out phrasings).
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, default_value_t = 8)]
    count: u64,
    /// Index of the first scene.
    #[arg(long, default_value_t = 0)]
    first: u64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Run directory: checkpoints, tokenizer, loss curve and metrics go here.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Training steps [default for a new run: 4000]. Given with --resume, it moves the
    /// run's end: later stretches the learning-rate schedule, earlier (but past the step
    /// reached) compresses it. 0 with --init writes the starting model (blended, moved,
    /// grown) as the run's checkpoint without training it.
    #[arg(long)]
    steps: Option<usize>,
    /// Examples per step (a caption or a question each).
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    /// Synthetic scenes: examples made from each scene, its caption then questions of each
    /// kind in turn (so --batch-size / --per-scene frames per step).
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().per_scene)]
    per_scene: usize,
    /// Pack the examples of one image into one row, up to this many text tokens (0: one
    /// row per example). Packed rows compute the same losses with the image computed once.
    #[arg(long, default_value_t = TrainOptions::default().pack)]
    pack: usize,
    /// Synthetic scenes: the earlier mix instead, each example the caption with this
    /// probability, else one of the scene's questions (the bundled model's first stage).
    #[arg(long, value_name = "P")]
    caption_share: Option<f32>,
    /// Start a new run from another run's last checkpoint or from a package's f32 weights
    /// (fine-tuning; the bundled models/glimpse-default works): its model shape, canvas and
    /// tokenizer are kept; the schedule and optimiser start afresh.
    #[arg(long, value_name = "RUN or PACKAGE")]
    init: Option<PathBuf>,
    /// Peak learning rate (AdamW, warm-up then cosine decay).
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = TrainOptions::default().warmup)]
    warmup: usize,
    /// Seed of the synthetic data and of the initial weights.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().d_model)]
    d_model: usize,
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().n_layers)]
    layers: usize,
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().n_heads)]
    heads: usize,
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().d_ff)]
    d_ff: usize,
    /// Longest sequence, image tokens included.
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().max_positions)]
    max_positions: usize,
    /// Model canvas as WIDTHxHEIGHT [default for a new run: 192x144]. With --init: move the
    /// starting model to this canvas, its patch size kept unless --patch is given and its
    /// learned patch positions resampled to the new grid, the context growing by the change
    /// in image tokens.
    #[arg(long)]
    canvas: Option<String>,
    /// Patch size in pixels [default for a new run: 24]. With --init: move the starting
    /// model to patches of this size, its patch projection resampled to the new patch
    /// (a patch of one colour projects as before) and its patch positions to the new grid.
    #[arg(long, value_parser = positive_u32)]
    patch: Option<u32>,
    /// Train on a folder of images with captions.jsonl instead of synthetic scenes. Lines
    /// marked "split": "test" are never trained on.
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --data: share of the lines without a "split" that go to validation (picked by
    /// a hash of the image name, so adding lines moves no others).
    #[arg(long, value_name = "F", default_value_t = IndexOptions::default().val_fraction)]
    val_fraction: f64,
    /// With --data: skip bad lines and unreadable images (counted and named) instead of
    /// stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// With --data: megabytes of decoded images kept in memory (images are read as
    /// training reaches them).
    #[arg(long, value_name = "MB", default_value_t = TrainOptions::default().image_cache_mb)]
    image_cache_mb: u64,
    /// With --data: augment the training images, each visit differently and the same in
    /// every run (--seed): small crops and shifts, horizontal flips when no caption or
    /// question of the image speaks of left or right, exposure, white balance,
    /// saturation, and sometimes blur, noise or JPEG compression.
    #[arg(long)]
    augment: bool,
    /// Validate (and record the loss curve) every N steps.
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().val_every)]
    val_every: usize,
    /// Write a checkpoint every N steps.
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().checkpoint_every)]
    checkpoint_every: usize,
    /// Weight of the CLIP-style image–text loss beside the captioning loss (0: no matching
    /// heads) [default for a new run: 0.5; a resumed run keeps its own unless given].
    #[arg(long)]
    contrastive: Option<f32>,
    /// Width of the shared image–text space.
    #[arg(long, value_parser = positive, default_value_t = TrainOptions::default().match_dim)]
    match_dim: usize,
    /// Swap words in the model's input, each with probability P, keeping the words it must
    /// predict: an answer's colour, shape and size words for others of their kind, a
    /// question's words that name nothing for other such words. Teaches the model to read
    /// the frame rather than guess from the words before, and to shrug off unfamiliar
    /// wording.
    #[arg(long, value_name = "P", default_value_t = TrainOptions::default().word_noise)]
    word_noise: f32,
    /// Synthetic scenes: draw this share of the training scenes with three or four objects
    /// only (empty ones stay as often), a curriculum on the scenes whose captions are
    /// hardest to get exact.
    #[arg(long, value_name = "P", default_value_t = TrainOptions::default().crowded)]
    crowded: f32,
    /// Synthetic scenes: draw this share of the training scenes on frames of other shapes
    /// than the four training ones, portrait (208x312, 180x320) and wide (336x192,
    /// 400x180), so a camera turned on its side or cropped wide is not new to the model.
    /// The shifted split's shapes (240x320, 352x176) stay unseen.
    #[arg(long, value_name = "P", default_value_t = TrainOptions::default().reframe)]
    reframe: f32,
    /// Synthetic scenes: draw this share of the training scenes with every nuisance of
    /// light, lens and clutter harsher, halfway from the training ranges to the shifted
    /// split's (darker and brighter exposure, stronger casts, blur, noise and JPEG, more
    /// clutter, occlusion, tilt and perspective, object sizes nearer the line between
    /// small and large). The shifted split's backgrounds and frame shapes stay unseen, and
    /// its ranges stay wider.
    #[arg(long, value_name = "P", default_value_t = TrainOptions::default().harsh)]
    harsh: f32,
    /// Synthetic scenes: draw this share of the training scenes with small and large
    /// radii meeting halfway between their ranges (small up to that line, large from
    /// it), so the model is taught where one size turns into the other instead of
    /// guessing it in the band the ranges leave out. The shifted split's sizes in that
    /// band are then no longer beyond training.
    #[arg(long, value_name = "P", default_value_t = TrainOptions::default().sizes_meet)]
    sizes_meet: f32,
    /// With --init: add N decoder blocks on top of the starting model's, each starting as
    /// the identity (its output projections at zero), so training begins from what the
    /// model already does with room to do more.
    #[arg(long, value_name = "N", default_value_t = TrainOptions::default().add_layers)]
    add_layers: usize,
    /// With --init: multiply every width of the starting model (residual stream, number of
    /// heads, MLP) by K, each new unit a copy of an old one with the weights that read it
    /// split in random shares, so the wider model starts from exactly what the narrower
    /// one computed and training makes the copies differ.
    #[arg(long, value_name = "K", value_parser = positive, default_value_t = TrainOptions::default().widen)]
    widen: usize,
    /// With --init: train only the matching heads (what `glimpse match` and `watch
    /// --trigger` compare), on the contrastive loss; every other weight, and so every
    /// caption and answer, stays the starting model's. Each step runs the model forward
    /// only, so it is cheaper than a full step.
    #[arg(long)]
    matching_only: bool,
    /// With --init: start from a blend of the --init model and this run or package (same
    /// shape and tokenizer), every weight on the line between the two. A fine-tuned model
    /// blended with the one it started from keeps part of what the fine-tuning gained and
    /// part of what it cost. Several (--blend A B, or --blend given again): their mean.
    #[arg(long, value_name = "RUN or PACKAGE", num_args = 1.., requires = "init")]
    blend: Vec<PathBuf>,
    /// With --blend: average each --blend run's checkpoints kept at these steps (`train
    /// --keep-checkpoints`), comma-separated, instead of taking its last one.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        requires = "blend"
    )]
    blend_steps: Vec<usize>,
    /// With --blend: the share of the --blend model in every weight.
    #[arg(long, value_name = "P", default_value_t = 0.5, requires = "blend")]
    blend_share: f32,
    /// With --blend: leave the matching heads and their temperature as the --init model's
    /// (they read the decoder's last state, which a blend moves less than a fine-tune).
    #[arg(long, requires = "blend")]
    blend_keep_heads: bool,
    /// With --blend: fit the matching heads by least squares, on N batches of this run's
    /// training scenes, so that the blend's image and text embeddings are the --init
    /// model's: they then read the blended decoder the way the --init model's heads read
    /// its own. The temperature stays the --init model's.
    #[arg(
        long,
        value_name = "N",
        requires = "blend",
        conflicts_with = "blend_keep_heads"
    )]
    blend_fit_heads: Option<usize>,
    /// Keep a copy of every checkpoint's weights in the run's checkpoints/ folder (about
    /// 4.6 MB each for the bundled model's shape), so that `export RUN --step N` can write
    /// the model as it was at any of them.
    #[arg(long)]
    keep_checkpoints: bool,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Run directory written by `train`, or a Glimpse package: its f32 weights are then
    /// written again, in this version's graph layout and at the precisions asked for.
    run: PathBuf,
    /// Package directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Package name recorded in the manifest.
    #[arg(long, default_value = "glimpse")]
    name: String,
    /// Precisions to write graphs for, comma-separated: f32, f16, int8, q4. The runtime picks
    /// the one that suits its CPU (or the one given with --precision).
    #[arg(long, default_value = "f32", value_delimiter = ',', value_parser = parse_precision)]
    precision: Vec<Precision>,
    /// Write the run as it was at this step's checkpoint (kept by `train
    /// --keep-checkpoints`) instead of its last one.
    #[arg(long, value_name = "N")]
    step: Option<usize>,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision {s:?}: use f32, f16, int8 or q4"))
}

/// A user's folder to score instead of the synthetic scenes.
#[derive(clap::Args)]
struct DataArgs {
    /// Score a folder of your own images (the captions.jsonl layout of `train --data`)
    /// instead of synthetic scenes.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// With --data: which lines to score. `test` are the lines marked "split": "test";
    /// `all` is for a folder kept apart from training altogether.
    #[arg(long, value_enum, default_value = "test")]
    split: Lines,
    /// With --data: the validation share used in training (for --split val).
    #[arg(long, value_name = "F", default_value_t = IndexOptions::default().val_fraction)]
    val_fraction: f64,
    /// With --data: skip bad lines and unreadable images (counted and named).
    #[arg(long)]
    skip_bad: bool,
}

impl DataArgs {
    fn folder(&self) -> Result<Option<(FolderIndex, Lines)>> {
        let Some(dir) = &self.data else {
            return Ok(None);
        };
        let options = IndexOptions {
            val_fraction: self.val_fraction,
            skip_bad: self.skip_bad,
        };
        Ok(Some((FolderIndex::read(dir, options)?, self.split)))
    }
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Model package carrying f32 and other precisions.
    package: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Test scenes for accuracy and agreement.
    #[arg(long, value_parser = positive_u64, default_value_t = 100)]
    scenes: u64,
    /// Data seed (the package's training seed by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Repetitions per timing.
    #[arg(long, value_parser = positive, default_value_t = 20)]
    runs: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Model package to evaluate.
    package: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Scenes per split.
    #[arg(long, value_parser = positive_u64, default_value_t = 200)]
    scenes: u64,
    /// Data seed (the package's training seed by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the metrics into the package manifest.
    #[arg(long)]
    write: bool,
    /// Print the metrics as JSON.
    #[arg(long)]
    json: bool,
    /// Wrong captions to print per split (the JSON and the manifest keep five).
    #[arg(long, default_value_t = 3)]
    misses: usize,
    /// Instead of the splits, find which of the shifted split's differences costs the
    /// captions: test scenes under the training conditions, then with one nuisance or
    /// frame shape at a time taken from the shifted split (--scenes each).
    #[arg(long, conflicts_with_all = ["write", "data"])]
    nuisances: bool,
    /// Compare with a second package on the same scenes: each split's caption exact
    /// match, QA accuracy and recall@1 for both, their difference with its 95 % interval
    /// from the scenes where the two differ, and which is better beyond the noise.
    #[arg(long, value_name = "PACKAGE", conflicts_with_all = ["write", "data", "nuisances"])]
    against: Option<PathBuf>,
    /// Only image↔text retrieval: no caption or answer is decoded, so it takes a fraction
    /// of the time (for picking a checkpoint of `train --matching-only`, whose captions
    /// are those of the run it started from). With --against, both packages so.
    #[arg(long, conflicts_with_all = ["write", "data", "nuisances"])]
    matching_only: bool,
    /// Make each caption from this many views of its frame, as `glimpse caption --views`
    /// does (1 to 7); answers stay the frame's own. With --against, the first package's
    /// captions only, so `eval P --views 7 --against P` measures what the views bring.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=glimpse_runtime::views::MAX_VIEWS as i64), conflicts_with_all = ["write", "data", "nuisances", "matching_only"])]
    views: u8,
}

impl EvalArgs {
    fn scoring(&self) -> glimpse_exporter::eval::Scoring {
        use glimpse_exporter::eval::{Figures, Scoring};
        Scoring {
            figures: if self.matching_only {
                Figures::Matching
            } else {
                Figures::All
            },
            views: self.views as usize,
        }
    }
}

/// `--canvas WIDTHxHEIGHT` as two sizes in pixels.
fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("--canvas {s:?} is not WIDTHxHEIGHT"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|e| anyhow::anyhow!("--canvas {s:?}: {v:?} is not a size in pixels ({e})"))
    };
    Ok((side(w)?, side(h)?))
}

fn parse_canvas(s: &str, patch: u32) -> Result<Canvas> {
    let (width, height) = parse_size(s)?;
    let c = Canvas {
        width,
        height,
        patch,
    };
    c.validate()
        .map_err(|e| anyhow::anyhow!("--canvas {s:?} with --patch {patch}: {e}"))?;
    Ok(c)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train_command(*a)?,
        Command::Compare(a) => {
            let cases = match a.data.folder()? {
                Some((folder, lines)) => glimpse_exporter::compare::Cases::Folder(folder, lines),
                None => glimpse_exporter::compare::Cases::Scenes {
                    scenes: a.scenes,
                    seed: a.seed,
                },
            };
            let rows = glimpse_exporter::compare::compare(&a.package, &cases, a.runs)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", glimpse_exporter::compare::table(&rows));
            }
        }
        Command::Export(a) => {
            let files = glimpse_exporter::package::export_at(
                &a.run,
                &a.out,
                &a.name,
                &a.precision,
                a.step,
            )?;
            eprintln!("wrote {} ({} files)", a.out.display(), files);
        }
        Command::ImportHf(a) => import_hf_command(a)?,
        Command::RandomHf(a) => random_hf_command(a)?,
        Command::Scenes(a) => {
            let split = glimpse_runtime::scene::Split::parse(&a.split).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown split {:?}: use {}",
                    a.split,
                    glimpse_runtime::scene::Split::ALL
                        .map(|s| s.name())
                        .join(", ")
                )
            })?;
            let n = glimpse_exporter::data::write_scenes(&a.out, a.seed, split, a.first, a.count)?;
            eprintln!("wrote {n} scenes to {}", a.out.display());
        }
        Command::Reference(a) => reference_command(a)?,
        Command::Eval(a) => eval_command(a)?,
    }
    Ok(())
}

/// `train`: the options of the command line, checked, then the run.
fn train_command(a: TrainArgs) -> Result<()> {
    let options = train_options(&a)?;
    let changes = train::Changes {
        steps: a.steps,
        contrastive: a.contrastive,
        keep_checkpoints: a.keep_checkpoints,
    };
    let p = train::train(&a.out, options, a.resume, changes)?;
    if p.step == 0 {
        eprintln!(
            "wrote the starting model, untrained, as the checkpoint of {}",
            a.out.display()
        );
        return Ok(());
    }
    eprintln!(
        "trained {} steps in {:.0} s; val loss {:.4}; curves and metrics in {}",
        p.step,
        p.elapsed_s,
        p.val_loss.last().map(|x| x.1).unwrap_or(f32::NAN),
        a.out.display()
    );
    Ok(())
}

/// The training options `a` asks for, or an error naming the flag that cannot be.
fn train_options(a: &TrainArgs) -> Result<TrainOptions> {
    let patch = a.patch.unwrap_or(TrainOptions::default().canvas.patch);
    let options = TrainOptions {
        steps: a.steps.unwrap_or(TrainOptions::default().steps),
        batch_size: a.batch_size,
        lr: a.lr,
        warmup: a.warmup,
        seed: a.seed,
        d_model: a.d_model,
        n_layers: a.layers,
        n_heads: a.heads,
        d_ff: a.d_ff,
        max_positions: a.max_positions,
        // with --init the canvas is the starting model's, or `regrid` below
        canvas: match (&a.canvas, &a.init) {
            (_, Some(_)) => TrainOptions::default().canvas,
            (Some(c), None) => parse_canvas(c, patch)?,
            (None, None) => {
                let d = TrainOptions::default().canvas;
                parse_canvas(&format!("{}x{}", d.width, d.height), patch)?
            }
        },
        data: a.data.clone(),
        folder: IndexOptions {
            val_fraction: a.val_fraction,
            skip_bad: a.skip_bad,
        },
        image_cache_mb: a.image_cache_mb,
        augment: a.augment,
        val_every: a.val_every.max(1),
        checkpoint_every: a.checkpoint_every.max(1),
        contrastive: a.contrastive.unwrap_or(TrainOptions::default().contrastive),
        match_dim: a.match_dim,
        per_scene: a.per_scene.max(1),
        pack: a.pack,
        init: a.init.clone(),
        caption_share: a.caption_share,
        word_noise: a.word_noise,
        crowded: a.crowded,
        reframe: a.reframe,
        harsh: a.harsh,
        sizes_meet: a.sizes_meet,
        add_layers: a.add_layers,
        widen: a.widen,
        matching_only: a.matching_only,
        blend: (!a.blend.is_empty()).then(|| train::Blend {
            with: a.blend.clone(),
            steps: a.blend_steps.clone(),
            share: a.blend_share,
            keep_heads: a.blend_keep_heads,
            fit_heads: a.blend_fit_heads.unwrap_or(0),
        }),
        keep_checkpoints: a.keep_checkpoints,
        regrid: match (&a.canvas, &a.init) {
            (Some(c), Some(_)) => Some(parse_size(c)?),
            _ => None,
        },
        repatch: a.patch.filter(|_| a.init.is_some()),
        ..TrainOptions::default()
    };
    check_train_flags(a, &options)?;
    Ok(options)
}

/// The flags of `a` that cannot go together or are out of range, refused by name.
fn check_train_flags(a: &TrainArgs, options: &TrainOptions) -> Result<()> {
    anyhow::ensure!(
        !a.augment || options.data.is_some(),
        "--augment changes the images of a --data folder; synthetic scenes bring their own variety"
    );
    if let Some(w) = a.contrastive {
        anyhow::ensure!(
            w.is_finite() && w >= 0.0,
            "--contrastive must be 0 or more, not {w}"
        );
    }
    anyhow::ensure!(
        a.lr.is_finite() && a.lr > 0.0 && a.lr < 1.0,
        "--lr must be between 0 and 1 (exclusive), not {}",
        a.lr
    );
    probability("--word-noise", a.word_noise)?;
    probability("--blend-share", a.blend_share)?;
    anyhow::ensure!(
        a.blend_fit_heads != Some(0),
        "--blend-fit-heads needs at least 1 batch to fit on"
    );
    if let Some(blend) = &options.blend {
        // refused here too, before the run's folder is made
        blend.check_steps()?;
    }
    anyhow::ensure!(
        a.steps != Some(0) || (options.init.is_some() && !a.resume),
        "--steps 0 writes the starting model of --init untrained; a new run from scratch or a resumed one needs at least 1"
    );
    let synthetic = options.data.is_none();
    synthetic_share("--crowded", a.crowded, synthetic)?;
    synthetic_share("--reframe", a.reframe, synthetic)?;
    synthetic_share("--harsh", a.harsh, synthetic)?;
    synthetic_share("--sizes-meet", a.sizes_meet, synthetic)?;
    anyhow::ensure!(
        a.add_layers == 0 || options.init.is_some(),
        "--add-layers grows the model of --init; a new run takes its depth from --layers"
    );
    anyhow::ensure!(
        a.widen == 1 || options.init.is_some(),
        "--widen grows the model of --init; a new run takes its widths from --d-model, --heads and --d-ff"
    );
    anyhow::ensure!(
        !a.matching_only || options.init.is_some(),
        "--matching-only trains the matching heads of --init; a new run has nothing to keep"
    );
    anyhow::ensure!(
        !a.matching_only || options.contrastive > 0.0,
        "--matching-only trains on the contrastive loss: --contrastive must be above 0"
    );
    anyhow::ensure!(
        !a.matching_only
            || (a.add_layers == 0 && a.widen == 1 && a.canvas.is_none() && a.patch.is_none()),
        "--matching-only keeps the model of --init as it is: leave out --add-layers, --widen, --canvas and --patch"
    );
    if let Some(p) = a.caption_share {
        probability("--caption-share", p)?;
    }
    anyhow::ensure!(
        a.heads > 0 && a.d_model.is_multiple_of(a.heads),
        "--d-model {} must be a multiple of --heads {}",
        a.d_model,
        a.heads
    );
    Ok(())
}

fn import_hf_command(a: ImportHfArgs) -> Result<()> {
    let done = glimpse_exporter::hf::import(&glimpse_exporter::hf::ImportOptions {
        dir: &a.dir,
        out: &a.out,
        name: a.name.as_deref(),
        precisions: &a.precision,
        max_image: a.max_image,
        progress: true,
    })?;
    let m = &done.manifest;
    let bytes: u64 = m.files.values().map(|f| f.bytes).sum();
    eprintln!(
        "wrote {} in {:.1} s: {} layers, d_model {}, vocabulary {}, {} ({:.1} MB), canvas {}x{}",
        done.out.display(),
        done.seconds,
        m.model.n_layers,
        m.model.d_model,
        m.model.vocab_size,
        m.precisions
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        bytes as f64 / 1e6,
        m.canvas.width,
        m.canvas.height
    );
    Ok(())
}

fn random_hf_command(a: RandomHfArgs) -> Result<()> {
    use glimpse_exporter::hf::random;
    let preset = random::preset(&a.preset).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown --preset {:?}: use {}",
            a.preset,
            random::PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let t = std::time::Instant::now();
    let bytes = random::write(&preset, &a.out, true)?;
    eprintln!(
        "wrote {} in {:.1} s: {} parameters, {:.2} GB of bf16 weights",
        a.out.display(),
        t.elapsed().as_secs_f64(),
        preset.parameters(),
        bytes as f64 / 1e9
    );
    Ok(())
}

fn reference_command(a: ReferenceArgs) -> Result<()> {
    let g = glimpse_runtime::Glimpse::load(&a.package)?;
    let mut refs = Vec::new();
    for img in &a.images {
        let frame = glimpse_runtime::frame::load_image(img)?;
        refs.push(glimpse_exporter::eval::reference(
            &g,
            &img.display().to_string(),
            &frame,
        )?);
    }
    std::fs::write(&a.out, serde_json::to_string(&refs)?)?;
    eprintln!("wrote {} references to {}", refs.len(), a.out.display());
    Ok(())
}

/// `eval`: a folder of the user's (--data), the nuisance probe, or the synthetic splits.
fn eval_command(a: EvalArgs) -> Result<()> {
    if a.data.data.is_some() {
        anyhow::ensure!(
            !a.write,
            "--write records the synthetic splits' figures; it does not take --data"
        );
        if let Some((folder, lines)) = a.data.folder()? {
            let g = glimpse_runtime::Glimpse::load(&a.package)?;
            let report = glimpse_exporter::eval::evaluate_folder(&g, &folder, lines, true)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
    } else if a.nuisances {
        let g = glimpse_runtime::Glimpse::load(&a.package)?;
        let seed = glimpse_exporter::eval::scene_seed(&g, a.seed);
        let probes = glimpse_exporter::eval::probe(&g, seed, a.scenes)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&probes)?);
        } else {
            print!("{}", glimpse_exporter::eval::probe_table(&probes, a.scenes));
        }
    } else if let Some(other) = &a.against {
        against(&a, other)?;
    } else {
        let report = glimpse_exporter::eval::evaluate(&a.package, a.scenes, a.seed, a.scoring())?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        } else {
            print!("{}", report.table(a.misses));
        }
        if a.write {
            glimpse_exporter::package::write_metrics(&a.package, report.to_json())?;
            eprintln!("metrics written into {}/glimpse.json", a.package.display());
        }
    }
    Ok(())
}

/// `eval A --against B`: both packages on the scenes of A's seed (or `--seed`), figure by
/// figure.
fn against(a: &EvalArgs, other: &std::path::Path) -> Result<()> {
    use glimpse_exporter::eval;
    let first = glimpse_runtime::Glimpse::load(&a.package)?;
    let second = glimpse_runtime::Glimpse::load(other)?;
    let seed = eval::scene_seed(&first, a.seed);
    eprintln!("A: {}", a.package.display());
    let ra = eval::evaluate_loaded(&first, a.scenes, seed, a.scoring())?;
    eprintln!("B: {}", other.display());
    let frame_alone = eval::Scoring {
        views: 1,
        ..a.scoring()
    };
    let rb = eval::evaluate_loaded(&second, a.scenes, seed, frame_alone)?;
    let rows = eval::compare(&ra, &rb)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{} scenes a split, seed {seed}", a.scenes);
        print!(
            "{}",
            eval::paired_table(
                &rows,
                &a.package.display().to_string(),
                &other.display().to_string()
            )
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glimpse-export: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A flag's value that must be a probability.
fn probability(flag: &str, p: f32) -> Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&p),
        "{flag} must be a probability from 0 to 1, not {p}"
    );
    Ok(())
}

/// A share of the synthetic training scenes: a probability, and 0 with a `--data` folder.
fn synthetic_share(flag: &str, p: f32, synthetic: bool) -> Result<()> {
    probability(flag, p)?;
    anyhow::ensure!(
        p == 0.0 || synthetic,
        "{flag} draws synthetic scenes; a --data folder's images are what they are"
    );
    Ok(())
}

/// A count that must be at least 1 (a zero batch, step or interval has no meaning).
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

fn positive_u32(s: &str) -> Result<u32, String> {
    let n = positive(s)?;
    u32::try_from(n).map_err(|_| format!("{s} is too large"))
}

fn positive_u64(s: &str) -> Result<u64, String> {
    positive(s).map(|n| n as u64)
}
