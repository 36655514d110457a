//! The synthetic world Glimpse is trained and tested on: seeded scene graphs of coloured
//! shapes, drawn as a camera would see them, with their caption and questions.
//!
//! Every sample is a pure function of `(seed, split, index)`, on every platform.

mod graph;
mod render;
mod rng;
mod text;

use image::RgbImage;

pub use graph::{Color, MAX_OBJECTS, Object, Pairs, Scene, Shape, Size, is_held_out};
pub use render::render;
pub use rng::Rng;
pub use text::{
    Described, Qa, QuestionKind, caption, number_word, parse_caption, phrase, questions,
    questions_of_kind, vocabulary,
};

/// Rendered frame size: 4:3 like a camera, larger than the model canvas so that the
/// runtime's downscaling is part of every sample's path.
pub const FRAME_WIDTH: u32 = 320;
pub const FRAME_HEIGHT: u32 = 240;

/// The data splits. `Compositional` holds (colour, shape) pairs never seen in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
    Test,
    Compositional,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Val, Split::Test, Split::Compositional];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Compositional => "compositional",
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
}

/// Sample `index` of `split` under `seed`. Different splits never share a scene stream.
pub fn sample(seed: u64, split: Split, index: u64) -> Sample {
    let mut rng = Rng::for_item(seed ^ split.stream(), index);
    let pairs = match split {
        Split::Compositional => Pairs::HeldOut,
        _ => Pairs::Seen,
    };
    let scene = Scene::random(&mut rng, FRAME_WIDTH, FRAME_HEIGHT, pairs);
    let image = render(&scene, &mut rng);
    let qa = questions(&scene, &mut rng);
    Sample {
        caption: caption(&scene),
        scene,
        image,
        qa,
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
        assert_eq!(a.image.dimensions(), (FRAME_WIDTH, FRAME_HEIGHT));
    }
}
