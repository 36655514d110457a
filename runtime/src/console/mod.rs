//! The serial console: a person (or a program, with `--json`) asks about what the camera
//! sees, over a UART or stdin/stdout.
//!
//! Bytes come in through a [`Wire`], become lines in a bounded [`LineEditor`], lines
//! become [`Command`]s, and the [`Console`] answers them about the current frame,
//! streaming each answer as it is decoded. A capture thread keeps the frame current.

mod command;
pub mod json;
mod line;
mod session;
mod wire;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use command::{Command, HELP, parse};
pub use line::{Input, LineEditor};
pub use session::{Answered, Console, ConsoleStats};
pub use wire::{IO_TIMEOUT, SerialWire, StdioWire, Wire};

use crate::Glimpse;
use crate::source::FrameSource;
use crate::text::Prompt;
use crate::watch::{Backoff, Latest, Taken, capture};

/// Longest line accepted from a person, in bytes.
pub const LINE_MAX: usize = 256;
/// Longest request line accepted in JSON mode, in bytes: the envelope around a question
/// takes room of its own.
pub const JSON_LINE_MAX: usize = 4096;

const PROMPT: &str = "glimpse> ";

#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// One JSON request per line in, one JSON response per line out; no echo, no prompt.
    pub json: bool,
    /// Views each `caption` is made from ([`Glimpse::caption_views`]); 0 or 1: the
    /// frame alone, streamed as it is decoded.
    pub views: usize,
}

/// Writes to the wire; output nobody drains is dropped, never waited on forever. On a
/// pipe, a write that fails for another reason (the reader is gone, the disk is full)
/// ends the session.
struct Out<'w> {
    wire: &'w mut dyn Wire,
    dropped: u64,
    /// Why the output is gone for good, once it is.
    lost: Option<io::Error>,
}

impl Out<'_> {
    fn send(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.lost.is_some() {
            return;
        }
        match self.wire.write(bytes) {
            Ok(()) => {}
            Err(e) if e.kind() != io::ErrorKind::TimedOut && self.wire.ends_at_eof() => {
                self.lost = Some(e)
            }
            Err(_) => self.dropped += 1,
        }
    }

    /// Text with LF turned into CRLF, as terminals want.
    fn text(&mut self, s: &str) {
        self.send(s.replace('\n', "\r\n").as_bytes());
    }
}

/// Serves the console until `stop` is set or, for a pipe, input ends.
pub fn serve(
    glimpse: &Glimpse,
    mut source: Box<dyn FrameSource>,
    wire: &mut dyn Wire,
    opts: ServeOptions,
    stop: &AtomicBool,
) -> Result<ConsoleStats, String> {
    let live = source.is_live();
    let described = source.describe();
    let latest = Latest::default();
    let capture_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (latest, capture_done) = (&latest, &capture_done);
        s.spawn(move || capture(&mut source, latest, Backoff::default(), capture_done));
        // JSON requests carry an envelope around the question: a longer line buffer
        let r = if opts.json {
            serve_lines::<JSON_LINE_MAX>(glimpse, latest, live, &described, wire, opts, stop)
        } else {
            serve_lines::<LINE_MAX>(glimpse, latest, live, &described, wire, opts, stop)
        };
        capture_done.store(true, Ordering::Relaxed);
        r
    })
}

/// Waits for the next frame from the capture thread, reporting notices on stderr.
fn next_frame(latest: &Latest, wait: Duration) -> Option<crate::source::Frame> {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        match latest.take(Duration::from_millis(50)) {
            Taken::Frame(f) => return Some(f),
            Taken::Notice(n) => crate::note!("glimpse: {}", n.line()),
            Taken::End => return None,
            Taken::Nothing => {}
        }
    }
    None
}

/// The console with lines of at most `N` bytes.
fn serve_lines<const N: usize>(
    glimpse: &Glimpse,
    latest: &Latest,
    live: bool,
    described: &str,
    wire: &mut dyn Wire,
    opts: ServeOptions,
    stop: &AtomicBool,
) -> Result<ConsoleStats, String> {
    let mut console = Console::new(glimpse).with_views(opts.views)?;
    let first = next_frame(latest, Duration::from_secs(10))
        .ok_or_else(|| format!("{described} gave no frame"))?;
    console.offer_frame(first);
    crate::note!(
        "glimpse: serving {} on {}{}",
        described,
        wire.describe(),
        if opts.json { " (json)" } else { "" }
    );
    let mut editor = LineEditor::<N>::default();
    editor.echo = !opts.json && wire.wants_echo();
    let mut out = Out {
        wire,
        dropped: 0,
        lost: None,
    };
    greet(&console, &mut out, opts.json);
    let mut buf = [0u8; 256];
    let mut echo = Vec::with_capacity(64);
    let mut lost = Backoff::default().initial;
    while !stop.load(Ordering::Relaxed) {
        if let Some(e) = &out.lost {
            return Err(format!("cannot write to {}: {e}", out.wire.describe()));
        }
        if live
            && !console.is_frozen()
            && let Some(f) = latest.take_frame()
        {
            console.offer_frame(f);
        }
        let n = match read(&mut out, &mut buf, &mut lost) {
            Read::Bytes(n) => n,
            Read::Again => continue,
            Read::End => break,
        };
        for &b in &buf[..n] {
            let input = editor.feed(b, &mut echo);
            out.send(&echo);
            echo.clear();
            let Some(input) = input else { continue };
            if opts.json {
                let line = json_reply(&mut console, latest, live, input);
                if let Some(line) = line {
                    out.send(format!("{line}\n").as_bytes());
                }
            } else {
                handle_text(&mut console, latest, live, input, &mut out);
                out.send(PROMPT.as_bytes());
            }
        }
    }
    if out.lost.is_none()
        && let Err(e) = out.wire.finish()
    {
        out.lost = Some(e);
    }
    if let Some(e) = &out.lost {
        return Err(format!("cannot write to {}: {e}", out.wire.describe()));
    }
    Ok(console.stats)
}

/// The first words on the wire: a `ready` event, or a line saying which frame is seen.
fn greet(console: &Console<'_>, out: &mut Out<'_>, json: bool) {
    if json {
        let hello = serde_json::json!({"event": "ready", "frame": console.frame_label()});
        out.send(format!("{hello}\n").as_bytes());
    } else {
        out.text(&format!(
            "glimpse: looking at {}. Type a question, or help.\n{PROMPT}",
            console.frame_label().unwrap_or("?")
        ));
    }
}

/// What one read of the wire gave.
enum Read {
    Bytes(usize),
    /// Nothing yet, or the wire failed and was reopened (or will be tried again).
    Again,
    /// Standard input ended.
    End,
}

/// Reads what the wire has; a failed wire is reopened after `lost`, which doubles while
/// it stays down and starts over once bytes come.
fn read(out: &mut Out<'_>, buf: &mut [u8], lost: &mut Duration) -> Read {
    match out.wire.read(buf) {
        Ok(0) if out.wire.ends_at_eof() => Read::End,
        Ok(0) => {
            std::thread::sleep(IO_TIMEOUT);
            Read::Again
        }
        Ok(n) => {
            *lost = Backoff::default().initial;
            Read::Bytes(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Read::Again
        }
        Err(e) => {
            crate::note!(
                "glimpse: {} failed ({e}); reopening in {:?}",
                out.wire.describe(),
                *lost
            );
            std::thread::sleep(*lost);
            *lost = match out.wire.reopen() {
                Ok(()) => Backoff::default().initial,
                Err(_) => (*lost * 2).min(Backoff::default().max),
            };
            Read::Again
        }
    }
}

/// Moves to the next frame (`next`), or to the newest one of a live source.
fn advance(console: &mut Console<'_>, latest: &Latest, live: bool) -> Result<String, String> {
    if console.is_frozen() {
        return Err("the frame is frozen; type live first".into());
    }
    let wait = if live {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    match next_frame(latest, wait) {
        Some(f) => {
            console.offer_frame(f);
            Ok(format!(
                "now looking at {}",
                console.frame_label().unwrap_or("?")
            ))
        }
        None => Err(format!(
            "no newer frame; still looking at {}",
            console.frame_label().unwrap_or("?")
        )),
    }
}

fn rejection<const N: usize>(input: &Input<N>) -> Option<String> {
    match input {
        Input::Overlong(_) => Some(format!(
            "line too long (over {N} bytes); it was thrown away"
        )),
        Input::Garbled => Some("line was not UTF-8 text; it was thrown away".into()),
        _ => None,
    }
}

fn handle_text<const N: usize>(
    console: &mut Console<'_>,
    latest: &Latest,
    live: bool,
    input: Input<N>,
    out: &mut Out<'_>,
) {
    if let Some(msg) = rejection(&input) {
        console.stats.rejected_lines += 1;
        out.text(&format!("error: {msg}\n"));
        return;
    }
    let Input::Line(line) = input else { return };
    let command = match parse(&line) {
        Ok(c) => c,
        Err(e) => {
            console.stats.rejected_lines += 1;
            out.text(&format!("error: {e}\n"));
            return;
        }
    };
    let prompt = match command {
        Command::Nothing => return,
        Command::Help => return out.text(&format!("{HELP}\n")),
        Command::Stats => return out.text(&format!("{}\n", console.describe_stats())),
        Command::Snap => {
            console.snap();
            let label = console.frame_label().unwrap_or("?").to_string();
            return out.text(&format!("frozen on {label}\n"));
        }
        Command::Live => {
            console.live();
            return out.text("following the source\n");
        }
        Command::Next => {
            return match advance(console, latest, live) {
                Ok(m) => out.text(&format!("{m}\n")),
                Err(e) => out.text(&format!("error: {e}\n")),
            };
        }
        Command::Caption => Prompt::Caption,
        Command::Ask(q) => Prompt::Question(q),
    };
    let mut first = true;
    let r = console.answer(&prompt, &mut |piece| {
        let piece = if first { piece.trim_start() } else { piece };
        first = false;
        out.send(piece.as_bytes());
    });
    match r {
        Ok(a) => match a.stop.cut_note() {
            Some(note) => out.text(&format!(" [{note}]\n")),
            None => out.send(b"\r\n"),
        },
        Err(e) => out.text(&format!("error: {e}\n")),
    }
}

/// The reply line to one JSON-mode input, if it needs one.
fn json_reply<const N: usize>(
    console: &mut Console<'_>,
    latest: &Latest,
    live: bool,
    input: Input<N>,
) -> Option<String> {
    if let Some(msg) = rejection(&input) {
        console.stats.rejected_lines += 1;
        let id = match &input {
            Input::Overlong(head) => json::leading_id(head),
            _ => None,
        };
        return Some(json::reply_line(id.as_deref(), &json::error(msg)));
    }
    let Input::Line(line) = input else {
        return None;
    };
    if line.trim().is_empty() {
        return None;
    }
    let req = match json::parse_request(&line) {
        Ok(r) => r,
        Err(rejected) => {
            console.stats.rejected_lines += 1;
            return Some(json::reply_line(
                rejected.id.as_deref(),
                &json::error(rejected.reason),
            ));
        }
    };
    let reply = match run_request(console, latest, live, &req) {
        Ok(v) => v,
        Err(e) => json::error(e),
    };
    Some(json::reply_line(req.id.as_deref(), &reply))
}

/// Carries out one JSON request.
fn run_request(
    console: &mut Console<'_>,
    latest: &Latest,
    live: bool,
    req: &json::Request,
) -> Result<serde_json::Value, String> {
    let cmd = req.cmd.as_str();
    Ok(match cmd {
        "caption" | "ask" => {
            let prompt = if cmd == "caption" {
                Prompt::Caption
            } else {
                match req.question.as_deref().map(str::trim) {
                    Some(q) if !q.is_empty() => Prompt::Question(q.to_string()),
                    _ => return Err("ask needs a \"question\" string".into()),
                }
            };
            let a = console.answer(&prompt, &mut |_| {})?;
            let mut v = serde_json::json!({
                "ok": true, "cmd": cmd, "answer": a.text, "stop": a.stop.name(), "frame": a.frame,
                "ttft_ms": a.ttft_s * 1e3, "follow_up": a.follow_up,
            });
            if cmd == "caption" && console.views() > 1 {
                v["views"] = console.views().into();
            }
            v
        }
        "snap" => {
            console.snap();
            serde_json::json!({"ok": true, "cmd": cmd, "frame": console.frame_label()})
        }
        "live" => {
            console.live();
            serde_json::json!({"ok": true, "cmd": cmd})
        }
        "next" => {
            advance(console, latest, live)?;
            serde_json::json!({"ok": true, "cmd": cmd, "frame": console.frame_label()})
        }
        "stats" => serde_json::json!({"ok": true, "cmd": cmd, "stats": console.stats_json()}),
        "help" => serde_json::json!({"ok": true, "cmd": cmd, "help": HELP}),
        other => {
            console.stats.rejected_lines += 1;
            return Err(format!("unknown cmd {other:?}; use {}", json::COMMANDS));
        }
    })
}
