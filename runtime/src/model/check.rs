//! A graph checked against the manifest at load: every name and dimension the manifest
//! declares must be what the graph declares, or the error names the file, the tensor, the
//! manifest field and both values. Nothing is run before this passes.

use std::path::Path;

use tract_core::internal::DimLike;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// One expected dimension: the manifest's value and the field it comes from.
pub(crate) type Want<'a> = Option<(usize, &'a str)>;

pub(crate) struct GraphCheck<'a> {
    pub path: &'a Path,
    pub model: &'a TypedModel,
}

impl GraphCheck<'_> {
    pub fn mismatch(&self, reason: String) -> Error {
        Error::GraphMismatch {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    pub fn input(&self, name: &str) -> Result<OutletId> {
        let outlets = self.model.input_outlets().map_err(Error::inference)?;
        outlets
            .iter()
            .find(|o| self.model.node(o.node).name == name)
            .copied()
            .ok_or_else(|| self.mismatch(format!("it has no input named {name}")))
    }

    pub fn output(&self, name: &str) -> Result<OutletId> {
        self.optional_output(name)
            .ok_or_else(|| self.mismatch(format!("it has no output named {name}")))
    }

    pub fn optional_output(&self, name: &str) -> Option<OutletId> {
        let outlets = self.model.output_outlets().ok()?;
        outlets
            .iter()
            .find(|o| {
                self.model.outlet_label(**o) == Some(name) || self.model.node(o.node).name == name
            })
            .copied()
    }

    /// Checks the rank of `tensor` and each of its dimensions the graph fixes against
    /// `want` (a dimension the graph leaves symbolic is checked when the graph runs).
    pub fn dims(&self, outlet: OutletId, tensor: &str, want: &[Want]) -> Result<()> {
        let fact = self.model.outlet_fact(outlet).map_err(Error::inference)?;
        if fact.rank() != want.len() {
            return Err(self.mismatch(format!(
                "{tensor} has {} dimensions ({:?}), {} expected",
                fact.rank(),
                fact.shape,
                want.len()
            )));
        }
        for (axis, (dim, want)) in fact.shape.iter().zip(want).enumerate() {
            if let (Ok(got), Some((value, field))) = (dim.to_usize(), want)
                && got != *value
            {
                return Err(self.mismatch(format!(
                    "{tensor} has {got} on axis {axis}, but the manifest's {field} is {value}"
                )));
            }
        }
        Ok(())
    }

    /// The value of the constant (initializer) named `name`, if the graph has one (tract
    /// names the typed constant of initializer `x` `x.0`).
    pub fn constant(&self, name: &str) -> Option<Arc<Tensor>> {
        [name.to_string(), format!("{name}.0")]
            .iter()
            .find_map(|n| {
                let node = self.model.node_by_name(n).ok()?;
                let konst = node.op_as::<tract_core::ops::konst::Const>()?;
                Some(konst.val().clone())
            })
    }

    /// Checks that the constant `name`, when the graph has it, has `rows` rows.
    pub fn constant_rows(&self, name: &str, rows: usize, field: &str) -> Result<()> {
        if let Some(t) = self.constant(name)
            && t.shape().first() != Some(&rows)
        {
            return Err(self.mismatch(format!(
                "{name} has shape {:?}, but the manifest's {field} is {rows}",
                t.shape()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_tables_are_checked_by_their_rows() {
        let mut model = TypedModel::default();
        let table = tensor2(&[[1f32, 2.0], [3.0, 4.0]]);
        model.add_const("embed_tokens.weight", table).unwrap();
        let path = Path::new("embedding.onnx");
        let c = GraphCheck {
            path,
            model: &model,
        };
        assert!(c.constant("embed_tokens.weight").is_some());
        assert!(
            c.constant_rows("embed_tokens.weight", 2, "model.vocab_size")
                .is_ok()
        );
        let e = c
            .constant_rows("embed_tokens.weight", 3, "model.vocab_size")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("embedding.onnx")
                && e.contains("[2, 2]")
                && e.contains("model.vocab_size is 3"),
            "{e}"
        );
        // a graph without the table is not refused for it
        assert!(
            c.constant_rows("embed_tokens.weight_int8", 3, "model.vocab_size")
                .is_ok()
        );
    }
}
