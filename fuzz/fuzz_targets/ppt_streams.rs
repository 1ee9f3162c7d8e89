//! The PowerPoint 97–2003 reader on fuzzed `Current User` and `PowerPoint
//! Document` streams: it reads or refuses, never panics and never loops
//! (libFuzzer's timeout catches a loop).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Layout: the Current User stream (its first 20 bytes matter), then the
    // PowerPoint Document stream.
    let (current_user, stream) = data.split_at(data.len().min(20));
    let _ = robeing::documents::ppt::text_of_streams(current_user, stream);
});
