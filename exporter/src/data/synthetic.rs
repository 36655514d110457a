//! Examples from the scene generator: for each scene, its caption and its questions.

use std::sync::Arc;

use glimpse_runtime::scene::{self, Rng, Split};

use super::{Example, ExampleSource, MatchText};

/// Examples drawn from `seed`'s scenes. Each scene gives several examples, so a batch of
/// `n` examples renders about `n / per_scene` frames.
pub struct SyntheticData {
    pub seed: u64,
    pub per_scene: usize,
    /// Share of examples that ask for the caption rather than a question.
    pub caption_share: f32,
}

impl SyntheticData {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            per_scene: 2,
            caption_share: 0.4,
        }
    }

    fn examples(&self, split: Split, first_scene: u64, count: usize) -> Vec<Example> {
        let mut out = Vec::with_capacity(count);
        let mut index = first_scene;
        while out.len() < count {
            let s = scene::sample(self.seed, split, index);
            let mut rng = Rng::for_item(self.seed ^ 0x6578, index);
            let image = Arc::new(s.image);
            // its own stream, so adding matching texts left the other examples unchanged
            let mut match_rng = Rng::for_item(self.seed ^ 0x636c_6970, index);
            let matching = Some(Arc::new(match_text(&s.scene, &s.caption, &mut match_rng)));
            let mut qa = s.qa.clone();
            rng.shuffle(&mut qa);
            let mut qa = qa.into_iter();
            for _ in 0..self.per_scene {
                if out.len() == count {
                    break;
                }
                let ex = match qa.next() {
                    Some(q) if !rng.chance(self.caption_share) => Example {
                        image: image.clone(),
                        prompt: q.question,
                        answer: q.answer,
                        kind: Some(q.kind),
                        matching: matching.clone(),
                    },
                    _ => Example {
                        image: image.clone(),
                        prompt: String::new(),
                        answer: s.caption.clone(),
                        kind: None,
                        matching: matching.clone(),
                    },
                };
                out.push(ex);
            }
            index += 1;
        }
        out
    }
}

/// The matching text of a scene: its whole caption half the time, else one of its
/// objects ("a large red circle"), so that a short text finds every scene holding it.
pub fn match_text(s: &scene::Scene, caption: &str, rng: &mut Rng) -> MatchText {
    let facts: Vec<String> = s.objects.iter().map(scene::phrase).collect();
    if s.objects.len() == 1 || rng.chance(0.5) {
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
    fn train_batch(&self, index: u64, count: usize) -> Vec<Example> {
        let scenes = count.div_ceil(self.per_scene) as u64;
        self.examples(Split::Train, index * scenes, count)
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
            "caption_share": self.caption_share,
            "compositional_held_out": held_out_pairs(),
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
        );
        texts.push(scene::caption(&sc));
        for k in scene::QuestionKind::ALL {
            for q in scene::questions_of_kind(&sc, k, &mut rng) {
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
