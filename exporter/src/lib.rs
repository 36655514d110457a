//! Glimpse's exporter: trains the model with burn, trains its tokenizer, writes ONNX model
//! packages op by op from the weights, imports Hugging Face Fuyu checkpoints, and evaluates
//! packages with the runtime.

#![forbid(unsafe_code)]

pub use burn;

pub mod compare;
pub mod data;
pub mod eval;
pub mod hf;
pub mod model;
pub mod onnx;
pub mod package;
pub mod progress;
pub mod refit;
pub mod report;
pub mod tokenizer;
pub mod train;
pub mod unpack;
