//! Weight-space blending of two models of one shape: each parameter the straight line
//! between them, `(1 − share)·a + share·b`.
//!
//! A model fine-tuned from another stays in its basin, so the points between the two are
//! models too (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022): a blend
//! keeps part of what fine-tuning gained and part of what it cost, with no training.

use anyhow::{Result, bail};

use super::weights::{Array, Weights};

/// `(1 − share)·a + share·b` for every parameter. Both must name the same parameters with
/// the same shapes; the error names the first that differs.
pub fn blend(a: &Weights, b: &Weights, share: f32) -> Result<Weights> {
    if !(0.0..=1.0).contains(&share) {
        bail!("the blend share must be between 0 and 1, not {share}");
    }
    if let Some(name) = b.keys().find(|k| !a.contains_key(*k)) {
        bail!("{name} is in the second model only");
    }
    let mut out = Weights::new();
    for (name, x) in a {
        let Some(y) = b.get(name) else {
            bail!("{name} is in the first model only");
        };
        if x.dims != y.dims {
            bail!(
                "{name} is {:?} in one model and {:?} in the other",
                x.dims,
                y.dims
            );
        }
        let data = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| p + share * (q - p))
            .collect();
        out.insert(
            name.clone(),
            Array {
                dims: x.dims.clone(),
                data,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, Vec<usize>, Vec<f32>)]) -> Weights {
        pairs
            .iter()
            .map(|(n, dims, data)| {
                (
                    n.to_string(),
                    Array {
                        dims: dims.clone(),
                        data: data.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn each_parameter_lies_on_the_line_between_the_two() {
        let a = weights(&[("w", vec![2], vec![1.0, -2.0]), ("b", vec![1], vec![0.0])]);
        let b = weights(&[("w", vec![2], vec![3.0, 2.0]), ("b", vec![1], vec![4.0])]);
        let quarter = blend(&a, &b, 0.25).unwrap();
        assert_eq!(quarter["w"].data, vec![1.5, -1.0]);
        assert_eq!(quarter["b"].data, vec![1.0]);
        assert_eq!(blend(&a, &b, 0.0).unwrap(), a);
        assert_eq!(blend(&a, &b, 1.0).unwrap(), b);
    }

    #[test]
    fn models_of_other_shapes_are_refused_by_parameter() {
        let a = weights(&[("w", vec![2], vec![1.0, 2.0])]);
        let wider = weights(&[("w", vec![3], vec![1.0, 2.0, 3.0])]);
        let err = blend(&a, &wider, 0.5).unwrap_err().to_string();
        assert!(err.contains("w is [2] in one model and [3]"), "{err}");
        let more = weights(&[("w", vec![2], vec![1.0, 2.0]), ("x", vec![1], vec![0.0])]);
        let err = blend(&a, &more, 0.5).unwrap_err().to_string();
        assert!(err.contains("x is in the second model only"), "{err}");
        let err = blend(&more, &a, 0.5).unwrap_err().to_string();
        assert!(err.contains("x is in the first model only"), "{err}");
        let err = blend(&a, &a, 1.5).unwrap_err().to_string();
        assert!(err.contains("between 0 and 1"), "{err}");
    }
}
