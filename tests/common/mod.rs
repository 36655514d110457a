//! Shared helpers of the end-to-end tests: tiny models and packages made on the spot.

#![allow(dead_code)]

use std::path::Path;

use glimpse_exporter::burn::prelude::*;
use glimpse_exporter::model::{Fuyu, weights};
use glimpse_exporter::train::{RunInfo, TrainOptions};
use glimpse_exporter::{package, tokenizer};
use glimpse_runtime::ModelConfig;
use glimpse_runtime::frame::Canvas;

pub fn tiny_canvas() -> Canvas {
    Canvas {
        width: 64,
        height: 48,
        patch: 16,
    }
}

/// Seed of [`random_package`]'s weights. (Unseeded, a model that happens to put the end
/// token first on the parity test's frame leaves that test no tokens to compare.)
pub const RANDOM_PACKAGE_SEED: u64 = 7;

/// A randomly initialised tiny model packaged in `dir`, with its burn twin.
pub fn random_package(dir: &Path) -> (Fuyu, RunInfo) {
    let tok = tokenizer::train(&glimpse_exporter::data::text_corpus(1, 100), 2048).unwrap();
    let tok_path = dir.join("tok.json");
    tokenizer::save(&tok, &tok_path).unwrap();
    let cfg = ModelConfig {
        vocab_size: tok.inner().get_vocab_size(true),
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        rotary_fraction: 0.5,
        rope_theta: 25_000.0,
        layer_norm_eps: 1e-5,
        max_positions: 48,
    };
    let canvas = tiny_canvas();
    let device = Device::default();
    let match_dim = 16;
    // The same weights on every run: the backend's random generator is one for the whole
    // process, so tests running side by side take turns seeding and drawing from it.
    static DRAWING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let model = {
        let _turn = DRAWING.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(RANDOM_PACKAGE_SEED);
        Fuyu::new(&cfg, &canvas, match_dim, &device)
    };
    let run = RunInfo {
        model: cfg,
        canvas,
        options: TrainOptions {
            match_dim,
            ..TrainOptions::default()
        },
        data: serde_json::json!({"source": "none"}),
    };
    package::write_package(
        &weights::collect(&model),
        &run,
        &tok_path,
        &dir.join("pkg"),
        "random",
        serde_json::json!({}),
        &glimpse_runtime::package::Precision::ALL,
    )
    .unwrap();
    (model, run)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
