//! Would NNEF packages load faster than ONNX? Loads a decoder the way the runtime does
//! (ONNX → typed → `transformers_detect_all` → optimised plan), writes the decluttered
//! model as NNEF (tract core and transformers extensions), loads that back the same way,
//! and checks both plans give the same logits.
//!
//! `cargo run --release -p glimpse-runtime --example nnef_probe -- models/glimpse-default/decoder.onnx`

use std::time::Instant;

use tract_onnx::prelude::*;
use tract_transformers::WithTractTransformers;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn detect(model: &mut TypedModel) -> TractResult<()> {
    tract_core::transform::get_transform("transformers_detect_all")?
        .ok_or_else(|| anyhow::anyhow!("no transformers_detect_all"))?
        .transform(model)
}

fn run(plan: &Arc<TypedRunnableModel>, d: usize) -> TractResult<Vec<f32>> {
    let mut state = plan.spawn()?;
    let n = 5;
    let embeds: Vec<f32> = (0..n * d).map(|i| ((i % 17) as f32 - 8.0) / 10.0).collect();
    let e = Tensor::from_shape(&[1, n, d], &embeds)?;
    let p = Tensor::from_shape(&[1, n], &(0..n as i64).collect::<Vec<_>>())?;
    let out = state.run(tvec!(e.into(), p.into()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

fn main() -> TractResult<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: nnef_probe DECODER.onnx");
    let d: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(128);
    let nnef = tract_nnef::nnef().with_tract_transformers();
    let tar = std::env::temp_dir().join("glimpse-decoder.nnef.tar");
    let (mut onnx_ms, mut nnef_ms) = (vec![], vec![]);
    let mut plans = None;
    for _ in 0..5 {
        let t = Instant::now();
        let mut m = tract_onnx::onnx().model_for_path(&path)?.into_typed()?;
        detect(&mut m)?;
        let decluttered = m.into_decluttered()?;
        let onnx_plan = decluttered.clone().into_optimized()?.into_runnable()?;
        onnx_ms.push(t.elapsed().as_secs_f64() * 1e3);
        nnef.write_to_tar(&decluttered, std::fs::File::create(&tar)?)?;
        let t = Instant::now();
        let m = nnef.model_for_path(&tar)?;
        let nnef_plan = m.into_optimized()?.into_runnable()?;
        nnef_ms.push(t.elapsed().as_secs_f64() * 1e3);
        plans = Some((onnx_plan, nnef_plan));
    }
    let (a, b) = plans.unwrap();
    let (la, lb) = (run(&a, d)?, run(&b, d)?);
    let diff = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    println!(
        "decoder load, median of 5: ONNX {:.1} ms, NNEF {:.1} ms ({:.2}x); NNEF tar {} bytes; logits differ by {diff:.1e}",
        median(onnx_ms.clone()),
        median(nnef_ms.clone()),
        median(nnef_ms) / median(onnx_ms),
        std::fs::metadata(&tar)?.len()
    );
    Ok(())
}
