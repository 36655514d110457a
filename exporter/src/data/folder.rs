//! A user's own data: a folder of images and a `captions.jsonl` beside them, one line per
//! image: `{"image": "a.jpg", "caption": "...", "qa": [{"q": "...", "a": "..."}]}`.
//! Every tenth image is kept for validation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use glimpse_runtime::frame::load_image;

use super::{Example, ExampleSource, MatchText};

/// One record of `captions.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub image: String,
    pub caption: Option<String>,
    #[serde(default)]
    pub qa: Vec<QaLine>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QaLine {
    pub q: String,
    pub a: String,
    /// The question's kind, free form (the bundled examples carry it).
    #[serde(default)]
    pub kind: Option<String>,
}

/// The records of a `captions.jsonl` (read from `index`, for messages), with their line
/// numbers; blank lines are skipped. A bad line is an error naming the file and line.
pub fn parse_index(text: &str, index: &Path) -> Result<Vec<(usize, Record)>> {
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a valid record", index.display(), n + 1))?;
        if r.image.trim().is_empty() {
            bail!("{}:{}: the record names no image", index.display(), n + 1);
        }
        if r.caption.is_none() && r.qa.is_empty() {
            bail!(
                "{}:{}: the record has neither a caption nor questions",
                index.display(),
                n + 1
            );
        }
        records.push((n, r));
    }
    Ok(records)
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
    for (n, l) in parse_index(&text, &index)? {
        let image = Arc::new(
            load_image(&dir.join(&l.image))
                .with_context(|| format!("{}:{}", index.display(), n + 1))?,
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use glimpse_runtime::fuzz::Mutator;

    #[test]
    fn bad_lines_are_named_by_file_and_line() {
        let index = Path::new("shots/captions.jsonl");
        let ok = "{\"image\": \"a.jpg\", \"caption\": \"a cat\"}\n\n{\"image\": \"b.jpg\", \"qa\": [{\"q\": \"what?\", \"a\": \"cat\"}]}";
        let r = parse_index(ok, index).unwrap();
        assert_eq!((r[0].0, r[1].0), (0, 2));
        assert_eq!(r[1].1.qa[0].a, "cat");
        for (bad, why) in [
            (
                "{\"image\": \"a.jpg\", \"caption\": 3}",
                "not a valid record",
            ),
            ("{\"image\": \"\", \"caption\": \"x\"}", "names no image"),
            ("{\"image\": \"a.jpg\"}", "neither a caption"),
            (
                "{\"image\": \"a.jpg\", \"captoin\": \"typo\"}",
                "neither a caption",
            ),
            ("garbage", "not a valid record"),
        ] {
            let text = format!("{ok}\n{bad}");
            let e = format!("{:#}", parse_index(&text, index).unwrap_err());
            assert!(
                e.contains("shots/captions.jsonl:4") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn fuzz_captions_jsonl() {
        let index = Path::new("captions.jsonl");
        let seed =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/captions.jsonl"))
                .unwrap();
        assert_eq!(
            parse_index(std::str::from_utf8(&seed).unwrap(), index)
                .unwrap()
                .len(),
            6
        );
        let mut m = Mutator::new(11);
        for case in 0..3000 {
            let input = m.mutate(&seed, None);
            let text = String::from_utf8_lossy(&input);
            let r = std::panic::catch_unwind(|| parse_index(&text, index));
            assert!(r.is_ok(), "case {case} panicked on {text:?}");
        }
    }
}
