//! Errors a user can meet, each naming the file or input at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable image: {reason}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "image".into()))]
    Image {
        path: Option<PathBuf>,
        reason: String,
    },
    #[error("{}: not a Glimpse model package: {reason}", path.display())]
    NotAPackage { path: PathBuf, reason: String },
    #[error("{}: invalid manifest: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "{}: checksum mismatch (manifest says sha256 {expected}, file has {actual}); the package is corrupt or was modified",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: cannot load tokenizer: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    #[error(
        "{}: tokenizer has {tokenizer} tokens but the manifest's model has a vocabulary of {manifest}",
        path.display()
    )]
    VocabMismatch {
        path: PathBuf,
        manifest: usize,
        tokenizer: usize,
    },
    #[error("{}: cannot load model graph: {reason}", path.display())]
    Graph { path: PathBuf, reason: String },
    #[error("{}: the graph does not match the package's glimpse.json: {reason}", path.display())]
    GraphMismatch { path: PathBuf, reason: String },
    #[error(
        "prompt too long: image and prompt take {tokens} tokens, the model's context is {limit} (leave room for at least one answer token)"
    )]
    PromptTooLong { tokens: usize, limit: usize },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error(
        "{}: this package has no image–text matching heads, so it cannot match or trigger \
         (imported Fuyu checkpoints have none; Glimpse's own models have them when trained \
         with --contrastive)",
        path.display()
    )]
    NoMatching { path: PathBuf },
    #[error("text too long to match: {tokens} tokens, the model's context is {limit}")]
    TextTooLong { tokens: usize, limit: usize },
    #[error("nothing to match against: give at least one text")]
    NoTexts,
    /// A setting the package cannot take (the message names it).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn inference(e: impl std::fmt::Display) -> Self {
        Error::Inference(format!("{e:#}"))
    }
}
