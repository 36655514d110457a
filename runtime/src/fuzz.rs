//! Fuzz targets: every path fed by a user or a device, as a function of arbitrary bytes
//! that must return (an error is fine) and never panic. The test suite runs them on
//! seeded mutations of valid inputs ([`Mutator`], a bounded number of cases, stable
//! toolchain); `fuzz/` runs the same functions under `cargo fuzz` for as long as wanted.

use std::path::Path;

use crate::console::{Input, JSON_LINE_MAX, LINE_MAX, LineEditor, json, parse};
use crate::frame::{Canvas, decode_image};
use crate::package::{MANIFEST_FILE, Manifest, Package, SpecialTokens};
use crate::scene::Rng;
use crate::text::TextTokenizer;

/// The bundled model's canvas: what decoded images are cut for.
const CANVAS: Canvas = Canvas {
    width: 192,
    height: 144,
    patch: 24,
};

/// Image bytes → frame → patches. Whatever decodes must cut into the canvas's patches.
pub fn image_to_patches(bytes: &[u8]) {
    if let Ok(frame) = decode_image(bytes) {
        let p = CANVAS.patches(&frame);
        assert_eq!(p.data.len(), p.rows * p.cols * p.dim);
        assert!(p.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

/// Bytes on a serial line → lines → commands, as a person's terminal sends them.
pub fn console_text(bytes: &[u8]) {
    let mut editor = LineEditor::<LINE_MAX>::default();
    let mut echo = Vec::new();
    for &b in bytes {
        if let Some(Input::Line(line)) = editor.feed(b, &mut echo) {
            assert!(line.len() <= LINE_MAX);
            let _ = parse(&line);
        }
        echo.clear();
    }
}

/// Bytes on a line in JSON mode → requests; every reply is one valid JSON line that
/// carries the request's id.
pub fn console_json(bytes: &[u8]) {
    let mut editor = LineEditor::<JSON_LINE_MAX>::default();
    let mut echo = Vec::new();
    for &b in bytes {
        let id = match editor.feed(b, &mut echo) {
            Some(Input::Line(line)) => match json::parse_request(&line) {
                Ok(r) => r.id,
                Err(e) => e.id,
            },
            Some(Input::Overlong(head)) => json::leading_id(&head),
            _ => None,
        };
        if let Some(id) = id {
            let reply = json::reply_line(Some(&id), &json::error("x"));
            assert!(!reply.contains('\n'), "{reply}");
            let v: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
            assert_eq!(v.get("error").and_then(|e| e.as_str()), Some("x"));
        }
    }
}

/// A JSON request line on its own.
pub fn json_request(bytes: &[u8]) {
    let line = String::from_utf8_lossy(bytes);
    let id = match json::parse_request(&line) {
        Ok(r) => r.id,
        Err(e) => e.id,
    };
    let _ = json::leading_id(&line);
    if let Some(id) = id {
        let reply = json::reply_line(Some(&id), &serde_json::json!({"ok": true}));
        assert!(
            serde_json::from_str::<serde_json::Value>(&reply).is_ok(),
            "{reply}"
        );
    }
}

/// `bytes` as the manifest of the package in `dir` (a writable copy of a package): it
/// opens or fails with an error.
pub fn package_manifest(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join(MANIFEST_FILE), bytes).expect("the fuzz package is writable");
    let _ = Package::open(dir);
}

/// `bytes` as a package's `tokenizer.json` (written to `path`), checked against the
/// bundled model's vocabulary and special tokens.
pub fn tokenizer(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("the fuzz file is writable");
    let special = SpecialTokens {
        pad: 0,
        bos: 1,
        eos: 2,
        boa: 3,
        newline: 4,
        image: 5,
    };
    if let Ok(t) = TextTokenizer::load(path, 392, special, &Default::default()) {
        let _ = t.encode("what color is the </s> circle?");
    }
}

/// `bytes` as a package's graph (written to `path`): loaded as the vision graph and as
/// the decoder and checked against `manifest`, or refused with an error.
pub fn graph(manifest: &Manifest, path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("the fuzz file is writable");
    let m = manifest;
    let _ = crate::model::VisionGraph::load(path, &m.canvas, &m.image, m.model.d_model);
    let _ = crate::model::DecoderGraph::load(path, &m.model);
}

/// Seeded mutations of valid inputs: bit flips, byte changes, insertions, deletions,
/// truncations, repeated chunks and interesting values (0, 0xff, large numbers, quotes).
pub struct Mutator {
    rng: Rng,
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"18446744073709551616",
    b"1e308",
    b"NaN",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"null",
    b"\x00",
    b"\xff\xff\xff\xff",
    b"\r\n",
    b"</s>",
    b"../",
];

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: Rng::new(seed),
        }
    }

    /// A mutant of `seed`: one to eight edits, each limited to the first `window` bytes
    /// when given (to reach a format's header rather than its bulk).
    pub fn mutate(&mut self, seed: &[u8], window: Option<usize>) -> Vec<u8> {
        let mut v = seed.to_vec();
        let edits = 1 + self.rng.below(8);
        for _ in 0..edits {
            let span = window.unwrap_or(v.len()).min(v.len()).max(1);
            let at = self.rng.below(span);
            let last = v.len().saturating_sub(1);
            match self.rng.below(8) {
                0 if !v.is_empty() => v[at.min(last)] ^= 1 << self.rng.below(8),
                1 if !v.is_empty() => v[at.min(last)] = self.rng.next_u64() as u8,
                2 => v.insert(at.min(v.len()), self.rng.next_u64() as u8),
                3 if !v.is_empty() => {
                    let end = (at + 1 + self.rng.below(16)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                4 => v.truncate(at),
                5 if !v.is_empty() => {
                    let start = at.min(v.len() - 1);
                    let end = (start + 1 + self.rng.below(64)).min(v.len());
                    let chunk = v[start..end].to_vec();
                    for _ in 0..1 + self.rng.below(4) {
                        v.splice(start..start, chunk.iter().copied());
                    }
                }
                _ => {
                    let value = self.rng.pick(INTERESTING);
                    let at = at.min(v.len());
                    v.splice(at..at, value.iter().copied());
                }
            }
        }
        v
    }

    /// Arbitrary bytes, `len` of them at most.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let n = self.rng.below(len + 1);
        (0..n).map(|_| self.rng.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_differ_and_are_reproducible() {
        let seed = b"{\"id\": 1, \"cmd\": \"caption\"}";
        let a: Vec<_> = (0..20)
            .map(|_| Mutator::new(3).mutate(seed, None))
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed, same mutant");
        let mut m = Mutator::new(3);
        let distinct: std::collections::BTreeSet<_> =
            (0..50).map(|_| m.mutate(seed, None)).collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }
}
