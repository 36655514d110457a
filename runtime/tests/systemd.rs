//! The systemd units in `targets/systemd`: `systemd-analyze verify` accepts them (where it
//! is installed), and the command each one starts is one this `glimpse` accepts and runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const GLIMPSE: &str = env!("CARGO_BIN_EXE_glimpse");
const INSTALLED: &str = "/usr/local/bin/glimpse";

/// Each unit file, as an instance name systemd can verify (`@.service` templates get
/// `ttyS0`) and its text with the installed binary's path pointing at this build.
fn units() -> Vec<(String, String)> {
    let dir = root().join("targets/systemd");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(INSTALLED),
            "{name} does not start {INSTALLED}"
        );
        out.push((
            name.replace("@.service", "@ttyS0.service"),
            text.replace(INSTALLED, GLIMPSE),
        ));
    }
    out.sort();
    assert_eq!(
        out.len(),
        2,
        "expected the watch and serve units in {dir:?}"
    );
    out
}

/// The version systemd-analyze reports ("systemd 252 (252.38-1~deb12u1)"), or None
/// where it is not installed.
fn systemd_version() -> Option<u32> {
    let out = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Keys that systemd learned in version 254; older ones warn that they are unknown and
/// go on with the rest of the unit, which is what the units' comments promise.
const SINCE_254: [&str; 2] = ["RestartSteps", "RestartMaxDelaySec"];

#[test]
fn units_pass_systemd_analyze_verify() {
    let Some(version) = systemd_version() else {
        eprintln!("systemd-analyze is not installed: unit files not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in units() {
        let path = dir.path().join(&name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                let newer_key = SINCE_254
                    .iter()
                    .any(|k| l.contains(&format!("Unknown key '{k}'")));
                !(version < 254 && newer_key)
            })
            // verify also looks at the units these depend on, as this machine has them
            .filter(|l| l.contains(&name))
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "systemd-analyze {version} verify {name}: {}\n{stderr}",
            out.status
        );
    }
}

/// The words of the `glimpse` command line in a unit's `ExecStart=`, whether it runs the
/// binary directly or through `/bin/sh -c '... >> log'`.
fn glimpse_args(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    let from = line.find(GLIMPSE).expect("ExecStart runs glimpse") + GLIMPSE.len();
    line[from..]
        .split(['\'', '>'])
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The text of the unit whose file name starts with `prefix`.
fn unit(prefix: &str) -> String {
    units()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .map(|(_, text)| text)
        .unwrap_or_else(|| panic!("no unit {prefix}*"))
}

/// This build of glimpse run with `args` on the bundled model, as the units' environment
/// (`GLIMPSE_MODEL`) points it at the installed one.
fn run(args: &[String]) -> std::process::Output {
    Command::new(GLIMPSE)
        .args(args)
        .env("GLIMPSE_MODEL", root().join("models/glimpse-default"))
        .output()
        .unwrap()
}

#[test]
fn the_watch_unit_command_captions_when_its_camera_is_a_generator() {
    let mut args = glimpse_args(&unit("glimpse-watch"));
    assert!(args.contains(&"watch".to_owned()), "{args:?}");
    // no camera here: the same command with the scene generator in its place
    let cam = args.iter().position(|a| a == "--camera").expect("--camera");
    args.splice(
        cam..cam + 2,
        ["--synthetic", "--count", "2"].map(String::from),
    );
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let captions: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("--json lines"))
        .filter(|v: &serde_json::Value| v.get("caption").is_some())
        .collect();
    assert_eq!(captions.len(), 2, "{stdout}");
}

#[test]
fn the_serve_unit_command_is_accepted_up_to_its_missing_port() {
    let args: Vec<String> = glimpse_args(&unit("glimpse-serve@"))
        .into_iter()
        .map(|a| a.replace("/dev/%I", "/dev/glimpse-no-such-port"))
        .collect();
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // a usage error is exit code 2 with clap's "Usage:"; a missing port or camera is a
    // runtime error naming the device
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        !stderr.contains("Usage:") && out.status.code() != Some(2),
        "{args:?}: the unit's options are not accepted: {stderr}"
    );
    assert!(
        stderr.contains("/dev/glimpse-no-such-port") || stderr.contains("/dev/video0"),
        "{args:?}: {stderr}"
    );
}
