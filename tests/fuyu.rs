//! Imported Fuyu checkpoints against transformers.
//!
//! `tests/fixtures/fuyu` holds tiny random `FuyuForCausalLM` checkpoints and what
//! transformers' `FuyuProcessor` and model give on them (written by
//! `scripts/fuyu-reference`; `GLIMPSE_FUYU_REFERENCE=DIR` points the tests at a fresh set):
//! - `tiny-a`: 4 heads of 8, the published checkpoints' weight names, one file;
//! - `tiny-b`: 3 heads of 12, the current names, five shards with an index;
//! - `tiny-bf16`: tiny-a's shape stored in bfloat16.
//!
//! Each is imported and must give transformers' patches and token stream, its prefill and
//! cached-step logits within 1e-4, and its 20 greedy tokens.

use std::path::{Path, PathBuf};

use glimpse_exporter::hf::safetensors::{self, Checkpoint, Dtype};
use glimpse_exporter::hf::{self, ImportOptions};
use glimpse_runtime::frame::{Size, load_image};
use glimpse_runtime::generate::argmax;
use glimpse_runtime::package::Precision;
use glimpse_runtime::text::{Prompt, TokenStream};
use glimpse_runtime::{Error, Glimpse};
use serde_json::Value;

fn fixtures() -> PathBuf {
    std::env::var_os("GLIMPSE_FUYU_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuyu"))
}

fn import(dir: &Path, out: &Path, precisions: &[Precision]) -> anyhow::Result<hf::Imported> {
    hf::import(&ImportOptions {
        dir,
        out,
        name: None,
        precisions,
        max_image: None,
        progress: false,
    })
}

/// An imported copy of fixture `model` at `precisions`.
fn imported(model: &str, precisions: &[Precision]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pkg");
    import(&fixtures().join(model), &out, precisions).unwrap();
    (tmp, out)
}

fn reference(model: &str) -> Value {
    let path = fixtures().join(model).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The request a reference prompt stands for: the package's caption prompt, or a
/// question in its template.
fn prompt(text: &str) -> Prompt {
    if text == hf::CAPTION_PROMPT {
        Prompt::Caption
    } else {
        Prompt::Question(text.trim_end_matches('\n').to_string())
    }
}

fn read_patches(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn check_against_transformers(model: &str) {
    let (_tmp, pkg) = imported(model, &[Precision::F32]);
    let mut g = Glimpse::load_with(&pkg, Some(Precision::F32)).unwrap();
    let r = reference(model);
    let dir = fixtures().join(model);
    for case in r["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let frame = load_image(&dir.join(case["image"].as_str().unwrap())).unwrap();
        let prompt = prompt(case["prompt"].as_str().unwrap());

        // the processor: token stream and patches
        let stream = TokenStream::new(&g.tokenizer, &prompt).unwrap();
        let (rows, cols) = g
            .image_format()
            .grid_for(&g.canvas(), frame.width(), frame.height());
        assert_eq!(
            stream.full_ids(&g.tokenizer, rows, cols),
            ids(&case["input_ids"]),
            "{model} {name}: token stream"
        );
        let want = read_patches(&dir.join(format!("patches-{name}.f32")));
        let ours = g.patches(&frame);
        let resized = g
            .image_format()
            .fitted_size(&g.canvas(), frame.width(), frame.height())
            != frame.dimensions();
        let d = max_diff(&ours.data, &want);
        // a frame that needs no resizing is the processor's to the last bit; a resized one
        // goes through another antialiased bilinear filter than torchvision's, and may
        // differ by one 8-bit level (2/255 after normalising)
        let limit = if resized { 2.0 / 255.0 + 1e-6 } else { 1e-6 };
        assert!(
            d <= limit,
            "{model} {name}: patches differ by {d} (resized: {resized})"
        );

        // the model, from transformers' own patches
        let patches = glimpse_runtime::frame::Patches {
            rows,
            cols,
            dim: ours.dim,
            data: want,
        };
        let image = g.see_patches(&patches).unwrap();
        let mut prefix = image.embeddings.clone();
        prefix.extend(g.embed(&stream.text_ids).unwrap());
        let mut session = g.session().unwrap();
        let logits = session.forward_last(&prefix).unwrap();
        let d = max_diff(&logits, &floats(&case["prefill_logits"]));
        assert!(d <= 1e-4, "{model} {name}: prefill logits differ by {d}");
        let greedy = ids(&case["greedy"]);
        let mut tokens = vec![argmax(&logits)];
        for (k, want) in case["step_logits"].as_array().unwrap().iter().enumerate() {
            let l = session
                .forward_last(&g.embed(&[greedy[k]]).unwrap())
                .unwrap();
            let d = max_diff(&l, &floats(want));
            assert!(
                d <= 1e-4,
                "{model} {name}: cached step {k} logits differ by {d}"
            );
            tokens.push(argmax(&l));
        }
        while tokens.len() < greedy.len() {
            let t = *tokens.last().unwrap();
            let l = session.forward_last(&g.embed(&[t]).unwrap()).unwrap();
            tokens.push(argmax(&l));
        }
        assert_eq!(tokens, greedy, "{model} {name}: 20 greedy tokens");

        // and the whole pipeline from the image file, stopping at the end token
        g.max_new_tokens = greedy.len();
        let answer = g.run(&frame, &prompt, &mut |_| {}).unwrap();
        let eos = g.tokenizer.special().eos;
        let until_eos: Vec<u32> = greedy.iter().copied().take_while(|&t| t != eos).collect();
        assert_eq!(answer.tokens, until_eos, "{model} {name}: pipeline tokens");
        eprintln!(
            "{model} {name}: {rows}x{cols} patches, patches max diff {:.2e}, {:?}",
            max_diff(
                &ours.data,
                &read_patches(&dir.join(format!("patches-{name}.f32")))
            ),
            answer.text
        );
    }
}

#[test]
fn tiny_fuyu_with_published_names_matches_transformers() {
    check_against_transformers("tiny-a");
}

#[test]
fn sharded_fuyu_with_odd_heads_and_current_names_matches_transformers() {
    check_against_transformers("tiny-b");
}

#[test]
fn bf16_checkpoint_is_converted_and_matches_transformers() {
    check_against_transformers("tiny-bf16");
}

/// Token agreement of each precision with f32 on the cases' greedy continuations, as
/// `glimpse-export compare` measures it: the f32 tokens are fed, and each step counts
/// when the precision's argmax is the f32 token.
#[test]
fn precisions_agree_with_f32() {
    let (_tmp, pkg) = imported("tiny-a", &Precision::ALL);
    let r = reference("tiny-a");
    let dir = fixtures().join("tiny-a");
    let mut line = Vec::new();
    for p in [Precision::F16, Precision::Int8, Precision::Q4] {
        let g = Glimpse::load_with(&pkg, Some(p)).unwrap();
        let (mut same, mut total) = (0, 0);
        for case in r["cases"].as_array().unwrap() {
            let frame = load_image(&dir.join(case["image"].as_str().unwrap())).unwrap();
            let stream =
                TokenStream::new(&g.tokenizer, &prompt(case["prompt"].as_str().unwrap())).unwrap();
            let image = g.see(&frame).unwrap();
            let mut prefix = image.embeddings.clone();
            prefix.extend(g.embed(&stream.text_ids).unwrap());
            let mut session = g.session().unwrap();
            let mut logits = session.forward_last(&prefix).unwrap();
            for t in ids(&case["greedy"]) {
                same += usize::from(argmax(&logits) == t);
                total += 1;
                logits = session.forward_last(&g.embed(&[t]).unwrap()).unwrap();
            }
        }
        let agreement = same as f64 / total as f64;
        line.push(format!("{p} {:.1} %", 100.0 * agreement));
        // f16 rounds weights and activations only slightly
        if p == Precision::F16 {
            assert!(agreement >= 0.95, "f16 agrees on {same} of {total} tokens");
        }
    }
    eprintln!("tiny-a token agreement with f32: {}", line.join(", "));
}

/// Board builds parse only `tract_onnx::ops::TRANSFORMER_OPS` (without tract-onnx's
/// `all-ops` feature): every graph the exporter writes, imported at every precision and
/// trained (the bundled package), must keep to them.
#[test]
fn written_graphs_use_only_operators_board_builds_parse() {
    let (_tmp, pkg) = imported("tiny-a", &Precision::ALL);
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/glimpse-default");
    let mut graphs = 0;
    for dir in [pkg, bundled] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "onnx") {
                continue;
            }
            let proto =
                tract_onnx::prelude::Framework::proto_model_for_path(&tract_onnx::onnx(), &path)
                    .unwrap();
            for node in proto.graph.iter().flat_map(|g| &g.node) {
                assert!(
                    tract_onnx::ops::TRANSFORMER_OPS.contains(&node.op_type.as_str()),
                    "{} uses {}, which board builds do not parse",
                    path.display(),
                    node.op_type
                );
            }
            graphs += 1;
        }
    }
    // vision, embedding and decoder at four precisions, twice, and the bundled heads
    assert_eq!(graphs, 25);
}

/// A writable copy of fixture `model`.
fn copy_fixture(model: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(model);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixtures().join(model)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (tmp, dst)
}

/// Imports `dir` to a new folder and expects an error containing every one of `words`,
/// with no package (and no partial folder) left behind.
fn import_fails(dir: &Path, words: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("pkg");
    let e = match import(dir, &out, &[Precision::F32, Precision::Q4]) {
        Ok(_) => panic!("importing {} should fail ({words:?})", dir.display()),
        Err(e) => format!("{e:#}"),
    };
    for w in words {
        assert!(e.contains(w), "error {e:?} should mention {w:?}");
    }
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a failed import left {left:?}");
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn checkpoints_of_other_models_or_with_missing_parts_are_refused() {
    // another model type
    let (_t, dir) = copy_fixture("tiny-a");
    edit_json(&dir.join("config.json"), |v| {
        v["model_type"] = "llava".into()
    });
    import_fails(&dir, &["config.json", "model_type", "llava"]);

    // a shard the index lists is missing
    let (_t, dir) = copy_fixture("tiny-b");
    std::fs::remove_file(dir.join("model-00003-of-00005.safetensors")).unwrap();
    import_fails(&dir, &["model-00003-of-00005.safetensors", "missing"]);

    // the index places a tensor in a shard that lacks it
    let (_t, dir) = copy_fixture("tiny-b");
    let name = "model.language_model.layers.1.mlp.dense_h_to_4h.weight";
    edit_json(&dir.join("model.safetensors.index.json"), |v| {
        let map = v["weight_map"].as_object_mut().unwrap();
        let elsewhere = if map[name] == "model-00001-of-00005.safetensors" {
            "model-00002-of-00005.safetensors"
        } else {
            "model-00001-of-00005.safetensors"
        };
        map.insert(name.into(), elsewhere.into());
    });
    import_fails(&dir, &[name]);

    // an index entry removed: the tensor is missing from the checkpoint
    let (_t, dir) = copy_fixture("tiny-b");
    edit_json(&dir.join("model.safetensors.index.json"), |v| {
        v["weight_map"].as_object_mut().unwrap().remove(name);
    });
    import_fails(&dir, &["layers.1.mlp_up.weight", "dense_h_to_4h"]);

    // no weights at all
    let (_t, dir) = copy_fixture("tiny-a");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    import_fails(&dir, &["model.safetensors"]);
}

/// Rewrites the header of a safetensors file with `f` (keeping its length, so the data
/// offsets stay right).
fn edit_header(path: &Path, f: impl FnOnce(&str) -> String) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let new = f(header);
    assert_eq!(
        new.len(),
        header.len(),
        "the edit must keep the header's length"
    );
    let mut out = bytes[..8].to_vec();
    out.extend(new.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn tensors_of_the_wrong_shape_or_type_and_truncated_files_are_refused() {
    let ln = "language_model.model.final_layernorm.weight";
    // a norm of 32 values stored as 2 x 16: a valid file, the wrong shape
    let (_t, dir) = copy_fixture("tiny-a");
    let file = dir.join("model.safetensors");
    let ckpt = Checkpoint::open(&dir).unwrap();
    let tensors: Vec<(String, Vec<usize>)> = ckpt
        .names()
        .map(|n| {
            let shape = if n == ln {
                vec![2, 16]
            } else {
                ckpt.info(n).unwrap().shape.clone()
            };
            (n.to_string(), shape)
        })
        .collect();
    let values: Vec<Vec<f32>> = tensors
        .iter()
        .map(|(n, _)| ckpt.read(n).unwrap().data)
        .collect();
    drop(ckpt);
    safetensors::write(&file, &tensors, Dtype::F32, |i| Ok(values[i].clone())).unwrap();
    import_fails(&dir, &[ln, "shape [2, 16]", "[32]", "model.safetensors"]);

    // integers where weights should be
    let (_t, dir) = copy_fixture("tiny-a");
    edit_header(&dir.join("model.safetensors"), |h| {
        let at = h.find(&format!("\"{ln}\"")).unwrap();
        let d = at + h[at..].find("\"F32\"").unwrap();
        format!("{}\"I32\"{}", &h[..d], &h[d + 5..])
    });
    import_fails(&dir, &[ln, "I32", "F32, F16 and BF16"]);

    // a shard cut short
    let (_t, dir) = copy_fixture("tiny-b");
    let shard = dir.join("model-00004-of-00005.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap();
    f.set_len(len / 2).unwrap();
    import_fails(&dir, &["model-00004-of-00005.safetensors", "truncated"]);
}

#[test]
fn tokenizers_and_image_settings_that_do_not_fit_are_refused() {
    // a tokenizer smaller than the model's vocabulary
    let (_t, dir) = copy_fixture("tiny-a");
    edit_json(&dir.join("config.json"), |v| {
        v["text_config"]["vocab_size"] = 131.into();
    });
    import_fails(&dir, &["tokenizer.json", "130 tokens", "vocab_size is 131"]);

    // no tokenizer
    let (_t, dir) = copy_fixture("tiny-a");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    import_fails(&dir, &["tokenizer.json", "missing"]);

    // a tokenizer cut short, as by an interrupted download
    let (_t, dir) = copy_fixture("tiny-a");
    let path = dir.join("tokenizer.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    import_fails(&dir, &["tokenizer.json", "not valid JSON"]);

    // a patch size the config does not have
    let (_t, dir) = copy_fixture("tiny-a");
    edit_json(&dir.join("processor_config.json"), |v| {
        v["image_processor"]["patch_size"] = serde_json::json!({"height": 16, "width": 16});
    });
    import_fails(&dir, &["processor_config.json", "patch_size", "30"]);

    // --max-image larger than the model's canvas, at import and at run time
    let out_dir = tempfile::tempdir().unwrap();
    let e = hf::import(&ImportOptions {
        dir: &fixtures().join("tiny-a"),
        out: &out_dir.path().join("pkg"),
        name: None,
        precisions: &[Precision::F32],
        max_image: Some("300x300".parse().unwrap()),
        progress: false,
    })
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("--max-image") && format!("{e:#}").contains("150x90"),
        "{e:#}"
    );
    assert!(!out_dir.path().join("pkg").exists());
}

#[test]
fn max_image_bounds_the_image_tokens() {
    let (_tmp, pkg) = imported("tiny-a", &[Precision::F32]);
    let mut g = Glimpse::load(&pkg).unwrap();
    let frame = load_image(&fixtures().join("tiny-a/big.png")).unwrap();
    // 400x200 fits the 150x90 canvas as 150x75: 3 rows of 5 patches and a newline each
    assert_eq!(g.image_tokens(400, 200), 18);
    let before = g.see(&frame).unwrap().embeddings.len() / 32;
    assert_eq!(before, 18);
    g.set_max_image(Some(Size {
        width: 60,
        height: 60,
    }))
    .unwrap();
    // 60x30: one row of 2 patches
    assert_eq!(g.image_tokens(400, 200), 3);
    assert_eq!(g.see(&frame).unwrap().embeddings.len() / 32, 3);
    assert!(!g.caption(&frame).unwrap().tokens.is_empty());
    let e = g
        .set_max_image(Some(Size {
            width: 151,
            height: 60,
        }))
        .unwrap_err();
    assert!(
        matches!(e, Error::Usage(_)) && e.to_string().contains("150x90"),
        "{e}"
    );
}

#[test]
fn broken_packages_and_matching_on_fuyu_give_clear_errors() {
    let (_tmp, pkg) = imported("tiny-a", &[Precision::F32]);
    // Fuyu has no matching heads
    let g = Glimpse::load(&pkg).unwrap();
    let frame = load_image(&fixtures().join("tiny-a/wide.png")).unwrap();
    let e = g.match_texts(&frame, &["a dog"]).unwrap_err();
    assert!(matches!(e, Error::NoMatching { .. }), "{e:?}");
    assert!(e.to_string().contains("Fuyu"), "{e}");
    drop(g);
    // external data cut short, then missing
    let data = pkg.join("decoder.onnx.data");
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = Glimpse::load(&pkg).err().expect("a truncated data file");
    assert!(
        e.to_string().contains("decoder.onnx.data") && e.to_string().contains("truncated"),
        "{e}"
    );
    std::fs::remove_file(&data).unwrap();
    let e = Glimpse::load(&pkg).err().expect("a missing data file");
    assert!(
        e.to_string().contains("decoder.onnx.data") && e.to_string().contains("missing"),
        "{e}"
    );
}

#[test]
fn an_existing_output_folder_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pkg");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = import(&fixtures().join("tiny-a"), &out, &[Precision::F32]).unwrap_err();
    assert!(format!("{e:#}").contains("already exists"), "{e:#}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
}

/// `glimpse-export export PKG` writes Glimpse's own packages again; an imported Fuyu
/// package is refused with the way to rewrite it (import its checkpoint again).
#[test]
fn an_imported_package_is_not_exported_again() {
    let (tmp, pkg) = imported("tiny-a", &[Precision::F32]);
    let out = tmp.path().join("again");
    let e = glimpse_exporter::package::export(&pkg, &out, "again", &[Precision::F32]).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("import-hf") && e.contains("another model family"),
        "{e}"
    );
    assert!(!out.join("decoder.onnx").exists());
}
