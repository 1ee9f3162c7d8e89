//! A fake Gmail API (`/gmail/v1/users/me/messages[/{id}]`), answering with
//! recorded responses from `tests/fixtures/gmail/`, for one access token.

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
