//! Latency of the steps a frame goes through, on the bundled model (criterion).
//!
//! `cargo bench --bench latency` (add `-- --quick` for a short run). Per figure: frame →
//! patches, patches → image embeddings, time to first token (image and prompt prefilled
//! from patches), one cached decode step, a whole caption, and image–text matching when
//! the package can. `glimpse bench` measures the same end to end, with memory, and
//! `scripts/perf` compares against onnxruntime.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

use glimpse_runtime::Glimpse;
use glimpse_runtime::generate::argmax;
use glimpse_runtime::scene::{Split, sample};
use glimpse_runtime::text::{Prompt, TokenStream};

fn bundled() -> Glimpse {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/glimpse-default");
    Glimpse::load(&dir).expect("the bundled model loads")
}

fn frame_640x480() -> image::RgbImage {
    let s = sample(7, Split::Test, 0);
    image::imageops::resize(&s.image, 640, 480, image::imageops::FilterType::Triangle)
}

fn latency(c: &mut Criterion) {
    let g = bundled();
    let frame = frame_640x480();
    let patches = g.patches(&frame);
    let stream = TokenStream::new(&g.tokenizer, &Prompt::Caption).unwrap();
    let text = g.embed(&stream.text_ids).unwrap();

    c.bench_function("preprocess 640x480 -> patches", |b| {
        b.iter(|| g.patches(black_box(&frame)))
    });
    c.bench_function("vision graph", |b| {
        b.iter(|| g.see_patches(black_box(&patches)).unwrap())
    });
    c.bench_function("time to first token (from patches)", |b| {
        b.iter(|| {
            let image = g.see_patches(&patches).unwrap();
            let mut prefix = image.embeddings;
            prefix.extend_from_slice(&text);
            argmax(&g.session().unwrap().forward_last(&prefix).unwrap())
        })
    });
    // a session holding image and prompt; each iteration decodes one token from a copy
    let image = g.see_patches(&patches).unwrap();
    let mut prefix = image.embeddings.clone();
    prefix.extend_from_slice(&text);
    let mut session = g.session().unwrap();
    let first = argmax(&session.forward_last(&prefix).unwrap());
    let step = g.embed(&[first]).unwrap();
    c.bench_function("decode one token (KV cache)", |b| {
        b.iter_batched(
            || session.clone(),
            |mut s| s.forward_last(black_box(&step)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("caption (from the frame)", |b| {
        b.iter(|| g.caption(black_box(&frame)).unwrap())
    });
    if g.can_match() {
        let target = g.text_embedding("a large red circle").unwrap();
        c.bench_function("match: image embedding + cosine", |b| {
            b.iter(|| {
                let e = g.image_embedding(black_box(&frame)).unwrap();
                glimpse_runtime::matching::cosine(&e, &target)
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = latency
}
criterion_main!(benches);
