//! The embedded default: with `DATABASE_URL` unset, robeing runs a private
//! PostgreSQL under `ROBEING_DATA_DIR/postgres`, driving Debian's installed
//! `initdb` and `pg_ctl` (no download, works offline).
//!
//! Layout under the data dir:
//! - `postgres/data`: the cluster (created by `initdb` on first start);
//! - `postgres/run`: its Unix socket — the server listens on no TCP port at all;
//! - `postgres/log/postgres.log`: the server's own log.
//!
//! PostgreSQL refuses to run as root, so when robeing is root the cluster is
//! owned by, and the server runs as, the `postgres` system user (or `nobody`).

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use nix::unistd::{Gid, Uid, User};
use sqlx::{Connection as _, postgres::PgConnectOptions};

/// The database robeing uses inside its private cluster.
pub const DATABASE: &str = "robeing";
/// Port number of the socket file; nothing listens on TCP.
const PORT: u16 = 5432;

/// A running private PostgreSQL.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    run_as: Option<(Uid, Gid)>,
}

impl EmbeddedPostgres {
    /// Initialises the cluster if needed and starts it (or adopts one that is
    /// already running from an earlier process).
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir().context(
            "no PostgreSQL server binaries found for the embedded database. Fix: install Debian's `postgresql` package, or set DATABASE_URL",
        )?;
        let base = root.join("postgres");
        let this = Self {
            bin_dir,
            data_dir: base.join("data"),
            socket_dir: base.join("run"),
            log_file: base.join("log").join("postgres.log"),
            run_as: unprivileged_user()?,
        };
        this.prepare_dirs(root, &base)?;
        if !this.data_dir.join("PG_VERSION").exists() {
            this.initdb().await?;
        }
        if !this.is_running().await {
            this.run(this.pg_ctl(&["-l", path_str(&this.log_file)?, "-w", "-t", "60", "start"]))
                .await
                .with_context(|| format!("starting the embedded PostgreSQL (its log: {})", this.log_file.display()))?;
        }
        this.ensure_database().await?;
        Ok(this)
    }

    /// Connection options for robeing's database in this cluster.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(PORT).username("postgres").database(DATABASE)
    }

    /// Where the data lives, for the start-up summary.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server (fast shutdown: open transactions roll back).
    pub async fn stop(&self) -> anyhow::Result<()> {
        if self.is_running().await {
            self.run(self.pg_ctl(&["-m", "fast", "-w", "-t", "60", "stop"]))
                .await
                .context("stopping the embedded PostgreSQL")?;
        }
        Ok(())
    }

    async fn is_running(&self) -> bool {
        match self.pg_ctl(&["status"]).output().await {
            Ok(out) => out.status.success(),
            Err(_) => false,
        }
    }

    fn prepare_dirs(&self, root: &Path, base: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(root).with_context(|| format!("creating ROBEING_DATA_DIR {}", root.display()))?;
        for dir in
            [base.to_path_buf(), self.socket_dir.clone(), self.log_file.parent().expect("log has a dir").to_path_buf()]
        {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Some((uid, gid)) = self.run_as {
            // The server's user must be able to reach its directories.
            for dir in root.ancestors() {
                let meta = std::fs::metadata(dir)?;
                if meta.permissions().mode() & 0o001 == 0 {
                    if dir == root || dir.starts_with(root) {
                        let mut p = meta.permissions();
                        p.set_mode(p.mode() | 0o711);
                        std::fs::set_permissions(dir, p)?;
                    } else {
                        bail!(
                            "ROBEING_DATA_DIR {} lies under {}, which the `postgres` user cannot enter. Fix: set ROBEING_DATA_DIR to a directory such as /var/lib/robeing",
                            root.display(),
                            dir.display()
                        );
                    }
                }
            }
            for dir in [
                base.to_path_buf(),
                self.socket_dir.clone(),
                self.log_file.parent().expect("log has a dir").to_path_buf(),
            ] {
                nix::unistd::chown(&dir, Some(uid), Some(gid))
                    .with_context(|| format!("handing {} to the postgres user", dir.display()))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        let mut cmd = self.command("initdb");
        cmd.args([
            "-D",
            path_str(&self.data_dir)?,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ]);
        self.run(cmd).await.context("initialising the embedded PostgreSQL cluster (initdb)")?;
        let conf = format!(
            "\n# robeing: private cluster, Unix socket only\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\nmax_connections = 60\n",
            self.socket_dir.display()
        );
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("writing postgresql.conf of the embedded cluster")
    }

    async fn ensure_database(&self) -> anyhow::Result<()> {
        let admin = self.connect_options().database("postgres");
        let mut conn =
            sqlx::PgConnection::connect_with(&admin).await.context("connecting to the embedded PostgreSQL")?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            sqlx::query("CREATE DATABASE robeing").execute(&mut conn).await.context("creating the robeing database")?;
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args(args);
        cmd
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = std::process::Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C.UTF-8").stdin(std::process::Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
            // initdb and pg_ctl resolve their cwd; root's home is not readable.
            cmd.current_dir("/");
        }
        tokio::process::Command::from(cmd)
    }

    async fn run(&self, mut cmd: tokio::process::Command) -> anyhow::Result<()> {
        let out = cmd.output().await.context("running a PostgreSQL program")?;
        if !out.status.success() {
            bail!("{} {}", String::from_utf8_lossy(&out.stderr).trim(), String::from_utf8_lossy(&out.stdout).trim());
        }
        Ok(())
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, or `pg_config --bindir`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = std::process::Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").exists().then_some(bin)
}

/// When we are root: the user the server runs as.
fn unprivileged_user() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(u) = User::from_name(name)? {
            return Ok(Some((u.uid, u.gid)));
        }
    }
    bail!(
        "running as root and there is no `postgres` or `nobody` user to run the embedded PostgreSQL. Fix: run robeing as an ordinary user, or set DATABASE_URL"
    )
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().with_context(|| format!("path {} is not UTF-8", p.display()))
}
