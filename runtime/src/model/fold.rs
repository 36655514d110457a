//! Weights transformed in place: a load holds each weight about once.
//!
//! Two steps of a load turn every weight into another form: a q4 weight's nibbles become
//! tract's Q4_0 blocks ([`super::q4`]), and each weight is packed into the panels its
//! matrix kernel reads. tract's constant propagation replaces each node fed only by
//! constants with a new constant but frees the old constants when the whole pass ends, so
//! for a decoder of gigabytes every weight was alive twice at that point. Here the nodes
//! are evaluated on a few threads and each one's inputs are freed as soon as its result
//! has taken its place: the model holds its weights once, plus the few in flight.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::optim::{OptimizerSession, TypedPass};

use super::parallel::on_a_few_threads;
use tract_onnx::tract_hir::internal::*;

/// One node to evaluate: its operator and the constants it reads.
struct Job {
    node: usize,
    op: Box<dyn TypedOp>,
    inputs: TVec<TValue>,
}

/// Replaces every node that `wanted` picks, and whose inputs are constants read by that
/// node alone, with the constant it evaluates to. Returns how many nodes were folded.
pub(crate) fn fold_in_place(
    model: &mut TypedModel,
    wanted: impl Fn(&TypedNode) -> bool,
) -> TractResult<usize> {
    let ids: Vec<usize> = model
        .nodes
        .iter()
        .filter(|n| wanted(n) && foldable(model, n))
        .map(|n| n.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // The jobs take the constants over: the model keeps a placeholder until each result
    // arrives, so a weight is freed when its job is done.
    let mut jobs = Vec::with_capacity(ids.len());
    for &id in &ids {
        let node = &model.nodes[id];
        let mut inputs = TVec::new();
        for outlet in node.inputs.clone() {
            let konst = &mut model.nodes[outlet.node];
            let tensor = konst
                .op_as::<Const>()
                .context("folded node fed by a non-constant")?
                .val()
                .clone();
            konst.op = Box::new(Const::new(rctensor0(0u8))?);
            konst.outputs[outlet.slot].fact = u8::scalar_fact();
            inputs.push(tensor.into_tvalue());
        }
        jobs.push(Job {
            node: id,
            op: model.nodes[id].op.clone(),
            inputs,
        });
    }
    let count = jobs.len();
    on_a_few_threads(jobs, evaluate, |(node, outputs)| {
        install(model, node, outputs)
    })?;
    model.compact()?;
    Ok(count)
}

/// Whether every input of `node` is a constant that only `node` reads.
fn foldable(model: &TypedModel, node: &TypedNode) -> bool {
    !node.inputs.is_empty()
        && node.outputs.len() == 1
        && node.inputs.iter().all(|o| {
            let input = &model.nodes[o.node];
            input.op_is::<Const>() && input.outputs[o.slot].successors.len() == 1
        })
}

fn evaluate(job: Job) -> TractResult<(usize, TVec<TValue>)> {
    let Job { node, op, inputs } = job;
    let outputs = op
        .eval_out_of_plan(inputs)?
        .with_context(|| format!("{} cannot be evaluated ahead of a run", op.name()))?;
    Ok((node, outputs))
}

/// Puts the result of node `id` in its place, as a constant with the node's fact, and
/// lets go of its inputs (which [`TypedModel::compact`] then drops if nothing else reads).
pub(super) fn install(model: &mut TypedModel, id: usize, outputs: TVec<TValue>) -> TractResult<()> {
    let output = outputs
        .into_iter()
        .next()
        .with_context(|| format!("{}: no output", model.nodes[id].name))?;
    let exotic = model.nodes[id].outputs[0].fact.exotic_fact.clone();
    let konst = Const::new_with_opt_exotic_fact(output.into_arc_tensor(), exotic)?;
    let fact = konst.output_facts(&[])?.remove(0);
    for input in std::mem::take(&mut model.nodes[id].inputs) {
        model.nodes[input.node].outputs[input.slot]
            .successors
            .retain(|s| s.node != id);
    }
    let node = &mut model.nodes[id];
    node.op = Box::new(konst);
    node.outputs[0].fact = fact;
    Ok(())
}

/// An optimiser pass that folds the packing of constant weights in place (see the module
/// comment); it runs ahead of tract's constant propagation, which would fold them too
/// (its rule against folds that grow their inputs never stops a packing: a packed weight
/// counts as one element there).
#[derive(Debug, Clone, Default)]
pub(crate) struct FoldWeightPacking;

impl TypedPass for FoldWeightPacking {
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
        let packing = |n: &TypedNode| {
            let name = n.op.name();
            name == "OptSimpleMatMulPack" || name == "OptMatMulPack"
        };
        Ok(fold_in_place(model, packing)? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::cast;

    /// A model `out = cast(weight)` whose weight has `readers` readers; returns the
    /// model and the weight, whose reference count tells whether the model still holds it.
    fn model_with(readers: usize) -> (TypedModel, Arc<Tensor>) {
        let weight = rctensor2(&[[1i32, 2, 3], [4, 5, 6]]);
        let mut model = TypedModel::default();
        let w = model.add_const("weight", weight.clone()).unwrap();
        let mut outs = tvec!();
        for i in 0..readers {
            // added, not wired: wiring folds a small constant cast on the spot
            let fact = f32::fact([2, 3]);
            let id = model
                .add_node(format!("cast{i}"), cast(f32::datum_type()), tvec!(fact))
                .unwrap();
            model.add_edge(w, InletId::new(id, 0)).unwrap();
            outs.push(OutletId::new(id, 0));
        }
        model.select_output_outlets(&outs).unwrap();
        (model, weight)
    }

    #[test]
    fn a_folded_node_becomes_its_value_and_lets_its_input_go() {
        let (mut model, weight) = model_with(1);
        assert!(Arc::strong_count(&weight) > 1);
        let folded = fold_in_place(&mut model, |n| n.op.name() == "Cast").unwrap();
        assert_eq!(folded, 1);
        assert_eq!(
            Arc::strong_count(&weight),
            1,
            "the model still holds the weight"
        );
        let out = model.output_outlets().unwrap()[0];
        let value = model.outlet_fact(out).unwrap().konst.clone().unwrap();
        assert_eq!(*value, tensor2(&[[1f32, 2., 3.], [4., 5., 6.]]));
        assert!(model.node(out.node).op_is::<Const>());
        assert_eq!(model.nodes.len(), 1, "the old constant is compacted away");
    }

    #[test]
    fn a_constant_read_twice_and_unwanted_nodes_are_left_alone() {
        let (mut model, weight) = model_with(2);
        assert_eq!(fold_in_place(&mut model, |_| true).unwrap(), 0);
        let (mut model, _) = model_with(1);
        assert_eq!(
            fold_in_place(&mut model, |n| n.op.name() == "Add").unwrap(),
            0
        );
        assert!(Arc::strong_count(&weight) > 1);
    }
}
