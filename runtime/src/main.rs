//! `glimpse`: caption frames and answer questions about them, on the board.

// One exception, allowed where it is: no_error_backtraces sets an environment variable.
#![deny(unsafe_code)]

mod cli;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use cli::sources::{PacingArgs, SourceArgs};

use glimpse_runtime::frame::load_image;
use glimpse_runtime::package::{CpuFeatures, Precision, default_package_dir};
use glimpse_runtime::text::Prompt;
use glimpse_runtime::{Answer, Glimpse};

#[derive(Parser)]
#[command(
    name = "glimpse",
    version,
    about = "Caption camera frames and answer questions about them, offline, with a small vision-language model",
    after_help = "Examples:\n  glimpse caption examples/scene-1.png\n  glimpse ask examples/scene-1.png \"what color is the circle?\"\n  glimpse --model models/mine --json caption a.jpg b.jpg\n  glimpse watch --camera /dev/video0 --every 2s\n  glimpse serve --serial /dev/ttyGS0 --camera /dev/video0"
)]
struct Cli {
    /// Model package directory [default: the bundled model, or $GLIMPSE_MODEL]
    #[arg(long, global = true)]
    model: Option<PathBuf>,
    /// Print one JSON object per result instead of plain text.
    #[arg(long, global = true)]
    json: bool,
    /// Most tokens to generate per answer [default: from the package]
    #[arg(long, global = true, value_parser = cli::positive::<usize>)]
    max_tokens: Option<usize>,
    /// Precision to run: f32, f16, int8 or q4, if the package carries it [default: the best for
    /// this CPU among those it carries]
    #[arg(long, global = true, value_parser = parse_precision)]
    precision: Option<Precision>,
    /// Largest image fed to the model, WIDTHxHEIGHT: frames are shrunk to fit, so fewer
    /// image tokens and a shorter prefill (for packages whose patch grid follows the
    /// image, such as imported Fuyu models) [default: from the package]
    #[arg(long, global = true, value_name = "WxH")]
    max_image: Option<glimpse_runtime::frame::Size>,
    /// Threads for the matrix products: more for large models on a machine with cores to
    /// spare; 1 leaves the other cores to the camera and the system
    #[arg(long, global = true, default_value_t = 1, value_parser = cli::positive::<usize>)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe each image in one sentence.
    Caption {
        /// PNG or JPEG files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Caption this many views of each image, cropped by a fraction of a patch at its
        /// sides, and keep the caption they agree on most (1 to 7): fewer objects lost
        /// between patches, for up to as many times the time (three when the first three
        /// views agree). The text comes whole, not as it is decoded
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=glimpse_runtime::views::MAX_VIEWS as i64))]
        views: u8,
    },
    /// Answer a question about an image.
    Ask { image: PathBuf, question: String },
    /// Caption frames continuously from a camera, a folder or the scene generator.
    ///
    /// One line per caption with its timestamp and latency split; Ctrl-C prints a
    /// summary (frames seen, dropped, skipped, captioned; median and p95 latency).
    Watch {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        pacing: PacingArgs,
        /// Least time between captions, e.g. 2s or 500ms (0: as fast as possible).
        #[arg(long, default_value = "0", value_parser = cli::duration::parse_duration)]
        every: std::time::Duration,
        /// Stop after this many captions.
        #[arg(long, value_parser = cli::positive::<u64>)]
        count: Option<u64>,
        /// Make each caption from this many views of the frame, as `caption --views`
        /// does (1 to 7): for up to as many times the time
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=glimpse_runtime::views::MAX_VIEWS as i64))]
        views: u8,
        #[command(flatten)]
        trigger: cli::watch::TriggerArgs,
        #[command(flatten)]
        mqtt: cli::mqtt::MqttArgs,
    },
    /// Score how well each text matches an image (image–text matching, no generation).
    ///
    /// Prints each text's cosine similarity to the image and the softmax probability
    /// over the texts given, best first.
    Match {
        image: PathBuf,
        /// Candidate descriptions, e.g. "a large red circle" "a small blue square".
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Answer questions typed on a serial console about what the camera sees.
    ///
    /// Connect with picocom, minicom or screen at the same baud rate, 8N1. Type `help`
    /// for the commands. Follow-up questions about one frame reuse its image prefix.
    Serve {
        /// Serial device (e.g. /dev/ttyGS0, /dev/ttyAMA0), or - for stdin/stdout.
        #[arg(
            long,
            value_name = "PORT",
            required_unless_present = "mqtt",
            conflicts_with = "mqtt"
        )]
        serial: Option<PathBuf>,
        /// Baud rate.
        #[arg(long, default_value_t = 115_200, value_parser = cli::positive::<u32>)]
        baud: u32,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        pacing: PacingArgs,
        /// Make each `caption` from this many views of the frame, as `caption --views`
        /// does (1 to 7): written whole once chosen, for up to as many times the time.
        /// Questions are answered from the frame alone
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=glimpse_runtime::views::MAX_VIEWS as i64))]
        views: u8,
        /// Or take JSON requests from MQTT (TOPIC/ask) and publish the replies
        /// (TOPIC/answer), with the options of `watch --mqtt`.
        #[command(flatten)]
        mqtt: cli::mqtt::MqttArgs,
    },
    /// Show what the model package holds.
    Info,
    /// Measure load, preprocessing, time to first token, decode speed and memory.
    Bench(cli::bench::BenchArgs),
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision {s:?}: use f32, f16, int8 or q4"))
}

fn load(cli: &Cli) -> Result<Glimpse, String> {
    let dir = cli.model.clone().unwrap_or_else(default_package_dir);
    let mut g = Glimpse::load_with(&dir, cli.precision).map_err(|e| e.to_string())?;
    if let Some(n) = cli.max_tokens {
        g.max_new_tokens = n;
    }
    g.set_max_image(cli.max_image)
        .map_err(|e| format!("--max-image: {e}"))?;
    Ok(g)
}

fn json_line(image: &std::path::Path, prompt: &Prompt, a: &Answer) -> serde_json::Value {
    let t = a.timings;
    let mut v = serde_json::json!({
        "image": image.display().to_string(),
        "text": a.text,
        "tokens": a.tokens.len(),
        "stop": a.stop.name(),
        "ms": {
            "preprocess": t.preprocess_s * 1e3,
            "vision": t.vision_s * 1e3,
            "prefill": t.prefill_s * 1e3,
            "decode": t.decode_s * 1e3,
        }
    });
    if let Prompt::Question(q) = prompt {
        v["question"] = q.clone().into();
    }
    v
}

/// Why a command could not finish one of its inputs.
enum Failure {
    /// This input failed (a bad image, a prompt too long); the others can still be done.
    Input(String),
    /// stdout is gone (a closed pipe, a full disk): nothing more can be delivered.
    Output(String),
}

fn output_error(e: std::io::Error) -> String {
    format!("cannot write to stdout: {e}")
}

/// Prints one line to stdout; a write error (closed pipe, full disk) is an error.
fn print(text: impl std::fmt::Display) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(output_error)
}

/// Runs one prompt on one image; text mode streams the answer as it is decoded.
fn answer(
    g: &Glimpse,
    cli: &Cli,
    image: &std::path::Path,
    prompt: &Prompt,
    label: bool,
) -> Result<(), Failure> {
    let frame = load_image(image).map_err(|e| Failure::Input(e.to_string()))?;
    if cli.json {
        let a = g
            .run(&frame, prompt, &mut |_| {})
            .map_err(|e| Failure::Input(e.to_string()))?;
        return print(json_line(image, prompt, &a)).map_err(Failure::Output);
    }
    let mut out = std::io::stdout().lock();
    // the first write error is kept: generation finishes, then the command stops
    let mut written: std::io::Result<()> = Ok(());
    if label {
        written = write!(out, "{}: ", image.display());
    }
    let mut first = true;
    let a = g.run(&frame, prompt, &mut |piece| {
        let piece = if first { piece.trim_start() } else { piece };
        first = false;
        if written.is_ok() {
            written = write!(out, "{piece}").and_then(|()| out.flush());
        }
    });
    if written.is_ok() {
        written = writeln!(out).and_then(|()| out.flush());
    }
    written.map_err(|e| Failure::Output(output_error(e)))?;
    let a = a.map_err(|e| Failure::Input(e.to_string()))?;
    if let Some(note) = a.stop.cut_note() {
        eprintln!("note: {}: the answer was {note}", image.display());
    }
    Ok(())
}

/// One image's caption from `views` views of it, printed whole.
fn caption_views(
    g: &Glimpse,
    cli: &Cli,
    image: &std::path::Path,
    views: usize,
    label: bool,
) -> Result<(), Failure> {
    let frame = load_image(image).map_err(|e| Failure::Input(e.to_string()))?;
    let a = g
        .caption_views(&frame, views)
        .map_err(|e| Failure::Input(e.to_string()))?;
    let line = if cli.json {
        let mut v = json_line(image, &Prompt::Caption, &a);
        v["views"] = views.into();
        v.to_string()
    } else if label {
        format!("{}: {}", image.display(), a.text.trim_start())
    } else {
        a.text.trim_start().to_string()
    };
    print(line).map_err(Failure::Output)?;
    if let Some(note) = a.stop.cut_note() {
        glimpse_runtime::note!("note: {}: the caption was {note}", image.display());
    }
    Ok(())
}

/// Set by Ctrl-C (SIGINT): loops finish their current frame and summarise.
static STOP: AtomicBool = AtomicBool::new(false);

/// The model and frame source of a long-running command, with Ctrl-C setting [`STOP`].
fn start_loop(
    cli: &Cli,
    source: &SourceArgs,
    pacing: &PacingArgs,
) -> Result<(Glimpse, Box<dyn glimpse_runtime::source::FrameSource>), String> {
    let g = load(cli)?;
    let source = cli::sources::open(source, pacing, g.capture_box())?;
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed));
    Ok((g, source))
}

fn run(cli: &Cli) -> Result<bool, String> {
    glimpse_runtime::model::set_threads(cli.threads).map_err(|e| e.to_string())?;
    match &cli.command {
        Command::Watch {
            source,
            pacing,
            every,
            count,
            views,
            trigger,
            mqtt,
        } => {
            let (g, source) = start_loop(cli, source, pacing)?;
            let trigger = trigger.open(&g)?;
            let mqtt = mqtt.open(trigger.as_ref().map(|t| t.text.as_str()))?;
            let opts = glimpse_runtime::watch::WatchOptions {
                every: *every,
                max_captions: *count,
                trigger,
                views: *views as usize,
                ..Default::default()
            };
            let summary = cli::watch::run(&g, source, opts, cli.json, mqtt, &STOP);
            Ok(summary.succeeded())
        }
        Command::Serve {
            serial,
            baud,
            source,
            pacing,
            views,
            mqtt,
        } => {
            let (g, source) = start_loop(cli, source, pacing)?;
            let views = *views as usize;
            match serial {
                Some(serial) => cli::serve::run(&g, source, serial, *baud, cli.json, views, &STOP)?,
                None => {
                    let stats = cli::mqtt::serve(&g, source, mqtt, views, &STOP)?;
                    glimpse_runtime::note!(
                        "glimpse: served {} answers ({} errors, {} rejected requests)",
                        stats.answered,
                        stats.errors,
                        stats.rejected_lines
                    );
                }
            }
            Ok(true)
        }
        Command::Info => {
            let g = load(cli)?;
            if cli.json {
                print(info_json(&g))?;
            } else {
                print(info_text(&g))?;
            }
            Ok(true)
        }
        Command::Bench(args) => {
            let dir = cli.model.clone().unwrap_or_else(default_package_dir);
            cli::bench::run(args, &dir, cli.precision, cli.max_image, cli.json)?;
            Ok(true)
        }
        Command::Caption { images, views } => caption(cli, images, *views as usize),
        Command::Match { image, texts } => match_texts(cli, image, texts),
        Command::Ask { image, question } => {
            let g = load(cli)?;
            match answer(&g, cli, image, &Prompt::Question(question.clone()), false) {
                Ok(()) => Ok(true),
                Err(Failure::Input(e) | Failure::Output(e)) => Err(e),
            }
        }
    }
}

/// `glimpse caption`: every image in turn; a bad one is reported and the rest still run.
fn caption(cli: &Cli, images: &[PathBuf], views: usize) -> Result<bool, String> {
    let g = load(cli)?;
    let mut ok = true;
    for image in images {
        let result = if views > 1 {
            caption_views(&g, cli, image, views, images.len() > 1)
        } else {
            answer(&g, cli, image, &Prompt::Caption, images.len() > 1)
        };
        match result {
            Ok(()) => {}
            Err(Failure::Input(e)) => {
                glimpse_runtime::note!("glimpse: error: {e}");
                ok = false;
            }
            Err(Failure::Output(e)) => return Err(e),
        }
    }
    Ok(ok)
}

/// `glimpse match`: each text's cosine to the image and its softmax share, best first.
fn match_texts(cli: &Cli, image: &std::path::Path, texts: &[String]) -> Result<bool, String> {
    let g = load(cli)?;
    let frame = load_image(image).map_err(|e| e.to_string())?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut scores = g.match_texts(&frame, &texts).map_err(|e| e.to_string())?;
    scores.sort_by(|a, b| b.cosine.total_cmp(&a.cosine));
    if cli.json {
        let v = serde_json::json!({
            "image": image.display().to_string(),
            "matches": scores.iter().map(|s| serde_json::json!({
                "text": s.text, "cosine": s.cosine, "probability": s.probability
            })).collect::<Vec<_>>(),
        });
        print(v)?;
    } else {
        let mut table = format!("{:>8}  {:>11}  text", "cosine", "probability");
        for s in &scores {
            table += &format!("\n{:>8.3}  {:>11.3}  {}", s.cosine, s.probability, s.text);
        }
        print(table)?;
    }
    Ok(true)
}

/// `glimpse info` for people.
fn info_text(g: &Glimpse) -> String {
    let m = &g.package.manifest;
    let mut lines = vec![
        format!("package   {} ({})", g.package.dir.display(), m.name),
        format!("model     {:?}", m.model),
        format!(
            "canvas    {}x{}, patches {}x{} px, {} image tokens{}",
            m.canvas.width,
            m.canvas.height,
            m.canvas.patch,
            m.canvas.patch,
            m.image.max_image_tokens(&m.canvas),
            match (m.image.grid, m.image.max_image) {
                (glimpse_runtime::frame::Grid::Canvas, _) => String::new(),
                (_, Some(b)) =>
                    format!(" at most (frames fitted into {b}, grid follows the image)"),
                (_, None) => " at most (grid follows the image)".into(),
            }
        ),
        format!(
            "precision {} (carries {}; this CPU: {})",
            g.precision,
            precision_names(m),
            CpuFeatures::detect().describe()
        ),
    ];
    lines.extend(g.decoder_kernels().iter().map(|k| format!("kernel    {k}")));
    lines.push(format!("kv cache  {}", g.cache_growth()));
    lines.push(match &m.matching {
        Some(h) => format!(
            "matching  {} ({}-d image and text embeddings, scale 1/τ = {:.2})",
            h.file, h.dim, h.logit_scale
        ),
        None => "matching  none (no matching heads: match and --trigger are unavailable)".into(),
    });
    for (f, e) in &m.files {
        lines.push(format!(
            "file      {f} ({} bytes, sha256 {})",
            e.bytes, e.sha256
        ));
    }
    if !m.metrics.is_null() {
        lines.push(format!("metrics   {}", m.metrics));
    }
    lines.join("\n")
}

fn precision_names(m: &glimpse_runtime::package::Manifest) -> String {
    m.precisions
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `glimpse --json info`: the same facts as one JSON object.
fn info_json(g: &Glimpse) -> serde_json::Value {
    let m = &g.package.manifest;
    serde_json::json!({
        "package": g.package.dir.display().to_string(),
        "name": m.name,
        "model": m.model,
        "canvas": {
            "width": m.canvas.width,
            "height": m.canvas.height,
            "patch": m.canvas.patch,
            "image_tokens": m.image.max_image_tokens(&m.canvas),
        },
        "image": m.image,
        "prompt": m.prompt,
        "precision": g.precision.name(),
        "precisions": m.precisions.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "cpu": CpuFeatures::detect().describe(),
        "kernels": g.decoder_kernels(),
        "kv_cache": g.cache_growth().to_string(),
        "matching": m.matching,
        "files": m.files,
        "metrics": m.metrics,
    })
}

/// tract returns errors as part of loading a model, and each error built while
/// `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) is set captures a stack trace. glimpse shows
/// errors as messages and never prints those traces, yet with `RUST_BACKTRACE=1` in the
/// environment they add 7 % to load and first token under the gcc-linked unwinder, and
/// make it 8.5x as long under the LLVM libunwind that a zig-linked board binary carries
/// (targets/README.md, "Load: the unwinder"). So
/// error backtraces are off unless `RUST_LIB_BACKTRACE` asks for them; panics still print
/// theirs under `RUST_BACKTRACE`.
#[allow(unsafe_code)]
fn no_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in main, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

fn main() -> ExitCode {
    memory::large_blocks_back_to_the_system();
    no_error_backtraces();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            glimpse_runtime::note!("glimpse: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How the process asks the system for memory; a large model's load turns gigabytes of
/// weights from one form into another, and the first two settings below are about that,
/// the third about the blocks each inference step asks for again and again.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod memory {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::Mutex;

    /// glibc gives a freed block above its mmap threshold back to the system, but raises
    /// that threshold (up to 32 MiB) each time it frees one, after which blocks of that
    /// size come from the heap and stay resident once freed. With the moving threshold a
    /// 1.3 B q4 package peaked at 1.68 GB instead of 1.27; a fixed threshold of 1 MiB keeps
    /// the process near one copy of its weights.
    ///
    /// Fixing the threshold also fixes glibc's trim threshold, at 128 KiB: freed memory at
    /// the top of the heap beyond that went back to the system, and the next operator's
    /// output was faulted in again a page at a time. A 1.3 B int8 prefill's tensors under
    /// 1 MiB (a 97-token activation of 1536 floats is 582 KiB) took 10,600–11,800 page
    /// faults a prefill that way, 870 with [`TRIM`].
    pub fn large_blocks_back_to_the_system() {
        // SAFETY: mallopt only changes an allocator setting; first thing in main.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD as i32);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM as i32);
        }
    }

    /// The mmap threshold set above.
    const THRESHOLD: usize = 1 << 20;

    /// Free memory kept at the top of the heap: blocks under [`THRESHOLD`] come from
    /// there, so this is tens of them.
    const TRIM: usize = 32 << 20;

    /// Blocks of at least this many bytes ask for transparent huge pages.
    const LARGE: usize = 4 << 20;

    /// The system allocator, with large blocks advised to use transparent huge pages:
    /// fresh memory is touched a 2 MiB page at a time instead of 4 KiB, which made
    /// packing the weights of the 9.4 B q4 package 25-35 % faster here (one fault and one
    /// clear per huge page). Kernels without them (or set to `never`) ignore the advice.
    /// Freed blocks of [`SHELVED`] sizes are kept on a [`Shelf`] for the next request of
    /// the same size.
    pub struct LargeOnHugePages;

    fn advise(block: *mut u8, size: usize) {
        if block.is_null() || size < LARGE {
            return;
        }
        // SAFETY: sysconf reads a constant; madvise only advises on whole pages inside
        // the block (its start rounded down stays in the block's own mapping, which
        // begins at a page boundary before it).
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
            let start = block as usize & !(page - 1);
            let end = (block as usize + size) & !(page - 1);
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }

    /// Sizes of block kept when freed: from the mmap threshold, where each block is a
    /// mapping of its own that freeing unmaps, up to this.
    const SHELVED: std::ops::Range<usize> = THRESHOLD..(32 << 20);

    /// Most bytes kept at once (the oldest blocks go back to the system first).
    const SHELF_BYTES: usize = 64 << 20;

    /// Most blocks kept at once.
    const SHELF_SLOTS: usize = 32;

    /// Freed blocks of a megabyte or more, kept for the next request of the same size
    /// and alignment. Each decoder step of a large model asks for the same few such
    /// blocks (a logits row of 262,144 floats is 1 MiB; a prefill's activations are
    /// several); from the system, each would be a fresh mapping faulted in a page at a
    /// time and unmapped when freed. A 1.3 B int8 decode step spent more time in the
    /// kernel doing that than in half its operators. Sizes are rounded up to whole pages
    /// so that a block always holds what its class promises.
    struct Shelf {
        /// (size class, alignment, address), oldest first.
        blocks: [(usize, usize, usize); SHELF_SLOTS],
        len: usize,
        bytes: usize,
    }

    static SHELF: Mutex<Shelf> = Mutex::new(Shelf {
        blocks: [(0, 0, 0); SHELF_SLOTS],
        len: 0,
        bytes: 0,
    });

    /// The size class of a request, or `None` for sizes never shelved. Only on x86-64:
    /// with the whole-program optimisation of the board profile, the shelf's checks were
    /// copied into allocation sites across the binary, and the aarch64 board binary grew
    /// past its size limit (55 kB).
    fn class(layout: Layout) -> Option<usize> {
        (cfg!(target_arch = "x86_64") && SHELVED.contains(&layout.size()))
            .then(|| layout.size().next_multiple_of(4096))
    }

    fn shelf() -> std::sync::MutexGuard<'static, Shelf> {
        SHELF
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    impl Shelf {
        fn take(&mut self, size: usize, align: usize) -> Option<*mut u8> {
            let i = self.blocks[..self.len]
                .iter()
                .rposition(|&(s, a, _)| s == size && a == align)?;
            let (_, _, block) = self.blocks[i];
            self.blocks.copy_within(i + 1..self.len, i);
            self.len -= 1;
            self.bytes -= size;
            Some(block as *mut u8)
        }

        /// Keeps `block`, handing back the oldest blocks that no longer fit.
        fn keep(&mut self, block: *mut u8, size: usize, align: usize) {
            while self.len > 0 && (self.len == SHELF_SLOTS || self.bytes + size > SHELF_BYTES) {
                let (s, a, old) = self.blocks[0];
                self.blocks.copy_within(1..self.len, 0);
                self.len -= 1;
                self.bytes -= s;
                // SAFETY: a shelved block came from System with this size and alignment.
                unsafe { System.dealloc(old as *mut u8, Layout::from_size_align_unchecked(s, a)) };
            }
            self.blocks[self.len] = (size, align, block as usize);
            self.len += 1;
            self.bytes += size;
        }
    }

    /// A block from the system allocator, zeroed or not, advised onto huge pages when large.
    ///
    /// # Safety
    /// `layout` has a non-zero size.
    unsafe fn fresh(layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: the caller's.
        let block = unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
        advise(block, layout.size());
        block
    }

    /// A block of the shelved size class `size`: the shelf's newest of that size and
    /// alignment, else a fresh one of the whole class. Out of line, as is [`shelve`], so
    /// that an allocation site carries only [`class`]'s range check.
    #[inline(never)]
    fn shelved(size: usize, align: usize, zeroed: bool) -> *mut u8 {
        if let Some(block) = shelf().take(size, align) {
            if zeroed {
                // SAFETY: a shelved block holds its whole class.
                unsafe { block.write_bytes(0, size) };
            }
            return block;
        }
        // SAFETY: `size`, a layout's rounded up to whole pages, is non-zero and no larger
        // than isize::MAX allows for this alignment (the shelved sizes are under 32 MiB).
        unsafe { fresh(Layout::from_size_align_unchecked(size, align), zeroed) }
    }

    /// Puts a freed block of the size class `size` on the shelf.
    #[inline(never)]
    fn shelve(block: *mut u8, size: usize, align: usize) {
        shelf().keep(block, size, align)
    }

    // SAFETY: every block comes from the system allocator, with its size rounded up to a
    // whole page for the shelved sizes; a block taken from the shelf was freed by its
    // last owner and has the size and alignment asked for; `advise` changes no memory.
    unsafe impl GlobalAlloc for LargeOnHugePages {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match class(layout) {
                Some(size) => shelved(size, layout.align(), false),
                // SAFETY: GlobalAlloc's callers pass a non-zero size.
                None => unsafe { fresh(layout, false) },
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            match class(layout) {
                Some(size) => shelved(size, layout.align(), true),
                // SAFETY: as in `alloc`.
                None => unsafe { fresh(layout, true) },
            }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            match class(layout) {
                Some(size) => shelve(block, size, layout.align()),
                None => unsafe { System.dealloc(block, layout) },
            }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
            // glibc's realloc reads neither size; a block that will be shelved when freed
            // must hold its whole class.
            let new = Layout::from_size_align(size, layout.align())
                .ok()
                .and_then(class)
                .unwrap_or(size);
            let block = unsafe { System.realloc(block, layout, new) };
            advise(block, new);
            block
        }
    }

    #[global_allocator]
    static ALLOCATOR: LargeOnHugePages = LargeOnHugePages;

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A block freed and asked for again (same size and alignment) is the same memory,
        /// and a request for zeroed memory gets it zeroed.
        #[test]
        fn a_freed_large_block_serves_the_next_request_of_its_size() {
            let size = (3 << 20) + 12345;
            let first = vec![7u8; size];
            let at = first.as_ptr();
            drop(first);
            let mut second = vec![0u8; size];
            assert_eq!(second.as_ptr(), at);
            assert!(
                second.iter().all(|&b| b == 0),
                "a zeroed request comes back zeroed"
            );
            second.fill(9);
            assert_eq!(second[size - 1], 9);
        }

        /// Page faults taken by this thread so far.
        fn faults() -> i64 {
            // SAFETY: getrusage writes the struct it is given.
            unsafe {
                let mut usage: libc::rusage = std::mem::zeroed();
                libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
                usage.ru_minflt
            }
        }

        /// Blocks under the mmap threshold, freed and asked for again, come back without
        /// faulting their pages in again: the heap's freed top is kept, not trimmed.
        #[test]
        fn freed_heap_blocks_stay_resident_for_the_next_requests() {
            large_blocks_back_to_the_system();
            let touch = |blocks: &mut Vec<Vec<u8>>| {
                for _ in 0..16 {
                    let mut b = Vec::<u8>::with_capacity(600 << 10);
                    b.resize(600 << 10, 1);
                    blocks.push(b);
                }
            };
            let mut blocks = vec![];
            touch(&mut blocks);
            blocks.clear();
            let before = faults();
            touch(&mut blocks);
            let refaulted = faults() - before;
            // 16 blocks of 600 KiB are 2,400 pages; trimmed at glibc's default threshold,
            // about 1,000 of them faulted in again here
            assert!(
                refaulted < 240,
                "{refaulted} page faults touching freed blocks again"
            );
        }

        /// The shelf hands back the oldest blocks when full, by count and by bytes, and a
        /// request of another size or alignment is not served from it.
        #[test]
        fn the_shelf_keeps_the_newest_blocks_within_its_limits() {
            let mut shelf = Shelf {
                blocks: [(0, 0, 0); SHELF_SLOTS],
                len: 0,
                bytes: 0,
            };
            let block = |size: usize, align: usize| {
                // SAFETY: a valid, non-zero layout.
                unsafe { System.alloc(Layout::from_size_align(size, align).unwrap()) }
            };
            let mb = 1 << 20;
            let oldest = block(mb, 16);
            shelf.keep(oldest, mb, 16);
            for _ in 1..SHELF_SLOTS {
                shelf.keep(block(mb, 16), mb, 16);
            }
            assert_eq!((shelf.len, shelf.bytes), (SHELF_SLOTS, SHELF_SLOTS * mb));
            let newest = block(2 * mb, 64);
            shelf.keep(newest, 2 * mb, 64);
            assert_eq!(shelf.len, SHELF_SLOTS, "one slot freed for it");
            assert!(
                shelf.blocks[..shelf.len]
                    .iter()
                    .all(|b| b.2 != oldest as usize)
            );
            assert_eq!(shelf.take(2 * mb, 16), None, "another alignment");
            assert_eq!(shelf.take(3 * mb, 64), None, "another size");
            assert_eq!(shelf.take(2 * mb, 64), Some(newest));
            let big = SHELF_BYTES - 4 * mb;
            shelf.keep(block(big, 16), big, 16);
            assert!(shelf.bytes <= SHELF_BYTES);
            assert_eq!(shelf.len, 5, "all but four 1 MiB blocks handed back");
            while let Some((size, align, at)) = (shelf.len > 0).then(|| shelf.blocks[shelf.len - 1])
            {
                assert_eq!(shelf.take(size, align), Some(at as *mut u8));
                // SAFETY: it came from System with this layout.
                unsafe {
                    System.dealloc(at as *mut u8, Layout::from_size_align(size, align).unwrap())
                };
            }
            // SAFETY: taken from the shelf above, from System with this layout.
            unsafe { System.dealloc(newest, Layout::from_size_align(2 * mb, 64).unwrap()) };
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod memory {
    pub fn large_blocks_back_to_the_system() {}
}
