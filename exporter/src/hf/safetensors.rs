//! A Hugging Face checkpoint's weights: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists. Only headers are read when it is opened; each
//! tensor is read from its file when asked for (one tensor in memory at a time) and
//! converted to `f32` from `F32`, `F16` or `BF16`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::weights::Array;

pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    /// Any other element type, by its safetensors name.
    Other(&'static str),
}

impl Dtype {
    fn parse(s: &str) -> Dtype {
        match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::Bf16,
            "F64" => Dtype::Other("F64"),
            "I64" => Dtype::Other("I64"),
            "I32" => Dtype::Other("I32"),
            "I16" => Dtype::Other("I16"),
            "I8" => Dtype::Other("I8"),
            "U8" => Dtype::Other("U8"),
            "BOOL" => Dtype::Other("BOOL"),
            _ => Dtype::Other("an unknown type"),
        }
    }

    /// Bytes per element, for the types that can be read.
    fn size(self) -> Option<u64> {
        match self {
            Dtype::F32 => Some(4),
            Dtype::F16 | Dtype::Bf16 => Some(2),
            Dtype::Other("F64" | "I64") => Some(8),
            Dtype::Other("I32") => Some(4),
            Dtype::Other("I16") => Some(2),
            Dtype::Other("I8" | "U8" | "BOOL") => Some(1),
            Dtype::Other(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
            Dtype::Other(n) => n,
        }
    }
}

/// Where one tensor lies.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub file: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the file (the header included in the offset).
    pub start: u64,
    pub end: u64,
}

pub struct Checkpoint {
    pub dir: PathBuf,
    tensors: BTreeMap<String, TensorInfo>,
    /// Bytes of all weight files.
    pub bytes: u64,
}

impl Checkpoint {
    /// Reads the headers of the checkpoint in `dir`, checking that every tensor lies
    /// inside its file and that the index's files and tensors exist.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index = dir.join(INDEX_FILE);
        let single = dir.join(SINGLE_FILE);
        let mut tensors = BTreeMap::new();
        let mut bytes = 0;
        if index.is_file() {
            let text = std::fs::read_to_string(&index)
                .with_context(|| format!("cannot read {}", index.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", index.display()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .with_context(|| format!("{} has no weight_map object", index.display()))?;
            let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, file) in map {
                let file = file.as_str().with_context(|| {
                    format!(
                        "{}: weight_map entry {name} is not a file name",
                        index.display()
                    )
                })?;
                glimpse_runtime::package::check_file_name(file).map_err(|r| {
                    anyhow::anyhow!(
                        "{}: weight_map entry {name}: {file:?}: {r}",
                        index.display()
                    )
                })?;
                by_file
                    .entry(file.to_string())
                    .or_default()
                    .push(name.clone());
            }
            for (file, names) in by_file {
                let path = dir.join(&file);
                if !path.is_file() {
                    bail!(
                        "{} is missing: {} places {} tensors there (the first: {})",
                        path.display(),
                        INDEX_FILE,
                        names.len(),
                        names[0]
                    );
                }
                let (header, len) = read_header(&path)?;
                bytes += len;
                for name in names {
                    let info = header.get(&name).with_context(|| {
                        format!(
                            "{} has no tensor {name}, although {INDEX_FILE} places it there",
                            path.display()
                        )
                    })?;
                    tensors.insert(name, info.clone());
                }
            }
        } else if single.is_file() {
            let (header, len) = read_header(&single)?;
            bytes = len;
            tensors = header;
        } else {
            bail!(
                "{} has no {SINGLE_FILE} and no {INDEX_FILE}: not a Hugging Face checkpoint saved with save_pretrained (safetensors)",
                dir.display()
            );
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            tensors,
            bytes,
        })
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|k| k.as_str())
    }

    /// The whole tensor `name` as `f32`.
    pub fn read(&self, name: &str) -> Result<Array> {
        let info = self
            .info(name)
            .with_context(|| format!("the checkpoint has no tensor {name}"))?;
        let rows = info.shape.first().copied().unwrap_or(1);
        self.read_rows(name, 0..rows)
    }

    /// Rows `rows` (along the first axis) of tensor `name` as `f32`: one embedding row
    /// is read without reading the table.
    pub fn read_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Array> {
        let info = self
            .info(name)
            .with_context(|| format!("the checkpoint has no tensor {name}"))?;
        let size = match info.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::Bf16 => info.dtype.size().unwrap_or(4),
            other => bail!(
                "{}: tensor {name} is {}; only F32, F16 and BF16 weights can be imported",
                info.file.display(),
                other.name()
            ),
        };
        let row_len: usize = info.shape.iter().skip(1).product();
        let all_rows = info.shape.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > all_rows {
            bail!(
                "{}: tensor {name} has {all_rows} rows, rows {rows:?} asked for",
                info.file.display()
            );
        }
        let start = info.start + (rows.start * row_len) as u64 * size;
        let n = (rows.end - rows.start) * row_len;
        let mut raw = vec![0u8; n * size as usize];
        let file = File::open(&info.file)
            .with_context(|| format!("cannot open {}", info.file.display()))?;
        file.read_exact_at(&mut raw, start)
            .with_context(|| format!("{}: cannot read tensor {name}", info.file.display()))?;
        let data = match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        let mut dims = info.shape.clone();
        if dims.is_empty() {
            dims.push(1);
        }
        dims[0] = rows.end - rows.start;
        Ok(Array { dims, data })
    }
}

/// The tensors listed in a safetensors file's header, checked to lie inside the file.
/// Returns them with the file's length.
fn read_header(path: &Path) -> Result<(BTreeMap<String, TensorInfo>, u64)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bad = |reason: String| {
        anyhow::anyhow!(
            "{} is not a valid safetensors file: {reason}",
            path.display()
        )
    };
    if len < 8 {
        return Err(bad(format!(
            "it has {len} bytes, less than its 8-byte header length"
        )));
    }
    let mut n = [0u8; 8];
    file.read_exact_at(&mut n, 0)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > len - 8 {
        return Err(bad(format!(
            "its header claims {n} bytes, but the file has {len} (truncated?)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact_at(&mut header, 8)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("its header is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("its header is not a JSON object".into()))?;
    let data_start = 8 + n;
    let mut out = BTreeMap::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let info = tensor_info(path, name, t, data_start, len).map_err(bad)?;
        out.insert(name.clone(), info);
    }
    Ok((out, len))
}

/// One tensor's entry `t` of the header of `path`, whose data start at `data_start` of
/// its `len` bytes: dtype, shape and byte span, checked against each other and the file.
fn tensor_info(
    path: &Path,
    name: &str,
    t: &serde_json::Value,
    data_start: u64,
    len: u64,
) -> std::result::Result<TensorInfo, String> {
    let dtype = t
        .get("dtype")
        .and_then(|d| d.as_str())
        .map(Dtype::parse)
        .ok_or_else(|| format!("tensor {name} has no dtype"))?;
    let shape: Vec<usize> = t
        .get("shape")
        .and_then(|s| s.as_array())
        .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or_else(|| format!("tensor {name} has no shape"))?;
    let offsets: Vec<u64> = t
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .and_then(|s| s.iter().map(|d| d.as_u64()).collect())
        .ok_or_else(|| format!("tensor {name} has no data_offsets"))?;
    let [begin, end] = offsets[..] else {
        return Err(format!(
            "tensor {name} has {} data offsets, not 2",
            offsets.len()
        ));
    };
    let count = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .ok_or_else(|| format!("tensor {name}'s shape {shape:?} overflows"))?;
    if let Some(size) = dtype.size()
        && (end < begin || end - begin != count.saturating_mul(size))
    {
        return Err(format!(
            "tensor {name} ({} {shape:?}) spans bytes {begin}..{end}, not {} bytes",
            dtype.name(),
            count.saturating_mul(size)
        ));
    }
    if data_start + end > len {
        return Err(format!(
            "tensor {name} ends at byte {}, but the file has {len} bytes (truncated?)",
            data_start + end
        ));
    }
    Ok(TensorInfo {
        file: path.to_path_buf(),
        dtype,
        shape,
        start: data_start + begin,
        end: data_start + end,
    })
}

/// Writes a safetensors file as `save_pretrained` does: `tensors` (name and shape) stored
/// as `dtype` (F32 or BF16), the values of tensor `i` coming from `values(i)` one tensor
/// at a time, so a file of any size is written holding one tensor. Used for random-weight
/// checkpoints and in tests.
pub fn write(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    dtype: Dtype,
    mut values: impl FnMut(usize) -> Result<Vec<f32>>,
) -> Result<()> {
    use std::io::Write;
    let size = match dtype {
        Dtype::F32 => 4,
        Dtype::Bf16 => 2,
        other => bail!("cannot write {} tensors", other.name()),
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * size;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let err = || format!("cannot write {}", path.display());
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    f.write_all(&(h.len() as u64).to_le_bytes())
        .with_context(err)?;
    f.write_all(&h).with_context(err)?;
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let data = values(i)?;
        if data.len() != shape.iter().product::<usize>() {
            bail!("tensor {name}: {} values for shape {shape:?}", data.len());
        }
        let bytes: Vec<u8> = match dtype {
            Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => data
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        f.write_all(&bytes).with_context(err)?;
    }
    f.flush().with_context(err)
}
