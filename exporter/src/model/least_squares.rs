//! The affine map that best carries one set of vectors onto another, by least squares.
//!
//! Given `n` rows `x` of width `d` and `n` rows `y` of width `k`, [`fit`] finds the
//! `weight` `[d, k]` and `bias` `[k]` for which `x·weight + bias` is nearest `y` in
//! squared error, the weight held a little toward zero (ridge) so that directions `x`
//! hardly varies in do not get large weights. It solves the normal equations with a
//! Cholesky factorisation in `f64`; `d` is a model width (a few hundred at most), so the
//! `(d+1)²` system is small.

use anyhow::{Result, bail};

/// `y = x·weight + bias`, `weight` `[d, k]` row-major (burn's `[in, out]` layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Affine {
    /// The map applied to rows of `x`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let k = self.bias.len();
        let d = self.weight.len() / k.max(1);
        let mut out = Vec::with_capacity(x.len() / d.max(1) * k);
        for r in x.chunks_exact(d) {
            out.extend((0..k).map(|c| {
                self.bias[c]
                    + r.iter()
                        .enumerate()
                        .map(|(j, v)| v * self.weight[j * k + c])
                        .sum::<f32>()
            }));
        }
        out
    }
}

/// The share of the variance of `y` (rows of width `k`, about each column's mean) that
/// `predicted` accounts for: 1 when it is `y`, 0 when it is no better than the means.
pub fn explained(predicted: &[f32], y: &[f32], k: usize) -> f64 {
    let n = y.len() / k.max(1);
    let mut mean = vec![0f64; k];
    for r in y.chunks_exact(k) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += *v as f64 / n as f64;
        }
    }
    let total: f64 = y
        .chunks_exact(k)
        .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| (*v as f64 - m).powi(2)))
        .sum();
    let left: f64 = predicted
        .iter()
        .zip(y)
        .map(|(p, v)| (*p as f64 - *v as f64).powi(2))
        .sum();
    1.0 - left / total.max(f64::MIN_POSITIVE)
}

/// The least-squares affine map from rows of `x` `[n, d]` to rows of `y` `[n, k]`. The
/// weight is pulled toward zero by `ridge` times the mean squared deviation of `x`'s
/// columns (0 for none); the bias is not. Needs more rows than `d` and finite values.
pub fn fit(x: &[f32], y: &[f32], d: usize, k: usize, ridge: f64) -> Result<Affine> {
    if d == 0 || k == 0 || !x.len().is_multiple_of(d) {
        bail!("{} inputs are not rows of width {d}", x.len());
    }
    let n = x.len() / d;
    if y.len() != n * k {
        bail!("{n} input rows but {} targets of width {k}", y.len());
    }
    if n <= d {
        bail!("{n} rows cannot fit a map from width {d}: it needs more than {d}");
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        bail!("an input or target is not a finite number");
    }
    if !(ridge.is_finite() && ridge >= 0.0) {
        bail!("the ridge must be 0 or more, not {ridge}");
    }
    // the normal equations of [x, 1]: gram (d+1)², right-hand sides (d+1)×k
    let m = d + 1;
    let mut gram = vec![0f64; m * m];
    let mut rhs = vec![0f64; m * k];
    let mut row = vec![0f64; m];
    for i in 0..n {
        for j in 0..d {
            row[j] = x[i * d + j] as f64;
        }
        row[d] = 1.0;
        for a in 0..m {
            let ra = row[a];
            for b in a..m {
                gram[a * m + b] += ra * row[b];
            }
            for c in 0..k {
                rhs[a * k + c] += ra * y[i * k + c] as f64;
            }
        }
    }
    for a in 0..m {
        for b in 0..a {
            gram[a * m + b] = gram[b * m + a];
        }
    }
    if ridge > 0.0 {
        // the columns' variance, so the ridge means the same at any scale of x
        let spread: f64 = (0..d)
            .map(|j| gram[j * m + j] - gram[j * m + d] * gram[j * m + d] / n as f64)
            .sum::<f64>()
            / d as f64;
        for j in 0..d {
            gram[j * m + j] += ridge * spread.max(f64::MIN_POSITIVE);
        }
    }
    let l = cholesky(&gram, m)?;
    let solved = solve(&l, m, &rhs, k);
    Ok(Affine {
        weight: solved[..d * k].iter().map(|&v| v as f32).collect(),
        bias: solved[d * k..].iter().map(|&v| v as f32).collect(),
    })
}

/// The lower-triangular `l` with `l·lᵀ = a` (`a` symmetric positive definite, `m×m`).
fn cholesky(a: &[f64], m: usize) -> Result<Vec<f64>> {
    let mut l = vec![0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let s: f64 = (0..j).map(|p| l[i * m + p] * l[j * m + p]).sum();
            if i == j {
                let v = a[i * m + i] - s;
                if v <= 1e-12 * a[i * m + i].abs().max(1e-300) {
                    bail!(
                        "the inputs do not vary in every direction (column {i} of {m} depends on the others): use more rows or a ridge"
                    );
                }
                l[i * m + i] = v.sqrt();
            } else {
                l[i * m + j] = (a[i * m + j] - s) / l[j * m + j];
            }
        }
    }
    Ok(l)
}

/// `a⁻¹·b` for `a = l·lᵀ`, `b` `[m, k]`.
fn solve(l: &[f64], m: usize, b: &[f64], k: usize) -> Vec<f64> {
    let mut z = b.to_vec();
    // forward: l·z = b
    for i in 0..m {
        for c in 0..k {
            let s: f64 = (0..i).map(|p| l[i * m + p] * z[p * k + c]).sum();
            z[i * k + c] = (z[i * k + c] - s) / l[i * m + i];
        }
    }
    // backward: lᵀ·w = z
    for i in (0..m).rev() {
        for c in 0..k {
            let s: f64 = (i + 1..m).map(|p| l[p * m + i] * z[p * k + c]).sum();
            z[i * k + c] = (z[i * k + c] - s) / l[i * m + i];
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use glimpse_runtime::scene::Rng;

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.range_f32(-1.0, 1.0)).collect()
    }

    #[test]
    fn an_exact_affine_map_is_recovered() {
        let (n, d, k) = (50, 4, 3);
        let mut rng = Rng::new(3);
        let x = random(&mut rng, n * d);
        let truth = Affine {
            weight: random(&mut rng, d * k),
            bias: vec![0.5, -2.0, 3.0],
        };
        let y = truth.apply(&x);
        let got = fit(&x, &y, d, k, 0.0).unwrap();
        for (a, b) in got
            .weight
            .iter()
            .zip(&truth.weight)
            .chain(got.bias.iter().zip(&truth.bias))
        {
            assert!((a - b).abs() < 1e-4, "{got:?} for {truth:?}");
        }
    }

    #[test]
    fn noisy_targets_get_the_map_of_least_squared_error() {
        let (n, d, k) = (200, 3, 2);
        let mut rng = Rng::new(5);
        let x = random(&mut rng, n * d);
        let y = random(&mut rng, n * k);
        let best = fit(&x, &y, d, k, 0.0).unwrap();
        let error = |f: &Affine| -> f64 {
            f.apply(&x)
                .iter()
                .zip(&y)
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum()
        };
        let e = error(&best);
        let share = explained(&best.apply(&x), &y, k);
        assert!(share > 0.0 && share < 0.2, "random targets: {share}");
        assert!((explained(&y, &y, k) - 1.0).abs() < 1e-12);
        // moving any one coefficient either way makes the error larger
        for i in 0..d * k + k {
            for step in [-0.01f32, 0.01] {
                let mut f = best.clone();
                if i < d * k {
                    f.weight[i] += step;
                } else {
                    f.bias[i - d * k] += step;
                }
                assert!(error(&f) > e, "coefficient {i} moved by {step}");
            }
        }
        // a ridge shrinks the weight
        let norm = |f: &Affine| f.weight.iter().map(|w| w * w).sum::<f32>();
        assert!(norm(&fit(&x, &y, d, k, 10.0).unwrap()) < norm(&best));
    }

    #[test]
    fn degenerate_inputs_are_refused_with_the_reason() {
        let err = |r: Result<Affine>| format!("{:#}", r.unwrap_err());
        // as many rows as columns
        assert!(err(fit(&[1.0; 4], &[1.0; 2], 2, 1, 0.0)).contains("more than 2"));
        assert!(err(fit(&[1.0; 6], &[1.0; 2], 2, 1, 0.0)).contains("3 input rows"));
        assert!(err(fit(&[f32::NAN, 1.0, 2.0], &[1.0; 3], 1, 1, 0.0)).contains("finite"));
        // a column that never changes is the bias again: without a ridge, no unique map
        let x: Vec<f32> = (0..10).flat_map(|i| [i as f32, 2.0]).collect();
        let y: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert!(err(fit(&x, &y, 2, 1, 0.0)).contains("do not vary"));
        let f = fit(&x, &y, 2, 1, 1e-3).unwrap();
        assert!((f.weight[0] - 1.0).abs() < 0.01, "{f:?}");
    }
}
