//! f16 operands packed as f32: the input format of an f32 kernel taking f16 activations.
//!
//! An f16 model's products multiply f16 weights by f16 activations into f32 accumulators. The
//! kernels that read f16 panels convert every element of both operands at every tile, on
//! 256-bit registers; the 512-bit f32 tiles read f32 only. [`WidenedF16`] packs an f16
//! tensor exactly as its inner f32 [`PackedFormat`] would pack the same values as f32, so an
//! f32 tile takes it unchanged: the conversion is done once per product, at packing time,
//! where the activations are a few kilobytes per token (the weights reach the same tile
//! through a panel extractor, once per panel). f16 to f32 is exact, so the products are the
//! ones the f16-reading kernels compute.

use std::fmt::{Debug, Display};

use tract_data::half::slice::HalfFloatSliceExt;
use tract_data::internal::*;

use crate::WeightType;
use crate::mmm::{EagerPackedInput, MMMInputFormat, MMMInputValue, PackedExoticFact};
use crate::pack::PackedFormat;

/// f16 in, packed as `inner` (an f32 [`PackedFormat`]) packs f32.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WidenedF16 {
    pub inner: PackedFormat,
}

impl WidenedF16 {
    pub fn new(inner: PackedFormat) -> WidenedF16 {
        assert_eq!(inner.dt, f32::datum_type(), "f16 widens to an f32 packing");
        WidenedF16 { inner }
    }

    /// The f16 packing with `inner`'s geometry: the same element offsets, half the bytes.
    fn narrow(&self) -> PackedFormat {
        PackedFormat { dt: f16::datum_type(), ..self.inner.clone() }
    }

    /// `data` as its inner format sees it, to reuse that format's readers.
    fn as_inner(&self, data: &EagerPackedInput) -> EagerPackedInput {
        let mut data = data.clone();
        data.fact.format = Box::new(self.inner.clone());
        data
    }
}

impl Display for WidenedF16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WidenedF16({})", self.inner)
    }
}

impl Debug for WidenedF16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WidenedF16({:?})", self.inner)
    }
}

impl MMMInputFormat for WidenedF16 {
    fn prepare_tensor(&self, t: &Tensor, k_axis: usize, mn_axis: usize) -> TractResult<Tensor> {
        let packed = self.prepare_one(t, k_axis, mn_axis)?;
        Ok(crate::mmm::PackedMatrixStorage::new(packed).into_tensor(t.datum_type()))
    }

    fn prepare_one_view(
        &self,
        t: &TensorView,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>> {
        ensure!(t.datum_type() == f16::datum_type(), "{self} packs f16, not {:?}", t.datum_type());
        // pack in f16 (strides, panels and padding as the inner format lays them out), then
        // widen the packed elements in place order: offsets are in elements, so they carry over
        let narrow = self.narrow().pack_tensor_view(t, k_axis, mn_axis)?;
        let narrow = narrow
            .downcast_ref::<EagerPackedInput>()
            .context("a plain packing gives an eager input")?;
        let halves: &[f16] = unsafe {
            std::slice::from_raw_parts(
                narrow.packed.as_ptr() as *const f16,
                narrow.packed.len() / 2,
            )
        };
        let mut wide =
            unsafe { Blob::new_for_size_and_align(halves.len() * 4, self.inner.alignment_bytes) };
        let floats: &mut [f32] =
            unsafe { std::slice::from_raw_parts_mut(wide.as_mut_ptr() as *mut f32, halves.len()) };
        halves.convert_to_f32_slice(floats);
        Ok(Box::new(EagerPackedInput {
            fact: PackedExoticFact {
                format: Box::new(self.clone()),
                mn: narrow.fact.mn.clone(),
                k: narrow.fact.k,
            },
            packed: wide.into(),
            panel_bytes: narrow.panel_bytes * 2,
            mn: narrow.mn,
        }))
    }

    fn precursor(&self) -> WeightType {
        WeightType::Plain(f16::datum_type())
    }

    fn r(&self) -> usize {
        self.inner.r
    }

    fn k_alignment(&self) -> usize {
        self.inner.k_alignment()
    }

    fn mem_size(&self, k: TDim, mn: TDim) -> TDim {
        self.inner.mem_size(k, mn)
    }

    fn extract_at_mn_f16(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f16],
    ) -> TractResult<()> {
        ensure!(data.format().dyn_eq(self));
        self.inner.extract_at_mn_f16(&self.as_inner(data), mn, slice)
    }

    fn extract_at_mn_f32(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f32],
    ) -> TractResult<()> {
        ensure!(data.format().dyn_eq(self));
        self.inner.extract_at_mn_f32(&self.as_inner(data), mn, slice)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::pack::Packing;

    /// Packing f16 through the widened format gives the bytes the inner format packs from
    /// the same values in f32, whatever the strides and the partial last panel.
    #[test]
    fn widened_f16_packs_what_f32_packs() -> TractResult<()> {
        for (k, mn, r, align) in [(7, 13, 6, 4), (33, 6, 6, 64), (5, 40, 32, 512), (1, 1, 6, 4)] {
            let values: Vec<f32> =
                (0..k * mn).map(|i| ((i * 37 % 101) as f32 - 50.0) / 8.0).collect();
            for (k_axis, mn_axis, shape) in [(0, 1, [k, mn]), (1, 0, [mn, k])] {
                let wide = tensor1(&values).into_shape(&shape)?;
                let half = wide.cast_to::<f16>()?.into_owned();
                let inner = f32::packing(r).align(align);
                let expected = inner.pack_tensor(&wide, k_axis, mn_axis)?;
                let expected = expected.downcast_ref::<EagerPackedInput>().unwrap();
                let format = WidenedF16::new(inner);
                let got = format.prepare_one(&half, k_axis, mn_axis)?;
                let got = got.downcast_ref::<EagerPackedInput>().unwrap();
                assert_eq!(got.panel_bytes, expected.panel_bytes, "k {k} mn {mn} r {r}");
                assert_eq!(got.packed.len(), expected.packed.len());
                // the values of every panel (padding records past k are never read)
                for p in 0..mn.div_ceil(r) {
                    let at = |b: &Blob| b.as_bytes()[p * got.panel_bytes..][..k * r * 4].to_vec();
                    assert_eq!(at(&got.packed), at(&expected.packed), "k {k} mn {mn} r {r}");
                }
                assert_eq!(got.packed.as_ptr() as usize % align, 0);
                assert!(got.format().dyn_eq(&format));
                // and the values read back through the format
                let mut col = vec![0f32; k];
                format.extract_at_mn_f32(got, mn - 1, &mut col)?;
                let want: Vec<f32> = (0..k)
                    .map(|kk| {
                        if k_axis == 0 {
                            values[kk * mn + mn - 1]
                        } else {
                            values[(mn - 1) * k + kk]
                        }
                    })
                    .collect();
                assert_eq!(col, want);
            }
        }
        Ok(())
    }

    #[test]
    fn widened_f16_refuses_other_types() {
        let format = WidenedF16::new(f32::packing(6));
        assert!(format.prepare_one(&tensor2(&[[1f32, 2.0]]), 0, 1).is_err());
        assert_eq!(format.precursor(), WeightType::Plain(f16::datum_type()));
    }
}
