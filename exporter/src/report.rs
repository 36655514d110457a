//! Loss curves of a training run: `loss.csv` and `loss.png`.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::train::Progress;

pub fn write_curves(dir: &Path, p: &Progress) -> Result<()> {
    let mut csv = String::from("step,train_loss,val_loss\n");
    for (i, (step, train)) in p.train_loss.iter().enumerate() {
        let val = p
            .val_loss
            .get(i)
            .filter(|(s, _)| s == step)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        csv.push_str(&format!("{step},{train},{val}\n"));
    }
    std::fs::write(dir.join("loss.csv"), csv)?;
    plot(&dir.join("loss.png"), p).map_err(|e| anyhow!("cannot draw loss.png: {e}"))
}

fn plot(path: &Path, p: &Progress) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_step = p.train_loss.last().map(|x| x.0).unwrap_or(1).max(1) as f32;
    let all = p.train_loss.iter().chain(&p.val_loss).map(|x| x.1);
    let max_loss = all.clone().fold(0.0f32, f32::max).max(1e-3);
    let min_loss = all.fold(f32::MAX, f32::min).clamp(1e-4, max_loss * 0.5);
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0f32..max_step, (min_loss * 0.8..max_loss * 1.1).log_scale())?;
    // No text: the bitmap backend has no font here. Light lines mark each tenth of the run;
    // loss.csv has the numbers. Blue: training loss, red: validation loss (log scale).
    for i in 1..10 {
        let x = max_step * i as f32 / 10.0;
        chart.draw_series(LineSeries::new(
            [(x, min_loss * 0.8), (x, max_loss * 1.1)],
            &RGBColor(225, 225, 225),
        ))?;
    }
    chart.draw_series(LineSeries::new(
        p.train_loss.iter().map(|(s, l)| (*s as f32, *l)),
        &BLUE,
    ))?;
    chart.draw_series(LineSeries::new(
        p.val_loss.iter().map(|(s, l)| (*s as f32, *l)),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}
