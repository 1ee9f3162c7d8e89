//! `POST /slack/events` after the signature: the body parser, the key
//! extractor and the stored-payload parser the `slack_event` job runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robeing::{
    http::slack::parse_events_body,
    slack::events::{self, Me},
};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = parse_events_body(data) else { return };
    assert!(!robeing_fuzz_has_nul(&payload), "a payload PostgreSQL cannot store");
    if let Ok(keys) = events::callback_keys(&payload) {
        assert!(!keys.event_id.is_empty() && keys.event_id.len() <= 255);
        let me = Me { user_id: Some("U0BOT0001"), bot_id: Some("B0BOT0001") };
        let _ = events::parse(&keys.event_id, &keys.kind, &payload, &me);
    }
    // The job parses whatever kind was stored; any kind must be safe.
    for kind in ["message", events::KIND_SLASH_COMMAND, "interaction:block_actions"] {
        let _ = events::parse("Ev0FUZZ", kind, &payload, &Me::default());
    }
});

fn robeing_fuzz_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(robeing_fuzz_has_nul),
        serde_json::Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || robeing_fuzz_has_nul(v)),
        _ => false,
    }
}
