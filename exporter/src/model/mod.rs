//! The Fuyu-style model in burn, for training. [`fuyu`] is the forward pass; [`weights`]
//! names every parameter for export.

pub mod contrastive;
pub mod fuyu;
pub mod weights;

pub use fuyu::{Fuyu, Rotary};
