#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| glimpse_runtime::fuzz::console_text(data));
