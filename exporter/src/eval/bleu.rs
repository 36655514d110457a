//! Corpus BLEU-4 (uniform weights, brevity penalty, one reference per hypothesis).

use std::collections::HashMap;

fn ngrams(words: &[&str], n: usize) -> HashMap<Vec<String>, usize> {
    let mut m = HashMap::new();
    if words.len() >= n {
        for w in words.windows(n) {
            *m.entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    m
}

/// BLEU-4 of `pairs` of (hypothesis, reference), in `[0, 1]`.
pub fn corpus_bleu4(pairs: &[(String, String)]) -> f64 {
    let mut matched = [0usize; 4];
    let mut total = [0usize; 4];
    let (mut hyp_len, mut ref_len) = (0usize, 0usize);
    for (h, r) in pairs {
        let hw: Vec<&str> = h.split_whitespace().collect();
        let rw: Vec<&str> = r.split_whitespace().collect();
        hyp_len += hw.len();
        ref_len += rw.len();
        for n in 1..=4 {
            let hn = ngrams(&hw, n);
            let rn = ngrams(&rw, n);
            for (g, c) in &hn {
                matched[n - 1] += (*c).min(*rn.get(g).unwrap_or(&0));
                total[n - 1] += c;
            }
        }
    }
    if hyp_len == 0 || matched.contains(&0) {
        return 0.0;
    }
    let log_p: f64 = (0..4)
        .map(|i| (matched[i] as f64 / total[i] as f64).ln())
        .sum::<f64>()
        / 4.0;
    let bp = if hyp_len >= ref_len {
        1.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    bp * log_p.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_one_and_partial_match_by_hand() {
        let same = vec![("a b c d e".to_string(), "a b c d e".to_string())];
        assert!((corpus_bleu4(&same) - 1.0).abs() < 1e-12);
        // hyp "a b c d x" vs ref "a b c d e": p1 4/5, p2 3/4, p3 2/3, p4 1/2, no brevity penalty
        let part = vec![("a b c d x".to_string(), "a b c d e".to_string())];
        let want = (0.8f64 * 0.75 * (2.0 / 3.0) * 0.5).powf(0.25);
        assert!((corpus_bleu4(&part) - want).abs() < 1e-12);
        // a short hypothesis is penalised: "a b c d" vs "a b c d e": precisions 1, bp e^(1-5/4)
        let short = vec![("a b c d".to_string(), "a b c d e".to_string())];
        assert!((corpus_bleu4(&short) - (1.0f64 - 1.25).exp()).abs() < 1e-12);
        let none = vec![("x y z w".to_string(), "a b c d".to_string())];
        assert_eq!(corpus_bleu4(&none), 0.0);
    }
}
