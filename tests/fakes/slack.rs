//! A fake Slack Web API (`/api/<method>`), answering with recorded
//! responses from `tests/fixtures/slack/`.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::recorder::{Recorded, Recorder, Scripted};

pub const TEAM_ID: &str = "T0ROBEING";
pub const BOT_USER_ID: &str = "U0BOT0001";
/// The scopes a token installed from `manifest.yaml` has (Slack also
/// grants `app_mentions:read`-style extras on some installs; one is here so
/// extras are shown to be harmless).
pub const BOT_SCOPES: &[&str] = &[
    "chat:write",
    "files:read",
    "files:write",
    "im:history",
    "im:read",
    "im:write",
    "commands",
    "users:read",
    "team:read",
];

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
    start_with_workspace().await.0
}

/// One message the fake workspace holds (what a user would see).
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub metadata: Option<serde_json::Value>,
    /// Its Block Kit blocks, as posted.
    pub blocks: Option<serde_json::Value>,
    /// How many times `chat.update` changed it.
    pub updates: u32,
    /// Files shared with it (`files.completeUploadExternal`), as Slack
    /// lists them in `conversations.history`.
    pub files: Vec<serde_json::Value>,
}

/// A file uploaded through `files.getUploadURLExternal` and its upload URL.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_id: String,
    pub filename: String,
    /// The length announced to `files.getUploadURLExternal`.
    pub length: usize,
    /// The bytes POSTed to the upload URL (`None` until then).
    pub content: Option<Vec<u8>>,
    /// The channel it was shared in (`None` until completed).
    pub shared_in: Option<String>,
}

/// A fault the fake applies to the next `chat.postMessage` calls, in order.
#[derive(Debug, Clone)]
pub enum PostFault {
    /// No fault: posted and answered as usual (so that a later fault hits
    /// a later post).
    Passes,
    /// HTTP 429 with `Retry-After: secs`; nothing is posted (as Slack does).
    RateLimited(u32),
    /// This HTTP status (5xx); nothing is posted.
    Fails(u16),
    /// The message IS posted, then the answer is this HTTP status: the
    /// ambiguous failure a client cannot tell from [`PostFault::Fails`].
    PostedThenFails(u16),
    /// The message IS posted, and the answer comes only after this long (a
    /// client with a shorter timeout sees a timeout; a process killed
    /// meanwhile never learns the ts).
    PostedThenLate(Duration),
}

#[derive(Default)]
struct WorkspaceInner {
    messages: Vec<Message>,
    faults: VecDeque<PostFault>,
    faults_served: u32,
    uploads: Vec<Upload>,
    complete_faults: VecDeque<PostFault>,
    /// Files users sent, served at `/files-pri/<team>-<id>/<name>`.
    hosted: Vec<HostedFile>,
    /// The token lacks `files:read`: downloads get Slack's sign-in page.
    files_read_missing: bool,
    /// Downloads answered 503 before one succeeds.
    download_failures: u32,
}

/// A file a user sent, as the fake serves it.
#[derive(Debug, Clone)]
struct HostedFile {
    path: String,
    content: Vec<u8>,
}

/// The fake's state: the messages posted and the faults still to serve.
/// `conversations.history` / `conversations.replies` answer from it (with
/// `include_all_metadata`), like Slack.
#[derive(Clone, Default)]
pub struct Workspace {
    inner: Arc<Mutex<WorkspaceInner>>,
}

impl Workspace {
    /// Queues faults for the next `chat.postMessage` calls.
    pub fn fault_posts(&self, faults: impl IntoIterator<Item = PostFault>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }
    /// Queues faults for the next `files.completeUploadExternal` calls
    /// (the file is shared as for a post: not for `Fails`, for the rest).
    pub fn fault_completes(&self, faults: impl IntoIterator<Item = PostFault>) {
        self.inner.lock().unwrap().complete_faults.extend(faults);
    }
    /// Hosts a file a user sends: its bytes are served (to a bearer token)
    /// at its `url_private`/`url_private_download` on this fake, `base`
    /// being the fake's address (`Recorder::url("")`). Returns the file
    /// object as Slack puts it in a `file_share` message.
    pub fn host_file(&self, base: &str, name: &str, mimetype: &str, content: &[u8]) -> serde_json::Value {
        let mut g = self.inner.lock().unwrap();
        let id = format!("F0SENT{:04}", g.hosted.len() + 1);
        let path = format!("/files-pri/{TEAM_ID}-{id}/download/{name}");
        // As a client requests it: percent-encoded.
        let served = url::Url::parse(&format!("{base}{path}")).unwrap().path().to_owned();
        g.hosted.push(HostedFile { path: served, content: content.to_vec() });
        serde_json::json!({
            "id": id, "created": 1764000000, "timestamp": 1764000000, "name": name, "title": name,
            "mimetype": mimetype, "filetype": name.rsplit('.').next().unwrap_or("text"), "pretty_type": "Plain Text",
            "user": "U0KIMJT01", "user_team": TEAM_ID, "editable": true, "size": content.len(), "mode": "hosted",
            "is_external": false, "external_type": "", "is_public": false, "public_url_shared": false,
            "display_as_bot": false, "username": "",
            "url_private": format!("{base}/files-pri/{TEAM_ID}-{id}/{name}"),
            "url_private_download": format!("{base}{path}"),
            "permalink": format!("https://robeing.slack.com/files/U0KIMJT01/{id}/{name}"),
            "is_starred": false, "has_rich_preview": false, "file_access": "visible"
        })
    }
    /// Whether the token has `files:read` (it has, unless set off: an app
    /// installed before robeing asked for it; Slack then answers downloads
    /// with its sign-in page).
    pub fn set_files_read(&self, granted: bool) {
        self.inner.lock().unwrap().files_read_missing = !granted;
    }
    /// The next `n` downloads fail with 503.
    pub fn fail_downloads(&self, n: u32) {
        self.inner.lock().unwrap().download_failures = n;
    }

    /// A GET of a hosted file, as files.slack.com answers it.
    fn download(&self, r: &Recorded) -> Scripted {
        const SIGN_IN: &str =
            "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>";
        let bearer = r.headers.get("authorization").and_then(|h| h.to_str().ok()).unwrap_or("");
        let mut g = self.inner.lock().unwrap();
        if g.download_failures > 0 {
            g.download_failures -= 1;
            return Scripted::text(503, "upstream unavailable");
        }
        if !bearer.starts_with("Bearer xoxb-") || g.files_read_missing {
            // Slack does not refuse: it serves its sign-in page.
            return Scripted::bytes(200, "text/html; charset=utf-8", SIGN_IN.as_bytes());
        }
        match g.hosted.iter().find(|f| f.path == r.path) {
            Some(f) => Scripted::bytes(200, "application/octet-stream", &f.content),
            None => Scripted::bytes(404, "text/html; charset=utf-8", b"<html><body>File not found</body></html>"),
        }
    }

    /// Every file upload begun, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.lock().unwrap().uploads.clone()
    }
    /// Faults queued but not yet served.
    pub fn faults_left(&self) -> usize {
        self.inner.lock().unwrap().faults.len()
    }
    /// Faults served so far.
    pub fn faults_served(&self) -> u32 {
        self.inner.lock().unwrap().faults_served
    }
    /// Every message posted, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().unwrap().messages.clone()
    }
    /// Messages posted to one channel.
    pub fn messages_in(&self, channel: &str) -> Vec<Message> {
        self.messages().into_iter().filter(|m| m.channel == channel).collect()
    }
    /// Waits (bounded) until `count` messages were posted in total.
    pub async fn wait_for_messages(&self, count: usize, within: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.messages();
            if got.len() >= count || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn post(&self, r: &Recorded, ts: &str) -> Option<PostFault> {
        let mut g = self.inner.lock().unwrap();
        let fault = g.faults.pop_front();
        if fault.is_some() {
            g.faults_served += 1;
        }
        let posts = matches!(
            fault,
            None | Some(PostFault::Passes | PostFault::PostedThenFails(_) | PostFault::PostedThenLate(_))
        );
        if posts {
            let json = r.json();
            g.messages.push(Message {
                channel: r.param("channel").unwrap_or_default(),
                ts: ts.to_owned(),
                thread_ts: r.param("thread_ts"),
                text: r.param("text").unwrap_or_default(),
                metadata: json.get("metadata").cloned().filter(|m| !m.is_null()),
                blocks: json.get("blocks").cloned().filter(|b| !b.is_null()),
                updates: 0,
                files: Vec::new(),
            });
        }
        fault
    }

    fn update(&self, r: &Recorded) -> bool {
        let (channel, ts) = (r.param("channel").unwrap_or_default(), r.param("ts").unwrap_or_default());
        let mut g = self.inner.lock().unwrap();
        match g.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts) {
            Some(m) => {
                m.text = r.param("text").unwrap_or_default();
                if let Some(blocks) = r.json().get("blocks").filter(|b| !b.is_null()) {
                    m.blocks = Some(blocks.clone());
                }
                m.updates += 1;
                true
            }
            None => false,
        }
    }

    /// `chat.delete`: the message is gone from the channel.
    fn delete(&self, r: &Recorded) -> serde_json::Value {
        let (channel, ts) = (r.param("channel").unwrap_or_default(), r.param("ts").unwrap_or_default());
        let mut g = self.inner.lock().unwrap();
        let before = g.messages.len();
        g.messages.retain(|m| !(m.channel == channel && m.ts == ts));
        if g.messages.len() < before {
            serde_json::json!({ "ok": true, "channel": channel, "ts": ts })
        } else {
            serde_json::json!({ "ok": false, "error": "message_not_found" })
        }
    }

    /// `files.getUploadURLExternal`: a file id and an upload URL on this fake.
    fn begin_upload(&self, r: &Recorded) -> serde_json::Value {
        let host = r.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned();
        let (Some(filename), Some(length)) = (r.param("filename"), r.param("length").and_then(|l| l.parse().ok()))
        else {
            return serde_json::json!({ "ok": false, "error": "invalid_arguments" });
        };
        let mut g = self.inner.lock().unwrap();
        let file_id = format!("F0FILE{:04}", g.uploads.len() + 1);
        g.uploads.push(Upload { file_id: file_id.clone(), filename, length, content: None, shared_in: None });
        serde_json::json!({ "ok": true, "upload_url": format!("http://{host}/upload/v1/{file_id}"), "file_id": file_id })
    }

    /// A POST to an upload URL: Slack answers in plain text.
    fn receive_upload(&self, r: &Recorded) -> Scripted {
        let id = r.path.trim_start_matches("/upload/v1/");
        let mut g = self.inner.lock().unwrap();
        match g.uploads.iter_mut().find(|u| u.file_id == id) {
            Some(u) if u.length == r.body.len() => {
                u.content = Some(r.body.to_vec());
                Scripted::text(200, &format!("OK - {}", r.body.len()))
            }
            Some(u) => Scripted::text(400, &format!("length mismatch: announced {}, got {}", u.length, r.body.len())),
            None => Scripted::text(404, "no such upload"),
        }
    }

    /// `files.completeUploadExternal`: shares uploaded files in `channel_id`
    /// as one message (the reply is served after any queued fault).
    fn complete(&self, r: &Recorded, ts: &str) -> Scripted {
        let body = r.json();
        let channel = body["channel_id"].as_str().unwrap_or_default().to_owned();
        let mut g = self.inner.lock().unwrap();
        let fault = g.complete_faults.pop_front();
        if let Some(PostFault::Fails(status)) = fault {
            return Scripted::json(status, serde_json::json!({ "ok": false, "error": "internal_error" }));
        }
        let mut files = Vec::new();
        for f in body["files"].as_array().cloned().unwrap_or_default() {
            let id = f["id"].as_str().unwrap_or_default();
            let Some(u) = g.uploads.iter_mut().find(|u| u.file_id == id && u.content.is_some()) else {
                return Scripted::json(200, serde_json::json!({ "ok": false, "error": "file_uploads_not_complete" }));
            };
            u.shared_in = Some(channel.clone());
            files.push(serde_json::json!({
                "id": id, "name": u.filename, "title": f["title"], "mimetype": "text/plain", "size": u.length
            }));
        }
        g.messages.push(Message {
            channel,
            ts: ts.to_owned(),
            thread_ts: body["thread_ts"].as_str().map(str::to_owned),
            text: String::new(),
            metadata: None,
            blocks: None,
            updates: 0,
            files: files.clone(),
        });
        let ok = Scripted::json(200, serde_json::json!({ "ok": true, "files": files }));
        match fault {
            Some(PostFault::PostedThenFails(status)) => {
                Scripted::json(status, serde_json::json!({ "ok": false, "error": "internal_error" }))
            }
            Some(PostFault::PostedThenLate(d)) => ok.delayed(d),
            _ => ok,
        }
    }

    /// `conversations.history` (thread = None: top-level messages) or
    /// `conversations.replies` (messages of that thread), newest first,
    /// after `oldest`.
    fn history(&self, r: &Recorded, thread: Option<String>) -> serde_json::Value {
        let channel = r.param("channel").unwrap_or_default();
        let oldest: f64 = r.param("oldest").and_then(|o| o.parse().ok()).unwrap_or(0.0);
        let latest: f64 = r.param("latest").and_then(|o| o.parse().ok()).unwrap_or(f64::INFINITY);
        let inclusive = r.param("inclusive").as_deref() == Some("true");
        let limit: usize = r.param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
        let with_metadata = r.param("include_all_metadata").as_deref() == Some("true");
        let g = self.inner.lock().unwrap();
        let messages: Vec<serde_json::Value> = g
            .messages
            .iter()
            .rev()
            .filter(|m| {
                let ts = m.ts.parse::<f64>().unwrap_or(0.0);
                m.channel == channel && ts > oldest && (ts < latest || (inclusive && ts == latest))
            })
            .filter(|m| match &thread {
                None => m.thread_ts.is_none(),
                Some(t) => m.thread_ts.as_deref() == Some(t.as_str()),
            })
            .map(|m| {
                let mut v = serde_json::json!({
                    "type": "message", "user": BOT_USER_ID, "bot_id": "B0BOT0001", "text": m.text, "ts": m.ts
                });
                if let (true, Some(md)) = (with_metadata, &m.metadata) {
                    v["metadata"] = md.clone();
                }
                if !m.files.is_empty() {
                    v["files"] = m.files.clone().into();
                    v["upload"] = true.into();
                }
                if let Some(blocks) = &m.blocks {
                    v["blocks"] = blocks.clone();
                }
                v
            })
            .take(limit)
            .collect();
        serde_json::json!({ "ok": true, "has_more": false, "messages": messages })
    }
}

/// Starts the fake with its [`Workspace`]: posted messages are kept (and
/// read back by `conversations.history`), and faults can be scripted for
/// `chat.postMessage`. Message ts follow the wall clock, like Slack's.
pub async fn start_with_workspace() -> (Recorder, Workspace) {
    let workspace = Workspace::default();
    let ws = workspace.clone();
    let now_micros = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let ts = Arc::new(AtomicU64::new(now_micros()));
    let next_ts = move || {
        // Strictly increasing, and never behind the wall clock.
        let now = now_micros();
        let mut n = 0;
        let _ = ts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
            n = (p + 1).max(now);
            Some(n)
        });
        format!("{}.{:06}", n / 1_000_000, n % 1_000_000)
    };
    let handler = move |r: &Recorded| -> Scripted {
        if r.path.starts_with("/upload/v1/") {
            return ws.receive_upload(r);
        }
        if r.path.starts_with("/files-pri/") {
            return ws.download(r);
        }
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
            "conversations.history" => Scripted::json(200, ws.history(r, None)),
            "conversations.replies" => {
                let thread = r.param("ts").unwrap_or_default();
                Scripted::json(200, ws.history(r, Some(thread)))
            }
            "files.getUploadURLExternal" => Scripted::json(200, ws.begin_upload(r)),
            "files.completeUploadExternal" => ws.complete(r, &next_ts()),
            "chat.delete" => Scripted::json(200, ws.delete(r)),
            "chat.postMessage" | "chat.update" | "chat.postEphemeral" => {
                let stamp = next_ts();
                let fault = match method {
                    "chat.postMessage" => ws.post(r, &stamp),
                    "chat.update" => {
                        ws.update(r);
                        None
                    }
                    _ => None,
                };
                let failed =
                    |status: u16| Scripted::json(status, serde_json::json!({ "ok": false, "error": "internal_error" }));
                match fault {
                    Some(PostFault::RateLimited(secs)) => {
                        return Scripted::json(429, serde_json::json!({ "ok": false, "error": "ratelimited" }))
                            .with_header("Retry-After", &secs.to_string());
                    }
                    Some(PostFault::Fails(status)) | Some(PostFault::PostedThenFails(status)) => return failed(status),
                    _ => {}
                }
                let late = match fault {
                    Some(PostFault::PostedThenLate(d)) => d,
                    _ => Duration::ZERO,
                };
                Scripted::json(
                    200,
                    serde_json::json!({
                        "ok": true,
                        "channel": r.param("channel").unwrap_or_default(),
                        "ts": stamp,
                        "message": { "type": "message", "user": BOT_USER_ID, "text": r.param("text").unwrap_or_default(), "ts": stamp }
                    }),
                )
                .delayed(late)
            }
            "views.publish" => {
                Scripted::json(200, serde_json::json!({ "ok": true, "view": { "id": "V0HOME", "type": "home" } }))
            }
            _ => Scripted::json(200, serde_json::json!({ "ok": false, "error": "unknown_method" })),
        }
    };
    (Recorder::start(Arc::new(handler)).await, workspace)
}
