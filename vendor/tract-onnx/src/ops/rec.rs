use crate::model::OnnxOpRegister;

pub mod common;
pub mod gru;
pub mod lstm;
pub mod rnn;
pub mod scan;

pub fn register_all_ops(reg: &mut OnnxOpRegister) {
    register!(reg, "GRU", gru::gru);
    register!(reg, "LSTM", lstm::lstm);
    register!(reg, "RNN", rnn::rnn);
    register!(reg, "Scan", scan::scan);
}
