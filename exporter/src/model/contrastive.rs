//! CLIP-style contrastive alignment of images and texts in one space.
//!
//! Each image and each text is embedded and scaled to unit length; their cosine
//! similarities, times a learned scale `1/τ`, are logits. The loss is the mean of two
//! cross-entropies over that matrix: each image against every text of the batch, and each
//! text against every image (in-batch negatives). A text may be true of more than one
//! image ("a red circle" of two scenes that both hold one); `positives` says which, and
//! the target probability is spread evenly over them.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// `ln(1/0.07)`, CLIP's starting temperature.
pub const INITIAL_LOGIT_SCALE: f32 = 2.659_26;
/// The scale is capped at 100 (CLIP's cap), so the temperature cannot collapse.
pub const MAX_LOGIT_SCALE: f32 = 4.605_17;

/// Rows of `x` scaled to unit length.
pub fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-6);
    x / norm
}

/// Symmetric contrastive loss of unit-length `images` `[n, e]` and `texts` `[n, e]`, where
/// `positives` `[n, n]` is 1 where text `j` is true of image `i` (the diagonal at least)
/// and `logit_scale` `[1]` is `ln(1/τ)`.
pub fn contrastive_loss(
    images: Tensor<2>,
    texts: Tensor<2>,
    logit_scale: Tensor<1>,
    positives: Tensor<2>,
) -> Tensor<1> {
    let n = images.dims()[0];
    let scale = logit_scale.clamp_max(MAX_LOGIT_SCALE).exp().reshape([1, 1]);
    let logits = images.matmul(texts.transpose()) * scale;
    let per_image = positives.clone() / positives.clone().sum_dim(1).clamp_min(1.0);
    let per_text = positives.clone() / positives.sum_dim(0).clamp_min(1.0);
    let image_to_text = (log_softmax(logits.clone(), 1) * per_image).sum().neg();
    let text_to_image = (log_softmax(logits, 0) * per_text).sum().neg();
    (image_to_text + text_to_image) / (2 * n) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), &Device::default())
    }

    #[test]
    fn two_by_two_matches_the_hand_computed_loss() {
        // cosines [[1, 0.6], [0, 0.8]], scale 10: logits [[10, 6], [0, 8]]
        let images = t2(vec![1.0, 0.0, 0.0, 1.0], [2, 2]);
        let texts = t2(vec![1.0, 0.0, 0.6, 0.8], [2, 2]);
        let scale = Tensor::from_data(TensorData::new(vec![10f32.ln()], [1]), &Device::default());
        let eye = t2(vec![1.0, 0.0, 0.0, 1.0], [2, 2]);
        let got = contrastive_loss(images, texts, scale, eye).into_scalar::<f32>() as f64;
        // image 0: -ln softmax([10, 6])[0] = ln(1 + e^-4); image 1: ln(1 + e^-8)
        // text 0: -ln softmax([10, 0])[0] = ln(1 + e^-10); text 1: -ln softmax([6, 8])[1] = ln(1 + e^-2)
        let l = |x: f64| (1.0 + (-x).exp()).ln();
        let want = ((l(4.0) + l(8.0)) / 2.0 + (l(10.0) + l(2.0)) / 2.0) / 2.0;
        assert!((got - want).abs() < 1e-5, "loss {got}, by hand {want}");
        assert!((want - 0.036_364).abs() < 1e-5);
    }

    #[test]
    fn a_text_true_of_two_images_splits_its_target() {
        // two identical images and two identical texts, each text true of both images
        let images = t2(vec![1.0, 0.0, 1.0, 0.0], [2, 2]);
        let texts = t2(vec![1.0, 0.0, 1.0, 0.0], [2, 2]);
        let scale = Tensor::from_data(TensorData::new(vec![0f32], [1]), &Device::default());
        let all = t2(vec![1.0; 4], [2, 2]);
        let got = contrastive_loss(images, texts, scale, all).into_scalar::<f32>() as f64;
        // every logit is 1: each row/column softmax is uniform (ln 2 per term), and each
        // target spreads evenly, so both directions cost ln 2
        assert!((got - 2f64.ln()).abs() < 1e-5, "{got}");
    }

    #[test]
    fn normalize_gives_unit_rows() {
        let x = normalize(t2(vec![3.0, 4.0, 0.0, -2.0], [2, 2]));
        let v = x.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![0.6, 0.8, 0.0, -1.0]);
    }
}
