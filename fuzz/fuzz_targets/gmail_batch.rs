//! The reader of Gmail's batch answers with a fuzzed `Content-Type` and
//! body: it never panics; whatever it accepts pairs with the requests at
//! most once each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robeing::google::batch::{in_request_order, parse_response};

fuzz_target!(|data: &[u8]| {
    // Layout: the Content-Type up to the first 0xFF byte, then the body.
    let (content_type, body) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"multipart/mixed; boundary=batch_x"[..], data),
    };
    let Ok(content_type) = std::str::from_utf8(content_type) else { return };
    if let Ok(answers) = parse_response(content_type, body) {
        let n = answers.len();
        if let Ok(paired) = in_request_order(n, answers) {
            assert_eq!(paired.len(), n, "every request answered exactly once");
        }
    }
});
