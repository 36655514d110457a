//! The decoder's attention over its cache, one plain pass per query row.
//!
//! tract fuses each layer's cache with its attention into `InPlaceKvSdpa`: keys and
//! values are appended in place, and the attention runs tract's flash-attention loop,
//! which cuts every head into 32 × 32 tiles and multiplies each tile through ndarray.
//! For a decode step (one query row) a tile is a 1 × 64 by 64 × 32 product with half a
//! dozen small vectors allocated around it: the loop spent its time on that overhead
//! (10 ms of a 1.3 B int8 step for 20 M multiply-adds, 8–13 % of the step).
//!
//! [`CachedAttention`] keeps tract's cache (the same [`InPlaceKvCache`], appended the same
//! way) and replaces the loop: for each head and query row, the scores against every
//! cached key, their softmax, and the weighted sum of the values, reading the cache's
//! rows where they lie, with no allocation but one row of scores per head. A prefill's
//! many rows go through two matrix products per head and block of rows instead (the
//! scores against the keys, then the weighted sum of the values: ndarray's, whose
//! kernels are picked when they run, AVX2 with FMA on x86-64 and NEON on aarch64).
//! Heads are split over the `--threads` pool when there is one.

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_ndarray::linalg::general_mat_mul;
use tract_onnx::tract_hir::tract_ndarray::{
    ArrayView2, ArrayView4, ArrayViewD, ArrayViewMut2, Axis, Ix4,
};
use tract_transformers::ops::dyn_kv_cache::DynKeyValueCacheState;
use tract_transformers::ops::inplace_kv_cache::{InPlaceKvCache, InPlaceKvSdpa};

/// Drop-in for tract's `InPlaceKvSdpa`: inputs `[Q, K_new, V_new]` (`[B, H, S, D]`, the
/// keys and values at their own head count) and an optional additive mask over the whole
/// cache (`[B | 1, H | 1, S | 1, past + S]`, or without the head axis); output the
/// attention of `Q`, shaped like it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CachedAttention {
    fused: InPlaceKvSdpa,
}

impl Eq for CachedAttention {}

impl Op for CachedAttention {
    fn name(&self) -> StaticName {
        "CachedAttention".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        self.fused.info()
    }
    op_as_typed_op!();
}

impl EvalOp for CachedAttention {
    not_out_of_plan!();
    fn state(&self, _ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::new(CachedAttentionState {
            op: self.clone(),
            k: InPlaceKvCache::new(self.fused.axis),
            v: InPlaceKvCache::new(self.fused.axis),
        })))
    }
}

impl TypedOp for CachedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.fused.output_facts(inputs)
    }
    as_op!();
}

#[derive(Clone, Debug)]
struct CachedAttentionState {
    op: CachedAttention,
    k: InPlaceKvCache,
    v: InPlaceKvCache,
}

impl CachedAttentionState {
    fn scale(&self, s: &Shape) -> f32 {
        self.op
            .fused
            .scale
            .unwrap_or_else(|| (s.head_dim as f32).sqrt().recip())
    }

    fn attend(
        &self,
        q: &Tensor,
        cache: &Cache,
        mask: Option<&Tensor>,
        s: &Shape,
    ) -> TractResult<Tensor> {
        let mask = mask.map(|m| Mask::new(m, s)).transpose()?;
        let mut out = Tensor::zero::<f32>(q.shape())?;
        attend(
            q.try_as_plain_ram()?.as_slice::<f32>()?,
            cache,
            mask.as_ref(),
            s,
            self.scale(s),
            self.op.fused.causal,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(out)
    }
}

impl OpState for CachedAttentionState {
    fn init_tensor_fact(&self) -> Option<(String, TypedFact)> {
        let f = &self.op.fused;
        Some((f.name.clone(), f.past_sequence_fact.clone()))
    }

    fn has_init_tensor_fact(&self) -> bool {
        true
    }

    fn resolve_symbols(&mut self, state: &mut TurnState) -> TractResult<()> {
        DynKeyValueCacheState::resolve_symbols(
            state,
            self.op.fused.past_sequence_fact.clone(),
            self.k.valid_shape().as_deref(),
        )
    }

    fn eval(
        &mut self,
        _ctx: &EvalContext,
        _op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        ensure!(
            matches!(inputs.len(), 3 | 4),
            "CachedAttention expects [Q, K_new, V_new] and an optional mask"
        );
        ensure!(
            self.op.fused.axis == 2,
            "CachedAttention caches along axis 2"
        );
        let input_dt = inputs[0].datum_type();
        self.k.push(inputs[1].cast_to::<f32>()?.as_ref())?;
        self.v.push(inputs[2].cast_to::<f32>()?.as_ref())?;
        let q = inputs[0].cast_to::<f32>()?;
        let mask = inputs.get(3).map(|m| m.cast_to::<f32>()).transpose()?;
        let cache = Cache::new(self.k.valid_view::<f32>()?, self.v.valid_view::<f32>()?)?;
        let shape = Shape::of(q.shape(), &cache)?;
        let out = self.attend(&q, &cache, mask.as_deref(), &shape)?;
        let out = match input_dt {
            DatumType::F32 => out,
            dt => out.cast_to_dt(dt)?.into_owned(),
        };
        Ok(tvec!(out.into_tvalue()))
    }

    fn save_to(&self, states: &mut Vec<TValue>) -> TractResult<()> {
        if !self.k.is_empty() {
            states.push(self.k.valid_contiguous()?.into_tvalue());
            states.push(self.v.valid_contiguous()?.into_tvalue());
        }
        Ok(())
    }

    fn load_from(
        &mut self,
        state: &mut TurnState,
        states: &mut dyn Iterator<Item = TValue>,
    ) -> TractResult<()> {
        if let Some(k) = states.next() {
            let v = states
                .next()
                .context("CachedAttention: a saved key cache without its values")?;
            self.k = InPlaceKvCache::new(self.op.fused.axis);
            self.v = InPlaceKvCache::new(self.op.fused.axis);
            self.k.push(k.cast_to::<f32>()?.as_ref())?;
            self.v.push(v.cast_to::<f32>()?.as_ref())?;
        }
        self.resolve_symbols(state)
    }

    fn reset_lanes(&mut self, _lanes: &[LaneId]) -> TractResult<()> {
        bail!("CachedAttention holds one sequence's cache, not several lanes")
    }
}

/// The cached keys and values, `[B, H_kv, len, D]` views into buffers with room for more
/// rows; within a head the rows are contiguous.
struct Cache<'a> {
    keys: ArrayView4<'a, f32>,
    values: ArrayView4<'a, f32>,
}

impl<'a> Cache<'a> {
    fn new(keys: ArrayViewD<'a, f32>, values: ArrayViewD<'a, f32>) -> TractResult<Self> {
        let keys = keys.into_dimensionality::<Ix4>()?;
        let values = values.into_dimensionality::<Ix4>()?;
        ensure!(
            keys.shape() == values.shape(),
            "CachedAttention: cache shapes"
        );
        for view in [&keys, &values] {
            let (strides, dim) = (view.strides(), view.shape()[3] as isize);
            ensure!(
                strides[3] == 1 && (strides[2] == dim || view.shape()[2] <= 1),
                "CachedAttention: a cache whose rows are not contiguous (strides {strides:?})"
            );
        }
        Ok(Self { keys, values })
    }

    fn heads(&self) -> usize {
        self.keys.shape()[1]
    }

    fn len(&self) -> usize {
        self.keys.shape()[2]
    }

    /// The keys and values of head `h` of batch item `b`, `len × D` values each (the rows
    /// of a head lie one after another, as `new` checked).
    fn head(&self, b: usize, h: usize) -> (&'a [f32], &'a [f32]) {
        let rows = |view: &ArrayView4<'a, f32>| {
            let rows = (*view).index_axis_move(Axis(0), b);
            rows.index_axis_move(Axis(0), h).to_slice().unwrap_or(&[])
        };
        (rows(&self.keys), rows(&self.values))
    }
}

/// The shapes of one attention: queries `[batch, heads, rows, head_dim]` over `kv_len`
/// cached keys of `kv_heads` heads.
struct Shape {
    batch: usize,
    heads: usize,
    rows: usize,
    head_dim: usize,
    kv_heads: usize,
    kv_len: usize,
}

impl Shape {
    fn of(q: &[usize], cache: &Cache) -> TractResult<Self> {
        ensure!(
            q.len() == 4,
            "CachedAttention: queries of rank {}, not 4",
            q.len()
        );
        let s = Shape {
            batch: q[0],
            heads: q[1],
            rows: q[2],
            head_dim: q[3],
            kv_heads: cache.heads(),
            kv_len: cache.len(),
        };
        ensure!(
            cache.keys.shape()[0] == s.batch,
            "CachedAttention: batch of queries and cache"
        );
        ensure!(
            s.kv_heads > 0 && s.heads.is_multiple_of(s.kv_heads),
            "CachedAttention: {} query heads over {} cached heads",
            s.heads,
            s.kv_heads
        );
        ensure!(
            s.kv_len >= s.rows,
            "CachedAttention: fewer cached rows than queries"
        );
        Ok(s)
    }
}

/// An additive mask, broadcast over batch, heads and query rows where it has one of them.
struct Mask<'a> {
    data: &'a [f32],
    /// Strides of batch, head and query row (0 where broadcast).
    strides: [usize; 3],
}

impl<'a> Mask<'a> {
    fn new(mask: &'a Tensor, s: &Shape) -> TractResult<Self> {
        let dims: [usize; 4] = match *mask.shape() {
            [b, h, q, k] => [b, h, q, k],
            [b, q, k] => [b, 1, q, k],
            ref other => bail!("CachedAttention: a mask of shape {other:?}"),
        };
        ensure!(
            dims[3] == s.kv_len,
            "CachedAttention: the mask covers {} keys, the cache holds {}",
            dims[3],
            s.kv_len
        );
        let want = [s.batch, s.heads, s.rows];
        let mut strides = [0; 3];
        let mut stride = dims[3];
        for axis in (0..3).rev() {
            ensure!(
                dims[axis] == want[axis] || dims[axis] == 1,
                "CachedAttention: mask of shape {dims:?} for queries {want:?}"
            );
            strides[axis] = if dims[axis] == 1 { 0 } else { stride };
            stride *= dims[axis];
        }
        Ok(Self {
            data: mask.try_as_plain_ram()?.as_slice::<f32>()?,
            strides,
        })
    }

    fn row(&self, b: usize, h: usize, i: usize, len: usize) -> &'a [f32] {
        let start = b * self.strides[0] + h * self.strides[1] + i * self.strides[2];
        &self.data[start..start + len]
    }
}

/// Every head's attention, into `out` (`[batch, heads, rows, head_dim]`), the heads split
/// over the `--threads` pool when there is one.
fn attend(
    q: &[f32],
    cache: &Cache,
    mask: Option<&Mask>,
    s: &Shape,
    scale: f32,
    causal: bool,
    out: &mut [f32],
) {
    let per_head = s.rows * s.head_dim;
    let one = |(bh, out): (usize, &mut [f32])| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let (keys, values) = cache.head(b, h / (s.heads / s.kv_heads));
        let head = Head {
            q: &q[bh * per_head..(bh + 1) * per_head],
            keys,
            values,
            mask: mask.map(|m| (m, b, h)),
            scale,
            causal,
        };
        head.attend(s, out);
    };
    super::threads::for_each_chunk(out, per_head, one);
}

/// One head: its query rows, its cached keys and values, its mask.
struct Head<'a> {
    q: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    mask: Option<(&'a Mask<'a>, usize, usize)>,
    scale: f32,
    causal: bool,
}

/// Up to this many query rows (a decode step, a short prompt) are attended one by one;
/// more (an image's prefill) through matrix products, [`BLOCK`] rows at a time.
const ROWS_ONE_BY_ONE: usize = 4;
const BLOCK: usize = 64;

impl Head<'_> {
    fn attend(&self, s: &Shape, out: &mut [f32]) {
        if s.rows > ROWS_ONE_BY_ONE {
            self.by_products(s, out)
        } else {
            self.one_by_one(s, out)
        }
    }

    /// How many of the cached keys query row `i` sees: with the op's causal flag and no
    /// mask, the past and itself; with a mask, up to the last key it does not hide.
    fn visible(&self, s: &Shape, i: usize) -> usize {
        if let Some((mask, b, h)) = self.mask {
            let row = mask.row(b, h, i, s.kv_len);
            row.iter()
                .rposition(|&m| m != f32::NEG_INFINITY)
                .map_or(0, |last| last + 1)
        } else if self.causal {
            s.kv_len - s.rows + i + 1
        } else {
            s.kv_len
        }
    }

    /// Query row `i`'s dot products with the first `scores.len()` keys (at least the
    /// `visible` ones) made its softmax weights: scaled, masked, exponentiated, 0 past
    /// what the row sees. Returns their sum, 0 when the row sees no key.
    fn weights(&self, i: usize, visible: usize, scores: &mut [f32]) -> f32 {
        let (scores, hidden) = scores.split_at_mut(visible);
        hidden.fill(0.0);
        match self.mask {
            Some((mask, b, h)) => {
                for (score, m) in scores.iter_mut().zip(mask.row(b, h, i, visible)) {
                    *score = *score * self.scale + m;
                }
            }
            None => scores.iter_mut().for_each(|x| *x *= self.scale),
        }
        // nothing visible: a zero row, as a softmax over nothing
        super::softmax::exp_weights(scores)
    }

    fn one_by_one(&self, s: &Shape, out: &mut [f32]) {
        let d = s.head_dim;
        let mut scores = vec![0f32; s.kv_len];
        for (i, (q, out)) in self
            .q
            .chunks_exact(d)
            .zip(out.chunks_exact_mut(d))
            .enumerate()
        {
            let visible = self.visible(s, i);
            let scores = &mut scores[..visible];
            for (score, key) in scores.iter_mut().zip(self.keys.chunks_exact(d)) {
                *score = dot(q, key);
            }
            let sum = self.weights(i, visible, scores);
            out.fill(0.0);
            if sum == 0.0 {
                continue;
            }
            for (&p, value) in scores.iter().zip(self.values.chunks_exact(d)) {
                if p != 0.0 {
                    axpy(p, value, out);
                }
            }
            let r = sum.recip();
            out.iter_mut().for_each(|o| *o *= r);
        }
    }

    /// The rows [`BLOCK`] at a time: their scores as one matrix product with the keys,
    /// their softmax weights row by row, then their weighted sums as one product with the
    /// values. Keys that no row of a block sees (the future, in a causal prefill) are
    /// left out of both products.
    fn by_products(&self, s: &Shape, out: &mut [f32]) {
        let d = s.head_dim;
        // the first `n` rows of `D` values
        fn first(rows: &[f32], n: usize, d: usize) -> ArrayView2<'_, f32> {
            ArrayView2::from_shape((n, d), &rows[..n * d]).expect("n rows of D values")
        }
        let mut buffer = vec![0f32; BLOCK.min(s.rows) * s.kv_len];
        for (block, out) in out.chunks_mut(BLOCK * d).enumerate() {
            let (start, rows) = (block * BLOCK, out.len() / d);
            let visible: Vec<usize> = (start..start + rows).map(|i| self.visible(s, i)).collect();
            let seen = visible.iter().copied().max().unwrap_or(0);
            let q = first(&self.q[start * d..], rows, d);
            let mut scores = ArrayViewMut2::from_shape((rows, seen), &mut buffer[..rows * seen])
                .expect("rows × seen scores");
            general_mat_mul(1.0, &q, &first(self.keys, seen, d).t(), 0.0, &mut scores);
            let mut total = Vec::with_capacity(rows);
            for (r, mut row) in scores.rows_mut().into_iter().enumerate() {
                let row = row
                    .as_slice_mut()
                    .expect("a row of scores lies in one piece");
                total.push(self.weights(start + r, visible[r], row));
            }
            let mut out = ArrayViewMut2::from_shape((rows, d), out).expect("rows × D out");
            general_mat_mul(1.0, &scores, &first(self.values, seen, d), 0.0, &mut out);
            for (mut row, total) in out.rows_mut().into_iter().zip(total) {
                let scale = if total == 0.0 { 0.0 } else { total.recip() };
                row.iter_mut().for_each(|o| *o *= scale);
            }
        }
    }
}

/// `a · b`, summed in 16 lanes so that the compiler keeps it in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let (a_chunks, a_tail) = a.as_chunks::<L>();
    let (b_chunks, b_tail) = b.as_chunks::<L>();
    let mut lanes = [0f32; L];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for l in 0..L {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `out += p · v`.
fn axpy(p: f32, v: &[f32], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += p * x;
    }
}

/// Replaces every `InPlaceKvSdpa` of an optimised model with [`CachedAttention`]. Returns
/// how many were replaced.
pub(crate) fn replace_fused_attention(model: &mut TypedModel) -> usize {
    let mut count = 0;
    for node in model.nodes.iter_mut() {
        if let Some(fused) = node.op_as::<InPlaceKvSdpa>() {
            node.op = Box::new(CachedAttention {
                fused: fused.clone(),
            });
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        Tensor::from_shape(shape, &values(shape.iter().product(), seed)).unwrap()
    }

    /// Softmax attention written out: `q` `[1, H, S, D]` over `k`, `v` `[1, H_kv, T, D]`,
    /// an additive mask `[1, 1, S, T]`.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Vec<f32> {
        let (q, k, v, m) = (
            q.to_plain_array_view::<f32>().unwrap(),
            k.to_plain_array_view::<f32>().unwrap(),
            v.to_plain_array_view::<f32>().unwrap(),
            mask.to_plain_array_view::<f32>().unwrap(),
        );
        let (heads, rows, dim) = (q.shape()[1], q.shape()[2], q.shape()[3]);
        let (kv_heads, len) = (k.shape()[1], k.shape()[2]);
        let mut out = Vec::new();
        for h in 0..heads {
            let kh = h / (heads / kv_heads);
            for i in 0..rows {
                let scores: Vec<f32> = (0..len)
                    .map(|j| {
                        let dot: f32 = (0..dim).map(|d| q[[0, h, i, d]] * k[[0, kh, j, d]]).sum();
                        dot / (dim as f32).sqrt() + m[[0, 0, i, j]]
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                for d in 0..dim {
                    out.push((0..len).map(|j| e[j] * v[[0, kh, j, d]]).sum::<f32>() / sum);
                }
            }
        }
        out
    }

    /// A causal mask for `rows` new positions after `past` cached ones: 0 where a row may
    /// look, -inf beyond it.
    fn causal_mask(past: usize, rows: usize) -> Tensor {
        let len = past + rows;
        let m: Vec<f32> = (0..rows * len)
            .map(|x| {
                let (i, j) = (x / len, x % len);
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        Tensor::from_shape(&[1, 1, rows, len], &m).unwrap()
    }

    fn concat(a: &Tensor, b: &Tensor) -> Tensor {
        Tensor::stack_tensors(2, &[a.clone(), b.clone()]).unwrap()
    }

    /// A prefill of 7 rows, then single rows and a short prompt of 3, each checked against
    /// softmax attention over the whole cache: 4 query heads over 2 cached heads of `dim`
    /// values, with a causal mask input or, without one, the op's causal flag.
    fn prefill_then_decode_steps(dim: usize, mask_input: bool) {
        let (heads, kv_heads) = (4, 2);
        let op = CachedAttention {
            fused: InPlaceKvSdpa {
                name: "cache".into(),
                past_sequence_fact: f32::fact([1usize, kv_heads, 0, dim].as_ref()),
                axis: 2,
                causal: !mask_input,
                scale: None,
            },
        };
        let mut state = op.state(&EvalContext::out_of_plan()).unwrap().unwrap();
        let (mut keys, mut vals): (Option<Tensor>, Option<Tensor>) = (None, None);
        let mut past = 0;
        for (step, rows) in [7usize, 1, 1, 3, 1, 9].into_iter().enumerate() {
            let seed = 10 * step as u64;
            let q = tensor(&[1, heads, rows, dim], seed);
            let k = tensor(&[1, kv_heads, rows, dim], seed + 1);
            let v = tensor(&[1, kv_heads, rows, dim], seed + 2);
            let mask = causal_mask(past, rows);
            keys = Some(keys.map_or(k.clone(), |all| concat(&all, &k)));
            vals = Some(vals.map_or(v.clone(), |all| concat(&all, &v)));
            let want = reference(&q, keys.as_ref().unwrap(), vals.as_ref().unwrap(), &mask);
            let mut inputs = tvec![q.into(), k.into(), v.into()];
            if mask_input {
                inputs.push(mask.into());
            }
            let got = state
                .eval(&EvalContext::out_of_plan(), &op, inputs)
                .unwrap()
                .remove(0);
            assert_eq!(got.shape(), &[1, heads, rows, dim]);
            let got = got.to_plain_array_view::<f32>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "step {step}: {g} against {w}");
            }
            past += rows;
        }
    }

    #[test]
    fn a_prefill_then_decode_steps_match_softmax_attention_over_the_whole_cache() {
        // 20 values a head and 32: the prefills of 7 and 9 rows go through the products
        for dim in [20, 32] {
            prefill_then_decode_steps(dim, true);
        }
    }

    #[test]
    fn the_causal_flag_without_a_mask_hides_the_future_in_a_prefill_too() {
        for dim in [20, 32] {
            prefill_then_decode_steps(dim, false);
        }
    }

    #[test]
    fn a_row_that_sees_nothing_is_zero_and_a_causal_flag_without_mask_hides_the_future() {
        let s = Shape {
            batch: 1,
            heads: 1,
            rows: 2,
            head_dim: 4,
            kv_heads: 1,
            kv_len: 3,
        };
        let q = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let keys = tract_ndarray::Array4::from_shape_vec((1, 1, 3, 4), values(12, 3)).unwrap();
        // the third value is far from the others: any weight on it shows
        let vals = tract_ndarray::Array4::<f32>::from_shape_fn((1, 1, 3, 4), |(_, _, j, d)| {
            if j == 2 { 1000.0 } else { (10 * j + d) as f32 }
        });
        let cache = Cache::new(keys.view().into_dyn(), vals.view().into_dyn()).unwrap();
        // causal: the first row sees the first two keys only, so no third value leaks in
        let mut out = [0f32; 8];
        attend(&q, &cache, None, &s, 0.5, true, &mut out);
        assert!(out[..4].iter().all(|&x| x < 10.0 + 4.0), "{out:?}");
        // a mask hiding every key of the second row leaves it zero
        let hide = Tensor::from_shape(
            &[1, 1, 2, 3],
            &[
                0.0,
                0.0,
                0.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
            ],
        )
        .unwrap();
        let mask = Mask::new(&hide, &s).unwrap();
        attend(&q, &cache, Some(&mask), &s, 0.5, false, &mut out);
        assert_eq!(&out[4..], &[0.0; 4]);
        assert!(out[..4].iter().any(|&x| x > 0.0));
        // a mask over the wrong number of keys is refused by name
        let short = Tensor::from_shape(&[1, 1, 2, 2], &[0f32; 4]).unwrap();
        let e = Mask::new(&short, &s).err().unwrap().to_string();
        assert!(e.contains("covers 2 keys"), "{e}");
    }
}
