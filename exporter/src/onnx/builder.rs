//! A small builder for ONNX graphs, written node by node (opset 17; 23 for a graph with an
//! `Attention` node).
//!
//! A graph is written to a file. With external data, every initializer over
//! [`EXTERNAL_MIN_BYTES`] goes to `<file>.data` the moment it is added (ONNX external
//! data: location, offset, length), so a graph of any size is written holding one tensor
//! at a time, and the `.onnx` file stays small (protobuf files cannot exceed 2 GB).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataLocation, tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// Initializers at least this large go to external data when the graph has it.
pub const EXTERNAL_MIN_BYTES: usize = 1024;

/// Where a graph is written.
#[derive(Debug, Clone)]
pub struct GraphFile {
    pub path: PathBuf,
    /// Weights in `<path>.data` rather than inside the `.onnx` file.
    pub external: bool,
}

impl GraphFile {
    /// The external data file of this graph.
    pub fn data_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".data");
        PathBuf::from(p)
    }
}

/// The open external data file.
struct External {
    /// Its name, relative to the graph (what the initializers record).
    location: String,
    path: PathBuf,
    file: BufWriter<File>,
    offset: u64,
    /// The first write error, reported by `write`.
    error: Option<std::io::Error>,
}

pub const OPSET: i64 = 17;

/// The opset of graphs with an `Attention` node (it was added in 23), and the IR version
/// that goes with it.
pub const ATTENTION_OPSET: i64 = 23;
const ATTENTION_IR: i64 = 11;

/// A dimension of a graph input or output: fixed, or a named symbol such as `S` or `P + S`.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

pub fn sym(s: &str) -> Dim {
    Dim::Sym(s.to_string())
}

pub fn fixed(n: usize) -> Dim {
    Dim::Fixed(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    I64,
}

impl Elem {
    fn data_type(self) -> DataType {
        match self {
            Elem::F32 => DataType::Float,
            Elem::F16 => DataType::Float16,
            Elem::I64 => DataType::Int64,
        }
    }

    fn code(self) -> i32 {
        self.data_type() as i32
    }
}

pub struct Attr(AttributeProto);

pub fn attr_int(name: &str, v: i64) -> Attr {
    Attr(AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    })
}

pub fn attr_to(name: &str, dtype: DataType) -> Attr {
    attr_int(name, dtype as i64)
}

pub fn attr_ints(name: &str, v: &[i64]) -> Attr {
    Attr(AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    })
}

pub fn attr_float(name: &str, v: f32) -> Attr {
    Attr(AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    })
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem.code(),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

pub struct GraphBuilder {
    graph: GraphProto,
    /// Whether a `com.microsoft` operator (MatMulNBits) was used.
    microsoft: bool,
    /// The graph uses an operator of [`ATTENTION_OPSET`].
    attention: bool,
    external: Option<External>,
}

/// The onnxruntime contrib-ops domain.
pub const MS_DOMAIN: &str = "com.microsoft";

impl GraphBuilder {
    /// A graph whose initializers are kept in memory, inside the `.onnx` file.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            microsoft: false,
            attention: false,
            external: None,
        }
    }

    /// A graph to be written to `target`: with external data, its data file is created
    /// now and weights are written to it as they are added.
    pub fn for_file(name: &str, target: &GraphFile) -> Result<Self> {
        let mut g = Self::new(name);
        if target.external {
            let path = target.data_path();
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let location = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has no usable file name", path.display()))?
                .to_string();
            g.external = Some(External {
                location,
                path,
                file: BufWriter::with_capacity(1 << 20, file),
                offset: 0,
                error: None,
            });
        }
        Ok(g)
    }

    /// `x` cast to the element type `to`.
    pub fn cast(&mut self, name: &str, x: &str, to: Elem) -> String {
        self.node("Cast", name, &[x], vec![attr_to("to", to.data_type())])
    }

    /// An initializer of any element type from little-endian bytes.
    pub fn raw(&mut self, name: &str, dims: &[usize], dtype: DataType, raw: Vec<u8>) -> String {
        let mut t = TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype as i32,
            ..Default::default()
        };
        match &mut self.external {
            Some(ext) if raw.len() >= EXTERNAL_MIN_BYTES => {
                if ext.error.is_none()
                    && let Err(e) = ext.file.write_all(&raw)
                {
                    ext.error = Some(e);
                }
                let entry = |key: &str, value: String| StringStringEntryProto {
                    key: key.into(),
                    value,
                };
                t.data_location = Some(DataLocation::External as i32);
                t.external_data = vec![
                    entry("location", ext.location.clone()),
                    entry("offset", ext.offset.to_string()),
                    entry("length", raw.len().to_string()),
                ];
                ext.offset += raw.len() as u64;
            }
            _ => t.raw_data = raw,
        }
        self.graph.initializer.push(t);
        name.to_string()
    }

    /// A node of the `com.microsoft` domain with a single output named `name`.
    pub fn ms_node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.microsoft = true;
        self.push_node(op, MS_DOMAIN, name, inputs, &[name], attrs);
        name.to_string()
    }

    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// An `f32` initializer.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.weight_as(name, dims, data, Elem::F32)
    }

    /// A float initializer stored as `elem` (`F32` or `F16`).
    pub fn weight_as(&mut self, name: &str, dims: &[usize], data: &[f32], elem: Elem) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {name} has {} values for shape {dims:?}",
            data.len()
        );
        let raw = match elem {
            Elem::F16 => data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Elem::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Elem::I64 => panic!("initializer {name}: weights are float"),
        };
        self.raw(name, dims, elem.data_type(), raw)
    }

    /// An `i64` initializer (shapes, axes, indices).
    pub fn ints(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, dims, DataType::Int64, raw)
    }

    /// Adds a node whose single output is named `name` (also the node's name).
    pub fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.node_multi(op, name, inputs, &[name], attrs);
        name.to_string()
    }

    /// An ONNX `Attention` node (opset 23): `[q, k, v, mask, past_k, past_v]` in,
    /// `[y, present_k, present_v]` out; raises the graph's opset to [`ATTENTION_OPSET`].
    pub fn attention(
        &mut self,
        name: &str,
        inputs: &[&str; 6],
        outputs: &[&str; 3],
        attrs: Vec<Attr>,
    ) -> [String; 3] {
        self.attention = true;
        self.push_node("Attention", "", name, inputs, outputs, attrs);
        outputs.map(str::to_string)
    }

    pub fn node_multi(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attr>,
    ) -> Vec<String> {
        self.push_node(op, "", name, inputs, outputs, attrs);
        outputs.iter().map(|s| s.to_string()).collect()
    }

    fn push_node(
        &mut self,
        op: &str,
        domain: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attr>,
    ) {
        self.graph.node.push(NodeProto {
            name: name.into(),
            op_type: op.into(),
            domain: domain.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs.into_iter().map(|a| a.0).collect(),
            ..Default::default()
        });
    }

    /// Finishes the graph and writes it to `path` (its external data, if any, is
    /// complete and flushed first).
    pub fn write(mut self, doc: &str, path: &Path) -> Result<()> {
        if let Some(mut ext) = self.external.take() {
            if let Some(e) = ext.error.take() {
                return Err(e).with_context(|| format!("cannot write {}", ext.path.display()));
            }
            ext.file
                .flush()
                .and_then(|_| ext.file.get_ref().sync_all())
                .with_context(|| format!("cannot write {}", ext.path.display()))?;
        }
        let bytes = encode(&self.finish(doc));
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn finish(self, doc: &str) -> ModelProto {
        let (opset, ir) = if self.attention {
            (ATTENTION_OPSET, ATTENTION_IR)
        } else {
            (OPSET, 8)
        };
        let mut opset_import = vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }];
        if self.microsoft {
            opset_import.push(OperatorSetIdProto {
                domain: MS_DOMAIN.into(),
                version: 1,
            });
        }
        ModelProto {
            ir_version: ir,
            opset_import,
            producer_name: "glimpse-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
