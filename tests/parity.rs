//! burn (training) and tract (runtime) compute the same model: same logits for the prefill
//! and for cached decode steps, and greedy decoding with the KV cache equals decoding
//! that recomputes the whole sequence every step.

mod common;

use glimpse_exporter::burn::prelude::*;
use glimpse_exporter::model::Rotary;
use glimpse_runtime::Glimpse;
use glimpse_runtime::generate::argmax;
use glimpse_runtime::scene::{Split, sample};
use glimpse_runtime::text::{Prompt, TokenStream};

use common::{max_abs_diff, random_package};

/// The frame's patches (the runtime's preprocessing) as a burn tensor `[1, R, C, 3·P·P]`.
fn burn_patches(g: &Glimpse, frame: &image::RgbImage, device: &Device) -> Tensor<4> {
    let patches = g.patches(frame);
    Tensor::from_data(
        TensorData::new(patches.data, [1, patches.rows, patches.cols, patches.dim]),
        device,
    )
}

#[test]
fn burn_and_tract_logits_agree_for_prefill_and_cached_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (model, run) = random_package(dir.path());
    let g = Glimpse::load(dir.path().join("pkg")).unwrap();
    let cfg = &run.model;
    let v = cfg.vocab_size;
    let frame = sample(3, Split::Test, 0).image;

    let stream = TokenStream::new(
        &g.tokenizer,
        &Prompt::Question("what color is the star?".into()),
    )
    .unwrap();
    let extra = [17u32, 42, 9]; // three decode steps
    let mut text: Vec<u32> = stream.text_ids.clone();
    text.extend(extra);

    // burn: the whole sequence at once
    let device = Device::default();
    let p = burn_patches(&g, &frame, &device);
    let ids: Vec<i64> = text.iter().map(|&t| t as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, text.len()]), &device);
    let rotary = Rotary::new(cfg, &device);
    let reference: Vec<f32> = model
        .forward(p, ids, &rotary, cfg.n_heads)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    // tract: prefill image + prompt, then one token per step with the cache
    let image = g.see(&frame).unwrap();
    let mut prefix = image.embeddings.clone();
    prefix.extend(g.embed(&stream.text_ids).unwrap());
    // the decoder gives the last position's logits: prefills cut at an image token, a
    // newline, inside the prompt and at its end check positions across the sequence
    let n = g.canvas().image_tokens() + stream.text_ids.len();
    let d_model = cfg.d_model;
    let cols = g.canvas().cols();
    for cut in [cols / 2 + 1, cols + 1, n - 2, n] {
        let mut fresh = g.session().unwrap();
        let logits = fresh.forward(&prefix[..cut * d_model]).unwrap();
        assert_eq!(logits.len(), v, "the last position's logits only");
        let d = max_abs_diff(&logits, &reference[(cut - 1) * v..cut * v]);
        assert!(
            d <= 1e-3,
            "prefill logits at position {} differ by {d}",
            cut - 1
        );
    }
    let mut session = g.session().unwrap();
    session.forward(&prefix).unwrap();
    for (k, &tok) in extra.iter().enumerate() {
        let step = session.forward(&g.embed(&[tok]).unwrap()).unwrap();
        let at = n + k;
        let d = max_abs_diff(&step, &reference[at * v..(at + 1) * v]);
        assert!(d <= 1e-3, "cached step {k} logits differ by {d}");
    }
    assert_eq!(session.len(), n + extra.len());
}

#[test]
fn greedy_with_cache_equals_recomputing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    random_package(dir.path());
    let mut g = Glimpse::load(dir.path().join("pkg")).unwrap();
    g.max_new_tokens = 6;
    let frame = sample(3, Split::Test, 1).image;
    let cached = g.caption(&frame).unwrap();

    let stream = TokenStream::new(&g.tokenizer, &Prompt::Caption).unwrap();
    let mut seq = g.see(&frame).unwrap().embeddings;
    seq.extend(g.embed(&stream.text_ids).unwrap());
    let eos = g.tokenizer.special().eos;
    let mut tokens = Vec::new();
    while tokens.len() < g.max_new_tokens {
        // a fresh session each step: no cache at all
        let logits = g.session().unwrap().forward_last(&seq).unwrap();
        let next = argmax(&logits);
        if next == eos {
            break;
        }
        tokens.push(next);
        seq.extend(g.embed(&[next]).unwrap());
    }
    assert!(!tokens.is_empty());
    assert_eq!(cached.tokens, tokens);
}

#[test]
fn questions_continuing_a_shared_image_cache_match_fresh_runs() {
    let dir = tempfile::tempdir().unwrap();
    random_package(dir.path());
    let mut g = Glimpse::load(dir.path().join("pkg")).unwrap();
    g.max_new_tokens = 4;
    let s = sample(3, Split::Test, 2);
    let image = g.see(&s.image).unwrap();
    let seen = g.image_session(&image).unwrap();
    assert_eq!(seen.len(), g.canvas().image_tokens());
    for qa in &s.qa {
        let stream =
            TokenStream::new(&g.tokenizer, &Prompt::Question(qa.question.clone())).unwrap();
        let fresh = g.run_with_image(&image, &stream, &mut |_| {}).unwrap();
        let shared = g
            .run_after_image(seen.clone(), &image, &stream, &mut |_| {})
            .unwrap();
        assert_eq!(fresh.tokens, shared.tokens, "{}", qa.question);
    }
    // the shared session itself was never advanced
    assert_eq!(seen.len(), g.canvas().image_tokens());
}

#[test]
fn burn_and_tract_image_and_text_embeddings_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (model, run) = random_package(dir.path());
    let g = Glimpse::load(dir.path().join("pkg")).unwrap();
    assert!(g.can_match());
    let cfg = &run.model;
    let device = Device::default();
    let rotary = Rotary::new(cfg, &device);
    let to_vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();

    // image: the decoder state after the image tokens, through the image head
    let frame = sample(3, Split::Test, 2).image;
    let p = burn_patches(&g, &frame, &device);
    let bos = Tensor::<2, Int>::from_data(
        TensorData::new(vec![g.tokenizer.special().bos as i64], [1, 1]),
        &device,
    );
    let hidden = model.forward_hidden(p, bos, &rotary, cfg.n_heads);
    let last_image = g.canvas().image_tokens() - 1;
    let state = hidden.narrow(1, last_image, 1).reshape([1, cfg.d_model]);
    let burn_image = to_vec(model.image_embedding(state));
    let tract_image = g.image_embedding(&frame).unwrap();
    let d = max_abs_diff(&burn_image, &tract_image);
    assert!(d <= 1e-4, "image embeddings differ by {d}");
    let norm: f32 = tract_image.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "image embedding has length {norm}"
    );

    // text: `<s> text </s>` alone, the state at `</s>`, through the text head
    let text = "a small blue square left of a large red circle";
    let ids = glimpse_runtime::text::match_ids(&g.tokenizer, text).unwrap();
    let n = ids.len();
    let ids_t = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, n]),
        &device,
    );
    let last = Tensor::<1, Int>::from_data(TensorData::new(vec![n as i64 - 1], [1]), &device);
    let burn_text =
        to_vec(model.text_embedding(model.text_state(ids_t, last, &rotary, cfg.n_heads)));
    let tract_text = g.text_embedding(text).unwrap();
    let d = max_abs_diff(&burn_text, &tract_text);
    assert!(d <= 1e-4, "text embeddings differ by {d}");

    // and the scores are their cosine, ranked the same way
    let scores = g
        .match_texts(&frame, &[text, "a large red circle"])
        .unwrap();
    let cos: f32 = burn_image.iter().zip(&burn_text).map(|(a, b)| a * b).sum();
    assert!((scores[0].cosine - cos).abs() < 1e-4);
    assert!((scores[0].probability + scores[1].probability - 1.0).abs() < 1e-5);
}
