//! The Word 97–2003 reader on fuzzed `WordDocument` and table streams: it
//! reads or refuses, never panics, and writes no more characters than the
//! `WordDocument` stream has bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Layout: the WordDocument stream's length (4 bytes, little-endian),
    // that stream, then the table stream.
    let Some(length) = data.get(..4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize) else { return };
    let rest = &data[4..];
    let (word, table) = rest.split_at(length.min(rest.len()));
    if let Ok(text) = robeing::documents::doc::text_of_streams(word, table) {
        assert!(text.chars().count() <= word.len(), "more characters than the stream has bytes");
    }
});
