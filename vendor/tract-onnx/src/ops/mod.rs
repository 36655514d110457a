use crate::model::{OnnxOpRegister, ParsingContext};
use crate::pb::*;
use tract_hir::internal::*;

mod array;
mod cast;
pub mod cumsum;
mod d2s;
mod einsum;
mod fft;
mod grid_sample;
pub mod logic;
mod math;
mod ml;
pub mod multinomial;
mod nn;
mod non_max_suppression;
mod quant;
mod random;
pub mod rec;
mod resize;
mod s2d;

/// The operators a build without the `all-ops` feature parses: those of the transformer
/// graphs Glimpse's exporter writes (vision, embedding, decoder and heads at every
/// precision), and a few neighbours of theirs.
pub const TRANSFORMER_OPS: &[&str] = &[
    "Add", "Attention", "Cast", "CastLike", "Concat", "Constant", "ConstantOfShape", "Div",
    "DynamicQuantizeLinear", "DequantizeLinear", "Equal", "Erf", "Exp", "Expand", "Flatten",
    "Gather", "Gemm", "Greater", "Identity", "LayerNormalization", "Less", "MatMul",
    "MatMulInteger", "MatMulNBits", "Max", "Min", "Mul", "Neg", "Not", "Pow", "QuantizeLinear",
    "Range", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where",
];

/// Whether this build parses the ONNX operator `name`: every operator with the `all-ops`
/// feature (the default), else those of [`TRANSFORMER_OPS`].
pub const fn registered(name: &str) -> bool {
    if cfg!(feature = "all-ops") {
        return true;
    }
    let mut i = 0;
    while i < TRANSFORMER_OPS.len() {
        if same(TRANSFORMER_OPS[i].as_bytes(), name.as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub fn register_all_ops(reg: &mut OnnxOpRegister) {
    register!(reg, "Constant", konst);
    register!(reg, "Einsum", einsum::einsum);
    register!(reg, "Identity", |_, _| {
        Ok((Box::<tract_hir::ops::identity::Identity>::default(), vec![]))
    });
    register!(reg, "GridSample", grid_sample::grid_sample);
    register!(reg, "Resize", resize::resize);
    register!(reg, "NonMaxSuppression", non_max_suppression::non_max_suppression);
    register!(reg, "Multinomial", multinomial::multinomial);
    array::register_all_ops(reg);
    cast::register_all_ops(reg);
    cumsum::register_all_ops(reg);
    d2s::register_all_ops(reg);
    fft::register_all_ops(reg);
    logic::register_all_ops(reg);
    math::register_all_ops(reg);
    ml::register_all_ops(reg);
    nn::register_all_ops(reg);
    quant::register_all_ops(reg);
    random::register_all_ops(reg);
    rec::register_all_ops(reg);
    s2d::register_all_ops(reg);
}

fn konst(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let value = if let Some(v) = node.get_attr_opt("value")? {
        ctx.load_tensor(v)?
    } else if let Some(i) = node.get_attr_opt::<i64>("value_int")? {
        tensor0(i)
    } else if let Some(v) = node.get_attr_opt::<f32>("value_float")? {
        tensor0(v)
    } else if let Some(ints) = node.get_attr_opt_slice::<i64>("value_ints")? {
        tensor1(ints)
    } else if let Some(floats) = node.get_attr_opt_slice::<f32>("value_floats")? {
        tensor1(floats)
    } else if let Some(s) = node.get_attr_opt::<String>("value_string")? {
        tensor0(s)
    } else if let Some(strings) = node.get_attr_opt_slice::<Vec<u8>>("value_strings")? {
        let strings: Vec<String> =
            strings.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        tensor1(&strings)
    } else {
        bail!("Could not extract value out of Constant node")
    };
    Ok((Box::new(tract_hir::ops::konst::Const::new(value.into_arc_tensor())?), vec![]))
}
