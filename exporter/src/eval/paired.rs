//! `eval A --against B`: two packages on the same scenes, each figure compared scene by
//! scene. Two models scored on the same 1000 scenes mostly agree; what tells them apart
//! is where they differ, so the interval of a difference comes from the pairs (scenes
//! only A gets right against those only B does), not from two independent shares.

use anyhow::{Result, ensure};
use serde::Serialize;

use super::{Figures, Report};

/// Per item, whether a model got it right: one entry per scene (captions, retrieval
/// queries) or per question, in the order the scenes were drawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub captions: Vec<bool>,
    pub answers: Vec<bool>,
}

/// One figure of A against B over the same items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub items: usize,
    pub a: f64,
    pub b: f64,
    /// Items only A got right, and only B.
    pub a_only: usize,
    pub b_only: usize,
    /// A − B, and its 95 % interval.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

impl Paired {
    /// Compares two runs over the same items. The interval is the normal one for a
    /// mean of per-item differences (each −1, 0 or +1): d ± 1.96·√((s − d²) / n), s
    /// the share of items where the two differ.
    pub fn of(a: &[bool], b: &[bool]) -> Result<Paired> {
        ensure!(
            a.len() == b.len(),
            "the two runs scored {} and {} items: not the same scenes",
            a.len(),
            b.len()
        );
        let n = a.len();
        let a_only = a.iter().zip(b).filter(|(x, y)| **x && !**y).count();
        let b_only = a.iter().zip(b).filter(|(x, y)| !**x && **y).count();
        let nf = n.max(1) as f64;
        let share = |v: &[bool]| v.iter().filter(|x| **x).count() as f64 / nf;
        let d = (a_only as f64 - b_only as f64) / nf;
        let spread = ((a_only + b_only) as f64 / nf - d * d).max(0.0);
        let half = 1.96 * (spread / nf).sqrt();
        Ok(Paired {
            items: n,
            a: share(a),
            b: share(b),
            a_only,
            b_only,
            difference: d,
            low: d - half,
            high: d + half,
        })
    }

    /// "A", "B" or "neither": which is better beyond the noise of these items.
    pub fn verdict(&self) -> &'static str {
        if self.low > 0.0 {
            "A"
        } else if self.high < 0.0 {
            "B"
        } else {
            "neither"
        }
    }
}

/// One row of the comparison: a split, a figure, and the two runs on it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub split: String,
    pub figure: &'static str,
    pub paired: Paired,
}

/// Every figure the two reports can be compared on, split by split: caption exact
/// match and QA accuracy (unless both measured retrieval alone) and, where both can
/// match, image→text and text→image recall@1.
pub fn compare(a: &Report, b: &Report) -> Result<Vec<Row>> {
    ensure!(
        a.seed == b.seed,
        "the two runs drew their scenes from seeds {} and {}",
        a.seed,
        b.seed
    );
    let mut rows = Vec::new();
    for (split, ra) in &a.splits {
        let Some(rb) = b.splits.get(split) else {
            continue;
        };
        let mut add = |figure, x: &[bool], y: &[bool]| -> Result<()> {
            let paired = Paired::of(x, y).map_err(|e| anyhow::anyhow!("{split}, {figure}: {e}"))?;
            rows.push(Row {
                split: split.clone(),
                figure,
                paired,
            });
            Ok(())
        };
        if a.figures == Figures::All || b.figures == Figures::All {
            add(
                "caption exact",
                &ra.outcomes.captions,
                &rb.outcomes.captions,
            )?;
            add("QA", &ra.outcomes.answers, &rb.outcomes.answers)?;
        }
        if let (Some(x), Some(y)) = (&ra.retrieval, &rb.retrieval) {
            add(
                "image→text R@1",
                &x.image_to_text_hits,
                &y.image_to_text_hits,
            )?;
            add(
                "text→image R@1",
                &x.text_to_image_hits,
                &y.text_to_image_hits,
            )?;
        }
    }
    Ok(rows)
}

/// The comparison as a table for people.
pub fn table(rows: &[Row], a: &str, b: &str) -> String {
    let mut s = format!("A: {a}\nB: {b}\n");
    s.push_str(&format!(
        "{:<15}{:<16}{:>7}{:>7}{:>8}  {:<18}{:>7}{:>7}  {}\n",
        "split", "figure", "A", "B", "A-B", "95% interval", "only A", "only B", "better"
    ));
    for r in rows {
        let p = &r.paired;
        s.push_str(&format!(
            "{:<15}{:<16}{:>7.3}{:>7.3}{:>+8.3}  {:<18}{:>7}{:>7}  {}\n",
            r.split,
            r.figure,
            p.a,
            p.b,
            p.difference,
            format!("[{:+.3}, {:+.3}]", p.low, p.high),
            p.a_only,
            p.b_only,
            p.verdict()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{Retrieval, SplitReport};

    fn runs(both: usize, a_only: usize, b_only: usize, neither: usize) -> (Vec<bool>, Vec<bool>) {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (n, x, y) in [
            (both, true, true),
            (a_only, true, false),
            (b_only, false, true),
            (neither, false, false),
        ] {
            a.extend(std::iter::repeat_n(x, n));
            b.extend(std::iter::repeat_n(y, n));
        }
        (a, b)
    }

    #[test]
    fn the_interval_comes_from_the_items_where_the_runs_differ() {
        // 1000 scenes, 40 only A, 20 only B: d = 0.02, s = 0.06,
        // half-width 1.96·√((0.06 − 0.0004) / 1000) = 0.01513
        let (a, b) = runs(880, 40, 20, 60);
        let p = Paired::of(&a, &b).unwrap();
        assert_eq!((p.items, p.a_only, p.b_only), (1000, 40, 20));
        assert!((p.a - 0.92).abs() < 1e-12 && (p.b - 0.90).abs() < 1e-12);
        assert!((p.difference - 0.02).abs() < 1e-12);
        assert!((p.high - p.difference - 0.015131).abs() < 1e-5, "{p:?}");
        assert!((p.difference - p.low - 0.015131).abs() < 1e-5, "{p:?}");
        assert_eq!(p.verdict(), "A");
        // the same shares with twice the disagreement: no longer beyond the noise
        let (a, b) = runs(840, 70, 50, 40);
        let wide = Paired::of(&a, &b).unwrap();
        assert!((wide.difference - 0.02).abs() < 1e-12);
        assert!(wide.low < 0.0 && wide.high > 0.0, "{wide:?}");
        assert_eq!(wide.verdict(), "neither");
        let (a, b) = runs(10, 0, 30, 0);
        assert_eq!(Paired::of(&a, &b).unwrap().verdict(), "B");
    }

    #[test]
    fn runs_on_different_items_or_seeds_are_refused() {
        let err = Paired::of(&[true, false], &[true]).unwrap_err().to_string();
        assert!(err.contains("2 and 1 items"), "{err}");
        let a = Report {
            seed: 7,
            ..Default::default()
        };
        let b = Report {
            seed: 11,
            ..Default::default()
        };
        let err = compare(&a, &b).unwrap_err().to_string();
        assert!(err.contains("seeds 7 and 11"), "{err}");
    }

    #[test]
    fn every_split_gets_captions_and_qa_and_recall_where_both_match() {
        let split = |captions: Vec<bool>, retrieval: Option<Retrieval>| SplitReport {
            outcomes: Outcomes {
                answers: vec![true, true, false],
                captions,
            },
            retrieval,
            ..Default::default()
        };
        let hits = |i: Vec<bool>| Retrieval {
            image_to_text_hits: i,
            text_to_image_hits: vec![true, true],
            ..Default::default()
        };
        let a = Report {
            seed: 7,
            splits: [
                (
                    "test".into(),
                    split(vec![true, true], Some(hits(vec![true, false]))),
                ),
                ("shifted".into(), split(vec![true, false], None)),
            ]
            .into(),
            ..Default::default()
        };
        let b = Report {
            seed: 7,
            splits: [
                (
                    "test".into(),
                    split(vec![false, true], Some(hits(vec![true, true]))),
                ),
                (
                    "shifted".into(),
                    split(vec![true, true], Some(hits(vec![true, true]))),
                ),
            ]
            .into(),
            ..Default::default()
        };
        // measured for retrieval alone, the same runs compare on recall only
        let only = |r: &Report| Report {
            figures: Figures::Matching,
            ..r.clone()
        };
        let rows = compare(&only(&a), &only(&b)).unwrap();
        let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.split.as_str(), r.figure)).collect();
        assert_eq!(
            names,
            [("test", "image→text R@1"), ("test", "text→image R@1")]
        );
        let rows = compare(&a, &b).unwrap();
        let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.split.as_str(), r.figure)).collect();
        assert_eq!(
            names,
            [
                ("shifted", "caption exact"),
                ("shifted", "QA"),
                ("test", "caption exact"),
                ("test", "QA"),
                ("test", "image→text R@1"),
                ("test", "text→image R@1"),
            ]
        );
        assert_eq!((rows[0].paired.a_only, rows[0].paired.b_only), (0, 1));
        assert_eq!((rows[2].paired.a_only, rows[2].paired.b_only), (1, 0));
        assert_eq!((rows[4].paired.a_only, rows[4].paired.b_only), (0, 1));
        let t = table(&rows, "one", "two");
        assert!(t.starts_with("A: one\nB: two\n"), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with("test") && l.contains("caption"))
            .unwrap();
        assert!(line.contains("1.000  0.500  +0.500"), "{line}");
        assert!(line.trim_end().ends_with("1      0  neither"), "{line}");
    }
}
