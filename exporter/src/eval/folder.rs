//! `glimpse-export eval PKG --data DIR`: a package on a user's own held-out images (a
//! folder in the `captions.jsonl` layout): exact answers overall, per answer and per
//! repeated question, the most common wrong answers, and for lines with captions caption
//! exact match, BLEU-4 and (with matching heads) retrieval recall.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use glimpse_runtime::Glimpse;
use glimpse_runtime::text::{Prompt, TokenStream};

use super::{RETRIEVAL_POOL, Retrieval, corpus_bleu4, recall};
use crate::data::{FolderIndex, FolderSplit, Line};

/// Which lines of the folder to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lines {
    /// Lines marked `"split": "test"` (never trained on).
    Test,
    /// The validation lines (marked `val`, or drawn by `--val-fraction`).
    Val,
    /// Every line: for a folder kept apart from training altogether.
    All,
}

impl Lines {
    pub fn name(self) -> &'static str {
        match self {
            Lines::Test => "test",
            Lines::Val => "val",
            Lines::All => "all",
        }
    }

    fn takes(self, line: &Line) -> bool {
        match self {
            Lines::Test => line.split == FolderSplit::Test,
            Lines::Val => line.split == FolderSplit::Val,
            Lines::All => true,
        }
    }

    /// The chosen lines of `folder`; none is an error that says how to mark some.
    pub fn of(self, folder: &FolderIndex) -> Result<Vec<&Line>> {
        let lines: Vec<&Line> = folder.lines.iter().filter(|l| self.takes(l)).collect();
        if lines.is_empty() {
            let hint = match self {
                Lines::Test => {
                    "mark held-out lines with \"split\": \"test\", or score every line with --split all"
                }
                Lines::Val => "mark lines with \"split\": \"val\" or give --val-fraction",
                Lines::All => "the file has no usable lines",
            };
            bail!(
                "{} has no {} lines: {hint}",
                folder.index.display(),
                self.name()
            );
        }
        Ok(lines)
    }
}

/// Right answers out of those asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub correct: usize,
    pub asked: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.correct += usize::from(ok);
        self.asked += 1;
    }

    pub fn share(&self) -> f64 {
        self.correct as f64 / self.asked.max(1) as f64
    }
}

/// One wrong answer and how often the model gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub expected: String,
    pub got: String,
    pub count: usize,
}

/// Wrong answers listed in the report.
pub const CONFUSIONS: usize = 10;

#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    /// `DIR/captions.jsonl`.
    pub index: String,
    /// test, val or all.
    pub lines: String,
    pub images: usize,
    /// Lines and images passed over with `--skip-bad`.
    pub skipped: usize,
    pub qa: Tally,
    /// Exact answers over every question (`None` when no line has questions).
    pub qa_accuracy: Option<f64>,
    /// Per expected answer.
    pub by_answer: BTreeMap<String, Tally>,
    /// Per question text, for the questions asked more than once.
    pub by_question: BTreeMap<String, Tally>,
    /// The most common (expected, got) pairs among wrong answers, most frequent first.
    pub confusions: Vec<Confusion>,
    pub captions: Tally,
    pub caption_exact: Option<f64>,
    pub bleu4: Option<f64>,
    /// A few wrong captions: (expected, got).
    pub caption_misses: Vec<(String, String)>,
    /// Image↔caption retrieval over the lines with captions, when the package can match.
    pub retrieval: Option<Retrieval>,
}

/// Collects what the model said against what the folder expects.
#[derive(Debug, Default)]
pub struct Scorer {
    report: FolderReport,
    asked: BTreeMap<String, Tally>,
    wrong: HashMap<(String, String), usize>,
    captions: Vec<(String, String)>,
}

impl Scorer {
    /// The model answered `got` to `question`; the folder expects `expected`. Answers are
    /// compared exactly (after trimming spaces).
    pub fn answer(&mut self, question: &str, expected: &str, got: &str) {
        let (expected, got) = (expected.trim(), got.trim());
        let ok = expected == got;
        self.report.qa.add(ok);
        self.report
            .by_answer
            .entry(expected.to_string())
            .or_default()
            .add(ok);
        self.asked
            .entry(question.trim().to_string())
            .or_default()
            .add(ok);
        if !ok {
            *self
                .wrong
                .entry((expected.to_string(), got.to_string()))
                .or_default() += 1;
        }
    }

    pub fn caption(&mut self, expected: &str, got: &str) {
        let (expected, got) = (expected.trim(), got.trim());
        let ok = expected == got;
        self.report.captions.add(ok);
        if !ok && self.report.caption_misses.len() < 5 {
            self.report
                .caption_misses
                .push((expected.to_string(), got.to_string()));
        }
        self.captions.push((got.to_string(), expected.to_string()));
    }

    pub fn finish(mut self) -> FolderReport {
        let r = &mut self.report;
        r.qa_accuracy = (r.qa.asked > 0).then(|| r.qa.share());
        r.by_question = self
            .asked
            .into_iter()
            .filter(|(_, t)| t.asked > 1)
            .collect();
        let mut wrong: Vec<Confusion> = self
            .wrong
            .into_iter()
            .map(|((expected, got), count)| Confusion {
                expected,
                got,
                count,
            })
            .collect();
        wrong.sort_by(|a, b| (b.count, &a.expected, &a.got).cmp(&(a.count, &b.expected, &b.got)));
        wrong.truncate(CONFUSIONS);
        r.confusions = wrong;
        if r.captions.asked > 0 {
            r.caption_exact = Some(r.captions.share());
            r.bleu4 = Some(corpus_bleu4(&self.captions));
        }
        self.report
    }
}

/// Runs `g` on the chosen lines of `folder`: each image is seen once, and its caption
/// and questions continue copies of that prefill.
pub fn evaluate_folder(
    g: &Glimpse,
    folder: &FolderIndex,
    lines: Lines,
    progress: bool,
) -> Result<FolderReport> {
    let chosen = lines.of(folder)?;
    let bar = crate::progress::bar(
        progress,
        chosen.len() as u64,
        "scoring images {pos}/{len} [{wide_bar}] eta {eta}",
    );
    let mut scorer = Scorer::default();
    let (mut image_embeds, mut text_embeds, mut captions) = (vec![], vec![], vec![]);
    let mut images = 0;
    let mut skipped = folder.skipped.len();
    for line in chosen {
        bar.inc(1);
        let frame = match folder.image(line) {
            Ok(f) => f,
            Err(e) if folder.skip_bad => {
                bar.suspend(|| eprintln!("skipped: {e:#}"));
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        images += 1;
        let at = || folder.at(line);
        let image = g.see(&frame).with_context(at)?;
        let r = &line.record;
        let seen = match (&r.caption, g.can_match()) {
            (Some(c), true) => {
                let (seen, e) = g.image_session_and_embedding(&image).with_context(at)?;
                image_embeds.push(e);
                text_embeds.push(g.text_embedding(c).with_context(at)?);
                captions.push(c.clone());
                seen
            }
            _ => g.image_session(&image).with_context(at)?,
        };
        let say = |prompt: Prompt| -> Result<String> {
            let stream = TokenStream::new(&g.tokenizer, &prompt)?;
            Ok(
                g.run_after_image(seen.clone(), &image, &stream, &mut |_| {})?
                    .text,
            )
        };
        if let Some(c) = &r.caption {
            let got = say(Prompt::Caption).with_context(|| format!("{}: caption", at()))?;
            scorer.caption(c, &got);
        }
        for (i, qa) in r.qa.iter().enumerate() {
            let got = say(Prompt::Question(qa.q.clone()))
                .with_context(|| format!("{}: question {} (qa[{i}])", at(), i + 1))?;
            scorer.answer(&qa.q, &qa.a, &got);
        }
    }
    bar.finish_and_clear();
    let mut report = scorer.finish();
    report.index = folder.index.display().to_string();
    report.lines = lines.name().to_string();
    report.images = images;
    report.skipped = skipped;
    if g.can_match() && captions.len() >= 2 {
        report.retrieval = Some(recall(
            &image_embeds,
            &text_embeds,
            &captions,
            RETRIEVAL_POOL,
        ));
    }
    Ok(report)
}

impl FolderReport {
    /// A plain-text summary for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ({} lines): {} images, {} questions, {} captions",
            self.index, self.lines, self.images, self.qa.asked, self.captions.asked
        );
        if self.skipped > 0 {
            s += &format!(", {} skipped", self.skipped);
        }
        s.push('\n');
        let tally = |t: &Tally| format!("{:.3} ({} of {})", t.share(), t.correct, t.asked);
        if self.qa.asked > 0 {
            s += &format!("{:<24}{}\n", "answers exact", tally(&self.qa));
        }
        if self.captions.asked > 0 {
            s += &format!("{:<24}{}\n", "captions exact", tally(&self.captions));
            s += &format!("{:<24}{:.3}\n", "caption BLEU-4", self.bleu4.unwrap_or(0.0));
        }
        if let Some(r) = &self.retrieval {
            s += &format!(
                "{:<24}image→text R@1 {:.3}, R@5 {:.3}; text→image R@1 {:.3}, R@5 {:.3} (pools of {})\n",
                "retrieval",
                r.image_to_text_r1,
                r.image_to_text_r5,
                r.text_to_image_r1,
                r.text_to_image_r5,
                r.pool.min(r.queries)
            );
        }
        let mut section = |title: &str, rows: &BTreeMap<String, Tally>| {
            if rows.is_empty() {
                return;
            }
            s += &format!("\n{title}\n");
            let mut rows: Vec<_> = rows.iter().collect();
            // the most asked first
            rows.sort_by(|a, b| b.1.asked.cmp(&a.1.asked).then(a.0.cmp(b.0)));
            for (text, t) in rows.iter().take(20) {
                s += &format!("  {:<40} {}\n", shorten(text, 40), tally(t));
            }
            if rows.len() > 20 {
                s += &format!("  ({} more in --json)\n", rows.len() - 20);
            }
        };
        section("by expected answer:", &self.by_answer);
        section("by question (asked more than once):", &self.by_question);
        if !self.confusions.is_empty() {
            s += "\nmost common wrong answers:\n";
            for c in &self.confusions {
                s += &format!(
                    "  expected {:?}, got {:?}: {}\n",
                    shorten(&c.expected, 30),
                    shorten(&c.got, 30),
                    c.count
                );
            }
        }
        for (want, got) in self.caption_misses.iter().take(3) {
            s += &format!("\ncaption miss: expected {want:?}\n              got      {got:?}");
        }
        if !self.caption_misses.is_empty() {
            s.push('\n');
        }
        s
    }
}

/// `text` cut to `n` characters, with an ellipsis when cut.
fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut s: String = text.chars().take(n - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_tallied_per_answer_per_repeated_question_and_by_confusion() {
        let mut s = Scorer::default();
        // (question, expected, got)
        let asked = [
            ("how many?", "two", "two"),
            ("how many?", "two", "three"),
            ("how many?", "three", "three"),
            ("how many?", "two", "three"),
            ("what colour is the cup?", "red", "red"),
            ("what colour is the car?", "blue", "green"),
            (" what colour is the car? ", "blue ", "green"),
            ("is it day?", "yes", "no"),
        ];
        for (q, want, got) in asked {
            s.answer(q, want, got);
        }
        s.caption("a red cup on a desk", "a red cup on a desk");
        s.caption("a blue car in the street", "a green car in the street");
        let r = s.finish();
        assert_eq!(
            r.qa,
            Tally {
                correct: 3,
                asked: 8
            }
        );
        assert_eq!(r.qa_accuracy, Some(3.0 / 8.0));
        let t = |c, a| Tally {
            correct: c,
            asked: a,
        };
        let by_answer: Vec<(&str, Tally)> =
            r.by_answer.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            by_answer,
            [
                ("blue", t(0, 2)),
                ("red", t(1, 1)),
                ("three", t(1, 1)),
                ("two", t(1, 3)),
                ("yes", t(0, 1))
            ]
        );
        // questions asked once are not listed; spaces around a question do not count
        let by_question: Vec<(&str, Tally)> = r
            .by_question
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            by_question,
            [("how many?", t(2, 4)), ("what colour is the car?", t(0, 2))]
        );
        let c: Vec<(&str, &str, usize)> = r
            .confusions
            .iter()
            .map(|c| (c.expected.as_str(), c.got.as_str(), c.count))
            .collect();
        // most frequent first, ties in expected-answer order
        assert_eq!(
            c,
            [("blue", "green", 2), ("two", "three", 2), ("yes", "no", 1)]
        );
        assert_eq!(r.captions, t(1, 2));
        assert_eq!(r.caption_exact, Some(0.5));
        assert_eq!(
            r.caption_misses,
            [(
                "a blue car in the street".into(),
                "a green car in the street".into()
            )]
        );
        let bleu = r.bleu4.unwrap();
        assert!(bleu > 0.0 && bleu < 1.0, "{bleu}");
        let table = r.table();
        assert!(
            table.contains("answers exact           0.375 (3 of 8)"),
            "{table}"
        );
        assert!(
            table.contains("expected \"blue\", got \"green\": 2"),
            "{table}"
        );
    }

    #[test]
    fn no_questions_or_no_captions_leave_their_figures_out() {
        let mut s = Scorer::default();
        s.caption("a cat", "a cat");
        let r = s.finish();
        assert_eq!((r.qa_accuracy, r.caption_exact), (None, Some(1.0)));
        assert!(r.confusions.is_empty() && r.by_question.is_empty());
        let r = Scorer::default().finish();
        assert_eq!((r.bleu4, r.caption_exact), (None, None));
    }
}
