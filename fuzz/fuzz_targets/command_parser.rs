//! `POST /slack/commands` after the signature: the form parser, the key
//! extractor and the stored-payload parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robeing::{
    http::slack::{command_ack, form_to_json},
    slack::events::{self, Me},
};

fuzz_target!(|data: &[u8]| {
    let Ok(form) = form_to_json(data) else { return };
    assert!(form.iter().all(|(k, v)| !k.contains('\0') && !v.as_str().unwrap_or_default().contains('\0')));
    let payload = serde_json::Value::Object(form);
    if let Ok(keys) = events::command_keys(&payload) {
        assert!(!keys.event_id.is_empty() && keys.event_id.len() <= 255);
        let _ = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default());
        let ack = command_ack(payload["command"].as_str().unwrap_or_default());
        let text = ack["text"].as_str().unwrap_or_default();
        // The immediate answer escapes whatever command name it repeats.
        let inner = text.trim_start_matches("Working on `").trim_end_matches("`…");
        assert!(!inner.contains('<') && !inner.contains('>'), "unescaped ack: {text}");
    }
});
