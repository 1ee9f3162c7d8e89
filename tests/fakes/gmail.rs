//! A fake Gmail API (`/gmail/v1/users/me/messages[/{id}]`): [`start`]
//! answers with recorded responses from `tests/fixtures/gmail/` for one
//! access token; [`start_bulk`] answers any number of users, slowly, for the
//! benchmark.

use std::sync::Arc;

use super::recorder::{Recorded, Recorder, Scripted};

pub const ACCESS_TOKEN: &str = "ya29.test-access-token-2f9c";

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/gmail/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

pub async fn start() -> Recorder {
    let handler = |r: &Recorded| -> Scripted {
        if r.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {ACCESS_TOKEN}")) {
            return Scripted::json(
                401,
                serde_json::json!({ "error": { "code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED" } }),
            );
        }
        match r.path.strip_prefix("/gmail/v1/users/me/messages") {
            Some("") => Scripted::json(200, fixture("messages.list")),
            Some(rest) => {
                let id = rest.trim_start_matches('/');
                let path = format!("{}/tests/fixtures/gmail/message.{id}.json", env!("CARGO_MANIFEST_DIR"));
                if std::path::Path::new(&path).exists() {
                    Scripted::json(200, fixture(&format!("message.{id}")))
                } else {
                    Scripted::json(
                        404,
                        serde_json::json!({ "error": { "code": 404, "message": "Requested entity was not found." } }),
                    )
                }
            }
            None => Scripted::json(404, serde_json::json!({ "error": { "code": 404 } })),
        }
    };
    Recorder::start(Arc::new(handler)).await
}

/// The prefix of access tokens [`start_bulk`] accepts (one per user).
pub const BULK_TOKEN_PREFIX: &str = "ya29.bench-";

/// A fake Gmail for benchmarks: accepts any access token starting with
/// [`BULK_TOKEN_PREFIX`] (401 otherwise, like Google), lists `per_inbox`
/// inbox messages for everyone and answers any message's metadata, every
/// answer after `delay` (Gmail's own latency). Same wire format as the
/// fixtures above.
pub async fn start_bulk(per_inbox: usize, delay: std::time::Duration) -> Recorder {
    let handler = move |r: &Recorded| -> Scripted {
        let authorized = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("Bearer {BULK_TOKEN_PREFIX}")));
        let answer = if !authorized {
            Scripted::json(401, serde_json::json!({ "error": { "code": 401, "status": "UNAUTHENTICATED" } }))
        } else if r.path == "/gmail/v1/users/me/messages" {
            let ids: Vec<_> = (0..per_inbox)
                .map(|i| serde_json::json!({ "id": format!("m{i:04}"), "threadId": format!("t{i:04}") }))
                .collect();
            Scripted::json(200, serde_json::json!({ "messages": ids, "resultSizeEstimate": per_inbox }))
        } else if let Some(id) = r.path.strip_prefix("/gmail/v1/users/me/messages/") {
            Scripted::json(
                200,
                serde_json::json!({
                    "id": id, "threadId": id.replace('m', "t"), "labelIds": ["INBOX", "UNREAD", "IMPORTANT"],
                    "snippet": "Quarterly numbers attached; can we talk before Friday?", "internalDate": "1795996800000",
                    "payload": { "headers": [
                        { "name": "From", "value": "Park Jimin <jimin@example.com>" },
                        { "name": "Subject", "value": format!("Report {id}") },
                        { "name": "Date", "value": "Mon, 30 Nov 2026 08:00:00 +0900" }
                    ] }
                }),
            )
        } else {
            Scripted::json(404, serde_json::json!({ "error": { "code": 404 } }))
        };
        answer.delayed(delay)
    };
    Recorder::start(Arc::new(handler)).await
}
