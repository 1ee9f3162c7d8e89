//! The real binary as a long-running server: `robeing serve` in its own
//! process, on a free loopback port, with exactly the environment a test
//! gives it — so a test can SIGKILL it mid-work and start it again on the
//! same database and port, as a crash and a supervisor's restart would.

use std::{path::PathBuf, process::Stdio, time::Duration};

use nix::{sys::signal, unistd::Pid};

/// How long a cold `robeing serve` may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(45);

/// A `robeing serve` process.
pub struct Server {
    pub port: u16,
    pub address: String,
    vars: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    /// Processes started so far (1 = the first).
    pub starts: u32,
    http: reqwest::Client,
}

impl Server {
    /// Starts `robeing serve` with `vars` (plus PATH, `ROBEING_LISTEN` and
    /// JSON logs) in a fresh working directory, and waits until it says it
    /// is ready. It binds port 0 and the port is read from its own "robeing
    /// is ready" log line, so a port another test took meanwhile can never
    /// be mistaken for this server.
    pub async fn start(vars: Vec<(String, String)>) -> Self {
        robeing::startup::install_crypto_provider();
        let mut s = Self {
            port: 0,
            address: String::new(),
            vars,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap(),
        };
        s.spawn().await;
        s
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("serve-{n}.log"))
    }

    /// Everything every process wrote (for failure messages).
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| format!("--- process {n} ---\n{}", std::fs::read_to_string(self.log_path(n)).unwrap_or_default()))
            .collect()
    }

    /// The port the current process announced in its "robeing is ready" line.
    fn announced_port(&self) -> Option<u16> {
        let log = std::fs::read_to_string(self.log_path(self.starts)).ok()?;
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "robeing is ready")
            .and_then(|v| v["port"].as_u64())
            .map(|p| p as u16)
    }

    /// Runs the binary on `self.port` (0 on the first start: any free port;
    /// a restart keeps the port, as a supervisor's restart would).
    async fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_robeing"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env("ROBEING_LISTEN", format!("127.0.0.1:{}", self.port))
            .arg("serve")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("starting the robeing binary"));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("robeing serve exited with {status} during start-up:\n{}", self.logs());
            }
            if let Some(port) = self.announced_port() {
                assert!(self.port == 0 || self.port == port, "restarted on another port");
                self.port = port;
                self.address = format!("http://127.0.0.1:{port}");
                if let Ok(r) = self.http.get(format!("{}/healthz", self.address)).send().await
                    && r.status().is_success()
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "robeing serve did not get ready in time:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("a running process")
    }

    /// SIGKILL: no shutdown, no draining, no last words. Waits until the
    /// process is gone and its port refuses connections.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("a running process");
        let pid = child.id().expect("the process has not been reaped") as i32;
        signal::kill(Pid::from_raw(pid), signal::SIGKILL).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "killed by SIGKILL");
    }

    /// Starts the binary again with the same environment and port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill or stop the running process first");
        self.spawn().await;
    }

    /// SIGTERM (graceful shutdown) and wait.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = signal::kill(Pid::from_raw(pid as i32), signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}
