//! A fake Gmail API (`/gmail/v1/users/me/messages[/{id}]`, and the batch
//! endpoint `POST /batch/gmail/v1`): [`start`] answers with recorded
//! responses from `tests/fixtures/gmail/` for one access token;
//! [`start_bulk`] answers any number of users, slowly, for the benchmark.
//!
//! The batch endpoint ([`answer_batch`], also served by the fake Google of
//! `google.rs`) speaks Google's wire format: it reads the `multipart/mixed`
//! request strictly (each part `application/http` holding `GET <path>`),
//! answers each inner call as the single `GET` would be answered, and
//! replies `multipart/mixed` with its own boundary, each part an HTTP/1.1
//! response with `Content-ID: <response-…>`. Like Google, which may run the
//! calls in any order, it answers them in **reverse** order, so a client
//! that pairs answers by position instead of `Content-ID` fails. Inner calls
//! are recorded in [`InnerCalls`] (the [`Recorder`] sees one HTTP request per
//! batch) and can be scripted per path, like the recorder's paths.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::recorder::{Recorded, Recorder, Scripted};

/// The batch endpoint's path.
pub const BATCH_PATH: &str = "/batch/gmail/v1";

/// The boundary of the fake's batch answers (Google's look alike).
pub const ANSWER_BOUNDARY: &str = "batch_7Xp52oGIwpA_AAEAc7ERnGU";

#[derive(Default)]
struct InnerState {
    requests: Vec<Recorded>,
    scripted: HashMap<String, VecDeque<Scripted>>,
}

/// The calls made inside batch requests: recorded, and scriptable per path.
#[derive(Clone, Default)]
pub struct InnerCalls(Arc<Mutex<InnerState>>);

impl InnerCalls {
    /// Every inner call so far (with the batch's `Authorization`).
    pub fn requests(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().requests.clone()
    }

    /// Inner calls to one path.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// How many inner calls so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().requests.len()
    }

    /// Queues answers for inner calls to a path (served before the default).
    pub fn script(&self, path: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.0.lock().unwrap().scripted.entry(path.to_owned()).or_default().extend(answers);
    }
}

/// A fake Gmail: the HTTP requests it received, and the calls inside batches.
#[derive(Clone)]
pub struct FakeGmail {
    pub server: Recorder,
    pub inner: InnerCalls,
}

impl FakeGmail {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Every `messages.get` of one message: single requests and batched calls.
    pub fn gets_of(&self, id: &str) -> Vec<Recorded> {
        let path = format!("/gmail/v1/users/me/messages/{id}");
        let mut all = self.server.requests_to(&path);
        all.extend(self.inner.requests_to(&path));
        all
    }
}

fn batch_error(status: u16, message: &str) -> Scripted {
    Scripted::json(
        status,
        serde_json::json!({ "error": { "code": status, "message": message, "status": "INVALID_ARGUMENT" } }),
    )
}

/// One inner request of a batch, read strictly: `Content-Type:
/// application/http`, an optional `Content-ID`, an empty line, then
/// `GET <path>[?query]` (an optional ` HTTP/1.1`) and optional headers.
fn inner_request(part: &str, outer: &HeaderMap) -> Result<(Option<String>, Recorded), String> {
    let (mime, http) = part.split_once("\r\n\r\n").ok_or("a part without an empty line after its headers")?;
    let mut content_id = None;
    let mut http_part = false;
    for line in mime.split("\r\n") {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad part header {line:?}"))?;
        match name.to_ascii_lowercase().as_str() {
            "content-type" => http_part = value.trim() == "application/http",
            "content-id" => content_id = Some(value.trim().trim_start_matches('<').trim_end_matches('>').to_owned()),
            _ => {}
        }
    }
    if !http_part {
        return Err("a part is not Content-Type: application/http".into());
    }
    let mut lines = http.trim_end_matches("\r\n").split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if method != "GET" || !target.starts_with('/') || !matches!(words.next(), None | Some("HTTP/1.1")) {
        return Err(format!("bad inner request line {request_line:?}"));
    }
    let mut headers = outer.clone();
    headers.remove("content-type");
    headers.remove("content-length");
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad inner header {line:?}"))?;
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?,
        );
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let recorded = Recorded { method: Method::GET, path: path.to_owned(), query, headers, body: Default::default() };
    Ok((content_id, recorded))
}

/// Answers `POST /batch/gmail/v1` as Google does: every inner call is
/// recorded in `calls` and answered by a scripted answer for its path or by
/// `answer` (the single `GET`'s handler); the reply is `multipart/mixed`.
pub fn answer_batch(r: &Recorded, calls: &InnerCalls, answer: impl Fn(&Recorded) -> Scripted) -> Scripted {
    let content_type = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(boundary) = content_type.strip_prefix("multipart/mixed; boundary=") else {
        return batch_error(400, "batch requests must be multipart/mixed with a boundary");
    };
    let Ok(body) = std::str::from_utf8(&r.body) else { return batch_error(400, "body is not UTF-8") };
    let delimiter = format!("--{boundary}\r\n");
    let Some(rest) = body.strip_prefix(&delimiter) else {
        return batch_error(400, "body does not start with the boundary");
    };
    let Some(rest) = rest.strip_suffix(&format!("\r\n--{boundary}--\r\n")) else {
        return batch_error(400, "body does not end with the close delimiter");
    };
    let parts: Vec<&str> = rest.split(&format!("\r\n--{boundary}\r\n")).collect();
    if parts.len() > 100 {
        return batch_error(400, "too many requests in a batch: at most 100");
    }
    let mut inner = Vec::with_capacity(parts.len());
    for part in parts {
        match inner_request(part, &r.headers) {
            Ok(one) => inner.push(one),
            Err(e) => return batch_error(400, &e),
        }
    }
    let mut out = String::new();
    for (content_id, request) in inner.into_iter().rev() {
        let scripted = {
            let mut s = calls.0.lock().unwrap();
            s.requests.push(request.clone());
            s.scripted.get_mut(&request.path).and_then(VecDeque::pop_front)
        };
        let a = scripted.unwrap_or_else(|| answer(&request));
        out.push_str(&format!("--{ANSWER_BOUNDARY}\r\nContent-Type: application/http\r\n"));
        if let Some(id) = content_id {
            out.push_str(&format!("Content-ID: <response-{id}>\r\n"));
        }
        out.push_str(&format!(
            "\r\nHTTP/1.1 {} {}\r\n",
            a.status.as_u16(),
            a.status.canonical_reason().unwrap_or("Unknown")
        ));
        for (k, v) in &a.headers {
            let k = if k.eq_ignore_ascii_case("content-type") { "Content-Type" } else { k.as_str() };
            let v = if v == "application/json" { "application/json; charset=UTF-8" } else { v.as_str() };
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Vary: Origin\r\nVary: X-Origin\r\nVary: Referer\r\n\r\n{}\r\n",
            String::from_utf8_lossy(&a.body)
        ));
    }
    out.push_str(&format!("--{ANSWER_BOUNDARY}--\r\n"));
    Scripted {
        status: axum::http::StatusCode::OK,
        headers: vec![("content-type".into(), format!("multipart/mixed; boundary={ANSWER_BOUNDARY}"))],
        body: out.into_bytes(),
        delay: Default::default(),
    }
}

pub const ACCESS_TOKEN: &str = "ya29.test-access-token-2f9c";

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/gmail/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The fixtures' answer to one `GET`.
fn fixture_answer(r: &Recorded) -> Scripted {
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
}

pub async fn start() -> FakeGmail {
    let inner = InnerCalls::default();
    let calls = inner.clone();
    let handler = move |r: &Recorded| -> Scripted {
        if r.method == Method::POST && r.path == BATCH_PATH {
            answer_batch(r, &calls, fixture_answer)
        } else {
            fixture_answer(r)
        }
    };
    FakeGmail { server: Recorder::start(Arc::new(handler)).await, inner }
}

/// The prefix of access tokens [`start_bulk`] accepts (one per user).
pub const BULK_TOKEN_PREFIX: &str = "ya29.bench-";

/// A fake Gmail for benchmarks: accepts any access token starting with
/// [`BULK_TOKEN_PREFIX`] (401 otherwise, like Google), lists `per_inbox`
/// inbox messages for everyone and answers any message's metadata, every
/// answer after `delay` (Gmail's own latency; a batch's answer, once, after
/// `delay`). Same wire format as the fixtures above.
pub async fn start_bulk(per_inbox: usize, delay: std::time::Duration) -> FakeGmail {
    let answer = move |r: &Recorded| -> Scripted {
        let authorized = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("Bearer {BULK_TOKEN_PREFIX}")));
        if !authorized {
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
        }
    };
    let inner = InnerCalls::default();
    let calls = inner.clone();
    let handler = move |r: &Recorded| -> Scripted {
        let reply =
            if r.method == Method::POST && r.path == BATCH_PATH { answer_batch(r, &calls, answer) } else { answer(r) };
        reply.delayed(delay)
    };
    FakeGmail { server: Recorder::start(Arc::new(handler)).await, inner }
}
