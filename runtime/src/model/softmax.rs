//! A row's softmax weights for the attention, in plain Rust the compiler vectorises: the
//! maximum and the sum kept in [`LANES`] lanes, and `exp` as a polynomial (the Cephes
//! `expf`, within a few units in the last place) instead of a libm call per value.

/// Lanes of the maximum, the sum and the exponential: two SSE or NEON registers.
const LANES: usize = 8;

/// Turns `scores` into `exp(score - max)` in place and returns their sum; a row whose
/// every score is `-inf` (it sees nothing) becomes zeros and returns 0.
pub(crate) fn exp_weights(scores: &mut [f32]) -> f32 {
    let max = max(scores);
    if max == f32::NEG_INFINITY {
        scores.fill(0.0);
        return 0.0;
    }
    // two passes, each a loop the compiler vectorises on its own
    scores.iter_mut().for_each(|x| *x = exp(*x - max));
    sum(scores)
}

fn sum(xs: &[f32]) -> f32 {
    let (chunks, tail) = xs.as_chunks::<LANES>();
    let mut lanes = [0f32; LANES];
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] += chunk[l];
        }
    }
    lanes.iter().chain(tail).sum()
}

/// The largest value, `-inf` for none (NaNs are passed over).
fn max(xs: &[f32]) -> f32 {
    let (chunks, tail) = xs.as_chunks::<LANES>();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] = if chunk[l] > lanes[l] {
                chunk[l]
            } else {
                lanes[l]
            };
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `e^x` for `x <= 0` (a score less the row's maximum): 0 below -87.3, where `e^x` leaves
/// the normal floats, and for `-inf`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // adding 1.5 * 2^23 rounds to an integer, which then sits in the low bits
    const ROUND: f32 = 12_582_912.0;
    let below = x < -87.3;
    let x = if below { 0.0 } else { x };
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let scale = f32::from_bits(((n + 127) << 23) as u32);
    if below { 0.0 } else { y * scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_units_in_the_last_place_down_to_the_normal_floats() {
        let mut worst = 0f32;
        for i in 0..=873_000 {
            let x = -(i as f32) * 1e-4;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn weights_are_the_softmax_numerators_and_their_sum() {
        // 19 values: two full chunks of lanes and a tail; the maximum in the tail
        let mut scores: Vec<f32> = (0..19).map(|i| (i * 7 % 11) as f32 * 0.5 - 2.0).collect();
        scores[17] = 4.0;
        scores[3] = f32::NEG_INFINITY; // masked
        let want: Vec<f32> = scores.iter().map(|x| (x - 4.0).exp()).collect();
        let sum = exp_weights(&mut scores);
        for (g, w) in scores.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 4.0 * f32::EPSILON * w.max(f32::MIN_POSITIVE),
                "{g} {w}"
            );
        }
        assert_eq!(scores[3], 0.0);
        assert_eq!(scores[17], 1.0);
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-5, "{sum}");
    }

    #[test]
    fn a_row_that_sees_nothing_is_zeros() {
        let mut scores = vec![f32::NEG_INFINITY; 11];
        assert_eq!(exp_weights(&mut scores), 0.0);
        assert!(scores.iter().all(|&x| x == 0.0));
        assert_eq!(exp_weights(&mut []), 0.0);
    }
}
