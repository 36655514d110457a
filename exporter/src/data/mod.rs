//! Training examples: from the synthetic scene generator or a folder of the user's images,
//! and batches of them as the model reads them.

pub mod augment;
mod batch;
mod cache;
mod folder;
mod noise;
mod synthetic;

use std::sync::Arc;

use image::RgbImage;

use glimpse_runtime::scene::QuestionKind;

pub use batch::{Batch, BatchBuilder, MatchBatch};
pub use cache::{CacheStats, ImageCache};
pub use folder::{
    DEFAULT_CACHE_MB, FolderData, FolderIndex, FolderSplit, IndexOptions, Line, MAX_TEXT_CHARS,
    Record, load_folder,
};
pub use noise::WordNoise;
pub use synthetic::{HARSH, REFRAMED, SyntheticData, text_corpus, write_scenes};

/// One (frame, prompt, answer) example. An empty prompt asks for the caption.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: Arc<RgbImage>,
    pub prompt: String,
    pub answer: String,
    /// The question's kind (synthetic QA only), for per-kind evaluation.
    pub kind: Option<QuestionKind>,
    /// The text paired with this example's image for contrastive matching, if any.
    pub matching: Option<Arc<MatchText>>,
}

/// A text paired with an image for contrastive training, and what it takes for a text to
/// be true of an image (so that in-batch "negatives" that are in fact true are not
/// pushed away).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchText {
    pub text: String,
    /// What is in the image: one phrase per object ("a large red circle"); empty when
    /// unknown (users' folders), in which case the text is true of its own image only.
    pub image_facts: Vec<String>,
    /// What the text states.
    pub text_facts: Vec<String>,
    /// The text states everything in its image (a whole caption), not just part of it.
    pub exhaustive: bool,
}

impl MatchText {
    /// Whether this text is true of the image described by `image` (another example's).
    pub fn is_true_of(&self, image: &MatchText) -> bool {
        if self.text_facts.is_empty() || image.image_facts.is_empty() {
            return false;
        }
        if self.exhaustive {
            let mut a = self.text_facts.clone();
            let mut b = image.image_facts.clone();
            a.sort();
            b.sort();
            a == b
        } else {
            self.text_facts
                .iter()
                .all(|f| image.image_facts.contains(f))
        }
    }
}

/// Where training examples come from.
pub trait ExampleSource: Send {
    /// Examples for training batch `index`, `count` of them, deterministic in `index`.
    /// Batches are asked for in order, on the batch thread; an image that cannot be read
    /// is an error.
    fn train_batch(&self, index: u64, count: usize) -> anyhow::Result<Vec<Example>>;
    /// A fixed validation set.
    fn validation(&self, count: usize) -> Vec<Example>;
    /// Texts to train the tokenizer on.
    fn corpus(&self) -> Vec<String>;
    /// A summary for the package manifest.
    fn describe(&self) -> serde_json::Value;
}
