//! `glimpse-export compare`: each precision a package carries, side by side with f32, on
//! the same test scenes (or a user's folder, `--data`) and the same frame: accuracy,
//! agreement of greedy tokens, size, load time, time to first token, decode speed, and
//! the tract kernels that ran.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use image::RgbImage;
use serde::Serialize;

use glimpse_runtime::bench;
use glimpse_runtime::generate::argmax;
use glimpse_runtime::package::{
    DECODER_FILE, EMBEDDING_FILE, Precision, TOKENIZER_FILE, VISION_FILE,
};
use glimpse_runtime::scene::{self, Split};
use glimpse_runtime::text::{Prompt, TokenStream};
use glimpse_runtime::{Glimpse, Stop};

use crate::data::FolderIndex;
use crate::eval::{Lines, Scoring, evaluate_folder, evaluate_split, scene_seed};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub precision: Precision,
    /// `None` where the cases have no captions (a folder of questions only).
    pub caption_exact: Option<f64>,
    pub qa_accuracy: Option<f64>,
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

/// What the precisions are compared on.
pub enum Cases {
    /// Synthetic test scenes (`seed`: the package's training seed by default).
    Scenes { scenes: u64, seed: Option<u64> },
    /// The chosen lines of a user's folder.
    Folder(FolderIndex, Lines),
}

/// One image and one prompt about it.
struct Case {
    image: Arc<RgbImage>,
    prompt: Prompt,
}

/// Every prompt of `scenes` test scenes: the caption, then each question.
fn scene_cases(seed: u64, scenes: u64) -> Vec<Case> {
    let mut out = Vec::new();
    for i in 0..scenes {
        let s = scene::sample(seed, Split::Test, i);
        let image = Arc::new(s.image);
        out.push(Case {
            image: image.clone(),
            prompt: Prompt::Caption,
        });
        for qa in s.qa {
            out.push(Case {
                image: image.clone(),
                prompt: Prompt::Question(qa.question),
            });
        }
    }
    out
}

/// Every prompt of the chosen lines of a folder: the caption when there is one, then
/// each question.
fn folder_cases(folder: &FolderIndex, lines: Lines) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for line in lines.of(folder)? {
        let image = match folder.image(line) {
            Ok(i) => Arc::new(i),
            Err(_) if folder.skip_bad => continue,
            Err(e) => return Err(e),
        };
        if line.record.caption.is_some() {
            out.push(Case {
                image: image.clone(),
                prompt: Prompt::Caption,
            });
        }
        for qa in &line.record.qa {
            out.push(Case {
                image: image.clone(),
                prompt: Prompt::Question(qa.q.clone()),
            });
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no image of the chosen lines could be read",
            folder.index.display()
        );
    }
    Ok(out)
}

/// f32's greedy tokens for every case, end of sequence appended when it was reached.
fn reference_tokens(g: &Glimpse, cases: &[Case]) -> Result<Vec<Vec<u32>>> {
    let eos = g.tokenizer.special().eos;
    let mut out = Vec::new();
    for c in cases {
        let a = g.run(&c.image, &c.prompt, &mut |_| {})?;
        let mut t = a.tokens;
        if a.stop == Stop::End {
            t.push(eos);
        }
        out.push(t);
    }
    Ok(out)
}

/// (agreeing, compared) tokens of `g` fed the reference sequences.
fn agreement(g: &Glimpse, cases: &[Case], reference: &[Vec<u32>]) -> Result<(usize, usize)> {
    let (mut same, mut total) = (0, 0);
    for (c, want) in cases.iter().zip(reference) {
        let image = g.see(&c.image)?;
        let mut session = g.image_session(&image)?;
        let stream = TokenStream::new(&g.tokenizer, &c.prompt)?;
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
    let cases = scene_cases(seed, scenes);
    let reference = reference_tokens(&f32, &cases)?;
    agreement(&g, &cases, &reference)
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

/// (caption exact, QA accuracy) of `g` on the cases; `None` where there is nothing to
/// score.
fn accuracy(g: &Glimpse, cases: &Cases, seed: u64) -> Result<(Option<f64>, Option<f64>)> {
    Ok(match cases {
        Cases::Scenes { scenes, .. } => {
            let r = evaluate_split(g, seed, Split::Test, *scenes, Scoring::default())?;
            (Some(r.caption_exact), Some(r.qa_accuracy))
        }
        Cases::Folder(folder, lines) => {
            let r = evaluate_folder(g, folder, *lines, false)?;
            (r.caption_exact, r.qa_accuracy)
        }
    })
}

/// Compares every precision of `package` with its f32 graphs on `cases`.
pub fn compare(package: &Path, cases: &Cases, runs: usize) -> Result<Vec<Row>> {
    let f32 = Glimpse::load_with(package, Some(Precision::F32))
        .map_err(|e| anyhow::anyhow!("{e} (compare needs the f32 graphs as the reference)"))?;
    let asked = match cases {
        Cases::Scenes { seed, .. } => *seed,
        Cases::Folder(..) => None,
    };
    let seed = scene_seed(&f32, asked);
    let precisions = f32.package.manifest.precisions.clone();
    if precisions.is_empty() {
        bail!("the package lists no precisions");
    }
    let (prompts, frame) = match cases {
        Cases::Scenes { scenes, .. } => {
            eprintln!("f32 reference: prompts of {scenes} test scenes");
            let prompts = scene_cases(seed, *scenes);
            let frame = image::imageops::resize(
                &*prompts[0].image,
                640,
                480,
                image::imageops::FilterType::Triangle,
            );
            (prompts, frame)
        }
        Cases::Folder(folder, lines) => {
            eprintln!(
                "f32 reference: prompts of the {} lines of {}",
                lines.name(),
                folder.index.display()
            );
            let prompts = folder_cases(folder, *lines)?;
            let frame = (*prompts[0].image).clone();
            (prompts, frame)
        }
    };
    let reference = reference_tokens(&f32, &prompts)?;
    let f32_bytes = files_bytes(&f32, Precision::F32);
    let mut rows = Vec::new();
    for p in precisions {
        eprintln!("{p}: accuracy, agreement, timings");
        let g = Glimpse::load_with(package, Some(p))?;
        let (caption_exact, qa_accuracy) = accuracy(&g, cases, seed)?;
        let (same, total) = agreement(&g, &prompts, &reference)?;
        let b = bench::run_with(package, Some(p), &frame, runs, 1)?;
        let bytes = files_bytes(&g, p);
        rows.push(Row {
            precision: p,
            caption_exact,
            qa_accuracy,
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

fn share(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into())
}

/// A Markdown table (the README's), then the kernels per precision.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| precision | caption exact | QA | token agreement | size | vs f32 | load ms | first token ms | decode ms/token (p95) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.2} % of {} | {:.2} MB | {:.2}x | {:.1} | {:.2} | {:.3} ({:.3}) |\n",
            r.precision,
            share(r.caption_exact),
            share(r.qa_accuracy),
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
