//! Image↔text retrieval: recall@k in pools of candidates.
//!
//! Within a pool of `n` scenes, each image ranks the pool's `n` captions and each caption
//! ranks the `n` images, by cosine similarity. A hit at `k` is the right one among the top
//! `k`; two scenes with the same caption (a single "large red circle" twice) count as
//! interchangeable, since no text could tell them apart.

use serde::Serialize;

use glimpse_runtime::matching::cosine;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Retrieval {
    /// Candidates per query.
    pub pool: usize,
    pub queries: usize,
    pub image_to_text_r1: f64,
    pub image_to_text_r5: f64,
    pub text_to_image_r1: f64,
    pub text_to_image_r5: f64,
    /// Per query, whether its right answer ranked first (for `eval --against`).
    #[serde(skip)]
    pub image_to_text_hits: Vec<bool>,
    #[serde(skip)]
    pub text_to_image_hits: Vec<bool>,
}

/// Whether the right answer is among the top `k` of `scores`, `right(i)` telling which
/// candidates are right.
fn hit(scores: &[f32], k: usize, right: impl Fn(usize) -> bool) -> bool {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.iter().take(k).any(|&i| right(i))
}

/// Recall of image `i` ↔ caption `i` over consecutive pools of `pool` scenes (a last,
/// smaller pool counts when it has at least two).
pub fn recall(
    images: &[Vec<f32>],
    texts: &[Vec<f32>],
    captions: &[String],
    pool: usize,
) -> Retrieval {
    let n = images.len().min(texts.len()).min(captions.len());
    let mut r = Retrieval {
        pool,
        ..Default::default()
    };
    let (mut i1, mut i5, mut t1, mut t5) = (0, 0, 0, 0);
    let mut start = 0;
    while start + 2 <= n {
        let end = (start + pool).min(n);
        for q in start..end {
            let same = |c: usize| captions[start + c] == captions[q];
            let to_texts: Vec<f32> = (start..end)
                .map(|c| cosine(&images[q], &texts[c]))
                .collect();
            let to_images: Vec<f32> = (start..end)
                .map(|c| cosine(&images[c], &texts[q]))
                .collect();
            let (i_hit, t_hit) = (hit(&to_texts, 1, same), hit(&to_images, 1, same));
            r.image_to_text_hits.push(i_hit);
            r.text_to_image_hits.push(t_hit);
            i1 += i_hit as usize;
            i5 += hit(&to_texts, 5, same) as usize;
            t1 += t_hit as usize;
            t5 += hit(&to_images, 5, same) as usize;
            r.queries += 1;
        }
        start = end;
    }
    let q = r.queries.max(1) as f64;
    r.image_to_text_r1 = i1 as f64 / q;
    r.image_to_text_r5 = i5 as f64 / q;
    r.text_to_image_r1 = t1 as f64 / q;
    r.text_to_image_r5 = t5 as f64 / q;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(a: f32) -> Vec<f32> {
        vec![a.cos(), a.sin()]
    }

    #[test]
    fn counts_hits_at_one_and_five() {
        // images at angles 0, 1, 2; texts at 0, 1, 2 except text 2 sits nearest image 1
        let images = vec![unit(0.0), unit(1.0), unit(2.0)];
        let texts = vec![unit(0.0), unit(1.0), unit(1.05)];
        let caps: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = recall(&images, &texts, &caps, 100);
        assert_eq!(r.queries, 3);
        // image 2's nearest text is text 2 (1.05 is closer to 2 than 1 is): all right
        assert_eq!(r.image_to_text_r1, 1.0);
        // text 2's nearest image is image 1: one miss of three
        assert!((r.text_to_image_r1 - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.image_to_text_hits, [true, true, true]);
        assert_eq!(r.text_to_image_hits, [true, true, false]);
        assert_eq!(r.text_to_image_r5, 1.0);
    }

    #[test]
    fn equal_captions_are_interchangeable_and_pools_are_separate() {
        let images = vec![unit(0.0), unit(0.01), unit(2.0), unit(2.01)];
        let texts = vec![unit(0.01), unit(0.0), unit(2.01), unit(2.0)];
        let same: Vec<String> = ["x", "x", "y", "y"].map(String::from).to_vec();
        assert_eq!(recall(&images, &texts, &same, 2).image_to_text_r1, 1.0);
        let distinct: Vec<String> = ["x", "z", "y", "w"].map(String::from).to_vec();
        let r = recall(&images, &texts, &distinct, 2);
        assert_eq!(r.image_to_text_r1, 0.0);
        assert_eq!(r.image_to_text_r5, 1.0);
    }
}
