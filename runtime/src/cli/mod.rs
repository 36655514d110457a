//! The pieces of the `glimpse` command that are more than a call into the library.

pub mod duration;
pub mod serve;
pub mod sources;
pub mod watch;
