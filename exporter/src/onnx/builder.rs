//! A small builder for ONNX graphs, written node by node (opset 17).

use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};

pub const OPSET: i64 = 17;

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
}

/// The onnxruntime contrib-ops domain.
pub const MS_DOMAIN: &str = "com.microsoft";

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            microsoft: false,
        }
    }

    /// `x` cast to the element type `to`.
    pub fn cast(&mut self, name: &str, x: &str, to: Elem) -> String {
        self.node("Cast", name, &[x], vec![attr_to("to", to.data_type())])
    }

    /// An initializer of any element type from little-endian bytes.
    pub fn raw(&mut self, name: &str, dims: &[usize], dtype: DataType, raw: Vec<u8>) -> String {
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype as i32,
            raw_data: raw,
            ..Default::default()
        });
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

    pub fn finish(self, doc: &str) -> ModelProto {
        let mut opset_import = vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }];
        if self.microsoft {
            opset_import.push(OperatorSetIdProto {
                domain: MS_DOMAIN.into(),
                version: 1,
            });
        }
        ModelProto {
            ir_version: 8,
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
