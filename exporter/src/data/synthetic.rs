//! Examples from the scene generator: for each scene, its caption and its questions.

use std::sync::Arc;

use glimpse_runtime::scene::{self, Rng, Split};

use super::{Example, ExampleSource, MatchText};

/// Examples drawn from `seed`'s scenes. Each scene gives `per_scene` consecutive
/// examples: its caption, then questions taken in turn from each kind the scene supports,
/// so a batch of `n` examples renders about `n / per_scene` frames and the batch builder
/// packs each scene's examples into one row.
pub struct SyntheticData {
    pub seed: u64,
    pub per_scene: usize,
    /// The earlier mix, kept so that runs made with it resume and reproduce: each example
    /// is the caption with this probability, else one of the scene's questions (one per
    /// kind, as the test split asks them).
    pub caption_share: Option<f32>,
    /// Share of training scenes drawn with [`CROWDED`] objects or more (`train --crowded`).
    pub crowded: f32,
    /// Share of training scenes drawn on the [`REFRAMED`] frames (`train --reframe`).
    pub reframe: f32,
    /// Share of training scenes drawn with the [`HARSH`] conditions (`train --harsh`).
    pub harsh: f32,
    /// Share of training scenes whose small and large radii meet halfway between their
    /// ranges (see [`scene::Conditions::sizes_meeting`], `train --sizes-meet`).
    pub sizes_meet: f32,
}

/// Frame shapes a training curriculum can add to the four of the training conditions:
/// portrait 2:3 and 9:16, wide 7:4 and 20:9. None has the shape of a frame of the shifted
/// split (3:4 and 2:1, which lie between them): scaled to the canvas, a frame of the same
/// shape would look the same.
pub const REFRAMED: &[(u32, u32)] = &[(208, 312), (180, 320), (336, 192), (400, 180)];

/// How far the nuisance ranges of a harsh training scene go from the training
/// conditions toward the shifted split's (see [`scene::Conditions::toward`]): halfway, so
/// the shifted split stays beyond anything trained on.
pub const HARSH: f32 = 0.5;

/// The fewest objects of a crowded training scene.
pub const CROWDED: usize = 3;

impl SyntheticData {
    pub fn new(seed: u64, per_scene: usize) -> Self {
        Self {
            seed,
            per_scene: per_scene.max(1),
            caption_share: None,
            crowded: 0.0,
            reframe: 0.0,
            harsh: 0.0,
            sizes_meet: 0.0,
        }
    }

    /// Scene `index` of `split`: crowded with the share `self.crowded`, on another frame
    /// shape with the share `self.reframe` and under harsher conditions with the share
    /// `self.harsh` when training, each choice drawn from its own stream so the rest of
    /// the scene's draws do not move.
    fn sample(&self, split: Split, index: u64) -> scene::Sample {
        let mut conditions = *split.conditions();
        let chance = |stream: u64, p: f32| {
            split == Split::Train && p > 0.0 && Rng::for_item(self.seed ^ stream, index).chance(p)
        };
        if chance(0x6372_6f77, self.crowded) {
            conditions = conditions.crowded(CROWDED);
        }
        if chance(0x6672_616d, self.reframe) {
            conditions.frames = REFRAMED;
        }
        if chance(0x6861_7273, self.harsh) {
            conditions = conditions.toward(&scene::Conditions::SHIFTED, HARSH);
        }
        if chance(0x6d65_6574, self.sizes_meet) {
            conditions = conditions.sizes_meeting();
        }
        scene::sample_in(self.seed, split, index, &conditions)
    }

    fn examples(&self, split: Split, first_scene: u64, count: usize) -> Vec<Example> {
        let mut out = Vec::with_capacity(count);
        let mut index = first_scene;
        while out.len() < count {
            let s = self.sample(split, index);
            let mut rng = Rng::for_item(self.seed ^ 0x6578, index);
            let image = Arc::new(s.image);
            // its own stream, so the matching texts and the questions do not depend on each other
            let mut match_rng = Rng::for_item(self.seed ^ 0x636c_6970, index);
            let matching = Some(Arc::new(match_text(&s.scene, &s.caption, &mut match_rng)));
            let take = self.per_scene.min(count - out.len());
            let caption = || Example {
                image: image.clone(),
                prompt: String::new(),
                answer: s.caption.clone(),
                kind: None,
                matching: matching.clone(),
            };
            let question = |q: scene::Qa| Example {
                image: image.clone(),
                prompt: q.question,
                answer: q.answer,
                kind: Some(q.kind),
                matching: matching.clone(),
            };
            if let Some(share) = self.caption_share {
                let mut qa = s.qa.clone();
                rng.shuffle(&mut qa);
                let mut qa = qa.into_iter();
                for _ in 0..take {
                    out.push(match qa.next() {
                        Some(q) if !rng.chance(share) => question(q),
                        _ => caption(),
                    });
                }
            } else {
                out.push(caption());
                out.extend(
                    questions_in_turn(&s.scene, take - 1, &mut rng)
                        .into_iter()
                        .map(question),
                );
            }
            index += 1;
        }
        out
    }
}

/// Up to `n` different questions about `s`: one of each kind in a shuffled order of kinds,
/// then a second of each kind that has one, and so on, so that no kind crowds out the
/// others (a four-object scene has twelve position questions and one count of objects).
pub fn questions_in_turn(s: &scene::Scene, n: usize, rng: &mut Rng) -> Vec<scene::Qa> {
    let mut kinds: Vec<Vec<scene::Qa>> = scene::QuestionKind::ALL
        .iter()
        .map(|&k| {
            let mut qs = scene::questions_of_kind(s, k, scene::Wording::Trained, rng);
            rng.shuffle(&mut qs);
            qs
        })
        .collect();
    rng.shuffle(&mut kinds);
    let mut out = Vec::with_capacity(n);
    while out.len() < n && kinds.iter().any(|k| !k.is_empty()) {
        for k in kinds.iter_mut() {
            if out.len() == n {
                break;
            }
            if let Some(q) = k.pop() {
                out.push(q);
            }
        }
    }
    out
}

/// The matching text of a scene: its whole caption half the time, else one of its
/// objects ("a large red circle"), so that a short text finds every scene holding it.
/// An empty scene's text is its caption, true of every empty scene.
pub fn match_text(s: &scene::Scene, caption: &str, rng: &mut Rng) -> MatchText {
    let mut facts: Vec<String> = s.objects.iter().map(scene::phrase).collect();
    if facts.is_empty() {
        facts.push(scene::NOTHING.to_string());
    }
    if s.objects.len() <= 1 || rng.chance(0.5) {
        MatchText {
            text: caption.to_string(),
            text_facts: facts.clone(),
            image_facts: facts,
            exhaustive: true,
        }
    } else {
        let one = facts[rng.below(facts.len())].clone();
        MatchText {
            text: one.clone(),
            text_facts: vec![one],
            image_facts: facts,
            exhaustive: false,
        }
    }
}

impl ExampleSource for SyntheticData {
    fn train_batch(&self, index: u64, count: usize) -> anyhow::Result<Vec<Example>> {
        let scenes = count.div_ceil(self.per_scene) as u64;
        Ok(self.examples(Split::Train, index * scenes, count))
    }

    fn validation(&self, count: usize) -> Vec<Example> {
        self.examples(Split::Val, 0, count)
    }

    fn corpus(&self) -> Vec<String> {
        text_corpus(self.seed, 3000)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "synthetic",
            "seed": self.seed,
            "frame": [scene::FRAME_WIDTH, scene::FRAME_HEIGHT],
            "shapes": scene::Shape::ALL.len(),
            "colors": scene::Color::ALL.len(),
            "sizes": scene::Size::ALL.len(),
            "max_objects": scene::MAX_OBJECTS,
            "question_kinds": scene::QuestionKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "examples_per_scene": self.per_scene,
            "caption_share": self.caption_share,
            "crowded_share": self.crowded,
            "reframe_share": self.reframe,
            "reframed_frames": REFRAMED,
            "harsh_share": self.harsh,
            "harsh_step_toward_shifted": HARSH,
            "sizes_meet_share": self.sizes_meet,
            "compositional_held_out": held_out_pairs(),
            "empty_share": scene::Conditions::TRAINING.empty,
            "frames": scene::Conditions::TRAINING.frames,
            "held_out_phrasings": scene::phrasings(scene::Wording::HeldOut)
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>(),
        })
    }
}

fn held_out_pairs() -> Vec<String> {
    let mut v = Vec::new();
    for c in scene::Color::ALL {
        for s in scene::Shape::ALL {
            if scene::is_held_out(c, s) {
                v.push(format!("{} {}", c.word(), s.word()));
            }
        }
    }
    v
}

/// Captions and questions of `scenes` training scenes, plus every word the generator can use.
pub fn text_corpus(seed: u64, scenes: u64) -> Vec<String> {
    let mut texts = scene::vocabulary();
    for i in 0..scenes {
        let mut rng = Rng::for_item(seed ^ 0x0074_6f6b, i);
        let sc = scene::Scene::random(
            &mut rng,
            scene::FRAME_WIDTH,
            scene::FRAME_HEIGHT,
            scene::Pairs::Seen,
            &scene::Conditions::TRAINING,
        );
        texts.push(scene::caption(&sc));
        for k in scene::QuestionKind::ALL {
            for q in scene::questions_of_kind(&sc, k, scene::Wording::Trained, &mut rng) {
                texts.push(q.question);
                texts.push(q.answer);
            }
        }
    }
    texts
}

/// Writes scenes `first..first + count` of `split` as `scene-N.png`, with a
/// `captions.jsonl` in the format [`super::load_folder`] reads (so the folder can be
/// trained on too). Returns the number written.
pub fn write_scenes(
    dir: &std::path::Path,
    seed: u64,
    split: Split,
    first: u64,
    count: u64,
) -> anyhow::Result<u64> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut lines = String::new();
    for i in first..first + count {
        let s = scene::sample(seed, split, i);
        let name = format!("scene-{i}.png");
        s.image
            .save(dir.join(&name))
            .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
        let qa: Vec<_> =
            s.qa.iter()
                .map(|q| serde_json::json!({"q": q.question, "a": q.answer, "kind": q.kind.name()}))
                .collect();
        let line = serde_json::json!({"image": name, "caption": s.caption, "qa": qa});
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("captions.jsonl"), lines)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scene_gives_its_caption_then_questions_of_every_kind_in_turn() {
        let data = SyntheticData::new(5, 7);
        let examples = data.train_batch(2, 70).unwrap();
        assert_eq!(examples.len(), 70);
        for scene in examples.chunks(7) {
            assert!(scene.iter().all(|e| Arc::ptr_eq(&e.image, &scene[0].image)));
            assert!(scene[0].prompt.is_empty() && scene[0].kind.is_none());
            let questions = &scene[1..];
            let mut asked: Vec<&str> = questions.iter().map(|e| e.prompt.as_str()).collect();
            asked.sort();
            asked.dedup();
            assert_eq!(asked.len(), questions.len(), "a question repeated");
            // kinds come in turn: no kind twice before every kind the scene has came once
            let kinds: Vec<_> = questions.iter().map(|e| e.kind.unwrap()).collect();
            let mut distinct = kinds.clone();
            distinct.sort_by_key(|k| k.name());
            distinct.dedup();
            if let Some(i) = (1..kinds.len()).find(|&i| kinds[..i].contains(&kinds[i])) {
                assert_eq!(
                    i,
                    distinct.len(),
                    "a kind came twice before another came once"
                );
            }
        }
    }

    #[test]
    fn an_empty_scene_matches_every_empty_scene_and_nothing_else() {
        let empty = scene::Scene {
            width: 320,
            height: 240,
            objects: Vec::new(),
        };
        let full = (0..)
            .map(|i| scene::sample(5, Split::Test, i).scene)
            .find(|s| !s.objects.is_empty())
            .unwrap();
        let text = |s: &scene::Scene, seed| match_text(s, &scene::caption(s), &mut Rng::new(seed));
        for seed in 0..10 {
            let nothing = text(&empty, seed);
            assert_eq!(nothing.text, scene::NOTHING);
            assert!(nothing.is_true_of(&text(&empty, seed + 100)));
            let other = text(&full, seed);
            assert!(!nothing.is_true_of(&other), "{:?}", other.text);
            assert!(!other.is_true_of(&nothing), "{:?}", other.text);
        }
    }

    #[test]
    fn the_earlier_mix_gives_captions_at_its_share() {
        let data = SyntheticData {
            caption_share: Some(0.4),
            ..SyntheticData::new(5, 2)
        };
        let examples = data.train_batch(0, 600).unwrap();
        for pair in examples.chunks(2) {
            assert!(Arc::ptr_eq(&pair[0].image, &pair[1].image));
        }
        let captions = examples.iter().filter(|e| e.prompt.is_empty()).count();
        assert!(
            (180..=300).contains(&captions),
            "{captions} captions of 600"
        );
    }

    /// Objects in each scene of the examples (one example a scene), from its matching facts.
    fn object_counts(examples: &[Example]) -> Vec<usize> {
        examples
            .iter()
            .map(|e| {
                let facts = &e
                    .matching
                    .as_ref()
                    .expect("synthetic examples match")
                    .image_facts;
                if facts == &[scene::NOTHING.to_string()] {
                    0
                } else {
                    facts.len()
                }
            })
            .collect()
    }

    #[test]
    fn crowded_training_scenes_hold_three_or_four_objects_at_their_share() {
        let plain = SyntheticData::new(5, 1);
        let half = SyntheticData {
            crowded: 0.5,
            ..SyntheticData::new(5, 1)
        };
        let all = SyntheticData {
            crowded: 1.0,
            ..SyntheticData::new(5, 1)
        };
        let (plain, half, all) = (
            object_counts(&plain.train_batch(0, 400).unwrap()),
            object_counts(&half.train_batch(0, 400).unwrap()),
            object_counts(&all.train_batch(0, 400).unwrap()),
        );
        let few = |v: &[usize]| v.iter().filter(|&&n| n == 1 || n == 2).count();
        assert!(all.iter().all(|&n| n == 0 || n >= CROWDED), "{all:?}");
        // the empty scenes stay where they were
        for (p, a) in plain.iter().zip(&all) {
            assert_eq!(*p == 0, *a == 0);
        }
        // half the scenes crowded: about half as many with one or two objects
        let (p, h) = (few(&plain), few(&half));
        assert!(
            p > 150 && (h as f32) < 0.65 * p as f32 && (h as f32) > 0.35 * p as f32,
            "{p} {h}"
        );
        // validation never changes
        let val = |d: &SyntheticData| object_counts(&d.validation(50));
        let crowded = SyntheticData {
            crowded: 1.0,
            ..SyntheticData::new(5, 1)
        };
        assert_eq!(val(&SyntheticData::new(5, 1)), val(&crowded));
    }

    /// The answers and images of `d`'s first `n` validation examples.
    fn validation(d: &SyntheticData, n: usize) -> Vec<(String, Arc<image::RgbImage>)> {
        d.validation(n)
            .into_iter()
            .map(|e| (e.answer, e.image))
            .collect()
    }

    #[test]
    fn harsh_training_scenes_change_at_their_share_and_validation_never() {
        let with = |harsh| SyntheticData {
            harsh,
            ..SyntheticData::new(5, 1)
        };
        let images = |d: &SyntheticData| -> Vec<Arc<image::RgbImage>> {
            d.train_batch(0, 300)
                .unwrap()
                .into_iter()
                .map(|e| e.image)
                .collect()
        };
        let (plain, half, all) = (images(&with(0.0)), images(&with(0.5)), images(&with(1.0)));
        let changed =
            |v: &[Arc<image::RgbImage>]| v.iter().zip(&plain).filter(|(a, b)| a != b).count();
        // a harsh scene's light, lens and clutter are drawn from other ranges
        assert!(changed(&all) >= 295, "{} of 300", changed(&all));
        let h = changed(&half);
        assert!((110..=190).contains(&h), "{h} of 300");
        // validation stays the training conditions'
        assert_eq!(validation(&with(0.0), 50), validation(&with(1.0), 50));
    }

    #[test]
    fn sizes_meet_fills_the_band_between_small_and_large_and_keeps_the_words_apart() {
        let with = |sizes_meet| SyntheticData {
            sizes_meet,
            ..SyntheticData::new(5, 1)
        };
        // (size, radius as a share of the frame's shorter side) of every object drawn
        let radii = |d: &SyntheticData| -> Vec<(scene::Size, f32)> {
            (0..300)
                .flat_map(|i| {
                    let s = d.sample(Split::Train, i).scene;
                    let unit = s.width.min(s.height) as f32;
                    s.objects
                        .into_iter()
                        .map(move |o| (o.size, o.radius / unit))
                })
                .collect()
        };
        let t = scene::Conditions::TRAINING;
        let line = (t.small.1 + t.large.0) / 2.0;
        let in_band = |v: &[(scene::Size, f32)], size| {
            v.iter()
                .filter(|(s, r)| *s == size && *r > t.small.1 + 1e-4 && *r < t.large.0 - 1e-4)
                .count()
        };
        let plain = radii(&with(0.0));
        assert_eq!(in_band(&plain, scene::Size::Small), 0);
        assert_eq!(in_band(&plain, scene::Size::Large), 0);
        let met = radii(&with(1.0));
        // about a quarter of each size lies in the band the training ranges leave out
        let small = met.iter().filter(|(s, _)| *s == scene::Size::Small).count();
        assert!(in_band(&met, scene::Size::Small) * 6 > small, "{small}");
        assert!(in_band(&met, scene::Size::Large) > 20);
        // and the words still follow the radius: small below the line, large above it
        for (size, r) in &met {
            match size {
                scene::Size::Small => assert!(*r <= line + 1e-4, "small at {r}"),
                scene::Size::Large => assert!(*r >= line - 1e-4, "large at {r}"),
            }
        }
        // validation stays the training conditions'
        assert_eq!(validation(&with(0.0), 30), validation(&with(1.0), 30));
    }

    #[test]
    fn reframed_training_scenes_take_other_frame_shapes_at_their_share() {
        let frames = |d: &SyntheticData| -> Vec<(u32, u32)> {
            d.train_batch(0, 400)
                .unwrap()
                .iter()
                .map(|e| e.image.dimensions())
                .collect()
        };
        let with = |reframe| SyntheticData {
            reframe,
            ..SyntheticData::new(5, 1)
        };
        let reframed = |v: &[(u32, u32)]| v.iter().filter(|f| REFRAMED.contains(f)).count();
        let (plain, half, all) = (frames(&with(0.0)), frames(&with(0.5)), frames(&with(1.0)));
        assert_eq!(reframed(&plain), 0);
        assert_eq!(reframed(&all), all.len());
        let h = reframed(&half);
        assert!((140..=260).contains(&h), "{h} of {}", half.len());
        // none has the shape of a frame of the training conditions or of the shifted split
        let same_shape = |a: &(u32, u32), b: &(u32, u32)| a.0 * b.1 == a.1 * b.0;
        for f in REFRAMED {
            let known = scene::Conditions::TRAINING.frames.iter();
            assert!(
                !known
                    .chain(scene::Conditions::SHIFTED.frames)
                    .any(|g| same_shape(f, g)),
                "{f:?}"
            );
        }
        // validation never changes
        let val = |d: &SyntheticData| -> Vec<(u32, u32)> {
            d.validation(50)
                .iter()
                .map(|e| e.image.dimensions())
                .collect()
        };
        assert_eq!(val(&with(0.0)), val(&with(1.0)));
    }
}
