//! Which of the `shifted` split's nuisances costs the bundled model its captions: scores
//! caption exact match on scenes drawn with the training conditions, then with each
//! nuisance (or frame shape) alone taken from the shifted split's wider ranges.
//!
//! ```text
//! cargo run --release -p glimpse-runtime --example nuisance_probe -- models/glimpse-default 300
//! ```

use anyhow::{Context, Result};
use glimpse_runtime::Glimpse;
use glimpse_runtime::scene::{self, Conditions, Split};
use glimpse_runtime::text::{Prompt, TokenStream};

/// Share of `n` test scenes drawn under `c` whose caption comes out exact.
fn caption_exact(g: &Glimpse, c: &Conditions, n: u64) -> Result<f64> {
    let mut exact = 0;
    for i in 0..n {
        let s = scene::sample_in(7, Split::Test, i, c);
        let image = g.see(&s.image)?;
        let seen = g.image_session(&image)?;
        let prompt = TokenStream::new(&g.tokenizer, &Prompt::Caption)?;
        let got = g.run_after_image(seen, &image, &prompt, &mut |_| {})?.text;
        exact += usize::from(got == s.caption);
    }
    Ok(exact as f64 / n.max(1) as f64)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let package = args
        .next()
        .unwrap_or_else(|| "models/glimpse-default".into());
    let n: u64 = match args.next() {
        Some(s) => s
            .parse()
            .with_context(|| format!("scenes {s:?} is not a count"))?,
        None => 300,
    };
    let g = Glimpse::load(&package)?;
    let landscape = &[(320, 240)];
    let t = Conditions {
        frames: landscape,
        ..Conditions::TRAINING
    };
    let sh = Conditions {
        frames: landscape,
        ..Conditions::SHIFTED
    };
    let variants = [
        ("training, 320x240", t),
        ("shifted, 320x240", sh),
        (
            "training + shifted backgrounds",
            Conditions {
                backgrounds: sh.backgrounds,
                ..t
            },
        ),
        (
            "training + shifted brightness",
            Conditions {
                brightness: sh.brightness,
                ..t
            },
        ),
        (
            "training + shifted saturation",
            Conditions {
                saturation: sh.saturation,
                ..t
            },
        ),
        (
            "training + shifted clutter",
            Conditions {
                clutter: sh.clutter,
                ..t
            },
        ),
        (
            "training + shifted occlusion",
            Conditions {
                occlusion: sh.occlusion,
                ..t
            },
        ),
        (
            "training + shifted exposure",
            Conditions {
                exposure: sh.exposure,
                ..t
            },
        ),
        ("training + shifted cast", Conditions { cast: sh.cast, ..t }),
        (
            "training + shifted vignette",
            Conditions {
                vignette: sh.vignette,
                ..t
            },
        ),
        ("training + shifted blur", Conditions { blur: sh.blur, ..t }),
        (
            "training + shifted noise",
            Conditions {
                noise: sh.noise,
                ..t
            },
        ),
        ("training + shifted jpeg", Conditions { jpeg: sh.jpeg, ..t }),
        (
            "training + shifted rotation",
            Conditions {
                rotation: sh.rotation,
                ..t
            },
        ),
        (
            "training + shifted perspective",
            Conditions {
                perspective: sh.perspective,
                ..t
            },
        ),
        (
            "training + shifted sizes",
            Conditions {
                small: sh.small,
                large: sh.large,
                ..t
            },
        ),
        (
            "training + frame 240x320",
            Conditions {
                frames: &[(240, 320)],
                ..t
            },
        ),
        (
            "training + frame 352x176",
            Conditions {
                frames: &[(352, 176)],
                ..t
            },
        ),
        (
            "training + frame 256x256",
            Conditions {
                frames: &[(256, 256)],
                ..t
            },
        ),
    ];
    println!("caption exact match on {n} scenes each ({package})");
    for (name, c) in variants {
        println!("{name:<34} {:.3}", caption_exact(&g, &c, n)?);
    }
    Ok(())
}
