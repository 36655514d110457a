#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| glimpse_runtime::fuzz::image_to_patches(data));
