//! `glimpse serve` through a pseudo-terminal pair: the server opens the pty like a serial
//! port at 115200 8N1, the test types on the other end like a person with picocom.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glimpse_runtime::Glimpse;
use glimpse_runtime::scene::{Split, sample};

const SEED: u64 = 7;
const WAIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test's end of the line: a reader thread collects everything the server sends.
struct Terminal {
    writer: File,
    seen: Arc<Mutex<Vec<u8>>>,
    paused: Arc<AtomicBool>,
    server: Child,
    // the pty's other end stays open for as long as the terminal lives
    _slave: std::os::fd::OwnedFd,
}

impl Terminal {
    fn start(extra: &[&str]) -> Terminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
        let server = Command::new(env!("CARGO_BIN_EXE_glimpse"))
            .args(["serve", "--serial"])
            .arg(&path)
            .args([
                "--baud",
                "115200",
                "--synthetic",
                "--seed",
                &SEED.to_string(),
            ])
            .args(extra)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("glimpse serve starts");
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(false));
        {
            let (seen, paused) = (seen.clone(), paused.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    if paused.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
        let t = Terminal {
            writer: master,
            seen,
            paused,
            server,
            _slave: pty.slave,
        };
        // the server has set the port up once its first prompt arrives
        if extra.contains(&"--json") {
            let hello = t.wait_for(0, "\n");
            assert!(hello.starts_with("{\"event\":\"ready\""), "{hello}");
        } else {
            t.wait_for(0, "glimpse> ");
        }
        t
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn text_from(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()[from..]).into_owned()
    }

    /// Waits until the output after `from` contains `needle`; returns that output.
    fn wait_for(&self, from: usize, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text_from(from);
            if text.contains(needle) {
                return text;
            }
            assert!(start.elapsed() < WAIT, "no {needle:?} in {text:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Types `line` with `ending` and returns the server's reply lines (before the prompt).
    fn command(&mut self, line: &str, ending: &str) -> String {
        let from = self.len();
        self.send(format!("{line}{ending}").as_bytes());
        let echo = format!("{line}\r\n");
        let text = self.wait_for(from, &echo);
        let after = text.find(&echo).unwrap() + echo.len();
        let text = self.wait_for(from + after, "glimpse> ");
        text[..text.find("glimpse> ").unwrap()]
            .trim_end()
            .to_string()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn bundled() -> Glimpse {
    Glimpse::load(root().join("models/glimpse-default")).unwrap()
}

#[test]
fn a_scripted_session_answers_like_the_library() {
    let g = bundled();
    let mut t = Terminal::start(&[]);
    let endings = ["\r", "\n", "\r\n"];
    let (mut right, mut asked) = (0, 0);
    for scene in 0..4u64 {
        if scene > 0 {
            assert_eq!(
                t.command("next", "\r"),
                format!("now looking at synthetic test scene {scene} (seed {SEED})")
            );
        }
        let s = sample(SEED, Split::Test, scene);
        let caption = t.command("caption", "\r");
        assert_eq!(caption, g.caption(&s.image).unwrap().text);
        for (i, qa) in s.qa.iter().enumerate() {
            // bare questions and `ask`, with every line ending
            let line = if i % 2 == 0 {
                qa.question.clone()
            } else {
                format!("ask {}", qa.question)
            };
            let got = t.command(&line, endings[i % 3]);
            assert_eq!(
                got,
                g.ask(&s.image, &qa.question).unwrap().text,
                "{}",
                qa.question
            );
            asked += 1;
            right += usize::from(got == qa.answer);
        }
    }
    // the bundled model answers 22 of these 23 right; a floor a few points under
    eprintln!("{right} of {asked} answers right");
    assert!(right * 100 >= asked * 85, "{right} of {asked} right");
    let stats = t.command("stats", "\r");
    assert!(stats.contains("synthetic test scene 3"), "{stats}");
    assert!(stats.contains("follow-ups"), "{stats}");
    let help = t.command("help", "\r");
    assert!(help.contains("snap"), "{help}");
}

#[test]
fn a_caption_cut_at_the_token_limit_says_so() {
    let mut g = bundled();
    let s = sample(SEED, Split::Test, 0);
    let whole = g.caption(&s.image).unwrap();
    assert!(whole.tokens.len() > 2);
    g.max_new_tokens = 2;
    let cut = g.caption(&s.image).unwrap();
    let mut t = Terminal::start(&["--max-tokens", "2"]);
    assert_eq!(
        t.command("caption", "\r"),
        format!(
            "{} [cut at the token limit (--max-tokens raises it)]",
            cut.text
        )
    );
    let mut t = Terminal::start(&["--max-tokens", &whole.tokens.len().to_string()]);
    assert_eq!(t.command("caption", "\r"), whole.text);
}

#[test]
fn noise_floods_and_a_vanished_client_leave_the_console_serving() {
    let g = bundled();
    let s = sample(SEED, Split::Test, 0);
    let question = &s.qa[2].question;
    let expected = g.ask(&s.image, question).unwrap().text;
    let mut t = Terminal::start(&[]);
    assert_eq!(t.command(question, "\r"), expected);

    // an overlong line
    let long = "a".repeat(300);
    let from = t.len();
    t.send(format!("{long}\r").as_bytes());
    t.wait_for(from, "error: line too long");
    assert_eq!(t.command(question, "\r"), expected);

    // garbage bytes, including invalid UTF-8, NUL (a break), escapes and Ctrl-C
    let mut rng = glimpse_runtime::scene::Rng::new(11);
    let garbage: Vec<u8> = (0..4096).map(|_| (rng.next_u64() & 0xff) as u8).collect();
    let from = t.len();
    t.send(&garbage);
    t.send(b"\x15\r");
    t.wait_for(from, "glimpse> ");
    assert_eq!(t.command(question, "\r\n"), expected);

    // a flood of 1 MB without a line end: one error, bounded memory
    let before = t.rss_kib();
    let from = t.len();
    let mut writer = t.writer.try_clone().unwrap();
    let flood = std::thread::spawn(move || writer.write_all(&vec![b'z'; 1 << 20]).unwrap());
    flood.join().unwrap();
    t.send(b"\r");
    let text = t.wait_for(from, "error: line too long");
    assert_eq!(text.matches("error: line too long").count(), 1);
    assert!(
        text.len() < 4096,
        "the flood was echoed back: {} bytes",
        text.len()
    );
    let after = t.rss_kib();
    assert!(
        after < before + 4096,
        "memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(t.command(question, "\r"), expected);

    // the client vanishes mid-line and stops reading while answers pile up
    t.paused.store(true, Ordering::Relaxed);
    t.send(b"what col");
    for _ in 0..150 {
        t.send(b"\rcaption");
    }
    std::thread::sleep(Duration::from_millis(500));
    // ...and comes back: clears the line and asks again
    t.paused.store(false, Ordering::Relaxed);
    let from = t.len();
    t.send(b"\x15\r");
    t.wait_for(from, "glimpse> ");
    assert_eq!(t.command(question, "\r"), expected);
}

#[test]
fn json_mode_answers_one_object_per_line_and_reuses_the_frame() {
    let g = bundled();
    let s = sample(SEED, Split::Test, 0);
    let mut t = Terminal::start(&["--json"]);
    let mut replies = Vec::new();
    let mut request = |t: &mut Terminal, line: &str| -> serde_json::Value {
        let from = t.len();
        t.send(format!("{line}\n").as_bytes());
        let text = t.wait_for(from, "\n");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        replies.push(v.clone());
        v
    };
    for (i, qa) in s.qa.iter().enumerate() {
        let req = serde_json::json!({"cmd": "ask", "question": qa.question, "id": i});
        let v = request(&mut t, &req.to_string());
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["id"], i);
        assert_eq!(v["answer"], g.ask(&s.image, &qa.question).unwrap().text);
        // the first question computes the image prefix, the rest reuse it
        assert_eq!(v["follow_up"], i > 0);
    }
    let v = request(&mut t, "{\"cmd\": \"caption\"}");
    assert_eq!(v["answer"], g.caption(&s.image).unwrap().text);
    assert_eq!(v["stop"], "end");
    let v = request(&mut t, "not json at all");
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("not JSON"));
    let v = request(&mut t, "{\"cmd\": \"fly\"}");
    assert!(v["error"].as_str().unwrap().contains("unknown cmd"));
    let v = request(&mut t, "{\"cmd\": \"ask\"}");
    assert!(v["error"].as_str().unwrap().contains("question"));
    let v = request(&mut t, "{\"cmd\": \"stats\"}");
    assert_eq!(v["stats"]["answered"], 7);
    assert_eq!(v["stats"]["rejected_lines"], 2);
    assert!(
        v["stats"]["follow_up_speedup"].as_f64().unwrap() > 1.0,
        "{v}"
    );
    let v = request(&mut t, "{}");
    assert!(v["error"].as_str().unwrap().contains("no \"cmd\""), "{v}");
    // a 200-character question gets past the line reader (the envelope does not count
    // against it) to the model, whose 308-token context is what refuses it
    let long = format!("is there a red circle{}?", " and a blue square".repeat(10));
    assert!(long.len() > 200);
    let v = request(
        &mut t,
        &serde_json::json!({"cmd": "ask", "question": long, "id": "long"}).to_string(),
    );
    assert_eq!(v["id"], "long", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("prompt too long"), "{v}");
    // ids come back byte for byte, however large, also for a line too long to read
    let raw = |t: &mut Terminal, line: &str| {
        let from = t.len();
        t.send(format!("{line}\n").as_bytes());
        t.wait_for(from, "\n").trim().to_string()
    };
    let big = "18446744073709551617";
    let reply = raw(&mut t, &format!("{{\"id\": {big}, \"cmd\": \"help\"}}"));
    assert!(reply.starts_with(&format!("{{\"id\":{big},")), "{reply}");
    assert!(reply.contains("\"ok\":true"), "{reply}");
    let flood = format!(
        "{{\"id\": 9007199254740993, \"cmd\": \"ask\", \"question\": \"{}\"}}",
        "x".repeat(5000)
    );
    let reply = raw(&mut t, &flood);
    assert!(reply.starts_with("{\"id\":9007199254740993,"), "{reply}");
    assert!(reply.contains("\"ok\":false"), "{reply}");
    assert!(reply.contains("line too long"), "{reply}");
}

#[test]
fn serve_with_views_captions_as_caption_views_does_and_answers_from_the_frame() {
    let g = bundled();
    // the first test scene whose caption from three views differs from the frame's own
    let (scene, s, views) = (0..60u64)
        .map(|i| (i, sample(SEED, Split::Test, i)))
        .find_map(|(i, s)| {
            let views = g.caption_views(&s.image, 3).unwrap().text;
            (views != g.caption(&s.image).unwrap().text).then_some((i, s, views))
        })
        .expect("a test scene of 60 captioned otherwise from three views");
    let mut t = Terminal::start(&["--views", "3"]);
    for i in 1..=scene {
        let now = t.command("next", "\r");
        assert!(now.contains(&format!("scene {i} ")), "{now}");
    }
    assert_eq!(t.command("caption", "\r"), views);
    let qa = &s.qa[0];
    assert_eq!(
        t.command(&qa.question, "\r"),
        g.ask(&s.image, &qa.question).unwrap().text
    );
    drop(t);
    // JSON mode says how many views made the caption; the frame's cached prefix serves
    // the views' caption and the questions alike
    let mut t = Terminal::start(&["--json", "--views", "3"]);
    let s = sample(SEED, Split::Test, 0);
    let mut request = |line: &str| -> serde_json::Value {
        let from = t.len();
        t.send(format!("{line}\n").as_bytes());
        serde_json::from_str(t.wait_for(from, "\n").trim()).unwrap()
    };
    let v = request("{\"cmd\": \"caption\"}");
    assert_eq!(
        (&v["views"], &v["follow_up"]),
        (&3.into(), &false.into()),
        "{v}"
    );
    assert_eq!(v["answer"], g.caption_views(&s.image, 3).unwrap().text);
    let ask = serde_json::json!({"cmd": "ask", "question": s.qa[0].question});
    let v = request(&ask.to_string());
    assert_eq!(v["follow_up"], true, "{v}");
    assert!(v.get("views").is_none(), "{v}");
    assert_eq!(
        v["answer"],
        g.ask(&s.image, &s.qa[0].question).unwrap().text
    );
    let v = request("{\"cmd\": \"caption\"}");
    assert_eq!(v["follow_up"], true, "{v}");
    assert_eq!(v["answer"], g.caption_views(&s.image, 3).unwrap().text);
}
