//! The RTF reader on fuzzed documents: it reads or refuses, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rtf = b"{\\rtf1".to_vec();
    rtf.extend_from_slice(data.strip_prefix(b"{\\rtf1").unwrap_or(data));
    let _ = robeing::documents::rtf::text_of(&rtf);
});
