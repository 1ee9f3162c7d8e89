//! The Hangul (HWP 5) record walker on a fuzzed section, unpacked: it
//! reads or refuses, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = robeing::documents::hwp::section_text_of(data);
});
