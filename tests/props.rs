//! Property tests (issue #8): the Slack parsers, signature verification,
//! mrkdwn escaping, Block Kit rendering of briefings, the reply splitter and
//! the reader of Gmail's batch answers (issue #6), against arbitrary input. Pure functions only, no I/O: these run in a few
//! seconds (`PROPTEST_CASES` raises the 256 cases per property for a longer hunt).

use std::sync::Arc;

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use robeing::{
    briefing::{
        compose::Briefing,
        email::{EmailSection, MailItem},
        render::{MAX_BLOCKS, MAX_FALLBACK_CHARS, MAX_SECTION_CHARS, render},
    },
    conversation::{MAX_CHUNK_CHARS, split},
    http::slack::{MAX_SKEW, form_to_json, parse_events_body, parse_interaction_body, verify_signature},
    i18n::Lang,
    news::{FeedFailure, Headline, News},
    slack::{
        client::escape_mrkdwn,
        events::{self, BlockAction, DirectMessage, Me, SlackEvent, SlashCommand},
    },
};
use serde_json::{Value, json};

/// 256 cases per property, or `PROPTEST_CASES` (to hunt longer).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Any JSON value, nested a few levels, with Slack's keys over-represented so
/// the parsers' interesting branches are reached.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "type", "event", "event_id", "team_id", "team", "user", "id", "channel", "channel_type", "text", "ts",
            "thread_ts", "subtype", "bot_id", "bot_profile", "authorizations", "is_bot", "user_id", "tab", "tokens",
            "bot", "actions", "action_id", "value", "selected_option", "trigger_id", "command", "response_url",
            "container", "message", "action_ts", "channel_id",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
    .boxed();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop::sample::select(vec![
            "message",
            "event_callback",
            "im",
            "block_actions",
            "app_home_opened",
            "user_change",
            "app_uninstalled",
            "tokens_revoked",
            "home",
            "/brief",
            "T0ROBEING",
            "U0TEST001",
            "",
        ])
        .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn any_kind() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "message",
            "app_home_opened",
            "user_change",
            "slash_command",
            "interaction:block_actions",
            "interaction:view_submission",
            "",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

/// A Slack id: what `str_at` accepts (non-empty), arbitrary otherwise.
fn id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Z0-9]{1,12}", ".{1,16}"]
}

/// Message text: anything, with Slack's and Postgres's troublemakers likely.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        prop::collection::vec(
            prop::sample::select(vec![
                "<!channel>",
                "<https://evil.example|bank>",
                "&lt;",
                "&amp;",
                "&",
                "<",
                ">",
                "\u{0}",
                "\u{202E}",
                "하이",
                "👩‍👩‍👧",
                " ",
                "\n",
                "\t",
                "a",
                "|",
                ";",
            ]),
            0..24
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// What [`events::make_storable`] does to a string.
fn storable(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn headers(sig: &str, ts: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = sig.parse() {
        h.insert("x-slack-signature", v);
    }
    if let Ok(v) = ts.parse() {
        h.insert("x-slack-request-timestamp", v);
    }
    h
}

const NOW: i64 = 1_764_000_000;

proptest! {
    #![proptest_config(config())]

    /// The stored-payload parser never panics, whatever the payload and kind,
    /// and a DM it returns always has the ids it needs.
    #[test]
    fn the_event_parser_never_panics(payload in any_json(), kind in any_kind(), me_user in prop::option::of(id())) {
        let me = Me { user_id: me_user.as_deref(), bot_id: None };
        if let Ok(SlackEvent::DirectMessage(m)) = events::parse("Ev1", &kind, &payload, &me) {
            prop_assert!(!m.user_id.is_empty() && !m.channel_id.is_empty() && !m.ts.is_empty() && !m.team_id.is_empty());
            prop_assert_ne!(Some(m.user_id.as_str()), me.user_id, "robeing's own message became a DM");
        }
    }

    /// The transport's key extractors never panic; what they accept is storable
    /// (an id of 1..=255 bytes, a kind).
    #[test]
    fn the_key_extractors_never_panic(payload in any_json()) {
        for keys in [events::callback_keys(&payload), events::command_keys(&payload), events::interaction_keys(&payload)]
            .into_iter()
            .flatten()
        {
            prop_assert!(!keys.event_id.is_empty() && keys.event_id.len() <= 255, "{:?}", keys.event_id);
            prop_assert!(!keys.kind.is_empty());
        }
    }

    /// The body parsers never panic on arbitrary bytes, and what they return
    /// holds no NUL (so PostgreSQL can store it).
    #[test]
    fn the_body_parsers_never_panic_and_return_storable_payloads(body in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = parse_events_body(&body) {
            prop_assert!(!has_nul(&v));
        }
        if let Ok(m) = form_to_json(&body) {
            prop_assert!(!has_nul(&Value::Object(m)));
        }
        if let Ok(v) = parse_interaction_body(&body) {
            prop_assert!(!has_nul(&v));
        }
    }

    /// The same for JSON-shaped bodies (arbitrary bytes are rarely JSON).
    #[test]
    fn json_bodies_parse_to_storable_payloads(payload in any_json(), nul in (".{0,4}", ".{0,4}").prop_map(|(a, b)| format!("{a}\0{b}"))) {
        let mut payload = payload;
        if let Value::Object(m) = &mut payload {
            m.insert(nul.clone(), Value::String(nul.clone()));
        }
        let body = payload.to_string();
        let parsed = parse_events_body(body.as_bytes()).unwrap();
        prop_assert!(!has_nul(&parsed));
        let form = serde_urlencoded::to_string([("payload", body.as_str())]).unwrap();
        let parsed = parse_interaction_body(form.as_bytes()).unwrap();
        prop_assert!(!has_nul(&parsed));
    }

    /// A DM survives the wire: JSON body → parse → keys → the stored-payload
    /// parser gives back the same message (NUL stored as U+FFFD).
    #[test]
    fn a_direct_message_round_trips(
        event_id in "Ev[A-Za-z0-9]{1,20}", team in id(), user in id(), channel in id(), ts in "[0-9]{10}\\.[0-9]{6}",
        thread in prop::option::of("[0-9]{10}\\.[0-9]{6}"), text in text(),
    ) {
        let mut event = json!({"type": "message", "channel_type": "im", "channel": channel, "user": user, "ts": ts, "text": text});
        if let Some(t) = &thread {
            event["thread_ts"] = json!(t);
        }
        let body = json!({"type": "event_callback", "team_id": team, "event_id": event_id, "event": event}).to_string();
        let payload = parse_events_body(body.as_bytes()).unwrap();
        let keys = events::callback_keys(&payload).unwrap();
        prop_assert_eq!(&keys.event_id, &event_id);
        prop_assert_eq!(keys.kind.as_str(), "message");
        let parsed = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default()).unwrap();
        let expected = DirectMessage {
            event_id: event_id.clone(), team_id: storable(&team), user_id: storable(&user), channel_id: storable(&channel),
            ts, thread_ts: thread, text: storable(&text), files: Vec::new(), shared: Vec::new(),
        };
        prop_assert_eq!(parsed, SlackEvent::DirectMessage(expected));
    }

    /// A slash command survives its form encoding.
    #[test]
    fn a_slash_command_round_trips(
        team in id(), user in id(), channel in id(), command in "/[a-z]{1,10}", text in text(), trigger in "[0-9a-f.]{1,40}",
    ) {
        let response_url = "https://hooks.slack.com/commands/T1/2/3";
        let form = serde_urlencoded::to_string([
            ("team_id", team.as_str()), ("user_id", &user), ("channel_id", &channel), ("command", &command),
            ("text", &text), ("response_url", response_url), ("trigger_id", &trigger),
        ]).unwrap();
        let payload = Value::Object(form_to_json(form.as_bytes()).unwrap());
        let keys = events::command_keys(&payload).unwrap();
        prop_assert_eq!(&keys.event_id, &format!("cmd:{trigger}"));
        let parsed = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default()).unwrap();
        let expected = SlashCommand {
            team_id: storable(&team), user_id: storable(&user), channel_id: storable(&channel), command,
            text: storable(&text), response_url: response_url.into(), trigger_id: trigger,
        };
        prop_assert_eq!(parsed, SlackEvent::SlashCommand(expected));
    }

    /// A block action survives `payload=` form encoding.
    #[test]
    fn a_block_action_round_trips(
        team in id(), user in id(), action_id in "[a-z_]{1,20}", value in prop::option::of(text()),
        trigger in "[0-9a-f.]{1,40}", channel in prop::option::of(id()),
    ) {
        let mut action = json!({"action_id": action_id, "action_ts": "1.2"});
        if let Some(v) = &value {
            action["value"] = json!(v);
        }
        let mut payload = json!({"type": "block_actions", "team": {"id": team}, "user": {"id": user}, "trigger_id": trigger, "actions": [action]});
        if let Some(c) = &channel {
            payload["channel"] = json!({"id": c});
        }
        let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let payload = parse_interaction_body(form.as_bytes()).unwrap();
        let keys = events::interaction_keys(&payload).unwrap();
        prop_assert_eq!(keys.kind.as_str(), "interaction:block_actions");
        let parsed = events::parse(&keys.event_id, &keys.kind, &payload, &Me::default()).unwrap();
        let expected = BlockAction {
            team_id: storable(&team), user_id: storable(&user), action_id,
            value: value.map(|v| storable(&v)).filter(|v| !v.is_empty()),
            channel_id: channel.map(|c| storable(&c)), message_ts: None, response_url: None, trigger_id: Some(trigger),
        };
        prop_assert_eq!(parsed, SlackEvent::BlockAction(expected));
    }

    /// Signature verification accepts the correct signature inside the window
    /// and nothing else: not another body, timestamp, secret or signature.
    #[test]
    fn signatures_verify_exactly(
        secret in prop::collection::vec(any::<u8>(), 1..48), body in prop::collection::vec(any::<u8>(), 0..128),
        skew in -MAX_SKEW..=MAX_SKEW, flip in any::<prop::sample::Index>(), other_ts in any::<i64>(),
    ) {
        let ts = (NOW + skew).to_string();
        let good = sign(&secret, &ts, &body);
        prop_assert_eq!(verify_signature(&secret, &headers(&good, &ts), &body, NOW), Ok(()));
        // Any one bit of the body changed.
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 1 << (i % 8);
            prop_assert!(verify_signature(&secret, &headers(&good, &ts), &tampered, NOW).is_err());
        }
        // Any one hex digit of the signature changed.
        let mut sig: Vec<u8> = good.clone().into_bytes();
        let i = 3 + flip.index(sig.len() - 3);
        sig[i] = if sig[i] == b'0' { b'1' } else { b'0' };
        prop_assert!(verify_signature(&secret, &headers(std::str::from_utf8(&sig).unwrap(), &ts), &body, NOW).is_err());
        // Another timestamp, re-signed, outside the window; or not re-signed.
        let ts2 = other_ts.to_string();
        let resigned = sign(&secret, &ts2, &body);
        let inside = NOW.abs_diff(other_ts) <= MAX_SKEW.unsigned_abs();
        prop_assert_eq!(verify_signature(&secret, &headers(&resigned, &ts2), &body, NOW).is_ok(), inside);
        if ts2 != ts {
            prop_assert!(verify_signature(&secret, &headers(&good, &ts2), &body, NOW).is_err());
        }
        // Another secret (one bit flipped: HMAC pads keys with zeros, so a
        // key and the same key plus a zero byte are the same key).
        let mut other = secret.clone();
        let i = flip.index(other.len());
        other[i] ^= 1 << (i % 8);
        prop_assert!(verify_signature(&other, &headers(&good, &ts), &body, NOW).is_err());
    }

    /// Arbitrary header values never panic the verifier and never pass.
    #[test]
    fn arbitrary_signature_headers_never_pass(sig in ".{0,80}", ts in ".{0,24}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert!(verify_signature(b"secret", &headers(&sig, &ts), &body, NOW).is_err());
        let prefixed = format!("v0={sig}");
        prop_assert!(verify_signature(b"secret", &headers(&prefixed, &ts), &body, NOW).is_err());
    }

    /// Escaped mrkdwn has no raw `<` or `>`, every `&` starts one of the three
    /// entities, and unescaping gives back the input.
    #[test]
    fn escape_mrkdwn_is_total_and_reversible(input in text()) {
        let out = escape_mrkdwn(&input);
        prop_assert!(!out.contains('<') && !out.contains('>'));
        for (i, _) in out.match_indices('&') {
            let rest = &out[i..];
            prop_assert!(rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"), "{}", out);
        }
        let back = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        prop_assert_eq!(back, input);
    }

    /// The splitter keeps every character but the spaces and newlines it cuts
    /// at, keeps each chunk within the limit, and never cuts an entity of
    /// escaped text when the limit can hold one.
    #[test]
    fn split_keeps_every_character_within_the_limit(input in text(), repeat in 1usize..200, max in 1usize..120) {
        let input = escape_mrkdwn(&input.repeat(repeat));
        let chunks = split(&input, max);
        prop_assert!(!chunks.is_empty());
        for c in &chunks {
            prop_assert!(c.chars().count() <= max, "a chunk of {} > {max}", c.chars().count());
            if max >= 5 {
                for (i, _) in c.match_indices('&') {
                    let rest = &c[i..];
                    prop_assert!(rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"), "cut entity in {:?}", c);
                }
            }
        }
        let squeeze = |s: &str| s.chars().filter(|c| !matches!(c, ' ' | '\n')).collect::<String>();
        prop_assert_eq!(squeeze(&chunks.concat()), squeeze(&input));
    }

    /// Slack's real limit, with long inputs.
    #[test]
    fn split_at_slacks_limit(input in text(), repeat in 1usize..300) {
        let input = escape_mrkdwn(&input.repeat(repeat));
        let chunks = split(&input, MAX_CHUNK_CHARS);
        prop_assert!(chunks.iter().all(|c| c.chars().count() <= MAX_CHUNK_CHARS));
        let squeeze = |s: &str| s.chars().filter(|c| !matches!(c, ' ' | '\n')).collect::<String>();
        prop_assert_eq!(squeeze(&chunks.concat()), squeeze(&input));
    }
}

/// Writes each byte at its place in `bytes` (a damaged file).
fn overwrite(bytes: &mut [u8], changes: Vec<(prop::sample::Index, u8)>) {
    for (at, byte) in changes {
        bytes[at.index(bytes.len())] = byte;
    }
}

/// One stream of an OLE compound file among the document fixtures.
fn fixture_stream(fixture: &str, stream: &str) -> Vec<u8> {
    use std::io::Read as _;
    let path = format!("{}/tests/fixtures/documents/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let mut bytes = Vec::new();
    cfb::open(path).unwrap().open_stream(stream).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

/// The first section of the real `.hwp` fixture, unpacked: a record
/// stream with paragraphs, controls, a footnote and a table.
fn hwp_section() -> &'static [u8] {
    static SECTION: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SECTION.get_or_init(|| {
        use std::io::Read as _;
        let packed = fixture_stream("korean-memo-python-hwpx.hwp", "/BodyText/Section0");
        let mut section = Vec::new();
        flate2::read::DeflateDecoder::new(&packed[..]).read_to_end(&mut section).unwrap();
        section
    })
}

proptest! {
    #![proptest_config(config())]

    /// A Hangul file's records, however damaged, are read or refused,
    /// never a panic: random bytes, and the real section with bytes changed.
    #[test]
    fn hwp_records_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
    ) {
        let _ = robeing::documents::hwp::section_text_of(&bytes);
        let mut section = hwp_section().to_vec();
        prop_assert!(robeing::documents::hwp::section_text_of(&section).unwrap().contains("회의록"));
        overwrite(&mut section, changes);
        let _ = robeing::documents::hwp::section_text_of(&section);
    }
}

/// The `WordDocument` and table streams of the real `.doc` fixture: a FIB,
/// a piece table, paragraph properties of a table, UTF-16 and 8-bit text.
fn doc_streams() -> &'static (Vec<u8>, Vec<u8>) {
    static STREAMS: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    STREAMS.get_or_init(|| {
        const MEMO: &str = "korean-memo-libreoffice.doc";
        let word = fixture_stream(MEMO, "/WordDocument");
        let table = fixture_stream(MEMO, if word[0x0B] & 2 != 0 { "/1Table" } else { "/0Table" });
        (word, table)
    })
}

proptest! {
    #![proptest_config(config())]

    /// A Word document's streams, however damaged, are read or refused,
    /// never a panic: bytes changed in the FIB, the text, the paragraph
    /// properties' pages and the piece table.
    #[test]
    fn doc_streams_never_panic(
        word_changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        fib_changes in prop::collection::vec((0usize..1024, any::<u8>()), 0..8),
        table_changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
    ) {
        let (word, table) = doc_streams();
        prop_assert!(robeing::documents::doc::text_of_streams(word, table).unwrap().contains("회의록"));
        let (mut word, mut table) = (word.clone(), table.clone());
        overwrite(&mut word, word_changes);
        for (at, byte) in fib_changes {
            word[at] = byte;
        }
        overwrite(&mut table, table_changes);
        let _ = robeing::documents::doc::text_of_streams(&word, &table);
    }
}

/// The `Current User` and `PowerPoint Document` streams of the real
/// `.ppt` fixture: edits, a persist directory, slides and their shapes.
fn ppt_streams() -> &'static (Vec<u8>, Vec<u8>) {
    static STREAMS: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    STREAMS.get_or_init(|| {
        const PLAN: &str = "plan-libreoffice.ppt";
        (fixture_stream(PLAN, "/Current User"), fixture_stream(PLAN, "/PowerPoint Document"))
    })
}

proptest! {
    #![proptest_config(config())]

    /// A PowerPoint file's streams, however damaged, are read or refused,
    /// never a panic (nor a loop): bytes changed anywhere in the record
    /// stream, and the last edit's offset changed.
    #[test]
    fn ppt_streams_never_panic(
        changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        last_edit in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (current_user, stream) = ppt_streams();
        prop_assert!(robeing::documents::ppt::text_of_streams(current_user, stream).unwrap().contains("1분기 계획"));
        let (mut current_user, mut stream) = (current_user.clone(), stream.clone());
        overwrite(&mut stream, changes);
        if let Some(at) = last_edit {
            current_user[16..20].copy_from_slice(&(at.index(stream.len()) as u32).to_le_bytes());
        }
        let _ = robeing::documents::ppt::text_of_streams(&current_user, &stream);
    }
}

proptest! {
    #![proptest_config(config())]

    /// An RTF file, however damaged, is read or refused, never a panic:
    /// random bytes after its signature, and the real file with bytes
    /// changed (braces, backslashes and digits over-represented).
    #[test]
    fn rtf_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        changes in prop::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![any::<u8>(), prop::sample::select(b"{}\\'u-0123456789 ".to_vec())]),
            1..24,
        ),
    ) {
        let mut random = b"{\\rtf1".to_vec();
        random.extend(bytes);
        let _ = robeing::documents::rtf::text_of(&random);
        let path = format!("{}/tests/fixtures/documents/korean-memo-libreoffice.rtf", env!("CARGO_MANIFEST_DIR"));
        let mut rtf = std::fs::read(path).unwrap();
        prop_assert!(robeing::documents::rtf::text_of(&rtf).unwrap().contains("회의록"));
        overwrite(&mut rtf, changes);
        let _ = robeing::documents::rtf::text_of(&rtf);
    }
}

fn mail_item() -> impl Strategy<Value = MailItem> {
    (
        text(),
        text(),
        text(),
        0i64..2_000_000_000,
        prop::collection::vec(prop::sample::select(vec!["UNREAD", "IMPORTANT", "INBOX", "x"]), 0..3),
    )
        .prop_map(|(from, subject, snippet, t, labels)| MailItem {
            from,
            subject,
            snippet,
            received_at: DateTime::<Utc>::from_timestamp(t, 0).unwrap(),
            labels: labels.into_iter().map(str::to_owned).collect(),
        })
}

fn email_section() -> impl Strategy<Value = EmailSection> {
    prop_oneof![
        // Many, and occasionally very long, messages.
        (prop::collection::vec(mail_item(), 0..80), 1usize..60).prop_map(|(items, n)| {
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, mut m)| {
                    if i % 7 == 0 {
                        m.subject = m.subject.repeat(n);
                        m.from = m.from.repeat(n);
                        m.snippet = m.snippet.repeat(n);
                    }
                    m
                })
                .collect();
            EmailSection::Ok { items }
        }),
        Just(EmailSection::NotConfigured),
        Just(EmailSection::NotConnected),
        (0i64..2_000_000_000, text(), 1usize..400).prop_map(|(t, r, n)| EmailSection::NeedsReconnect {
            since: DateTime::<Utc>::from_timestamp(t, 0).unwrap(),
            reason: r.repeat(n)
        }),
        (text(), 1usize..400).prop_map(|(m, n)| EmailSection::Error { message: m.repeat(n) }),
    ]
}

fn news() -> impl Strategy<Value = News> {
    let headline = (
        text(),
        prop::option::of(prop_oneof![
            Just("https://news.example/a?b=1&c=<2>|3".to_owned()),
            Just("javascript:alert(1)".to_owned()),
            "https://[a-z]{1,10}\\.example/.{0,20}",
            ".{0,20}",
        ]),
        text(),
        1usize..100,
    )
        .prop_map(|(title, link, source, n)| Headline {
            title: title.repeat(n),
            link,
            published: None,
            source: source.repeat(n % 7 + 1),
        });
    let failure =
        (".{0,40}", text(), 1usize..100).prop_map(|(url, reason, n)| FeedFailure { url, reason: reason.repeat(n) });
    (prop::collection::vec(headline, 0..120), prop::collection::vec(failure, 0..60), 0usize..200)
        .prop_map(|(headlines, failed, feeds)| News { headlines, failed, feeds })
}

fn texts_of(blocks: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks {
        for t in [&b["text"]["text"], &b["accessory"]["text"]["text"]] {
            if let Some(t) = t.as_str() {
                out.push(t.to_owned());
            }
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"].as_str() {
                out.push(t.to_owned());
            }
        }
    }
    out
}

/// `<url|title>` links and a `>` opening a quoted line are robeing's own
/// markup; any other `<` or `>` would be injected.
fn without_links(s: &str) -> String {
    let unquoted: Vec<&str> = s.lines().map(|l| l.strip_prefix('>').unwrap_or(l)).collect();
    let unquoted = unquoted.join("\n");
    let mut out = String::new();
    let mut rest = unquoted.as_str();
    while let Some(i) = rest.find("<http") {
        out.push_str(&rest[..i]);
        match rest[i..].find('>') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

proptest! {
    #![proptest_config(config())]

    /// A briefing always fits Slack's Block Kit limits, is valid Block Kit, and
    /// carries no markup from its inputs.
    #[test]
    fn briefings_stay_within_slacks_limits(
        email in prop::option::of(email_section()), news in prop::option::of(news()), ko in any::<bool>(),
        name in text(), summary in prop::option::of(text()),
    ) {
        let b = Briefing {
            user_id: "U0TEST001".into(),
            user_name: name,
            lang: if ko { Lang::Ko } else { Lang::En },
            local_date: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            tz: chrono_tz::Asia::Seoul,
            email,
            news: news.map(Arc::new),
            reconnect_url: Some("http://localhost:3000/oauth/google/start?t=v1.a.b".into()),
            mail_summary: summary,
            mail_summary_error: None,
        };
        let r = render(&b);
        prop_assert!(r.blocks.len() <= MAX_BLOCKS, "{} blocks", r.blocks.len());
        prop_assert!(!r.text.is_empty() && r.text.chars().count() <= MAX_FALLBACK_CHARS);
        for t in texts_of(&r.blocks) {
            prop_assert!(t.chars().count() <= MAX_SECTION_CHARS, "a text of {} chars", t.chars().count());
            let bare = without_links(&t);
            prop_assert!(!bare.contains('<') && !bare.contains('>'), "raw markup in {:?}", t);
        }
        // Valid JSON, and valid Block Kit as slack-morphism models it.
        let json = serde_json::to_string(&r.blocks).unwrap();
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &r.blocks);
        let parsed: Result<Vec<slack_morphism::prelude::SlackBlock>, _> = serde_json::from_str(&json);
        prop_assert!(parsed.is_ok(), "not Block Kit: {:?}", parsed.err());
    }
}

#[test]
fn a_timestamp_at_the_edge_of_i64_is_refused_not_an_overflow() {
    // Found by the bad-input corpus: `now - i64::MIN` overflowed (a panic in
    // debug builds, a wrapped comparison in release).
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let t = ts.to_string();
        assert!(verify_signature(b"s", &headers(&sign(b"s", &t, b"{}"), &t), b"{}", NOW).is_err(), "{ts}");
    }
    // The fuzzer's own find on the old code: the same overflow from the clock's side.
    let t = "1531420618";
    for now in [i64::MIN + 119, i64::MAX] {
        assert!(verify_signature(b"s", &headers(&sign(b"s", t, b"{}"), t), b"{}", now).is_err(), "{now}");
    }
}

// ---------------------------------------------------------------------------
// Gmail batch answers (`robeing::google::batch`).

mod gmail_batch {
    use proptest::prelude::*;
    use robeing::google::batch::{InnerResponse, boundary_of, in_request_order, parse_response, split_parts};

    /// An inner answer as written: status, headers, body.
    type Written = (u16, Vec<(String, String)>, String);

    /// An inner answer the way a server could write it: status, headers, a
    /// body (no line of it starts with `--`, and none ends in a bare CR).
    fn inner() -> impl Strategy<Value = Written> {
        (
            100u16..600,
            prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[!-~]([ -~]{0,30}[!-~])?"), 0..4),
            "([a-zA-Z0-9{}\\[\\]\":,. ]{0,40}\n?){0,4}",
        )
    }

    /// Writes a multipart answer: `answers` in the order `order` (a
    /// permutation), each with `Content-ID: <response-item-N>` unless its
    /// flag says otherwise, with `eol` line ends, a preamble and an epilogue.
    fn write(
        boundary: &str,
        eol: &str,
        answers: &[Written],
        order: &[usize],
        with_id: &[bool],
        preamble: &str,
        epilogue: &str,
    ) -> String {
        let mut out = String::from(preamble);
        if !preamble.is_empty() {
            out.push_str(eol);
        }
        for &i in order {
            let (status, headers, body) = &answers[i];
            out.push_str(&format!("--{boundary}{eol}Content-Type: application/http{eol}"));
            if with_id[i] {
                out.push_str(&format!("Content-ID: <response-item-{i}>{eol}"));
            }
            out.push_str(&format!("{eol}HTTP/1.1 {status} Whatever{eol}"));
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}{eol}"));
            }
            out.push_str(&format!("{eol}{body}{eol}"));
        }
        out.push_str(&format!("--{boundary}--{eol}{epilogue}"));
        out
    }

    fn config() -> ProptestConfig {
        super::config()
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the order of the parts, the line ends, the preamble and
        /// epilogue or the quoting of the boundary, every answer comes back
        /// paired with its request: by Content-ID, or by position where a
        /// part has none (and then the part is in its place).
        #[test]
        fn written_answers_are_read_back_in_request_order(
            answers in prop::collection::vec(inner(), 0..8),
            shuffle in any::<prop::sample::Index>(),
            ids in prop::collection::vec(any::<bool>(), 8),
            crlf in any::<bool>(),
            quoted in any::<bool>(),
            boundary in "[A-Za-z0-9_'()+,./:=?-]{1,69}[A-Za-z0-9]",
            preamble in "[a-z ]{0,20}",
            epilogue in "[ -~\n]{0,40}",
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let n = answers.len();
            // A part without Content-ID must stay in its place; the others may move.
            let mut with_id: Vec<bool> = ids[..n].to_vec();
            let movable: Vec<usize> = (0..n).filter(|&i| with_id[i]).collect();
            let mut order: Vec<usize> = (0..n).collect();
            if !movable.is_empty() {
                let k = shuffle.index(movable.len());
                let rotated: Vec<usize> = movable.iter().cycle().skip(k).take(movable.len()).copied().collect();
                for (slot, item) in movable.iter().zip(rotated) {
                    order[*slot] = item;
                }
            } else {
                with_id.iter_mut().for_each(|w| *w = false);
            }
            let body = write(&boundary, eol, &answers, &order, &with_id, &preamble, &epilogue);
            let content_type = if quoted {
                format!("multipart/mixed; boundary=\"{boundary}\"")
            } else {
                format!("multipart/mixed; boundary={boundary}")
            };
            let parsed = parse_response(&content_type, body.as_bytes());
            prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), body);
            let paired = in_request_order(n, parsed.unwrap()).unwrap();
            for (i, got) in paired.iter().enumerate() {
                let (status, headers, text) = &answers[i];
                prop_assert_eq!(got.status, *status);
                prop_assert_eq!(&got.headers, headers);
                prop_assert_eq!(String::from_utf8_lossy(&got.body), text.as_str());
            }
        }

        /// Arbitrary bytes and content types: an answer or an error, never a panic.
        #[test]
        fn any_bytes_are_read_or_refused(content_type in "[ -~]{0,60}", body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = boundary_of(&content_type);
            let _ = parse_response(&content_type, &body);
            let _ = split_parts("b", &body);
            let _ = parse_response("multipart/mixed; boundary=b", &body).map(|a| in_request_order(2, a));
        }

        /// A valid answer cut anywhere before its close delimiter is an
        /// error (never a shorter list of answers), and damaged bytes never panic.
        #[test]
        fn a_cut_or_damaged_answer_is_an_error_not_a_panic(
            answers in prop::collection::vec(inner(), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let n = answers.len();
            let body = write("batch_x", "\r\n", &answers, &(0..n).collect::<Vec<_>>(), &vec![true; n], "", "");
            let close = body.rfind("\r\n--batch_x--").unwrap();
            let cut_at = cut.index(close + 1);
            let truncated = &body.as_bytes()[..cut_at];
            prop_assert!(parse_response("multipart/mixed; boundary=batch_x", truncated).is_err(), "{:?}", String::from_utf8_lossy(truncated));
            let mut damaged = body.into_bytes();
            let at = flip.index(damaged.len());
            damaged[at] = byte;
            let _ = parse_response("multipart/mixed; boundary=batch_x", &damaged).map(|a| in_request_order(n, a));
        }
    }

    #[test]
    fn an_inner_response_reads_headers_case_insensitively() {
        let r = InnerResponse {
            content_id: None,
            status: 429,
            headers: vec![("retry-after".into(), "3".into())],
            body: Vec::new(),
        };
        assert_eq!(r.header("Retry-After"), Some("3"));
        assert_eq!(r.header("ETag"), None);
    }
}
