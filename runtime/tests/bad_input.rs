//! Bad input gets a clear error naming the problem and the file, never a panic.

use std::path::{Path, PathBuf};

use glimpse_runtime::frame::{decode_image, load_image};
use glimpse_runtime::package::{CpuFeatures, MANIFEST_FILE, Manifest, choose, sha256_file};
use glimpse_runtime::{Error, Glimpse};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/glimpse-default")
}

fn copy_package(to: &Path) -> PathBuf {
    let dst = to.join("pkg");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(bundled()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn edit_manifest(pkg: &Path, f: impl FnOnce(&mut Manifest)) {
    let path = pkg.join(MANIFEST_FILE);
    let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> Error {
    match Glimpse::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn corrupt_and_missing_images_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage that is no image").unwrap();
    let e = load_image(&bad).unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert!(e.to_string().contains("broken.png"), "{e}");
    let e = load_image(&dir.path().join("nope.jpg")).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("nope.jpg"),
        "{e}"
    );
    assert!(decode_image(&[]).is_err());
    // a truncated JPEG
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpg)
        .encode_image(&image::RgbImage::new(32, 32))
        .unwrap();
    assert!(decode_image(&jpg[..jpg.len() / 3]).is_err());
}

#[test]
fn a_directory_that_is_not_a_package() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::NotAPackage { .. }), "{e:?}");
    assert!(e.to_string().contains("glimpse.json"), "{e}");
    let e = load_err(&dir.path().join("missing"));
    assert!(e.to_string().contains("no such directory"), "{e}");
    std::fs::write(dir.path().join(MANIFEST_FILE), "{ not json").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Manifest { .. }), "{e:?}");
}

#[test]
fn a_file_whose_checksum_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    let path = pkg.join("decoder.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let e = load_err(&pkg);
    assert!(matches!(e, Error::Checksum { .. }), "{e:?}");
    assert!(e.to_string().contains("decoder.onnx"), "{e}");
}

#[test]
fn a_truncated_graph_with_a_matching_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    // the vision graph of the precision this machine loads (int8 on cores with dot product)
    let m: Manifest =
        serde_json::from_str(&std::fs::read_to_string(pkg.join(MANIFEST_FILE)).unwrap()).unwrap();
    let precision = choose(&m.precisions, CpuFeatures::detect()).unwrap();
    let file = precision.file("vision.onnx");
    let path = pkg.join(&file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let sha = sha256_file(&path).unwrap();
    edit_manifest(&pkg, |m| {
        let e = m.files.get_mut(&file).unwrap();
        e.sha256 = sha;
        e.bytes /= 2;
    });
    let e = load_err(&pkg);
    assert!(matches!(e, Error::Graph { .. }), "{e:?}");
    assert!(e.to_string().contains(&file), "{e}");
}

#[test]
fn a_manifest_whose_vocabulary_disagrees_with_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    edit_manifest(&pkg, |m| m.model.vocab_size += 7);
    let e = load_err(&pkg);
    assert!(matches!(e, Error::VocabMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

#[test]
fn a_missing_listed_file_and_a_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    std::fs::remove_file(pkg.join("embedding.onnx")).unwrap();
    let e = load_err(&pkg);
    assert!(e.to_string().contains("embedding.onnx"), "{e}");
    let pkg2 = copy_package(&dir.path().join("b"));
    edit_manifest(&pkg2, |m| m.format_version = 99);
    let e = load_err(&pkg2);
    assert!(e.to_string().contains("format version 99"), "{e}");
}

#[test]
fn a_prompt_longer_than_the_context() {
    let g = Glimpse::load(bundled()).unwrap();
    let frame = image::RgbImage::new(64, 48);
    let before = g.caption(&frame).unwrap();
    let question = "is there a red circle ".repeat(60);
    let e = g.ask(&frame, &question).unwrap_err();
    assert!(matches!(e, Error::PromptTooLong { .. }), "{e:?}");
    assert!(e.to_string().contains("prompt too long"), "{e}");
    // and the model keeps serving afterwards, unchanged
    assert_eq!(g.caption(&frame).unwrap().tokens, before.tokens);
}

#[test]
fn matching_without_heads_too_long_texts_and_no_texts() {
    let dir = tempfile::tempdir().unwrap();
    // a manifest that promises heads whose file is not listed
    let pkg = copy_package(dir.path());
    edit_manifest(&pkg, |m| {
        m.files.remove("heads.onnx");
    });
    let e = load_err(&pkg);
    assert!(e.to_string().contains("heads.onnx"), "{e}");
    // a package without matching: a clear error, and captioning still works
    let pkg2 = copy_package(&dir.path().join("b"));
    edit_manifest(&pkg2, |m| {
        m.matching = None;
        m.files.remove("heads.onnx");
    });
    let g = Glimpse::load(&pkg2).unwrap();
    let frame = image::RgbImage::new(64, 48);
    let e = g.match_texts(&frame, &["a red circle"]).unwrap_err();
    assert!(matches!(e, Error::NoMatching { .. }), "{e:?}");
    assert!(e.to_string().contains("without image–text matching"), "{e}");
    assert!(!g.caption(&frame).unwrap().text.is_empty());
    // the bundled model: a text longer than the context, and no text at all
    let g = Glimpse::load(bundled()).unwrap();
    let e = g.text_embedding(&"red circle ".repeat(80)).unwrap_err();
    assert!(matches!(e, Error::TextTooLong { .. }), "{e:?}");
    assert!(matches!(g.match_texts(&frame, &[]), Err(Error::NoTexts)));
    assert_eq!(g.match_texts(&frame, &["a red circle"]).unwrap().len(), 1);
}
