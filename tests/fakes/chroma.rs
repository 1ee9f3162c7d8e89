//! A REAL ChromaDB server for tests: `chroma run` from the virtualenv at
//! `ROBEING_CHROMA_BIN` (default `~/.cache/robeing/chroma-venv/bin/chroma`;
//! CI installs it), on a free loopback port with its data in a temporary
//! directory. It can be stopped and started again on the same path and port
//! (an outage), and is killed when dropped. The helpers read ChromaDB over
//! its own v2 REST API, independently of robeing's client.
//!
//! Its SQLite file is put in WAL mode before the server first opens it, as
//! docs/operations.md tells operators to run ChromaDB ("ChromaDB's SQLite in
//! WAL mode"); `ROBEING_CHROMA_JOURNAL=delete` leaves ChromaDB's default
//! rollback journal, for comparing the two in the benchmarks.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};

/// How long a cold `chroma run` may take to answer its heartbeat.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Chroma {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    http: reqwest::Client,
}

fn binary() -> PathBuf {
    match std::env::var("ROBEING_CHROMA_BIN") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => dirs::home_dir().expect("a home directory").join(".cache/robeing/chroma-venv/bin/chroma"),
    }
}

/// Puts ChromaDB's (still empty) SQLite database in `data_dir` in WAL mode
/// with `deploy/chroma-wal.py`, the operators' script, run by the
/// virtualenv's own Python; unless `ROBEING_CHROMA_JOURNAL=delete`.
fn prepare_journal(bin: &std::path::Path, data_dir: &std::path::Path) {
    if std::env::var("ROBEING_CHROMA_JOURNAL").as_deref() == Ok("delete") {
        return;
    }
    let python = bin.with_file_name("python3");
    let out = std::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/chroma-wal.py"))
        .arg(data_dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "deploy/chroma-wal.py failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Chroma {
    /// Starts a fresh server and waits until it answers.
    pub async fn start() -> Self {
        robeing::startup::install_crypto_provider();
        let mut c = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        };
        prepare_journal(&binary(), &c.dir.path().join("data"));
        c.run().await;
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let bin = binary();
        assert!(bin.exists(), "ChromaDB is not installed at {} (set ROBEING_CHROMA_BIN)", bin.display());
        let child = tokio::process::Command::new(&bin)
            .args(["run", "--path"])
            .arg(self.dir.path().join("data"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .env("ANONYMIZED_TELEMETRY", "False")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/api/v2/heartbeat", self.url())).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "ChromaDB did not start within {START_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGTERM, then waits); the data stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
        // The port must refuse connections before we call it an outage.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server with SIGKILL (no shutdown, whatever it was doing);
    /// the data directory stays for [`Chroma::restart`].
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every record id in robeing's collections.
    pub async fn all_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for c in self.robeing_collections().await {
            ids.extend(self.records_in(c["id"].as_str().unwrap()).await.into_iter().map(|(id, _)| id));
        }
        ids
    }

    /// Starts it again on the same path and port.
    pub async fn restart(&mut self) {
        self.run().await;
    }

    fn collections_url(&self) -> String {
        format!("{}/api/v2/tenants/default_tenant/databases/default_database/collections", self.url())
    }

    /// Every collection on the server.
    pub async fn all_collections(&self) -> Vec<Value> {
        let all: Value = self.http.get(self.collections_url()).send().await.unwrap().json().await.unwrap();
        all.as_array().cloned().unwrap_or_default()
    }

    /// robeing's collections under the default prefix (`robeing_memory…`).
    pub async fn robeing_collections(&self) -> Vec<Value> {
        self.all_collections()
            .await
            .into_iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("robeing_memory")))
            .collect()
    }

    /// The collection called `name`, if it exists.
    pub async fn collection_named(&self, name: &str) -> Option<Value> {
        self.all_collections().await.into_iter().find(|c| c["name"] == name)
    }

    /// The user's collection (`robeing_memory_<user>`), if it exists.
    pub async fn collection_of(&self, user_id: &str) -> Option<Value> {
        self.collection_named(&format!("robeing_memory_{user_id}")).await
    }

    /// Creates a collection ahead of robeing, with this metadata; its id.
    pub async fn create_collection(&self, name: &str, metadata: Value) -> String {
        let r = self
            .http
            .post(self.collections_url())
            .json(&json!({ "name": name, "metadata": metadata }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// Deletes the collection called `name`.
    pub async fn delete_collection(&self, name: &str) {
        let r = self.http.delete(format!("{}/{name}", self.collections_url())).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Upserts records into a collection (id, embedding, document, metadata).
    pub async fn upsert(&self, collection_id: &str, records: &[(String, Vec<f32>, String, Value)]) {
        let r = self
            .http
            .post(format!("{}/{collection_id}/upsert", self.collections_url()))
            .json(&json!({
                "ids": records.iter().map(|r| &r.0).collect::<Vec<_>>(),
                "embeddings": records.iter().map(|r| &r.1).collect::<Vec<_>>(),
                "documents": records.iter().map(|r| &r.2).collect::<Vec<_>>(),
                "metadatas": records.iter().map(|r| &r.3).collect::<Vec<_>>(),
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Records of a collection: (id, document).
    pub async fn records_in(&self, collection_id: &str) -> Vec<(String, String)> {
        let v: Value = self
            .http
            .post(format!("{}/{collection_id}/get", self.collections_url()))
            .json(&json!({ "include": ["documents"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids = v["ids"].as_array().cloned().unwrap_or_default();
        let docs = v["documents"].as_array().cloned().unwrap_or_default();
        ids.iter()
            .zip(docs.iter())
            .map(|(i, d)| (i.as_str().unwrap().to_owned(), d.as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Records of one user, from their collection: (id, document).
    pub async fn records_of(&self, user_id: &str) -> Vec<(String, String)> {
        match self.collection_of(user_id).await {
            Some(c) => self.records_in(c["id"].as_str().unwrap()).await,
            None => Vec::new(),
        }
    }

    /// How many records robeing's collections hold together.
    pub async fn count(&self) -> u64 {
        let mut total = 0;
        for c in self.robeing_collections().await {
            let id = c["id"].as_str().unwrap();
            let r = self.http.get(format!("{}/{id}/count", self.collections_url())).send().await.unwrap();
            total += r.json::<Value>().await.unwrap().as_u64().unwrap();
        }
        total
    }
}

impl Drop for Chroma {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
