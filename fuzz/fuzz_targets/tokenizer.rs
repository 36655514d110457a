#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        (dir, path)
    })
    .1
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| glimpse_runtime::fuzz::tokenizer(path(), data));
