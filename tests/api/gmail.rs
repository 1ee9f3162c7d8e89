//! Gmail connection: the OAuth flow through the real routes, the token vault,
//! refresh, reconnect prompts and the Gmail client — against real Postgres, a
//! fake Google (tests/fakes/google.rs) and the fake Slack.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use robeing::google::{
    self, GmailAccessError, links,
    vault::{Purpose, Vault},
};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};

use crate::{
    fakes::gmail::BATCH_PATH,
    fakes::google::{Consent, EMAIL, FakeGoogle, GMAIL_SCOPE},
    fakes::recorder::{Recorded, Scripted},
    helpers::{Options, TestApp, spawn_app_with},
};

const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const OTHER_KEY: &str = "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";
const USER: &str = "U0KIMJT01";
const WAIT: Duration = Duration::from_secs(10);

struct Env {
    app: TestApp,
    google: FakeGoogle,
    browser: reqwest::Client,
}

async fn setup_with(extra: Vec<(String, String)>) -> Env {
    let google = FakeGoogle::start().await;
    let mut vars = google.vars();
    vars.push(("TOKEN_ENCRYPTION_KEY".into(), KEY.into()));
    vars.extend(extra);
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    robeing::storage::users::ensure_team(&app.db, "T0ROBEING").await.unwrap();
    let profile = robeing::storage::users::Profile { display_name: Some("김종태".into()), ..Default::default() };
    robeing::storage::users::upsert_profile(&app.db, "T0ROBEING", USER, &profile).await.unwrap();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Env { app, google, browser }
}

async fn setup() -> Env {
    setup_with(Vec::new()).await
}

impl Env {
    /// A robeing URL (made with ROBEING_PUBLIC_URL) rewritten to the test app's address.
    fn local(&self, url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!("{}{}?{}", self.app.address, u.path(), u.query().unwrap_or(""))
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.browser.get(url).send().await.unwrap()
    }

    fn link(&self) -> String {
        google::connect_link(&self.app.state.config, USER).unwrap().to_string()
    }

    /// Clicks the link: robeing redirects to Google. Returns Google's URL.
    async fn start(&self, link: &str) -> url::Url {
        let r = self.get(&self.local(link)).await;
        assert_eq!(r.status(), 302, "start redirects to Google");
        url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// Google's consent screen answers: returns robeing's callback URL (local).
    async fn consent(&self, auth_url: &url::Url) -> String {
        let r = self.get(auth_url.as_str()).await;
        assert_eq!(r.status(), 302);
        self.local(r.headers()["location"].to_str().unwrap())
    }

    /// The whole browser dance; returns the callback's status and page.
    async fn connect_via(&self, link: &str) -> (u16, String) {
        let auth = self.start(link).await;
        let callback = self.consent(&auth).await;
        let r = self.get(&callback).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn connect(&self) -> (u16, String) {
        self.connect_via(&self.link()).await
    }

    fn vault(&self) -> Vault {
        Vault::from_config(&self.app.state.config).unwrap()
    }

    async fn row(&self) -> Option<robeing::storage::gmail::Connection> {
        robeing::storage::gmail::get(&self.app.db, USER).await.unwrap()
    }

    fn stored_refresh(&self, c: &robeing::storage::gmail::Connection) -> String {
        self.vault()
            .decrypt(
                c.token_key_id.as_deref().unwrap(),
                USER,
                Purpose::Refresh,
                c.refresh_token_ciphertext.as_deref().unwrap(),
            )
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    async fn expire_access_token(&self) {
        sqlx::query(
            "UPDATE gmail_connections SET access_token_expires_at = now() + interval '2 minutes' WHERE user_id = $1",
        )
        .bind(USER)
        .execute(&self.app.db)
        .await
        .unwrap();
    }

    fn posts(&self) -> Vec<Recorded> {
        self.app.slack.requests_to("/api/chat.postMessage")
    }

    fn posts_containing(&self, needle: &str) -> Vec<Recorded> {
        self.posts().into_iter().filter(|r| String::from_utf8_lossy(&r.body).contains(needle)).collect()
    }

    async fn wait_for_post(&self, needle: &str, count: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.posts_containing(needle);
            if got.len() >= count || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Every text, bytea, jsonb and text[] value in every table of the public
/// schema that contains `needle` (as text or as raw bytes).
async fn tables_containing(db: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type IN ('text', 'bytea', 'jsonb', 'json', 'character varying', 'ARRAY')",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(columns.iter().any(|(t, c, _)| t == "gmail_connections" && c == "refresh_token_ciphertext"));
    let mut hits = Vec::new();
    for (table, column, kind) in columns {
        let condition = if kind == "bytea" {
            format!("position(convert_to($1, 'UTF8') in \"{column}\") > 0")
        } else {
            format!("position($1 in \"{column}\"::text) > 0")
        };
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{table}\" WHERE {condition}")))
                .bind(needle)
                .fetch_one(db)
                .await
                .unwrap();
        if n > 0 {
            hits.push(format!("{table}.{column}"));
        }
    }
    hits
}

#[tokio::test]
async fn the_connect_flow_stores_a_connected_row_whose_tokens_decrypt_to_what_google_issued() {
    let env = setup().await;
    let link = env.link();
    assert!(!link.contains(USER), "no bare user id in the link: {link}");

    let auth = env.start(&link).await;
    assert!(auth.as_str().starts_with(&env.google.server.url("/o/oauth2/v2/auth")), "{auth}");
    assert_eq!(param(&auth, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&auth, "client_id").as_deref(), Some(crate::fakes::google::CLIENT_ID));
    assert_eq!(param(&auth, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&auth, "access_type").as_deref(), Some("offline"));
    assert_eq!(param(&auth, "prompt").as_deref(), Some("consent"));
    assert_eq!(param(&auth, "redirect_uri").as_deref(), Some("http://localhost:3000/oauth/google/callback"));
    let scopes = param(&auth, "scope").unwrap();
    for s in [GMAIL_SCOPE, "openid", "email"] {
        assert!(scopes.split(' ').any(|x| x == s), "scope {s} requested: {scopes}");
    }
    let state = param(&auth, "state").unwrap();
    let challenge = param(&auth, "code_challenge").unwrap();
    assert!(state.len() >= 40, "state is long and random: {state}");

    let callback = env.consent(&auth).await;
    let page = env.get(&callback).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = page.text().await.unwrap();
    assert!(body.contains("Gmail connected") && body.contains(EMAIL) && body.contains("김종태"), "{body}");

    // The code was exchanged once, with the verifier matching the challenge.
    let exchanges = env.google.token_requests("authorization_code");
    assert_eq!(exchanges.len(), 1);
    let verifier = exchanges[0].form()["code_verifier"].clone();
    assert_eq!(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())), challenge);

    let row = env.row().await.unwrap();
    assert_eq!(row.state, "connected");
    assert_eq!(row.google_email.as_deref(), Some(EMAIL));
    assert_eq!(row.token_key_id.as_deref(), Some(env.vault().current_key_id()));
    assert!(row.scopes.iter().any(|s| s == GMAIL_SCOPE), "{:?}", row.scopes);
    let refresh = env.stored_refresh(&row);
    assert!(refresh.starts_with("1//0fake-refresh-") && env.google.is_live_refresh(&refresh), "{refresh}");
    let access = env
        .vault()
        .decrypt(
            row.token_key_id.as_deref().unwrap(),
            USER,
            Purpose::Access,
            row.access_token_ciphertext.as_deref().unwrap(),
        )
        .unwrap();
    assert!(env.google.issued().contains(&access.expose_secret().to_owned()));
    assert!(row.access_token_expires_at.unwrap() > Utc::now() + chrono::Duration::minutes(50));

    // The state is stored only as its hash, and is now used.
    let used: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT used_at FROM oauth_states WHERE state_hash = $1")
            .bind(Sha256::digest(state.as_bytes()).to_vec())
            .fetch_one(&env.app.db)
            .await
            .unwrap();
    assert!(used.is_some());

    // The user is told in Slack, once.
    let dms = env.wait_for_post("Gmail connected as kim@example.com", 1).await;
    assert_eq!(dms.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.posts().len(), 1, "nothing else was posted");

    // No secret is stored in plain text anywhere, or shown in /readyz.
    let mut secrets = env.google.issued();
    secrets.push(state.clone());
    secrets.push(crate::fakes::google::CLIENT_SECRET.into());
    assert!(secrets.len() >= 5, "{secrets:?}");
    // The scan does find what is stored in plain text (the address is not secret).
    assert_eq!(tables_containing(&env.app.db, EMAIL).await, ["gmail_connections.google_email"]);
    let readyz = env.app.get("/readyz").await.text().await.unwrap();
    for secret in &secrets {
        let hits = tables_containing(&env.app.db, secret).await;
        assert!(hits.is_empty(), "`{secret}` stored in plain text in {hits:?}");
        assert!(!readyz.contains(secret.as_str()));
    }
}

#[tokio::test]
async fn reused_expired_forged_and_duplicated_states_are_rejected() {
    let env = setup().await;
    // A completed flow's callback, replayed.
    let auth = env.start(&env.link()).await;
    let callback = env.consent(&auth).await;
    assert_eq!(env.get(&callback).await.status(), 200);
    env.wait_for_post("Gmail connected as", 1).await;
    let replay = env.get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already used"));
    assert_eq!(env.wait_for_post("already used", 1).await.len(), 1, "the user is told what to do");

    // A flow whose ten minutes passed.
    let auth = env.start(&env.link()).await;
    let state = param(&auth, "state").unwrap();
    sqlx::query(
        "UPDATE oauth_states SET created_at = now() - interval '20 minutes', expires_at = now() - interval '10 minutes'
         WHERE state_hash = $1",
    )
    .bind(Sha256::digest(state.as_bytes()).to_vec())
    .execute(&env.app.db)
    .await
    .unwrap();
    let callback = env.consent(&auth).await;
    let expired = env.get(&callback).await;
    assert_eq!(expired.status(), 400);
    assert!(expired.text().await.unwrap().contains("expired"));

    // A state robeing never issued.
    let forged =
        env.get(&format!("{}/oauth/google/callback?state=forged-state-value&code=4/0x", env.app.address)).await;
    assert_eq!(forged.status(), 400);
    assert!(forged.text().await.unwrap().contains("not valid"));

    // Two states, two codes, code and error together, or no state: refused.
    let auth = env.start(&env.link()).await;
    let state = param(&auth, "state").unwrap();
    for query in [
        format!("state={state}&state=other&code=c"),
        format!("state={state}&code=a&code=b"),
        format!("state={state}&code=a&error=access_denied"),
        "code=a".to_owned(),
    ] {
        let r = env.get(&format!("{}/oauth/google/callback?{query}", env.app.address)).await;
        assert_eq!(r.status(), 400, "{query}");
    }
    // ...and none of those consumed the legitimate state.
    let callback = env.consent(&auth).await;
    assert_eq!(env.get(&callback).await.status(), 200);

    // Only the two genuine flows reached Google's token endpoint.
    assert_eq!(env.google.token_requests("authorization_code").len(), 2);
}

#[tokio::test]
async fn only_signed_unexpired_links_start_a_flow() {
    let env = setup().await;
    let base = format!("{}/oauth/google/start", env.app.address);
    for bad in [base.clone(), format!("{base}?t=garbage"), format!("{base}?t={USER}"), format!("{base}?user={USER}")] {
        let r = env.get(&bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().contains("not valid"));
    }
    let t = param(&url::Url::parse(&env.link()).unwrap(), "t").unwrap();
    assert_eq!(env.get(&format!("{base}?t={t}&t={t}")).await.status(), 400);

    // A link signed with another key is forged.
    let forged =
        links::sign(&secrecy::SecretBox::new(Box::new([9u8; 32])), USER, Utc::now() + chrono::Duration::minutes(5));
    assert_eq!(env.get(&format!("{base}?t={forged}")).await.status(), 400);

    // An expired link: refused, and its user gets a fresh one in Slack.
    let old = links::connect_link_at(&env.app.state.config, USER, Utc::now() - chrono::Duration::hours(1)).unwrap();
    let r = env.get(&env.local(old.as_str())).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expired"));
    let dms = env.wait_for_post("fresh one", 1).await;
    assert_eq!(dms.len(), 1);
    let fresh = dms[0].json()["blocks"][1]["elements"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(
        links::verify(&env.app.state.config, &param(&url::Url::parse(&fresh).unwrap(), "t").unwrap(), Utc::now())
            .unwrap(),
        USER
    );

    let states: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_states").fetch_one(&env.app.db).await.unwrap();
    assert_eq!(states, 0, "no flow started");
    assert!(env.google.server.requests().is_empty(), "Google was never contacted");
}

#[tokio::test]
async fn declining_access_explains_and_offers_the_button_again() {
    let env = setup().await;
    env.google.set_consent(Consent::Deny);
    let (status, body) = env.connect().await;
    assert_eq!(status, 200);
    assert!(body.contains("declined"), "{body}");
    let dms = env.wait_for_post("declined", 1).await;
    assert_eq!(dms.len(), 1);
    assert!(dms[0].json()["blocks"][1]["elements"][0]["url"].as_str().unwrap().contains("/oauth/google/start?t="));
    assert!(env.row().await.is_none());
    assert!(env.google.token_requests("authorization_code").is_empty());
}

#[tokio::test]
async fn a_token_response_without_a_refresh_token_is_refused() {
    let env = setup().await;
    env.google.set_consent(Consent::NoRefreshToken);
    let (status, body) = env.connect().await;
    assert_eq!(status, 400);
    assert!(body.contains("lasting"), "{body}");
    assert_eq!(env.wait_for_post("myaccount.google.com/permissions", 1).await.len(), 1);
    assert!(env.row().await.is_none(), "nothing stored");
}

#[tokio::test]
async fn a_grant_without_the_gmail_scope_is_refused() {
    let env = setup().await;
    env.google.set_consent(Consent::WithoutGmail);
    let (status, body) = env.connect().await;
    assert_eq!(status, 400);
    assert!(body.contains("did not allow robeing to read your email"), "{body}");
    assert_eq!(env.wait_for_post("Read your email", 1).await.len(), 1);
    assert!(env.row().await.is_none(), "nothing stored");
    assert!(env.google.server.requests_to("/gmail/v1/users/me/profile").is_empty());
}

#[tokio::test]
async fn access_tokens_refresh_ahead_of_expiry_and_store_rotated_refresh_tokens() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    let state = &env.app.state;

    // Fresh: no refresh.
    let first = google::access_token(state, USER).await.unwrap();
    assert!(first.expose_secret().starts_with("ya29.fake-access-"));
    assert!(env.google.token_requests("refresh_token").is_empty());

    // Expiring within 5 minutes: refreshed, and the new one is stored.
    env.expire_access_token().await;
    let second = google::access_token(state, USER).await.unwrap();
    assert_ne!(second.expose_secret(), first.expose_secret());
    let refreshes = env.google.token_requests("refresh_token");
    assert_eq!(refreshes.len(), 1);
    let original_refresh = env.stored_refresh(&env.row().await.unwrap());
    assert_eq!(refreshes[0].form()["refresh_token"], original_refresh);
    assert_eq!(google::access_token(state, USER).await.unwrap().expose_secret(), second.expose_secret());
    assert_eq!(env.google.token_requests("refresh_token").len(), 1);

    // Google rotates the refresh token: the new one replaces the old.
    env.google.set_rotation(true);
    env.expire_access_token().await;
    google::access_token(state, USER).await.unwrap();
    let rotated = env.stored_refresh(&env.row().await.unwrap());
    assert_ne!(rotated, original_refresh);
    assert!(env.google.is_live_refresh(&rotated) && !env.google.is_live_refresh(&original_refresh));
    env.expire_access_token().await;
    google::access_token(state, USER).await.unwrap();
    assert_eq!(env.google.token_requests("refresh_token").last().unwrap().form()["refresh_token"], rotated);

    // Concurrent callers share one refresh.
    env.expire_access_token().await;
    let before = env.google.token_requests("refresh_token").len();
    let calls = (0..5).map(|_| {
        let state = state.clone();
        tokio::spawn(async move { google::access_token(&state, USER).await.map(|t| t.expose_secret().to_owned()) })
    });
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap().unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    assert_eq!(env.google.token_requests("refresh_token").len(), before + 1, "one refresh at a time per user");

    // Refreshed and rotated tokens are no more visible than the first ones.
    for secret in env.google.issued() {
        let hits = tables_containing(&env.app.db, &secret).await;
        assert!(hits.is_empty(), "`{secret}` stored in plain text in {hits:?}");
    }
}

#[tokio::test]
async fn transient_google_failures_are_retried_and_change_nothing() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.expire_access_token().await;
    let outage = || Scripted::json(503, serde_json::json!({ "error": "internal_failure" }));
    env.google.server.script("/token", [outage(), outage()]);
    assert!(google::access_token(&env.app.state, USER).await.is_ok(), "the third attempt succeeds");
    assert_eq!(env.google.token_requests("refresh_token").len(), 3);

    env.expire_access_token().await;
    env.google.server.script("/token", [outage(), outage(), outage()]);
    let err = google::access_token(&env.app.state, USER).await.unwrap_err();
    assert!(matches!(err, GmailAccessError::Temporary(_)), "{err:?}");
    let row = env.row().await.unwrap();
    assert_eq!(row.state, "connected", "a Google outage is not a broken connection");
    assert!(row.refresh_token_ciphertext.is_some());
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'gmail_reconnect_prompt'")
        .fetch_one(&env.app.db)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
}

#[tokio::test]
async fn invalid_grant_needs_reconnect_with_exactly_one_prompt_and_reconnecting_updates_it() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;
    env.google.revoke_all();
    env.expire_access_token().await;

    let err = google::access_token(&env.app.state, USER).await.unwrap_err();
    let GmailAccessError::NeedsReconnect { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("invalid_grant") && reason.contains("expired or revoked"), "{reason}");
    let row = env.row().await.unwrap();
    assert_eq!(row.state, "needs_reconnect");
    assert!(row.refresh_token_ciphertext.is_none() && row.access_token_ciphertext.is_none() && row.broken_at.is_some());

    let prompts = env.wait_for_post("Reconnect Gmail", 1).await;
    assert_eq!(prompts.len(), 1);
    let blocks = &prompts[0].json()["blocks"];
    let button = &blocks[1]["elements"][0];
    assert_eq!(button["text"]["text"], "Reconnect Gmail");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().contains("invalid_grant"), "says why");
    let link = button["url"].as_str().unwrap().to_owned();
    assert_eq!(
        links::verify(&env.app.state.config, &param(&url::Url::parse(&link).unwrap(), "t").unwrap(), Utc::now())
            .unwrap(),
        USER
    );

    // Later failures: no new refresh attempt, no new prompt.
    for _ in 0..3 {
        assert!(matches!(
            google::access_token(&env.app.state, USER).await,
            Err(GmailAccessError::NeedsReconnect { .. })
        ));
    }
    assert!(!google::prompt_if_needed(&env.app.state, USER).await.unwrap());
    assert_eq!(env.google.token_requests("refresh_token").len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.posts_containing("Reconnect Gmail").len(), 1, "one prompt per breakage");
    assert_eq!(env.posts().len(), 2, "the connected notice and the prompt, nothing else");
    let row = env.row().await.unwrap();
    assert!(row.reconnect_prompted_at.is_some());
    let (channel, ts) = (row.reconnect_prompt_channel.clone().unwrap(), row.reconnect_prompt_ts.clone().unwrap());

    // The single reminder before the next briefing.
    assert!(google::remind_before_briefing(&env.app.state, USER).await.unwrap());
    assert!(!google::remind_before_briefing(&env.app.state, USER).await.unwrap());
    assert_eq!(env.posts_containing("Reminder").len(), 1);

    // The button reconnects, and the prompt is updated in place.
    let (status, _) = env.connect_via(&link).await;
    assert_eq!(status, 200);
    assert_eq!(env.row().await.unwrap().state, "connected");
    let updates = env.app.slack.wait_for("/api/chat.update", 1, WAIT).await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].json()["channel"], channel.as_str());
    assert_eq!(updates[0].json()["ts"], ts.as_str());
    assert!(String::from_utf8_lossy(&updates[0].body).contains(EMAIL));
}

/// Asks robeing in the DM; returns the message it posted in answer.
async fn ask(env: &Env, n: u32, text: &str) -> serde_json::Value {
    let before = env.posts().len();
    let m = robeing::slack::events::DirectMessage {
        event_id: format!("Ev0ASKGMAIL{n}"),
        team_id: "T0ROBEING".into(),
        user_id: USER.into(),
        channel_id: "D0KIMJT01".into(),
        ts: format!("1764300000.00010{n}"),
        thread_ts: None,
        text: text.into(),
        files: Vec::new(),
        shared: Vec::new(),
    };
    robeing::conversation::handle_message(&env.app.state, &m, None).await.unwrap();
    let posts = env.posts();
    assert_eq!(posts.len(), before + 1, "one answer to {text:?}");
    posts[before].json()
}

/// The URL of the answer's button, checked to be this user's signed link.
fn button_link(env: &Env, answer: &serde_json::Value, label: &str) -> String {
    let button = &answer["blocks"][1]["elements"][0];
    assert_eq!(button["text"]["text"], label, "{answer}");
    let link = button["url"].as_str().unwrap().to_owned();
    let token = param(&url::Url::parse(&link).unwrap(), "t").unwrap();
    assert_eq!(links::verify(&env.app.state.config, &token, Utc::now()).unwrap(), USER);
    link
}

#[tokio::test]
async fn asking_in_the_dm_to_reconnect_gmail_answers_with_the_connection_and_its_button_even_with_an_llm() {
    let llm = crate::fakes::llm::start().await;
    let env = setup_with(vec![
        ("LLM_BASE_URL".into(), crate::fakes::llm::base_url(&llm)),
        ("LLM_MODEL".into(), crate::fakes::llm::MODEL.into()),
    ])
    .await;

    // Never connected: the Connect button, and it works.
    let answer = ask(&env, 1, "connect gmail").await;
    assert_eq!(answer["text"], "Connect Gmail to include your email in briefings.");
    let link = button_link(&env, &answer, "Connect Gmail");
    assert_eq!(env.connect_via(&link).await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;

    // Connected: says so, and offers to sign in again.
    let answer = ask(&env, 2, "지메일 재연결 해줘").await;
    let text = answer["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.starts_with("Gmail은") && text.contains(EMAIL), "{text}");
    button_link(&env, &answer, "Gmail 다시 연결");

    // Broken: why and since when, and the Reconnect button.
    env.google.revoke_all();
    env.expire_access_token().await;
    google::access_token(&env.app.state, USER).await.unwrap_err();
    let answer = ask(&env, 3, "reconnect").await;
    assert!(answer["blocks"][0]["text"]["text"].as_str().unwrap().contains("invalid_grant"), "{answer}");
    button_link(&env, &answer, "Reconnect Gmail");

    assert!(llm.requests().is_empty(), "a request for the button is not the LLM's to answer");
    let kept_out: Vec<bool> =
        sqlx::query_scalar("SELECT kept_out_of_memory FROM exchanges").fetch_all(&env.app.db).await.unwrap();
    assert_eq!(kept_out, [true, true, true], "links are not for memory");
}

#[tokio::test]
async fn the_welcome_of_a_new_user_carries_the_connect_gmail_button() {
    let env = setup().await;
    robeing::conversation::welcome::welcome_if_new(&env.app.state, USER, "D0KIMJT01").await.unwrap();
    let posts = env.posts();
    assert_eq!(posts.len(), 1);
    let blocks = &posts[0].json()["blocks"];
    assert!(blocks[0]["text"]["text"].as_str().unwrap().contains("김종태"), "{blocks}");
    let button = &blocks[2]["elements"][0];
    assert_eq!(button["text"]["text"], "Connect Gmail", "{blocks}");
    let link = button["url"].as_str().unwrap().to_owned();
    assert_eq!(env.connect_via(&link).await.0, 200, "the button connects");

    // Once only.
    robeing::conversation::welcome::welcome_if_new(&env.app.state, USER, "D0KIMJT01").await.unwrap();
    assert_eq!(env.posts_containing("robeing_welcome").len(), 1);
}

#[tokio::test]
async fn the_schema_refuses_connected_without_a_token() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    let err = sqlx::query("UPDATE gmail_connections SET refresh_token_ciphertext = NULL WHERE user_id = $1")
        .bind(USER)
        .execute(&env.app.db)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connected_requires_token"), "{err}");
    let err = sqlx::query("UPDATE gmail_connections SET state = 'needs_reconnect', broken_at = now(), broken_reason = 'x' WHERE user_id = $1")
        .bind(USER)
        .execute(&env.app.db)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tokens_only_while_connected"), "{err}");
}

#[tokio::test]
async fn a_wrong_token_encryption_key_stops_start_up_and_rotation_keeps_working() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    let db_url = env.app.db_url.clone().unwrap();
    let slack_url = env.app.slack.url("/api");
    let canaries: i64 = sqlx::query_scalar("SELECT count(*) FROM vault_keys").fetch_one(&env.app.db).await.unwrap();
    assert_eq!(canaries, 1);

    let google_vars = env.google.vars();
    let mut vars: Vec<(&str, &str)> = google_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.extend([
        ("DATABASE_URL", db_url.as_str()),
        ("SLACK_BOT_TOKEN", crate::helpers::BOT_TOKEN),
        ("SLACK_SIGNING_SECRET", crate::helpers::SIGNING_SECRET),
        ("SLACK_API_URL", slack_url.as_str()),
        ("ROBEING_LISTEN", "127.0.0.1:0"),
        ("TOKEN_ENCRYPTION_KEY", OTHER_KEY),
    ]);
    // (Application::build rather than the binary: with a target dir shared
    // between worktrees, CARGO_BIN_EXE_robeing may be another branch's build.)
    let vars: std::collections::HashMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = robeing::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let err = match robeing::startup::Application::build(config).await {
        Ok(_) => panic!("start-up with the wrong key must fail"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code, 2, "{err}");
    let message = err.to_string();
    assert!(message.contains("TOKEN_ENCRYPTION_KEY") && message.contains("Fix:"), "{message}");
    assert!(!message.contains(OTHER_KEY) && !message.contains(KEY), "the key is never printed");

    // Rotation: the new key with the old one as previous starts, and the old
    // tokens still work.
    let mut vars = vars;
    vars.insert("TOKEN_ENCRYPTION_KEY_PREVIOUS".into(), KEY.into());
    let config = robeing::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let before = env.row().await.unwrap();
    let app = robeing::startup::Application::build(config).await.expect("rotation starts");
    let state = app.state();
    let new_key_id = Vault::from_config(&state.config).unwrap().current_key_id().to_owned();
    let row = env.row().await.unwrap();
    assert_eq!(row.token_key_id.as_deref(), Some(new_key_id.as_str()), "tokens re-sealed at start-up");
    assert_ne!(row.refresh_token_ciphertext, before.refresh_token_ciphertext);
    assert_eq!(env.stored_refresh(&before), {
        let v = Vault::from_config(&state.config).unwrap();
        v.decrypt(&new_key_id, USER, Purpose::Refresh, row.refresh_token_ciphertext.as_deref().unwrap())
            .unwrap()
            .expose_secret()
            .to_owned()
    });
    let key_ids: Vec<String> =
        sqlx::query_scalar("SELECT key_id FROM vault_keys").fetch_all(&env.app.db).await.unwrap();
    assert_eq!(key_ids, vec![new_key_id.clone()], "the old key's canary is retired");
    env.expire_access_token().await;
    google::access_token(&state, USER).await.expect("the re-sealed tokens work");
    drop(app);

    // Once rotated, the previous key can be unset; the old key alone is now wrong.
    vars.remove("TOKEN_ENCRYPTION_KEY_PREVIOUS");
    let config = robeing::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    assert!(robeing::startup::Application::build(config).await.is_ok(), "the new key alone starts");
    vars.insert("TOKEN_ENCRYPTION_KEY".into(), KEY.into());
    let config = robeing::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    assert_eq!(robeing::startup::Application::build(config).await.err().map(|e| e.exit_code), Some(2));
}

#[tokio::test]
async fn the_gmail_client_lists_the_inbox_and_backs_off_on_rate_limits() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    let (g, calls) = (&env.google.server, &env.google.gmail_calls);
    g.script("/gmail/v1/users/me/messages", [Scripted::json(429, serde_json::json!({"error": {"code": 429, "message": "Too many requests", "errors": [{"reason": "rateLimitExceeded"}]}})).with_header("retry-after", "0")]);
    calls.script(
        "/gmail/v1/users/me/messages/m2",
        [Scripted::json(403, serde_json::json!({"error": {"code": 403, "message": "User-rate limit exceeded", "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded"}]}}))],
    );
    let since = Utc::now() - chrono::Duration::days(1);
    let messages = robeing::google::gmail::inbox_since(&env.app.state, USER, since, 50).await.unwrap();
    assert_eq!(messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m1", "m2", "m3"]);
    assert_eq!(messages[1].from.as_deref(), Some("Sender m2 <m2@example.com>"));
    assert_eq!(messages[1].subject.as_deref(), Some("Subject m2"));
    assert!(messages[1].date.is_some() && messages[1].snippet == "snippet of m2");
    assert_eq!(messages[1].label_ids, ["INBOX", "UNREAD"]);

    let lists = g.requests_to("/gmail/v1/users/me/messages");
    assert_eq!(lists.len(), 2, "one 429, then success");
    let q = &lists[1];
    assert_eq!(q.param("q").unwrap(), format!("in:inbox after:{}", since.timestamp()));
    assert_eq!(q.param("maxResults").as_deref(), Some("50"));
    // The metadata came in batches: all three, then the rate-limited m2 alone.
    assert!(g.requests_to("/gmail/v1/users/me/messages/m1").is_empty(), "no single messages.get");
    let batches = g.requests_to(BATCH_PATH);
    assert_eq!(batches.len(), 2);
    let second = String::from_utf8_lossy(&batches[1].body).to_string();
    assert!(
        second.contains("/messages/m2?") && !second.contains("/messages/m1?") && !second.contains("/messages/m3?"),
        "{second}"
    );
    assert_eq!(calls.requests_to("/gmail/v1/users/me/messages/m2").len(), 2);
    assert_eq!(calls.requests_to("/gmail/v1/users/me/messages/m3").len(), 1);
    let meta = &calls.requests_to("/gmail/v1/users/me/messages/m1")[0];
    let query = meta.query.clone().unwrap();
    assert!(
        query.contains("format=metadata")
            && query.contains("metadataHeaders=From")
            && query.contains("metadataHeaders=Subject")
            && query.contains("metadataHeaders=Date"),
        "{query}"
    );
}

/// The `email_status` and `email_detail` of the user's latest briefing.
async fn last_email_status(env: &Env) -> (String, Option<String>) {
    sqlx::query_as("SELECT email_status, email_detail FROM briefings ORDER BY claimed_at DESC LIMIT 1")
        .fetch_one(&env.app.db)
        .await
        .unwrap()
}

/// Briefings read the inbox through Gmail's batch endpoint: a message gone
/// meanwhile (inner 404) is left out, a rate-limited call (inner 429) is
/// sent again alone, and an answer robeing cannot read makes the Gmail
/// section an error without touching the connection.
#[tokio::test]
async fn a_briefing_reads_a_batch_answer_with_an_inner_404_and_an_inner_429() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;
    let (g, calls) = (&env.google.server, &env.google.gmail_calls);
    calls.script(
        "/gmail/v1/users/me/messages/m2",
        [Scripted::json(404, serde_json::json!({"error": {"code": 404, "message": "Requested entity was not found.", "errors": [{"reason": "notFound"}]}}))],
    );
    calls.script(
        "/gmail/v1/users/me/messages/m3",
        [Scripted::json(429, serde_json::json!({"error": {"code": 429, "message": "Too many concurrent requests for user", "errors": [{"reason": "rateLimitExceeded"}]}}))
            .with_header("Retry-After", "0")],
    );
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    let briefing = env.wait_for_post("Subject m1", 1).await;
    assert_eq!(briefing.len(), 1);
    let body = String::from_utf8_lossy(&briefing[0].body).to_string();
    assert!(body.contains("Subject m3"), "the rate-limited message arrived on the retry: {body}");
    assert!(!body.contains("Subject m2"), "the deleted message is left out: {body}");
    assert_eq!(last_email_status(&env).await.0, "ok");
    let batches = g.requests_to(BATCH_PATH);
    assert_eq!(batches.len(), 2, "one batch, then the retry");
    let retry = String::from_utf8_lossy(&batches[1].body).to_string();
    assert_eq!(retry.matches("Content-Type: application/http").count(), 1, "only m3 again: {retry}");
    assert!(retry.contains("GET /gmail/v1/users/me/messages/m3?"), "{retry}");
    let per_id = |id: &str| calls.requests_to(&format!("/gmail/v1/users/me/messages/{id}")).len();
    assert_eq!((per_id("m1"), per_id("m2"), per_id("m3")), (1, 1, 2));

    // A batch answer cut short: the section says Gmail failed; still connected.
    let cut = Scripted {
        status: axum::http::StatusCode::OK,
        headers: vec![("content-type".into(), "multipart/mixed; boundary=batch_cut".into())],
        body: "--batch_cut\r\nContent-Type: application/http\r\nContent-ID: <response-item-0>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"id\"".into(),
        delay: Duration::ZERO,
    };
    g.script(BATCH_PATH, [cut.clone(), cut]);
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    assert_eq!(last_email_status(&env).await.0, "error");
    assert_eq!(env.row().await.unwrap().state, "connected");
    let since = Utc::now() - chrono::Duration::days(1);
    let err = robeing::google::gmail::inbox_since(&env.app.state, USER, since, 10).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("malformed batch answer") && err.contains("cut short"), "the cause is named: {err}");
    assert!(g.requests_to("/gmail/v1/users/me/messages/m1").is_empty(), "never a single messages.get");
}

/// An inner 401 in a batch is a refused token like any other: one forced
/// refresh and the briefing goes on; refused again, the connection needs
/// reconnecting.
#[tokio::test]
async fn an_inner_401_in_a_batch_refreshes_once_then_needs_reconnect() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;
    let calls = &env.google.gmail_calls;
    let unauthorized = || {
        Scripted::json(
            401,
            serde_json::json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}}),
        )
    };
    calls.script("/gmail/v1/users/me/messages/m2", [unauthorized()]);
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    let briefing = env.wait_for_post("Subject m1", 1).await;
    let body = String::from_utf8_lossy(&briefing[0].body).to_string();
    for subject in ["Subject m1", "Subject m2", "Subject m3"] {
        assert!(body.contains(subject), "{subject} missing: {body}");
    }
    assert_eq!(last_email_status(&env).await.0, "ok");
    assert_eq!(env.google.token_requests("refresh_token").len(), 1, "one forced refresh");
    assert_eq!(env.google.server.requests_to(BATCH_PATH).len(), 2, "the batch again with the fresh token");

    calls.script("/gmail/v1/users/me/messages/m3", [unauthorized(), unauthorized()]);
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    assert_eq!(last_email_status(&env).await.0, "needs_reconnect");
    assert_eq!(env.google.token_requests("refresh_token").len(), 2, "exactly one more refresh");
    assert_eq!(env.row().await.unwrap().state, "needs_reconnect");
    assert_eq!(env.wait_for_post("Reconnect Gmail", 1).await.len(), 1);
}

#[tokio::test]
async fn gmail_401_refreshes_once_then_needs_reconnect() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    // Access tokens die early: one refresh, then success.
    env.google.expire_access_tokens();
    let since = Utc::now() - chrono::Duration::days(1);
    let messages = robeing::google::gmail::inbox_since(&env.app.state, USER, since, 10).await.unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(env.google.token_requests("refresh_token").len(), 1);

    // Gmail refuses even a fresh token: needs reconnect, one prompt.
    let unauthorized = || {
        Scripted::json(
            401,
            serde_json::json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}}),
        )
    };
    env.google.server.script("/gmail/v1/users/me/messages", [unauthorized(), unauthorized()]);
    let err = robeing::google::gmail::inbox_since(&env.app.state, USER, since, 10).await.unwrap_err();
    assert!(matches!(err, GmailAccessError::NeedsReconnect { .. }), "{err:?}");
    assert_eq!(env.google.token_requests("refresh_token").len(), 2, "exactly one refresh attempt");
    assert_eq!(env.row().await.unwrap().state, "needs_reconnect");
    assert_eq!(env.wait_for_post("Reconnect Gmail", 1).await.len(), 1);
}

#[tokio::test]
async fn app_home_shows_the_state_and_disconnect_revokes_at_google() {
    let env = setup().await;
    let state = &env.app.state;
    let home = serde_json::Value::Array(google::home_blocks(state, USER).await).to_string();
    assert!(
        home.contains("Not connected") && home.contains("Connect Gmail") && home.contains("/oauth/google/start?t="),
        "{home}"
    );

    assert_eq!(env.connect().await.0, 200);
    let home = serde_json::Value::Array(google::home_blocks(state, USER).await).to_string();
    assert!(home.contains(EMAIL) && home.contains("\"action_id\":\"gmail_disconnect\""), "{home}");
    assert!(
        matches!(google::status(state, USER).await.unwrap(), google::GmailStatus::Connected { ref email, .. } if email == EMAIL)
    );

    let refresh = env.stored_refresh(&env.row().await.unwrap());
    assert!(google::disconnect(state, USER).await.unwrap());
    let revokes = env.google.server.requests_to("/revoke");
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].form()["token"], refresh);
    assert!(!env.google.is_live_refresh(&refresh));
    let row = env.row().await.unwrap();
    assert_eq!(row.state, "disconnected");
    assert!(row.refresh_token_ciphertext.is_none() && row.access_token_ciphertext.is_none());
    assert!(matches!(google::access_token(state, USER).await, Err(GmailAccessError::NotConnected)));

    // A user without Gmail who asks for it gets one connect prompt a day.
    assert!(google::prompt_if_needed(state, USER).await.unwrap());
    assert!(!google::prompt_if_needed(state, USER).await.unwrap());
    assert_eq!(env.posts_containing("Connect Gmail").len(), 1);

    // Revocation is best effort: Google failing does not keep the tokens.
    assert_eq!(env.connect().await.0, 200);
    env.google.server.script("/revoke", [Scripted::json(503, serde_json::json!({ "error": "backend_error" }))]);
    assert!(google::disconnect(state, USER).await.unwrap());
    let row = env.row().await.unwrap();
    assert_eq!(row.state, "disconnected");
    assert!(row.refresh_token_ciphertext.is_none());
    assert!(!google::disconnect(state, USER).await.unwrap(), "nothing left to disconnect");
    assert_eq!(env.google.server.requests_to("/revoke").len(), 2);

    // Broken: the reason and a Reconnect button.
    assert_eq!(env.connect().await.0, 200);
    env.google.revoke_all();
    env.expire_access_token().await;
    let _ = google::access_token(state, USER).await;
    let home = serde_json::Value::Array(google::home_blocks(state, USER).await).to_string();
    assert!(
        home.contains("Needs reconnect") && home.contains("invalid_grant") && home.contains("Reconnect Gmail"),
        "{home}"
    );
    let status = google::status(state, USER).await.unwrap();
    assert!(status.to_string().starts_with("needs reconnect since"), "{status}");
    let err = google::access_token(state, USER).await.unwrap_err();
    assert_eq!(err.email_status(), "needs_reconnect");
}

#[tokio::test]
async fn no_token_reaches_the_logs() {
    // The operator's default filter (RUST_LOG=info), JSON like production.
    // The test runtime is single-threaded, so a thread-local subscriber sees
    // everything the app does.
    let (logs, _guard) = crate::helpers::capture_logs();

    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;
    env.expire_access_token().await;
    env.google.server.script("/token", [Scripted::json(503, serde_json::json!({ "error": "internal_failure" }))]);
    google::access_token(&env.app.state, USER).await.unwrap();
    env.google.revoke_all();
    env.expire_access_token().await;
    assert!(google::access_token(&env.app.state, USER).await.is_err());
    env.wait_for_post("Reconnect Gmail", 1).await;

    let text = logs.text();
    // Something was captured.
    assert!(text.contains("robeing::"), "{text}");
    let mut secrets = env.google.issued();
    secrets.extend([crate::fakes::google::CLIENT_SECRET.to_owned(), KEY.to_owned()]);
    for secret in secrets {
        assert!(!text.contains(&secret), "`{secret}` appears in the logs");
    }
}

/// The seed's headline job, end to end: a connected user's briefing carries
/// their inbox; when Google revokes the token the next briefing still
/// arrives, says Gmail needs reconnecting, offers the button, and exactly one
/// reconnect prompt is sent.
#[tokio::test]
async fn briefings_read_the_connected_inbox_and_say_so_when_the_token_is_revoked() {
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.wait_for_post("Gmail connected as", 1).await;

    let sent = robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    let briefing = env.wait_for_post("Subject m1", 1).await;
    assert_eq!(briefing.len(), 1, "the briefing lists the inbox");
    let body = String::from_utf8_lossy(&briefing[0].body).to_string();
    for subject in ["Subject m1", "Subject m2", "Subject m3"] {
        assert!(body.contains(subject), "{subject} missing: {body}");
    }
    let status: (String,) = sqlx::query_as("SELECT email_status FROM briefings ORDER BY claimed_at DESC LIMIT 1")
        .fetch_one(&env.app.db)
        .await
        .unwrap();
    assert_eq!(status.0, "ok");

    // Google revokes the grant (password change, Testing-mode expiry…).
    env.google.revoke_all();
    env.expire_access_token().await;
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    let status: (String, Option<String>) =
        sqlx::query_as("SELECT email_status, email_detail FROM briefings ORDER BY claimed_at DESC LIMIT 1")
            .fetch_one(&env.app.db)
            .await
            .unwrap();
    assert_eq!(status.0, "needs_reconnect", "{status:?}");
    let posts = env.posts();
    let last_briefing = posts
        .iter()
        .rev()
        .find(|r| r.json()["blocks"].to_string().contains("gmail_reconnect"))
        .expect("a briefing with the Reconnect button");
    let blocks = last_briefing.json()["blocks"].to_string();
    assert!(blocks.contains("/oauth/google/start?t="), "the button is a signed connect link: {blocks}");
    // And exactly one reconnect prompt for this breakage, however many briefings follow.
    robeing::briefing::on_demand(&env.app.state, USER, None, None).await.unwrap();
    let prompt_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'gmail_reconnect_prompt'")
        .fetch_one(&env.app.db)
        .await
        .unwrap();
    assert_eq!(prompt_jobs, 1, "one prompt per breakage");
    let _ = sent;
    let row = env.row().await.unwrap();
    assert_eq!(row.state, "needs_reconnect");
}

#[tokio::test]
async fn a_still_broken_connection_gets_one_reminder_the_evening_before_the_briefing() {
    use chrono::TimeZone as _;
    let env = setup().await;
    assert_eq!(env.connect().await.0, 200);
    env.google.revoke_all();
    env.expire_access_token().await;
    assert!(google::access_token(&env.app.state, USER).await.is_err());
    env.wait_for_post("Reconnect Gmail", 1).await;
    // The fake records the post as it arrives; robeing records it once answered.
    let deadline = tokio::time::Instant::now() + WAIT;
    let prompted_at = loop {
        match env.row().await.unwrap().reconnect_prompted_at {
            Some(at) => break at,
            None if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            None => panic!("the prompt was recorded"),
        }
    };
    let remind = |now| robeing::briefing::scheduler::remind_broken_connections(&env.app.state, now);

    // Asia/Seoul, 09:00 briefing. 10:00 local the next day: 23 h to go — too early.
    let morning =
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap().max(prompted_at + chrono::Duration::hours(2));
    assert_eq!(remind(morning).await.unwrap(), 0);
    // 23:00 local: 10 h before the briefing — the one reminder.
    let evening =
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 14, 0, 0).unwrap().max(prompted_at + chrono::Duration::hours(2));
    assert_eq!(remind(evening).await.unwrap(), 1);
    let reminders = env.wait_for_post("Reminder", 1).await;
    assert_eq!(reminders.len(), 1);
    assert!(reminders[0].json()["blocks"].to_string().contains("/oauth/google/start?t="), "with the button");
    // Never a second one for the same breakage.
    assert_eq!(remind(evening + chrono::Duration::minutes(1)).await.unwrap(), 0);
    assert_eq!(env.posts_containing("Reminder").len(), 1);
}
