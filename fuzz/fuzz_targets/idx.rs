//! The IDX reader on arbitrary bytes (plain, and gzip when they start with its magic): never panics, and
//! what it accepts holds exactly as many bytes as its header says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::idx::decode;

fuzz_target!(|data: &[u8]| {
    for dims in [1, 3] {
        if let Ok(array) = decode(data, dims) {
            assert_eq!(array.dims.len(), dims as usize);
            assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
        }
    }
});
