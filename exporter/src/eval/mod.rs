//! `glimpse-export eval`: runs a package with the *runtime* (tract) on the synthetic test,
//! compositional, shifted and paraphrase splits: caption exact match and BLEU-4, invalid
//! captions, empty scenes said to be empty, QA accuracy per kind, and,
//! for packages with matching heads, image↔text retrieval recall. With `--data` it scores
//! a user's own folder instead (`folder.rs`).

mod bleu;
mod folder;
mod misses;
mod nuisances;
mod paired;
mod retrieval;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use glimpse_runtime::model::DecoderSession;
use glimpse_runtime::scene::{self, QuestionKind, Split};
use glimpse_runtime::text::{Prompt, TokenStream};
use glimpse_runtime::{Glimpse, ImageContext};

pub use bleu::corpus_bleu4;
pub use folder::{CONFUSIONS, Confusion, FolderReport, Lines, Scorer, Tally, evaluate_folder};
pub use misses::{Layout, MissKind, MissTally, classify};
pub use nuisances::{Probe, probe, table as probe_table, variants};
pub use paired::{Outcomes, Paired, Row as PairedRow, compare, table as paired_table};
pub use retrieval::{Retrieval, recall};

/// Candidates per retrieval query.
pub const RETRIEVAL_POOL: usize = 100;

/// Which figures an evaluation computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Figures {
    /// Captions, answers and (where the package can match) retrieval.
    #[default]
    All,
    /// Retrieval alone: no caption or answer is decoded, so a checkpoint of matching heads
    /// trained alone (`train --matching-only`), whose captions are its trunk's, is
    /// scored in a fraction of the time.
    Matching,
}

impl Figures {
    fn is_all(&self) -> bool {
        *self == Figures::All
    }
}

/// What an evaluation computes, and how its captions are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scoring {
    pub figures: Figures,
    /// Views of each frame a caption is made from ([`Glimpse::caption_views`]); 1 is
    /// the frame alone. Answers are always from the frame alone.
    pub views: usize,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            figures: Figures::All,
            views: 1,
        }
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitReport {
    pub scenes: usize,
    pub caption_exact: f64,
    pub bleu4: f64,
    pub qa_accuracy: f64,
    pub qa_questions: usize,
    /// kind → (correct, asked)
    pub qa_by_kind: BTreeMap<String, (usize, usize)>,
    /// The wrong captions, for the reader: (expected, got). Serialised (into a
    /// manifest by `--write`) only the first few.
    #[serde(serialize_with = "first_few")]
    pub caption_misses: Vec<(String, String)>,
    /// Exact captions per frame size and the wrong ones per way they went wrong.
    pub misses: MissTally,
    /// Captions that do not read back into objects of the vocabulary
    /// ([`scene::parse_caption`]): a program using the words could not rely on them.
    pub invalid_captions: usize,
    /// A few of them, for the reader: (caption, why it does not parse).
    pub invalid_examples: Vec<(String, String)>,
    /// Scenes without objects, and how many of them the caption said were empty.
    pub empty_scenes: usize,
    pub empty_said_empty: usize,
    /// Image↔caption retrieval, when the package can match.
    pub retrieval: Option<Retrieval>,
    /// Right or wrong per scene and per question, for `--against`.
    #[serde(skip)]
    pub outcomes: Outcomes,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub seed: u64,
    /// What was computed: with [`Figures::Matching`], the caption and QA figures are
    /// zero, not measured, and the JSON says `"figures": "matching"` (a full
    /// evaluation's JSON, and the manifest, leave the field out).
    #[serde(skip_serializing_if = "Figures::is_all")]
    pub figures: Figures,
    /// Views each caption was made from; the JSON leaves it out for the frame alone.
    #[serde(skip_serializing_if = "is_one")]
    pub views: usize,
    pub splits: BTreeMap<String, SplitReport>,
}

/// Wrong captions a manifest keeps, of all those a run prints from.
const MISSES_KEPT: usize = 5;

fn first_few<S: serde::Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&v[..v.len().min(MISSES_KEPT)], s)
}

impl SplitReport {
    /// Counts the caption `got` written for `s`, laid out as `layout`: exact or not, and
    /// how it went wrong, whether it parses, whether an empty scene was said empty.
    fn score_caption(&mut self, s: &scene::Sample, layout: Layout, got: &str) {
        self.misses.add(layout, &s.caption, got);
        self.outcomes.captions.push(got == s.caption);
        if got != s.caption {
            self.caption_misses
                .push((s.caption.clone(), got.to_string()));
        }
        let read = scene::parse_caption(got);
        if let Err(why) = &read {
            self.invalid_captions += 1;
            if self.invalid_examples.len() < 5 {
                self.invalid_examples.push((got.to_string(), why.clone()));
            }
        }
        if s.scene.objects.is_empty() {
            self.empty_scenes += 1;
            self.empty_said_empty += usize::from(read.is_ok_and(|objects| objects.is_empty()));
        }
    }

    /// Counts one answer to a question of `kind`.
    fn score_answer(&mut self, kind: scene::QuestionKind, ok: bool) {
        self.outcomes.answers.push(ok);
        let e = self
            .qa_by_kind
            .entry(kind.name().to_string())
            .or_insert((0, 0));
        e.0 += ok as usize;
        e.1 += 1;
    }
}

/// The caption `g` writes for `image`, continuing `seen`, its session after the image.
fn caption_after(g: &Glimpse, seen: DecoderSession<'_>, image: &ImageContext) -> Result<String> {
    let prompt = TokenStream::new(&g.tokenizer, &Prompt::Caption)?;
    Ok(g.run_after_image(seen, image, &prompt, &mut |_| {})?.text)
}

/// Evaluates one split with a loaded model: every figure, or with [`Figures::Matching`]
/// only retrieval (an error for a package that cannot match).
pub fn evaluate_split(
    g: &Glimpse,
    seed: u64,
    split: Split,
    scenes: u64,
    scoring: Scoring,
) -> Result<SplitReport> {
    let figures = scoring.figures;
    anyhow::ensure!(
        figures == Figures::All || g.can_match(),
        "{} has no matching heads (heads.onnx): it has no retrieval to evaluate",
        g.package.dir.display()
    );
    let mut r = SplitReport::default();
    let mut pairs = Vec::new();
    let (mut image_embeds, mut text_embeds, mut captions) = (vec![], vec![], vec![]);
    let canvas = g.canvas();
    for i in 0..scenes {
        let s = scene::sample(seed, split, i);
        let image = g.see(&s.image)?;
        // the image is prefilled once; every prompt continues a copy of that cache
        let seen = if g.can_match() {
            let (seen, e) = g.image_session_and_embedding(&image)?;
            image_embeds.push(e);
            text_embeds.push(g.text_embedding(&s.caption)?);
            captions.push(s.caption.clone());
            seen
        } else {
            g.image_session(&image)?
        };
        if figures == Figures::Matching {
            continue;
        }
        let (w, h) = s.image.dimensions();
        let fitted = g.image_format().fitted_size(&canvas, w, h).0;
        let layout = Layout::of(&s.scene, fitted as f32 / w as f32 / canvas.patch as f32)
            .seen_as(&s.seen_radii);
        let got = if scoring.views > 1 {
            g.caption_views_seen(&s.image, scoring.views, &image, seen.clone())?
                .text
        } else {
            caption_after(g, seen.clone(), &image)?
        };
        r.score_caption(&s, layout, &got);
        pairs.push((got, s.caption.clone()));
        for qa in &s.qa {
            let stream = TokenStream::new(&g.tokenizer, &Prompt::Question(qa.question.clone()))?;
            let ans = g
                .run_after_image(seen.clone(), &image, &stream, &mut |_| {})?
                .text;
            r.score_answer(qa.kind, ans == qa.answer);
        }
    }
    r.scenes = scenes as usize;
    let right = |v: &[bool]| v.iter().filter(|x| **x).count();
    let (exact, asked) = (right(&r.outcomes.captions), r.outcomes.answers.len());
    r.caption_exact = exact as f64 / scenes.max(1) as f64;
    r.bleu4 = corpus_bleu4(&pairs);
    r.qa_accuracy = right(&r.outcomes.answers) as f64 / asked.max(1) as f64;
    r.qa_questions = asked;
    if g.can_match() {
        r.retrieval = Some(recall(
            &image_embeds,
            &text_embeds,
            &captions,
            RETRIEVAL_POOL,
        ));
    }
    Ok(r)
}

/// The seed scenes are drawn from: the one `asked` for, else the package's training seed
/// (its manifest), else 7.
pub fn scene_seed(g: &Glimpse, asked: Option<u64>) -> u64 {
    asked
        .or_else(|| g.package.manifest.data["options"]["seed"].as_u64())
        .unwrap_or(7)
}

pub fn evaluate(
    package: &Path,
    scenes: u64,
    seed: Option<u64>,
    scoring: Scoring,
) -> Result<Report> {
    let g = Glimpse::load(package)?;
    let seed = scene_seed(&g, seed);
    evaluate_loaded(&g, scenes, seed, scoring)
}

/// Every evaluated split of `scenes` scenes drawn from `seed`, with a loaded model.
pub fn evaluate_loaded(g: &Glimpse, scenes: u64, seed: u64, scoring: Scoring) -> Result<Report> {
    let mut report = Report {
        seed,
        figures: scoring.figures,
        views: scoring.views,
        ..Default::default()
    };
    for split in Split::EVALUATED {
        eprintln!("evaluating {} scenes of the {} split", scenes, split.name());
        report.splits.insert(
            split.name().into(),
            evaluate_split(g, seed, split, scenes, scoring)?,
        );
    }
    Ok(report)
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A plain-text table for people, then per split the exact captions by frame size
    /// and up to `misses` wrong captions.
    pub fn table(&self, misses: usize) -> String {
        let mut s = String::new();
        if self.views > 1 {
            s.push_str(&format!(
                "captions from {} views of each frame\n",
                self.views
            ));
        }
        s.push_str(&self.grid());
        if self.figures == Figures::All {
            s.push_str(&self.caption_notes(misses));
        }
        s
    }

    /// The figures, one row each, one column per split.
    fn grid(&self) -> String {
        let mut s = String::new();
        let names: Vec<&String> = self.splits.keys().collect();
        s.push_str(&format!("{:<22}", "metric"));
        for n in &names {
            s.push_str(&format!("{n:>15}"));
        }
        s.push('\n');
        let mut row = |label: &str, f: &dyn Fn(&SplitReport) -> String| {
            s.push_str(&format!("{label:<22}"));
            for n in &names {
                s.push_str(&format!("{:>15}", f(&self.splits[*n])));
            }
            s.push('\n');
        };
        row("scenes", &|r| r.scenes.to_string());
        if self.figures == Figures::All {
            row("caption exact match", &|r| {
                format!("{:.3}", r.caption_exact)
            });
            row("caption BLEU-4", &|r| format!("{:.3}", r.bleu4));
            for k in MissKind::ALL
                .into_iter()
                .filter(|k| *k != MissKind::Invalid)
            {
                row(&k.label(), &|r| r.misses.kind(k).to_string());
            }
            row("invalid captions", &|r| r.invalid_captions.to_string());
            row("empty said empty", &|r| {
                format!("{} of {}", r.empty_said_empty, r.empty_scenes)
            });
            row("QA accuracy", &|r| format!("{:.3}", r.qa_accuracy));
            for k in QuestionKind::ALL {
                row(&format!("  {}", k.name()), &|r| {
                    r.qa_by_kind
                        .get(k.name())
                        .map(|(c, n)| format!("{:.3} ({n})", *c as f64 / (*n).max(1) as f64))
                        .unwrap_or_else(|| "-".into())
                });
            }
        }
        if self.splits.values().any(|r| r.retrieval.is_some()) {
            let rec = |f: fn(&Retrieval) -> f64| {
                move |r: &SplitReport| {
                    r.retrieval
                        .as_ref()
                        .map(|x| format!("{:.3}", f(x)))
                        .unwrap_or_else(|| "-".into())
                }
            };
            row("retrieval pool", &|r| {
                r.retrieval
                    .as_ref()
                    .map(|x| x.pool.min(x.queries).to_string())
                    .unwrap_or_else(|| "-".into())
            });
            row("image→text R@1", &rec(|x| x.image_to_text_r1));
            row("image→text R@5", &rec(|x| x.image_to_text_r5));
            row("text→image R@1", &rec(|x| x.text_to_image_r1));
            row("text→image R@5", &rec(|x| x.text_to_image_r5));
        }
        s
    }

    /// Per split: invalid captions, exact captions by frame, objects and nearest gap, size
    /// words right by radius (in the scene and as the frame shows it) and by frame, and up
    /// to `misses` wrong captions.
    fn caption_notes(&self, misses: usize) -> String {
        let mut s = String::new();
        let names: Vec<&String> = self.splits.keys().collect();
        for n in &names {
            for (got, why) in self.splits[*n].invalid_examples.iter().take(3) {
                s.push_str(&format!("{n} invalid: {got:?} ({why})\n"));
            }
            let tally = &self.splits[*n].misses;
            for (what, rows) in [
                ("captions exact by frame", shares(tally.by_frame.iter())),
                ("captions exact by objects", shares(tally.by_objects.iter())),
                (
                    "captions exact by nearest gap in patch columns",
                    shares(tally.by_gap.iter()),
                ),
                (
                    "sizes right by radius, as a share of the frame's shorter side",
                    shares(tally.by_radius.iter()),
                ),
                ("sizes right by frame", shares(tally.sizes_by_frame.iter())),
                (
                    "sizes right by radius as the frame shows it",
                    shares(tally.sizes_by_seen_radius.iter()),
                ),
            ] {
                s.push_str(&format!("{n} {what}: {rows}\n"));
            }
        }
        for n in &names {
            for (want, got) in self.splits[*n].caption_misses.iter().take(misses) {
                s.push_str(&format!(
                    "{n} miss: expected {want:?}\n{:width$}got      {got:?}\n",
                    "",
                    width = n.len() + 6
                ));
            }
        }
        s
    }
}

/// "key share (scenes)" for each row of a tally, joined by commas.
fn shares<'a, K: std::fmt::Display + 'a>(
    rows: impl Iterator<Item = (K, &'a (usize, usize))>,
) -> String {
    rows.map(|(k, (ok, all))| format!("{k} {:.3} ({all})", *ok as f64 / (*all).max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inputs and tract's outputs for one example, for checking the package with another
/// ONNX runtime: `patches` `[1, R, C, 3·P·P]`, the prompt's text ids, the prefill logits
/// (every position) and the logits of three cached decode steps fed `steps`.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub image: String,
    pub patches_shape: [usize; 4],
    pub patches: Vec<f32>,
    pub text_ids: Vec<u32>,
    pub prefill_logits_last: Vec<f32>,
    pub prefill_len: usize,
    pub steps: Vec<u32>,
    pub step_logits: Vec<Vec<f32>>,
    pub greedy_caption_tokens: Vec<u32>,
    /// With matching heads: the image's embedding, and the embedding of its caption
    /// as a text of its own (`match_ids`).
    pub image_embedding: Option<Vec<f32>>,
    pub match_ids: Vec<u32>,
    pub text_embedding: Option<Vec<f32>>,
}

/// Runs `g` on `image` and records what another runtime must reproduce.
pub fn reference(g: &Glimpse, name: &str, image: &image::RgbImage) -> Result<Reference> {
    let patches = g.patches(image);
    let stream = TokenStream::new(&g.tokenizer, &Prompt::Caption)?;
    let ctx = g.see(image)?;
    let mut prefix = ctx.embeddings.clone();
    prefix.extend(g.embed(&stream.text_ids)?);
    let mut session = g.session()?;
    let prefill_logits_last = session.forward_last(&prefix)?;
    let steps = vec![
        g.tokenizer.special().bos,
        g.tokenizer.encode("red")?[0],
        g.tokenizer.encode("circle")?[0],
    ];
    let mut step_logits = Vec::new();
    for &t in &steps {
        step_logits.push(session.forward(&g.embed(&[t])?)?);
    }
    let greedy = g.run_with_image(&ctx, &stream, &mut |_| {})?;
    let greedy_caption_tokens = greedy.tokens;
    let match_ids = glimpse_runtime::text::match_ids(&g.tokenizer, &greedy.text)?;
    let (image_embedding, text_embedding) = if g.can_match() {
        (
            Some(g.image_session_and_embedding(&ctx)?.1),
            Some(g.text_embedding(&greedy.text)?),
        )
    } else {
        (None, None)
    };
    Ok(Reference {
        image: name.to_string(),
        patches_shape: [1, patches.rows, patches.cols, patches.dim],
        patches: patches.data,
        text_ids: stream.text_ids,
        prefill_logits_last,
        prefill_len: prefix.len() / g.package.manifest.model.d_model,
        steps,
        step_logits,
        greedy_caption_tokens,
        image_embedding,
        match_ids,
        text_embedding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_tallies_misses_and_prints_as_many_as_asked_while_json_keeps_five() {
        let want = "a small red circle";
        let mut r = SplitReport {
            scenes: 7,
            ..Default::default()
        };
        let layout = |frame, objects, nearest| Layout {
            frame,
            objects,
            nearest,
            radii: [0.16; glimpse_runtime::scene::MAX_OBJECTS],
            seen: [0.175; glimpse_runtime::scene::MAX_OBJECTS],
        };
        r.misses.add(layout((320, 240), 1, None), want, want);
        for i in 0..6 {
            let nearest = if i < 2 { 0.5 } else { 3.0 };
            let l = layout((240, 320), 2 + i % 2, Some(nearest));
            r.misses.add(l, want, "a large red circle");
            r.caption_misses
                .push((want.to_string(), "a large red circle".to_string()));
        }
        let report = Report {
            seed: 7,
            splits: [("shifted".to_string(), r)].into(),
            ..Default::default()
        };
        let one = report.table(1);
        assert_eq!(one.matches("shifted miss:").count(), 1);
        assert_eq!(report.table(6).matches("shifted miss:").count(), 6);
        let size_row = one.lines().find(|l| l.contains("wrong size")).unwrap();
        assert!(size_row.trim_end().ends_with(" 6"), "{size_row}");
        assert!(
            one.contains("shifted captions exact by frame: 240x320 0.000 (6), 320x240 1.000 (1)")
        );
        assert!(
            one.contains(
                "shifted captions exact by objects: 1 1.000 (1), 2 0.000 (3), 3 0.000 (3)"
            )
        );
        assert!(one.contains(
            "shifted captions exact by nearest gap in patch columns: 0 to 1 0.000 (2), 2 or more 0.000 (4)"
        ));
        // one object a caption: seven paired, the six wrong ones with the size wrong
        assert!(one.contains(
            "shifted sizes right by radius, as a share of the frame's shorter side: 0.145 to 0.19 0.143 (7)"
        ));
        // the six wrong ones are the 240x320 frames'
        assert!(one.contains("shifted sizes right by frame: 240x320 0.000 (6), 320x240 1.000 (1)"));
        assert!(one.contains(
            "shifted sizes right by radius as the frame shows it: small, 0.17 and over 0.143 (7)"
        ));
        let json = report.to_json();
        assert_eq!(
            json["splits"]["shifted"]["caption_misses"]
                .as_array()
                .unwrap()
                .len(),
            MISSES_KEPT
        );
    }
}
