//! A user's own data: a folder of images and a `captions.jsonl` beside them, one line per
//! image: `{"image": "a.jpg", "caption": "...", "qa": [{"q": "...", "a": "..."}]}`.
//! Every tenth image is kept for validation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use glimpse_runtime::frame::load_image;

use super::{Example, ExampleSource, MatchText};

#[derive(Debug, Deserialize)]
struct Line {
    image: String,
    caption: Option<String>,
    #[serde(default)]
    qa: Vec<QaLine>,
}

#[derive(Debug, Deserialize)]
struct QaLine {
    q: String,
    a: String,
}

pub struct FolderData {
    pub dir: PathBuf,
    train: Vec<Example>,
    val: Vec<Example>,
}

/// Reads `dir/captions.jsonl` and every image it names.
pub fn load_folder(dir: &Path) -> Result<FolderData> {
    let index = dir.join("captions.jsonl");
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a valid record", index.display(), n + 1))?;
        let image = Arc::new(load_image(&dir.join(&l.image))?);
        let mut examples = Vec::new();
        let matching = l.caption.as_ref().map(|c| {
            Arc::new(MatchText {
                text: c.clone(),
                image_facts: Vec::new(),
                text_facts: Vec::new(),
                exhaustive: true,
            })
        });
        if let Some(c) = l.caption {
            examples.push(Example {
                image: image.clone(),
                prompt: String::new(),
                answer: c,
                kind: None,
                matching: matching.clone(),
            });
        }
        for qa in l.qa {
            examples.push(Example {
                image: image.clone(),
                prompt: qa.q,
                answer: qa.a,
                kind: None,
                matching: matching.clone(),
            });
        }
        if n % 10 == 9 {
            val.extend(examples);
        } else {
            train.extend(examples);
        }
    }
    if train.is_empty() {
        bail!("{} holds no training examples", index.display());
    }
    if val.is_empty() {
        val = train.iter().take(8).cloned().collect();
    }
    Ok(FolderData {
        dir: dir.to_path_buf(),
        train,
        val,
    })
}

impl ExampleSource for FolderData {
    fn train_batch(&self, index: u64, count: usize) -> Vec<Example> {
        let n = self.train.len() as u64;
        (0..count as u64)
            .map(|i| {
                // a fixed permutation-like walk: stride coprime with most sizes
                let k = (index * count as u64 + i).wrapping_mul(2_654_435_761) % n;
                self.train[k as usize].clone()
            })
            .collect()
    }

    fn validation(&self, count: usize) -> Vec<Example> {
        self.val.iter().take(count).cloned().collect()
    }

    fn corpus(&self) -> Vec<String> {
        self.train
            .iter()
            .flat_map(|e| [e.prompt.clone(), e.answer.clone()])
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "folder",
            "dir": self.dir.display().to_string(),
            "train_examples": self.train.len(),
            "val_examples": self.val.len(),
        })
    }
}
