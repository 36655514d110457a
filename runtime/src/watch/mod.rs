//! The captioning loop: a capture thread keeps the newest frame, the calling thread
//! captions it, and every step is timed.
//!
//! ```text
//!  source ──(capture thread)──▶ Latest (one frame) ──▶ caption ──▶ Event::Caption
//!     └─ bad frame / disconnect ─▶ notices ────────────────────▶ Event::Notice
//! ```
//!
//! With a [`Trigger`], each frame's image tokens are prefilled once: the decoder state
//! after them gives the image embedding compared with the trigger text, and the caption
//! continues from the same cache. A match raises [`Event::Alert`].

mod clock;
mod latest;
mod stats;
mod trigger;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub use clock::utc_timestamp;
pub use latest::{CaptureCounts, Latest, Notice, Taken};
pub use stats::{median, quantile};
pub use trigger::{DEFAULT_GAP, DEFAULT_THRESHOLD, Edge, Hysteresis, Trigger};

use crate::source::{Frame, FrameSource, SourceError};
use crate::{Glimpse, Stop};

/// Waits between attempts to reopen a source that went away: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Least time from one caption's start to the next's (`--every`).
    pub every: Duration,
    /// Stop after this many captions.
    pub max_captions: Option<u64>,
    pub backoff: Backoff,
    /// Alert when frames match this text.
    pub trigger: Option<Trigger>,
    /// Views of each frame a caption is made from (`--views`,
    /// [`Glimpse::caption_views`]); 0 and 1 are the frame alone.
    pub views: usize,
}

/// One captioned frame and where its time went (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Captioned {
    pub seq: u64,
    pub label: String,
    pub captured_at: SystemTime,
    pub text: String,
    /// Whether the caption is whole or was cut at a limit.
    pub stop: Stop,
    /// Reading and converting the frame.
    pub capture_s: f64,
    /// From capture until inference took the frame.
    pub wait_s: f64,
    pub preprocess_s: f64,
    /// Vision graph and decoder prefill.
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Cosine similarity to the trigger text, when there is one.
    pub similarity: Option<f32>,
}

/// A trigger crossing on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub seq: u64,
    pub label: String,
    pub captured_at: SystemTime,
    pub trigger: String,
    pub similarity: f32,
    /// Rise: the text matches now (the alert); Fall: it stopped matching (re-armed).
    pub edge: Edge,
    /// The frame's caption, for the record.
    pub caption: String,
}

impl Captioned {
    /// From the start of capture to the last token.
    pub fn latency_s(&self) -> f64 {
        self.capture_s + self.wait_s + self.preprocess_s + self.prefill_s + self.decode_s
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Caption(Captioned),
    Alert(Alert),
    Notice(Notice),
    /// Inference failed on a frame; the loop goes on.
    Error {
        seq: u64,
        reason: String,
    },
}

/// What a run of the loop did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub capture: CaptureCounts,
    pub captioned: u64,
    pub errors: u64,
    /// Trigger alerts raised (rising edges).
    pub alerts: u64,
    /// Seconds per captioned frame, for the last [`LATENCIES_KEPT`] captions.
    pub latencies_s: heapless::HistoryBuffer<f64, LATENCIES_KEPT>,
    /// Sequence numbers of the first [`SEQS_KEPT`] captioned frames, in order.
    pub captioned_seqs: heapless::Vec<u64, SEQS_KEPT>,
    /// Resident memory after [`WARM_UP`] captions and at the end (Linux), KiB.
    pub rss_warm_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// Why the source failed for good, if it did (the run then did not do its job).
    pub source_failed: Option<String>,
    /// Why the output could not be written, if it could not (the loop stopped there).
    pub output_failed: Option<String>,
}

/// The summary's memory is fixed: a loop may run for months.
pub const LATENCIES_KEPT: usize = 1024;
pub const SEQS_KEPT: usize = 1024;

/// Captions after which memory should stop growing.
pub const WARM_UP: u64 = 100;

/// Resident set size of this process (Linux), KiB.
pub fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Summary {
    /// Whether the run did its job: no frame failed, the source did not fail for good and
    /// every line reached the output.
    pub fn succeeded(&self) -> bool {
        self.errors == 0 && self.source_failed.is_none() && self.output_failed.is_none()
    }

    pub fn median_latency_s(&self) -> Option<f64> {
        median(self.latencies_s.as_slice())
    }

    pub fn p95_latency_s(&self) -> Option<f64> {
        quantile(self.latencies_s.as_slice(), 0.95)
    }

    /// "frames seen 40, dropped 3, skipped 1, captioned 36, ..." for people.
    pub fn describe(&self) -> String {
        let c = &self.capture;
        let ms = |x: Option<f64>| {
            x.map(|s| format!("{:.1} ms", s * 1e3))
                .unwrap_or("-".into())
        };
        let memory = match (self.rss_warm_kib, self.rss_end_kib) {
            (Some(w), Some(e)) => format!(
                "; resident memory {:.1} MB after {WARM_UP} captions, {:.1} MB at the end",
                w as f64 / 1024.0,
                e as f64 / 1024.0
            ),
            (None, Some(e)) => format!("; resident memory {:.1} MB", e as f64 / 1024.0),
            _ => String::new(),
        };
        let failed = [
            self.source_failed
                .as_ref()
                .map(|r| format!("; the source failed: {r}")),
            self.output_failed
                .as_ref()
                .map(|r| format!("; output failed: {r}")),
        ]
        .into_iter()
        .flatten()
        .collect::<String>();
        format!(
            "frames seen {}, dropped {}, skipped {}, captioned {}, alerts {}, errors {}, disconnects {}; latency median {}, p95 {}{memory}{failed}",
            c.seen,
            c.dropped,
            c.skipped,
            self.captioned,
            self.alerts,
            self.errors,
            c.disconnects,
            ms(self.median_latency_s()),
            ms(self.p95_latency_s())
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.capture;
        serde_json::json!({
            "event": "summary",
            "seen": c.seen,
            "dropped": c.dropped,
            "skipped": c.skipped,
            "captioned": self.captioned,
            "alerts": self.alerts,
            "errors": self.errors,
            "disconnects": c.disconnects,
            "reconnects": c.reconnects,
            "latency_ms": {
                "median": self.median_latency_s().map(|s| s * 1e3),
                "p95": self.p95_latency_s().map(|s| s * 1e3),
            },
            "rss_kib": {
                "after_warm_up": self.rss_warm_kib,
                "end": self.rss_end_kib,
            },
            "source_failed": self.source_failed,
            "output_failed": self.output_failed,
        })
    }
}

/// Sleeps `d` in short slices; returns early (false) once `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
    false
}

/// The capture thread: pulls frames until the source ends or `stop` is set, reopening
/// it with backoff when it disconnects. However it ends, even by a panic in the source,
/// `latest` is ended, so the loop reading it never waits forever; a panic is reported
/// as [`Notice::Failed`].
pub fn capture(source: &mut dyn FrameSource, latest: &Latest, backoff: Backoff, stop: &AtomicBool) {
    let run = std::panic::AssertUnwindSafe(|| capture_frames(source, latest, backoff, stop));
    if let Err(panic) = std::panic::catch_unwind(run) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        latest.notice(Notice::Failed {
            reason: format!("the frame source crashed ({what})"),
        });
    }
    latest.end();
}

fn capture_frames(
    source: &mut dyn FrameSource,
    latest: &Latest,
    backoff: Backoff,
    stop: &AtomicBool,
) {
    let live = source.is_live();
    let stopped = || stop.load(Ordering::Relaxed);
    while !stopped() {
        match source.next_frame() {
            Ok(frame) if live => latest.put_newest(frame),
            Ok(frame) => {
                if !latest.put_waiting(frame, &stopped) {
                    break;
                }
            }
            Err(SourceError::BadFrame(reason)) => latest.notice(Notice::Skipped { reason }),
            Err(SourceError::Disconnected(reason)) => {
                let mut wait = backoff.initial;
                latest.notice(Notice::Disconnected {
                    reason,
                    retry_in: wait,
                });
                loop {
                    if !sleep_unless_stopped(wait, stop) {
                        return;
                    }
                    match source.reconnect() {
                        Ok(()) => {
                            latest.notice(Notice::Reconnected);
                            break;
                        }
                        Err(_) => wait = (wait * 2).min(backoff.max),
                    }
                }
            }
            Err(SourceError::End) => break,
            Err(SourceError::Unavailable(reason)) => {
                latest.notice(Notice::Failed { reason });
                break;
            }
        }
    }
}

/// Captions what `source` sees until it ends, `stop` is set, or `max_captions` is
/// reached; `on_event` hears every caption and notice as it happens. When `on_event`
/// fails (the output is gone: a closed pipe, a full disk) the loop stops and the summary
/// says why.
pub fn watch(
    glimpse: &Glimpse,
    mut source: impl FrameSource,
    opts: &WatchOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event) -> std::io::Result<()>,
) -> Summary {
    let latest = Latest::default();
    let done = AtomicBool::new(false);
    let mut summary = Summary::default();
    let mut trigger = opts.trigger.clone();
    std::thread::scope(|s| {
        let capture_stop = &done;
        let latest = &latest;
        s.spawn(move || capture(&mut source, latest, opts.backoff, capture_stop));
        let mut next_due = Instant::now();
        let mut emit = |summary: &mut Summary, event: &Event| match on_event(event) {
            Ok(()) => true,
            Err(e) => {
                summary.output_failed = Some(e.to_string());
                false
            }
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if opts.max_captions.is_some_and(|n| summary.captioned >= n) {
                break;
            }
            let now = Instant::now();
            if next_due > now && !sleep_unless_stopped(next_due - now, stop) {
                break;
            }
            match latest.take(Duration::from_millis(50)) {
                Taken::Frame(frame) => {
                    next_due = Instant::now() + opts.every;
                    if !caption_and_emit(
                        glimpse,
                        &frame,
                        opts.views,
                        &mut trigger,
                        &mut summary,
                        &mut emit,
                    ) {
                        break;
                    }
                }
                Taken::Notice(n) => {
                    if let Notice::Failed { reason } = &n {
                        summary.source_failed = Some(reason.clone());
                    }
                    if !emit(&mut summary, &Event::Notice(n)) {
                        break;
                    }
                }
                Taken::End => break,
                Taken::Nothing => {}
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    summary.capture = latest.counts();
    summary.rss_end_kib = resident_kib();
    summary
}

/// Captions one frame and tells `emit` the caption, the alert at a trigger's edge, or
/// the error, counting them in `summary`; false once the output is gone.
fn caption_and_emit(
    glimpse: &Glimpse,
    frame: &Frame,
    views: usize,
    trigger: &mut Option<Trigger>,
    summary: &mut Summary,
    emit: &mut dyn FnMut(&mut Summary, &Event) -> bool,
) -> bool {
    match caption_frame(glimpse, frame, trigger.as_mut(), views) {
        Ok((c, edge)) => {
            summary.captioned += 1;
            let _ = summary.captioned_seqs.push(c.seq);
            summary.latencies_s.write(c.latency_s());
            if summary.captioned == WARM_UP {
                summary.rss_warm_kib = resident_kib();
            }
            let alert = match (edge, &trigger, c.similarity) {
                (Some(edge), Some(t), Some(similarity)) => Some(Alert {
                    seq: c.seq,
                    label: c.label.clone(),
                    captured_at: c.captured_at,
                    trigger: t.text.clone(),
                    similarity,
                    edge,
                    caption: c.text.clone(),
                }),
                _ => None,
            };
            if !emit(summary, &Event::Caption(c)) {
                return false;
            }
            if let Some(a) = alert {
                if a.edge == Edge::Rise {
                    summary.alerts += 1;
                }
                if !emit(summary, &Event::Alert(a)) {
                    return false;
                }
            }
        }
        Err(reason) => {
            summary.errors += 1;
            let error = Event::Error {
                seq: frame.seq,
                reason,
            };
            if !emit(summary, &error) {
                return false;
            }
        }
    }
    true
}

fn caption_frame(
    glimpse: &Glimpse,
    frame: &Frame,
    trigger: Option<&mut Trigger>,
    views: usize,
) -> Result<(Captioned, Option<Edge>), String> {
    let wait_s = SystemTime::now()
        .duration_since(frame.captured_at)
        .unwrap_or_default()
        .as_secs_f64();
    let (a, similarity, edge) = match trigger {
        None => (
            glimpse
                .caption_views(&frame.image, views.max(1))
                .map_err(|e| e.to_string())?,
            None,
            None,
        ),
        Some(t) => {
            let e = |e: crate::Error| e.to_string();
            let image = glimpse.see(&frame.image).map_err(e)?;
            let started = Instant::now();
            let (session, embedding) = glimpse.image_session_and_embedding(&image).map_err(e)?;
            let image_prefill_s = started.elapsed().as_secs_f64();
            let (similarity, edge) = t.observe(&embedding);
            let stream =
                crate::text::TokenStream::new(&glimpse.tokenizer, &crate::text::Prompt::Caption)
                    .map_err(e)?;
            let mut a = if views > 1 {
                glimpse
                    .caption_views_seen(&frame.image, views, &image, session)
                    .map_err(e)?
            } else {
                glimpse
                    .run_after_image(session, &image, &stream, &mut |_| {})
                    .map_err(e)?
            };
            a.timings.prefill_s += image_prefill_s;
            (a, Some(similarity), edge)
        }
    };
    let t = a.timings;
    Ok((
        Captioned {
            seq: frame.seq,
            label: frame.label.clone(),
            captured_at: frame.captured_at,
            text: a.text,
            stop: a.stop,
            capture_s: frame.capture_s,
            wait_s,
            preprocess_s: t.preprocess_s,
            prefill_s: t.vision_s + t.prefill_s,
            decode_s: t.decode_s,
            similarity,
        },
        edge,
    ))
}

impl Alert {
    /// `2026-11-27T06:50:01.123Z #12 scene-3.png: ALERT "a red circle" (similarity 0.71): ...`
    pub fn line(&self) -> String {
        let what = match self.edge {
            Edge::Rise => "ALERT",
            Edge::Fall => "clear",
        };
        format!(
            "{} #{} {}: {what} \"{}\" (similarity {:.3}): {}",
            utc_timestamp(self.captured_at),
            self.seq,
            self.label,
            self.trigger,
            self.similarity,
            self.caption
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": match self.edge { Edge::Rise => "alert", Edge::Fall => "clear" },
            "time": utc_timestamp(self.captured_at),
            "seq": self.seq,
            "frame": self.label,
            "trigger": self.trigger,
            "similarity": self.similarity,
            "caption": self.caption,
        })
    }
}

impl Captioned {
    /// `2026-11-27T06:50:01.123Z #12 scene-3.png: a large ... [capture 1.2 | wait 0.1 | ...]`.
    pub fn line(&self) -> String {
        let similarity = self
            .similarity
            .map(|s| format!("  (trigger similarity {s:.3})"))
            .unwrap_or_default();
        let cut = self
            .stop
            .cut_note()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default();
        format!(
            "{} #{} {}: {}{cut}{similarity}  [capture {:.1} | wait {:.1} | preprocess {:.1} | prefill {:.1} | decode {:.1} ms]",
            utc_timestamp(self.captured_at),
            self.seq,
            self.label,
            self.text,
            self.capture_s * 1e3,
            self.wait_s * 1e3,
            self.preprocess_s * 1e3,
            self.prefill_s * 1e3,
            self.decode_s * 1e3
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "caption",
            "time": utc_timestamp(self.captured_at),
            "seq": self.seq,
            "frame": self.label,
            "caption": self.text,
            "stop": self.stop.name(),
            "similarity": self.similarity,
            "ms": {
                "capture": self.capture_s * 1e3,
                "wait": self.wait_s * 1e3,
                "preprocess": self.preprocess_s * 1e3,
                "prefill": self.prefill_s * 1e3,
                "decode": self.decode_s * 1e3,
                "total": self.latency_s() * 1e3,
            }
        })
    }
}

impl Notice {
    pub fn line(&self) -> String {
        match self {
            Notice::Skipped { reason } => format!("skipped a frame: {reason}"),
            Notice::Disconnected { reason, retry_in } => {
                format!("source lost ({reason}); retrying in {retry_in:?}, with backoff")
            }
            Notice::Reconnected => "source is back; resuming".into(),
            Notice::Failed { reason } => format!("source failed: {reason}"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let time = utc_timestamp(SystemTime::now());
        match self {
            Notice::Skipped { reason } => {
                serde_json::json!({"event": "skipped", "time": time, "reason": reason})
            }
            Notice::Disconnected { reason, retry_in } => serde_json::json!({
                "event": "disconnected", "time": time, "reason": reason,
                "retry_in_ms": retry_in.as_secs_f64() * 1e3
            }),
            Notice::Reconnected => serde_json::json!({"event": "reconnected", "time": time}),
            Notice::Failed { reason } => {
                serde_json::json!({"event": "failed", "time": time, "reason": reason})
            }
        }
    }
}
