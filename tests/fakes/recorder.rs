//! A recording HTTP server: every request is stored; responses come from a
//! default handler per path, overridable by scripted responses queued per
//! path (served first-in first-out, then the default again).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn form(&self) -> HashMap<String, String> {
        let raw =
            if self.body.is_empty() { self.query.clone().unwrap_or_default().into_bytes() } else { self.body.to_vec() };
        serde_urlencoded::from_bytes(&raw).unwrap_or_default()
    }
    /// A parameter from the JSON body, the form body or the query string.
    pub fn param(&self, name: &str) -> Option<String> {
        if let Some(v) = self.json().get(name) {
            return Some(v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        }
        if let Some(v) = self.form().get(name) {
            return Some(v.clone());
        }
        let q: HashMap<String, String> =
            serde_urlencoded::from_str(self.query.as_deref().unwrap_or("")).unwrap_or_default();
        q.get(name).cloned()
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Scripted {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
    /// Any bytes, with their content type.
    pub fn bytes(status: u16, content_type: &str, body: &[u8]) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
            delay: Duration::ZERO,
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// Computes a default answer for a request.
pub type Handler = Arc<dyn Fn(&Recorded) -> Scripted + Send + Sync>;

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    scripted: HashMap<String, VecDeque<Scripted>>,
}

/// The running fake.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// Starts the server with a default handler.
    pub async fn start(default: Handler) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state((inner.clone(), default));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Queues answers for a path (served before the default).
    pub fn script(&self, path: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().scripted.entry(path.to_owned()).or_default().extend(answers);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests to one path.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits (bounded) until `count` requests reached `path`.
    pub async fn wait_for(&self, path: &str, count: usize, within: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.requests_to(path);
            if got.len() >= count || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    State((inner, default)): State<(Arc<Mutex<Inner>>, Handler)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded { method, path: uri.path().to_owned(), query: uri.query().map(str::to_owned), headers, body };
    let scripted = {
        let mut g = inner.lock().unwrap();
        g.requests.push(rec.clone());
        g.scripted.get_mut(&rec.path).and_then(VecDeque::pop_front)
    };
    let answer = scripted.unwrap_or_else(|| default(&rec));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut resp = (answer.status, answer.body).into_response();
    for (k, v) in answer.headers {
        resp.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}
