//! `POST /slack/interactions` after the signature: `payload=` form field,
//! its JSON, the key extractor and the stored-payload parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robeing::{
    http::slack::parse_interaction_body,
    slack::events::{self, Me},
};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = parse_interaction_body(data) else { return };
    if let Ok(keys) = events::interaction_keys(&payload) {
        assert!(!keys.event_id.is_empty() && keys.event_id.len() <= 255);
        assert!(keys.kind.starts_with(events::KIND_INTERACTION_PREFIX));
        let _ = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default());
    }
});
