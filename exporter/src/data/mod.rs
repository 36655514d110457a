//! Training examples: from the synthetic scene generator or a folder of the user's images,
//! and batches of them as the model reads them.

mod batch;
mod folder;
mod synthetic;

use std::sync::Arc;

use image::RgbImage;

use glimpse_runtime::scene::QuestionKind;

pub use batch::{Batch, BatchBuilder};
pub use folder::{FolderData, load_folder};
pub use synthetic::{SyntheticData, text_corpus, write_scenes};

/// One (frame, prompt, answer) example. An empty prompt asks for the caption.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: Arc<RgbImage>,
    pub prompt: String,
    pub answer: String,
    /// The question's kind (synthetic QA only), for per-kind evaluation.
    pub kind: Option<QuestionKind>,
}

/// Where training examples come from.
pub trait ExampleSource: Send {
    /// Examples for training batch `index`, `count` of them, deterministic in `index`.
    fn train_batch(&self, index: u64, count: usize) -> Vec<Example>;
    /// A fixed validation set.
    fn validation(&self, count: usize) -> Vec<Example>;
    /// Texts to train the tokenizer on.
    fn corpus(&self) -> Vec<String>;
    /// A summary for the package manifest.
    fn describe(&self) -> serde_json::Value;
}
