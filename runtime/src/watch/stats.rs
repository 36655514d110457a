//! Medians and percentiles of latency samples.

/// The `q`-quantile (0..=1) of `xs` by nearest rank; `None` when there are no samples.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.saturating_sub(1).min(v.len() - 1)])
}

pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let xs: Vec<f64> = (1..=20).rev().map(|x| x as f64).collect();
        assert_eq!(median(&xs), Some(10.0));
        assert_eq!(quantile(&xs, 0.95), Some(19.0));
        assert_eq!(quantile(&xs, 1.0), Some(20.0));
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
    }
}
