//! `glimpse watch`: caption frames as they come, one line each, and a summary at the end.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use glimpse_runtime::Glimpse;
use glimpse_runtime::source::FrameSource;
use glimpse_runtime::watch::{Event, Summary, WatchOptions, watch};

pub fn run(
    g: &Glimpse,
    source: Box<dyn FrameSource>,
    every: Duration,
    count: Option<u64>,
    json: bool,
    stop: &AtomicBool,
) -> Summary {
    eprintln!("glimpse: watching {}", source.describe());
    let opts = WatchOptions {
        every,
        max_captions: count,
        ..WatchOptions::default()
    };
    let summary = watch(g, source, &opts, stop, &mut |event| {
        let mut out = std::io::stdout().lock();
        match event {
            Event::Caption(c) if json => {
                let _ = writeln!(out, "{}", c.to_json());
            }
            Event::Caption(c) => {
                let _ = writeln!(out, "{}", c.line());
            }
            Event::Notice(n) if json => {
                let _ = writeln!(out, "{}", n.to_json());
            }
            Event::Notice(n) => eprintln!("glimpse: {}", n.line()),
            Event::Error { seq, reason } if json => {
                let v = serde_json::json!({"event": "error", "seq": seq, "reason": reason});
                let _ = writeln!(out, "{v}");
            }
            Event::Error { seq, reason } => eprintln!("glimpse: frame #{seq}: {reason}"),
        }
        let _ = out.flush();
    });
    if json {
        println!("{}", summary.to_json());
    } else {
        eprintln!("glimpse: {}", summary.describe());
    }
    summary
}
