//! Model packages: a folder with `glimpse.json`, `tokenizer.json` and the ONNX graphs.
//!
//! Loading checks everything it can before any graph is run: the format version, that every
//! listed file exists with the recorded sha256, that the canvas and config are sane.

mod manifest;
mod precision;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use manifest::*;
pub use precision::{CpuFeatures, Precision, choose};

use crate::error::{Error, Result};

/// A package on disk whose manifest has been read and whose files have been verified.
#[derive(Debug, Clone)]
pub struct Package {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The manifest's own consistency: versions, shapes, token ids inside the vocabulary,
/// and every file a precision or the matching heads need listed.
fn check_manifest(manifest: &Manifest) -> std::result::Result<(), String> {
    if manifest.format_version != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not the version this runtime reads ({FORMAT_VERSION})",
            manifest.format_version
        ));
    }
    manifest.model.validate()?;
    manifest.canvas.validate()?;
    manifest.image.validate(&manifest.canvas)?;
    manifest.prompt.validate()?;
    if let Some(m) = &manifest.matching {
        check_file_name(&m.file).map_err(|r| format!("matching.file {:?}: {r}", m.file))?;
    }
    let image_tokens = manifest.image.max_image_tokens(&manifest.canvas);
    if image_tokens >= manifest.model.max_positions {
        return Err(format!(
            "the largest image needs {image_tokens} image tokens but the model's context is {}",
            manifest.model.max_positions
        ));
    }
    for (name, id) in manifest.special_tokens.named() {
        if id as usize >= manifest.model.vocab_size {
            return Err(format!(
                "special token {name} has id {id}, outside the vocabulary of {}",
                manifest.model.vocab_size
            ));
        }
    }
    if manifest.precisions.is_empty() {
        return Err("it lists no precisions".into());
    }
    let graphs = manifest
        .precisions
        .iter()
        .flat_map(|p| [VISION_FILE, EMBEDDING_FILE, DECODER_FILE].map(|g| p.file(g)));
    let heads = manifest.matching.as_ref().map(|m| m.file.clone());
    if let Some(m) = &manifest.matching
        && !(m.logit_scale.is_finite() && m.logit_scale > 0.0 && m.dim > 0)
    {
        return Err(format!(
            "its matching heads have dim {} and logit scale {}",
            m.dim, m.logit_scale
        ));
    }
    for required in std::iter::once(TOKENIZER_FILE.to_string())
        .chain(graphs)
        .chain(heads)
    {
        if !manifest.files.contains_key(&required) {
            return Err(format!("it does not list {required}"));
        }
    }
    Ok(())
}

/// Every file the manifest lists is in `dir` with the size it lists.
fn check_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    for (name, entry) in &manifest.files {
        check_file_name(name).map_err(|reason| Error::Manifest {
            path: dir.join(MANIFEST_FILE),
            reason: format!("files entry {name:?}: {reason}"),
        })?;
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::NotAPackage {
                path: dir.to_path_buf(),
                reason: format!("{name} is listed in the manifest but missing"),
            });
        }
        let bytes = std::fs::metadata(&path)
            .map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?
            .len();
        if bytes != entry.bytes {
            return Err(Error::NotAPackage {
                path: dir.to_path_buf(),
                reason: format!(
                    "{name} has {bytes} bytes but the manifest lists {} (truncated or replaced?)",
                    entry.bytes
                ),
            });
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Package {
    /// Reads and verifies the package in `dir`: its manifest is whole and consistent,
    /// and every file it lists is there with the size it lists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Package> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::NotAPackage {
                path: dir,
                reason: "no such directory".into(),
            });
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            return Err(Error::NotAPackage {
                path: dir,
                reason: format!("it has no {MANIFEST_FILE}"),
            });
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::Io {
            path: manifest_path.clone(),
            source: e,
        })?;
        let bad = |reason: String| Error::Manifest {
            path: manifest_path.clone(),
            reason,
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        check_manifest(&manifest).map_err(bad)?;
        check_files(&dir, &manifest)?;
        Ok(Package { dir, manifest })
    }

    /// Checks the SHA-256 of the files a run at `precision` reads (its graphs with their
    /// external data, the tokenizer, the matching heads): the other precisions' files,
    /// gigabytes in a large package, are not read.
    pub fn verify(&self, precision: Precision) -> Result<()> {
        self.verify_files(&self.files_for(precision))
    }

    /// Checks the SHA-256 of the listed files `names`.
    pub fn verify_files(&self, names: &[String]) -> Result<()> {
        for name in names {
            let entry = &self.manifest.files[name];
            let path = self.dir.join(name);
            let actual = sha256_file(&path)?;
            if actual != entry.sha256 {
                return Err(Error::Checksum {
                    path,
                    expected: entry.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// The listed files a run at `precision` reads.
    pub fn files_for(&self, precision: Precision) -> Vec<String> {
        let mut names = vec![TOKENIZER_FILE.to_string()];
        for g in [VISION_FILE, EMBEDDING_FILE, DECODER_FILE] {
            let graph = precision.file(g);
            names.push(external_data_file(&graph));
            names.push(graph);
        }
        if let Some(m) = &self.manifest.matching {
            names.push(m.file.clone());
        }
        names.retain(|n| self.manifest.files.contains_key(n));
        names
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The file holding a graph's weights when they are stored as ONNX external data.
pub fn external_data_file(graph: &str) -> String {
    format!("{graph}{EXTERNAL_DATA_SUFFIX}")
}

/// Whether the listed file `name` holds a graph's external data (weights).
pub fn is_external_data(name: &str) -> bool {
    name.ends_with(EXTERNAL_DATA_SUFFIX)
}

/// What a graph's file name is followed by to name its external data.
const EXTERNAL_DATA_SUFFIX: &str = ".data";

/// A package file name must stay inside the package: relative, no `..`, no root, no
/// drive prefix, not empty.
pub fn check_file_name(name: &str) -> std::result::Result<(), String> {
    use std::path::Component;
    let path = Path::new(name);
    if name.is_empty() {
        return Err("an empty file name".into());
    }
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err("a file name must be a plain path inside the package directory (no `..`, no leading `/`)".into())
    }
}

/// The package bundled with the source tree, used when no `--model` is given.
pub fn default_package_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GLIMPSE_MODEL") {
        return PathBuf::from(dir);
    }
    // Next to the binary (installed layout: bin/glimpse, share/glimpse/model)...
    if let Ok(exe) = std::env::current_exe() {
        for rel in ["../share/glimpse/model", "model"] {
            if let Some(dir) = exe.parent().map(|d| d.join(rel))
                && dir.join(MANIFEST_FILE).is_file()
            {
                return dir;
            }
        }
    }
    // ...else the repository's bundled model.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/glimpse-default")
}
