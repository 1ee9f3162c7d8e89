//! `POST /slack/commands` after the signature: the form parser, the key
//! extractor and the stored-payload parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use robeing::{
    http::slack::{CommandAck, form_to_json},
    i18n::{Lang, briefing::working_on},
    slack::{
        client::escape_mrkdwn,
        events::{self, Me},
    },
};

fuzz_target!(|data: &[u8]| {
    let Ok(form) = form_to_json(data) else { return };
    assert!(form.iter().all(|(k, v)| !k.contains('\0') && !v.as_str().unwrap_or_default().contains('\0')));
    let payload = serde_json::Value::Object(form);
    if let Ok(keys) = events::command_keys(&payload) {
        assert!(!keys.event_id.is_empty() && keys.event_id.len() <= 255);
        let _ = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default());
        let _ = CommandAck::of(&payload);
        // The immediate answer escapes whatever command name it repeats
        // (as CommandAck::answer does).
        let command = payload["command"].as_str().unwrap_or_default();
        for lang in Lang::ALL {
            let text = working_on(lang, &escape_mrkdwn(command));
            assert!(!text.contains('<') && !text.contains('>'), "unescaped ack: {text}");
        }
    }
});
