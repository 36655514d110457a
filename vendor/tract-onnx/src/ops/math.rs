use crate::model::OnnxOpRegister;
use crate::model::ParsingContext;
use crate::pb::*;
use tract_hir::internal::*;
use tract_hir::ops;
use tract_hir::ops::binary::Nary;

mod clip;
mod gemm;
mod mat_mul_integer;
mod pow;
mod rem;

pub fn register_all_ops(reg: &mut OnnxOpRegister) {
    register!(reg, "Add", |_, _| Ok((ops::math::Add.into_hir(), vec![])));
    register!(reg, "Sub", |_, _| Ok((ops::math::Sub.into_hir(), vec![])));
    register!(reg, "Mul", |_, _| Ok((ops::math::Mul.into_hir(), vec![])));
    register!(reg, "Div", |_, _| Ok((ops::math::Div.into_hir(), vec![])));
    register!(reg, "Mod", rem::rem);

    register!(reg, "BitShift", bitshift);
    register!(reg, "BitwiseAnd", |_, _| Ok((ops::logic::BitAnd.into_hir(), vec![])));
    register!(reg, "BitwiseOr", |_, _| Ok((ops::logic::BitOr.into_hir(), vec![])));
    register!(reg, "BitwiseXor", |_, _| Ok((ops::logic::BitXor.into_hir(), vec![])));
    register!(reg, "BitwiseNot", |_, _| Ok((ops::logic::bitnot().into_hir(), vec![])));

    register!(reg, "Sum", |_, _| Ok((Box::new(Nary(Box::new(ops::math::Add), false)), vec![])));
    register!(reg, "Max", |_, _| Ok((Box::new(Nary(Box::new(ops::math::Max), false)), vec![])));
    register!(reg, "Min", |_, _| Ok((Box::new(Nary(Box::new(ops::math::Min), false)), vec![])));
    register!(reg, "Mean", |_, _| Ok((Box::new(Nary(Box::new(ops::math::Add), true)), vec![])));

    register!(reg, "Abs", |_, _| Ok((ops::math::abs().into_hir(), vec![])));
    register!(reg, "Ceil", |_, _| Ok((ops::math::ceil().into_hir(), vec![])));
    register!(reg, "Floor", |_, _| Ok((ops::math::floor().into_hir(), vec![])));
    register!(reg, "Round", |_, _| Ok((ops::math::round_half_to_even().into_hir(), vec![])));
    register!(reg, "Clip", clip::clip);

    register!(reg, "Cos", |_, _| Ok((ops::math::cos().into_hir(), vec![])));
    register!(reg, "Sin", |_, _| Ok((ops::math::sin().into_hir(), vec![])));
    register!(reg, "Tan", |_, _| Ok((ops::math::tan().into_hir(), vec![])));
    register!(reg, "Acos", |_, _| Ok((ops::math::acos().into_hir(), vec![])));
    register!(reg, "Asin", |_, _| Ok((ops::math::asin().into_hir(), vec![])));
    register!(reg, "Atan", |_, _| Ok((ops::math::atan().into_hir(), vec![])));

    register!(reg, "Cosh", |_, _| Ok((ops::math::cosh().into_hir(), vec![])));
    register!(reg, "Sinh", |_, _| Ok((ops::math::sinh().into_hir(), vec![])));
    register!(reg, "Tanh", |_, _| Ok((ops::math::tanh().into_hir(), vec![])));
    register!(reg, "Acosh", |_, _| Ok((ops::math::acosh().into_hir(), vec![])));
    register!(reg, "Asinh", |_, _| Ok((ops::math::asinh().into_hir(), vec![])));
    register!(reg, "Atanh", |_, _| Ok((ops::math::atanh().into_hir(), vec![])));

    register!(reg, "Erf", |_, _| Ok((ops::math::erf().into_hir(), vec![])));
    register!(reg, "Exp", |_, _| Ok((ops::math::exp().into_hir(), vec![])));
    register!(reg, "Log", |_, _| Ok((ops::math::ln().into_hir(), vec![])));
    register!(reg, "Sqrt", |_, _| Ok((ops::math::sqrt().into_hir(), vec![])));
    register!(reg, "Rsqrt", |_, _| Ok((ops::math::rsqrt().into_hir(), vec![])));

    register!(reg, "IsNaN", |_, _| Ok((tract_core::ops::math::is_nan().into_hir(), vec![])));
    register!(reg, "IsInf", isinf);
    register!(reg, "Neg", |_, _| Ok((ops::math::neg().into_hir(), vec![])));
    register!(reg, "Sign", |_, _| Ok((ops::math::sign().into_hir(), vec![])));
    register!(reg, "Reciprocal", |_, _| Ok((ops::math::recip().into_hir(), vec![])));

    register!(reg, "Pow", pow::pow);

    register!(reg, "MatMul", |_, _| Ok((expand(ops::matmul::MatMulInference::default()), vec![])));
    register!(reg, "MatMulInteger", mat_mul_integer::mat_mul_integer);
    register!(reg, "QLinearMatMul", mat_mul_integer::q_linear_mat_mul);
    register!(reg, "Gemm", gemm::gemm);
}

fn isinf(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let detect_positive = node.get_attr_opt("detect_positive")?.unwrap_or(1) != 0;
    let detect_negative = node.get_attr_opt("detect_negative")?.unwrap_or(1) != 0;
    Ok((tract_core::ops::math::is_inf(detect_positive, detect_negative).into_hir(), vec![]))
}

fn bitshift(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op: Box<dyn InferenceOp> = if node.get_attr_opt("direction")?.unwrap_or("LEFT") == "RIGHT" {
        ops::math::ShiftRight.into_hir()
    } else {
        ops::math::ShiftLeft.into_hir()
    };
    Ok((op, vec![]))
}
