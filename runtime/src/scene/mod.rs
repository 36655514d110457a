//! The synthetic world Glimpse is trained and tested on: seeded scene graphs of coloured
//! shapes, drawn as a camera would see them, with their caption and questions.
//!
//! Every sample is a pure function of `(seed, split, index)`. The rendering's sines,
//! exponentials and arc tangents come from the platform's maths library, so another
//! platform may differ in a pixel's last level.

mod camera;
mod graph;
mod render;
mod rng;
mod text;

use image::RgbImage;

pub use camera::{Background, Conditions};
pub use graph::{Color, MAX_OBJECTS, Object, Pairs, Scene, Shape, Size, is_held_out};
pub use render::{render, render_seen};
pub use rng::Rng;
pub use text::{
    Described, NOTHING, Qa, QuestionKind, Wording, caption, number_word, parse_caption, phrase,
    phrasings, questions, questions_of_kind, vocabulary,
};

/// The most common frame size: 4:3 like a camera, larger than the model canvas so that
/// the runtime's downscaling is part of every sample's path. Frames of other shapes are
/// drawn too ([`Conditions::frames`]).
pub const FRAME_WIDTH: u32 = 320;
pub const FRAME_HEIGHT: u32 = 240;

/// The data splits. Train, val and test share one world. The others each change one thing
/// training never saw: `Compositional` holds (colour, shape) pairs never seen together,
/// `Shifted` draws the camera's nuisances from wider ranges and unseen backgrounds
/// ([`Conditions::SHIFTED`]), `Paraphrase` asks in the held-out phrasings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
    Test,
    Compositional,
    Shifted,
    Paraphrase,
}

impl Split {
    pub const ALL: [Split; 6] = [
        Split::Train,
        Split::Val,
        Split::Test,
        Split::Compositional,
        Split::Shifted,
        Split::Paraphrase,
    ];

    /// The splits evaluation reports.
    pub const EVALUATED: [Split; 4] = [
        Split::Test,
        Split::Compositional,
        Split::Shifted,
        Split::Paraphrase,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Compositional => "compositional",
            Split::Shifted => "shifted",
            Split::Paraphrase => "paraphrase",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.name() == s)
    }

    fn stream(self) -> u64 {
        match self {
            Split::Train => 0x7261_696e,
            Split::Val => 0x7661_6c00,
            Split::Test => 0x7465_7374,
            Split::Compositional => 0x636f_6d70,
            Split::Shifted => 0x7368_6966,
            Split::Paraphrase => 0x7061_7261,
        }
    }

    /// The ranges this split's camera nuisances are drawn from.
    pub fn conditions(self) -> &'static Conditions {
        match self {
            Split::Shifted => &Conditions::SHIFTED,
            _ => &Conditions::TRAINING,
        }
    }

    /// The phrasings this split's questions are asked in.
    pub fn wording(self) -> Wording {
        match self {
            Split::Paraphrase => Wording::HeldOut,
            _ => Wording::Trained,
        }
    }
}

/// One generated example: the frame and everything true about it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub scene: Scene,
    pub image: RgbImage,
    pub caption: String,
    pub qa: Vec<Qa>,
    /// Each object's radius as the frame shows it, in pixels, left to right (see
    /// [`render_seen`]).
    pub seen_radii: Vec<f32>,
}

/// Sample `index` of `split` under `seed`. Different splits never share a scene stream.
pub fn sample(seed: u64, split: Split, index: u64) -> Sample {
    sample_in(seed, split, index, split.conditions())
}

/// Sample `index` of `split` under `seed`, its nuisances and object count drawn from
/// `conditions` instead of the split's own (a training curriculum's crowded scenes). With
/// the split's conditions it is [`sample`].
pub fn sample_in(seed: u64, split: Split, index: u64, conditions: &Conditions) -> Sample {
    let mut rng = Rng::for_item(seed ^ split.stream(), index);
    let pairs = match split {
        Split::Compositional => Pairs::HeldOut,
        _ => Pairs::Seen,
    };
    let (width, height) = conditions.frame(&mut rng);
    let scene = Scene::random(&mut rng, width, height, pairs, conditions);
    let (image, seen_radii) = render_seen(&scene, conditions, &mut rng);
    let qa = questions(&scene, split.wording(), &mut rng);
    Sample {
        caption: caption(&scene),
        scene,
        image,
        qa,
        seen_radii,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_reproducible_and_splits_differ() {
        let a = sample(3, Split::Test, 9);
        let b = sample(3, Split::Test, 9);
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.caption, b.caption);
        assert_eq!(a.qa, b.qa);
        let c = sample(3, Split::Train, 9);
        assert_ne!(a.image.as_raw(), c.image.as_raw());
        let sizes: std::collections::HashSet<(u32, u32)> = (0..40)
            .map(|i| sample(3, Split::Test, i).image.dimensions())
            .collect();
        assert!(sizes.contains(&(FRAME_WIDTH, FRAME_HEIGHT)));
        assert_eq!(sizes.len(), Conditions::TRAINING.frames.len());
    }

    #[test]
    fn each_split_changes_only_what_it_says() {
        let held_out: Vec<&str> = phrasings(Wording::HeldOut)
            .iter()
            .map(|(_, t)| *t)
            .collect();
        let starts = |q: &str| {
            held_out
                .iter()
                .any(|t| q.starts_with(&t[..t.find('{').unwrap_or(t.len()).min(12)]))
        };
        for i in 0..30 {
            let p = sample(3, Split::Paraphrase, i);
            assert!(p.qa.iter().all(|q| starts(&q.question)), "{:?}", p.qa);
            let s = sample(3, Split::Shifted, i);
            assert!(Conditions::SHIFTED.frames.contains(&s.image.dimensions()));
        }
        // the shifted split shows frame shapes training never does
        let portrait = (0..40)
            .map(|i| sample(3, Split::Shifted, i).image)
            .filter(|f| f.height() > f.width())
            .count();
        assert!(portrait > 0);
        assert!((0..200).all(|i| {
            let s = sample(3, Split::Train, i).image;
            s.height() <= s.width()
        }));
    }

    #[test]
    fn empty_scenes_say_nothing_and_answer_zero_and_no() {
        let empty: Vec<Sample> = (0..200)
            .map(|i| sample(4, Split::Test, i))
            .filter(|s| s.scene.objects.is_empty())
            .collect();
        assert!(empty.len() >= 8, "{} empty scenes of 200", empty.len());
        for s in &empty {
            assert_eq!(s.caption, NOTHING);
            assert_eq!(parse_caption(&s.caption), Ok(Vec::new()));
            assert!(!s.qa.is_empty());
            for q in &s.qa {
                let want = match q.kind {
                    QuestionKind::Count => "zero",
                    QuestionKind::Presence => "no",
                    k => panic!("a {k:?} question about an empty scene: {q:?}"),
                };
                assert_eq!(q.answer, want, "{q:?}");
            }
        }
    }
}
