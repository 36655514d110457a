//! `heads.onnx`: a final decoder state `[1, d]` → unit-length `image_embeds` and
//! `text_embeds` `[1, e]`, the shared space where images and texts are compared.

use std::path::Path;

use tract_onnx::prelude::*;

use super::check::GraphCheck;
use super::{Plan, f32_values, into_plan, load_typed, output_index};
use crate::error::{Error, Result};

pub struct HeadsGraph {
    plan: Plan,
    image_output: usize,
    text_output: usize,
    d_model: usize,
}

/// Which head to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Image,
    Text,
}

impl HeadsGraph {
    /// Loads the heads and checks their input width against `d_model` and their outputs'
    /// against the manifest's `matching.dim`.
    pub fn load(path: &Path, d_model: usize, dim: usize) -> Result<Self> {
        let model = load_typed(path)?;
        let c = GraphCheck {
            path,
            model: &model,
        };
        let input = c.input("hidden_state")?;
        c.dims(
            input,
            "hidden_state",
            &[None, Some((d_model, "model.d_model"))],
        )?;
        for name in ["image_embeds", "text_embeds"] {
            let out = c.output(name)?;
            c.dims(out, name, &[None, Some((dim, "matching.dim"))])?;
        }
        let find = |name: &str| {
            output_index(&model, name).ok_or_else(|| Error::Graph {
                path: path.to_path_buf(),
                reason: format!("no output named {name}"),
            })
        };
        let image_output = find("image_embeds")?;
        let text_output = find("text_embeds")?;
        Ok(Self {
            plan: into_plan(path, model)?,
            image_output,
            text_output,
            d_model,
        })
    }

    /// The unit-length embedding of `state` (`d` values) by `head`.
    pub fn run(&self, state: &[f32], head: Head) -> Result<Vec<f32>> {
        let input = Tensor::from_shape(&[1, self.d_model], state).map_err(Error::inference)?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(Error::inference)?;
        let i = match head {
            Head::Image => self.image_output,
            Head::Text => self.text_output,
        };
        f32_values(&out[i])
    }
}
