//! The numeric precisions a package can carry, and which one this CPU should run.

use serde::{Deserialize, Serialize};

/// How the weights of the vision graph and the decoder are stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// f16 weights and arithmetic, f32 at the graph boundary.
    F16,
    /// int8 weights (per output channel), activations quantized per call, integer matmuls.
    Int8,
    /// 4-bit weights in blocks of 32 (Q4_0), f32 activations.
    Q4,
}

impl Precision {
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::F16,
        Precision::Int8,
        Precision::Q4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
            Precision::Q4 => "q4",
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The file of graph `base` (e.g. `decoder.onnx`) at this precision: f32 keeps the
    /// plain name, others insert theirs (`decoder.int8.onnx`).
    pub fn file(self, base: &str) -> String {
        match (self, base.strip_suffix(".onnx")) {
            (Precision::F32, _) | (_, None) => base.to_string(),
            (p, Some(stem)) => format!("{stem}.{}.onnx", p.name()),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU offers that changes which precision is fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub arch: &'static str,
    /// Arm fp16 arithmetic (`asimdhp`).
    pub fp16: bool,
    /// Arm int8 dot product (`asimddp`).
    pub dotprod: bool,
}

impl CpuFeatures {
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "aarch64")]
        {
            CpuFeatures {
                arch: "aarch64",
                fp16: std::arch::is_aarch64_feature_detected!("fp16"),
                dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
            }
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            CpuFeatures {
                arch: std::env::consts::ARCH,
                fp16: false,
                dotprod: false,
            }
        }
    }

    /// "aarch64 (fp16, dotprod)".
    pub fn describe(&self) -> String {
        let mut f = Vec::new();
        if self.fp16 {
            f.push("fp16");
        }
        if self.dotprod {
            f.push("dotprod");
        }
        if f.is_empty() {
            self.arch.to_string()
        } else {
            format!("{} ({})", self.arch, f.join(", "))
        }
    }
}

/// The precision to run from those a package carries: f32 whenever it is there, then f16
/// on Arm cores with fp16 arithmetic, then the smallest quantized graphs. Measured for the
/// bundled model (`targets/qemu/instructions.sh`, guest instructions per decoded token on
/// emulated cores): Cortex-A76 f32 3.1 M, f16 3.5 M, q4 3.6 M, int8 4.2 M; Cortex-A72
/// f32 3.1 M, q4 3.6 M, f16 3.6 M, int8 6.0 M; and on x86 f32 is the fastest too (see the
/// README). At this size each product is tiny, and the casts and activation quantization
/// around the cheaper products cost more than they save. The armv7 build is the
/// exception (Cortex-A7: int8 7.1 M, f32 8.3 M), where `--precision int8` is worth trying.
/// f16, int8 and q4 stay a `--precision` away, also for the smallest packages.
pub fn choose(available: &[Precision], cpu: CpuFeatures) -> Option<Precision> {
    let has = |p| available.contains(&p);
    if has(Precision::F32) {
        return Some(Precision::F32);
    }
    if cpu.fp16 && has(Precision::F16) {
        return Some(Precision::F16);
    }
    // a package without f32: the smaller weights first
    [Precision::Q4, Precision::F16, Precision::Int8]
        .into_iter()
        .find(|p| has(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: CpuFeatures = CpuFeatures {
        arch: "x86_64",
        fp16: false,
        dotprod: false,
    };
    const A72: CpuFeatures = CpuFeatures {
        arch: "aarch64",
        fp16: false,
        dotprod: false,
    };
    const A76: CpuFeatures = CpuFeatures {
        arch: "aarch64",
        fp16: true,
        dotprod: true,
    };

    #[test]
    fn names_and_files() {
        assert_eq!(Precision::parse("INT8"), Some(Precision::Int8));
        assert_eq!(Precision::parse("f16"), Some(Precision::F16));
        assert_eq!(Precision::parse("bf16"), None);
        assert_eq!(Precision::F32.file("decoder.onnx"), "decoder.onnx");
        assert_eq!(Precision::Q4.file("vision.onnx"), "vision.q4.onnx");
    }

    #[test]
    fn f32_first_then_f16_on_fp16_cores_then_the_smallest() {
        use Precision::*;
        let all = [F32, F16, Int8, Q4];
        assert_eq!(choose(&all, A76), Some(F32));
        assert_eq!(choose(&all, A72), Some(F32));
        assert_eq!(choose(&all, X86), Some(F32));
        assert_eq!(choose(&[F16, Int8, Q4], A76), Some(F16));
        assert_eq!(choose(&[F16, Int8, Q4], A72), Some(Q4));
        assert_eq!(choose(&[F16, Int8], X86), Some(F16));
        assert_eq!(choose(&[Int8], A76), Some(Int8));
        assert_eq!(choose(&[Int8, Q4], X86), Some(Q4));
        assert_eq!(choose(&[], X86), None);
        assert_eq!(A76.describe(), "aarch64 (fp16, dotprod)");
    }
}
