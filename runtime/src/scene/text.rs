//! The words a scene graph gives: one canonical caption and question–answer pairs.

use super::graph::{Color, Object, Scene, Shape, Size};
use super::rng::Rng;

/// The kinds of questions the generator asks. Evaluation reports accuracy per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuestionKind {
    Color,
    Shape,
    Count,
    Presence,
    Position,
    Size,
}

impl QuestionKind {
    pub const ALL: [QuestionKind; 6] = [
        QuestionKind::Color,
        QuestionKind::Shape,
        QuestionKind::Count,
        QuestionKind::Presence,
        QuestionKind::Position,
        QuestionKind::Size,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::Color => "color",
            QuestionKind::Shape => "shape",
            QuestionKind::Count => "count",
            QuestionKind::Presence => "presence",
            QuestionKind::Position => "position",
            QuestionKind::Size => "size",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qa {
    pub kind: QuestionKind,
    pub question: String,
    pub answer: String,
}

const NUMBERS: [&str; 5] = ["zero", "one", "two", "three", "four"];

pub fn number_word(n: usize) -> &'static str {
    NUMBERS.get(n).copied().unwrap_or("many")
}

/// "a large red circle": one object, fully described.
pub fn phrase(o: &Object) -> String {
    format!("a {} {} {}", o.size.word(), o.color.word(), o.shape.word())
}

/// "a large red circle left of a small blue square": every object, left to right.
pub fn caption(scene: &Scene) -> String {
    scene
        .objects
        .iter()
        .map(phrase)
        .collect::<Vec<_>>()
        .join(" left of ")
}

/// One object as a caption describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Described {
    pub size: Size,
    pub color: Color,
    pub shape: Shape,
}

/// Reads a caption back into the objects it describes, left to right: the inverse of
/// [`caption`]. A caption with a word outside the vocabulary, a missing word or another
/// grammar is refused with the reason, so a program downstream can rely on the words.
pub fn parse_caption(text: &str) -> Result<Vec<Described>, String> {
    fn word<T: Copy>(
        all: &[T],
        name: fn(T) -> &'static str,
        w: &str,
        what: &str,
    ) -> Result<T, String> {
        all.iter()
            .copied()
            .find(|x| name(*x) == w)
            .ok_or_else(|| format!("{w:?} is not a {what}"))
    }
    if text.trim().is_empty() {
        return Err("the caption is empty".into());
    }
    text.split(" left of ")
        .map(|part| {
            let words: Vec<&str> = part.split(' ').collect();
            match words.as_slice() {
                ["a", size, color, shape] => Ok(Described {
                    size: word(&Size::ALL, Size::word, size, "size")?,
                    color: word(&Color::ALL, Color::word, color, "colour")?,
                    shape: word(&Shape::ALL, Shape::word, shape, "shape")?,
                }),
                _ => Err(format!(
                    "{part:?} is not \"a SIZE COLOUR SHAPE\" (objects are joined by \" left of \")"
                )),
            }
        })
        .collect()
}

/// The shortest description ("circle", "red circle", "large red circle") that names `o`
/// and no other object of the scene.
fn reference(o: &Object, scene: &Scene) -> Option<String> {
    let same = |f: &dyn Fn(&Object) -> bool| scene.objects.iter().filter(|x| f(x)).count() == 1;
    if same(&|x: &Object| x.shape == o.shape) {
        return Some(o.shape.word().to_string());
    }
    if same(&|x: &Object| x.shape == o.shape && x.color == o.color) {
        return Some(format!("{} {}", o.color.word(), o.shape.word()));
    }
    if same(&|x: &Object| x.shape == o.shape && x.color == o.color && x.size == o.size) {
        return Some(format!(
            "{} {} {}",
            o.size.word(),
            o.color.word(),
            o.shape.word()
        ));
    }
    None
}

/// Every question of `kind` the scene can answer unambiguously (some kinds have none for
/// some scenes, e.g. a position question needs two objects).
pub fn questions_of_kind(scene: &Scene, kind: QuestionKind, rng: &mut Rng) -> Vec<Qa> {
    let objs = &scene.objects;
    let mut out = Vec::new();
    let mut push = |question: String, answer: &str| {
        out.push(Qa {
            kind,
            question,
            answer: answer.to_string(),
        })
    };
    match kind {
        QuestionKind::Color => {
            for o in objs {
                if let Some(r) = reference(o, scene) {
                    if r.contains(o.color.word()) {
                        continue;
                    }
                    push(format!("what color is the {r}?"), o.color.word());
                }
            }
        }
        QuestionKind::Shape => {
            for o in objs {
                if objs.iter().filter(|x| x.color == o.color).count() == 1 {
                    push(
                        format!("what shape is the {} object?", o.color.word()),
                        o.shape.word(),
                    );
                }
            }
        }
        QuestionKind::Count => {
            push(
                "how many objects are there?".to_string(),
                number_word(objs.len()),
            );
            let shape = *rng.pick(&Shape::ALL);
            let n = objs.iter().filter(|o| o.shape == shape).count();
            push(
                format!("how many {} are there?", shape.plural()),
                number_word(n),
            );
        }
        QuestionKind::Presence => {
            let o = rng.pick(objs);
            push(
                format!("is there a {} {}?", o.color.word(), o.shape.word()),
                "yes",
            );
            for _ in 0..20 {
                let c = *rng.pick(&Color::ALL);
                let s = *rng.pick(&Shape::ALL);
                if !objs.iter().any(|o| o.color == c && o.shape == s) {
                    push(format!("is there a {} {}?", c.word(), s.word()), "no");
                    break;
                }
            }
        }
        QuestionKind::Position => {
            for (i, a) in objs.iter().enumerate() {
                for (j, b) in objs.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    if let (Some(ra), Some(rb)) = (reference(a, scene), reference(b, scene)) {
                        let answer = if i < j { "left" } else { "right" };
                        push(format!("is the {ra} left or right of the {rb}?"), answer);
                    }
                }
            }
        }
        QuestionKind::Size => {
            for o in objs {
                if let Some(r) = reference(o, scene) {
                    if r.contains(o.size.word()) {
                        continue;
                    }
                    push(format!("what size is the {r}?"), o.size.word());
                }
            }
        }
    }
    out
}

/// A question of each kind the scene supports, one picked at random per kind.
pub fn questions(scene: &Scene, rng: &mut Rng) -> Vec<Qa> {
    QuestionKind::ALL
        .iter()
        .filter_map(|&k| {
            let qs = questions_of_kind(scene, k, rng);
            (!qs.is_empty()).then(|| qs[rng.below(qs.len())].clone())
        })
        .collect()
}

/// Every word the generator can produce, so a tokenizer trained on a sample of the
/// corpus never meets an unseen word in the generated text.
pub fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    words.extend(Shape::ALL.iter().map(|s| s.word().to_string()));
    words.extend(Shape::ALL.iter().map(|s| s.plural().to_string()));
    words.extend(Color::ALL.iter().map(|c| c.word().to_string()));
    words.extend(Size::ALL.iter().map(|s| s.word().to_string()));
    words.extend(NUMBERS.iter().map(|s| s.to_string()));
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::graph::{Pairs, Scene};

    fn obj(shape: Shape, color: Color, size: Size, x: f32) -> Object {
        Object {
            shape,
            color,
            size,
            x,
            y: 50.0,
            radius: 10.0,
            tilt: 0.0,
        }
    }

    #[test]
    fn caption_lists_objects_left_to_right() {
        let scene = Scene {
            width: 320,
            height: 240,
            objects: vec![
                obj(Shape::Circle, Color::Red, Size::Large, 40.0),
                obj(Shape::Square, Color::Blue, Size::Small, 200.0),
            ],
        };
        assert_eq!(
            caption(&scene),
            "a large red circle left of a small blue square"
        );
    }

    #[test]
    fn captions_read_back_into_their_objects() {
        for i in 0..300 {
            let mut rng = Rng::for_item(11, i);
            let scene = Scene::random(&mut rng, 320, 240, Pairs::Seen);
            let parsed = parse_caption(&caption(&scene)).unwrap();
            let want: Vec<Described> = scene
                .objects
                .iter()
                .map(|o| Described {
                    size: o.size,
                    color: o.color,
                    shape: o.shape,
                })
                .collect();
            assert_eq!(parsed, want, "{}", caption(&scene));
        }
    }

    #[test]
    fn captions_outside_the_grammar_are_refused_with_the_reason() {
        for (text, reason) in [
            ("a large no circle", "\"no\" is not a colour"),
            (
                "a large red circle left of",
                "is not \"a SIZE COLOUR SHAPE\"",
            ),
            (
                "a large red circle next to a small blue square",
                "is not \"a SIZE",
            ),
            ("a huge red circle", "\"huge\" is not a size"),
            ("a small red blob", "\"blob\" is not a shape"),
            ("", "empty"),
            (
                "a large red circle  left of a small blue square",
                "is not \"a SIZE",
            ),
        ] {
            let err = parse_caption(text).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn answers_follow_the_scene_graph() {
        let scene = Scene {
            width: 320,
            height: 240,
            objects: vec![
                obj(Shape::Circle, Color::Red, Size::Large, 40.0),
                obj(Shape::Circle, Color::Green, Size::Small, 120.0),
                obj(Shape::Star, Color::Red, Size::Small, 250.0),
            ],
        };
        let mut rng = Rng::new(1);
        let color = questions_of_kind(&scene, QuestionKind::Color, &mut rng);
        // the circles need their colour to be told apart, so only the star is asked about
        assert_eq!(color.len(), 1);
        assert_eq!(color[0].question, "what color is the star?");
        assert_eq!(color[0].answer, "red");
        let shape = questions_of_kind(&scene, QuestionKind::Shape, &mut rng);
        assert_eq!(shape[0].question, "what shape is the green object?");
        assert_eq!(shape[0].answer, "circle");
        let pos = questions_of_kind(&scene, QuestionKind::Position, &mut rng);
        let q = pos
            .iter()
            .find(|q| q.question == "is the star left or right of the green circle?")
            .unwrap();
        assert_eq!(q.answer, "right");
        let count = questions_of_kind(&scene, QuestionKind::Count, &mut rng);
        assert_eq!(count[0].answer, "three");
        for q in questions_of_kind(&scene, QuestionKind::Presence, &mut rng) {
            let present = q.question == "is there a red circle?"
                || q.question == "is there a green circle?"
                || q.question == "is there a red star?";
            assert_eq!(q.answer, if present { "yes" } else { "no" }, "{q:?}");
        }
    }

    #[test]
    fn random_scenes_ask_all_kinds() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let mut rng = Rng::for_item(5, i);
            let scene = Scene::random(&mut rng, 320, 240, Pairs::Seen);
            for qa in questions(&scene, &mut rng) {
                assert!(!qa.answer.is_empty());
                seen.insert(qa.kind);
            }
        }
        assert_eq!(seen.len(), QuestionKind::ALL.len());
    }
}
