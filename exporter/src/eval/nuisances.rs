//! `glimpse-export eval --nuisances`: which of the `shifted` split's differences costs a
//! model its captions. Scores caption exact match on test scenes drawn with the training
//! conditions on 320x240 frames, then with every shifted range at once, then with each
//! nuisance alone taken from the shifted split's wider range, then on each of the shifted
//! split's other frame shapes.

use anyhow::Result;
use serde::Serialize;

use glimpse_runtime::Glimpse;
use glimpse_runtime::scene::{self, Conditions, Split};

use super::caption_after;

/// The training split's main frame, on which the nuisances are compared.
const LANDSCAPE: &[(u32, u32)] = &[(320, 240)];

/// One set of conditions and its share of exact captions.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub conditions: String,
    pub caption_exact: f64,
}

/// The conditions compared, each named: the training ones, all shifted ranges, and the
/// training ones with one thing taken from `shifted`.
pub fn variants() -> Vec<(String, Conditions)> {
    let t = Conditions {
        frames: LANDSCAPE,
        ..Conditions::TRAINING
    };
    let sh = Conditions::SHIFTED;
    let one = |what: &str, widen: fn(&mut Conditions, &Conditions)| {
        let mut c = t;
        widen(&mut c, &sh);
        (format!("training + shifted {what}"), c)
    };
    let mut v = vec![
        ("training, 320x240".to_string(), t),
        (
            "shifted, 320x240".to_string(),
            Conditions {
                frames: LANDSCAPE,
                ..sh
            },
        ),
        one("backgrounds", |c, s| c.backgrounds = s.backgrounds),
        one("brightness", |c, s| c.brightness = s.brightness),
        one("saturation", |c, s| c.saturation = s.saturation),
        one("clutter", |c, s| c.clutter = s.clutter),
        one("occlusion", |c, s| c.occlusion = s.occlusion),
        one("exposure", |c, s| c.exposure = s.exposure),
        one("cast", |c, s| c.cast = s.cast),
        one("vignette", |c, s| c.vignette = s.vignette),
        one("blur", |c, s| c.blur = s.blur),
        one("noise", |c, s| c.noise = s.noise),
        one("jpeg", |c, s| c.jpeg = s.jpeg),
        one("rotation", |c, s| c.rotation = s.rotation),
        one("perspective", |c, s| c.perspective = s.perspective),
        one("sizes", |c, s| (c.small, c.large) = (s.small, s.large)),
    ];
    for frame in sh.frames.iter().filter(|f| !LANDSCAPE.contains(f)) {
        v.push((
            format!("training + frame {}x{}", frame.0, frame.1),
            Conditions {
                frames: std::slice::from_ref(frame),
                ..t
            },
        ));
    }
    v
}

/// Caption exact match of `scenes` test scenes under each of [`variants`]; the same
/// scene indices (objects, places, words) for every one.
pub fn probe(g: &Glimpse, seed: u64, scenes: u64) -> Result<Vec<Probe>> {
    let mut out = Vec::new();
    for (name, c) in variants() {
        eprintln!("captioning {scenes} scenes: {name}");
        let mut exact = 0;
        for i in 0..scenes {
            let s = scene::sample_in(seed, Split::Test, i, &c);
            let image = g.see(&s.image)?;
            let got = caption_after(g, g.image_session(&image)?, &image)?;
            exact += usize::from(got == s.caption);
        }
        out.push(Probe {
            conditions: name,
            caption_exact: exact as f64 / scenes.max(1) as f64,
        });
    }
    Ok(out)
}

/// The probe as a table for people.
pub fn table(probes: &[Probe], scenes: u64) -> String {
    let mut s = format!("caption exact match, {scenes} test scenes each\n");
    for p in probes {
        s.push_str(&format!("{:<34} {:.3}\n", p.conditions, p.caption_exact));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the fields in which `a` and `b` differ (`sizes` for either radius).
    fn differing(a: &Conditions, b: &Conditions) -> Vec<&'static str> {
        let fields = [
            ("backgrounds", a.backgrounds != b.backgrounds),
            ("brightness", a.brightness != b.brightness),
            ("saturation", a.saturation != b.saturation),
            ("clutter", a.clutter != b.clutter),
            ("occlusion", a.occlusion != b.occlusion),
            ("exposure", a.exposure != b.exposure),
            ("cast", a.cast != b.cast),
            ("vignette", a.vignette != b.vignette),
            ("blur", a.blur != b.blur),
            ("noise", a.noise != b.noise),
            ("jpeg", a.jpeg != b.jpeg),
            ("rotation", a.rotation != b.rotation),
            ("perspective", a.perspective != b.perspective),
            ("sizes", a.small != b.small || a.large != b.large),
            ("frame", a.frames != b.frames),
            ("empty", a.empty != b.empty),
            ("fewest", a.fewest != b.fewest),
        ];
        fields.iter().filter(|f| f.1).map(|f| f.0).collect()
    }

    #[test]
    fn each_variant_differs_from_training_in_the_one_thing_it_names() {
        let v = variants();
        let t = v[0].1;
        assert_eq!(t.frames, LANDSCAPE);
        // all shifted ranges at once: every nuisance the single variants widen
        let all = differing(&v[1].1, &t);
        for (name, c) in &v[2..] {
            let d = differing(c, &t);
            assert_eq!(d.len(), 1, "{name} differs in {d:?}");
            assert!(name.contains(d[0]), "{name} differs in {}", d[0]);
            assert!(
                d[0] == "frame" || all.contains(&d[0]),
                "{name}: the shifted split does not widen {}",
                d[0]
            );
        }
        // and every nuisance the shifted split widens is probed alone
        for f in &all {
            assert!(
                v[2..].iter().any(|(n, _)| n.contains(f)),
                "{f} is never probed alone"
            );
        }
        // every shifted frame shape but the landscape one is probed
        for f in Conditions::SHIFTED.frames {
            let named = format!("training + frame {}x{}", f.0, f.1);
            assert_eq!(
                v.iter().any(|(n, _)| *n == named),
                !LANDSCAPE.contains(f),
                "{named}"
            );
        }
    }
}
