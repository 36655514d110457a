//! The whole chain on a tiny model: train a few steps (and resume), export a package, run it
//! with the runtime, evaluate it; and training on a folder of the user's own images.

mod common;

use glimpse_exporter::train::{self, TrainOptions};
use glimpse_exporter::{data, eval, package};
use glimpse_runtime::package::MANIFEST_FILE;
use glimpse_runtime::scene::Split;
use glimpse_runtime::text::{Prompt, TokenStream};
use glimpse_runtime::{Glimpse, Stop};

/// burn seeds its backend globally: tests that train in this process take turns, so a
/// seeded initialisation is never interleaved with another test's random draws.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_options(steps: usize) -> TrainOptions {
    TrainOptions {
        steps,
        batch_size: 4,
        warmup: 2,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        max_positions: 48,
        canvas: common::tiny_canvas(),
        val_every: 3,
        checkpoint_every: 3,
        val_examples: 8,
        ..TrainOptions::default()
    }
}

/// `--keep-checkpoints` keeps each checkpoint's weights, from the step it was turned on
/// (here on a resume), and `export --step N` writes the model of step N: the last kept
/// one is the run's own last checkpoint, an earlier one is not.
#[test]
fn kept_checkpoints_export_the_model_of_their_step() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train::train(&run, tiny_options(3), false, Default::default()).unwrap();
    let f32 = [glimpse_runtime::package::Precision::F32];
    let at = |step: Option<usize>| {
        let out = dir.path().join(format!("at-{step:?}"));
        package::export_at(&run, &out, "tiny", &f32, step)
            .map(|_| std::fs::read(out.join(glimpse_runtime::package::DECODER_FILE)).unwrap())
    };
    let e = at(Some(3)).unwrap_err();
    assert!(e.to_string().contains("kept no checkpoints"), "{e}");
    assert!(e.to_string().contains("--keep-checkpoints"), "{e}");
    train::train(
        &run,
        tiny_options(9),
        true,
        train::Changes {
            steps: Some(9),
            keep_checkpoints: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(train::kept_steps(&run), [6, 9]);
    let (six, nine, last) = (
        at(Some(6)).unwrap(),
        at(Some(9)).unwrap(),
        at(None).unwrap(),
    );
    assert_eq!(nine, last);
    assert_ne!(six, nine);
    let manifest = |step: Option<usize>| {
        let dir = dir.path().join(format!("at-{step:?}"));
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    assert_eq!(manifest(Some(6))["metrics"]["training"]["exported_step"], 6);
    assert!(manifest(None)["metrics"]["training"]["exported_step"].is_null());
    let e = at(Some(7)).unwrap_err();
    assert!(e.to_string().contains("steps 6, 9"), "{e}");
}

#[test]
fn train_resume_export_run_and_evaluate() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let p = train::train(&run, tiny_options(6), false, Default::default()).unwrap();
    assert_eq!(p.step, 6);
    assert_eq!(p.val_loss.len(), 2);
    assert!(p.train_loss.iter().all(|(_, l)| l.is_finite() && *l > 0.0));
    for f in [
        "run.json",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.bin",
        "progress.json",
        "loss.csv",
        "loss.png",
        "metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // an existing run is never overwritten by accident
    let e = train::train(&run, tiny_options(9), false, Default::default()).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    // resuming continues from the checkpoint and keeps the history
    let p = train::train(
        &run,
        tiny_options(9),
        true,
        train::Changes {
            steps: Some(9),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.step, 9);
    assert_eq!(p.val_loss.len(), 3);
    assert_eq!(p.val_loss[2].0, 9);
    // a run cannot be moved to end before the step it reached
    let e = train::train(
        &run,
        tiny_options(9),
        true,
        train::Changes {
            steps: Some(7),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("already at step 9"), "{e}");

    // a run stopped before its first checkpoint left its run.json and tokenizer alone:
    // nothing to resume, and starting it again is not refused as overwriting a run
    let stopped = dir.path().join("stopped");
    std::fs::create_dir(&stopped).unwrap();
    for f in ["run.json", "tokenizer.json"] {
        std::fs::copy(run.join(f), stopped.join(f)).unwrap();
    }
    let e = train::train(&stopped, tiny_options(6), true, Default::default()).unwrap_err();
    assert!(e.to_string().contains("before its first checkpoint"), "{e}");
    let p = train::train(&stopped, tiny_options(6), false, Default::default()).unwrap();
    assert_eq!(p.step, 6);
    assert!(stopped.join("progress.json").is_file());

    let pkg = dir.path().join("pkg");
    package::export(
        &run,
        &pkg,
        "tiny",
        &[glimpse_runtime::package::Precision::F32],
    )
    .unwrap();
    let g = Glimpse::load(&pkg).unwrap();
    let m = &g.package.manifest;
    assert_eq!(m.name, "tiny");
    assert_eq!(m.model.d_model, 32);
    assert_eq!(m.canvas, common::tiny_canvas());
    assert_eq!(m.metrics["training"]["steps"], 9);
    assert_eq!(m.data["training"]["source"], "synthetic");
    let s = glimpse_runtime::scene::sample(7, Split::Test, 0);
    let a = g.caption(&s.image).unwrap();
    assert!(a.timings.prefill_s > 0.0);
    // the token limit is honoured: a limit of 2 gives the first 2 tokens of the same
    // answer (this barely trained model runs on to the limit: it rarely says </s>)
    let mut short = Glimpse::load(&pkg).unwrap();
    short.max_new_tokens = 2;
    let b = short.caption(&s.image).unwrap();
    assert_eq!(b.tokens.len(), 2.min(a.tokens.len()));
    assert_eq!(b.tokens[..], a.tokens[..b.tokens.len()]);
    // ...and says it was cut when the full answer goes on past it
    if a.tokens.len() > 2 {
        assert_eq!(b.stop, Stop::TokenLimit);
    }
    // with the token limit out of reach the answer runs on until the model ends it or the
    // context (48 positions) is full, and says which
    short.max_new_tokens = 1000;
    let c = short.caption(&s.image).unwrap();
    let prefill = g.see(&s.image).unwrap().embeddings.len() / m.model.d_model
        + TokenStream::new(&g.tokenizer, &Prompt::Caption)
            .unwrap()
            .text_ids
            .len();
    // the answer's last token has no room left to be fed back
    let room = g.max_positions() + 1 - prefill;
    match c.stop {
        Stop::ContextFull => assert_eq!(c.tokens.len(), room),
        Stop::End => assert!(c.tokens.len() < room),
        Stop::TokenLimit => panic!("stopped at the token limit: {c:?}"),
    }
    assert_eq!(c.tokens[..a.tokens.len()], a.tokens[..]);

    let r = eval::evaluate_split(&g, 7, Split::Test, 2, eval::Scoring::default()).unwrap();
    assert_eq!(r.scenes, 2);
    assert!(r.qa_questions >= 2);
    let asked: usize = r.qa_by_kind.values().map(|(_, n)| n).sum();
    assert_eq!(asked, r.qa_questions);
    let right: usize = r.qa_by_kind.values().map(|(k, _)| k).sum();
    assert_eq!(r.qa_accuracy, right as f64 / asked as f64);
    // captions that do not read back into objects are counted, as a plain caption of each
    // scene tells (a barely trained model writes some)
    let invalid: Vec<String> = (0..2)
        .map(|i| g.caption(&glimpse_runtime::scene::sample(7, Split::Test, i).image))
        .map(|a| a.unwrap().text)
        .filter(|text| glimpse_runtime::scene::parse_caption(text).is_err())
        .collect();
    assert_eq!(r.invalid_captions, invalid.len());
    let listed: Vec<&String> = r.invalid_examples.iter().map(|(text, _)| text).collect();
    assert_eq!(listed, invalid.iter().collect::<Vec<_>>());
    // up to the first empty scene there is one empty scene; whether it was said to be
    // empty is what a plain caption of it says
    let first_empty = (0..)
        .map(|i| (i, glimpse_runtime::scene::sample(7, Split::Test, i)))
        .find(|(_, s)| s.scene.objects.is_empty())
        .unwrap();
    let upto = eval::evaluate_split(
        &g,
        7,
        Split::Test,
        first_empty.0 + 1,
        eval::Scoring::default(),
    )
    .unwrap();
    assert_eq!(upto.empty_scenes, 1);
    let said = g.caption(&first_empty.1.image).unwrap().text;
    let said_empty = glimpse_runtime::scene::parse_caption(&said).is_ok_and(|o| o.is_empty());
    assert_eq!(upto.empty_said_empty, usize::from(said_empty));
    package::write_metrics(
        &pkg,
        serde_json::json!({"test": {"qa_accuracy": r.qa_accuracy}}),
    )
    .unwrap();
    // metrics live in the manifest, which is not checksummed: the package still loads
    let g = Glimpse::load(&pkg).unwrap();
    assert_eq!(
        g.package.manifest.metrics["eval"]["test"]["qa_accuracy"].as_f64(),
        Some(r.qa_accuracy)
    );
    assert!(pkg.join(MANIFEST_FILE).is_file());
}

#[test]
fn train_on_a_folder_of_images_with_captions() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    data::write_scenes(&images, 3, Split::Train, 0, 12).unwrap();
    let folder = data::load_folder(&images, Default::default(), 8, 1 << 20).unwrap();
    let mut options = tiny_options(3);
    options.data = Some(images.clone());
    let run = dir.path().join("run");
    let p = train::train(&run, options, false, Default::default()).unwrap();
    assert_eq!(p.step, 3);
    let info = train::read_run(&run).unwrap();
    assert_eq!(info.data["source"], "folder");
    use data::ExampleSource;
    assert!(!folder.validation(100).is_empty());

    // a broken captions.jsonl is named with its line
    std::fs::write(
        images.join("captions.jsonl"),
        "{\"image\": \"scene-0.png\", \"caption\": \"a scene\"}\nnot json\n",
    )
    .unwrap();
    let e = data::load_folder(&images, Default::default(), 8, 1 << 20)
        .err()
        .expect("broken index loads");
    assert!(format!("{e:#}").contains("captions.jsonl:2"), "{e:#}");
}

#[test]
fn the_same_seed_and_command_give_the_same_model() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let weights = |name: &str, seed: u64| {
        let run = dir.path().join(name);
        let mut o = tiny_options(2);
        o.seed = seed;
        train::train(&run, o, false, Default::default()).unwrap();
        let info = train::read_run(&run).unwrap();
        let model = train::load_model(&run, &info, &train::device()).unwrap();
        glimpse_exporter::model::weights::collect(&model)
    };
    let a = weights("a", 11);
    let b = weights("b", 11);
    let c = weights("c", 12);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// `eval --data`: the bundled package on a folder whose expected answers are, by design,
/// partly the model's own (right) and partly "zebra" (wrong). Every figure is checked
/// against a count made here from the runtime's plain `caption` and `ask`.
#[test]
fn a_folder_is_scored_with_figures_that_match_a_count_by_hand() {
    use std::collections::{BTreeMap, HashMap};
    let dir = tempfile::tempdir().unwrap();
    data::write_scenes(dir.path(), 11, Split::Test, 0, 6).unwrap();
    let pkg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/glimpse-default");
    let g = Glimpse::load(&pkg).unwrap();
    let index = dir.path().join("captions.jsonl");
    let text = std::fs::read_to_string(&index).unwrap();
    let mut lines = String::new();
    // by hand: (correct, asked) overall, per expected answer, per question; wrong pairs
    let (mut correct, mut asked) = (0, 0);
    let mut by_answer: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut by_question: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut wrong: HashMap<(String, String), usize> = HashMap::new();
    let mut exact_captions = 0;
    for (i, line) in text.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let frame = image::open(dir.path().join(v["image"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let scored = i < 4;
        v["split"] = if scored { "test" } else { "train" }.into();
        let said = g.caption(&frame).unwrap().text;
        v["caption"] = if i % 2 == 0 {
            said.clone()
        } else {
            "a zebra".into()
        }
        .into();
        exact_captions += usize::from(scored && i % 2 == 0);
        // one question every line repeats, so that per-question figures exist
        let qa = v["qa"].as_array_mut().unwrap();
        qa.push(serde_json::json!({"q": "how many objects are there?", "a": "x"}));
        for (k, q) in qa.iter_mut().enumerate() {
            let question = q["q"].as_str().unwrap().to_string();
            let got = g.ask(&frame, &question).unwrap().text;
            assert_ne!(got, "zebra");
            let expected = if (i + k) % 3 == 0 {
                "zebra".to_string()
            } else {
                got.clone()
            };
            q["a"] = expected.clone().into();
            if !scored {
                continue;
            }
            let ok = expected == got;
            correct += usize::from(ok);
            asked += 1;
            for (key, map) in [(&expected, &mut by_answer), (&question, &mut by_question)] {
                let e = map.entry(key.clone()).or_default();
                e.0 += usize::from(ok);
                e.1 += 1;
            }
            if !ok {
                *wrong.entry((expected, got)).or_default() += 1;
            }
        }
        lines += &format!("{v}\n");
    }
    std::fs::write(&index, lines).unwrap();

    let folder = data::FolderIndex::read(dir.path(), Default::default()).unwrap();
    let r = eval::evaluate_folder(&g, &folder, eval::Lines::Test, false).unwrap();
    assert_eq!(r.images, 4);
    assert_eq!((r.qa.correct, r.qa.asked), (correct, asked));
    assert!(correct > 0 && correct < asked, "{correct} of {asked}");
    assert_eq!(r.qa_accuracy, Some(correct as f64 / asked as f64));
    let tallies = |m: &BTreeMap<String, eval::Tally>| -> BTreeMap<String, (usize, usize)> {
        m.iter()
            .map(|(k, t)| (k.clone(), (t.correct, t.asked)))
            .collect()
    };
    assert_eq!(tallies(&r.by_answer), by_answer);
    by_question.retain(|_, t| t.1 > 1);
    assert_eq!(tallies(&r.by_question), by_question);
    assert!(by_question["how many objects are there?"].1 >= 4);
    let mut wrong: Vec<(usize, String, String)> =
        wrong.into_iter().map(|((e, g), n)| (n, e, g)).collect();
    wrong.sort_by(|a, b| b.0.cmp(&a.0).then((&a.1, &a.2).cmp(&(&b.1, &b.2))));
    wrong.truncate(eval::CONFUSIONS);
    let got: Vec<(usize, String, String)> = r
        .confusions
        .iter()
        .map(|c| (c.count, c.expected.clone(), c.got.clone()))
        .collect();
    assert_eq!(got, wrong);
    assert_eq!((r.captions.correct, r.captions.asked), (exact_captions, 4));
    assert_eq!(r.caption_exact, Some(0.5));
    if g.can_match() {
        assert_eq!(r.retrieval.unwrap().queries, 4);
    }

    // the train lines are scored with --split all, and a folder with no test lines says
    // how to mark them
    let all = eval::evaluate_folder(&g, &folder, eval::Lines::All, false).unwrap();
    assert_eq!((all.images, all.captions.asked), (6, 6));
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace("\"test\"", "\"val\"");
    std::fs::write(&index, text).unwrap();
    let folder = data::FolderIndex::read(dir.path(), Default::default()).unwrap();
    let e = eval::evaluate_folder(&g, &folder, eval::Lines::Test, false).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("captions.jsonl has no test lines") && e.contains("--split all"),
        "{e}"
    );
    // an image that went missing is named with its line
    std::fs::remove_file(dir.path().join("scene-2.png")).unwrap();
    let e = eval::evaluate_folder(&g, &folder, eval::Lines::Val, false).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("captions.jsonl:3") && e.contains("scene-2.png"),
        "{e}"
    );
}

/// `train --init PKG`: a package's f32 graphs give back exactly the weights it was written
/// from, fine-tuning starts from them with the package's tokenizer grown by the folder's
/// new words (old ids kept), and a package without f32 graphs is refused with the reason.
#[test]
fn a_package_is_fine_tuned_from_its_f32_weights() {
    use glimpse_exporter::model::weights::collect;
    use glimpse_exporter::unpack;
    use glimpse_runtime::package::Precision;
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train::train(&run, tiny_options(3), false, Default::default()).unwrap();
    let pkg = dir.path().join("pkg");
    package::export(&run, &pkg, "tiny", &[Precision::F32, Precision::Q4]).unwrap();
    let device = train::device();
    let trained = train::load_model(&run, &train::read_run(&run).unwrap(), &device).unwrap();
    let u = unpack::unpack(&pkg, &device).unwrap();
    let (mut back, mut want) = (collect(&u.model), collect(&trained));
    // the temperature goes through the manifest as exp(scale): equal to rounding
    let (a, b) = (
        back.remove("logit_scale").unwrap(),
        want.remove("logit_scale").unwrap(),
    );
    assert!((a.data[0] - b.data[0]).abs() < 1e-5, "{a:?} {b:?}");
    assert_eq!(back, want);
    assert_eq!(u.match_dim, tiny_options(3).match_dim);

    // a folder whose questions bring a word the package's tokenizer never saw
    let images = dir.path().join("images");
    data::write_scenes(&images, 5, Split::Train, 0, 6).unwrap();
    let index = images.join("captions.jsonl");
    let lines: String = std::fs::read_to_string(&index)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let qa = serde_json::json!({"q": "is there a zebra?", "a": "no zebra"});
            v["qa"].as_array_mut().unwrap().push(qa);
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&index, lines).unwrap();
    let mut options = tiny_options(2);
    options.init = Some(pkg.clone());
    options.data = Some(images);
    let tuned = dir.path().join("tuned");
    let p = train::train(&tuned, options, false, Default::default()).unwrap();
    assert_eq!(p.step, 2);
    let load = |f: &std::path::Path| glimpse_exporter::tokenizer::load(f).unwrap();
    let (old, new) = (
        load(&pkg.join("tokenizer.json")),
        load(&tuned.join("tokenizer.json")),
    );
    let (old_vocab, new_vocab) = (old.inner().get_vocab(true), new.inner().get_vocab(true));
    assert!(new_vocab.len() > old_vocab.len());
    for (token, id) in &old_vocab {
        assert_eq!(new_vocab.get(token), Some(id), "{token} moved");
    }
    let zebra = new.encode(" zebra").unwrap();
    assert_eq!(zebra.len(), 1);
    assert!(zebra[0] as usize >= old_vocab.len());
    let info = train::read_run(&tuned).unwrap();
    assert_eq!(info.model.vocab_size, new_vocab.len());
    assert_eq!(
        glimpse_runtime::ModelConfig {
            vocab_size: u.manifest.model.vocab_size,
            ..info.model.clone()
        },
        u.manifest.model
    );
    let after = train::load_model(&tuned, &info, &device).unwrap();
    // the old rows of the embedding moved by two steps of training only
    let (a, b) = (collect(&after), collect(&trained));
    let (ta, tb) = (&a["embed_tokens.weight"], &b["embed_tokens.weight"]);
    assert_eq!(ta.dims, [new_vocab.len(), tb.dims[1]]);
    let drift = ta.data[..tb.data.len()]
        .iter()
        .zip(&tb.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        drift > 0.0 && drift < 0.05,
        "old embedding rows moved by {drift}"
    );
    // the grown run exports and runs like any other
    let tuned_pkg = dir.path().join("tuned-pkg");
    package::export(&tuned, &tuned_pkg, "tuned", &[Precision::F32]).unwrap();
    let g = Glimpse::load(&tuned_pkg).unwrap();
    assert_eq!(g.package.manifest.model.vocab_size, new_vocab.len());
    let frame = glimpse_runtime::scene::sample(5, Split::Train, 0).image;
    g.ask(&frame, "is there a zebra?").unwrap();

    // q4 graphs alone cannot be trained
    let q4 = dir.path().join("q4");
    package::export(&run, &q4, "tiny", &[Precision::Q4]).unwrap();
    let e = unpack::unpack(&q4, &device).err().unwrap().to_string();
    assert!(e.contains("no f32 graphs") && e.contains("q4"), "{e}");
    // a damaged graph is named (the package's checksums catch it first)
    let broken = dir.path().join("pkg").join("decoder.onnx");
    let mut bytes = std::fs::read(&broken).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&broken, bytes).unwrap();
    let e = unpack::unpack(&pkg, &device).err().unwrap();
    assert!(format!("{e:#}").contains("decoder.onnx"), "{e:#}");

    // the bundled package opens the same way
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/glimpse-default");
    let b = unpack::unpack(&bundled, &device).unwrap();
    assert_eq!(
        b.manifest.name,
        Glimpse::load(&bundled).unwrap().package.manifest.name
    );
}

/// `export PKG`: a package's f32 weights written again by this exporter give the same
/// weights back, the same answers and the package's training record; the evaluation is
/// not carried over, and writing over the package being read is refused.
#[test]
fn a_package_is_exported_again_from_its_weights() {
    use glimpse_exporter::model::weights::collect;
    use glimpse_exporter::unpack;
    use glimpse_runtime::package::Precision;
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/glimpse-default");
    let again = dir.path().join("again");
    package::export(&bundled, &again, "again", &[Precision::F32, Precision::Q4]).unwrap();
    let device = train::device();
    let (a, b) = (
        unpack::unpack(&bundled, &device).unwrap(),
        unpack::unpack(&again, &device).unwrap(),
    );
    assert_eq!(collect(&a.model), collect(&b.model));
    assert_eq!(b.manifest.precisions, [Precision::F32, Precision::Q4]);
    assert_eq!(b.manifest.model, a.manifest.model);
    assert_eq!(
        b.manifest.matching.map(|m| m.dim),
        a.manifest.matching.map(|m| m.dim)
    );
    assert_eq!(
        b.manifest.metrics["training"],
        a.manifest.metrics["training"]
    );
    assert!(b.manifest.metrics.get("eval").is_none());
    let (old, new) = (
        Glimpse::load(&bundled).unwrap(),
        Glimpse::load(&again).unwrap(),
    );
    for i in 0..6 {
        let frame = glimpse_runtime::frame::load_image(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("examples/scene-{i}.png")),
        )
        .unwrap();
        let (x, y) = (old.caption(&frame).unwrap(), new.caption(&frame).unwrap());
        assert_eq!(x.text, y.text, "scene-{i}");
    }
    let e = package::export(&again, &again, "again", &[Precision::F32]).unwrap_err();
    assert!(format!("{e:#}").contains("--out"), "{e:#}");
    assert!(again.join("decoder.onnx").is_file());
}
