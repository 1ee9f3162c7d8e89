//! One span per HTTP request with an id: the id is echoed in
//! `x-request-id`, appears on the request's log line, and the log never
//! holds a query string (the OAuth callback's `code` and `state`).

use crate::helpers::*;

fn id_of(r: &reqwest::Response) -> String {
    r.headers().get("x-request-id").expect("every response carries x-request-id").to_str().unwrap().to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn requests_get_an_id_that_is_echoed_and_logged_without_the_query() {
    // An operator debugging with RUST_LOG=debug must not get the secrets either.
    let (logs, _guard) = capture_logs_at("debug");
    let app = spawn_app().await;
    let url = |path: &str| format!("{}{path}", app.address);

    let first = id_of(&app.get("/healthz").await);
    let second = id_of(&app.get("/no-such-route").await);
    assert!(is_generated(&first) && is_generated(&second), "{first} {second}");
    assert_ne!(first, second, "a fresh id per request");

    let r = app.http.get(url("/healthz")).header("x-request-id", "lb-7f3a.2:9_x").send().await.unwrap();
    assert_eq!(id_of(&r), "lb-7f3a.2:9_x", "a sane caller id is echoed");
    for odd in ["two words", "code=4/0AbC", &"x".repeat(65)] {
        let r = app.http.get(url("/healthz")).header("x-request-id", odd).send().await.unwrap();
        let id = id_of(&r);
        assert!(is_generated(&id), "`{odd}` is replaced by a fresh id, got `{id}`");
    }

    // Google's redirect back, with its single-use secrets in the query.
    let code = "4/0AcodeSECRETf00d";
    let state = "stateSECRETbeef1234";
    let r = app
        .http
        .get(url(&format!("/oauth/google/callback?state={state}&code={code}&scope=gmail.readonly")))
        .header("x-request-id", "req-oauth-callback-1")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&r), "req-oauth-callback-1");
    let page = r.text().await.unwrap();
    assert!(!page.contains(code) && !page.contains(state), "{page}");

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("req-oauth-callback-1") && l.contains("finished processing request"))
        .unwrap_or_else(|| panic!("the callback's response is logged with its request id: {text}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["span"]["request_id"], "req-oauth-callback-1", "{line}");
    assert_eq!(json["span"]["path"], "/oauth/google/callback", "{line}");
    assert_eq!(json["span"]["method"], "GET", "{line}");
    assert_eq!(json["fields"]["status"], 400, "the response line has the status: {line}");
    for secret in [code, state, "scope=gmail", BOT_TOKEN, SIGNING_SECRET] {
        assert!(!text.contains(secret), "`{secret}` appears in the logs: {text}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_events_handling_is_logged_in_a_span_with_its_event_id() {
    let (logs, _guard) = capture_logs();
    let app = spawn_app().await;
    // A slash command robeing has no handler for: its job logs a warning.
    let form = "team_id=T0ROBEING&channel_id=C0GENERAL&user_id=U0TEST001&command=%2Fnothing&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1%2F2%2F3&trigger_id=77.88.spanned";
    let r =
        crate::slack_http::Post::signed("/slack/commands", form, "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let line = loop {
        let text = logs.text();
        if let Some(l) = text.lines().find(|l| l.contains("slash command with no handler")) {
            break l.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "the job's warning was logged: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["span"]["name"], "slack_event", "{line}");
    assert_eq!(json["span"]["event_id"], "cmd:77.88.spanned", "{line}");
    assert_eq!(json["span"]["kind"], "slash_command", "{line}");
    // The span's event id is the key of the stored event: the work item
    // the operator looks up (its state, attempts, last error).
    let (state, _) = crate::slack_http::job_outcome(&app.db, json["span"]["event_id"].as_str().unwrap()).await;
    assert_eq!(state, "done", "the span names the stored event that was handled");
    app.stop().await.unwrap();
}
