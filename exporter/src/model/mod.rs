//! The Fuyu-style model in burn, for training. [`fuyu`] is the forward pass; [`weights`]
//! names every parameter for export; [`widen`] makes a trained model wider, [`regrid`]
//! moves one to another canvas and [`blend`] mixes two of one shape; [`least_squares`]
//! fits the affine maps that carry a blend's matching heads (see [`crate::refit`]).

pub mod blend;
pub mod contrastive;
pub mod fuyu;
pub mod least_squares;
pub mod regrid;
pub mod weights;
pub mod widen;

pub use fuyu::{Fuyu, Rotary};
