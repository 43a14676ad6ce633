//! The checkpoint decoder on arbitrary bytes: never panics, and what it accepts encodes back to a file
//! that decodes to the same tensors. Each input is tried as it is and with its last four bytes replaced
//! by the right CRC-32, so the fuzzer also reaches the parsing behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::checkpoint::Checkpoint;

fn check(bytes: &[u8]) {
    if let Ok(ckpt) = Checkpoint::decode(bytes) {
        let again = Checkpoint::decode(&ckpt.encode()).expect("an encoded checkpoint decodes");
        assert_eq!(again.header.tensors, ckpt.header.tensors);
        // Bit patterns, not values: a NaN must survive too, and NaN != NaN.
        let bits = |c: &Checkpoint| -> Vec<u32> {
            c.data.iter().flat_map(|(v, m)| v.iter().chain(m)).map(|x| x.to_bits()).collect()
        };
        assert_eq!(bits(&again), bits(&ckpt));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let crc = crc32fast::hash(&fixed[..data.len() - 4]);
        let at = fixed.len() - 4;
        fixed[at..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
