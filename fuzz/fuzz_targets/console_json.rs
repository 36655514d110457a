#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| glimpse_runtime::fuzz::console_json(data));
