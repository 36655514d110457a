//! Matching heads fitted to a decoder that moved (`train --blend RUN --blend-fit-heads N`).
//!
//! A matching head maps the decoder's state at the end of an image, or of a text, into
//! the space where images and texts are compared. A blend (or any fine-tune) moves the
//! decoder, so the states the heads read move too: kept as they were, the heads read
//! states they were not trained on, and trained again on the contrastive loss they have
//! lost recall (the README's "Halfway …" paragraphs). Here each head is instead fitted by
//! least squares so that, on training scenes and their matching texts, the moved model's
//! embeddings (before they are scaled to unit length) are the starting model's own: the
//! matching space the old heads were trained into stays, and only the way into it follows
//! the decoder. The temperature stays the starting model's.

use anyhow::{Context, Result};
use burn::prelude::*;
use indicatif::ProgressBar;

use glimpse_runtime::frame::Canvas;

use crate::data::Batch;
use crate::model::least_squares::{self, Affine};
use crate::model::weights::{Array, Weights, collect};
use crate::model::{Fuyu, Rotary};
use crate::train::{Tensors, model_from_weights, to_tensors};

/// The ridge of the fits, as a share of the states' variance: enough to keep a direction
/// the states hardly use from getting a large weight, too little to bend the fit.
const RIDGE: f64 = 1e-4;

/// What a fit of the two heads is run with.
pub struct FitSetup<'a> {
    pub rotary: &'a Rotary,
    pub canvas: Canvas,
    pub n_heads: usize,
    pub device: &'a Device,
}

/// How well the heads carry the moved model's states onto the starting model's
/// embeddings: the share of the embeddings' variance accounted for, fitted and as the
/// heads were before the fit, on `samples` images and as many texts.
#[derive(Debug, Clone, Copy)]
pub struct FitReport {
    pub samples: usize,
    pub images_fitted: f64,
    pub images_kept: f64,
    pub texts_fitted: f64,
    pub texts_kept: f64,
}

impl std::fmt::Display for FitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fitted the matching heads on {} images and their texts: they give {:.1} % of the starting model's image embeddings and {:.1} % of its text embeddings (the heads kept as they were: {:.1} % and {:.1} %)",
            self.samples,
            100.0 * self.images_fitted,
            100.0 * self.texts_fitted,
            100.0 * self.images_kept,
            100.0 * self.texts_kept
        )
    }
}

/// The decoder states the matching heads read, `[n, d]` each: at the last image token of
/// each image of the batch that has a matching text, and at the end of each of those
/// texts. None when the batch has no matching texts.
pub fn head_states(model: &Fuyu, t: &Tensors, s: &FitSetup) -> Option<(Tensor<2>, Tensor<2>)> {
    let m = t.matching.as_ref()?;
    let patches = t.patches.clone().select(0, m.rows.clone());
    let image = model.embed_image(patches);
    let hidden = model.hidden_causal(image, s.rotary, s.n_heads);
    let [n, _, d] = hidden.dims();
    let last = s.canvas.image_tokens() - 1;
    let images = hidden.narrow(1, last, 1).reshape([n, d]);
    let texts = model.text_state(m.ids.clone(), m.last.clone(), s.rotary, s.n_heads);
    Some((images.detach(), texts.detach()))
}

/// The rows of `t` as a flat vector.
fn flat(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading decoder states: {e:?}"))
}

/// A head of `w` (`image_head` or `text_head`) as an affine map.
fn head(w: &Weights, name: &str) -> Result<Affine> {
    let get = |part: &str| {
        w.get(&format!("{name}.{part}"))
            .with_context(|| format!("the model has no {name}.{part}"))
    };
    Ok(Affine {
        weight: get("weight")?.data.clone(),
        bias: get("bias")?.data.clone(),
    })
}

/// Inputs (the moved model's states) and targets (the starting model's embeddings) of
/// one head, gathered batch by batch.
#[derive(Default)]
struct Samples {
    states: Vec<f32>,
    targets: Vec<f32>,
}

impl Samples {
    fn add(
        &mut self,
        new_states: Tensor<2>,
        old_states: Tensor<2>,
        old_head: &Affine,
    ) -> Result<()> {
        self.states.extend(flat(new_states)?);
        self.targets.extend(old_head.apply(&flat(old_states)?));
        Ok(())
    }

    /// The least-squares head, and the shares of the targets' variance it and `kept`
    /// account for.
    fn fit(&self, d: usize, kept: &Affine) -> Result<(Affine, f64, f64)> {
        let k = kept.bias.len();
        let fitted = least_squares::fit(&self.states, &self.targets, d, k, RIDGE)?;
        let share = |f: &Affine| least_squares::explained(&f.apply(&self.states), &self.targets, k);
        let (now, before) = (share(&fitted), share(kept));
        Ok((fitted, now, before))
    }
}

/// `new` with its matching heads fitted so that its embeddings on `batches` are `old`'s
/// (see the [module docs](self)), and its temperature `old`'s.
pub fn fit_heads(
    old: &Fuyu,
    new: Fuyu,
    batches: impl Iterator<Item = Result<Batch>>,
    s: &FitSetup,
    bar: &ProgressBar,
) -> Result<(Fuyu, FitReport)> {
    let old_weights = collect(old);
    let (old_image, old_text) = (
        head(&old_weights, "image_head")?,
        head(&old_weights, "text_head")?,
    );
    let (old_plain, new_plain) = (old.valid(), new.valid());
    let (mut images, mut texts) = (Samples::default(), Samples::default());
    for batch in batches {
        let t = to_tensors(batch?, &s.canvas, s.device);
        if let (Some((new_i, new_t)), Some((old_i, old_t))) = (
            head_states(&new_plain, &t, s),
            head_states(&old_plain, &t, s),
        ) {
            images.add(new_i, old_i, &old_image)?;
            texts.add(new_t, old_t, &old_text)?;
        }
        bar.inc(1);
    }
    let d = old_image.weight.len() / old_image.bias.len().max(1);
    let samples = images.states.len() / d.max(1);
    let (image_head, images_fitted, images_kept) = images
        .fit(d, &old_image)
        .with_context(|| format!("fitting the image head on {samples} images"))?;
    let (text_head, texts_fitted, texts_kept) = texts
        .fit(d, &old_text)
        .with_context(|| format!("fitting the text head on {samples} texts"))?;
    let mut w = collect(&new);
    let k = old_image.bias.len();
    for (name, f) in [("image_head", image_head), ("text_head", text_head)] {
        w.insert(
            format!("{name}.weight"),
            Array {
                dims: vec![d, k],
                data: f.weight,
            },
        );
        w.insert(
            format!("{name}.bias"),
            Array {
                dims: vec![k],
                data: f.bias,
            },
        );
    }
    if let Some(scale) = old_weights.get("logit_scale") {
        w.insert("logit_scale".into(), scale.clone());
    }
    let report = FitReport {
        samples,
        images_fitted,
        images_kept,
        texts_fitted,
        texts_kept,
    };
    Ok((model_from_weights(new, &w)?, report))
}
