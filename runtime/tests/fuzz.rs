//! The fuzz targets of `glimpse_runtime::fuzz` on seeded mutations of valid inputs, a
//! bounded number of cases each, on the stable toolchain. A panic fails the test with the
//! case that caused it (its seed and the mutant's bytes, shortened). `cargo fuzz` runs
//! the same targets for longer (see `fuzz/`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use glimpse_runtime::fuzz::{self, Mutator};
use glimpse_runtime::package::{MANIFEST_FILE, Manifest};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `target` on `cases` mutants of the seeds; fails on the first panic.
fn run(name: &str, seeds: &[Vec<u8>], cases: usize, window: Option<usize>, target: impl Fn(&[u8])) {
    let mut m = Mutator::new(0x5eed ^ name.len() as u64);
    for case in 0..cases {
        let input = if case < seeds.len() {
            seeds[case].clone()
        } else if case % 10 == 9 {
            m.bytes(512)
        } else {
            m.mutate(&seeds[case % seeds.len()], window)
        };
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let shown = &input[..input.len().min(300)];
            panic!(
                "{name}: case {case} panicked on {} bytes: {:?}",
                input.len(),
                String::from_utf8_lossy(shown)
            );
        }
    }
    eprintln!("{name}: {cases} cases, no panic");
}

fn example_images() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let png = std::fs::read(root().join("examples/scene-0.png")).unwrap();
    let frame = image::load_from_memory(&png).unwrap().to_rgb8();
    let small = image::imageops::thumbnail(&frame, 40, 30);
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpg)
        .encode_image(&small)
        .unwrap();
    let mut small_png = Vec::new();
    small
        .write_to(
            &mut std::io::Cursor::new(&mut small_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    seeds.push(jpg);
    seeds.push(small_png);
    seeds
}

#[test]
fn fuzz_image_decoding_to_patches() {
    // mutations near the header reach the size and format fields, elsewhere the data
    run(
        "image (header)",
        &example_images(),
        6000,
        Some(64),
        fuzz::image_to_patches,
    );
    run(
        "image (anywhere)",
        &example_images(),
        6000,
        None,
        fuzz::image_to_patches,
    );
}

#[test]
fn fuzz_console_lines_and_commands() {
    let seeds = [
        b"caption\r".to_vec(),
        b"ask what color is the circle?\r\n".to_vec(),
        "h\x08\x7f\x1b[Asnap\x15live\x03next\rstats\r\u{e9}?\r"
            .as_bytes()
            .to_vec(),
        vec![b'x'; 300],
    ];
    run("console (text)", &seeds, 30000, None, fuzz::console_text);
}

#[test]
fn fuzz_json_requests() {
    let seeds = [
        b"{\"id\": 1, \"cmd\": \"ask\", \"question\": \"what color is the circle?\"}\n".to_vec(),
        b"{\"id\": \"a\\\"b\", \"cmd\": \"caption\"}\n{}\n[1]\n".to_vec(),
        format!(
            "{{\"id\": 18446744073709551617, \"cmd\": \"ask\", \"question\": \"{}\"}}\n",
            "x".repeat(5000)
        )
        .into_bytes(),
    ];
    run("console (json)", &seeds, 10000, None, fuzz::console_json);
    run("json request", &seeds, 30000, None, fuzz::json_request);
}

/// A writable copy of the bundled package (graphs of one precision, to keep it small).
fn package_copy(dir: &Path) -> (PathBuf, Vec<u8>) {
    let src = root().join("models/glimpse-default");
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pkg.join(e.file_name())).unwrap();
    }
    let manifest = std::fs::read(pkg.join(MANIFEST_FILE)).unwrap();
    (pkg, manifest)
}

#[test]
fn fuzz_package_manifest_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let (pkg, manifest) = package_copy(dir.path());
    // the manifest: every mutant is opened (and its files hashed when it parses)
    run("manifest", &[manifest], 2000, None, |b| {
        fuzz::package_manifest(&pkg, b)
    });
    let tok = std::fs::read(pkg.join("tokenizer.json")).unwrap();
    let path = dir.path().join("tokenizer.json");
    run("tokenizer", &[tok], 3000, None, |b| {
        fuzz::tokenizer(&path, b)
    });
}

#[test]
fn fuzz_graph_headers() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("models/glimpse-default");
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(src.join(MANIFEST_FILE)).unwrap()).unwrap();
    let seeds = [
        std::fs::read(src.join("vision.q4.onnx")).unwrap(),
        std::fs::read(src.join("heads.onnx")).unwrap(),
    ];
    let path = dir.path().join("graph.onnx");
    // the first kilobyte holds the graph's name, inputs and first nodes
    run("graph header", &seeds, 1000, Some(1024), |b| {
        fuzz::graph(&manifest, &path, b)
    });
}
