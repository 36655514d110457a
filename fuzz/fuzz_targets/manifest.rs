#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// A copy of the bundled package whose manifest each input replaces.
fn package() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        std::fs::create_dir(&pkg).unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/glimpse-default");
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), pkg.join(e.file_name())).unwrap();
        }
        (dir, pkg)
    })
    .1
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| glimpse_runtime::fuzz::package_manifest(package(), data));
