//! The model's dimensions, in one place. Written into every package's manifest; the
//! exporter builds its burn model and its ONNX graphs from the same struct.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Tokens in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Hidden size of every token embedding.
    pub d_model: usize,
    /// Decoder blocks.
    pub n_layers: usize,
    /// Attention heads; `d_model / n_heads` is the head size.
    pub n_heads: usize,
    /// Hidden size of the MLP.
    pub d_ff: usize,
    /// Share of each head's dimensions that get rotary embeddings (Persimmon: 0.5).
    pub rotary_fraction: f32,
    /// Rotary base frequency (Persimmon: 25 000).
    pub rope_theta: f32,
    pub layer_norm_eps: f32,
    /// Longest sequence (image tokens + prompt + answer) the model handles.
    pub max_positions: usize,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Dimensions of each head that are rotated: an even number.
    pub fn rotary_dim(&self) -> usize {
        let r = (self.head_dim() as f32 * self.rotary_fraction) as usize;
        r - r % 2
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(format!(
                "d_model {} is not a multiple of n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if self.vocab_size == 0 || self.n_layers == 0 || self.d_ff == 0 || self.max_positions == 0 {
            return Err("vocab_size, n_layers, d_ff and max_positions must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.rotary_fraction) {
            return Err(format!(
                "rotary_fraction {} is outside [0, 1]",
                self.rotary_fraction
            ));
        }
        Ok(())
    }

    /// `cos` and `sin` tables, `[max_positions, rotary_dim]`, in rotate_half layout
    /// (the `rotary_dim / 2` frequencies, repeated once).
    pub fn rotary_tables(&self) -> (Vec<f32>, Vec<f32>) {
        let rot = self.rotary_dim();
        let half = rot / 2;
        // each column's frequency, computed once (an 8 B model's table has 16384 rows)
        let inverse: Vec<f64> = (0..rot)
            .map(|i| {
                let k = i % half.max(1);
                1.0 / (self.rope_theta as f64).powf(2.0 * k as f64 / rot as f64)
            })
            .collect();
        let mut cos = Vec::with_capacity(self.max_positions * rot);
        let mut sin = Vec::with_capacity(self.max_positions * rot);
        for pos in 0..self.max_positions {
            for inv in &inverse {
                let (s, c) = (pos as f64 * inv).sin_cos();
                cos.push(c as f32);
                sin.push(s as f32);
            }
        }
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_tables_repeat_their_frequencies() {
        let c = ModelConfig {
            vocab_size: 10,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            rotary_fraction: 0.5,
            rope_theta: 25000.0,
            layer_norm_eps: 1e-5,
            max_positions: 5,
        };
        assert_eq!(c.rotary_dim(), 4);
        let (cos, sin) = c.rotary_tables();
        assert_eq!(cos.len(), 20);
        // position 0: angle 0
        assert_eq!(&cos[0..4], &[1.0; 4]);
        assert_eq!(&sin[0..4], &[0.0; 4]);
        // position 3, frequency 0 is 1 rad per position
        assert!((sin[3 * 4] - 3.0f32.sin()).abs() < 1e-6);
        assert_eq!(sin[3 * 4], sin[3 * 4 + 2]);
        // frequency 1: theta^(-2/4)
        let f1 = 1.0 / 25000f64.sqrt();
        assert!((cos[3 * 4 + 1] as f64 - (3.0 * f1).cos()).abs() < 1e-6);
    }
}
