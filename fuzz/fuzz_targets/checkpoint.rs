//! The checkpoint decoder on arbitrary bytes: never panics, and what it accepts encodes back to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(ckpt) = Checkpoint::decode(data) {
        let again = Checkpoint::decode(&ckpt.encode()).expect("an encoded checkpoint decodes");
        assert_eq!(again.header.tensors, ckpt.header.tensors);
    }
});
