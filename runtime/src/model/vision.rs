//! `vision.onnx`: patches `[1, R, C, 3·P·P]` → image embeddings `[1, R·(C+1), d]`,
//! one linear projection per patch and a learned newline after each patch row.

use std::path::Path;

use tract_onnx::prelude::*;

use super::{Plan, f32_values, into_plan, load_typed};
use crate::error::{Error, Result};
use crate::frame::Patches;

pub struct VisionGraph {
    plan: Plan,
}

impl VisionGraph {
    pub fn load(path: &Path) -> Result<Self> {
        let model = load_typed(path)?;
        Ok(Self {
            plan: into_plan(path, model)?,
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
        f32_values(&out[0])
    }
}
