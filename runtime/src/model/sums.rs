//! The column sums of int8 weights, taken once at load.
//!
//! An int8 layer quantizes its activations per call with a zero point
//! (`DynamicQuantizeLinear`, then `MatMulInteger`), and tract compensates that zero point
//! with `a0 · Σ_k W`: the weight cast to i32 and summed along K. tract's constant
//! propagation folds that sum only while the cast weight stays under its 4 MiB budget
//! (the weight has two readers, the product and the cast), so above it every call cast
//! and summed the whole weight again: a 1.3 B int8 prefill took minutes. Here the sum is
//! taken once, straight from the int8 values, without the i32 copy.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ndarray::{Axis, IxDyn};
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_core::optim::{OptimizerSession, TypedPass};
use tract_onnx::tract_hir::internal::*;

/// Sums `weight` (int8 or uint8) over `axes` in i32, keeping them as axes of length 1,
/// as `Reduce(Sum)` of its i32 cast does.
fn sums(weight: &Tensor, axes: &[usize]) -> TractResult<Tensor> {
    fn sum_over<T: Datum + Copy + Into<i32>>(
        weight: &Tensor,
        axes: &[usize],
    ) -> TractResult<Tensor> {
        let view = weight.to_plain_array_view::<T>()?;
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        // the first axis is summed from the weight itself, row after row in memory order
        let Some((&first, rest)) = axes.split_first() else {
            return Ok(view.mapv(|v| -> i32 { v.into() }).into_tensor());
        };
        let mut acc = view.fold_axis(Axis(first), 0i32, |s, &v| *s + v.into());
        for &axis in rest.iter().rev() {
            acc = acc.fold_axis(Axis(axis - 1), 0i32, |s, &v| *s + v);
        }
        for &axis in &axes {
            acc = acc.insert_axis(Axis(axis));
        }
        Ok(acc.into_dimensionality::<IxDyn>()?.into_tensor())
    }
    match weight.datum_type() {
        DatumType::I8 => sum_over::<i8>(weight, axes),
        DatumType::U8 => sum_over::<u8>(weight, axes),
        dt => bail!("column sums of a {dt:?} weight"),
    }
}

/// The nodes `Reduce(Sum)` of `Cast(i32)` of a constant int8 or uint8 weight, with the
/// weight and the axes summed.
fn weight_sums(model: &TypedModel) -> Vec<(usize, Arc<Tensor>, TVec<usize>)> {
    let mut found = Vec::new();
    for node in model.nodes() {
        let Some(reduce) = node.op_as::<Reduce>() else {
            continue;
        };
        if reduce.reducer != Reducer::Sum || node.inputs.len() != 1 {
            continue;
        }
        let cast = model.node(node.inputs[0].node);
        if cast
            .op_as::<Cast>()
            .is_none_or(|c| c.to != i32::datum_type())
        {
            continue;
        }
        let Some(weight) = model.node(cast.inputs[0].node).op_as::<Const>() else {
            continue;
        };
        if matches!(weight.val().datum_type(), DatumType::I8 | DatumType::U8) {
            found.push((node.id, weight.val().clone(), reduce.axes.clone()));
        }
    }
    found
}

/// An optimiser pass that replaces each sum of an int8 weight with its value (see the
/// module comment). The cast it read from is left without readers and dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct FoldWeightSums;

impl TypedPass for FoldWeightSums {
    fn reset(&mut self) -> TractResult<()> {
        Ok(())
    }

    fn next(
        &mut self,
        _session: &mut OptimizerSession,
        _model: &TypedModel,
    ) -> TractResult<Option<TypedModelPatch>> {
        Ok(None)
    }

    fn run_direct(&mut self, model: &mut TypedModel) -> TractResult<bool> {
        let found = weight_sums(model);
        if found.is_empty() {
            return Ok(false);
        }
        for (id, weight, axes) in found {
            let value = sums(&weight, &axes)
                .with_context(|| format!("summing the weight of {}", model.nodes[id].name))?;
            super::fold::install(model, id, tvec!(value.into_tvalue()))?;
        }
        model.compact()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::cast;

    /// `weight → Cast(i32) → Reduce(Sum, axes)`, added unwired so nothing folds early,
    /// with the weight also read by a second output as the product reads it.
    fn model(weight: Tensor, axes: &[usize]) -> TypedModel {
        let mut model = TypedModel::default();
        let shape: TVec<usize> = weight.shape().into();
        let w = model.add_const("weight", weight).unwrap();
        let c = model
            .add_node("cast", cast(i32::datum_type()), tvec!(i32::fact(&shape)))
            .unwrap();
        model.add_edge(w, InletId::new(c, 0)).unwrap();
        let mut summed = shape.clone();
        axes.iter().for_each(|&a| summed[a] = 1);
        let reduce = Reduce::new(axes.into(), Reducer::Sum);
        let r = model
            .add_node("sum", reduce, tvec!(i32::fact(&summed)))
            .unwrap();
        model
            .add_edge(OutletId::new(c, 0), InletId::new(r, 0))
            .unwrap();
        model
            .select_output_outlets(&[OutletId::new(r, 0), w])
            .unwrap();
        model
    }

    fn run(model: TypedModel) -> Tensor {
        let out = model.into_runnable().unwrap().run(tvec!()).unwrap();
        out[0].clone().into_tensor()
    }

    #[test]
    fn folded_sums_equal_what_tract_computes() {
        let values: Vec<i8> = (0..4 * 5 * 3)
            .map(|i: i32| (i * 73 % 255 - 127) as i8)
            .collect();
        let weight = tensor1(&values).into_shape(&[4, 5, 3]).unwrap();
        for axes in [vec![0], vec![1], vec![2], vec![0, 2], vec![2, 0, 1]] {
            let want = run(model(weight.clone(), &axes));
            let mut folded = model(weight.clone(), &axes);
            assert!(FoldWeightSums.run_direct(&mut folded).unwrap());
            let sum = folded.output_outlets().unwrap()[0];
            assert!(folded.node(sum.node).op_is::<Const>(), "axes {axes:?}");
            assert!(
                folded.nodes().iter().all(|n| !n.op_is::<Cast>()),
                "the cast is dropped"
            );
            assert_eq!(run(folded), want, "axes {axes:?}");
        }
        let bytes: Vec<u8> = (0..24).map(|i| (i * 37 % 256) as u8).collect();
        let weight = tensor1(&bytes).into_shape(&[6, 4]).unwrap();
        let want = run(model(weight.clone(), &[0]));
        let mut folded = model(weight, &[0]);
        assert!(FoldWeightSums.run_direct(&mut folded).unwrap());
        assert_eq!(run(folded), want);
    }

    #[test]
    fn sums_of_anything_else_are_left_alone() {
        let weight = tensor2(&[[1f32, 2.], [3., 4.]]);
        let mut model = TypedModel::default();
        let w = model.add_const("weight", weight).unwrap();
        let r = model
            .add_node(
                "sum",
                Reduce::new(tvec!(0), Reducer::Sum),
                tvec!(f32::fact([1, 2])),
            )
            .unwrap();
        model.add_edge(w, InletId::new(r, 0)).unwrap();
        model.select_output_outlets(&[OutletId::new(r, 0)]).unwrap();
        assert!(!FoldWeightSums.run_direct(&mut model).unwrap());
    }
}
