//! `glimpse bench`: where the time goes, measured on this machine.
//!
//! Every figure is the median (and 95th percentile) of repeated runs in one process:
//! package load, preprocessing of a frame, time to first token (preprocessing + vision +
//! prefill), time to first token of a follow-up question that reuses the frame's cached
//! image tokens, per-token decode with the KV cache and without it (recomputing the whole
//! sequence), end-to-end caption latency, the process's peak resident memory, and the
//! camera pixel paths for the same frame: YUYV to RGB and MJPEG decoding.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::error::Result;
use crate::frame::Patches;
use crate::generate::argmax;
use crate::model::OpTime;
use crate::pipeline::Glimpse;
use crate::source::pixel::{YuvRange, decode_mjpeg, rgb_to_yuyv, yuyv_to_rgb};
use crate::text::{Prompt, TokenStream};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median_ms: f64,
    pub p95_ms: f64,
    pub runs: usize,
}

impl Stat {
    /// Median and p95 of `ms`; with no samples (no decode step fits the context, say)
    /// both are NaN (`null` in JSON, `-` in the table) and `runs` is 0.
    pub fn of(mut ms: Vec<f64>) -> Stat {
        if ms.is_empty() {
            return Stat {
                median_ms: f64::NAN,
                p95_ms: f64::NAN,
                runs: 0,
            };
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Stat {
            median_ms: at(0.5),
            p95_ms: at(0.95),
            runs: ms.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub frame: (u32, u32),
    /// The precision of the graphs measured.
    pub precision: String,
    pub load: Stat,
    pub preprocess: Stat,
    pub yuyv_to_rgb: Stat,
    pub mjpeg_decode: Stat,
    pub first_token: Stat,
    /// Time to first token from patches (vision, prefill, argmax): what another ONNX
    /// runtime would be compared on.
    pub first_token_from_patches: Stat,
    pub follow_up_first_token: Stat,
    pub decode_token_cached: Stat,
    pub decode_token_uncached: Stat,
    pub caption: Stat,
    /// The caption from patches (no preprocessing).
    pub caption_from_patches: Stat,
    pub caption_tokens: usize,
    /// The caption from several views of the frame ([`Glimpse::caption_views`]), when
    /// asked for: how many views, and its time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_views: Option<(usize, Stat)>,
    pub peak_rss_mb: Option<f64>,
}

/// Vision on `patches`, the prefill of the image and the embedded `text`, and the first
/// token: the time to first token from the patches.
fn first_token_from(g: &Glimpse, patches: &Patches, text: &[f32]) -> Result<u32> {
    let mut prefix = g.see_patches(patches)?.embeddings;
    prefix.extend_from_slice(text);
    Ok(argmax(&g.session()?.forward_last(&prefix)?))
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64() * 1e3))
}

/// Peak resident set size of this process (Linux), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resident set size of this process now (Linux), in MB.
pub fn rss_mb() -> Option<f64> {
    crate::watch::resident_kib().map(|kib| kib as f64 / 1024.0)
}

pub fn run(dir: &std::path::Path, frame: &RgbImage, runs: usize) -> Result<BenchReport> {
    run_with(dir, None, frame, runs, 1)
}

/// Up to eight decode steps after `prefix` (already in `session`, `next` its argmax):
/// each step's milliseconds with the cache into `cached`, and of the same step
/// recomputing the whole sequence into `uncached`.
fn decode_steps(
    g: &Glimpse,
    mut session: crate::model::DecoderSession<'_>,
    mut seq: Vec<f32>,
    mut next: u32,
    cached: &mut Vec<f64>,
    uncached: &mut Vec<f64>,
) -> Result<()> {
    for _ in 0..8 {
        if session.len() + 1 > g.max_positions() {
            break;
        }
        let e = g.embed(&[next])?;
        let (logits, ms) = time(|| session.forward_last(&e))?;
        cached.push(ms);
        seq.extend_from_slice(&e);
        let (_, ms) = time(|| g.session()?.forward_last(&seq))?;
        uncached.push(ms);
        next = argmax(&logits);
    }
    Ok(())
}

/// Milliseconds of `runs` captions of `frame` from `views` views; none for one view.
fn views_ms(
    g: &Glimpse,
    frame: &RgbImage,
    views: usize,
    runs: usize,
) -> Result<Option<(usize, Stat)>> {
    if views <= 1 {
        return Ok(None);
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        ms.push(time(|| g.caption_views(frame, views))?.1);
    }
    Ok(Some((views, Stat::of(ms))))
}

/// The package loaded three times (the first from a cold page cache, maybe), the last
/// load kept, with each load's milliseconds.
fn load_thrice(
    dir: &std::path::Path,
    precision: Option<crate::package::Precision>,
) -> Result<(Glimpse, Vec<f64>)> {
    let (mut g, ms) = time(|| Glimpse::load_with(dir, precision))?;
    let mut load = vec![ms];
    for _ in 0..2 {
        let (loaded, ms) = time(|| Glimpse::load_with(dir, precision))?;
        load.push(ms);
        g = loaded;
    }
    Ok((g, load))
}

/// Milliseconds of the camera's two pixel paths, YUYV to RGB and MJPEG decoding, `runs`
/// times each on an even-width copy of `frame`.
fn pixel_paths(frame: &RgbImage, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (w, h) = frame.dimensions();
    let even = image::imageops::crop_imm(frame, 0, 0, w & !1, h).to_image();
    let yuyv = rgb_to_yuyv(&even);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&even)
        .map_err(|e| crate::Error::Inference(format!("cannot encode the bench JPEG: {e}")))?;
    let (mut yuyv_ms, mut mjpeg_ms) = (vec![], vec![]);
    let mut rgb = RgbImage::new(1, 1);
    let bad = |e: crate::source::SourceError| crate::Error::Inference(e.to_string());
    for _ in 0..runs {
        let t = Instant::now();
        yuyv_to_rgb(&yuyv, even.width(), h, YuvRange::Limited, &mut rgb).map_err(bad)?;
        yuyv_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        decode_mjpeg(&jpeg, even.width(), h).map_err(bad)?;
        mjpeg_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((yuyv_ms, mjpeg_ms))
}

/// [`run`] at a given precision (the one chosen for this CPU when `None`), also timing
/// captions from `views` views when more than one.
pub fn run_with(
    dir: &std::path::Path,
    precision: Option<crate::package::Precision>,
    frame: &RgbImage,
    runs: usize,
    views: usize,
) -> Result<BenchReport> {
    let runs = runs.max(3);
    let (g, load) = load_thrice(dir, precision)?;
    let stream = TokenStream::new(&g.tokenizer, &Prompt::Caption)?;
    let text = g.embed(&stream.text_ids)?;
    let question = TokenStream::new(
        &g.tokenizer,
        &Prompt::Question("how many objects are there?".into()),
    )?;
    let (mut pre, mut first, mut cached, mut uncached, mut caption) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut follow_up = vec![];
    let (mut first_model, mut caption_model) = (vec![], vec![]);
    let patches = g.patches(frame);
    let mut caption_tokens = 0;
    let (yuyv_ms, mjpeg_ms) = pixel_paths(frame, runs)?;
    for _ in 0..runs {
        let (_, ms) = time(|| Ok(g.patches(frame)))?;
        pre.push(ms);
        // time to first token: preprocessing, vision, prefill of image and prompt, first argmax
        let t = Instant::now();
        let image = g.see(frame)?;
        let mut prefix = image.embeddings.clone();
        prefix.extend_from_slice(&text);
        let mut session = g.session()?;
        let logits = session.forward_last(&prefix)?;
        let next = argmax(&logits);
        first.push(t.elapsed().as_secs_f64() * 1e3);
        first_model.push(time(|| first_token_from(&g, &patches, &text))?.1);
        // a follow-up question about the same frame: only its own tokens are prefilled
        let seen = g.image_session(&image)?;
        let t = Instant::now();
        let q = g.embed(&question.text_ids)?;
        let logits = seen.clone().forward_last(&q)?;
        let _ = argmax(&logits);
        follow_up.push(t.elapsed().as_secs_f64() * 1e3);
        decode_steps(&g, session, prefix, next, &mut cached, &mut uncached)?;
        let (a, ms) = time(|| g.caption(frame))?;
        caption.push(ms);
        caption_tokens = a.tokens.len();
        let (_, ms) = time(|| {
            let image = g.see_patches(&patches)?;
            g.run_with_image(&image, &stream, &mut |_| {})
        })?;
        caption_model.push(ms);
    }
    Ok(BenchReport {
        frame: frame.dimensions(),
        precision: g.precision.name().to_string(),
        load: Stat::of(load),
        preprocess: Stat::of(pre),
        yuyv_to_rgb: Stat::of(yuyv_ms),
        mjpeg_decode: Stat::of(mjpeg_ms),
        first_token: Stat::of(first),
        first_token_from_patches: Stat::of(first_model),
        follow_up_first_token: Stat::of(follow_up),
        decode_token_cached: Stat::of(cached),
        decode_token_uncached: Stat::of(uncached),
        caption: Stat::of(caption),
        caption_from_patches: Stat::of(caption_model),
        caption_tokens,
        caption_views: views_ms(&g, frame, views, runs)?,
        peak_rss_mb: peak_rss_mb(),
    })
}

impl BenchReport {
    pub fn table(&self) -> String {
        let row = |name: &str, s: &Stat| {
            if s.runs == 0 {
                return format!("{name:<34}{:>10}{:>10}{:>6}\n", "-", "-", 0);
            }
            format!(
                "{name:<34}{:>10.3}{:>10.3}{:>6}\n",
                s.median_ms, s.p95_ms, s.runs
            )
        };
        let mut out = format!(
            "frame {}x{}, precision {}\n{:<34}{:>10}{:>10}{:>6}\n",
            self.frame.0, self.frame.1, self.precision, "", "median ms", "p95 ms", "runs"
        );
        out += &row("load package", &self.load);
        out += &row("preprocess (frame -> patches)", &self.preprocess);
        out += &row("camera YUYV -> RGB", &self.yuyv_to_rgb);
        out += &row("camera MJPEG decode", &self.mjpeg_decode);
        out += &row("time to first token", &self.first_token);
        out += &row("  from patches", &self.first_token_from_patches);
        out += &row(
            "  follow-up question (image cached)",
            &self.follow_up_first_token,
        );
        out += &format!(
            "{:<34}{:>10.1}x\n",
            "  follow-up speed-up (median)",
            self.first_token.median_ms / self.follow_up_first_token.median_ms
        );
        out += &row("decode / token, KV cache", &self.decode_token_cached);
        out += &row("decode / token, no cache", &self.decode_token_uncached);
        out += &row(
            &format!("caption ({} tokens)", self.caption_tokens),
            &self.caption,
        );
        out += &row("  from patches", &self.caption_from_patches);
        if let Some((views, s)) = &self.caption_views {
            out += &row(&format!("caption from {views} views"), s);
        }
        if let Some(mb) = self.peak_rss_mb {
            out += &format!("{:<34}{mb:>10.1} MB\n", "peak resident memory");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_takes_median_and_p95() {
        let s = Stat::of((1..=100).rev().map(|x| x as f64).collect());
        assert_eq!(s.median_ms, 51.0); // index round(99 * 0.5) = 50 of 1..=100
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.runs, 100);
    }

    #[test]
    fn no_samples_give_no_figure_instead_of_a_panic() {
        let s = Stat::of(Vec::new());
        assert_eq!(s.runs, 0);
        assert!(s.median_ms.is_nan() && s.p95_ms.is_nan());
        assert_eq!(
            serde_json::to_value(s).unwrap()["median_ms"],
            serde_json::Value::Null
        );
    }
}

/// [`light`]'s figures: one of each, for models of gigabytes.
#[derive(Debug, Clone, Serialize)]
pub struct LightReport {
    pub frame: (u32, u32),
    pub precision: String,
    /// Threads of the matrix products (`--threads`).
    pub threads: usize,
    /// Image tokens of the frame (after `max_image`).
    pub image_tokens: usize,
    /// Tokens prefilled: image and caption prompt.
    pub prefill_tokens: usize,
    pub load_ms: f64,
    /// Peak resident memory right after loading.
    pub load_rss_mb: Option<f64>,
    /// Preprocessing, vision, prefill and the first argmax, from the frame: the process's
    /// first inference, one-time costs included (its memory faulted in).
    pub first_token_ms: f64,
    /// Vision, prefill and the first argmax from the same patches, run again
    /// [`PREFILL_RUNS`] times after the decode steps: what each frame of a camera loop
    /// costs once the first has run.
    pub prefill: Stat,
    /// Cached decode steps, each timed.
    pub decode_token: Stat,
    pub decode_tokens_per_s: f64,
    pub peak_rss_mb: Option<f64>,
    /// Resident memory after the decode steps: what the loaded model holds.
    pub rss_mb: Option<f64>,
    /// Bytes of the graphs' weights at this precision (the `.onnx` files and their
    /// external data): what the process must hold at least.
    pub weight_bytes: u64,
    /// With `profile`: the decoder's time per kind of operator in the prefill, from a
    /// second, profiled run after the timed ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_ops: Option<Vec<OpTime>>,
    /// With `profile`: the same per decode step, over as many steps as were timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_ops: Option<Vec<OpTime>>,
}

/// Repeated prefills in [`light`]: a median of three, a second a run at 8 B.
pub const PREFILL_RUNS: usize = 3;

/// The inputs [`light`] fed the model, for running the same in another runtime.
#[derive(Debug, Clone, Serialize)]
pub struct LightInputs {
    pub patches_shape: [usize; 4],
    pub patches: Vec<f32>,
    pub text_ids: Vec<u32>,
}

/// One load, one time to first token on `frame` (caption prompt) and `steps` cached
/// decode steps: what a model of gigabytes can afford to measure. The patches and prompt
/// ids are written to `save_inputs` when given. With `profile`, the prefill and the
/// steps are run once more, timing every operator of the decoder (untimed runs, so the
/// profiler's own cost stays out of the figures above).
pub fn light(
    dir: &std::path::Path,
    precision: Option<crate::package::Precision>,
    max_image: Option<crate::frame::Size>,
    frame: &RgbImage,
    steps: usize,
    save_inputs: Option<&std::path::Path>,
    profile: bool,
) -> Result<LightReport> {
    let (mut g, load_ms) = time(|| Glimpse::load_with(dir, precision))?;
    let load_rss_mb = peak_rss_mb();
    g.set_max_image(max_image)?;
    let stream = TokenStream::new(&g.tokenizer, &Prompt::Caption)?;
    let t = Instant::now();
    let image = g.see(frame)?;
    let mut prefix = image.embeddings.clone();
    prefix.extend(g.embed(&stream.text_ids)?);
    let mut session = g.session()?;
    let mut next = argmax(&session.forward_last(&prefix)?);
    let first_token_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut decode = vec![];
    for _ in 0..steps {
        if session.len() + 1 > g.max_positions() {
            break;
        }
        let e = g.embed(&[next])?;
        let (logits, ms) = time(|| session.forward_last(&e))?;
        decode.push(ms);
        next = argmax(&logits);
    }
    let decode_token = Stat::of(decode);
    let patches = g.patches(frame);
    let text = g.embed(&stream.text_ids)?;
    let mut prefill = vec![];
    for _ in 0..PREFILL_RUNS {
        prefill.push(time(|| first_token_from(&g, &patches, &text))?.1);
    }
    let (prefill_ops, decode_ops) = if profile {
        let (prefill, decode) = profile_decoder(&g, &prefix, decode_token.runs)?;
        (Some(prefill), Some(decode))
    } else {
        (None, None)
    };
    if let Some(path) = save_inputs {
        save_light_inputs(path, patches, &stream.text_ids)?;
    }
    let m = &g.package.manifest;
    Ok(LightReport {
        frame: frame.dimensions(),
        precision: g.precision.name().to_string(),
        threads: crate::model::threads(),
        image_tokens: g.image_tokens(frame.width(), frame.height()),
        prefill_tokens: prefix.len() / m.model.d_model,
        load_ms,
        load_rss_mb,
        first_token_ms,
        prefill: Stat::of(prefill),
        decode_tokens_per_s: 1e3 / decode_token.median_ms,
        decode_token,
        peak_rss_mb: peak_rss_mb(),
        rss_mb: rss_mb(),
        weight_bytes: weight_bytes(&g),
        prefill_ops,
        decode_ops,
    })
}

/// Writes the patches and prompt ids a light run feeds the model to `path` as JSON.
fn save_light_inputs(path: &std::path::Path, patches: Patches, text_ids: &[u32]) -> Result<()> {
    let inputs = LightInputs {
        patches_shape: [1, patches.rows, patches.cols, patches.dim],
        patches: patches.data,
        text_ids: text_ids.to_vec(),
    };
    let text = serde_json::to_string(&inputs)
        .map_err(|e| crate::Error::Inference(format!("cannot encode the inputs: {e}")))?;
    std::fs::write(path, text).map_err(|e| crate::Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Bytes of the graphs `g` runs at its precision: the weights a decode step reads.
fn weight_bytes(g: &Glimpse) -> u64 {
    let m = &g.package.manifest;
    g.package
        .files_for(g.precision)
        .iter()
        .filter(|f| f.contains(".onnx"))
        .map(|f| m.files[f].bytes)
        .sum()
}

/// The decoder's operator times for the prefill of `prefix` and per decode step, over
/// `steps` steps.
fn profile_decoder(
    g: &Glimpse,
    prefix: &[f32],
    steps: usize,
) -> Result<(Vec<OpTime>, Vec<OpTime>)> {
    let mut session = g.session()?;
    session.profile_ops();
    let mut next = argmax(&session.forward_last(prefix)?);
    let prefill = session
        .take_profile()
        .map(|p| p.table())
        .unwrap_or_default();
    session.profile_ops();
    for _ in 0..steps {
        let e = g.embed(&[next])?;
        next = argmax(&session.forward_last(&e)?);
    }
    let decode = session
        .take_profile()
        .map(|p| p.table())
        .unwrap_or_default();
    Ok((prefill, decode))
}
