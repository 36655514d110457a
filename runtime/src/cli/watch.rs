//! `glimpse watch`: caption frames as they come, one line each, and a summary at the end.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use glimpse_runtime::Glimpse;
use glimpse_runtime::source::FrameSource;
use glimpse_runtime::watch::{DEFAULT_THRESHOLD, Event, Summary, Trigger, WatchOptions, watch};

/// `--trigger`: alert when frames match a text.
#[derive(clap::Args, Debug, Clone)]
pub struct TriggerArgs {
    /// Alert when the frame matches this text, e.g. "a large red circle" (needs a model
    /// trained with image–text matching; `glimpse match` shows the similarities).
    #[arg(long, value_name = "TEXT")]
    pub trigger: Option<String>,
    /// Similarity (cosine) at which the trigger fires.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD, requires = "trigger")]
    pub threshold: f32,
    /// Similarity below which it re-arms [default: threshold - 0.05].
    #[arg(long, requires = "trigger")]
    pub release: Option<f32>,
}

impl TriggerArgs {
    pub fn open(&self, g: &Glimpse) -> Result<Option<Trigger>, String> {
        let Some(text) = &self.trigger else {
            return Ok(None);
        };
        if !(-1.0..=1.0).contains(&self.threshold) {
            return Err(format!(
                "--threshold {} is not a cosine similarity (between -1 and 1)",
                self.threshold
            ));
        }
        if let Some(r) = self.release
            && !(-1.0..=self.threshold).contains(&r)
        {
            return Err(format!(
                "--release {r} must be a cosine similarity from -1 up to the threshold {}",
                self.threshold
            ));
        }
        Trigger::new(g, text, self.threshold, self.release)
            .map(Some)
            .map_err(|e| format!("--trigger: {e}"))
    }
}

pub fn run(
    g: &Glimpse,
    source: Box<dyn FrameSource>,
    opts: WatchOptions,
    json: bool,
    mut mqtt: Option<super::mqtt::Mqtt>,
    stop: &AtomicBool,
) -> Summary {
    glimpse_runtime::note!("glimpse: watching {}", source.describe());
    if let Some(t) = &opts.trigger {
        glimpse_runtime::note!(
            "glimpse: alerting when a frame matches \"{}\" (similarity {} or more; re-armed below {})",
            t.text,
            t.levels.threshold,
            t.levels.release
        );
    }
    let mut summary = watch(g, source, &opts, stop, &mut |event| {
        if let Some(m) = mqtt.as_mut() {
            m.on_event(event);
        }
        let mut out = std::io::stdout().lock();
        match event {
            Event::Caption(c) if json => writeln!(out, "{}", c.to_json())?,
            Event::Caption(c) => writeln!(out, "{}", c.line())?,
            Event::Alert(a) if json => writeln!(out, "{}", a.to_json())?,
            Event::Alert(a) => writeln!(out, "{}", a.line())?,
            Event::Notice(n) if json => writeln!(out, "{}", n.to_json())?,
            Event::Notice(n) => glimpse_runtime::note!("glimpse: {}", n.line()),
            Event::Error { seq, reason } if json => {
                let v = serde_json::json!({"event": "error", "seq": seq, "reason": reason});
                writeln!(out, "{v}")?
            }
            Event::Error { seq, reason } => {
                glimpse_runtime::note!("glimpse: frame #{seq}: {reason}")
            }
        }
        out.flush()
    });
    let mqtt_stats = mqtt.map(|m| m.finish(&summary)).unwrap_or(None);
    // the summary goes where it can: into the JSON stream if that still works, else stderr
    if json && summary.output_failed.is_none() {
        let mut out = std::io::stdout().lock();
        let mut v = summary.to_json();
        if let Some(m) = &mqtt_stats {
            v["mqtt"] = m.clone();
        }
        if let Err(e) = writeln!(out, "{v}").and_then(|()| out.flush()) {
            summary.output_failed = Some(e.to_string());
        }
    }
    if !json || summary.output_failed.is_some() {
        glimpse_runtime::note!("glimpse: {}", summary.describe());
        if let Some(m) = &mqtt_stats {
            glimpse_runtime::note!("glimpse: mqtt {m}");
        }
    }
    if let Some(e) = &summary.output_failed {
        glimpse_runtime::note!("glimpse: error: cannot write to stdout ({e}); stopped");
    }
    summary
}
