//! `glimpse watch --mqtt` against a real `mosquitto` broker on a free loopback port
//! (cargo feature `mqtt`; `.ci/run` installs mosquitto).

#![cfg(feature = "mqtt")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn glimpse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_glimpse"));
    c.env_remove("GLIMPSE_MQTT_PASSWORD");
    c
}

fn free_port() -> u16 {
    free_listener().local_addr().unwrap().port()
}

/// A listener on a port no other test of this process was handed: kept bound by whoever
/// needs it at once (a proxy), since a port let go may be taken meanwhile by the system for
/// a client's outgoing connection.
fn free_listener() -> TcpListener {
    // never the same port twice in this process: the tests run side by side, and each
    // port is bound again only later, by a broker or a proxy
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return listener;
        }
    }
}

/// A broker on `port` with `extra` configuration, up once it accepts connections.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16, extra: &str) -> Broker {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{extra}\n")).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto mosquitto-clients)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // the port answering is not enough: it must be this broker that answers
        std::thread::sleep(Duration::from_millis(50));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mosquitto on port {port} exited ({status}): another listener has the port");
        }
        Broker { child }
    }

    /// Stops it as systemd would (SIGTERM), so a persistent broker saves its sessions.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub` printing `topic payload` lines; `-C n` exits after n messages.
fn subscribe(port: u16, topic: &str, extra: &[&str]) -> Child {
    let mut child = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-v",
            "-q",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub must be installed");
    // let it subscribe before anything is published
    std::thread::sleep(Duration::from_millis(300));
    // one given -C may be done already (retained messages); one that failed is not
    if child.try_wait().unwrap().is_some_and(|s| !s.success()) {
        let out = child.wait_with_output().unwrap();
        panic!(
            "mosquitto_sub on port {port} failed at start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child
}

/// Lines a subscriber printed, waiting up to `wait` for it to exit (then stopping it).
fn received(mut sub: Child, wait: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    while start.elapsed() < wait {
        if sub.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sub.kill();
    let out = sub.wait_with_output().unwrap();
    if !out.stderr.is_empty() {
        // shown with a failing test: why a subscriber may have missed messages
        eprintln!(
            "mosquitto_sub: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| {
            let l = l.unwrap();
            let (t, p) = l.split_once(' ').unwrap_or((&l, ""));
            (t.to_string(), p.to_string())
        })
        .collect()
}

/// `glimpse watch --synthetic --count N --json` publishing to `url` under `cam`.
fn watch(url: &str, count: usize, extra: &[&str]) -> Command {
    let mut c = glimpse();
    c.args([
        "watch",
        "--synthetic",
        "--json",
        "--count",
        &count.to_string(),
    ])
    .args(["--mqtt", url, "--topic", "cam"])
    .args(extra);
    c
}

/// A subscriber whose messages are read as they come, to wait on them.
struct Live {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Live {
    fn start(port: u16, topic: &str) -> Live {
        let mut child = subscribe(port, topic, &[]);
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Live { child, lines }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits until nothing new came for `quiet` (at most `max`).
    fn wait_quiet(&self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        let (mut seen, mut since) = (self.count(), Instant::now());
        while start.elapsed() < max && (seen == 0 || since.elapsed() < quiet) {
            std::thread::sleep(Duration::from_millis(100));
            if self.count() != seen {
                (seen, since) = (self.count(), Instant::now());
            }
        }
    }

    /// Waits until a message's payload contains `needle` (at most `max`).
    fn wait_for(&self, needle: &str, max: Duration) {
        let start = Instant::now();
        while start.elapsed() < max
            && !self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Vec<(String, String)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                let (t, p) = l.split_once(' ').unwrap_or((l, ""));
                (t.to_string(), p.to_string())
            })
            .collect()
    }
}

/// Asserts that a run exited 0, showing its stderr when not.
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_caption_arrives_once_with_the_fields_of_watch_json() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "allow_anonymous true");
    let sub = subscribe(port, "cam/#", &[]);
    let out = watch(&format!("mqtt://127.0.0.1:{port}"), 4, &[])
        .output()
        .unwrap();
    succeeded(&out);
    let printed = json_lines(&out);
    let got = received(sub, Duration::from_secs(3));
    let captions: Vec<Value> = got
        .iter()
        .filter(|(t, _)| t == "cam/caption")
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect();
    let printed_captions: Vec<&Value> =
        printed.iter().filter(|v| v["event"] == "caption").collect();
    assert_eq!(captions.len(), 4, "{got:?}");
    for (m, p) in captions.iter().zip(&printed_captions) {
        assert_eq!(m["seq"], p["seq"]);
        assert_eq!(m["caption"], p["caption"]);
        assert_eq!(m["frame"], p["frame"]);
        assert!(m["ms"].is_object(), "{m}");
    }
    // online first, offline last, the final statistics with the loop's counts
    assert_eq!(
        got.first().map(|(t, p)| (t.as_str(), p.as_str())),
        Some(("cam/status", "online"))
    );
    assert_eq!(
        got.last().map(|(t, p)| (t.as_str(), p.as_str())),
        Some(("cam/status", "offline"))
    );
    let stats: Value = got
        .iter()
        .find(|(t, _)| t == "cam/stats")
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .expect("statistics at the end");
    assert_eq!(stats["captioned"], 4);
    // the summary on stdout counts what was sent: 4 captions, 4 states, the statistics
    let summary = printed.last().unwrap();
    assert_eq!(summary["mqtt"]["dropped"], 0, "{summary}");
    assert_eq!(summary["mqtt"]["queued"], 0, "{summary}");

    // a late subscriber gets the latest caption, retained on cam/state
    let late = received(
        subscribe(port, "cam/state", &["-C", "1"]),
        Duration::from_secs(3),
    );
    let state: Value = serde_json::from_str(&late[0].1).unwrap();
    assert_eq!(state["seq"], printed_captions[3]["seq"]);
}

#[test]
fn captions_queued_during_an_outage_arrive_in_order_and_overflow_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    // started as root, mosquitto runs as its own user: it must be able to save there
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), db.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let persistent = format!(
        "allow_anonymous true\npersistence true\npersistence_location {}/",
        db.display()
    );
    // a subscriber with a persistent session, then the broker goes away
    let broker = Broker::start(dir.path(), port, &persistent);
    let sub = subscribe(
        port,
        "cam/caption",
        &["-c", "-i", "glimpse-test-subscriber", "-C", "5"],
    );
    broker.stop();
    // the loop runs while the broker is down; it comes back a second later
    let run = watch(&format!("mqtt://127.0.0.1:{port}"), 5, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let _broker = Broker::start(dir.path(), port, &persistent);
    let out = run.wait_with_output().unwrap();
    succeeded(&out);
    let printed = json_lines(&out);
    let seqs: Vec<&Value> = printed
        .iter()
        .filter(|v| v["event"] == "caption")
        .map(|v| &v["seq"])
        .collect();
    let got = received(sub, Duration::from_secs(10));
    let delivered: Vec<Value> = got
        .iter()
        .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap()["seq"].clone())
        .collect();
    assert_eq!(
        delivered.iter().collect::<Vec<_>>(),
        seqs,
        "in order, each once"
    );

    // with the broker away for the whole run and room for 2 messages, the rest are
    // dropped oldest first and counted: 5 captions and 5 states, the statistics, offline
    let nobody = free_port();
    let out = watch(
        &format!("mqtt://127.0.0.1:{nobody}"),
        5,
        &["--mqtt-queue", "2"],
    )
    .output()
    .unwrap();
    succeeded(&out);
    let summary = json_lines(&out).pop().unwrap();
    assert_eq!(summary["captioned"], 5);
    assert_eq!(summary["mqtt"]["dropped"], 10, "{summary}");
    assert_eq!(summary["mqtt"]["queued"], 2, "{summary}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not reachable yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_credentials_and_bad_addresses_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, "").unwrap();
    let made = Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwords)
        .args(["camera", "right-password"])
        .status()
        .unwrap();
    assert!(made.success());
    let _broker = Broker::start(
        dir.path(),
        port,
        &format!(
            "allow_anonymous false\npassword_file {}",
            passwords.display()
        ),
    );
    let url = format!("mqtt://127.0.0.1:{port}");
    let run = |password: &str| {
        glimpse()
            .args(["watch", "--synthetic", "--count", "1"])
            .args(["--mqtt", &url, "--mqtt-user", "camera"])
            .env("GLIMPSE_MQTT_PASSWORD", password)
            .output()
            .unwrap()
    };
    let bad = run("wrong-password");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("refused") && err.contains(&url), "{err}");
    let good = run("right-password");
    succeeded(&good);
    // a password file is read too
    let file = dir.path().join("pw");
    std::fs::write(&file, "right-password\n").unwrap();
    let from_file = glimpse()
        .args(["watch", "--synthetic", "--count", "1"])
        .args([
            "--mqtt",
            &url,
            "--mqtt-user",
            "camera",
            "--mqtt-password-file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    succeeded(&from_file);
    // addresses
    for (url, word) in [
        ("http://x", "mqtt://"),
        ("ftp://x", "mqtts://"),
        ("mqtt://x:99999", "port"),
    ] {
        let out = glimpse()
            .args(["watch", "--synthetic", "--count", "1", "--mqtt", url])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(word), "{url}: {err}");
    }
}

/// `glimpse serve --mqtt` on an example frame, stopped with SIGTERM when done.
struct Server {
    child: Child,
}

impl Server {
    fn start(port: u16, extra: &[&str]) -> Server {
        let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scene-1.png");
        let child = glimpse()
            .args(["serve", "--image"])
            .arg(image)
            .args([
                "--mqtt",
                &format!("mqtt://127.0.0.1:{port}"),
                "--topic",
                "cam",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // subscribed once its ready message is out
        std::thread::sleep(Duration::from_millis(1500));
        Server { child }
    }

    fn stop(self) -> (bool, String) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn publish_lines(port: u16, topic: &str, lines: &str) {
    let mut p = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-q",
            "1",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(p.wait().unwrap().success());
}

#[test]
fn questions_over_mqtt_are_answered_with_their_ids_and_bad_requests_get_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(
        dir.path(),
        port,
        "allow_anonymous true\nmessage_size_limit 0",
    );
    let server = Server::start(port, &[]);
    let sub = subscribe(port, "cam/answer", &["-C", "5"]);
    let big = format!(
        "{{\"id\": 3, \"cmd\": \"ask\", \"question\": \"{}\"}}",
        "a".repeat(1 << 20)
    );
    let requests = [
        r#"{"id": 1, "cmd": "ask", "question": "how many objects are there?"}"#.to_string(),
        "not json at all".to_string(),
        r#"{"id": 2, "cmd": "fly"}"#.to_string(),
        big,
        r#"{"id": "last", "cmd": "caption"}"#.to_string(),
    ];
    for r in &requests {
        publish_lines(port, "cam/ask", &format!("{r}\n"));
    }
    let got = received(sub, Duration::from_secs(20));
    let (ok, err) = server.stop();
    assert!(ok, "{err}");
    let replies: Vec<Value> = got
        .iter()
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(replies.len(), 5, "{got:?}");
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(replies[0]["answer"], "four", "{}", replies[0]);
    assert_eq!(replies[1]["ok"], false);
    assert!(replies[1]["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(replies[2]["id"], 2);
    assert_eq!(replies[2]["ok"], false);
    // the 1 MB request is refused, with its id, and the connection keeps working
    assert_eq!(replies[3]["id"], 3, "{}", replies[3]);
    assert_eq!(replies[3]["ok"], false);
    assert_eq!(replies[4]["id"], "last");
    assert_eq!(replies[4]["ok"], true);
    assert!(err.contains("served 2 answers"), "{err}");
}

#[test]
fn a_flood_of_requests_is_answered_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(
        dir.path(),
        port,
        "allow_anonymous true\nmax_queued_messages 0",
    );
    let server = Server::start(port, &["--mqtt-queue", "20"]);
    let n = 10_000;
    let sub = Live::start(port, "cam/answer");
    let lines: String = (0..n)
        .map(|i| format!("{{\"id\": {i}, \"cmd\": \"stats\"}}\n"))
        .collect();
    publish_lines(port, "cam/ask", &lines);
    // the flood is over once no answer came for two seconds
    sub.wait_quiet(Duration::from_secs(2), Duration::from_secs(120));
    // and a question after the flood is still answered
    publish_lines(
        port,
        "cam/ask",
        "{\"id\": \"after\", \"cmd\": \"ask\", \"question\": \"how many objects are there?\"}\n",
    );
    sub.wait_for("\"after\"", Duration::from_secs(30));
    let got = sub.stop();
    let (ok, err) = server.stop();
    assert!(ok, "{err}");
    let ids: Vec<Value> = got
        .iter()
        .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids.last(), Some(&Value::from("after")), "{:?}", got.last());
    let answered = ids.iter().filter(|i| i.is_u64()).count() as u64;
    // every request is answered, or counted: dropped on the way in (too many waiting)
    // or its answer dropped on the way out (the outgoing queue holds --mqtt-queue too)
    let number_before = |marker: &str| -> u64 {
        err.lines()
            .find_map(|l| {
                let (before, _) = l.split_once(marker)?;
                before.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0)
    };
    let requests_dropped = number_before(" requests dropped");
    let answers_dropped: u64 = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("glimpse: mqtt: sent ")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert_eq!(
        answered + requests_dropped + answers_dropped,
        n,
        "answered {answered}, requests dropped {requests_dropped}, answers dropped {answers_dropped}: {err}"
    );
}

#[test]
fn home_assistant_finds_a_caption_sensor_and_the_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "allow_anonymous true");
    let out = glimpse()
        // with seed 4 the trigger fires on the third scene, which holds a large red
        // circle, and clears on the fifth
        .args([
            "watch",
            "--synthetic",
            "--seed",
            "4",
            "--count",
            "6",
            "--json",
        ])
        .args(["--trigger", "a large red circle"])
        .args([
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}"),
            "--topic",
            "site/kitchen",
        ])
        .arg("--ha-discovery")
        .output()
        .unwrap();
    succeeded(&out);
    // retained: a subscriber that comes later (as Home Assistant restarting) finds both
    let got = received(
        subscribe(port, "homeassistant/#", &["-C", "2"]),
        Duration::from_secs(3),
    );
    let config = |kind: &str| -> Value {
        let (_, p) = got
            .iter()
            .find(|(t, _)| {
                t == &format!(
                    "homeassistant/{kind}/glimpse_site_kitchen/{}/config",
                    if kind == "sensor" {
                        "caption"
                    } else {
                        "trigger"
                    }
                )
            })
            .unwrap_or_else(|| panic!("no {kind} config in {got:?}"));
        serde_json::from_str(p).unwrap()
    };
    let sensor = config("sensor");
    assert_eq!(sensor["state_topic"], "site/kitchen/state");
    assert_eq!(sensor["value_template"], "{{ value_json.caption }}");
    assert_eq!(sensor["availability_topic"], "site/kitchen/status");
    let binary = config("binary_sensor");
    assert_eq!(binary["state_topic"], "site/kitchen/trigger");
    assert_eq!(binary["name"], "Sees: a large red circle");
    assert_eq!(binary["device"], sensor["device"]);
    // the trigger's state is retained too: ON after an alert, OFF after a clear or none
    let last_edge = json_lines(&out)
        .into_iter()
        .rfind(|v| v["event"] == "alert" || v["event"] == "clear");
    assert!(
        last_edge.is_some(),
        "the trigger should fire on these scenes"
    );
    let want = match last_edge {
        Some(v) if v["event"] == "alert" => "ON",
        _ => "OFF",
    };
    let state = received(
        subscribe(port, "site/kitchen/trigger", &["-C", "1"]),
        Duration::from_secs(3),
    );
    assert_eq!(state[0].1, want, "{state:?}");
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(ok.success(), "openssl {args:?}");
}

/// A test CA and a certificate it signed for localhost and 127.0.0.1, readable by the
/// broker's own user.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=glimpse test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut req = vec!["req", "-subj", "/CN=localhost"];
    req.extend(ec);
    req.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &req);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn tls_brokers_are_reached_with_their_ca_and_refused_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let port = free_port();
    let _broker = Broker::start(
        d,
        port,
        &format!(
            "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key",
            d.display()
        ),
    );
    let ca = d.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let sub = subscribe(port, "cam/caption", &["--cafile", ca, "-C", "3"]);
    let url = format!("mqtts://127.0.0.1:{port}");
    let out = watch(&url, 3, &["--mqtt-ca", ca]).output().unwrap();
    succeeded(&out);
    let got = received(sub, Duration::from_secs(5));
    let printed: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|v| v["event"] == "caption")
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    for ((_, m), p) in got.iter().zip(&printed) {
        let m: Value = serde_json::from_str(m).unwrap();
        assert_eq!(m["seq"], p["seq"]);
        assert_eq!(m["caption"], p["caption"]);
    }

    // the name on the certificate is checked: "localhost" is on it, another name is not
    let by_name = watch(&format!("mqtts://localhost:{port}"), 1, &["--mqtt-ca", ca])
        .output()
        .unwrap();
    succeeded(&by_name);

    // without the broker's CA (the system's store does not have it): a clear error
    let out = watch(&url, 1, &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url) && err.contains("--mqtt-ca"), "{err}");

    // TLS to a plain listener, and a CA file that is not one
    let plain = free_port();
    let _plain_broker = Broker::start(d, plain, "allow_anonymous true");
    // (the broker hangs up on the handshake, as it would while restarting: an outage,
    // with the reason in the note)
    let out = watch(&format!("mqtts://127.0.0.1:{plain}"), 1, &["--mqtt-ca", ca])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not reachable yet") && err.contains("TLS"),
        "{err}"
    );
    let out = watch(&url, 1, &["--mqtt-ca", d.join("san.ext").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("san.ext") && err.contains("no PEM"), "{err}");
    // and --mqtt-ca with a plain address says what it is for
    let out = watch(&format!("mqtt://127.0.0.1:{plain}"), 1, &["--mqtt-ca", ca])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtts://"));
}

/// A TCP proxy to `target` that cuts every connection through it at pseudo-random
/// intervals (`cut_ms` apart on average) until stopped; counts the cuts. Each cut comes
/// after `silent_ms` in which the proxy swallows what either side sends, as a Wi-Fi link
/// that fades before it drops: what the client wrote then never reaches the broker, and
/// no acknowledgement comes back.
struct FlakyProxy {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FlakyProxy {
    fn start(target: u16, cut_ms: u64, silent_ms: u64, seed: u64) -> FlakyProxy {
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        // bound at once on a port no broker of another test is handed
        let listener = free_listener();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let silent = Arc::new(AtomicBool::new(false));
        let (s, o, quiet) = (stop.clone(), open.clone(), silent.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let quiet = quiet.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if !quiet.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        let (s, o, c) = (stop.clone(), open, cuts.clone());
        let cutter = std::thread::spawn(move || {
            let mut x = seed | 1;
            while !s.load(Ordering::SeqCst) {
                // xorshift: a wait between half and one and a half times cut_ms
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let wait = cut_ms / 2 + x % cut_ms.max(1);
                std::thread::sleep(Duration::from_millis(wait));
                silent.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(silent_ms));
                let mut open = o.lock().unwrap();
                if !open.is_empty() {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                for stream in open.drain(..) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                drop(open);
                silent.store(false, Ordering::SeqCst);
            }
        });
        FlakyProxy {
            port,
            stop,
            cuts,
            threads: vec![accept, cutter],
        }
    }

    fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        self.cuts.load(Ordering::SeqCst)
    }
}

#[test]
fn a_connection_cut_at_random_loses_no_caption_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "allow_anonymous true");
    // at 8 frames a second, a quarter second of silence before each cut swallows a
    // caption or two the client wrote: it must send them again after the reconnect
    let proxy = FlakyProxy::start(port, 700, 250, 0x9e3779b97f4a7c15);
    let sub = subscribe(port, "cam/caption", &[]);
    let n = 40;
    let out = watch(
        &format!("mqtt://127.0.0.1:{}", proxy.port),
        n,
        &["--fps", "8"],
    )
    .output()
    .unwrap();
    succeeded(&out);
    let got = received(sub, Duration::from_secs(2));
    let cuts = proxy.stop();
    let summary = json_lines(&out).pop().unwrap();
    assert!(cuts >= 3, "the proxy cut the connection only {cuts} times");
    assert!(
        summary["mqtt"]["disconnects"].as_u64().unwrap() >= 2,
        "{summary}"
    );
    assert_eq!(summary["mqtt"]["dropped"], 0, "{summary}");
    assert!(
        summary["mqtt"]["resent"].as_u64().unwrap() >= 1,
        "nothing was swallowed by the silences: {summary}"
    );
    // QoS 1 is at least once: a message whose acknowledgement was cut off is sent again,
    // so duplicates may come; none may be missing, and the first arrivals are in order
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|(_, p)| {
            serde_json::from_str::<Value>(p).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let arrivals = seqs.len();
    eprintln!(
        "{cuts} cuts, {} reconnects, {arrivals} arrivals of {n} captions",
        summary["mqtt"]["disconnects"]
    );
    let mut seen = std::collections::HashSet::new();
    seqs.retain(|s| seen.insert(*s));
    let want: Vec<u64> = json_lines(&out)
        .iter()
        .filter(|v| v["event"] == "caption")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(want.len(), n);
    assert_eq!(
        seqs,
        want,
        "{cuts} cuts, {arrivals} arrivals; {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_with_views_answers_caption_requests_from_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port, "allow_anonymous true");
    let server = Server::start(port, &["--views", "3"]);
    let sub = subscribe(port, "cam/answer", &["-C", "1"]);
    publish_lines(port, "cam/ask", "{\"id\": 9, \"cmd\": \"caption\"}\n");
    let got = received(sub, Duration::from_secs(20));
    let (ok, err) = server.stop();
    assert!(ok, "{err}");
    assert_eq!(got.len(), 1, "{got:?}");
    let reply: Value = serde_json::from_str(&got[0].1).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let g = glimpse_runtime::Glimpse::load(root.join("models/glimpse-default")).unwrap();
    let frame = glimpse_runtime::frame::load_image(&root.join("examples/scene-1.png")).unwrap();
    assert_eq!(
        (&reply["id"], &reply["views"]),
        (&9.into(), &3.into()),
        "{reply}"
    );
    assert_eq!(reply["answer"], g.caption_views(&frame, 3).unwrap().text);
}
