//! The pieces of the `glimpse` command that are more than a call into the library.

pub mod bench;
pub mod duration;
pub mod mqtt;
pub mod serve;
pub mod sources;
pub mod watch;

/// A count given on the command line that must be at least 1 (`--max-tokens`, `--runs`,
/// `--count`, `--baud`).
pub fn positive<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => T::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}
