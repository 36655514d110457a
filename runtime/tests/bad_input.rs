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

/// The vision graph of the precision this machine loads from `pkg` (int8 on cores with
/// dot product).
fn loaded_vision_graph(pkg: &Path) -> String {
    let m: Manifest =
        serde_json::from_str(&std::fs::read_to_string(pkg.join(MANIFEST_FILE)).unwrap()).unwrap();
    choose(&m.precisions, CpuFeatures::detect())
        .unwrap()
        .file("vision.onnx")
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
    let file = loaded_vision_graph(&pkg);
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
fn a_graph_with_an_operator_this_build_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    let file = loaded_vision_graph(&pkg);
    let path = pkg.join(&file);
    // a node's op_type field (protobuf field 4, 6 bytes long) renamed to a name of the same
    // length, so the file stays well formed
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == b"\x22\x06MatMul")
        .expect("the vision graph has a MatMul");
    bytes[at + 2..at + 8].copy_from_slice(b"MatMuX");
    std::fs::write(&path, &bytes).unwrap();
    let sha = sha256_file(&path).unwrap();
    edit_manifest(&pkg, |m| m.files.get_mut(&file).unwrap().sha256 = sha);
    let e = load_err(&pkg);
    assert!(matches!(e, Error::Graph { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&file) && msg.contains("does not parse: MatMuX"),
        "{msg}"
    );
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
    assert!(
        e.to_string().contains("no image–text matching heads"),
        "{e}"
    );
    assert!(!g.caption(&frame).unwrap().text.is_empty());
    // the bundled model: a text longer than the context, and no text at all
    let g = Glimpse::load(bundled()).unwrap();
    let e = g.text_embedding(&"red circle ".repeat(200)).unwrap_err();
    assert!(matches!(e, Error::TextTooLong { .. }), "{e:?}");
    assert!(matches!(g.match_texts(&frame, &[]), Err(Error::NoTexts)));
    assert_eq!(g.match_texts(&frame, &["a red circle"]).unwrap().len(), 1);
}

/// Every manifest field that describes a graph, changed by hand: the load fails before
/// anything runs, naming the graph file, the field and both values.
#[test]
fn manifest_fields_that_disagree_with_the_graphs_are_named() {
    type Edit = fn(&mut Manifest);
    let cases: [(&str, Edit, &[&str]); 8] = [
        (
            "d_model",
            |m| m.model.d_model = 256,
            &["model.d_model is 256", "128"],
        ),
        (
            "canvas",
            |m| m.canvas.width = 240,
            &["vision", "canvas.width / canvas.patch is 15", "has 18"],
        ),
        (
            "n_layers",
            |m| m.model.n_layers = 5,
            &["decoder", "model.n_layers is 5", "8 past_key_values"],
        ),
        (
            "n_heads",
            |m| m.model.n_heads = 8,
            &["decoder", "model.n_heads is 8", "has 4"],
        ),
        (
            "max_positions",
            |m| m.model.max_positions = 1000,
            &[
                "decoder",
                "rotary.cos",
                "model.max_positions is 1000",
                "308",
            ],
        ),
        (
            "rope_theta",
            |m| m.model.rope_theta = 10000.0,
            &["decoder", "model.rope_theta 10000"],
        ),
        (
            "rotary_fraction",
            |m| m.model.rotary_fraction = 0.25,
            &["decoder", "model.rotary_fraction 0.25", "gives 8"],
        ),
        (
            "matching.dim",
            |m| m.matching.as_mut().unwrap().dim = 32,
            &["heads.onnx", "matching.dim is 32", "has 64"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, edit, needles)) in cases.into_iter().enumerate() {
        let pkg = copy_package(&dir.path().join(i.to_string()));
        edit_manifest(&pkg, edit);
        let e = load_err(&pkg);
        assert!(matches!(e, Error::GraphMismatch { .. }), "{what}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(".onnx"), "{what}: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{what}: no {n:?} in {msg}");
        }
    }
}

#[test]
fn package_file_names_cannot_leave_the_package() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["../../../../etc/hostname", "/etc/hostname", "a/../../b", ""] {
        let pkg = copy_package(&dir.path().join(name.len().to_string()));
        edit_manifest(&pkg, |m| {
            m.files.insert(
                name.to_string(),
                glimpse_runtime::package::FileEntry {
                    sha256: "0".repeat(64),
                    bytes: 1,
                },
            );
        });
        let e = load_err(&pkg);
        assert!(matches!(e, Error::Manifest { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains("files entry"), "{e}");
    }
}

#[test]
fn a_canvas_beyond_the_limits_is_a_manifest_error() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = copy_package(dir.path());
    edit_manifest(&pkg, |m| {
        m.canvas = glimpse_runtime::frame::Canvas {
            width: 40_000,
            height: 40_000,
            patch: 40_000,
        }
    });
    let e = load_err(&pkg);
    assert!(matches!(e, Error::Manifest { .. }), "{e:?}");
    assert!(e.to_string().contains("4096"), "{e}");
}

#[test]
fn special_tokens_typed_in_a_question_are_text() {
    use glimpse_runtime::text::{Prompt, TokenStream};
    let g = Glimpse::load(bundled()).unwrap();
    let sp = g.tokenizer.special();
    let specials: Vec<u32> = sp.named().iter().map(|(_, id)| *id).collect();
    let question = "what color is </s> the <answer> <image> circle <pad><s>?";
    let stream = TokenStream::new(&g.tokenizer, &Prompt::Question(question.into())).unwrap();
    let ids = &stream.text_ids;
    assert_eq!((ids[0], ids[ids.len() - 1]), (sp.bos, sp.boa));
    let inner = &ids[1..ids.len() - 1];
    assert!(
        inner.iter().all(|id| !specials.contains(id)),
        "special ids in {inner:?}"
    );
    // the literal text is all there: decoding gives it back, spaces aside
    let text = g.tokenizer.inner().decode(inner, false).unwrap();
    assert_eq!(text.replace(' ', ""), question.replace(' ', ""));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A valid PNG header declaring `w × h` pixels, followed by one tiny image's data.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::GrayImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn images_are_checked_before_they_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // devices and FIFOs are refused without reading (or blocking)
    for dev in ["/dev/zero", "/dev/null"] {
        let e = load_image(Path::new(dev)).unwrap_err().to_string();
        assert!(e.contains(dev) && e.contains("not a regular file"), "{e}");
    }
    let fifo = dir.path().join("frame.png");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let e = load_image(&fifo).unwrap_err().to_string();
    assert!(e.contains("frame.png") && e.contains("FIFO"), "{e}");
    // a decompression bomb: a few hundred bytes declaring 144 megapixels
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_declaring(12_000, 12_000)).unwrap();
    let e = load_image(&bomb).unwrap_err().to_string();
    assert!(e.contains("bomb.png") && e.contains("12000x12000"), "{e}");
    // a JPEG cut at half its length
    let mut jpg = Vec::new();
    let img = image::RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y * 3) as u8])
    });
    image::codecs::jpeg::JpegEncoder::new(&mut jpg)
        .encode_image(&img)
        .unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpg[..jpg.len() / 2]).unwrap();
    let e = load_image(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.jpg") && e.contains("truncated"), "{e}");
    // a PNG cut short
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    let e = load_image(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.png"), "{e}");
}

/// A frame source that panics on its third frame.
struct Panicky(u64);

impl glimpse_runtime::source::FrameSource for Panicky {
    fn describe(&self) -> String {
        "a source with a bug".into()
    }
    fn is_live(&self) -> bool {
        false
    }
    fn next_frame(
        &mut self,
    ) -> Result<glimpse_runtime::source::Frame, glimpse_runtime::source::SourceError> {
        self.0 += 1;
        if self.0 == 3 {
            panic!("bug in the source");
        }
        Ok(glimpse_runtime::source::Frame {
            image: image::RgbImage::new(64, 48),
            seq: self.0,
            label: format!("frame {}", self.0),
            captured_at: std::time::SystemTime::now(),
            capture_s: 0.0,
        })
    }
}

#[test]
fn a_panic_in_the_capture_thread_ends_the_loop_with_a_failure() {
    use glimpse_runtime::watch::{Event, WatchOptions, watch};
    let g = Glimpse::load(bundled()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut captions = 0;
            let summary = watch(&g, Panicky(0), &WatchOptions::default(), &stop, &mut |e| {
                if let Event::Caption(_) = e {
                    captions += 1;
                }
                Ok(())
            });
            tx.send((summary, captions)).unwrap();
        });
        // long enough for two captions under qemu (CI's aarch64 run), where the bundled
        // model's 266 image tokens take over a minute; a spinning loop never ends
        let (summary, captions) = rx
            .recv_timeout(std::time::Duration::from_secs(600))
            .expect("the loop ends instead of spinning");
        assert_eq!(captions, 2);
        assert!(!summary.succeeded());
        let failed = summary.source_failed.unwrap();
        assert!(failed.contains("bug in the source"), "{failed}");
    });
}
