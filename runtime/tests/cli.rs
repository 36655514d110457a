//! The `glimpse` command on the bundled model and the bundled examples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Floor for the bundled model's answers to the bundled examples' questions, one answer
/// under what it measures there: 33 of 34 right at every precision (stage 29).
const QA_FLOOR: f64 = 32.0 / 34.0;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn glimpse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glimpse"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("glimpse runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (question, answer)
type Qa = (String, String);

/// (image file, caption, questions) of each bundled example.
fn examples() -> Vec<(String, String, Vec<Qa>)> {
    let text = std::fs::read_to_string(root().join("examples/captions.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let qa = v["qa"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| {
                    (
                        q["q"].as_str().unwrap().to_string(),
                        q["a"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (
                format!("examples/{}", v["image"].as_str().unwrap()),
                v["caption"].as_str().unwrap().to_string(),
                qa,
            )
        })
        .collect()
}

#[test]
fn the_cli_prints_what_the_library_computes() {
    let g = glimpse_runtime::Glimpse::load(root().join("models/glimpse-default")).unwrap();
    for (image, _, qa) in examples().into_iter().take(3) {
        let frame = glimpse_runtime::frame::load_image(&root().join(&image)).unwrap();
        let o = glimpse(&["caption", &image]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            g.caption(&frame).unwrap().text,
            "{image}"
        );
        let (q, _) = &qa[0];
        let o = glimpse(&["ask", &image, q]);
        assert_eq!(
            stdout(&o).trim(),
            g.ask(&frame, q).unwrap().text,
            "{image}: {q}"
        );
    }
}

#[test]
fn the_examples_are_captioned_exactly() {
    let ex = examples();
    assert_eq!(ex.len(), 6);
    for (image, caption, _) in &ex {
        let o = glimpse(&["caption", image]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), caption, "{image}");
    }
}

/// Every example caption is exact, and the answers stay at the floor, at every precision
/// the package carries (the board builds are checked against these same outputs in CI).
#[test]
fn the_examples_hold_at_every_precision() {
    use glimpse_runtime::package::Precision;
    let ex = examples();
    for p in Precision::ALL {
        let g = glimpse_runtime::Glimpse::load_with(root().join("models/glimpse-default"), Some(p))
            .unwrap();
        let (mut right, mut asked) = (0, 0);
        for (image, caption, qa) in &ex {
            let frame = glimpse_runtime::frame::load_image(&root().join(image)).unwrap();
            assert_eq!(&g.caption(&frame).unwrap().text, caption, "{p} {image}");
            for (q, a) in qa {
                right += usize::from(&g.ask(&frame, q).unwrap().text == a);
                asked += 1;
            }
        }
        let accuracy = right as f64 / asked as f64;
        assert!(
            accuracy >= QA_FLOOR,
            "{p}: {right} of {asked} answers right"
        );
    }
}

#[test]
fn the_examples_questions_are_answered_at_the_floor() {
    let mut right = 0;
    let mut asked = 0;
    for (image, _, qa) in examples() {
        for (q, a) in qa {
            let o = glimpse(&["ask", &image, &q]);
            assert!(o.status.success(), "{}", stderr(&o));
            right += (stdout(&o).trim() == a) as usize;
            asked += 1;
        }
    }
    assert_eq!(asked, 34);
    let accuracy = right as f64 / asked as f64;
    assert!(accuracy >= QA_FLOOR, "{right} of {asked} answers right");
}

#[test]
fn json_output_has_the_text_and_the_latency_split() {
    let (image, caption, _) = examples().remove(0);
    let o = glimpse(&["--json", "caption", &image, &image]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], caption.as_str());
    assert_eq!(lines[1]["text"], caption.as_str());
    assert_eq!(lines[0]["image"], image.as_str());
    assert!(lines[0]["tokens"].as_u64().unwrap() > 0);
    for k in ["preprocess", "vision", "prefill", "decode"] {
        assert!(lines[0]["ms"][k].as_f64().unwrap() > 0.0, "{k}");
    }
}

/// The one `--json` line of `glimpse --json --max-tokens N caption IMAGE`.
fn caption_json(image: &str, max_tokens: usize) -> serde_json::Value {
    let o = glimpse(&[
        "--json",
        "--max-tokens",
        &max_tokens.to_string(),
        "caption",
        image,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

#[test]
fn a_cut_answer_is_marked_and_a_whole_one_is_not() {
    let (image, caption, _) = examples().remove(0);
    let whole = caption_json(&image, 32);
    assert_eq!(whole["text"], caption.as_str());
    assert_eq!(whole["stop"], "end");
    let n = whole["tokens"].as_u64().unwrap() as usize;
    assert!(n > 2);
    // a limit of exactly the caption's length still ends it: the step after the last
    // token is the end of text
    let exact = caption_json(&image, n);
    assert_eq!(
        (&exact["text"], &exact["stop"]),
        (&whole["text"], &"end".into())
    );
    let cut = caption_json(&image, n - 1);
    assert_eq!(cut["stop"], "token_limit");
    assert_eq!(cut["tokens"], n - 1);
    // in text mode the cut caption is printed as far as it got, with a note on stderr
    let o = glimpse(&["--max-tokens", &(n - 1).to_string(), "caption", &image]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    assert_eq!(printed.trim(), cut["text"].as_str().unwrap());
    assert!(caption.starts_with(printed.trim()) && printed.trim() != caption);
    let note = stderr(&o);
    assert!(
        note.contains(&image) && note.contains("cut at the token limit (--max-tokens"),
        "{note}"
    );
    let o = glimpse(&["caption", &image]);
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_corrupt_image_among_good_ones_is_reported_and_the_rest_captioned() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff garbage").unwrap();
    let (image, _, _) = examples().remove(0);
    let o = glimpse(&["caption", bad.to_str().unwrap(), &image]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt.jpg"), "{}", stderr(&o));
    assert!(stdout(&o).contains(&image), "{}", stdout(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn a_bad_model_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _, _) = examples().remove(0);
    let o = glimpse(&["--model", dir.path().to_str().unwrap(), "caption", &image]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("not a Glimpse model package") && err.contains("glimpse.json"),
        "{err}"
    );
}

#[test]
fn an_overlong_question_is_refused() {
    let (image, _, _) = examples().remove(0);
    let q = "what color is the circle ".repeat(50);
    let o = glimpse(&["ask", &image, &q]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("prompt too long"), "{}", stderr(&o));
}

#[test]
fn match_ranks_each_examples_own_caption_first_among_the_others() {
    let ex = examples();
    let captions: Vec<&str> = ex.iter().map(|e| e.1.as_str()).collect();
    for (image, caption, _) in &ex {
        let mut args = vec!["--json", "match", image.as_str()];
        args.extend(captions.iter().copied());
        let o = glimpse(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let m = v["matches"].as_array().unwrap();
        assert_eq!(m.len(), captions.len());
        // best first, probabilities a softmax over the texts given
        assert_eq!(m[0]["text"].as_str().unwrap(), caption, "{image}: {m:?}");
        let cos: Vec<f64> = m.iter().map(|x| x["cosine"].as_f64().unwrap()).collect();
        assert!(cos.windows(2).all(|w| w[0] >= w[1]), "{cos:?}");
        assert!(cos.iter().all(|c| (-1.0..=1.0).contains(c)));
        let p: f64 = m.iter().map(|x| x["probability"].as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-4, "probabilities sum to {p}");
    }
    // text mode: a header and one line per text
    let o = glimpse(&[
        "match",
        "examples/scene-0.png",
        "a large red circle",
        "a small blue square",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().next().unwrap().contains("cosine"));
}

#[test]
fn match_and_trigger_need_texts_and_a_model_that_can_match() {
    let o = glimpse(&["match", "examples/scene-0.png"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("TEXTS"), "{}", stderr(&o));
    let o = glimpse(&[
        "watch",
        "--synthetic",
        "--count",
        "1",
        "--trigger",
        "a red circle",
        "--threshold",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--threshold 2"), "{}", stderr(&o));
}

/// More threads change the speed, not the numbers: on two threads (the prefill's products
/// are split over them) every example is captioned as on one. Zero threads is refused by
/// name; a build without the `threads` feature refuses two, saying why.
#[test]
fn threads_change_the_speed_not_the_captions() {
    let zero = glimpse(&["--threads", "0", "info"]);
    assert!(!zero.status.success());
    assert!(stderr(&zero).contains("--threads"), "{}", stderr(&zero));
    for (image, caption, _) in &examples() {
        let o = glimpse(&["--threads", "2", "caption", image]);
        if cfg!(feature = "threads") {
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stdout(&o).trim(), caption, "{image} on two threads");
        } else {
            assert!(!o.status.success());
            assert!(stderr(&o).contains("`threads` feature"), "{}", stderr(&o));
        }
    }
}

#[test]
fn captions_from_several_views_name_every_example_right() {
    let ex = examples();
    let images: Vec<&str> = ex.iter().map(|(i, _, _)| i.as_str()).collect();
    let mut args = vec!["caption", "--views", "7"];
    args.extend(&images);
    let o = glimpse(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let want: Vec<String> = ex.iter().map(|(i, c, _)| format!("{i}: {c}")).collect();
    assert_eq!(got, want);
    // one image: the text alone; --json says how many views made it
    let o = glimpse(&["--json", "caption", "--views", "3", images[1]]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["views"], 3);
    assert_eq!(v["text"], ex[1].1.as_str());
    assert_eq!(v["stop"], "end");
    for bad in ["0", "8", "two"] {
        let o = glimpse(&["caption", "--views", bad, images[0]]);
        assert_eq!(o.status.code(), Some(2), "--views {bad}");
        assert!(stderr(&o).contains("--views"), "{}", stderr(&o));
    }
}

#[test]
fn bench_times_captions_from_views_when_asked() {
    let o = glimpse(&["--json", "bench", "--runs", "3", "--views", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let (views, stat) = (&v["caption_views"][0], &v["caption_views"][1]);
    assert_eq!(views, 2, "{v}");
    assert_eq!(stat["runs"], 3, "{v}");
    assert!(stat["median_ms"].as_f64().unwrap() > 0.0, "{v}");
    let o = glimpse(&["bench", "--runs", "3", "--views", "3"]);
    assert!(
        stdout(&o).contains("caption from 3 views"),
        "{}",
        stdout(&o)
    );
    // without --views there is no such figure
    let o = glimpse(&["--json", "bench", "--runs", "3"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v.get("caption_views").is_none(), "{v}");
    for bad in [
        &["--views", "1"][..],
        &["--views", "8"],
        &["--light", "2", "--views", "2"],
    ] {
        let mut args = vec!["bench"];
        args.extend_from_slice(bad);
        let o = glimpse(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&o).contains("--views"), "{bad:?}: {}", stderr(&o));
    }
}
