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

/// Which phrasings questions are asked in: the ones training uses, or the ones held out of
/// training for the `paraphrase` split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wording {
    Trained,
    HeldOut,
}

/// The ways to ask one question, with `{a}`, `{b}` (object references), `{c}` (a colour),
/// `{s}` (a shape) and `{p}` (a shape's plural) left to fill.
struct Phrasings {
    trained: [&'static str; 4],
    held_out: &'static str,
}

impl Phrasings {
    fn ask(&self, wording: Wording, rng: &mut Rng, fill: &[(&str, &str)]) -> String {
        let template = match wording {
            Wording::Trained => *rng.pick(&self.trained),
            Wording::HeldOut => self.held_out,
        };
        fill.iter().fold(template.to_string(), |t, (key, value)| {
            t.replace(key, value)
        })
    }
}

const COLOR: Phrasings = Phrasings {
    trained: [
        "what color is the {a}?",
        "what colour is the {a}?",
        "which colour is the {a}?",
        "what is the color of the {a}?",
    ],
    held_out: "which color does the {a} have?",
};
const SHAPE: Phrasings = Phrasings {
    trained: [
        "what shape is the {c} object?",
        "which shape is the {c} object?",
        "what is the shape of the {c} object?",
        "what shape is the {c} thing?",
    ],
    held_out: "what shape does the {c} object have?",
};
const COUNT_ALL: Phrasings = Phrasings {
    trained: [
        "how many objects are there?",
        "how many shapes are there?",
        "how many things are there?",
        "count the objects.",
    ],
    held_out: "how many objects can you see?",
};
const COUNT_SHAPE: Phrasings = Phrasings {
    trained: [
        "how many {p} are there?",
        "count the {p}.",
        "how many {p} are in the picture?",
        "what is the number of {p}?",
    ],
    held_out: "how many {p} can you see?",
};
const PRESENCE: Phrasings = Phrasings {
    trained: [
        "is there a {c} {s}?",
        "do you see a {c} {s}?",
        "is a {c} {s} in the picture?",
        "can you find a {c} {s}?",
    ],
    held_out: "is there any {c} {s}?",
};
const POSITION: Phrasings = Phrasings {
    trained: [
        "is the {a} left or right of the {b}?",
        "is the {a} to the left or to the right of the {b}?",
        "is the {a} on the left or the right of the {b}?",
        "which side of the {b} is the {a} on, left or right?",
    ],
    held_out: "is the {a} left of or right of the {b}?",
};
const SIZE: Phrasings = Phrasings {
    trained: [
        "what size is the {a}?",
        "how big is the {a}?",
        "is the {a} large or small?",
        "which size is the {a}?",
    ],
    held_out: "is the {a} small or large?",
};

/// The phrasings of `wording`, each with the kind of question it asks: `(kind, template)`.
pub fn phrasings(wording: Wording) -> Vec<(QuestionKind, &'static str)> {
    let kinds = [
        (QuestionKind::Color, &COLOR),
        (QuestionKind::Shape, &SHAPE),
        (QuestionKind::Count, &COUNT_ALL),
        (QuestionKind::Count, &COUNT_SHAPE),
        (QuestionKind::Presence, &PRESENCE),
        (QuestionKind::Position, &POSITION),
        (QuestionKind::Size, &SIZE),
    ];
    kinds
        .into_iter()
        .flat_map(|(k, p)| {
            match wording {
                Wording::Trained => p.trained.to_vec(),
                Wording::HeldOut => vec![p.held_out],
            }
            .into_iter()
            .map(move |t| (k, t))
        })
        .collect()
}

/// The caption of a scene without objects.
pub const NOTHING: &str = "nothing";

const NUMBERS: [&str; 5] = ["zero", "one", "two", "three", "four"];

pub fn number_word(n: usize) -> &'static str {
    NUMBERS.get(n).copied().unwrap_or("many")
}

/// "a large red circle": one object, fully described.
pub fn phrase(o: &Object) -> String {
    format!("a {} {} {}", o.size.word(), o.color.word(), o.shape.word())
}

/// "a large red circle left of a small blue square": every object, left to right;
/// [`NOTHING`] for an empty scene.
pub fn caption(scene: &Scene) -> String {
    if scene.objects.is_empty() {
        return NOTHING.to_string();
    }
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
    if text == NOTHING {
        return Ok(Vec::new());
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
/// some scenes, e.g. a position question needs two objects), each in one phrasing of
/// `wording` drawn from `rng`.
pub fn questions_of_kind(
    scene: &Scene,
    kind: QuestionKind,
    wording: Wording,
    rng: &mut Rng,
) -> Vec<Qa> {
    let asked = match kind {
        QuestionKind::Color => attribute_questions(scene, &COLOR, wording, rng, |o| o.color.word()),
        QuestionKind::Size => attribute_questions(scene, &SIZE, wording, rng, |o| o.size.word()),
        QuestionKind::Shape => shape_questions(scene, wording, rng),
        QuestionKind::Count => count_questions(scene, wording, rng),
        QuestionKind::Presence => presence_questions(scene, wording, rng),
        QuestionKind::Position => position_questions(scene, wording, rng),
    };
    asked
        .into_iter()
        .map(|(question, answer)| Qa {
            kind,
            question,
            answer: answer.to_string(),
        })
        .collect()
}

/// (question, answer) pairs of one kind.
type Asked = Vec<(String, &'static str)>;

/// "what colour is the star?" / "what size is the red star?": for each object that has a
/// reference not already naming the attribute `word` gives.
fn attribute_questions(
    scene: &Scene,
    phrasings: &Phrasings,
    wording: Wording,
    rng: &mut Rng,
    word: fn(&Object) -> &'static str,
) -> Asked {
    let mut out = Vec::new();
    for o in &scene.objects {
        if let Some(r) = reference(o, scene) {
            if r.contains(word(o)) {
                continue;
            }
            out.push((phrasings.ask(wording, rng, &[("{a}", &r)]), word(o)));
        }
    }
    out
}

/// "what shape is the red object?": for each object alone in its colour.
fn shape_questions(scene: &Scene, wording: Wording, rng: &mut Rng) -> Asked {
    let objs = &scene.objects;
    let mut out = Vec::new();
    for o in objs {
        if objs.iter().filter(|x| x.color == o.color).count() == 1 {
            let q = SHAPE.ask(wording, rng, &[("{c}", o.color.word())]);
            out.push((q, o.shape.word()));
        }
    }
    out
}

/// How many objects, and how many of one shape drawn at random.
fn count_questions(scene: &Scene, wording: Wording, rng: &mut Rng) -> Asked {
    let objs = &scene.objects;
    let all = COUNT_ALL.ask(wording, rng, &[]);
    let shape = *rng.pick(&Shape::ALL);
    let n = objs.iter().filter(|o| o.shape == shape).count();
    let q = COUNT_SHAPE.ask(wording, rng, &[("{p}", shape.plural())]);
    vec![(all, number_word(objs.len())), (q, number_word(n))]
}

/// "is there a red star?": yes of an object drawn from the scene, no of a pair drawn
/// until one is not in it (20 tries).
fn presence_questions(scene: &Scene, wording: Wording, rng: &mut Rng) -> Asked {
    let objs = &scene.objects;
    let ask = |c: Color, s: Shape, rng: &mut Rng| {
        PRESENCE.ask(wording, rng, &[("{c}", c.word()), ("{s}", s.word())])
    };
    let mut out = Vec::new();
    if !objs.is_empty() {
        let o = rng.pick(objs);
        out.push((ask(o.color, o.shape, rng), "yes"));
    }
    for _ in 0..20 {
        let c = *rng.pick(&Color::ALL);
        let s = *rng.pick(&Shape::ALL);
        if !objs.iter().any(|o| o.color == c && o.shape == s) {
            out.push((ask(c, s, rng), "no"));
            break;
        }
    }
    out
}

/// "is the star left or right of the circle?": every ordered pair of objects that both
/// have a reference.
fn position_questions(scene: &Scene, wording: Wording, rng: &mut Rng) -> Asked {
    let objs = &scene.objects;
    let mut out = Vec::new();
    for (i, a) in objs.iter().enumerate() {
        for (j, b) in objs.iter().enumerate() {
            if i == j {
                continue;
            }
            if let (Some(ra), Some(rb)) = (reference(a, scene), reference(b, scene)) {
                let answer = if i < j { "left" } else { "right" };
                let q = POSITION.ask(wording, rng, &[("{a}", &ra), ("{b}", &rb)]);
                out.push((q, answer));
            }
        }
    }
    out
}

/// A question of each kind the scene supports, one picked at random per kind.
pub fn questions(scene: &Scene, wording: Wording, rng: &mut Rng) -> Vec<Qa> {
    QuestionKind::ALL
        .iter()
        .filter_map(|&k| {
            let qs = questions_of_kind(scene, k, wording, rng);
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
    words.push(NOTHING.to_string());
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::camera::Conditions;
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

    /// A 320×240 scene holding `objects`.
    fn in_frame(objects: Vec<Object>) -> Scene {
        Scene {
            width: 320,
            height: 240,
            objects,
        }
    }

    #[test]
    fn caption_lists_objects_left_to_right() {
        let scene = in_frame(vec![
            obj(Shape::Circle, Color::Red, Size::Large, 40.0),
            obj(Shape::Square, Color::Blue, Size::Small, 200.0),
        ]);
        assert_eq!(
            caption(&scene),
            "a large red circle left of a small blue square"
        );
    }

    #[test]
    fn captions_read_back_into_their_objects() {
        for i in 0..300 {
            let mut rng = Rng::for_item(11, i);
            let scene = Scene::random(&mut rng, 320, 240, Pairs::Seen, &Conditions::TRAINING);
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
        let scene = in_frame(vec![
            obj(Shape::Circle, Color::Red, Size::Large, 40.0),
            obj(Shape::Circle, Color::Green, Size::Small, 120.0),
            obj(Shape::Star, Color::Red, Size::Small, 250.0),
        ]);
        let mut rng = Rng::new(1);
        // the held-out wording has one phrasing per question, so the words are known
        let ask = |k, rng: &mut Rng| questions_of_kind(&scene, k, Wording::HeldOut, rng);
        let color = ask(QuestionKind::Color, &mut rng);
        // the circles need their colour to be told apart, so only the star is asked about
        assert_eq!(color.len(), 1);
        assert_eq!(color[0].question, "which color does the star have?");
        assert_eq!(color[0].answer, "red");
        let shape = ask(QuestionKind::Shape, &mut rng);
        assert_eq!(shape[0].question, "what shape does the green object have?");
        assert_eq!(shape[0].answer, "circle");
        let pos = ask(QuestionKind::Position, &mut rng);
        let q = pos
            .iter()
            .find(|q| q.question == "is the star left of or right of the green circle?")
            .unwrap();
        assert_eq!(q.answer, "right");
        let count = ask(QuestionKind::Count, &mut rng);
        assert_eq!(count[0].question, "how many objects can you see?");
        assert_eq!(count[0].answer, "three");
        for q in ask(QuestionKind::Presence, &mut rng) {
            let present = q.question == "is there any red circle?"
                || q.question == "is there any green circle?"
                || q.question == "is there any red star?";
            assert_eq!(q.answer, if present { "yes" } else { "no" }, "{q:?}");
        }
    }

    #[test]
    fn trained_questions_use_every_trained_phrasing_and_never_a_held_out_one() {
        let scene = in_frame(vec![
            obj(Shape::Circle, Color::Red, Size::Large, 40.0),
            obj(Shape::Star, Color::Blue, Size::Small, 250.0),
        ]);
        let held_out: Vec<&str> = phrasings(Wording::HeldOut)
            .iter()
            .map(|(_, t)| *t)
            .collect();
        let trained = phrasings(Wording::Trained);
        let mut used = std::collections::HashSet::new();
        let mut rng = Rng::new(2);
        for _ in 0..200 {
            for k in QuestionKind::ALL {
                for q in questions_of_kind(&scene, k, Wording::Trained, &mut rng) {
                    // the template a question came from: its words outside the slots
                    let from = trained
                        .iter()
                        .find(|(kind, t)| *kind == k && matches_template(t, &q.question));
                    let (_, t) = from.unwrap_or_else(|| panic!("{:?} has no trained phrasing", q));
                    assert!(!held_out.iter().any(|h| matches_template(h, &q.question)));
                    used.insert(*t);
                }
            }
        }
        assert_eq!(used.len(), trained.len(), "phrasings never used");
        // four trained phrasings and one held out for each of the seven question forms
        assert_eq!(trained.len(), 28);
        assert_eq!(held_out.len(), 7);
    }

    /// Whether `text` is `template` with each `{x}` slot filled by one or more words.
    fn matches_template(template: &str, text: &str) -> bool {
        match template.find('{') {
            None => template == text,
            Some(open) => {
                let (literal, rest) = (&template[..open], &template[open + 3..]);
                let Some(tail) = text.strip_prefix(literal) else {
                    return false;
                };
                (1..=tail.len()).any(|n| {
                    tail.is_char_boundary(n)
                        && tail[..n]
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == ' ')
                        && matches_template(rest, &tail[n..])
                })
            }
        }
    }

    #[test]
    fn random_scenes_ask_all_kinds() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let mut rng = Rng::for_item(5, i);
            let scene = Scene::random(&mut rng, 320, 240, Pairs::Seen, &Conditions::TRAINING);
            for qa in questions(&scene, Wording::Trained, &mut rng) {
                assert!(!qa.answer.is_empty());
                seen.insert(qa.kind);
            }
        }
        assert_eq!(seen.len(), QuestionKind::ALL.len());
    }
}
