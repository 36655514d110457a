//! `glimpse bench`: the frame it measures on, and the two ways it measures.

use std::path::{Path, PathBuf};

use glimpse_runtime::frame::{Size, load_image};
use glimpse_runtime::package::Precision;

use super::positive;
use crate::print;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Frame to use [default: a 640x480 synthetic scene]
    image: Option<PathBuf>,
    /// Repetitions per figure.
    #[arg(long, default_value_t = 20, value_parser = positive::<usize>)]
    runs: usize,
    /// Also write the frame used as PNG (to run the same frame elsewhere).
    #[arg(long, value_name = "PATH")]
    save_frame: Option<PathBuf>,
    /// For models of gigabytes: one load, one time to first token and this many cached
    /// decode steps, with peak memory against the weights' size (JSON with --json).
    #[arg(long, value_name = "STEPS", value_parser = positive::<usize>)]
    light: Option<usize>,
    /// With --light: write the patches and prompt ids fed to the model as JSON.
    #[arg(long, value_name = "PATH", requires = "light")]
    save_inputs: Option<PathBuf>,
    /// With --light: run the prefill and the decode steps once more, timing every
    /// operator of the decoder; prints where the time goes (and adds it to the JSON).
    #[arg(long, requires = "light")]
    profile: bool,
    /// Also time captions made from this many views of the frame (`caption --views`),
    /// 2 to 7.
    #[arg(long, conflicts_with = "light", value_parser = clap::value_parser!(u8).range(2..=glimpse_runtime::views::MAX_VIEWS as i64))]
    views: Option<u8>,
}

/// Measures the package in `dir` as `args` ask, printing the figures.
pub fn run(
    args: &BenchArgs,
    dir: &Path,
    precision: Option<Precision>,
    max_image: Option<Size>,
    json: bool,
) -> Result<(), String> {
    let frame = frame(args)?;
    if let Some(steps) = args.light {
        return light(args, dir, precision, max_image, &frame, steps);
    }
    let r = glimpse_runtime::bench::run_with(
        dir,
        precision,
        &frame,
        args.runs,
        args.views.map_or(1, usize::from),
    )
    .map_err(|e| e.to_string())?;
    if json {
        print(serde_json::to_string(&r).map_err(|e| e.to_string())?)
    } else {
        print(r.table().trim_end())
    }
}

/// The frame given, or a 640x480 test scene; written out if `--save-frame` asks.
fn frame(args: &BenchArgs) -> Result<image::RgbImage, String> {
    let frame = match &args.image {
        Some(p) => load_image(p).map_err(|e| e.to_string())?,
        None => {
            let s = glimpse_runtime::scene::sample(7, glimpse_runtime::scene::Split::Test, 0);
            image::imageops::resize(&s.image, 640, 480, image::imageops::FilterType::Triangle)
        }
    };
    if let Some(path) = &args.save_frame {
        frame
            .save(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(frame)
}

/// `--light STEPS`: one load, one first token, STEPS decode steps; JSON always, with
/// the per-operator tables on stderr when `--profile` asks.
fn light(
    args: &BenchArgs,
    dir: &Path,
    precision: Option<Precision>,
    max_image: Option<Size>,
    frame: &image::RgbImage,
    steps: usize,
) -> Result<(), String> {
    let r = glimpse_runtime::bench::light(
        dir,
        precision,
        max_image,
        frame,
        steps,
        args.save_inputs.as_deref(),
        args.profile,
    )
    .map_err(|e| e.to_string())?;
    if let (Some(prefill), Some(decode)) = (&r.prefill_ops, &r.decode_ops) {
        use glimpse_runtime::model::profile::format_table;
        let title = format!("decoder, prefill of {} tokens", r.prefill_tokens);
        eprint!("{}", format_table(&title, prefill, 12));
        eprint!("{}", format_table("decoder, per decode step", decode, 12));
    }
    print(serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?)
}
