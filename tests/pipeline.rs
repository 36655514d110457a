//! The whole chain on a tiny model: train a few steps (and resume), export a package, run it
//! with the runtime, evaluate it; and training on a folder of the user's own images.

mod common;

use glimpse_exporter::train::{self, TrainOptions};
use glimpse_exporter::{data, eval, package};
use glimpse_runtime::Glimpse;
use glimpse_runtime::package::MANIFEST_FILE;
use glimpse_runtime::scene::Split;

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

#[test]
fn train_resume_export_run_and_evaluate() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let p = train::train(&run, tiny_options(6), false, None).unwrap();
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
    let e = train::train(&run, tiny_options(9), false, None).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    // resuming continues from the checkpoint and keeps the history
    let p = train::train(&run, tiny_options(9), true, None).unwrap();
    assert_eq!(p.step, 9);
    assert_eq!(p.val_loss.len(), 3);
    assert_eq!(p.val_loss[2].0, 9);

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

    let r = eval::evaluate_split(&g, 7, Split::Test, 2).unwrap();
    assert_eq!(r.scenes, 2);
    assert!(r.qa_questions >= 2);
    let asked: usize = r.qa_by_kind.values().map(|(_, n)| n).sum();
    assert_eq!(asked, r.qa_questions);
    let right: usize = r.qa_by_kind.values().map(|(k, _)| k).sum();
    assert_eq!(r.qa_accuracy, right as f64 / asked as f64);
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
    let folder = data::load_folder(&images).unwrap();
    let mut options = tiny_options(3);
    options.data = Some(images.clone());
    let run = dir.path().join("run");
    let p = train::train(&run, options, false, None).unwrap();
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
    let e = data::load_folder(&images)
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
        train::train(&run, o, false, None).unwrap();
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
