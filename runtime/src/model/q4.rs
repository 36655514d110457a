//! `MatMulNBits` (4 bits, blocks of 32, symmetric), read straight into tract's Q4_0 blocks.
//!
//! The q4 packages store each Linear weight as onnxruntime's `MatMulNBits` wants it: per
//! output row, blocks of 32 weights along K, 16 bytes of nibbles (weight `2i` in the low
//! nibble of byte `i`, `2i + 1` in the high one) and one f32 scale per block, zero point 8.
//! tract's Q4_0 block is the same numbers in ggml's order: an f16 scale, then byte `j`
//! holding weight `j` (low) and `j + 16` (high). tract-onnx's own translation widens the
//! whole weight to a byte per value and writes the blocks back nibble by nibble; for a
//! 9 B-parameter model that is tens of seconds of the load. Here each block is reordered
//! with a few byte operations. Other forms (zero points, other block sizes or bit widths)
//! go to tract-onnx's translation.

use tract_onnx::model::{ParsingContext, optional_inputs};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::tract_linalg::block_quant::{
    BlockQuant, BlockQuantFact, BlockQuantStorage, Q4_0,
};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

/// Weights per block.
const BLOCK: usize = 32;
/// Bytes of one Q4_0 block: the f16 scale and 16 bytes of nibbles.
const Q4_0_BYTES: usize = 2 + BLOCK / 2;

/// The ONNX operator builder for `MatMulNBits`: this module's translation when the node
/// is the symmetric 4-bit, 32-wide form, tract-onnx's otherwise.
pub(crate) fn mat_mul_nbits(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let k: usize = node.get_attr("K")?;
    let n: usize = node.get_attr("N")?;
    let bits: usize = node.get_attr_opt("bits")?.unwrap_or(4);
    let block_size: usize = node.get_attr("block_size")?;
    let mut opt = optional_inputs(node).skip(3);
    let (zero_points, g_idx, bias) = (
        opt.next().flatten(),
        opt.next().flatten(),
        opt.next().flatten(),
    );
    if bits != 4
        || block_size != BLOCK
        || !k.is_multiple_of(BLOCK)
        || zero_points.is_some()
        || g_idx.is_some()
    {
        let builder = *tract_onnx::onnx()
            .op_register
            .0
            .get("MatMulNBits")
            .context("tract-onnx has no MatMulNBits")?;
        return builder(ctx, node);
    }
    Ok((expand(SymmetricQ4 { k, n, bias }), vec![]))
}

/// `Y = A · dequant(B)ᵀ (+ bias)` with `B` symmetric Q4 in blocks of 32 along K.
#[derive(Debug, Clone)]
struct SymmetricQ4 {
    k: usize,
    n: usize,
    /// Index of the bias among the node's inputs, if it has one.
    bias: Option<usize>,
}

impl Expansion for SymmetricQ4 {
    fn name(&self) -> StaticName {
        "MatMulNBits".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        let n = self.n.to_dim();
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            s.equals(&outputs[0].rank, rank as i64)?;
            for ax in 0..rank - 1 {
                s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
            }
            s.equals(&outputs[0].shape[rank - 1], n.clone())
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (k, n) = (self.k, self.n);
        for (i, what) in [(1, "weight"), (2, "scales")] {
            ensure!(
                model.outlet_fact(inputs[i])?.konst.is_some(),
                "{prefix}: MatMulNBits {what} must be a constant"
            );
        }
        // reordered when the load folds it (see `super::fold`), one weight at a time
        let weight = model.wire_node(
            format!("{prefix}.weight_bq"),
            Q4Blocks { k, n },
            &[inputs[1], inputs[2]],
        )?[0];
        let input = model.outlet_fact(inputs[0])?.clone();
        let a = model.wire_node(
            format!("{prefix}.cast_a"),
            cast(f32::datum_type()),
            &[inputs[0]],
        )?[0];
        let lead: String = "abcdefgh".chars().take(input.rank() - 1).collect();
        let axes =
            AxesMapping::from_strs(&[format!("{lead}k"), "gnk".into()], &[format!("{lead}n")])?;
        let y = model.wire_node(
            format!("{prefix}.matmul"),
            EinSum::new(axes, f32::datum_type()),
            &[a, weight],
        )?[0];
        let mut y = model.wire_node(format!("{prefix}.cast_y"), cast(input.datum_type), &[y])?[0];
        if let Some(i) = self.bias {
            y = wire_with_rank_broadcast(format!("{prefix}.bias"), model, add(), &[y, inputs[i]])?
                [0];
        }
        Ok(tvec!(y))
    }
}

/// onnxruntime's nibbles and scales of one weight → tract's Q4_0 blocks, `[1, n, k]`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct Q4Blocks {
    k: usize,
    n: usize,
}

impl Op for Q4Blocks {
    fn name(&self) -> StaticName {
        "Q4Blocks".into()
    }
    op_as_typed_op!();
}

impl EvalOp for Q4Blocks {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (b, scales) = args_2!(inputs);
        let scales = scales.cast_to::<f32>()?;
        let blocks = reorder_blocks(
            b.try_as_plain_ram()?.as_slice::<u8>()?,
            scales.try_as_plain_ram()?.as_slice::<f32>()?,
            self.n,
            self.k,
        )?;
        drop(b);
        let format: Box<dyn BlockQuant> = Box::new(Q4_0);
        let storage = BlockQuantStorage::new(format, self.n, self.k, Arc::new(blocks))?;
        Ok(tvec!(
            storage
                .into_tensor_with_shape(f32::datum_type(), &[1, self.n, self.k])
                .into_tvalue()
        ))
    }
}

impl TypedOp for Q4Blocks {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let format: Box<dyn BlockQuant> = Box::new(Q4_0);
        let fact = BlockQuantFact::new(format, tvec!(1, self.n, self.k));
        Ok(tvec!(f32::fact([1, self.n, self.k]).with_exotic_fact(fact)))
    }

    as_op!();
}

fn add() -> Box<dyn TypedOp> {
    Box::new(tract_onnx::tract_core::ops::math::add())
}

/// onnxruntime's `[n, k/32, 16]` nibbles and `[n · k/32]` scales as tract's Q4_0 blocks.
fn reorder_blocks(b: &[u8], scales: &[f32], n: usize, k: usize) -> TractResult<Blob> {
    let blocks = n * (k / BLOCK);
    ensure!(
        b.len() == blocks * BLOCK / 2,
        "{} bytes of nibbles for N={n}, K={k} (expected {})",
        b.len(),
        blocks * BLOCK / 2
    );
    ensure!(
        scales.len() == blocks,
        "{} scales for N={n}, K={k} (expected {blocks})",
        scales.len()
    );
    // aligned as tract aligns its own block storage
    let mut out = Tensor::zero_aligned::<u8>(&[blocks * Q4_0_BYTES], 128)?;
    for ((dst, src), scale) in out
        .as_bytes_mut()
        .chunks_exact_mut(Q4_0_BYTES)
        .zip(b.chunks_exact(BLOCK / 2))
        .zip(scales)
    {
        dst[..2].copy_from_slice(&f16::from_f32(*scale).to_bits().to_le_bytes());
        let (low, high) = src.split_at(BLOCK / 4);
        for (j, d) in dst[2..].iter_mut().enumerate() {
            // weight j (low nibble) and weight j + 16 (high nibble)
            let shift = 4 * (j % 2);
            let w = (low[j / 2] >> shift) & 0x0f;
            let w16 = (high[j / 2] >> shift) & 0x0f;
            *d = w | (w16 << 4);
        }
    }
    out.into_blob()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reordered blocks hold the same weights as tract's own packing of the same
    /// nibbles.
    #[test]
    fn blocks_match_tracts_packing_of_the_same_weights() {
        let (n, k) = (3, 64);
        let codes: Vec<u8> = (0..n * k).map(|i| ((i * 7 + i / 5) % 16) as u8).collect();
        let scales: Vec<f32> = (0..n * k / BLOCK).map(|i| 0.25 + i as f32 * 0.5).collect();
        // onnxruntime's layout: two weights a byte, the even one low
        let ort: Vec<u8> = codes.chunks(2).map(|p| p[0] | (p[1] << 4)).collect();
        let ours = reorder_blocks(&ort, &scales, n, k).unwrap();
        let tracts = Q4_0.pack_prequantized(&codes, &scales, n, k).unwrap();
        assert_eq!(&ours[..], &tracts[..]);
        // and they dequantize to (code - 8) * scale
        for (i, code) in codes.iter().enumerate() {
            let want = (*code as f32 - 8.0) * scales[i / BLOCK];
            let got = Q4_0.extract_at_offset_f32(&ours, i);
            assert_eq!(got, want, "weight {i}");
        }
    }

    /// Packing for the matrix kernels (the patched `BaseQ4_0::pack` in vendor/) keeps every
    /// weight: read back through tract's own extractor, for panel widths with and without
    /// zipping, scales first or last, and a partial last panel.
    #[test]
    fn packed_panels_hold_every_weight() {
        use tract_onnx::tract_core::tract_linalg::block_quant::PackedBlockQuantFormat;
        let (m, k) = (37, 96);
        let codes: Vec<u8> = (0..m * k).map(|i| ((i * 11 + i / 7) % 16) as u8).collect();
        let scales: Vec<f32> = (0..m * k / BLOCK)
            .map(|i| 0.125 * (1 + i % 9) as f32)
            .collect();
        let blocks = Q4_0.pack_prequantized(&codes, &scales, m, k).unwrap();
        for (r, zip, scales_at_end) in [(4, 0, false), (8, 0, true), (16, 8, false), (32, 16, true)]
        {
            let format = PackedBlockQuantFormat {
                bq: Box::new(Q4_0),
                r,
                zip,
                scales_at_end,
            };
            let packed = format.pack(&blocks, k).unwrap();
            let mut row = vec![0f32; k];
            for mn in 0..m {
                Q4_0.extract_at_mn_f32(&packed, mn, &mut row).unwrap();
                for (kk, got) in row.iter().enumerate() {
                    let want = (codes[mn * k + kk] as f32 - 8.0) * scales[(mn * k + kk) / BLOCK];
                    assert_eq!(*got, want, "r {r} zip {zip}: row {mn}, weight {kk}");
                }
            }
        }
    }

    #[test]
    fn a_weight_of_the_wrong_size_is_refused() {
        let err = reorder_blocks(&[0; 15], &[1.0], 1, 32).unwrap_err();
        assert!(format!("{err}").contains("expected 16"), "{err}");
        let err = reorder_blocks(&[0; 16], &[1.0, 2.0], 1, 32).unwrap_err();
        assert!(format!("{err}").contains("scales"), "{err}");
    }
}
