//! Postgres: the system of record. This module owns the connection pool, the
//! migrations, the start-up canary and every SQL statement robeing runs (one
//! file per aggregate below). Query functions take `impl PgExecutor<'_>` so a
//! caller can run them on the pool or inside its own transaction.
//!
//! Connecting never fails quietly: [`connect`] tries once, with a bounded
//! timeout, and turns every failure into a [`DatabaseError`] whose message
//! names the host, port and database it tried, so the seed's `auth_db` instead
//! of `main_db` is visible in one line.

pub mod briefings;
pub mod embedded;
pub mod events;
pub mod exchanges;
pub mod gmail;
pub mod health;
pub mod jobs;
pub mod oauth_states;
pub mod retention;
pub mod users;

use std::time::Duration;

use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// How long start-up waits for Postgres before saying it is unreachable. Long
/// enough for a database on the LAN under load, short enough that a wrong
/// host is reported before an operator gives up on the command.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool size: the HTTP ingest group-commits, so a handful of connections
/// serve thousands of events per second; workers and readiness take the rest.
pub const POOL_SIZE: u32 = 16;

/// A database we could not use, described so that the fix is obvious.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "database `{database}` does not exist on {host}:{port}. Fix: check the database name in DATABASE_URL (create it with `createdb {database}` if it is new)"
    )]
    UnknownDatabase { host: String, port: u16, database: String },
    #[error(
        "cannot reach PostgreSQL at {host}:{port} (database `{database}`): {cause}. Fix: check the host and port in DATABASE_URL and that PostgreSQL is running"
    )]
    Unreachable { host: String, port: u16, database: String, cause: String },
    #[error(
        "PostgreSQL at {host}:{port} refused user `{user}` for database `{database}`: {cause}. Fix: check the user and password in DATABASE_URL"
    )]
    AuthFailed { host: String, port: u16, database: String, user: String, cause: String },
    #[error("PostgreSQL at {host}:{port}, database `{database}`: {cause}")]
    Other { host: String, port: u16, database: String, cause: String },
    #[error("DATABASE_URL is not a valid Postgres URL: {0}")]
    BadUrl(String),
}

/// Where a connection goes, for messages (never includes the password).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

impl Target {
    pub fn of(options: &PgConnectOptions) -> Self {
        Self {
            host: options
                .get_socket()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| options.get_host().to_owned()),
            port: options.get_port(),
            database: options.get_database().unwrap_or(options.get_username()).to_owned(),
            user: options.get_username().to_owned(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database `{}` on {}:{} as `{}`", self.database, self.host, self.port, self.user)
    }
}

/// A password-free description of a `DATABASE_URL`.
pub fn describe_url(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(o) => Target::of(&o).to_string(),
        Err(_) => "an unparsable DATABASE_URL".into(),
    }
}

/// Connects eagerly: one test connection with a bounded timeout, classified
/// into a message that names the target, then the pool.
pub async fn connect(options: PgConnectOptions) -> Result<PgPool, DatabaseError> {
    let target = Target::of(&options);
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options)).await;
    match probe {
        Err(_) => {
            return Err(DatabaseError::Unreachable {
                host: target.host,
                port: target.port,
                database: target.database,
                cause: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            });
        }
        Ok(Err(e)) => return Err(classify(&target, e)),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
    }
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| classify(&target, e))
}

/// Parses a URL into options, mapping a parse failure to [`DatabaseError::BadUrl`].
///
/// A loopback host with no `sslmode` in the URL connects without TLS: on
/// loopback TLS protects nothing, and negotiating it (libpq's and sqlx's
/// default `prefer`) cost about 100 ms per new connection here — a third of
/// start-up, and a stall whenever the pool grows under load. Worse, sqlx
/// 0.9.0 no longer sets `TCP_NODELAY` (sqlx#4335): a statement larger than
/// one TLS record (16 KB, e.g. a group commit of a few dozen events) waited
/// about 40 ms for a delayed ACK, which cost the ingest benchmark a factor of
/// four. A remote database with TLS still has that stall on large statements
/// until sqlx ships the fix. An explicit `sslmode` is always obeyed.
pub fn options_from_url(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    let options = url.parse::<PgConnectOptions>().map_err(|e| DatabaseError::BadUrl(e.to_string()))?;
    let explicit_sslmode =
        url::Url::parse(url).map(|u| u.query_pairs().any(|(k, _)| k == "sslmode" || k == "ssl-mode")).unwrap_or(true);
    let host = options.get_host();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if loopback && !explicit_sslmode {
        return Ok(options.ssl_mode(sqlx::postgres::PgSslMode::Disable));
    }
    Ok(options)
}

fn classify(t: &Target, e: sqlx::Error) -> DatabaseError {
    let (host, port, database) = (t.host.clone(), t.port, t.database.clone());
    if let Some(db) = e.as_database_error() {
        match db.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => return DatabaseError::UnknownDatabase { host, port, database },
            // invalid_password, invalid_authorization_specification
            Some("28P01") | Some("28000") => {
                return DatabaseError::AuthFailed {
                    host,
                    port,
                    database,
                    user: t.user.clone(),
                    cause: db.message().to_owned(),
                };
            }
            _ => {}
        }
    }
    match e {
        sqlx::Error::Io(io) => DatabaseError::Unreachable { host, port, database, cause: io.to_string() },
        sqlx::Error::PoolTimedOut => DatabaseError::Unreachable { host, port, database, cause: "timed out".into() },
        other => DatabaseError::Other { host, port, database, cause: other.to_string() },
    }
}

/// The embedded migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    MIGRATOR.run(pool).await.context("applying database migrations")
}

/// Migrations the binary knows that the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}

/// Writes and reads back the canary row, so a read-only or broken database
/// is found at start-up rather than at the first user message.
pub async fn write_canary(pool: &PgPool, instance: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let written = sqlx::query_scalar!(
        r#"INSERT INTO startup_canary (id, instance, written_at) VALUES (1, $1, now())
           ON CONFLICT (id) DO UPDATE SET instance = EXCLUDED.instance, written_at = EXCLUDED.written_at
           RETURNING instance"#,
        instance
    )
    .fetch_one(pool)
    .await
    .context("writing the start-up canary row (is the database read-only?)")?;
    anyhow::ensure!(written == instance, "the start-up canary row read back `{written}`, expected `{instance}`");
    Ok(())
}

/// A cheap round trip for readiness.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(pool).await.map(|_| ())
}

/// The name of the database the pool is connected to, as Postgres reports it.
pub async fn current_database(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!("SELECT current_database() AS \"db!\"").fetch_one(pool).await
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgSslMode;

    use super::*;

    #[test]
    fn tls_is_skipped_only_on_loopback_without_an_explicit_sslmode() {
        let mode = |url: &str| options_from_url(url).unwrap().get_ssl_mode();
        assert!(matches!(mode("postgres://u@127.0.0.1:5432/main_db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@localhost/main_db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@127.0.0.1/main_db?sslmode=require"), PgSslMode::Require));
        assert!(matches!(mode("postgres://u@db.internal/main_db"), PgSslMode::Prefer));
    }

    #[test]
    fn descriptions_name_the_database_but_not_the_password() {
        let d = describe_url("postgres://robeing:hunter2@10.0.0.5:6543/auth_db");
        assert!(d.contains("auth_db") && d.contains("10.0.0.5:6543") && !d.contains("hunter2"), "{d}");
    }
}
