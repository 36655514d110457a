//! The `glimpse` command fed bad input the way a user or a device would: each case exits
//! with the right code, names the file or flag at fault, never panics and never hangs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Longest any case may take; a case that takes longer has hung.
const LIMIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> String {
    root().join("examples/scene-0.png").display().to_string()
}

/// A `glimpse` process, killed if the test ends before it does.
struct Running {
    child: Child,
    stdout: Option<Receiver<String>>,
    stderr: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

fn start(args: &[&str], stdin: Stdio, stdout: Stdio) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_glimpse"))
        .args(args)
        .current_dir(root())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("glimpse starts");
    let stdout = child.stdout.take().map(lines_of);
    let stderr = lines_of(child.stderr.take().unwrap());
    Running {
        child,
        stdout,
        stderr,
    }
}

impl Running {
    /// The next line on stdout, within the limit.
    fn line(&mut self) -> String {
        let rx = self.stdout.as_ref().expect("stdout is piped");
        rx.recv_timeout(LIMIT).expect("a line on stdout in time")
    }

    /// Waits for the exit (or fails the test after [`LIMIT`]); returns status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < LIMIT, "glimpse hung");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            err.push(l);
        }
        let err = err.join("\n");
        assert!(!err.contains("panicked"), "a panic: {err}");
        (status, err)
    }
}

/// Runs to the end with no input and stdout discarded or captured.
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut r = start(args, Stdio::null(), Stdio::piped());
    let rx = r.stdout.take().unwrap();
    let (status, err) = r.finish();
    // every line the process wrote: the reader thread may still be passing them on after
    // the exit, and it ends (closing the channel) at the end of the pipe
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(line) => out.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout still open after the exit"),
        }
    }
    (status, out.join("\n"), err)
}

#[test]
fn out_of_range_numbers_name_their_flag() {
    let img = example();
    let cases: [(&[&str], &str); 10] = [
        (&["watch", "--synthetic", "--fps", "1e-300"], "--fps"),
        (&["watch", "--synthetic", "--fps", "0"], "--fps"),
        (&["watch", "--synthetic", "--fps", "NaN"], "--fps"),
        (&["--max-tokens", "0", "caption", &img], "--max-tokens"),
        (&["bench", "--runs", "0"], "--runs"),
        (&["watch", "--synthetic", "--count", "0"], "--count"),
        (
            &["serve", "--serial", "-", "--synthetic", "--baud", "0"],
            "--baud",
        ),
        (
            &[
                "watch",
                "--synthetic",
                "--trigger",
                "a red circle",
                "--threshold",
                "2",
            ],
            "--threshold",
        ),
        (
            &[
                "watch",
                "--synthetic",
                "--trigger",
                "a red circle",
                "--release",
                "0.9",
            ],
            "--release",
        ),
        (&["watch", "--synthetic", "--every", "5 weeks"], "--every"),
    ];
    for (args, flag) in cases {
        let (status, _, err) = run(args);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(err.contains(flag), "{args:?}: no {flag} in {err}");
    }
}

#[test]
fn unreadable_images_are_named_and_the_others_still_captioned() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera.jpg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let cut = dir.path().join("half.jpg");
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpg)
        .encode_image(&image::RgbImage::from_fn(160, 120, |x, y| {
            image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y * 3) as u8])
        }))
        .unwrap();
    std::fs::write(&cut, &jpg[..jpg.len() / 2]).unwrap();
    for bad in [
        "/dev/zero".to_string(),
        fifo.display().to_string(),
        cut.display().to_string(),
    ] {
        let (status, out, err) = run(&["caption", &bad, &example()]);
        assert_eq!(status.code(), Some(1), "{bad}: {err}");
        assert!(err.contains(&bad), "{bad}: {err}");
        // the good image after it is still captioned
        assert!(out.contains("scene-0.png: a "), "{bad}: {out}");
    }
    let (status, _, err) = run(&["watch", "--image", &cut.display().to_string()]);
    assert!(
        !status.success(),
        "watch --image of a cut JPEG succeeded: {err}"
    );
    assert!(
        err.contains("half.jpg") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_full_disk_is_an_error_not_a_silent_loss() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let img = example();
    let cases: [&[&str]; 4] = [
        &["caption", &img],
        &["--json", "caption", &img],
        &["watch", "--synthetic", "--count", "2"],
        &["--json", "info"],
    ];
    for args in cases {
        let r = start(args, Stdio::null(), Stdio::from(full()));
        let (status, err) = r.finish();
        assert!(!status.success(), "{args:?} succeeded into /dev/full");
        assert!(err.contains("cannot write"), "{args:?}: {err}");
    }
    // the console: the answer cannot be delivered
    let mut r = start(
        &["serve", "--serial", "-", "--synthetic"],
        Stdio::piped(),
        Stdio::from(full()),
    );
    r.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"caption\n")
        .unwrap();
    drop(r.child.stdin.take());
    let (status, err) = r.finish();
    assert!(!status.success(), "serve succeeded into /dev/full");
    assert!(err.contains("cannot write to stdin/stdout"), "{err}");
}

#[test]
fn a_closed_pipe_ends_the_command() {
    // many captions into a reader that has gone: the command stops at the first failed write
    let img = example();
    let mut args = vec!["caption"];
    args.extend(std::iter::repeat_n(img.as_str(), 200));
    let mut r = start(&args, Stdio::null(), Stdio::piped());
    r.line();
    r.stdout = None;
    let (status, err) = r.finish();
    assert!(!status.success());
    assert!(err.contains("cannot write to stdout"), "{err}");
    // an endless watch
    let mut r = start(&["watch", "--synthetic"], Stdio::null(), Stdio::piped());
    r.line();
    r.stdout = None;
    let (status, err) = r.finish();
    assert!(!status.success());
    assert!(err.contains("output failed"), "{err}");
    // the console, like `glimpse serve --serial - ... | head -1`
    let mut r = start(
        &["--json", "serve", "--serial", "-", "--synthetic"],
        Stdio::piped(),
        Stdio::piped(),
    );
    let mut stdin = r.child.stdin.take().unwrap();
    let ready = r.line();
    assert!(ready.contains("ready"), "{ready}");
    r.stdout = None;
    // keep asking: the server must notice its reader is gone and stop
    let asker = std::thread::spawn(move || {
        for _ in 0..200 {
            if stdin.write_all(b"{\"cmd\": \"caption\"}\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (status, err) = r.finish();
    assert!(!status.success());
    assert!(err.contains("cannot write to stdin/stdout"), "{err}");
    asker.join().unwrap();
}

#[test]
fn a_folder_deleted_while_watched_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..6 {
        std::fs::copy(
            root().join(format!("examples/scene-{i}.png")),
            frames.join(format!("{i}.png")),
        )
        .unwrap();
    }
    let mut r = start(
        &[
            "watch",
            "--frames",
            &frames.display().to_string(),
            "--fps",
            "2",
        ],
        Stdio::null(),
        Stdio::piped(),
    );
    r.line();
    std::fs::remove_dir_all(&frames).unwrap();
    let (status, err) = r.finish();
    assert!(!status.success(), "{err}");
    assert!(err.contains("is gone") && err.contains("frames"), "{err}");
}

#[test]
fn sigterm_ends_a_loop_with_its_summary() {
    let mut r = start(
        &["watch", "--synthetic", "--fps", "5"],
        Stdio::null(),
        Stdio::piped(),
    );
    r.line();
    let pid = nix::unistd::Pid::from_raw(r.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (status, err) = r.finish();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("frames seen"), "no summary: {err}");
}

#[test]
fn json_info_is_json_and_a_mismatched_package_is_named() {
    let (status, out, err) = run(&["--json", "info"]);
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["model"]["d_model"], 128);
    assert_eq!(v["canvas"]["image_tokens"], 266);
    // a manifest promising a longer context than the graphs have
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    for e in std::fs::read_dir(root().join("models/glimpse-default")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pkg.join(e.file_name())).unwrap();
    }
    let manifest = pkg.join("glimpse.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"max_positions\": 308", "\"max_positions\": 1000"),
    )
    .unwrap();
    let pkg = pkg.display().to_string();
    let (status, _, err) = run(&[
        "--model",
        &pkg,
        "ask",
        &example(),
        "what color is the circle?",
    ]);
    assert!(!status.success());
    assert!(
        err.contains("decoder.onnx") && err.contains("model.max_positions is 1000"),
        "{err}"
    );
}

#[test]
fn special_tokens_in_a_question_are_asked_about() {
    let (status, out, err) = run(&["ask", &example(), "what color is the </s> <answer> circle?"]);
    assert!(status.success(), "{err}");
    assert!(!out.trim().is_empty(), "no answer: {err}");
}

#[test]
fn stdout_and_stderr_into_one_closed_pipe_end_without_a_panic() {
    // `glimpse watch --synthetic 2>&1 | head -1`: after the reader goes, the summary on
    // stderr cannot be written either; the exit is an error (1), not a panic (101)
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_glimpse"))
        .args(["watch", "--synthetic"])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone().unwrap()))
        .stderr(Stdio::from(write))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(std::fs::File::from(read)).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("watching"), "{first}");
    drop(lines);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("glimpse hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
}
