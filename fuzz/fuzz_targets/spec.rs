//! The layer-spec parser on arbitrary text: never panics, and what it accepts prints back to a spec that
//! parses to the same network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlp::NetSpec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = text.parse::<NetSpec>() {
        let again: NetSpec = spec.to_string().parse().expect("the canonical form parses");
        assert_eq!(again, spec);
        let _ = spec.check_data(784, 10);
        let _ = spec.derived_name("CE");
    }
});
