//! A user's own data: a folder of images and a `captions.jsonl` beside them, one line per
//! image: `{"image": "a.jpg", "caption": "...", "qa": [{"q": "...", "a": "..."}]}`.
//!
//! A line may say which split it belongs to (`"split": "train" | "val" | "test"`). A line
//! that does not goes to validation with probability `val_fraction`, decided by a hash of
//! its image name (so adding lines never moves the others), else to training. Only lines
//! marked `test` are test lines: training never reads them, `eval --data` scores them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use glimpse_runtime::frame::load_image;

use glimpse_runtime::scene::Rng;

use super::augment::augment;
use super::cache::{CacheStats, ImageCache};
use super::{Example, ExampleSource, MatchText};

/// The part of a folder a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderSplit {
    Train,
    Val,
    Test,
}

/// One record of `captions.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub image: String,
    pub caption: Option<String>,
    #[serde(default)]
    pub qa: Vec<QaLine>,
    /// The split the line belongs to, when the folder says.
    #[serde(default)]
    pub split: Option<FolderSplit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QaLine {
    pub q: String,
    pub a: String,
    /// The question's kind, free form (the bundled examples carry it).
    #[serde(default)]
    pub kind: Option<String>,
}

/// Longest caption, question or answer, in characters: the models read a few hundred
/// tokens, and a longer text is a mistake in the file (a pasted paragraph).
pub const MAX_TEXT_CHARS: usize = 1000;

/// How a folder's lines are read and split (recorded in a run's options).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IndexOptions {
    /// Share of the lines without a `split` that go to validation.
    pub val_fraction: f64,
    /// Skip (and count) bad lines and unreadable images instead of stopping at the first.
    pub skip_bad: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            val_fraction: 0.1,
            skip_bad: false,
        }
    }
}

/// What is wrong with a record that parsed, if anything.
fn problem(r: &Record) -> Option<String> {
    let long = |what: &str, text: &str| {
        let n = text.chars().count();
        (n > MAX_TEXT_CHARS)
            .then(|| format!("{what} is {n} characters, more than {MAX_TEXT_CHARS}"))
    };
    if r.image.trim().is_empty() {
        return Some("the record names no image".into());
    }
    if r.caption.is_none() && r.qa.is_empty() {
        return Some("the record has neither a caption nor questions".into());
    }
    if let Some(c) = &r.caption {
        if c.trim().is_empty() {
            return Some("the caption is empty".into());
        }
        if let Some(e) = long("the caption", c) {
            return Some(e);
        }
    }
    for (i, qa) in r.qa.iter().enumerate() {
        if qa.q.trim().is_empty() {
            return Some(format!("question {} (qa[{i}]) is empty", i + 1));
        }
        if qa.a.trim().is_empty() {
            return Some(format!("the answer to {:?} (qa[{i}]) is empty", qa.q));
        }
        if let Some(e) = long(&format!("question {} (qa[{i}])", i + 1), &qa.q).or_else(|| {
            long(
                &format!("the answer to question {} (qa[{i}])", i + 1),
                &qa.a,
            )
        }) {
            return Some(e);
        }
    }
    None
}

/// Records with their line numbers (from 0), and the messages of the lines skipped.
pub type Parsed = (Vec<(usize, Record)>, Vec<String>);

/// The records of a `captions.jsonl` (read from `index`, for messages), with their line
/// numbers (from 0); blank lines are skipped. A bad line is an error naming the file and
/// line, or with `skip_bad` a message in the second list.
pub fn parse_index(text: &str, index: &Path, skip_bad: bool) -> Result<Parsed> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let why = match serde_json::from_str::<Record>(line) {
            Ok(r) => match problem(&r) {
                None => {
                    records.push((n, r));
                    continue;
                }
                Some(why) => why,
            },
            Err(e) => format!("not a valid record: {e}"),
        };
        let message = format!("{}:{}: {why}", index.display(), n + 1);
        if !skip_bad {
            bail!(message);
        }
        skipped.push(message);
    }
    Ok((records, skipped))
}

/// Where a line without a `split` goes: validation for a `val_fraction` share of image
/// names (FNV-1a hash), training for the rest.
pub fn assigned_split(image: &str, val_fraction: f64) -> FolderSplit {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in image.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < val_fraction {
        FolderSplit::Val
    } else {
        FolderSplit::Train
    }
}

/// One line of the index, where it belongs.
#[derive(Debug, Clone)]
pub struct Line {
    /// Line number in `captions.jsonl`, from 1.
    pub number: usize,
    pub record: Record,
    pub split: FolderSplit,
}

/// A folder's `captions.jsonl`, read and split; images are read when asked for.
#[derive(Debug, Clone)]
pub struct FolderIndex {
    pub dir: PathBuf,
    /// `dir/captions.jsonl`.
    pub index: PathBuf,
    pub lines: Vec<Line>,
    /// Bad lines and unreadable images passed over (with `skip_bad`), each with its reason.
    pub skipped: Vec<String>,
    /// Whether bad lines and images are passed over rather than errors.
    pub skip_bad: bool,
}

impl FolderIndex {
    /// Reads `dir/captions.jsonl` (the images are not read yet).
    pub fn read(dir: &Path, options: IndexOptions) -> Result<FolderIndex> {
        if !(0.0..1.0).contains(&options.val_fraction) {
            bail!(
                "--val-fraction must be at least 0 and less than 1, not {}",
                options.val_fraction
            );
        }
        let index = dir.join("captions.jsonl");
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        let (records, skipped) = parse_index(&text, &index, options.skip_bad)?;
        let lines = records
            .into_iter()
            .map(|(n, record)| Line {
                number: n + 1,
                split: record
                    .split
                    .unwrap_or_else(|| assigned_split(&record.image, options.val_fraction)),
                record,
            })
            .collect();
        Ok(FolderIndex {
            dir: dir.to_path_buf(),
            index,
            lines,
            skipped,
            skip_bad: options.skip_bad,
        })
    }

    /// The lines of one split, in file order.
    pub fn split(&self, split: FolderSplit) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(move |l| l.split == split)
    }

    /// `dir/captions.jsonl:N`, for messages.
    pub fn at(&self, line: &Line) -> String {
        format!("{}:{}", self.index.display(), line.number)
    }

    /// The image of `line`; an error names the file, the line and the image.
    pub fn image(&self, line: &Line) -> Result<RgbImage> {
        load_image(&self.dir.join(&line.record.image)).with_context(|| self.at(line))
    }
}

/// The training examples of one line: its caption, then its questions.
fn examples(record: &Record, image: Arc<RgbImage>) -> Vec<Example> {
    let matching = record.caption.as_ref().map(|c| {
        Arc::new(MatchText {
            text: c.clone(),
            image_facts: Vec::new(),
            text_facts: Vec::new(),
            exhaustive: true,
        })
    });
    let caption = record.caption.iter().map(|c| (String::new(), c.clone()));
    let questions = record.qa.iter().map(|qa| (qa.q.clone(), qa.a.clone()));
    caption
        .chain(questions)
        .map(|(prompt, answer)| Example {
            image: image.clone(),
            prompt,
            answer,
            kind: None,
            matching: matching.clone(),
        })
        .collect()
}

pub struct FolderData {
    pub dir: PathBuf,
    folder: FolderIndex,
    /// Training lines (indices into `folder.lines`), one image each.
    train: Vec<usize>,
    /// The validation examples, read once.
    val: Vec<Example>,
    /// Decoded images, read as batches need them.
    cache: ImageCache,
    /// Images that could not be read during training (with `skip_bad`).
    unreadable: std::sync::atomic::AtomicUsize,
    /// The last batch placed on the walk: (examples per batch, index, first position).
    walked: std::sync::Mutex<(usize, u64, u64)>,
    /// Seed of the augmentation, when training images are augmented.
    augment: Option<u64>,
}

/// Default budget of decoded training images kept in memory.
pub const DEFAULT_CACHE_MB: u64 = 512;

/// Reads `dir/captions.jsonl`, checks that every image of a training or validation line
/// exists, and reads the validation images (at most `val_examples` examples' worth).
/// Training images are read as batches need them, at most `cache_bytes` of them kept.
pub fn load_folder(
    dir: &Path,
    options: IndexOptions,
    val_examples: usize,
    cache_bytes: u64,
) -> Result<FolderData> {
    let mut folder = FolderIndex::read(dir, options)?;
    let mut kept = Vec::with_capacity(folder.lines.len());
    for line in std::mem::take(&mut folder.lines) {
        let path = folder.dir.join(&line.record.image);
        if line.split == FolderSplit::Test || path.is_file() {
            kept.push(line);
            continue;
        }
        let message = format!("{}: no image file {}", folder.at(&line), path.display());
        if !options.skip_bad {
            bail!(message);
        }
        folder.skipped.push(message);
    }
    folder.lines = kept;
    let mut val = Vec::new();
    let mut unreadable = Vec::new();
    for line in folder.split(FolderSplit::Val) {
        if val.len() >= val_examples {
            break;
        }
        match folder.image(line) {
            Ok(image) => val.extend(examples(&line.record, Arc::new(image))),
            Err(e) if options.skip_bad => unreadable.push(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    }
    folder.skipped.extend(unreadable);
    let train: Vec<usize> = (0..folder.lines.len())
        .filter(|&i| folder.lines[i].split == FolderSplit::Train)
        .collect();
    if !folder.skipped.is_empty() {
        eprintln!(
            "skipped {} bad lines or images of {} (first: {})",
            folder.skipped.len(),
            folder.index.display(),
            folder.skipped[0]
        );
    }
    if train.is_empty() {
        bail!("{} holds no training examples", folder.index.display());
    }
    if val.is_empty() {
        // validate on the first training images rather than on nothing
        for &i in train.iter().take(8) {
            let line = &folder.lines[i];
            val.extend(examples(&line.record, Arc::new(folder.image(line)?)));
        }
        val.truncate(8);
    }
    Ok(FolderData {
        dir: dir.to_path_buf(),
        folder,
        train,
        val,
        cache: ImageCache::new(cache_bytes),
        unreadable: Default::default(),
        walked: Default::default(),
        augment: None,
    })
}

impl FolderData {
    /// Training images augmented from `seed` (see `augment.rs`): each visit of an image
    /// draws its own changes, the same in every run.
    pub fn with_augment(self, seed: u64) -> FolderData {
        FolderData {
            augment: Some(seed),
            ..self
        }
    }

    /// The examples of training line `i` at walk `position`, its image from the cache or
    /// the disk (and augmented, when asked).
    fn train_examples(&self, i: usize, position: u64) -> Result<Vec<Example>> {
        let line = &self.folder.lines[i];
        let mut image = self.cache.get(i, || self.folder.image(line))?;
        if let Some(seed) = self.augment {
            let r = &line.record;
            let texts = r
                .caption
                .iter()
                .map(String::as_str)
                .chain(r.qa.iter().flat_map(|qa| [qa.q.as_str(), qa.a.as_str()]));
            let seed = Rng::for_item(seed, position).next_u64();
            image = Arc::new(augment(&image, texts, seed).with_context(|| self.folder.at(line))?);
        }
        Ok(examples(&line.record, image))
    }

    /// The image at `position` of the walk: a stride coprime with every size below it
    /// visits each training line once per `n` positions.
    fn line_at(&self, position: u64) -> usize {
        let n = self.train.len() as u64;
        self.train[(position.wrapping_mul(2_654_435_761) % n) as usize]
    }

    /// Examples of a line (its caption and questions), known without its image.
    fn size_of(&self, line: usize) -> usize {
        let r = &self.folder.lines[line].record;
        r.qa.len() + usize::from(r.caption.is_some())
    }

    /// Where batch `index` of `count` examples starts on the walk: each batch takes the
    /// images that follow the previous batch's, so every pass reads every image once.
    /// Batches come in order, so the last one's end is remembered; a resumed run walks
    /// the sizes from the start once (no image is read for it).
    fn first_position(&self, index: u64, count: usize) -> u64 {
        let mut walked = self.walked.lock().unwrap_or_else(|e| e.into_inner());
        let (mut i, mut position) = match *walked {
            (c, i, p) if c == count && i <= index => (i, p),
            _ => (0, 0),
        };
        while i < index {
            let mut filled = 0;
            while filled < count {
                filled += self.size_of(self.line_at(position));
                position += 1;
            }
            i += 1;
        }
        *walked = (count, i, position);
        position
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl ExampleSource for FolderData {
    /// Whole images in a fixed pseudo-random walk, each image's examples together: the
    /// caption and questions of one image become one packed row. An image cut off at the end of
    /// the batch gives the examples its rotation puts first; the rotation moves on with
    /// every pass, so each example is drawn as often. Images are read here, on the
    /// batch thread; one that cannot be read is an error naming its line, or with
    /// `skip_bad` is passed over and counted.
    fn train_batch(&self, index: u64, count: usize) -> Result<Vec<Example>> {
        let n = self.train.len() as u64;
        let mut out = Vec::with_capacity(count);
        let mut position = self.first_position(index, count);
        let mut failures = 0;
        while out.len() < count {
            let (here, line) = (position, self.line_at(position));
            position += 1;
            let group = match self.train_examples(line, here) {
                Ok(g) => g,
                Err(e) if self.folder.skip_bad && failures < n => {
                    failures += 1;
                    let first = self
                        .unreadable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        == 0;
                    if first {
                        eprintln!("skipping unreadable images, first: {e:#}");
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            // each pass over the images starts each one at its next example
            let start = ((here / n) % group.len() as u64) as usize;
            let take = group.len().min(count - out.len());
            out.extend((0..take).map(|t| group[(start + t) % group.len()].clone()));
        }
        Ok(out)
    }

    fn validation(&self, count: usize) -> Vec<Example> {
        self.val.iter().take(count).cloned().collect()
    }

    fn corpus(&self) -> Vec<String> {
        self.train
            .iter()
            .flat_map(|&i| {
                let r = &self.folder.lines[i].record;
                r.caption
                    .iter()
                    .cloned()
                    .chain(r.qa.iter().flat_map(|qa| [qa.q.clone(), qa.a.clone()]))
            })
            .collect()
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "folder",
            "dir": self.dir.display().to_string(),
            "train_images": self.train.len(),
            "train_examples": self
                .train
                .iter()
                .map(|&i| {
                    let r = &self.folder.lines[i].record;
                    r.qa.len() + usize::from(r.caption.is_some())
                })
                .sum::<usize>(),
            "val_examples": self.val.len(),
            "test_lines": self.folder.split(FolderSplit::Test).count(),
            "skipped": self.folder.skipped.len(),
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
        let ok = "{\"image\": \"a.jpg\", \"caption\": \"a cat\"}\n\n{\"image\": \"b.jpg\", \"qa\": [{\"q\": \"what?\", \"a\": \"cat\"}], \"split\": \"test\"}";
        let (r, skipped) = parse_index(ok, index, false).unwrap();
        assert_eq!((r[0].0, r[1].0), (0, 2));
        assert_eq!(r[1].1.qa[0].a, "cat");
        assert_eq!(
            (r[0].1.split, r[1].1.split),
            (None, Some(FolderSplit::Test))
        );
        assert!(skipped.is_empty());
        let long = "x".repeat(10_000);
        let bad_lines = [
            (
                "{\"image\": \"a.jpg\", \"caption\": 3}".to_string(),
                "not a valid record",
            ),
            (
                "{\"image\": \"\", \"caption\": \"x\"}".into(),
                "names no image",
            ),
            ("{\"image\": \"a.jpg\"}".into(), "neither a caption"),
            (
                "{\"image\": \"a.jpg\", \"captoin\": \"typo\"}".into(),
                "neither a caption",
            ),
            ("garbage".into(), "not a valid record"),
            (
                "{\"image\": \"a.jpg\", \"qa\": [{\"q\": \"what?\", \"a\": \" \"}]}".into(),
                "the answer to \"what?\" (qa[0]) is empty",
            ),
            (
                "{\"image\": \"a.jpg\", \"qa\": [{\"q\": \"\", \"a\": \"cat\"}]}".into(),
                "question 1 (qa[0]) is empty",
            ),
            (
                "{\"image\": \"a.jpg\", \"caption\": \"\"}".into(),
                "caption is empty",
            ),
            (
                format!(
                    "{{\"image\": \"a.jpg\", \"qa\": [{{\"q\": \"ok?\", \"a\": \"y\"}}, {{\"q\": \"{long}\", \"a\": \"y\"}}]}}"
                ),
                "question 2 (qa[1]) is 10000 characters, more than 1000",
            ),
            (
                "{\"image\": \"a.jpg\", \"caption\": \"x\", \"split\": \"tset\"}".into(),
                "unknown variant `tset`",
            ),
        ];
        for (bad, why) in &bad_lines {
            let text = format!("{ok}\n{bad}");
            let e = format!("{:#}", parse_index(&text, index, false).unwrap_err());
            assert!(
                e.contains("shots/captions.jsonl:4") && e.contains(why),
                "{bad}: {e}"
            );
        }
        // with skip_bad every bad line is passed over and named, the good ones kept
        let all: Vec<&str> = bad_lines.iter().map(|(l, _)| l.as_str()).collect();
        let text = format!("{ok}\n{}", all.join("\n"));
        let (r, skipped) = parse_index(&text, index, true).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(skipped.len(), bad_lines.len());
        for (k, ((_, why), message)) in bad_lines.iter().zip(&skipped).enumerate() {
            assert!(
                message.contains(&format!("captions.jsonl:{}", 4 + k)) && message.contains(why),
                "{message}"
            );
        }
    }

    #[test]
    fn unmarked_lines_go_to_validation_by_a_stable_share_of_image_names() {
        let names: Vec<String> = (0..4000).map(|i| format!("frame-{i:05}.jpg")).collect();
        for fraction in [0.0, 0.1, 0.25] {
            let val = names
                .iter()
                .filter(|n| assigned_split(n, fraction) == FolderSplit::Val)
                .count();
            let share = val as f64 / names.len() as f64;
            assert!((share - fraction).abs() < 0.02, "{fraction}: {share}");
        }
        // a line's split depends on its image only, never on the lines around it
        for n in &names[..50] {
            assert_eq!(assigned_split(n, 0.1), assigned_split(n, 0.1));
        }
        let (a, b) = (assigned_split("x.jpg", 0.3), assigned_split("x.jpg", 0.9));
        assert!(a == b || (a == FolderSplit::Train && b == FolderSplit::Val));
    }

    /// Options that send every unmarked line to training and stop at a bad one.
    fn every_line_trains() -> IndexOptions {
        IndexOptions {
            val_fraction: 0.0,
            skip_bad: false,
        }
    }

    /// A folder of 12 one-colour images; lines 1, 2 and 3 are marked `test`, and their
    /// images do not exist.
    fn folder(dir: &Path) {
        let mut lines = String::new();
        for i in 0..12 {
            let name = format!("im-{i}.png");
            let split = match i {
                0..3 => ", \"split\": \"test\"",
                3 => ", \"split\": \"val\"",
                _ => "",
            };
            if i >= 3 {
                RgbImage::from_pixel(8, 8, image::Rgb([i as u8 * 20, 0, 0]))
                    .save(dir.join(&name))
                    .unwrap();
            }
            lines += &format!(
                "{{\"image\": \"{name}\", \"caption\": \"colour {i}\", \"qa\": [{{\"q\": \"which?\", \"a\": \"{i}\"}}]{split}}}\n"
            );
        }
        std::fs::write(dir.join("captions.jsonl"), lines).unwrap();
    }

    #[test]
    fn test_lines_are_never_read_for_training() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path());
        let options = every_line_trains();
        let index = FolderIndex::read(dir.path(), options).unwrap();
        let numbers = |s| index.split(s).map(|l| l.number).collect::<Vec<_>>();
        assert_eq!(numbers(FolderSplit::Test), [1, 2, 3]);
        assert_eq!(numbers(FolderSplit::Val), [4]);
        assert_eq!(numbers(FolderSplit::Train), (5..=12).collect::<Vec<_>>());
        // the test images are missing: loading for training succeeds without them
        let data = load_folder(dir.path(), options, 100, 1 << 20).unwrap();
        assert_eq!((data.train.len(), data.val.len()), (8, 2));
        let described = data.describe();
        assert_eq!(
            (&described["train_examples"], &described["test_lines"]),
            (&serde_json::json!(16), &serde_json::json!(3))
        );
        let answers: Vec<String> = (0..8)
            .flat_map(|i| data.train_batch(i, 2).unwrap())
            .map(|e| e.answer)
            .collect();
        for held_out in ["0", "1", "2", "colour 0", "colour 1", "colour 2"] {
            assert!(
                !answers.iter().any(|a| a == held_out),
                "{held_out} was trained on"
            );
        }
        // a missing training image is named with its line when the folder is opened
        std::fs::remove_file(dir.path().join("im-5.png")).unwrap();
        let e = format!(
            "{:#}",
            load_folder(dir.path(), options, 100, 1 << 20)
                .err()
                .unwrap()
        );
        assert!(
            e.contains("captions.jsonl:6") && e.contains("im-5.png"),
            "{e}"
        );
        // one that cannot be decoded when a batch reaches it
        let skipping = IndexOptions {
            skip_bad: true,
            ..options
        };
        std::fs::write(dir.path().join("im-7.png"), b"not a png").unwrap();
        let data = load_folder(dir.path(), skipping, 100, 1 << 20).unwrap();
        assert_eq!((data.train.len(), data.folder.skipped.len()), (7, 1));
        for i in 0..7 {
            let batch = data.train_batch(i, 2).unwrap();
            assert_eq!(batch.len(), 2);
            assert!(batch.iter().all(|e| e.answer != "7"));
        }
        assert!(data.unreadable.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        let strict = load_folder(dir.path(), skipping, 100, 1 << 20).unwrap();
        let strict = FolderData {
            folder: FolderIndex {
                skip_bad: false,
                ..strict.folder.clone()
            },
            ..strict
        };
        let e = (0..7)
            .find_map(|i| strict.train_batch(i, 2).err())
            .expect("no batch reached im-7.png");
        let e = format!("{e:#}");
        assert!(
            e.contains("captions.jsonl:8") && e.contains("im-7.png"),
            "{e}"
        );
        assert!(
            FolderIndex::read(
                dir.path(),
                IndexOptions {
                    val_fraction: 1.0,
                    ..options
                }
            )
            .is_err()
        );
    }

    #[test]
    fn the_images_read_stay_within_the_cache_budget() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path());
        let options = every_line_trains();
        // room for three 8×8 images
        let data = load_folder(dir.path(), options, 100, 3 * 192).unwrap();
        assert_eq!(data.cache_stats().images, 0, "nothing read before training");
        for i in 0..40 {
            data.train_batch(i, 2).unwrap();
            let s = data.cache_stats();
            assert!(s.images <= 3 && s.bytes <= 3 * 192, "{s:?}");
        }
        let s = data.cache_stats();
        assert_eq!(s.hits + s.misses, 40);
        // a budget that holds every image reads each once
        let data = load_folder(dir.path(), options, 100, 1 << 20).unwrap();
        for i in 0..40 {
            data.train_batch(i, 2).unwrap();
        }
        assert_eq!(data.cache_stats().misses, 8);
    }

    #[test]
    fn batches_hold_each_images_examples_together() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path());
        let options = every_line_trains();
        let data = load_folder(dir.path(), options, 100, 1 << 20).unwrap();
        let answers = |b: Vec<Example>| b.iter().map(|e| e.answer.clone()).collect::<Vec<_>>();
        let b = data.train_batch(3, 6).unwrap();
        assert_eq!(b.len(), 6);
        for pair in b.chunks(2) {
            assert!(Arc::ptr_eq(&pair[0].image, &pair[1].image));
            assert_ne!(pair[0].answer, pair[1].answer);
        }
        assert_eq!(answers(data.train_batch(3, 6).unwrap()), answers(b));
        // eight batches of one example walk every one of the eight images once
        let mut images: Vec<*const RgbImage> = (0..8)
            .map(|i| Arc::as_ptr(&data.train_batch(i, 1).unwrap()[0].image))
            .collect();
        images.sort();
        images.dedup();
        assert_eq!(images.len(), 8);
        // a batch ending inside an image takes a different one of its examples each time
        let firsts: std::collections::HashSet<String> = (0..16)
            .map(|i| data.train_batch(i, 1).unwrap()[0].answer.clone())
            .collect();
        assert_eq!(firsts.len(), 16);
    }

    #[test]
    fn augmented_batches_are_the_same_in_every_run_and_differ_between_visits() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path());
        let options = every_line_trains();
        let open = || load_folder(dir.path(), options, 100, 1 << 20).unwrap();
        let pixels = |d: &FolderData, i| -> Vec<Vec<u8>> {
            d.train_batch(i, 2)
                .unwrap()
                .iter()
                .map(|e| e.image.as_raw().clone())
                .collect()
        };
        let (a, b) = (open().with_augment(5), open().with_augment(5));
        let plain = open();
        for i in 0..8 {
            assert_eq!(pixels(&a, i), pixels(&b, i));
            assert_ne!(pixels(&a, i), pixels(&plain, i));
            // an image's examples share one augmented frame, so they still pack
            let batch = a.train_batch(i, 2).unwrap();
            assert!(Arc::ptr_eq(&batch[0].image, &batch[1].image));
        }
        // the second pass over the eight images draws new changes
        assert_ne!(pixels(&a, 0), pixels(&a, 8));
        assert_eq!(pixels(&plain, 0), pixels(&plain, 8));
        assert_ne!(pixels(&a, 0), pixels(&open().with_augment(6), 0));
    }

    #[test]
    fn fuzz_captions_jsonl() {
        let index = Path::new("captions.jsonl");
        let seed =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/captions.jsonl"))
                .unwrap();
        assert_eq!(
            parse_index(std::str::from_utf8(&seed).unwrap(), index, false)
                .unwrap()
                .0
                .len(),
            6
        );
        let mut m = Mutator::new(11);
        for case in 0..3000 {
            let input = m.mutate(&seed, None);
            let text = String::from_utf8_lossy(&input);
            for skip_bad in [false, true] {
                let r = std::panic::catch_unwind(|| parse_index(&text, index, skip_bad));
                assert!(r.is_ok(), "case {case} panicked on {text:?}");
            }
        }
    }
}
