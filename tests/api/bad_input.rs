//! The bad-input corpus (issue #8): every route of the operator contract
//! against malformed, hostile and odd requests, through the real HTTP server.
//!
//! Each case is one row: a name, the exact request, the status it must get
//! and (where it matters) a fragment of the answer. After every refused case
//! the test checks that no table's row count changed and that no outside
//! service (fake Slack, fake Google) was called. Requests that are odd but
//! legitimate (a signed DM with NUL, RTL overrides, 40,000 characters, mrkdwn
//! injection) are accepted: for those the test checks that the payload was
//! stored faithfully and that what robeing sent back is escaped.
//!
//! Requests go out through hyper's client connection directly, so a case can
//! carry anything on the wire: repeated headers, bytes that are not UTF-8,
//! chunked bodies without a length. `docs/security.md` lists the attacks and
//! the case count.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use axum::{
    body::Bytes,
    http::{HeaderName, HeaderValue, Method, Request},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::Utc;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use serde_json::json;

use crate::{
    fakes::{google::FakeGoogle, llm, recorder::Recorder, slack::TEAM_ID},
    helpers::*,
    slack_http::{DM_CHANNEL, USER, dm, now},
};

const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const CRON_SECRET: &str = "cron-secret-corpus-7d1f0a";
const MB: usize = 1024 * 1024;

/// One request, exactly as it goes on the wire.
#[derive(Clone)]
struct Req {
    method: Method,
    /// Path and query.
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Send the body chunked, without a Content-Length.
    chunked: bool,
    /// Sign when sent, with a timestamp this many seconds from now (so a
    /// case's distance from the window does not age while earlier cases run).
    sign_at_offset: Option<i64>,
}

impl Req {
    fn new(method: Method, target: impl Into<String>) -> Self {
        Self {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            sign_at_offset: None,
        }
    }
    fn get(target: impl Into<String>) -> Self {
        Self::new(Method::GET, target)
    }
    fn post(target: impl Into<String>, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self { body: body.into(), ..Self::new(Method::POST, target) }.header("content-type", content_type)
    }
    /// A Slack request signed correctly, now.
    fn signed(path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::signed_at(path, content_type, body, &now())
    }
    fn signed_at(path: &str, content_type: &str, body: impl Into<Vec<u8>>, ts: &str) -> Self {
        let body = body.into();
        let sig = slack_signature(SIGNING_SECRET, ts, &body);
        Self::post(path, content_type, body).header("x-slack-request-timestamp", ts).header("x-slack-signature", &sig)
    }
    /// Signed when sent, `offset` seconds from the clock then.
    fn signed_in(path: &str, content_type: &str, body: impl Into<Vec<u8>>, offset: i64) -> Self {
        Self { sign_at_offset: Some(offset), ..Self::post(path, content_type, body) }
    }
    fn json(path: &str, v: &serde_json::Value) -> Self {
        Self::signed(path, "application/json", v.to_string())
    }
    fn form(path: &str, body: &str) -> Self {
        Self::signed(path, "application/x-www-form-urlencoded", body)
    }
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }
    /// Replaces (or, with `None`, removes) every header of that name.
    fn set(mut self, name: &str, value: Option<&[u8]>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_owned(), v.to_vec()));
        }
        self
    }
    fn header_value(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
    /// The same signed request with its body changed after signing.
    fn tampered(mut self, f: impl FnOnce(&mut Vec<u8>)) -> Self {
        f(&mut self.body);
        self
    }
    fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    async fn send(&self, port: u16) -> (u16, String) {
        let (status, _, body) = self.send_full(port).await;
        (status, body)
    }

    /// Sends; answers status, `Location` and body.
    async fn send_full(&self, port: u16) -> (u16, Option<String>, String) {
        if let Some(offset) = self.sign_at_offset {
            let ts = (now().parse::<i64>().unwrap() + offset).to_string();
            let sig = slack_signature(SIGNING_SECRET, &ts, &self.body);
            let signed = Req { sign_at_offset: None, ..self.clone() }
                .set("x-slack-request-timestamp", Some(ts.as_bytes()))
                .set("x-slack-signature", Some(sig.as_bytes()));
            return Box::pin(signed.send_full(port)).await;
        }
        if self.target.len() > 65_000 {
            return self.send_raw(port).await;
        }
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, BoxBody<Bytes, Infallible>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let body: BoxBody<Bytes, Infallible> = if self.chunked {
            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                self.body.chunks(64 * 1024).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
            BoxBody::new(StreamBody::new(futures_util::stream::iter(frames)))
        } else {
            BoxBody::new(Full::new(Bytes::from(self.body.clone())))
        };
        let mut request = Request::builder().method(self.method.clone()).uri(&self.target).body(body).unwrap();
        let headers = request.headers_mut();
        headers.insert("host", HeaderValue::from_str(&format!("127.0.0.1:{port}")).unwrap());
        for (name, value) in &self.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).expect("a header value the wire can carry"),
            );
        }
        let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
            .await
            .expect("an answer within 20 s")
            .expect("an HTTP answer (a panic or a dropped connection is a bug)");
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, location, String::from_utf8_lossy(&body).into_owned())
    }
}

impl Req {
    /// For what `http::Uri` refuses to build (a URI over 64 KB): the request
    /// written by hand, bodiless, and the answer's status line and body read back.
    async fn send_raw(&self, port: u16) -> (u16, Option<String>, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        assert!(self.body.is_empty() && self.headers.is_empty());
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!("{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n", self.method, self.target);
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status line");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, None, body)
    }
}

/// One row of the corpus.
struct Case {
    name: String,
    req: Req,
    status: u16,
    fragment: Option<&'static str>,
}

fn case(name: impl Into<String>, req: Req, status: u16, fragment: Option<&'static str>) -> Case {
    Case { name: name.into(), req, status, fragment }
}

/// The row count of every table in the public schema.
async fn table_counts(db: &sqlx::PgPool) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(
        ["slack_events", "jobs", "exchanges", "slack_users", "oauth_states"]
            .iter()
            .all(|t| tables.contains(&t.to_string()))
    );
    let mut out = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{t}\"")))
            .fetch_one(db)
            .await
            .unwrap();
        out.insert(t, n);
    }
    out
}

/// Requests the app made to the outside fakes, except what it does on its own
/// (start-up `auth.test`; Socket Mode's `apps.connections.open`, retried with
/// backoff while the fake refuses the app token).
fn outbound(fakes: &[&Recorder]) -> Vec<String> {
    fakes
        .iter()
        .flat_map(|f| f.requests())
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|p| p != "POST /api/auth.test" && p != "POST /api/apps.connections.open")
        .collect()
}

/// Runs refused cases: each gets its status (and fragment), stores nothing
/// and sends nothing. Returns how many ran.
async fn run_refused(app: &TestApp, fakes: &[&Recorder], cases: Vec<Case>) -> usize {
    let tables = table_counts(&app.db).await;
    let sent = outbound(fakes);
    let n = cases.len();
    for c in cases {
        let (status, body) = c.req.send(app.port).await;
        assert_eq!(status, c.status, "case `{}`: answered {status}: {}", c.name, clip(&body));
        if let Some(fragment) = c.fragment {
            assert!(body.contains(fragment), "case `{}`: the answer lacks `{fragment}`: {}", c.name, clip(&body));
        }
        assert!(!body.contains(SIGNING_SECRET) && !body.contains(CRON_SECRET), "case `{}` leaks a secret", c.name);
        assert_eq!(table_counts(&app.db).await, tables, "case `{}` stored something", c.name);
        assert_eq!(outbound(fakes), sent, "case `{}` sent something", c.name);
    }
    // Nothing turns up late either (a background task, a queued job).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(table_counts(&app.db).await, tables, "stored after the fact");
    assert_eq!(outbound(fakes), sent, "sent after the fact");
    n
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// `docs/security.md` lists each group of the corpus with its number of
/// cases; this keeps that table true.
fn documented(group: &str, ran: usize) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let row = format!("| {group} |");
    let line =
        doc.lines().find(|l| l.starts_with(&row)).unwrap_or_else(|| panic!("docs/security.md has no row `{row}`"));
    let n: usize = line[row.len()..].split('|').next().unwrap().trim().parse().unwrap();
    assert_eq!(n, ran, "docs/security.md says {n} cases for `{group}`; the corpus ran {ran}");
    // And the total it states is the sum of its rows.
    let table: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| group | cases |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let sum: usize = table.iter().map(|l| l.split('|').nth(2).unwrap().trim().parse::<usize>().unwrap()).sum();
    assert!(
        doc.contains(&format!("**Total: {sum} cases.**")),
        "docs/security.md's total is not the sum of its rows ({sum})"
    );
}

/// [`run_refused`] for one documented group.
async fn group(app: &TestApp, fakes: &[&Recorder], name: &str, cases: Vec<Case>) {
    let n = run_refused(app, fakes, cases).await;
    documented(name, n);
}

/// A body of exactly `len` bytes: `prefix`, padding, `suffix`.
fn sized(prefix: &str, suffix: &str, len: usize) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    body.resize(len - suffix.len(), b'a');
    body.extend_from_slice(suffix.as_bytes());
    assert_eq!(body.len(), len);
    body
}

/// A minimal gzip member (one stored deflate block) of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65_536);
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A complete, valid slash command form (what Slack sends for `/brief`).
fn command_form(trigger: &str, text: &str) -> String {
    command_form_to(trigger, text, "https://hooks.slack.com/commands/T0ROBEING/1/abc")
}

/// [`command_form`] whose `response_url` is `response_url`.
fn command_form_to(trigger: &str, text: &str, response_url: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "unused"),
        ("team_id", TEAM_ID),
        ("team_domain", "robeing"),
        ("channel_id", DM_CHANNEL),
        ("user_id", USER),
        ("user_name", "kim"),
        ("command", "/brief"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", trigger),
    ])
    .unwrap()
}

fn interaction_form(payload: &str) -> String {
    serde_urlencoded::to_string([("payload", payload)]).unwrap()
}

/// A valid `block_actions` payload.
fn block_actions(trigger: &str, value: &str) -> serde_json::Value {
    json!({
        "type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER, "team_id": TEAM_ID},
        "trigger_id": trigger, "channel": {"id": DM_CHANNEL},
        "actions": [{"action_id": robeing::google::prompt::RECONNECT_ACTION, "value": value, "action_ts": "1764000000.1"}]
    })
}

/// Signature and timestamp attacks, the same for each Slack route.
fn signature_cases(path: &str, body: &[u8], ct: &str) -> Vec<Case> {
    let good = Req::signed(path, ct, body.to_vec());
    let ts = good.header_value("x-slack-request-timestamp");
    let sig = good.header_value("x-slack-signature");
    let n: i64 = ts.parse().unwrap();
    let resign = |ts: &str| slack_signature(SIGNING_SECRET, ts, body);
    let with_ts = |t: &str, s: &str| {
        good.clone().set("x-slack-request-timestamp", Some(t.as_bytes())).set("x-slack-signature", Some(s.as_bytes()))
    };
    let unauthorized = |name: &str, req: Req| case(format!("{path}: {name}"), req, 401, Some("unauthorized"));
    vec![
        unauthorized(
            "no signature, no timestamp",
            good.clone().set("x-slack-signature", None).set("x-slack-request-timestamp", None),
        ),
        unauthorized("no signature", good.clone().set("x-slack-signature", None)),
        unauthorized("no timestamp", good.clone().set("x-slack-request-timestamp", None)),
        unauthorized("empty signature", good.clone().set("x-slack-signature", Some(b""))),
        unauthorized("signature `v0=` only", good.clone().set("x-slack-signature", Some(b"v0="))),
        unauthorized(
            "wrong prefix v1=",
            good.clone().set("x-slack-signature", Some(sig.replacen("v0=", "v1=", 1).as_bytes())),
        ),
        unauthorized(
            "no prefix",
            good.clone().set("x-slack-signature", Some(sig.trim_start_matches("v0=").as_bytes())),
        ),
        unauthorized("not hex", good.clone().set("x-slack-signature", Some(b"v0=zzzz"))),
        unauthorized("truncated signature", good.clone().set("x-slack-signature", Some(&sig.as_bytes()[..35]))),
        unauthorized(
            "signature plus a byte",
            good.clone().set("x-slack-signature", Some(format!("{sig}00").as_bytes())),
        ),
        unauthorized(
            "wrong secret",
            good.clone().set("x-slack-signature", Some(slack_signature("not-the-secret", &ts, body).as_bytes())),
        ),
        unauthorized(
            "empty secret",
            good.clone().set("x-slack-signature", Some(slack_signature("", &ts, body).as_bytes())),
        ),
        unauthorized("signed for another timestamp", with_ts(&(n + 1).to_string(), &sig)),
        unauthorized("stale by 301 s, re-signed", Req::signed_in(path, ct, body.to_vec(), -301)),
        unauthorized("a day old, re-signed", with_ts(&(n - 86_400).to_string(), &resign(&(n - 86_400).to_string()))),
        // Not 301: the corpus is built before it is sent, and on a busy
        // machine the seconds in between would bring 301 back inside the window.
        unauthorized("future by 330 s, re-signed", Req::signed_in(path, ct, body.to_vec(), 330)),
        unauthorized("timestamp 0", with_ts("0", &resign("0"))),
        unauthorized("negative timestamp", with_ts("-1", &resign("-1"))),
        unauthorized("timestamp i64::MIN", with_ts(&i64::MIN.to_string(), &resign(&i64::MIN.to_string()))),
        unauthorized("timestamp i64::MAX", with_ts(&i64::MAX.to_string(), &resign(&i64::MAX.to_string()))),
        unauthorized("timestamp beyond i64", with_ts("99999999999999999999", &resign("99999999999999999999"))),
        unauthorized("non-numeric timestamp", with_ts("yesterday", &resign("yesterday"))),
        unauthorized("fractional timestamp", with_ts(&format!("{n}.5"), &resign(&format!("{n}.5")))),
        unauthorized("timestamp in milliseconds", with_ts(&format!("{n}000"), &resign(&format!("{n}000")))),
        unauthorized("timestamp with spaces", with_ts(&format!(" {n}"), &resign(&format!(" {n}")))),
        unauthorized("timestamp not UTF-8", good.clone().set("x-slack-request-timestamp", Some(&[0xff, 0xfe, b'1']))),
        unauthorized("signature not UTF-8", good.clone().set("x-slack-signature", Some(&[b'v', b'0', b'=', 0xff]))),
        unauthorized(
            "a forged signature header before the good one",
            good.clone().set("x-slack-signature", Some(b"v0=00")).header("x-slack-signature", &sig),
        ),
        unauthorized("body tampered after signing", good.clone().tampered(|b| b.push(b' '))),
        unauthorized(
            "body truncated after signing",
            good.clone().tampered(|b| {
                b.pop();
            }),
        ),
        unauthorized("body emptied after signing", good.clone().tampered(Vec::clear)),
        unauthorized("signed over the gzip, sent plain", {
            let packed = gzip(body);
            good.clone().set("x-slack-signature", Some(slack_signature(SIGNING_SECRET, &ts, &packed).as_bytes()))
        }),
    ]
}

/// Size, encoding and shape cases for `/slack/events`.
fn events_cases() -> Vec<Case> {
    let p = "/slack/events";
    let ct = "application/json";
    let bad = |name: &str, req: Req, fragment: &'static str| case(format!("{p}: {name}"), req, 400, Some(fragment));
    let body = |v: serde_json::Value| Req::json(p, &v);
    let raw = |s: &str| Req::signed(p, ct, s.as_bytes().to_vec());
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_event = format!(
        r#"{{"type":"event_callback","event_id":"Ev0DEEP","event":{{"type":"message","x":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge_array = {
        let mut s = r#"{"type":"event_callback","event":{"type":"message"},"authorizations":["#.to_owned();
        s.push_str(&vec!["{}"; 300_000].join(","));
        s.push_str("]}");
        s
    };
    let mut cases = vec![
        bad("empty body", raw(""), "not valid JSON"),
        bad("whitespace", raw(" \n"), "not valid JSON"),
        bad("truncated JSON", raw(r#"{"type":"event_callback""#), "not valid JSON"),
        bad("trailing garbage", raw(r#"{"type":"url_verification","challenge":"c"} x"#), "not valid JSON"),
        bad("invalid UTF-8", Req::signed(p, ct, b"{\"type\":\"\xff\xfe\"}".to_vec()), "not valid JSON"),
        bad("UTF-16 with a BOM", Req::signed(p, ct, vec![0xff, 0xfe, b'{', 0, b'}', 0]), "not valid JSON"),
        bad(
            "a form instead of JSON",
            Req::signed(p, "application/x-www-form-urlencoded", b"type=url_verification&challenge=c".to_vec()),
            "not valid JSON",
        ),
        bad(
            "gzip, signed over the compressed bytes",
            {
                let packed = gzip(json!({"type": "url_verification", "challenge": "c"}).to_string().as_bytes());
                Req::signed(p, ct, packed).header("content-encoding", "gzip")
            },
            "Content-Encoding",
        ),
        bad(
            "identity, then gzip Content-Encoding",
            Req::json(p, &json!({"type": "url_verification", "challenge": "c"}))
                .header("content-encoding", "identity")
                .header("content-encoding", "gzip"),
            "Content-Encoding",
        ),
        bad("top-level array", raw("[]"), "no `type`"),
        bad("top-level string", raw(r#""event_callback""#), "no `type`"),
        bad("top-level null", raw("null"), "no `type`"),
        bad("top-level number", raw("42"), "no `type`"),
        bad("empty object", raw("{}"), "no `type`"),
        bad("type is a number", body(json!({"type": 1})), "no `type`"),
        bad("type is null", body(json!({"type": null})), "no `type`"),
        bad("type is an object", body(json!({"type": {"a": 1}})), "no `type`"),
        bad("unknown type", body(json!({"type": "block_suggestion"})), "unknown Events API payload type"),
        bad("type with a NUL", body(json!({"type": "event_callback\u{0}"})), "unknown Events API payload type"),
        bad(
            "duplicate `type`, the last one unknown",
            raw(r#"{"type":"event_callback","type":"bogus"}"#),
            "unknown Events API payload type",
        ),
        bad("url_verification without challenge", body(json!({"type": "url_verification"})), "challenge"),
        bad(
            "url_verification, challenge a number",
            body(json!({"type": "url_verification", "challenge": 5})),
            "challenge",
        ),
        bad(
            "event_callback without event_id",
            body(json!({"type": "event_callback", "event": {"type": "message"}})),
            "event_id",
        ),
        bad(
            "event_id a number",
            body(json!({"type": "event_callback", "event_id": 7, "event": {"type": "message"}})),
            "event_id",
        ),
        bad(
            "event_id empty",
            body(json!({"type": "event_callback", "event_id": "", "event": {"type": "message"}})),
            "event_id",
        ),
        bad(
            "event_id null",
            body(json!({"type": "event_callback", "event_id": null, "event": {"type": "message"}})),
            "event_id",
        ),
        bad(
            "event_id of 256 characters",
            body(json!({"type": "event_callback", "event_id": "E".repeat(256), "event": {"type": "message"}})),
            "longer than 255",
        ),
        bad(
            "event_id of 100 four-byte characters",
            body(json!({"type": "event_callback", "event_id": "😀".repeat(100), "event": {"type": "message"}})),
            "longer than 255",
        ),
        bad(
            "event_callback without event",
            body(json!({"type": "event_callback", "event_id": "Ev0NOEVENT"})),
            "event.type",
        ),
        bad(
            "event is a string",
            body(json!({"type": "event_callback", "event_id": "Ev0STR", "event": "message"})),
            "event.type",
        ),
        bad(
            "event is an array",
            body(json!({"type": "event_callback", "event_id": "Ev0ARR", "event": [{"type": "message"}]})),
            "event.type",
        ),
        bad(
            "event.type empty",
            body(json!({"type": "event_callback", "event_id": "Ev0EMPTY", "event": {"type": ""}})),
            "event.type",
        ),
        bad(
            "event.type a number",
            body(json!({"type": "event_callback", "event_id": "Ev0NUM", "event": {"type": 3}})),
            "event.type",
        ),
        bad("nested 10,000 deep", raw(&deep), "not valid JSON"),
        bad("an event nested 200 deep", raw(&deep_event), "not valid JSON"),
        bad("300,000-element array, no event_id", raw(&huge_array), "event_id"),
        bad(
            r"lone surrogate \ud800 in the text",
            raw(&format!(
                r#"{{"type":"event_callback","event_id":"Ev0SURR","team_id":"{TEAM_ID}","event":{{"type":"message","channel_type":"im","channel":"{DM_CHANNEL}","user":"{USER}","ts":"1.1","text":"a\ud800b"}}}}"#
            )),
            "not valid JSON",
        ),
        bad(
            r"lone trailing surrogate \udc00",
            raw(r#"{"type":"event_callback","event_id":"Ev0SURR2","event":{"type":"message","text":"\udc00"}}"#),
            "not valid JSON",
        ),
        bad(
            "a raw control character in a string",
            raw("{\"type\":\"url_verification\",\"challenge\":\"a\u{1}b\"}"),
            "not valid JSON",
        ),
        bad(
            "exactly 1 MB, no event_id",
            Req::signed(p, ct, sized(r#"{"type":"event_callback","pad":""#, r#""}"#, MB)),
            "event_id",
        ),
        case(
            format!("{p}: 1 MB + 1, signed"),
            Req::signed(p, ct, sized(r#"{"type":"event_callback","pad":""#, r#""}"#, MB + 1)),
            413,
            None,
        ),
        case(format!("{p}: 1 MB + 1, unsigned"), Req::post(p, ct, sized(r#"{"pad":""#, r#""}"#, MB + 1)), 413, None),
        case(
            format!("{p}: 1 MB + 1, chunked without a length"),
            Req::signed(p, ct, sized(r#"{"pad":""#, r#""}"#, MB + 1)).chunked(),
            413,
            None,
        ),
        case(format!("{p}: 8 MB, unsigned"), Req::post(p, ct, vec![b'{'; 8 * MB]), 413, None),
        case(format!("{p}: GET"), Req::get(p), 405, None),
        case(
            format!("{p}: PUT, signed"),
            Req { method: Method::PUT, ..Req::json(p, &json!({"type": "url_verification", "challenge": "c"})) },
            405,
            None,
        ),
        case(
            format!("{p}/ (trailing slash)"),
            Req::json(&format!("{p}/"), &json!({"type": "url_verification", "challenge": "c"})),
            404,
            None,
        ),
        case(
            "/SLACK/EVENTS (case)",
            Req::json("/SLACK/EVENTS", &json!({"type": "url_verification", "challenge": "c"})),
            404,
            None,
        ),
    ];
    // Accepted, but nothing is stored: a challenge is answered, not recorded.
    let challenge = |name: &str, req: Req| case(format!("{p}: {name}"), req, 200, Some("challenge"));
    let verification = json!({"type": "url_verification", "token": "x", "challenge": "c0rpus"}).to_string();
    cases.extend([
        challenge("signed 290 s ago (inside the window)", Req::signed_in(p, ct, verification.clone(), -290)),
        challenge("signed 290 s ahead (inside the window)", Req::signed_in(p, ct, verification.clone(), 290)),
        challenge("JSON sent as text/plain", Req::signed(p, "text/plain", verification.clone())),
        challenge("JSON without a content-type", Req::signed(p, ct, verification.clone()).set("content-type", None)),
        challenge(
            "duplicate `type`, the last url_verification",
            raw(r#"{"type":"event_callback","type":"url_verification","challenge":"c"}"#),
        ),
        challenge(
            "a 40,000-character challenge",
            body(json!({"type": "url_verification", "challenge": "x".repeat(40_000)})),
        ),
    ]);
    cases.push(case(
        format!("{p}: app_rate_limited"),
        body(json!({"type": "app_rate_limited", "team_id": TEAM_ID, "minute_rate_limited": 1})),
        200,
        None,
    ));
    cases
}

fn commands_cases() -> Vec<Case> {
    let p = "/slack/commands";
    let ct = "application/x-www-form-urlencoded";
    let bad = |name: &str, req: Req, fragment: &'static str| case(format!("{p}: {name}"), req, 400, Some(fragment));
    let form = |s: &str| Req::form(p, s);
    let without = |field: &str| {
        let full: Vec<(String, String)> = serde_urlencoded::from_str(&command_form("1.2.x", "")).unwrap();
        serde_urlencoded::to_string(full.into_iter().filter(|(k, _)| k != field).collect::<Vec<_>>()).unwrap()
    };
    vec![
        bad("empty body", form(""), "trigger_id"),
        bad(
            "JSON instead of a form",
            Req::signed(p, "application/json", json!({"command": "/brief", "trigger_id": "1.2.x"}).to_string()),
            "trigger_id",
        ),
        bad("a form of JSON's shape", form(r#"{"command":"/brief","trigger_id":"1"}"#), "trigger_id"),
        bad("without trigger_id", form(&without("trigger_id")), "trigger_id"),
        bad("without command", form(&without("command")), "command"),
        bad("trigger_id empty", form(&command_form("", "")), "trigger_id"),
        bad("bad percent-encoding", form("command=%ZZ&text=%&%%=%"), "trigger_id"),
        bad("only separators", form("&&&=&=="), "trigger_id"),
        bad("invalid UTF-8, no trigger_id", Req::signed(p, ct, b"command=\xff\xfe&text=\xc3".to_vec()), "trigger_id"),
        bad(
            "gzip-encoded form",
            Req::signed(p, ct, gzip(command_form("1.2.gz", "").as_bytes())).header("content-encoding", "gzip"),
            "Content-Encoding",
        ),
        bad("exactly 1 MB, no trigger_id", Req::signed(p, ct, sized("command=%2Fbrief&text=", "", MB)), "trigger_id"),
        case(
            format!("{p}: 1 MB + 1, signed"),
            Req::signed(p, ct, sized(&command_form("1.2.big", ""), "", MB + 1)),
            413,
            None,
        ),
        case(
            format!("{p}: 1 MB + 1, chunked"),
            Req::signed(p, ct, sized(&command_form("1.2.big", ""), "", MB + 1)).chunked(),
            413,
            None,
        ),
        case(
            format!("{p}: GET with the form as query"),
            Req::get(format!("{p}?{}", command_form("1.2.q", ""))),
            405,
            None,
        ),
        case(format!("{p}: ssl_check"), form("ssl_check=1&token=x"), 200, None),
    ]
}

fn interactions_cases() -> Vec<Case> {
    let p = "/slack/interactions";
    let ct = "application/x-www-form-urlencoded";
    let bad = |name: &str, req: Req, fragment: &'static str| case(format!("{p}: {name}"), req, 400, Some(fragment));
    let form = |s: &str| Req::form(p, s);
    let payload = |v: serde_json::Value| form(&interaction_form(&v.to_string()));
    vec![
        bad("empty body", form(""), "payload"),
        bad("no payload field", form("nopayload=1"), "payload"),
        bad("`payload=` empty", form("payload="), "not valid JSON"),
        bad("payload not JSON", form("payload=%7Bbroken"), "not valid JSON"),
        bad("payload not URL-encoded", form(r#"payload={"type":"block_actions"}"#), "trigger_id"),
        bad("raw JSON body", Req::signed(p, "application/json", block_actions("1.2.raw", "v").to_string()), "payload"),
        bad("payload a string", payload(json!("block_actions")), "type"),
        bad("payload an array", payload(json!([block_actions("1.2.arr", "v")])), "type"),
        bad("payload null", payload(json!(null)), "type"),
        bad("payload without type", payload(json!({"trigger_id": "1.2.notype", "user": {"id": USER}})), "type"),
        bad(
            "no trigger_id and no user",
            payload(json!({"type": "block_actions", "actions": [{"action_ts": "1"}]})),
            "trigger_id",
        ),
        bad(
            "no trigger_id and no action_ts",
            payload(json!({"type": "block_actions", "user": {"id": USER}, "actions": []})),
            "action_ts",
        ),
        bad(
            r"payload with a lone surrogate \ud800",
            form(&interaction_form(r#"{"type":"block_actions","trigger_id":"\ud800"}"#)),
            "not valid JSON",
        ),
        bad(
            "payload nested 10,000 deep",
            form(&interaction_form(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))),
            "not valid JSON",
        ),
        bad(
            "gzip-encoded form",
            Req::signed(p, ct, gzip(interaction_form(&block_actions("1.2.gz", "v").to_string()).as_bytes()))
                .header("content-encoding", "gzip"),
            "Content-Encoding",
        ),
        bad(
            "payload invalid UTF-8",
            Req::signed(p, ct, b"payload=%7B%22type%22%3A%22\xff%22%7D".to_vec()),
            "trigger_id",
        ),
        bad("exactly 1 MB, payload not JSON", Req::signed(p, ct, sized("payload=", "", MB)), "not valid JSON"),
        case(format!("{p}: 1 MB + 1, signed"), Req::signed(p, ct, sized("payload=", "", MB + 1)), 413, None),
        case(format!("{p}: 1 MB + 1, chunked"), Req::signed(p, ct, sized("payload=", "", MB + 1)).chunked(), 413, None),
        case(format!("{p}: GET"), Req::get(p), 405, None),
    ]
}

fn cron_cases() -> Vec<Case> {
    let p = "/api/cron/daily-summary";
    let post = || Req::post(p, "application/json", "{}");
    let unauthorized = |name: &str, req: Req| case(format!("{p}: {name}"), req, 401, Some("unauthorized"));
    let bearer = |v: &str| post().header("authorization", format!("Bearer {v}"));
    vec![
        unauthorized("no Authorization", post()),
        unauthorized("`Bearer` alone", post().header("authorization", "Bearer")),
        unauthorized("`Bearer ` and nothing", bearer("")),
        unauthorized("wrong secret", bearer("cron-secret-2024")),
        unauthorized("secret with a trailing dot", bearer(&format!("{CRON_SECRET}."))),
        unauthorized("secret with a trailing newline escape", bearer(&format!("{CRON_SECRET}\\n"))),
        unauthorized("the secret's prefix", bearer(&CRON_SECRET[..10])),
        unauthorized("the secret plus a character", bearer(&format!("{CRON_SECRET}x"))),
        unauthorized("the secret uppercased", bearer(&CRON_SECRET.to_uppercase())),
        unauthorized("lower-case scheme", post().header("authorization", format!("bearer {CRON_SECRET}"))),
        unauthorized("two spaces after Bearer", post().header("authorization", format!("Bearer  {CRON_SECRET}"))),
        unauthorized(
            "Basic with the secret",
            post().header("authorization", format!("Basic {}", STANDARD.encode(format!("cron:{CRON_SECRET}")))),
        ),
        unauthorized("the secret without a scheme", post().header("authorization", CRON_SECRET)),
        unauthorized(
            "the secret in the query",
            Req { target: format!("{p}?secret={CRON_SECRET}&token={CRON_SECRET}"), ..post() },
        ),
        unauthorized(
            "the secret in the body",
            Req::post(p, "application/json", json!({"secret": CRON_SECRET}).to_string()),
        ),
        unauthorized("the secret in another header", post().header("x-cron-secret", CRON_SECRET)),
        unauthorized(
            "a wrong Authorization before the right one",
            bearer("wrong").header("authorization", format!("Bearer {CRON_SECRET}")),
        ),
        unauthorized(
            "Authorization not UTF-8",
            post().header("authorization", [b"Bearer ".as_slice(), &[0xff, 0xfe]].concat()),
        ),
        unauthorized("a 16 KB bearer", bearer(&"A".repeat(16 * 1024))),
        unauthorized("1 MB + 1 body, no auth", Req::post(p, "application/json", sized("{\"pad\":\"", "\"}", MB + 1))),
        case(
            format!("{p}: GET with the right secret"),
            Req::get(p).header("authorization", format!("Bearer {CRON_SECRET}")),
            405,
            None,
        ),
    ]
}

fn probe_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        cases.push(case(format!("POST {path}"), Req::post(path, "application/json", "{}"), 405, None));
        cases.push(case(format!("DELETE {path}"), Req::new(Method::DELETE, path), 405, None));
        cases.push(case(format!("{path}/ (trailing slash)"), Req::get(format!("{path}/")), 404, None));
    }
    cases.extend([
        case(
            "GET /healthz with junk query and a body",
            Req { body: vec![0xff; 4096], ..Req::get("/healthz?%3Cscript%3E=%00&a=%ZZ") },
            200,
            Some("\"ok\":true"),
        ),
        case(
            "GET /healthz with a 1 MB + 1 body",
            Req { body: vec![b'x'; MB + 1], ..Req::get("/healthz") },
            200,
            Some("\"ok\":true"),
        ),
        case(
            "GET /metrics with a strange Accept",
            Req::get("/metrics?name[]=x").header("accept", "application/x-evil; q=2, */*"),
            200,
            Some("# EOF"),
        ),
        case("GET /HEALTHZ (case)", Req::get("/HEALTHZ"), 404, None),
        case("GET //healthz", Req::get("//healthz"), 404, None),
        case("GET /slack/../healthz (dot segments are not resolved)", Req::get("/slack/../healthz"), 404, None),
        case("GET /.env", Req::get("/.env"), 404, None),
        case("GET /oauth/google/start/../../.env", Req::get("/oauth/google/start/../../.env"), 404, None),
        case("a 60,000-byte URI to an unknown route", Req::get(format!("/x?{}", "a".repeat(60_000))), 404, None),
        case("a 70,000-byte URI (over hyper's limit)", Req::get(format!("/healthz?{}", "a".repeat(70_000))), 414, None),
    ]);
    cases
}

/// OAuth parameter abuse. `genuine_state` is a live flow's state; none of
/// these may consume it (the test completes it afterwards).
fn oauth_cases(genuine_state: &str) -> Vec<Case> {
    let start = "/oauth/google/start";
    let cb = "/oauth/google/callback";
    let key = secrecy::SecretBox::new(Box::new(<[u8; 32]>::try_from(STANDARD.decode(KEY).unwrap()).unwrap()));
    let good = robeing::google::links::sign(&key, USER, Utc::now() + chrono::Duration::minutes(10));
    let other_key = secrecy::SecretBox::new(Box::new([9u8; 32]));
    let forged = robeing::google::links::sign(&other_key, USER, Utc::now() + chrono::Duration::minutes(10));
    let unknown_user = robeing::google::links::sign(&key, "U0NOBODY1", Utc::now() + chrono::Duration::minutes(10));
    let far_future = robeing::google::links::sign(&key, "U0NOBODY2", Utc::now() + chrono::Duration::days(3650));
    let (version, payload, sig) = {
        let mut parts = good.split('.');
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let swapped = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p =
            URL_SAFE_NO_PAD.encode(format!("U0OTHER01:{}", (Utc::now() + chrono::Duration::minutes(10)).timestamp()));
        format!("{version}.{p}.{sig}")
    };
    let invalid = |name: &str, query: String| {
        case(format!("{start}: {name}"), Req::get(format!("{start}?{query}")), 400, Some("not valid"))
    };
    let refused_cb = |name: &str, query: String, fragment: &'static str| {
        case(format!("{cb}: {name}"), Req::get(format!("{cb}?{query}")), 400, Some(fragment))
    };
    vec![
        case(format!("{start}: no query"), Req::get(start), 400, Some("missing its signed token")),
        invalid("t empty", "t=".into()),
        invalid("t garbage", "t=garbage".into()),
        invalid("a bare user id", format!("t={USER}")),
        case(
            format!("{start}: user= instead of t="),
            Req::get(format!("{start}?user={USER}")),
            400,
            Some("missing its signed token"),
        ),
        invalid("t given twice (same value)", format!("t={good}&t={good}")),
        invalid("t given twice (a forged one first)", format!("t={forged}&t={good}")),
        invalid("t signed with another key", format!("t={forged}")),
        invalid("t with another user's payload", format!("t={swapped}")),
        invalid("t with a truncated signature", format!("t={version}.{payload}.{}", &sig[..sig.len() - 2])),
        invalid("t with an extra part", format!("t={good}.x")),
        invalid("t of version v2", format!("t=v2.{payload}.{sig}")),
        invalid("t 10,000 characters", format!("t={}", "A".repeat(10_000))),
        invalid("t with NUL", format!("t={version}.{payload}%00.{sig}")),
        invalid("t not UTF-8", format!("t=%FF%FE{good}")),
        case(
            format!("{start}: a genuine link for an unknown user"),
            Req::get(format!("{start}?t={unknown_user}")),
            400,
            Some("Unknown Slack user"),
        ),
        case(
            format!("{start}: a genuine ten-year link for an unknown user"),
            Req::get(format!("{start}?t={far_future}")),
            400,
            Some("Unknown Slack user"),
        ),
        case(format!("{start}: POST"), Req::post(format!("{start}?t={good}"), "text/plain", ""), 405, None),
        refused_cb("no query", String::new(), "no `state`"),
        refused_cb("code but no state", "code=4/0abc".into(), "no `state`"),
        refused_cb("a forged state", "state=forged&code=4/0abc".into(), "did not start"),
        refused_cb("an empty state", "state=&code=4/0abc".into(), "did not start"),
        refused_cb("a 10,000-character state", format!("state={}&code=x", "s".repeat(10_000)), "did not start"),
        refused_cb("a state with NUL", "state=ab%00cd&code=x".into(), "did not start"),
        refused_cb("a state not UTF-8", "state=%FF%FE&code=x".into(), "did not start"),
        refused_cb("a forged state with access_denied", "state=forged&error=access_denied".into(), "did not start"),
        refused_cb(
            "the genuine state with HTML in error and code",
            format!("state={genuine_state}&code=x&error=%3Cscript%3E"),
            "both a code and an error",
        ),
        refused_cb(
            "the genuine state twice",
            format!("state={genuine_state}&state={genuine_state}&code=x"),
            "more than once",
        ),
        refused_cb(
            "the genuine state and a forged one",
            format!("state=forged&state={genuine_state}&code=x"),
            "more than once",
        ),
        refused_cb(
            "the genuine state with two codes",
            format!("state={genuine_state}&code=a&code=b"),
            "more than once",
        ),
        refused_cb(
            "the genuine state with two errors",
            format!("state={genuine_state}&error=a&error=b"),
            "more than once",
        ),
        refused_cb(
            "the genuine state in a different case",
            format!("state={}&code=x", genuine_state.to_uppercase()),
            "did not start",
        ),
        refused_cb("the genuine state plus a character", format!("state={genuine_state}x&code=x"), "did not start"),
        case(
            format!("{cb}: POST with the genuine state"),
            Req::post(
                format!("{cb}?state={genuine_state}&code=x"),
                "application/x-www-form-urlencoded",
                format!("state={genuine_state}&code=x"),
            ),
            405,
            None,
        ),
    ]
}

/// An app with every door configured: Slack signing secret, Google (fake),
/// the token key and a cron secret; one known Slack user.
async fn full_app() -> (TestApp, FakeGoogle) {
    let google = FakeGoogle::start().await;
    let mut vars = google.vars();
    vars.push(("TOKEN_ENCRYPTION_KEY".into(), KEY.into()));
    vars.push(("CRON_SECRET".into(), CRON_SECRET.into()));
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    robeing::storage::users::ensure_team(&app.db, TEAM_ID).await.unwrap();
    let profile = robeing::storage::users::Profile { display_name: Some("김종태".into()), ..Default::default() };
    robeing::storage::users::upsert_profile(&app.db, TEAM_ID, USER, &profile).await.unwrap();
    (app, google)
}

#[tokio::test]
async fn the_slack_routes_refuse_bad_input_and_store_and_send_nothing() {
    let (app, google) = full_app().await;
    let fakes = [&app.slack, &google.server];
    let mut cases = Vec::new();
    let event = dm("Ev0SIGCASE", USER, "hi").to_string();
    cases.extend(signature_cases("/slack/events", event.as_bytes(), "application/json"));
    cases.extend(signature_cases(
        "/slack/commands",
        command_form("1.2.sig", "").as_bytes(),
        "application/x-www-form-urlencoded",
    ));
    let action = interaction_form(&block_actions("1.2.sig", "v").to_string());
    cases.extend(signature_cases("/slack/interactions", action.as_bytes(), "application/x-www-form-urlencoded"));
    group(&app, &fakes, "Slack signatures and timestamps", cases).await;
    group(&app, &fakes, "`/slack/events` bodies", events_cases()).await;
    group(&app, &fakes, "`/slack/commands` bodies", commands_cases()).await;
    group(&app, &fakes, "`/slack/interactions` bodies", interactions_cases()).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn oauth_cron_and_probe_routes_refuse_bad_input_and_store_and_send_nothing() {
    let (app, google) = full_app().await;
    // A live flow, started properly: its state is what the abuse cases reuse.
    let link = robeing::google::connect_link(&app.state.config, USER).unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{}?{}", app.address, link.path(), link.query().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let auth = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = auth.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();

    let fakes = [&app.slack, &google.server];
    group(&app, &fakes, "OAuth parameters", oauth_cases(&state)).await;
    group(&app, &fakes, "Cron bearer", cron_cases()).await;
    group(&app, &fakes, "Probes, methods and paths", probe_cases()).await;

    // None of that consumed the live flow: it still completes.
    let consent = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = consent.get(auth.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let r = consent.get(format!("{}{}?{}", app.address, back.path(), back.query().unwrap())).send().await.unwrap();
    assert_eq!(r.status(), 200, "the genuine flow still completes");
    assert_eq!(google.token_requests("authorization_code").len(), 1, "only the genuine flow reached Google");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unconfigured_doors_stay_shut() {
    // No signing secret (Socket Mode instead), no Google, no cron secret.
    let app = spawn_app_with(Options {
        vars: vec![("SLACK_SIGNING_SECRET".into(), "".into()), ("SLACK_APP_TOKEN".into(), "xapp-1-test".into())],
        ..Default::default()
    })
    .await;
    let mut cases = Vec::new();
    for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
        cases.push(case(
            format!("{path} without SLACK_SIGNING_SECRET"),
            Req::json(path, &dm("Ev0NOSECRET", USER, "hi")),
            503,
            Some("SLACK_SIGNING_SECRET"),
        ));
        cases.push(case(
            format!("{path} unsigned without SLACK_SIGNING_SECRET"),
            Req::post(path, "application/json", "{}"),
            503,
            Some("SLACK_SIGNING_SECRET"),
        ));
    }
    cases.extend([
        case("cron without CRON_SECRET", Req::post("/api/cron/daily-summary", "application/json", "{}"), 404, None),
        case(
            "cron without CRON_SECRET, with a guessed bearer",
            Req::post("/api/cron/daily-summary", "application/json", "{}")
                .header("authorization", "Bearer cron-secret-2024"),
            404,
            None,
        ),
        case(
            "cron without CRON_SECRET, with an empty bearer",
            Req::post("/api/cron/daily-summary", "application/json", "{}").header("authorization", "Bearer "),
            404,
            None,
        ),
        case("start without Google", Req::get("/oauth/google/start?t=v1.a.b"), 503, Some("GOOGLE_CLIENT_ID")),
        case(
            "callback without Google, forged state",
            Req::get("/oauth/google/callback?state=x&code=y"),
            400,
            Some("did not start"),
        ),
    ]);
    group(&app, &[&app.slack], "Unconfigured routes", cases).await;
    app.stop().await.unwrap();
}

/// Waits (up to a minute: replies to one channel are paced at about one a
/// second, and the 40,000-character echo is many messages) until the job for
/// `event_id` is finished; returns its state and last error.
async fn job_outcome(db: &sqlx::PgPool, event_id: &str) -> (String, Option<String>) {
    crate::slack_http::job_outcome_within(db, event_id, Duration::from_secs(60)).await
}

/// The stored payload of an event.
async fn stored(db: &sqlx::PgPool, event_id: &str) -> serde_json::Value {
    sqlx::query_scalar("SELECT payload FROM slack_events WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{event_id} is not stored: {e}"))
}

/// The texts robeing posted to Slack, in order.
fn posted_texts(app: &TestApp) -> Vec<String> {
    app.slack
        .requests_to("/api/chat.postMessage")
        .into_iter()
        .chain(app.slack.requests_to("/api/chat.update"))
        .map(|r| r.param("text").unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn odd_but_genuine_input_is_stored_faithfully_and_answered_escaped() {
    let fake_llm = llm::start().await;
    let vars = vec![
        ("LLM_BASE_URL".into(), llm::base_url(&fake_llm)),
        ("LLM_MODEL".into(), llm::MODEL.into()),
        ("LLM_API_KEY".into(), llm::API_KEY.into()),
    ];
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    let long: String = (0..40_000).map(|i| if i % 9 == 0 { '한' } else { (b'a' + (i % 26) as u8) as char }).collect();
    let rtl = "invoice \u{202E}fdp.exe\u{202C} \u{2067}isolate\u{2069} \u{200F}";
    let injection = "<!channel> <!here> <@U0ADMIN> <https://evil.example|bank> &lt;!everyone&gt; &amp;lt; <#C0GENERAL>";
    let texts: Vec<(&str, String, String)> = vec![
        // (event id, text sent, text stored)
        ("Ev0NUL", "before\u{0}after".into(), "before\u{FFFD}after".into()),
        ("Ev0RTL", rtl.into(), rtl.into()),
        ("Ev0LONG", long.clone(), long.clone()),
        ("Ev0INJECT", injection.into(), injection.into()),
        ("Ev0EMOJI", "👩‍👩‍👧‍👦 e\u{301} \u{FEFF}zero\u{200B}width".into(), "👩‍👩‍👧‍👦 e\u{301} \u{FEFF}zero\u{200B}width".into()),
    ];
    let mut n = 0;
    for (id, text, _) in &texts {
        let r = Req::json("/slack/events", &dm(id, USER, text)).send(app.port).await;
        assert_eq!(r.0, 200, "{id}: {}", clip(&r.1));
        n += 1;
    }
    // A NUL in an object key and in the event id itself.
    let mut keyed = dm("Ev0NULKEY\u{0}", USER, "key");
    keyed["event"]["x\u{0}y"] = json!("z\u{0}");
    assert_eq!(Req::json("/slack/events", &keyed).send(app.port).await.0, 200);
    n += 1;
    // Duplicate keys: the last value is the one stored and acted on.
    let dup = format!(
        r#"{{"type":"event_callback","team_id":"{TEAM_ID}","event_id":"Ev0DUPFIRST","event_id":"Ev0DUPLAST","event":{{"type":"message","channel_type":"im","channel":"{DM_CHANNEL}","user":"{USER}","ts":"1764000999.000001","text":"first","text":"last"}}}}"#
    );
    assert_eq!(Req::signed("/slack/events", "application/json", dup).send(app.port).await.0, 200);
    n += 1;
    // A huge array in a genuine event is stored (it is under 1 MB).
    let mut wide = dm("Ev0WIDE", USER, "wide");
    wide["authorizations"] = json!(vec![json!({}); 50_000]);
    assert_eq!(Req::json("/slack/events", &wide).send(app.port).await.0, 200);
    n += 1;

    for (id, _, expected) in &texts {
        assert_eq!(stored(&app.db, id).await["event"]["text"], json!(expected), "{id} stored faithfully");
        let (state, error) = job_outcome(&app.db, id).await;
        assert_eq!(state, "done", "{id}: {error:?}");
        let user_text: String = sqlx::query_scalar("SELECT user_text FROM exchanges WHERE event_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(&user_text, expected, "{id}: the exchange log keeps the text");
    }
    let keyed = stored(&app.db, "Ev0NULKEY\u{FFFD}").await;
    assert_eq!(keyed["event"]["x\u{FFFD}y"], "z\u{FFFD}");
    assert_eq!(stored(&app.db, "Ev0DUPLAST").await["event"]["text"], "last");
    assert_eq!(
        crate::slack_http::count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0DUPFIRST'").await,
        0
    );
    assert_eq!(stored(&app.db, "Ev0WIDE").await["authorizations"].as_array().unwrap().len(), 50_000);
    for id in ["Ev0NULKEY\u{FFFD}", "Ev0DUPLAST", "Ev0WIDE"] {
        assert_eq!(job_outcome(&app.db, id).await.0, "done", "{id}");
    }

    // Slash command and interaction with hostile text: stored as sent (NUL
    // replaced), and the immediate answer escapes an injected command name.
    let response_url = app.slack.url("/commands/T0ROBEING/1/odd");
    let r = Req::form("/slack/commands", &command_form_to("1.2.odd", "<!channel> \u{202E}x\u{0}", &response_url))
        .send(app.port)
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(stored(&app.db, "cmd:1.2.odd").await["text"], "<!channel> \u{202E}x\u{FFFD}");
    let odd_command = command_form_to("1.2.inject", "", &response_url).replace("%2Fbrief", "%2F%3C%21channel%3E");
    let r = Req::form("/slack/commands", &odd_command).send(app.port).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let ack: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    // In the user's language (this user's stored locale is Korean), with the
    // command name escaped.
    let expected: Vec<String> = robeing::i18n::Lang::ALL
        .iter()
        .map(|&lang| robeing::i18n::briefing::working_on(lang, "/&lt;!channel&gt;"))
        .collect();
    assert!(expected.iter().any(|e| ack["text"] == e.as_str()), "the ack escapes the command name: {ack}");
    assert!(!ack["text"].as_str().unwrap().contains("<!channel>"), "{ack}");
    let r = Req::form("/slack/interactions", &interaction_form(&block_actions("1.2.odd", "<!here>\u{0}").to_string()))
        .send(app.port)
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(stored(&app.db, "act:1.2.odd").await["actions"][0]["value"], "<!here>\u{FFFD}");
    n += 3;

    // Every reply robeing posted is escaped mrkdwn: the injection is shown, never acted on.
    let replies = posted_texts(&app);
    assert!(!replies.is_empty());
    for text in &replies {
        for raw in ["<!channel>", "<!here>", "<@U0ADMIN>", "<https://evil", "<#C0GENERAL>", "\u{0}"] {
            assert!(!text.contains(raw), "a reply carries `{raw}` unescaped: {}", clip(text));
        }
        assert!(text.chars().count() <= robeing::conversation::MAX_CHUNK_CHARS, "a reply over Slack's limit");
    }
    let echoed =
        replies.iter().find(|t| t.contains("&lt;!channel&gt;")).expect("the LLM's echo of the injection was posted");
    assert!(
        echoed.contains("&lt;https://evil.example|bank&gt;") && echoed.contains("&amp;lt;!everyone&amp;gt;"),
        "{echoed}"
    );
    let long_parts = replies.iter().filter(|t| t.contains('한')).count();
    assert!(long_parts >= 2, "the long echo is split into chunks: {long_parts}");
    documented("Accepted odd input (stored faithfully, answered escaped)", n);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn genuine_but_expired_oauth_links_and_states_are_refused_and_the_user_told() {
    let (app, google) = full_app().await;
    // An expired but genuine link: refused; its user (and only they) gets a fresh one.
    let old = robeing::google::links::connect_link_at(&app.state.config, USER, Utc::now() - chrono::Duration::hours(1))
        .unwrap();
    let (status, body) = Req::get(format!("{}?{}", old.path(), old.query().unwrap())).send(app.port).await;
    assert_eq!((status, body.contains("expired")), (400, true), "{}", clip(&body));
    let dms = app.slack.wait_for("/api/chat.postMessage", 1, Duration::from_secs(10)).await;
    assert_eq!(dms.len(), 1);
    assert!(dms[0].param("text").unwrap().contains("fresh one"));
    assert_eq!(crate::slack_http::count(&app.db, "SELECT count(*) FROM oauth_states").await, 0, "no flow started");

    // A genuine state whose ten minutes passed: refused, spent, and the user told.
    let link = robeing::google::connect_link(&app.state.config, USER).unwrap();
    let (status, location, _) =
        Req::get(format!("{}?{}", link.path(), link.query().unwrap())).send_full(app.port).await;
    assert_eq!(status, 302);
    let auth = url::Url::parse(&location.unwrap()).unwrap();
    let state = auth.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    sqlx::query(
        "UPDATE oauth_states SET created_at = now() - interval '20 minutes', expires_at = now() - interval '10 minutes'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (status, body) = Req::get(format!("/oauth/google/callback?state={state}&code=4/0x")).send(app.port).await;
    assert_eq!((status, body.contains("expired")), (400, true), "{}", clip(&body));
    let dms = app.slack.wait_for("/api/chat.postMessage", 2, Duration::from_secs(10)).await;
    assert_eq!(dms.len(), 2);
    assert!(dms[1].param("text").unwrap().contains("expired"), "{:?}", dms[1].param("text"));
    // Replayed: still refused, and Google's token endpoint never saw a code.
    let (status, _) = Req::get(format!("/oauth/google/callback?state={state}&code=4/0x")).send(app.port).await;
    assert_eq!(status, 400);
    assert!(google.token_requests("authorization_code").is_empty(), "Google's token endpoint was never called");
    assert_eq!(
        crate::slack_http::count(&app.db, "SELECT count(*) FROM gmail_connections WHERE state = 'connected'").await,
        0
    );
    documented("Expired OAuth links and states (refused, user told)", 3);
    app.stop().await.unwrap();
}
