//! f32 ↔ f16 conversions of activations, a slice at a time.
//!
//! An f16 package's linear layers cast their input to f16 and their product back to f32.
//! tract's `Cast` converts one value at a time (about 25 ns a value here), which made
//! those casts 73 % of the bundled model's f16 prefill and 40 % of a 1.3 B one's. The
//! `half` crate converts whole slices, with the CPU's conversion instructions where it
//! has them (F16C on x86-64, FP16 on aarch64); rounding is the same, to nearest even.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::tract_data::half::slice::HalfFloatSliceExt;
use tract_onnx::tract_hir::internal::*;

/// A cast between f32 and f16 (either way) of a whole tensor at once.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct HalfCast {
    to: DatumType,
}

impl Op for HalfCast {
    fn name(&self) -> StaticName {
        "HalfCast".into()
    }
    op_as_typed_op!();
}

impl EvalOp for HalfCast {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?;
        let mut out = Tensor::zero_dt(self.to, input.shape())?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            match self.to {
                DatumType::F16 => plain
                    .as_slice_mut::<f16>()?
                    .convert_from_f32_slice(input.as_slice::<f32>()?),
                DatumType::F32 => input
                    .as_slice::<f16>()?
                    .convert_to_f32_slice(plain.as_slice_mut::<f32>()?),
                dt => bail!("HalfCast to {dt:?}"),
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for HalfCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.to.fact(inputs[0].shape.clone())))
    }
    as_op!();
}

/// Replaces every `Cast` of a computed (not constant) f32 to f16, or f16 to f32, with
/// [`HalfCast`]. Returns how many were replaced. Run on an optimised model, so tract's
/// own fusions of casts are done first.
pub(crate) fn replace_half_casts(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    for id in 0..model.nodes.len() {
        let node = &model.nodes[id];
        let Some(cast) = node.op_as::<Cast>() else {
            continue;
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let from = input.datum_type;
        let plain = input.exotic_fact.is_none() && input.konst.is_none();
        let halves = matches!(
            (from, cast.to),
            (DatumType::F32, DatumType::F16) | (DatumType::F16, DatumType::F32)
        );
        if plain && halves {
            let to = cast.to;
            model.nodes[id].op = Box::new(HalfCast { to });
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::cast;

    /// `x (f32) → f16 → f32`, both through tract's `Cast`.
    fn round_trip() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([9])).unwrap();
        let h = model
            .wire_node("to_f16", cast(f16::datum_type()), &[x])
            .unwrap();
        let y = model
            .wire_node("to_f32", cast(f32::datum_type()), &h)
            .unwrap();
        model.select_output_outlets(&[h[0], y[0]]).unwrap();
        model
    }

    #[test]
    fn half_casts_give_tracts_values_bit_for_bit() {
        let values = [
            0.0f32,
            -1.5,
            65504.0,
            70000.0,
            1e-7,
            -3.1e-5,
            0.333_333_34,
            f32::INFINITY,
            2049.0,
        ];
        let x = tensor1(&values);
        let run = |model: TypedModel| {
            model
                .into_runnable()
                .unwrap()
                .run(tvec!(x.clone().into()))
                .unwrap()
        };
        let want = run(round_trip());
        let mut model = round_trip();
        assert_eq!(replace_half_casts(&mut model).unwrap(), 2);
        assert!(model.nodes.iter().all(|n| !n.op_is::<Cast>()));
        let got = run(model);
        let bits = |t: &TValue| -> Vec<u16> {
            let v = t.to_plain_array_view::<f16>().unwrap();
            v.iter().map(|v| v.to_bits()).collect()
        };
        let floats = |t: &TValue| -> Vec<u32> {
            let v = t.to_plain_array_view::<f32>().unwrap();
            v.iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(&got[0]), bits(&want[0]));
        assert_eq!(floats(&got[1]), floats(&want[1]));
    }

    #[test]
    fn other_casts_are_left_alone() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([3])).unwrap();
        let y = model
            .wire_node("to_i32", cast(i32::datum_type()), &[x])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(replace_half_casts(&mut model).unwrap(), 0);
    }
}
