//! `robeing console`: a terminal transport beside Socket Mode and HTTP.
//!
//! Each line typed becomes a Slack-shaped DM event from a local console user
//! ([`USER_ID`] in workspace [`TEAM_ID`], channel [`CHANNEL_ID`]), recorded
//! through the same [`crate::pipeline::Ingest`] as a Slack event (source
//! `console`) and answered by the same event handling, conversation code,
//! storage and memory jobs as a real DM. The one difference is the last
//! step: the conversation's single write path sees [`AppState::console`]
//! and, for the console channel only, hands the text to the [`Sink`], which
//! prints it here instead of posting to Slack. `/brief` prints the briefing
//! as text (the `brief --dry-run` path: nothing recorded); `/quit` or end
//! of input ends the session, after the session's memory writes are done.

use std::{
    io::{IsTerminal as _, Write as _},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    sync::mpsc,
};

use crate::{
    config::Config,
    error::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK},
    startup::{AppState, Assembled, assemble, install_crypto_provider, open_database},
    storage::{self, events::NewEvent, users::Profile},
};

/// The console's workspace, user and DM channel (Slack ids start with T, U
/// and D followed by upper-case letters and digits; `0CONSOLE` cannot be
/// issued by Slack, whose ids never contain these words in this shape).
pub const TEAM_ID: &str = "T0CONSOLE";
pub const USER_ID: &str = "U0CONSOLE";
pub const CHANNEL_ID: &str = "D0CONSOLE";

/// How long the console waits for one reply before giving the prompt back.
/// Longer than a reply attempt may take (the LLM timeout plus posting); a
/// reply still pending then stays queued and is printed when it comes.
const REPLY_WAIT: Duration = Duration::from_secs(150);
/// How often the console checks whether the exchange is final. Short enough
/// to feel immediate at a terminal, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

/// How long leaving the console waits for the session's memory writes
/// (ChromaDB upserts, queued when each reply is stored) to finish: a local
/// upsert takes tens of milliseconds, so this only runs out when ChromaDB
/// is down, and then the jobs stay queued for the next run.
const MEMORY_DRAIN: Duration = Duration::from_secs(10);

/// One message the conversation "posted" to the console.
#[derive(Debug)]
pub struct Out {
    pub ts: String,
    /// Escaped as for Slack (`&amp;`, `&lt;`, `&gt;`).
    pub text: String,
    /// The ts of the message this replaces (a placeholder), if any.
    pub replaces: Option<String>,
}

/// Where the conversation writes in a console session.
pub struct Sink {
    tx: mpsc::UnboundedSender<Out>,
    next: AtomicU64,
}

impl Sink {
    pub fn new(tx: mpsc::UnboundedSender<Out>) -> Self {
        Self { tx, next: AtomicU64::new(1) }
    }

    /// Takes one message (new, or replacing `update`) and returns its ts:
    /// `console.<n>` for a new message, the same ts for an update.
    pub fn write(&self, text: &str, update: Option<&str>) -> String {
        let ts = match update {
            Some(ts) => ts.to_owned(),
            None => format!("console.{}", self.next.fetch_add(1, Ordering::Relaxed)),
        };
        // The receiver is gone only when the session ends; the text is then stored anyway.
        let _ = self.tx.send(Out { ts: ts.clone(), text: text.to_owned(), replaces: update.map(str::to_owned) });
        ts
    }
}

/// Undoes Slack's mrkdwn escaping for the terminal.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The Slack locale for a POSIX `LANG` (`ko_KR.UTF-8` → `ko-KR`).
pub fn locale_of(lang: Option<&str>) -> &'static str {
    match lang {
        Some(l) if l.to_ascii_lowercase().starts_with("ko") => "ko-KR",
        _ => "en-US",
    }
}

/// `robeing console`.
pub async fn run(config: Config) -> i32 {
    install_crypto_provider();
    let db = match open_database(&config).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("robeing: {e}");
            return e.exit_code;
        }
    };
    let target = db.target.clone();
    let embedded = db.embedded.clone();
    let Assembled { state, shutdown, ingest_task } = match assemble(config, db) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("robeing: {e}");
            return e.exit_code;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if state.console.set(Sink::new(tx)).is_err() {
        eprintln!("robeing: the console is already attached");
        return EXIT_FAILURE;
    }
    let workers = tokio::spawn(crate::jobs::run(state.clone(), state.wake_workers.clone(), shutdown.child_token()));
    let memory_writer = tokio::spawn(crate::memory::writer::run(state.clone(), shutdown.child_token()));
    let code = match prepare_user(&state).await {
        Ok(()) => {
            eprintln!(
                "robeing console on {target}: you are {USER_ID}. Type a message; /brief for your briefing, /quit to leave."
            );
            // Ctrl-C leaves like /quit, so the embedded database is stopped cleanly.
            tokio::select! {
                code = session(&state, &mut rx) => code,
                _ = tokio::signal::ctrl_c() => {
                    println!();
                    EXIT_OK
                }
            }
        }
        Err(e) => {
            eprintln!("robeing: preparing the console user: {e}");
            EXIT_FAILURE
        }
    };
    if state.memory.is_some() {
        drain_memory(&state).await;
    }
    shutdown.cancel();
    let _ = ingest_task.await;
    let _ = workers.await;
    let _ = memory_writer.await;
    state.db.close().await;
    if let Some(pg) = embedded {
        let _ = pg.stop().await;
    }
    code
}

/// Waits (at most [`MEMORY_DRAIN`]) until no memory write is pending.
async fn drain_memory(state: &AppState) {
    let deadline = tokio::time::Instant::now() + MEMORY_DRAIN;
    loop {
        let pending: i64 = match storage::jobs::backlog(&state.db).await {
            Ok(rows) => rows.iter().filter(|b| b.kind == crate::memory::UPSERT_JOB).map(|b| b.pending).sum(),
            Err(e) => {
                eprintln!("robeing: reading the memory backlog: {e}");
                return;
            }
        };
        if pending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "robeing: {pending} memory write(s) still queued (is ChromaDB reachable?); the next robeing run finishes them"
            );
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The console workspace and user, named from `$USER`, in `$LANG`'s
/// language and `DEFAULT_TIMEZONE`. Its daily briefing is off: a `serve`
/// sharing the database must not try to post one to Slack.
async fn prepare_user(state: &AppState) -> Result<(), sqlx::Error> {
    let name = std::env::var("USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "console".into());
    let profile = Profile {
        real_name: Some(name.clone()),
        display_name: Some(name),
        tz: Some(state.config.default_timezone.name().to_owned()),
        locale: Some(locale_of(std::env::var("LANG").ok().as_deref()).to_owned()),
    };
    let mut tx = state.db.begin().await?;
    storage::users::ensure_team(&mut *tx, TEAM_ID).await?;
    storage::users::upsert_profile(&mut *tx, TEAM_ID, USER_ID, &profile).await?;
    storage::users::set_dm_channel(&mut *tx, USER_ID, CHANNEL_ID).await?;
    storage::briefings::set_briefing_enabled(&mut *tx, USER_ID, false).await?;
    tx.commit().await
}

async fn session(state: &Arc<AppState>, rx: &mut mpsc::UnboundedReceiver<Out>) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut last_ts = String::new();
    loop {
        if interactive {
            print!("you> ");
            let _ = std::io::stdout().flush();
        }
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return EXIT_OK,
            Err(e) => {
                eprintln!("robeing: reading the terminal: {e}");
                return EXIT_FAILURE;
            }
        };
        let text = line.trim();
        match text {
            "" => continue,
            "/quit" | "/exit" => return EXIT_OK,
            "/brief" => {
                if let Err(code) = brief(state).await {
                    return code;
                }
                continue;
            }
            _ => {}
        }
        let ts = next_ts(&mut last_ts);
        let event = NewEvent {
            event_id: format!("Ev0CONSOLE{}", ts.replace('.', "")),
            team_id: Some(TEAM_ID.into()),
            kind: "message".into(),
            source: "console",
            retry_num: None,
            payload: serde_json::json!({
                "type": "event_callback",
                "team_id": TEAM_ID,
                "event_id": format!("Ev0CONSOLE{}", ts.replace('.', "")),
                "event": {
                    "type": "message",
                    "channel_type": "im",
                    "channel": CHANNEL_ID,
                    "user": USER_ID,
                    "ts": ts,
                    "text": text,
                },
            }),
        };
        if let Err(e) = state.ingest.record(event).await {
            eprintln!("robeing: {e}");
            return EXIT_FAILURE;
        }
        wait_for_reply(state, rx, &ts).await;
    }
}

/// A Slack-style message ts (`seconds.micros`), strictly increasing.
fn next_ts(last: &mut String) -> String {
    let now = chrono::Utc::now();
    let mut ts = format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros());
    if ts <= *last {
        let (s, us) = last.split_once('.').unwrap_or(("0", "0"));
        let us: u64 = us.parse().unwrap_or(0) + 1;
        ts = format!("{s}.{us:06}");
    }
    last.clone_from(&ts);
    ts
}

/// Prints what the conversation says until the exchange is final.
async fn wait_for_reply(state: &AppState, rx: &mut mpsc::UnboundedReceiver<Out>, ts: &str) {
    let deadline = tokio::time::Instant::now() + REPLY_WAIT;
    loop {
        tokio::select! {
            Some(out) = rx.recv() => print_out(&out),
            _ = tokio::time::sleep(POLL) => {
                let done = matches!(
                    storage::exchanges::by_message(&state.db, CHANNEL_ID, ts).await,
                    Ok(Some(e)) if e.is_final()
                );
                if done {
                    while let Ok(out) = rx.try_recv() {
                        print_out(&out);
                    }
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    eprintln!("robeing: no reply yet; it stays queued and is printed here when it comes");
                    return;
                }
            }
        }
    }
}

fn print_out(out: &Out) {
    let label = if out.replaces.is_some() { "robeing (edited)" } else { "robeing" };
    println!("{label}> {}", unescape(&out.text));
    let _ = std::io::stdout().flush();
}

/// `/brief`: the console user's briefing as text, as `brief --dry-run` builds it.
async fn brief(state: &AppState) -> Result<(), i32> {
    let user = match storage::users::get(&state.db, USER_ID).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            eprintln!("robeing: the console user is missing");
            return Err(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("robeing: reading the console user: {e}");
            return Err(EXIT_FAILURE);
        }
    };
    let tz = crate::briefing::scheduler::user_tz(state, user.tz.as_deref());
    let date = chrono::Utc::now().with_timezone(&tz).date_naive();
    let (_, rendered) = crate::briefing::deliver::build(state, &user, None, date).await;
    println!("{}", crate::briefing::render::to_terminal(&rendered));
    let _ = std::io::stdout().flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_follows_lang() {
        assert_eq!(locale_of(Some("ko_KR.UTF-8")), "ko-KR");
        assert_eq!(locale_of(Some("en_US.UTF-8")), "en-US");
        assert_eq!(locale_of(Some("C")), "en-US");
        assert_eq!(locale_of(None), "en-US");
    }

    #[test]
    fn sink_numbers_new_messages_and_keeps_updated_ts() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = Sink::new(tx);
        assert_eq!(sink.write("a", None), "console.1");
        assert_eq!(sink.write("b", None), "console.2");
        assert_eq!(sink.write("c", Some("console.1")), "console.1");
        let outs: Vec<Out> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(outs.len(), 3);
        assert_eq!(outs[2].replaces.as_deref(), Some("console.1"));
        assert_eq!(unescape("&lt;!channel&gt; &amp;amp;"), "<!channel> &amp;");
    }
}
