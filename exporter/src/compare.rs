//! `glimpse-export compare`: each precision a package carries, side by side with f32, on
//! the same test scenes and the same frame: accuracy, agreement of greedy tokens, size,
//! load time, time to first token, decode speed, and the tract kernels that ran.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use glimpse_runtime::Glimpse;
use glimpse_runtime::bench;
use glimpse_runtime::generate::argmax;
use glimpse_runtime::package::{
    DECODER_FILE, EMBEDDING_FILE, Precision, TOKENIZER_FILE, VISION_FILE,
};
use glimpse_runtime::scene::{self, Split};
use glimpse_runtime::text::{Prompt, TokenStream};

use crate::eval::{evaluate_split, package_seed};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub precision: Precision,
    pub caption_exact: f64,
    pub qa_accuracy: f64,
    /// Share of f32's greedy tokens (end of sequence included) that this precision also
    /// picks when fed f32's sequence (teacher forcing), over every caption and question.
    pub token_agreement: f64,
    pub tokens_compared: usize,
    /// Bytes of the files this precision runs (its three graphs and the tokenizer).
    pub bytes: u64,
    pub size_vs_f32: f64,
    pub load_ms: f64,
    pub first_token_ms: f64,
    pub decode_token_ms: f64,
    pub decode_token_p95_ms: f64,
    pub kernels: Vec<String>,
}

/// Every prompt of `scenes` test scenes: (scene index, prompt).
fn prompts(seed: u64, scenes: u64) -> Vec<(u64, Prompt)> {
    let mut out = Vec::new();
    for i in 0..scenes {
        out.push((i, Prompt::Caption));
        for qa in scene::sample(seed, Split::Test, i).qa {
            out.push((i, Prompt::Question(qa.question)));
        }
    }
    out
}

/// f32's greedy tokens for every prompt, end of sequence appended when it was reached.
fn reference_tokens(g: &Glimpse, seed: u64, prompts: &[(u64, Prompt)]) -> Result<Vec<Vec<u32>>> {
    let eos = g.tokenizer.special().eos;
    let mut out = Vec::new();
    for (i, p) in prompts {
        let s = scene::sample(seed, Split::Test, *i);
        let mut t = g.run(&s.image, p, &mut |_| {})?.tokens;
        if t.len() < g.max_new_tokens {
            t.push(eos);
        }
        out.push(t);
    }
    Ok(out)
}

/// (agreeing, compared) tokens of `g` fed the reference sequences.
fn agreement(
    g: &Glimpse,
    seed: u64,
    prompts: &[(u64, Prompt)],
    reference: &[Vec<u32>],
) -> Result<(usize, usize)> {
    let (mut same, mut total) = (0, 0);
    for ((i, p), want) in prompts.iter().zip(reference) {
        let s = scene::sample(seed, Split::Test, *i);
        let image = g.see(&s.image)?;
        let mut session = g.image_session(&image)?;
        let stream = TokenStream::new(&g.tokenizer, p)?;
        let mut logits = session.forward_last(&g.embed(&stream.text_ids)?)?;
        for (k, &t) in want.iter().enumerate() {
            same += usize::from(argmax(&logits) == t);
            total += 1;
            if k + 1 < want.len() {
                logits = session.forward_last(&g.embed(&[t])?)?;
            }
        }
    }
    Ok((same, total))
}

/// (agreeing, compared) greedy tokens of `precision` against f32 on `scenes` test scenes.
pub fn agreement_of(
    package: &Path,
    precision: Precision,
    scenes: u64,
    seed: u64,
) -> Result<(usize, usize)> {
    let f32 = Glimpse::load_with(package, Some(Precision::F32))?;
    let g = Glimpse::load_with(package, Some(precision))?;
    let prompts = prompts(seed, scenes);
    let reference = reference_tokens(&f32, seed, &prompts)?;
    agreement(&g, seed, &prompts, &reference)
}

fn files_bytes(g: &Glimpse, p: Precision) -> u64 {
    let files = &g.package.manifest.files;
    [VISION_FILE, EMBEDDING_FILE, DECODER_FILE]
        .map(|f| p.file(f))
        .iter()
        .chain(std::iter::once(&TOKENIZER_FILE.to_string()))
        .filter_map(|f| files.get(f))
        .map(|e| e.bytes)
        .sum()
}

/// Compares every precision of `package` with its f32 graphs on `scenes` test scenes.
pub fn compare(package: &Path, scenes: u64, seed: Option<u64>, runs: usize) -> Result<Vec<Row>> {
    let f32 = Glimpse::load_with(package, Some(Precision::F32))
        .map_err(|e| anyhow::anyhow!("{e} (compare needs the f32 graphs as the reference)"))?;
    let seed = seed.or_else(|| package_seed(&f32)).unwrap_or(7);
    let precisions = f32.package.manifest.precisions.clone();
    if precisions.is_empty() {
        bail!("the package lists no precisions");
    }
    let prompts = prompts(seed, scenes);
    eprintln!(
        "f32 reference: {} prompts on {scenes} test scenes",
        prompts.len()
    );
    let reference = reference_tokens(&f32, seed, &prompts)?;
    let f32_bytes = files_bytes(&f32, Precision::F32);
    let frame = {
        let s = scene::sample(seed, Split::Test, 0);
        image::imageops::resize(&s.image, 640, 480, image::imageops::FilterType::Triangle)
    };
    let mut rows = Vec::new();
    for p in precisions {
        eprintln!("{p}: accuracy, agreement, timings");
        let g = Glimpse::load_with(package, Some(p))?;
        let acc = evaluate_split(&g, seed, Split::Test, scenes)?;
        let (same, total) = agreement(&g, seed, &prompts, &reference)?;
        let b = bench::run_with(package, Some(p), &frame, runs)?;
        let bytes = files_bytes(&g, p);
        rows.push(Row {
            precision: p,
            caption_exact: acc.caption_exact,
            qa_accuracy: acc.qa_accuracy,
            token_agreement: same as f64 / total.max(1) as f64,
            tokens_compared: total,
            bytes,
            size_vs_f32: bytes as f64 / f32_bytes.max(1) as f64,
            load_ms: b.load.median_ms,
            first_token_ms: b.first_token.median_ms,
            decode_token_ms: b.decode_token_cached.median_ms,
            decode_token_p95_ms: b.decode_token_cached.p95_ms,
            kernels: g.decoder_kernels(),
        });
    }
    Ok(rows)
}

/// A Markdown table (the README's), then the kernels per precision.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| precision | caption exact | QA | token agreement | size | vs f32 | load ms | first token ms | decode ms/token (p95) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {:.3} | {:.3} | {:.2} % of {} | {:.2} MB | {:.2}x | {:.1} | {:.2} | {:.3} ({:.3}) |\n",
            r.precision,
            r.caption_exact,
            r.qa_accuracy,
            r.token_agreement * 100.0,
            r.tokens_compared,
            r.bytes as f64 / 1e6,
            r.size_vs_f32,
            r.load_ms,
            r.first_token_ms,
            r.decode_token_ms,
            r.decode_token_p95_ms
        );
    }
    s += "\nDecoder matrix products, by kernel:\n";
    for r in rows {
        for k in &r.kernels {
            s += &format!("- {}: {k}\n", r.precision);
        }
    }
    s
}
