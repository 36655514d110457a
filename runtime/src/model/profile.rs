//! Where a graph's time goes, operator by operator.
//!
//! A profiled run evaluates the plan node by node as an ordinary run does and times each
//! evaluation: what `glimpse bench --light N --profile` prints for the prefill and the
//! decode step. The clock is read twice per node, a few tens of nanoseconds against
//! operators of microseconds and more.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::eval;

/// Time spent in one kind of operator (tract's name for it after optimisation:
/// `OptMatMul`, `Softmax`, `Add`...), summed over the runs profiled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTime {
    pub op: String,
    /// Milliseconds per run.
    pub ms: f64,
    /// Evaluations per run.
    pub calls: f64,
    /// Share of the run's operator time.
    pub share: f64,
}

/// Operator times accumulated over one or more runs.
#[derive(Debug, Clone, Default)]
pub struct OpProfile {
    by_op: BTreeMap<String, (f64, usize)>,
    runs: usize,
}

impl OpProfile {
    /// Runs `state` on `inputs`, timing every node's evaluation.
    pub(crate) fn run(
        &mut self,
        state: &mut TypedSimpleState,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let by_op = &mut self.by_op;
        let out = state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
            let t = Instant::now();
            let out = eval(ctx, op_state, node, inputs);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let entry = by_op.entry(node.op.name().to_string()).or_default();
            entry.0 += ms;
            entry.1 += 1;
            out
        })?;
        self.runs += 1;
        Ok(out)
    }

    /// Runs profiled so far.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Every kind of operator, the most time first, per run.
    pub fn table(&self) -> Vec<OpTime> {
        let runs = self.runs.max(1) as f64;
        let total: f64 = self.by_op.values().map(|(ms, _)| ms).sum();
        let mut rows: Vec<OpTime> = self
            .by_op
            .iter()
            .map(|(op, &(ms, calls))| OpTime {
                op: op.clone(),
                ms: ms / runs,
                calls: calls as f64 / runs,
                share: if total > 0.0 { ms / total } else { 0.0 },
            })
            .collect();
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.op.cmp(&b.op)));
        rows
    }
}

/// `rows` as aligned text, the `top` largest and the rest summed, under `title`.
pub fn format_table(title: &str, rows: &[OpTime], top: usize) -> String {
    let mut out = format!(
        "{title}\n{:>10} {:>6} {:>7}  operator\n",
        "ms", "share", "calls"
    );
    for r in rows.iter().take(top) {
        out += &format!(
            "{:>10.3} {:>5.1}% {:>7.0}  {}\n",
            r.ms,
            r.share * 100.0,
            r.calls,
            r.op
        );
    }
    let rest = &rows[rows.len().min(top)..];
    if !rest.is_empty() {
        let ms: f64 = rest.iter().map(|r| r.ms).sum();
        let share: f64 = rest.iter().map(|r| r.share).sum();
        let calls: f64 = rest.iter().map(|r| r.calls).sum();
        out += &format!(
            "{ms:>10.3} {:>5.1}% {calls:>7.0}  {} other kinds\n",
            share * 100.0,
            rest.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math::{add, mul};

    /// `y = (x + x) * x + x`: two Adds and one Mul a run.
    fn plan() -> Arc<TypedSimplePlan> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4])).unwrap();
        let s = model.wire_node("sum", add(), &[x, x]).unwrap()[0];
        let p = model.wire_node("product", mul(), &[s, x]).unwrap()[0];
        let y = model.wire_node("out", add(), &[p, x]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model.into_runnable().unwrap()
    }

    #[test]
    fn a_profiled_run_gives_the_same_outputs_and_counts_every_evaluation() {
        let plan = plan();
        let x = tensor1(&[1f32, 2., 3., 4.]);
        let plain = plan.spawn().unwrap().run(tvec!(x.clone().into())).unwrap();
        let mut profile = OpProfile::default();
        let mut state = plan.spawn().unwrap();
        for _ in 0..3 {
            let out = profile.run(&mut state, tvec!(x.clone().into())).unwrap();
            assert_eq!(out[0], plain[0]);
        }
        assert_eq!(profile.runs(), 3);
        let table = profile.table();
        let calls = |name: &str| table.iter().find(|r| r.op == name).map(|r| r.calls);
        assert_eq!(calls("Add"), Some(2.0), "{table:?}");
        assert_eq!(calls("Mul"), Some(1.0), "{table:?}");
        let shares: f64 = table.iter().map(|r| r.share).sum();
        assert!((shares - 1.0).abs() < 1e-9 || table.iter().all(|r| r.ms == 0.0));
        assert!(table.windows(2).all(|w| w[0].ms >= w[1].ms));
    }

    #[test]
    fn the_text_table_sums_what_it_leaves_out() {
        let rows: Vec<OpTime> = [("A", 3.0, 0.6), ("B", 1.5, 0.3), ("C", 0.5, 0.1)]
            .iter()
            .map(|&(op, ms, share)| OpTime {
                op: op.into(),
                ms,
                calls: 2.0,
                share,
            })
            .collect();
        let text = format_table("decode step", &rows, 1);
        assert!(text.starts_with("decode step\n"), "{text}");
        assert!(text.contains("3.000  60.0%       2  A"), "{text}");
        assert!(
            text.contains("2.000  40.0%       4  2 other kinds"),
            "{text}"
        );
        assert!(!text.contains("  B\n"), "{text}");
    }
}
