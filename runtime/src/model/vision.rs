//! `vision.onnx`: patches `[1, R, C, 3·P·P]` → image embeddings `[1, R·(C+1), d]`,
//! one linear projection per patch and a newline embedding after each patch row. `R` and
//! `C` are fixed by the canvas, or symbolic when the grid follows the image (Fuyu).

use std::path::Path;

use tract_onnx::prelude::*;

use super::check::GraphCheck;
use super::{Plan, f32_values, into_plan, load_typed};
use crate::error::{Error, Result};
use crate::frame::{Canvas, Grid, ImageFormat, Patches};

pub struct VisionGraph {
    plan: Plan,
    output: usize,
}

impl VisionGraph {
    /// Loads the graph and checks its patch grid against `canvas` and `format` and its
    /// width against `d_model`.
    pub fn load(
        path: &Path,
        canvas: &Canvas,
        format: &ImageFormat,
        d_model: usize,
    ) -> Result<Self> {
        let model = load_typed(path)?;
        let c = GraphCheck {
            path,
            model: &model,
        };
        let fixed = format.grid == Grid::Canvas;
        let patches = c.input("patches")?;
        c.dims(
            patches,
            "patches",
            &[
                None,
                fixed.then_some((canvas.rows(), "canvas.height / canvas.patch")),
                fixed.then_some((canvas.cols(), "canvas.width / canvas.patch")),
                Some((canvas.patch_dim(), "3 × canvas.patch²")),
            ],
        )?;
        let out = c.output("image_embeds")?;
        c.dims(
            out,
            "image_embeds",
            &[
                None,
                fixed.then_some((canvas.image_tokens(), "canvas (image tokens)")),
                Some((d_model, "model.d_model")),
            ],
        )?;
        let output = super::output_index(&model, "image_embeds").unwrap_or(0);
        Ok(Self {
            plan: into_plan(path, model)?,
            output,
        })
    }

    /// Embeddings of every image token, row-major: `R·(C+1) × d` values.
    pub fn run(&self, patches: &Patches) -> Result<Vec<f32>> {
        let input =
            Tensor::from_shape(&[1, patches.rows, patches.cols, patches.dim], &patches.data)
                .map_err(Error::inference)?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(Error::inference)?;
        f32_values(&out[self.output])
    }
}
