//! A fake Slack Web API (`/api/<method>`), answering with recorded
//! responses from `tests/fixtures/slack/`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::recorder::{Recorded, Recorder, Scripted};

pub const TEAM_ID: &str = "T0ROBEING";
pub const BOT_USER_ID: &str = "U0BOT0001";
/// The scopes a token installed from `manifest.yaml` has (Slack also
/// grants `app_mentions:read`-style extras on some installs; one is here so
/// extras are shown to be harmless).
pub const BOT_SCOPES: &[&str] =
    &["chat:write", "im:history", "im:read", "im:write", "commands", "users:read", "team:read"];

/// Slack's `auth.test` answer for a token with these scopes: the body, and
/// the scopes in the `x-oauth-scopes` header as Slack sends them.
pub fn auth_test_with_scopes(scopes: &[&str]) -> Scripted {
    Scripted::json(200, fixture("auth.test")).with_header("x-oauth-scopes", &scopes.join(","))
}

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/slack/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// Starts the fake. Known users (id → (real name, display name, tz, locale))
/// are answered by `users.info`.
pub async fn start() -> Recorder {
    let ts = Arc::new(AtomicU64::new(1_764_000_000_000_100));
    let handler = move |r: &Recorded| -> Scripted {
        let method = r.path.trim_start_matches("/api/");
        match method {
            "auth.test" => auth_test_with_scopes(BOT_SCOPES),
            "users.info" => {
                let user = r.param("user").unwrap_or_default();
                let mut v = fixture("users.info");
                v["user"]["id"] = user.clone().into();
                if user == "U0KIMJT01" {
                    v["user"]["real_name"] = "김종태".into();
                    v["user"]["profile"]["real_name"] = "김종태".into();
                    v["user"]["profile"]["display_name"] = "김종태".into();
                }
                Scripted::json(200, v)
            }
            "conversations.open" => {
                // slack-morphism sends `users` as a JSON array; Slack's docs say a comma-separated string.
                let users = match r.json().get("users").and_then(|u| u.as_array()) {
                    Some(list) => list.iter().filter_map(|u| u.as_str()).collect::<Vec<_>>().join(","),
                    None => r.param("users").unwrap_or_default(),
                };
                let mut v = fixture("conversations.open");
                v["channel"]["id"] = format!("D{}", users.trim_start_matches('U')).into();
                Scripted::json(200, v)
            }
            "chat.postMessage" | "chat.update" | "chat.postEphemeral" => {
                let n = ts.fetch_add(1, Ordering::SeqCst);
                let stamp = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
                Scripted::json(
                    200,
                    serde_json::json!({
                        "ok": true,
                        "channel": r.param("channel").unwrap_or_default(),
                        "ts": stamp,
                        "message": { "type": "message", "user": BOT_USER_ID, "text": r.param("text").unwrap_or_default(), "ts": stamp }
                    }),
                )
            }
            "views.publish" => {
                Scripted::json(200, serde_json::json!({ "ok": true, "view": { "id": "V0HOME", "type": "home" } }))
            }
            _ => Scripted::json(200, serde_json::json!({ "ok": false, "error": "unknown_method" })),
        }
    };
    Recorder::start(Arc::new(handler)).await
}
