//! A fake Slack Socket Mode server on loopback: robeing connects to the
//! `ws://` URL the fake `apps.connections.open` hands out; each accepted
//! connection is given to the test as a [`Conn`], which sends envelopes and
//! reads what robeing sent back (acks).

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::recorder::{Recorder, Scripted};

/// The running fake.
pub struct FakeSocketMode {
    pub addr: SocketAddr,
    accepted: Mutex<mpsc::UnboundedReceiver<Conn>>,
}

/// One WebSocket connection robeing opened.
pub struct Conn {
    to_client: mpsc::UnboundedSender<Message>,
    from_client: mpsc::UnboundedReceiver<String>,
}

impl FakeSocketMode {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { continue };
                let (mut sink, mut stream) = ws.split();
                let (to_client, mut outgoing) = mpsc::unbounded_channel::<Message>();
                let (incoming, from_client) = mpsc::unbounded_channel::<String>();
                tokio::spawn(async move {
                    while let Some(m) = outgoing.recv().await {
                        let close = matches!(m, Message::Close(_));
                        if sink.send(m).await.is_err() || close {
                            break;
                        }
                    }
                    let _ = sink.close().await;
                });
                tokio::spawn(async move {
                    while let Some(Ok(m)) = stream.next().await {
                        if let Message::Text(t) = m {
                            let _ = incoming.send(t.to_string());
                        }
                    }
                });
                if tx.send(Conn { to_client, from_client }).is_err() {
                    break;
                }
            }
        });
        Self { addr, accepted: Mutex::new(rx) }
    }

    /// The URL `apps.connections.open` hands out.
    pub fn url(&self) -> String {
        format!("ws://{}/link/?ticket=test", self.addr)
    }

    /// Makes the fake Slack Web API hand out this server's URL `times` times.
    pub fn serve_urls_from(&self, slack: &Recorder, times: usize) {
        let answer = Scripted::json(200, serde_json::json!({ "ok": true, "url": self.url() }));
        slack.script("/api/apps.connections.open", std::iter::repeat_n(answer, times));
    }

    /// The next connection robeing opens, if one comes within `within`.
    pub async fn accept(&self, within: Duration) -> Option<Conn> {
        tokio::time::timeout(within, self.accepted.lock().await.recv()).await.ok().flatten()
    }
}

impl Conn {
    pub fn send(&self, v: serde_json::Value) {
        let _ = self.to_client.send(Message::Text(v.to_string().into()));
    }

    pub fn hello(&self) {
        self.send(
            serde_json::json!({ "type": "hello", "num_connections": 1, "connection_info": { "app_id": "A0ROBEING" } }),
        );
    }

    /// Sends an envelope of `kind` with `payload`.
    pub fn envelope(&self, kind: &str, envelope_id: &str, payload: serde_json::Value) {
        self.send(serde_json::json!({
            "type": kind, "envelope_id": envelope_id, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""
        }));
    }

    pub fn disconnect(&self, reason: &str) {
        self.send(serde_json::json!({ "type": "disconnect", "reason": reason, "debug_info": { "host": "fake" } }));
    }

    /// Closes the socket (a dropped connection).
    pub fn close(&self) {
        let _ = self.to_client.send(Message::Close(None));
    }

    /// The next frame robeing sent, as JSON.
    pub async fn next(&mut self, within: Duration) -> Option<serde_json::Value> {
        let text = tokio::time::timeout(within, self.from_client.recv()).await.ok().flatten()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}
