//! A fake OpenAI-compatible chat-completions API (`POST /v1/chat/completions`)
//! on the recording server. By default it answers every request with
//! "LLM says: <the last user message>" in the real `chat.completion` shape;
//! tests script errors, delays or other answers per request.

use std::sync::Arc;

use super::recorder::{Recorded, Recorder, Scripted};

/// The path robeing calls when `LLM_BASE_URL` is [`base_url`].
pub const PATH: &str = "/v1/chat/completions";
pub const MODEL: &str = "test-model-1";
pub const API_KEY: &str = "sk-test-llm-key-77c1";

/// A `chat.completion` answer, as OpenAI's API returns it.
pub fn completion(content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-8x2Qk1",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49 },
        "system_fingerprint": "fp_test"
    })
}

/// An answer with this content.
pub fn answer(content: &str) -> Scripted {
    Scripted::json(200, completion(content))
}

/// An answer that ended for `finish_reason` (`length`, `content_filter`),
/// with this content (`None`: `null`, as a filtered answer has).
pub fn answer_ending(content: Option<&str>, finish_reason: &str) -> Scripted {
    let mut v = completion(content.unwrap_or(""));
    v["choices"][0]["finish_reason"] = finish_reason.into();
    if content.is_none() {
        v["choices"][0]["message"]["content"] = serde_json::Value::Null;
    }
    Scripted::json(200, v)
}

/// An OpenAI-style error answer.
pub fn error(status: u16) -> Scripted {
    Scripted::json(
        status,
        serde_json::json!({ "error": { "message": "The server had an error", "type": "server_error", "code": null } }),
    )
}

/// The messages of a recorded request.
pub fn messages(r: &Recorded) -> Vec<(String, String)> {
    r.json()["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["role"].as_str().unwrap_or("").to_owned(), m["content"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn start() -> Recorder {
    Recorder::start(Arc::new(|r: &Recorded| {
        if r.path != PATH {
            return Scripted::json(404, serde_json::json!({ "error": { "message": "unknown path" } }));
        }
        let last = messages(r).into_iter().rev().find(|(role, _)| role == "user").map(|(_, c)| c).unwrap_or_default();
        answer(&format!("LLM says: {last}"))
    }))
    .await
}

/// `LLM_BASE_URL` for this fake.
pub fn base_url(fake: &Recorder) -> String {
    fake.url("/v1")
}
