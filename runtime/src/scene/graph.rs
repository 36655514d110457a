//! Scene graphs: which objects a scene holds, where, and the attributes words name.

use super::camera::Conditions;
use super::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Star,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
        Shape::Star,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Cross => "cross",
            Shape::Star => "star",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Diamond => "diamonds",
            Shape::Cross => "crosses",
            Shape::Star => "stars",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Color {
    Red,
    Orange,
    Yellow,
    Green,
    Cyan,
    Blue,
    Purple,
    Pink,
}

impl Color {
    pub const ALL: [Color; 8] = [
        Color::Red,
        Color::Orange,
        Color::Yellow,
        Color::Green,
        Color::Cyan,
        Color::Blue,
        Color::Purple,
        Color::Pink,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Orange => "orange",
            Color::Yellow => "yellow",
            Color::Green => "green",
            Color::Cyan => "cyan",
            Color::Blue => "blue",
            Color::Purple => "purple",
            Color::Pink => "pink",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 30, 30],
            Color::Orange => [245, 140, 20],
            Color::Yellow => [240, 225, 40],
            Color::Green => [40, 170, 50],
            Color::Cyan => [40, 210, 220],
            Color::Blue => [35, 60, 215],
            Color::Purple => [135, 45, 185],
            Color::Pink => [245, 120, 190],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// One object of a scene. Coordinates are in pixels of the rendered image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub color: Color,
    pub size: Size,
    pub x: f32,
    pub y: f32,
    pub radius: f32,
    /// Rotation in turns, for shapes whose look depends on it (small, so shapes stay nameable).
    pub tilt: f32,
}

/// Which (colour, shape) pairs a split may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// Only pairs that are not held out: train, val and test splits.
    Seen,
    /// At least one held-out pair in every scene: the compositional split.
    HeldOut,
}

/// The (colour, shape) pairs that never occur in training: one shape per colour,
/// so every colour and every shape is still seen in training.
pub fn is_held_out(color: Color, shape: Shape) -> bool {
    let c = Color::ALL.iter().position(|&x| x == color).unwrap_or(0);
    let s = Shape::ALL.iter().position(|&x| x == shape).unwrap_or(0);
    s == (c * 5 + 2) % Shape::ALL.len()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    /// Objects sorted left to right by their centre.
    pub objects: Vec<Object>,
}

pub const MAX_OBJECTS: usize = 4;

impl Scene {
    /// Draws a random scene graph: empty with the share `c.empty`, else `c.fewest` (at
    /// least 1) to [`MAX_OBJECTS`] objects of `c`'s sizes, no two overlapping and no two alike in all
    /// of shape, colour and size, with centres apart enough that "left of" is never
    /// ambiguous. A held-out scene is never empty.
    pub fn random(rng: &mut Rng, width: u32, height: u32, pairs: Pairs, c: &Conditions) -> Scene {
        let empty = rng.chance(c.empty) && pairs == Pairs::Seen;
        let fewest = c.fewest.clamp(1, MAX_OBJECTS);
        let count = if empty {
            0
        } else {
            fewest + rng.below(MAX_OBJECTS + 1 - fewest)
        };
        let unit = width.min(height) as f32;
        let mut objects: Vec<Object> = Vec::new();
        let mut attempts = 0;
        while objects.len() < count && attempts < 400 {
            attempts += 1;
            let size = *rng.pick(&Size::ALL);
            let radius = match size {
                Size::Small => unit * rng.range_f32(c.small.0, c.small.1),
                Size::Large => unit * rng.range_f32(c.large.0, c.large.1),
            };
            let (color, shape) = loop {
                let c = *rng.pick(&Color::ALL);
                let s = *rng.pick(&Shape::ALL);
                let held = is_held_out(c, s);
                let wanted = match pairs {
                    Pairs::Seen => !held,
                    // The first object carries the held-out pair; the others are free.
                    Pairs::HeldOut => held || !objects.is_empty(),
                };
                if wanted {
                    break (c, s);
                }
            };
            let margin = radius + 4.0;
            let x = rng.range_f32(margin, width as f32 - margin);
            let y = rng.range_f32(margin, height as f32 - margin);
            let candidate = Object {
                shape,
                color,
                size,
                x,
                y,
                radius,
                tilt: rng.range_f32(-0.04, 0.04),
            };
            let fits = objects.iter().all(|o| {
                let dx = (o.x - x).abs();
                let dy = (o.y - y).abs();
                let apart = dx.hypot(dy) > (o.radius + radius) * 1.15 + 4.0;
                let ordered = dx > 0.06 * width as f32;
                let distinct = (o.shape, o.color, o.size) != (shape, color, size);
                apart && ordered && distinct
            });
            if fits {
                objects.push(candidate);
            }
        }
        objects.sort_by(|a, b| a.x.total_cmp(&b.x));
        Scene {
            width,
            height,
            objects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_pairs_cover_every_colour_once() {
        for c in Color::ALL {
            let n = Shape::ALL.iter().filter(|&&s| is_held_out(c, s)).count();
            assert_eq!(n, 1, "{c:?}");
        }
        // every shape is held out with at most two colours, so all shapes stay in training
        for s in Shape::ALL {
            let n = Color::ALL.iter().filter(|&&c| is_held_out(c, s)).count();
            assert!(n <= 2, "{s:?}");
        }
    }

    #[test]
    fn scenes_respect_their_split_and_order() {
        let mut empty = 0;
        for i in 0..300 {
            let mut rng = Rng::for_item(11, i);
            let seen = Scene::random(&mut rng, 320, 240, Pairs::Seen, &Conditions::TRAINING);
            assert!(seen.objects.len() <= MAX_OBJECTS);
            assert!(seen.objects.iter().all(|o| !is_held_out(o.color, o.shape)));
            assert!(seen.objects.windows(2).all(|w| w[0].x < w[1].x));
            let comp = Scene::random(&mut rng, 320, 240, Pairs::HeldOut, &Conditions::TRAINING);
            assert!(comp.objects.iter().any(|o| is_held_out(o.color, o.shape)));
            empty += usize::from(seen.objects.is_empty());
        }
        // about the share asked for (8 %), and a held-out scene is never empty
        assert!((12..=40).contains(&empty), "{empty} empty scenes of 300");
    }

    #[test]
    fn crowded_conditions_draw_only_the_larger_counts() {
        let crowded = Conditions::TRAINING.crowded(3);
        let mut counts = [[0usize; MAX_OBJECTS + 1]; 2];
        for i in 0..400 {
            for (c, conditions) in [&Conditions::TRAINING, &crowded].into_iter().enumerate() {
                let mut rng = Rng::for_item(13, i);
                let s = Scene::random(&mut rng, 320, 240, Pairs::Seen, conditions);
                counts[c][s.objects.len()] += 1;
            }
        }
        let [plain, crowded] = counts;
        // every count from one to four in the plain scenes, a quarter each give or take
        assert!(
            plain[1..].iter().all(|&n| (70..=115).contains(&n)),
            "{plain:?}"
        );
        // the crowded ones keep their empty scenes (the same draw) and hold three or four
        assert_eq!(crowded[0], plain[0], "{crowded:?}");
        assert_eq!(crowded[1] + crowded[2], 0, "{crowded:?}");
        assert!((150..=230).contains(&crowded[3]), "{crowded:?}");
    }
}
