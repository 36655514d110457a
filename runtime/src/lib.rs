//! Glimpse on the board: a Fuyu-style vision-language model run by tract.
//!
//! The data flows frame → patches ([`frame`]) → embeddings and decoder ([`model`]) →
//! tokens ([`generate`]) → text ([`text`]). [`Glimpse`] ties them together:
//!
//! ```no_run
//! let glimpse = glimpse_runtime::Glimpse::load("models/glimpse-default")?;
//! let frame = glimpse_runtime::frame::load_image("examples/scene-1.png".as_ref())?;
//! println!("{}", glimpse.caption(&frame)?.text);
//! println!("{}", glimpse.ask(&frame, "how many objects are there?")?.text);
//! # Ok::<(), glimpse_runtime::Error>(())
//! ```

#![forbid(unsafe_code)]

/// A line to stderr, for people. Unlike `eprintln!`, a stderr that is gone (a closed
/// pipe) is ignored instead of panicking: messages are best effort, results go to stdout
/// and are checked.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod bench;
pub mod console;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod generate;
pub mod matching;
pub mod model;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod package;
pub mod pipeline;
pub mod scene;
pub mod source;
pub mod text;
pub mod views;
pub mod watch;

pub use error::{Error, Result};
pub use generate::Stop;
pub use matching::MatchScore;
pub use model::ModelConfig;
pub use pipeline::{Answer, Glimpse, ImageContext, Timings};
