//! Our one internal event type. The HTTP routes and the Socket Mode listener
//! both record raw Slack payloads through [`crate::pipeline`]; the
//! worker handling a stored event turns its payload into a [`SlackEvent`] and hands
//! it to the module that owns it.

/// Everything robeing reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackEvent {
    /// A person wrote to robeing in a DM.
    DirectMessage(DirectMessage),
    AppHomeOpened {
        team_id: String,
        user_id: String,
    },
    /// The person opened robeing's Messages tab (their DM with it).
    MessagesTabOpened {
        team_id: String,
        user_id: String,
        channel_id: String,
    },
    UserChanged {
        team_id: String,
        user_id: String,
    },
    AppUninstalled {
        team_id: String,
    },
    TokensRevoked {
        team_id: String,
    },
    SlashCommand(SlashCommand),
    BlockAction(BlockAction),
    /// Recorded but not acted on (bot messages, edits, non-IM channels…).
    Ignored {
        reason: &'static str,
    },
}

/// A human's message in robeing's DM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    pub event_id: String,
    pub team_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    /// The files the message carries (subtype `file_share`), in order:
    /// text files are read ([`crate::slack::files`]), the rest named.
    pub files: Vec<SlackFile>,
    /// Messages the user forwarded with it (Slack's "Forward message" or a
    /// message link it unfurled): part of what they sent, so stored and
    /// remembered with their own text ([`DirectMessage::stored_text`]).
    pub shared: Vec<SharedMessage>,
}

/// A file attached to a DM, as the event describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlackFile {
    /// Its name, one line, shortened; a file Slack describes without a name
    /// (hidden by the workspace's plan, or shared from elsewhere) is named
    /// by its title or id.
    pub name: String,
    /// Its name's extension, lower case (whole when the name is shortened):
    /// what tells a Hangul file, which browsers give no type of its own.
    pub extension: Option<String>,
    pub mimetype: Option<String>,
    /// Bytes, as Slack reports it.
    pub size: Option<u64>,
    /// Where its content is downloaded with the bot token
    /// (`url_private_download`, else `url_private`).
    pub url: Option<String>,
    /// `hosted`, `snippet`, `external`, `tombstone` (deleted)…
    pub mode: Option<String>,
}

/// A message shared into the DM, as Slack attaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMessage {
    /// Who wrote it, as Slack names them.
    pub author: Option<String>,
    pub text: String,
}

impl DirectMessage {
    /// The names of its files, in order.
    pub fn file_names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.name.clone()).collect()
    }

    /// What is stored (and remembered, and given to the LLM) for this
    /// message: the user's own text, then each message they forwarded,
    /// marked as such. Commands are read from the user's own text only
    /// (`text`): a forwarded "export" is not a request.
    pub fn stored_text(&self) -> String {
        let mut out = self.text.clone();
        for shared in &self.shared {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            match &shared.author {
                Some(author) => out.push_str(&format!("[forwarded message from {author}]\n")),
                None => out.push_str("[forwarded message]\n"),
            }
            out.push_str(&shared.text);
        }
        out
    }
}

/// Message subtypes that are still a human writing to robeing, answered
/// like any DM: a message with files, a thread reply also sent to the
/// conversation, and `/me`. Every other subtype (bots, edits, deletions,
/// joins…) is not a message to answer.
pub const ANSWERED_SUBTYPES: &[&str] = &["file_share", "thread_broadcast", "me_message"];

/// The most characters of a file name kept (Slack allows 255 bytes).
const MAX_FILE_NAME_CHARS: usize = 120;

/// A slash command (`/brief`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub team_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub command: String,
    pub text: String,
    pub response_url: String,
    pub trigger_id: String,
}

/// A Block Kit button press (Reconnect, App Home settings, forget…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAction {
    pub team_id: String,
    pub user_id: String,
    pub action_id: String,
    pub value: Option<String>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub response_url: Option<String>,
    pub trigger_id: Option<String>,
}

/// The stored `kind` of a slash command (its payload is the command's fields).
pub const KIND_SLASH_COMMAND: &str = "slash_command";
/// The stored `kind` prefix of an interaction (`interaction:block_actions`…).
pub const KIND_INTERACTION_PREFIX: &str = "interaction:";

/// Who robeing is in a workspace, to recognise its own messages.
#[derive(Debug, Clone, Default)]
pub struct Me<'a> {
    pub user_id: Option<&'a str>,
    pub bot_id: Option<&'a str>,
}

fn str_at<'v>(v: &'v serde_json::Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(|s| s.as_str()).filter(|s| !s.is_empty())
}

fn owned(v: &serde_json::Value, pointer: &str) -> Option<String> {
    str_at(v, pointer).map(str::to_owned)
}

/// Turns a stored payload (as recorded by either transport) into a
/// [`SlackEvent`]. `kind` is the stored kind; `event_id` the stored id.
/// A payload missing what its kind needs is an error (it cannot be acted on);
/// everything robeing deliberately does not act on is [`SlackEvent::Ignored`].
pub fn parse(event_id: &str, kind: &str, payload: &serde_json::Value, me: &Me<'_>) -> anyhow::Result<SlackEvent> {
    if kind == KIND_SLASH_COMMAND {
        let need = |field: &str| {
            owned(payload, &format!("/{field}")).ok_or_else(|| anyhow::anyhow!("slash command without `{field}`"))
        };
        return Ok(SlackEvent::SlashCommand(SlashCommand {
            team_id: need("team_id")?,
            user_id: need("user_id")?,
            channel_id: need("channel_id")?,
            command: need("command")?,
            text: str_at(payload, "/text").unwrap_or_default().to_owned(),
            response_url: need("response_url")?,
            trigger_id: need("trigger_id")?,
        }));
    }
    if kind.starts_with(KIND_INTERACTION_PREFIX) {
        return parse_interaction(payload);
    }
    let Some(event) = payload.get("event") else {
        anyhow::bail!("event payload without `event`");
    };
    let team = || {
        owned(payload, "/team_id")
            .or_else(|| owned(event, "/team"))
            .ok_or_else(|| anyhow::anyhow!("event without `team_id`"))
    };
    let user = || owned(event, "/user").ok_or_else(|| anyhow::anyhow!("event without `user`"));
    match str_at(event, "/type").unwrap_or_default() {
        "message" => Ok(parse_message(event_id, payload, event, me)),
        "app_home_opened" => match str_at(event, "/tab") {
            None | Some("home") => Ok(SlackEvent::AppHomeOpened { team_id: team()?, user_id: user()? }),
            Some("messages") => match owned(event, "/channel") {
                Some(channel_id) => {
                    Ok(SlackEvent::MessagesTabOpened { team_id: team()?, user_id: user()?, channel_id })
                }
                None => Ok(SlackEvent::Ignored { reason: "app_home_opened on Messages without a channel" }),
            },
            Some(_) => Ok(SlackEvent::Ignored { reason: "app_home_opened on a tab other than Home or Messages" }),
        },
        "user_change" => {
            let user_id = owned(event, "/user/id").ok_or_else(|| anyhow::anyhow!("user_change without `user.id`"))?;
            Ok(SlackEvent::UserChanged { team_id: team()?, user_id })
        }
        "app_uninstalled" => Ok(SlackEvent::AppUninstalled { team_id: team()? }),
        "tokens_revoked" => {
            let bot_revoked = event.pointer("/tokens/bot").and_then(|b| b.as_array()).is_some_and(|b| !b.is_empty());
            if !bot_revoked {
                return Ok(SlackEvent::Ignored { reason: "tokens_revoked for user tokens only" });
            }
            Ok(SlackEvent::TokensRevoked { team_id: team()? })
        }
        _ => Ok(SlackEvent::Ignored { reason: "an event type robeing does not handle" }),
    }
}

fn parse_message(event_id: &str, payload: &serde_json::Value, event: &serde_json::Value, me: &Me<'_>) -> SlackEvent {
    if event.get("subtype").is_some_and(|s| !s.is_null() && !s.as_str().is_some_and(|s| ANSWERED_SUBTYPES.contains(&s)))
    {
        // bot_message, message_changed, message_deleted, channel_join, …
        return SlackEvent::Ignored { reason: "a message subtype (bot, edit, delete, join…)" };
    }
    if event.get("bot_id").is_some_and(|b| !b.is_null()) || event.get("bot_profile").is_some() {
        return SlackEvent::Ignored { reason: "a bot's message" };
    }
    let Some(user_id) = owned(event, "/user") else {
        return SlackEvent::Ignored { reason: "a message without a user" };
    };
    let own = me.user_id == Some(user_id.as_str())
        || payload
            .get("authorizations")
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.iter().any(|x| x["is_bot"] == true && x["user_id"] == user_id.as_str()));
    if own {
        return SlackEvent::Ignored { reason: "robeing's own message" };
    }
    if str_at(event, "/channel_type") != Some("im") {
        return SlackEvent::Ignored { reason: "not a direct message" };
    }
    let (Some(channel_id), Some(ts)) = (owned(event, "/channel"), owned(event, "/ts")) else {
        return SlackEvent::Ignored { reason: "a message without channel or ts" };
    };
    let Some(team_id) = owned(payload, "/team_id").or_else(|| owned(event, "/team")) else {
        return SlackEvent::Ignored { reason: "a message without a workspace" };
    };
    SlackEvent::DirectMessage(DirectMessage {
        event_id: event_id.to_owned(),
        team_id,
        user_id,
        channel_id,
        ts,
        thread_ts: owned(event, "/thread_ts"),
        text: str_at(event, "/text").unwrap_or_default().to_owned(),
        files: files(event),
        shared: shared_messages(event),
    })
}

/// The messages shared into this one: its attachments that Slack marks as
/// a share or a message unfurl, with their text (or fallback).
fn shared_messages(event: &serde_json::Value) -> Vec<SharedMessage> {
    let Some(attachments) = event.get("attachments").and_then(|a| a.as_array()) else { return Vec::new() };
    attachments
        .iter()
        .filter(|a| a.get("is_share") == Some(&true.into()) || a.get("is_msg_unfurl") == Some(&true.into()))
        .filter_map(|a| {
            let text = str_at(a, "/text").or_else(|| str_at(a, "/fallback"))?.trim();
            (!text.is_empty()).then(|| SharedMessage {
                author: owned(a, "/author_name").or_else(|| owned(a, "/author_subname")),
                text: text.to_owned(),
            })
        })
        .collect()
}

/// A message's files; a name is one line, shortened, and a file Slack
/// describes without a name (hidden by the workspace's plan, or shared
/// from elsewhere) is named by its title or id.
fn files(event: &serde_json::Value) -> Vec<SlackFile> {
    let Some(files) = event.get("files").and_then(|f| f.as_array()) else { return Vec::new() };
    files
        .iter()
        .map(|f| {
            let name = ["/name", "/title", "/id"]
                .iter()
                .find_map(|p| str_at(f, p).filter(|n| !n.trim().is_empty()))
                .unwrap_or("?");
            let extension = name
                .rsplit_once('.')
                .map(|(_, e)| e.trim().to_lowercase())
                .filter(|e| !e.is_empty() && e.chars().count() <= 8 && e.chars().all(char::is_alphanumeric));
            let one_line: String = name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            let trimmed = one_line.trim();
            let name = if trimmed.chars().count() > MAX_FILE_NAME_CHARS {
                format!("{}…", trimmed.chars().take(MAX_FILE_NAME_CHARS).collect::<String>())
            } else {
                trimmed.to_owned()
            };
            SlackFile {
                name,
                extension,
                mimetype: owned(f, "/mimetype"),
                size: f.get("size").and_then(|s| s.as_u64()),
                url: owned(f, "/url_private_download").or_else(|| owned(f, "/url_private")),
                mode: owned(f, "/mode"),
            }
        })
        .collect()
}

fn parse_interaction(payload: &serde_json::Value) -> anyhow::Result<SlackEvent> {
    if str_at(payload, "/type") != Some("block_actions") {
        return Ok(SlackEvent::Ignored { reason: "an interaction other than block_actions" });
    }
    let team_id = owned(payload, "/team/id")
        .or_else(|| owned(payload, "/user/team_id"))
        .ok_or_else(|| anyhow::anyhow!("interaction without a team"))?;
    let user_id = owned(payload, "/user/id").ok_or_else(|| anyhow::anyhow!("interaction without `user.id`"))?;
    let Some(action) = payload.pointer("/actions/0") else {
        return Ok(SlackEvent::Ignored { reason: "block_actions without an action" });
    };
    Ok(SlackEvent::BlockAction(BlockAction {
        team_id,
        user_id,
        action_id: owned(action, "/action_id").ok_or_else(|| anyhow::anyhow!("action without `action_id`"))?,
        value: owned(action, "/value").or_else(|| owned(action, "/selected_option/value")),
        channel_id: owned(payload, "/channel/id").or_else(|| owned(payload, "/container/channel_id")),
        message_ts: owned(payload, "/message/ts").or_else(|| owned(payload, "/container/message_ts")),
        response_url: owned(payload, "/response_url"),
        trigger_id: owned(payload, "/trigger_id"),
    }))
}

/// Makes a payload storable: PostgreSQL's `text` and `jsonb` cannot hold
/// U+0000, which a Slack message (or a hostile request) may carry. Every NUL
/// in a string or an object key becomes U+FFFD, the same rule the exchange log
/// uses, so such a payload is recorded and answered instead of failing its
/// whole group commit (and with it every other event in the group).
/// Returns whether anything was replaced.
pub fn make_storable(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = storable(std::mem::take(s));
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| make_storable(v) | changed),
        Value::Object(map) => {
            let mut changed = map.values_mut().fold(false, |changed, v| make_storable(v) | changed);
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                map.extend(old.into_iter().map(|(k, v)| (storable(k), v)));
                changed = true;
            }
            changed
        }
        _ => false,
    }
}

/// One string made storable (see [`make_storable`]).
pub fn storable(s: String) -> String {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s }
}

/// What the transports need to record an Events API callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeKeys {
    pub event_id: String,
    pub team_id: Option<String>,
    pub kind: String,
}

/// The keys of an `event_callback` payload (Events API body or Socket Mode
/// `events_api` payload).
pub fn callback_keys(payload: &serde_json::Value) -> Result<EnvelopeKeys, &'static str> {
    let event_id = str_at(payload, "/event_id").ok_or("an event_callback without `event_id`")?;
    if event_id.len() > 255 {
        return Err("`event_id` is longer than 255 characters");
    }
    let kind = str_at(payload, "/event/type").ok_or("an event_callback without `event.type`")?;
    Ok(EnvelopeKeys { event_id: event_id.to_owned(), team_id: owned(payload, "/team_id"), kind: kind.to_owned() })
}

/// The keys of a slash command (its fields as a JSON object). Commands carry
/// no event id: `trigger_id` is unique per invocation and is the same on a
/// Socket Mode redelivery, so `cmd:<trigger_id>` dedupes.
pub fn command_keys(payload: &serde_json::Value) -> Result<EnvelopeKeys, &'static str> {
    let trigger = str_at(payload, "/trigger_id").ok_or("a slash command without `trigger_id`")?;
    str_at(payload, "/command").ok_or("a slash command without `command`")?;
    Ok(EnvelopeKeys {
        event_id: truncate_id(format!("cmd:{trigger}")),
        team_id: owned(payload, "/team_id"),
        kind: KIND_SLASH_COMMAND.to_owned(),
    })
}

/// The keys of an interaction payload: `act:<trigger_id>`, or, without a
/// trigger, the user and the first action's `action_ts`.
pub fn interaction_keys(payload: &serde_json::Value) -> Result<EnvelopeKeys, &'static str> {
    let kind = str_at(payload, "/type").ok_or("an interaction without `type`")?;
    let id = match str_at(payload, "/trigger_id") {
        Some(t) => format!("act:{t}"),
        None => {
            let user = str_at(payload, "/user/id").ok_or("an interaction without `trigger_id` or `user.id`")?;
            let ts =
                str_at(payload, "/actions/0/action_ts").ok_or("an interaction without `trigger_id` or `action_ts`")?;
            format!("act:{user}:{ts}")
        }
    };
    Ok(EnvelopeKeys {
        event_id: truncate_id(id),
        team_id: owned(payload, "/team/id").or_else(|| owned(payload, "/user/team_id")),
        kind: format!("{KIND_INTERACTION_PREFIX}{kind}"),
    })
}

fn truncate_id(mut id: String) -> String {
    if id.len() > 255 {
        let mut cut = 255;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    id
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dm(extra: serde_json::Value) -> serde_json::Value {
        let mut event = json!({"type": "message", "channel": "D0TEST001", "channel_type": "im", "user": "U0TEST001", "text": "하이", "ts": "1764000000.000100"});
        for (k, v) in extra.as_object().unwrap() {
            event[k] = v.clone();
        }
        json!({"type": "event_callback", "team_id": "T0ROBEING", "event_id": "Ev1", "event": event,
               "authorizations": [{"user_id": "U0BOT0001", "is_bot": true}]})
    }

    #[test]
    fn a_human_dm_is_a_direct_message() {
        let e = parse("Ev1", "message", &dm(json!({})), &Me::default()).unwrap();
        let SlackEvent::DirectMessage(m) = e else { panic!("{e:?}") };
        assert_eq!((m.user_id.as_str(), m.channel_id.as_str(), m.text.as_str()), ("U0TEST001", "D0TEST001", "하이"));
    }

    #[test]
    fn a_file_keeps_its_extension_when_its_name_is_shortened() {
        let long = format!("{}.HWP", "주간 회의록 ".repeat(30));
        let files = json!({"subtype": "file_share", "files": [
            {"id": "F1", "name": long}, {"id": "F2", "name": "README"}, {"id": "F3", "name": "v1.2 final"}]});
        let SlackEvent::DirectMessage(m) = parse("Ev1", "message", &dm(files), &Me::default()).unwrap() else {
            panic!("file_share")
        };
        assert!(m.files[0].name.ends_with('…'), "{}", m.files[0].name);
        let extensions: Vec<Option<&str>> = m.files.iter().map(|f| f.extension.as_deref()).collect();
        assert_eq!(extensions, [Some("hwp"), None, None]);
    }

    #[test]
    fn a_file_share_a_thread_broadcast_and_a_me_message_are_a_human_writing() {
        let files = json!({"subtype": "file_share", "text": "", "files": [
            {"id": "F1", "name": "a.png"}, {"id": "F2", "title": "untitled\nnote"}, {"id": "F3", "mode": "hidden_by_limit"},
            {"id": "F4", "name": "n.txt", "mimetype": "text/plain", "size": 12, "mode": "snippet",
             "url_private": "https://files.slack.com/files-pri/T1-F4/n.txt",
             "url_private_download": "https://files.slack.com/files-pri/T1-F4/download/n.txt"}
        ]});
        let SlackEvent::DirectMessage(m) = parse("Ev1", "message", &dm(files), &Me::default()).unwrap() else {
            panic!("file_share")
        };
        assert_eq!(
            m.file_names(),
            ["a.png", "untitled note", "F3", "n.txt"],
            "named by name, else title, else id; one line each"
        );
        assert_eq!(
            m.files[3],
            SlackFile {
                name: "n.txt".into(),
                extension: Some("txt".into()),
                mimetype: Some("text/plain".into()),
                size: Some(12),
                url: Some("https://files.slack.com/files-pri/T1-F4/download/n.txt".into()),
                mode: Some("snippet".into()),
            },
            "downloaded from url_private_download"
        );
        assert_eq!((m.files[0].url.as_deref(), m.files[2].mode.as_deref()), (None, Some("hidden_by_limit")));
        let broadcast = json!({"subtype": "thread_broadcast", "thread_ts": "1764000000.000001"});
        let SlackEvent::DirectMessage(m) = parse("Ev1", "message", &dm(broadcast), &Me::default()).unwrap() else {
            panic!("thread_broadcast")
        };
        assert_eq!(m.thread_ts.as_deref(), Some("1764000000.000001"), "answered in its thread");
        let me = json!({"subtype": "me_message", "text": "waves"});
        assert!(matches!(
            parse("Ev1", "message", &dm(me), &Me::default()).unwrap(),
            SlackEvent::DirectMessage(DirectMessage { ref text, .. }) if text == "waves"
        ));
    }

    #[test]
    fn bots_edits_and_channels_are_ignored() {
        for extra in [
            json!({"bot_id": "B0BOT0001"}),
            json!({"subtype": "bot_message"}),
            json!({"subtype": "message_changed"}),
            json!({"subtype": "message_deleted"}),
            json!({"user": "U0BOT0001"}),
            json!({"channel_type": "channel", "channel": "C0GENERAL"}),
            json!({"channel_type": "mpim"}),
        ] {
            let e = parse("Ev1", "message", &dm(extra.clone()), &Me::default()).unwrap();
            assert!(matches!(e, SlackEvent::Ignored { .. }), "{extra}: {e:?}");
        }
        let me = Me { user_id: Some("U0TEST001"), bot_id: None };
        assert!(matches!(parse("Ev1", "message", &dm(json!({})), &me).unwrap(), SlackEvent::Ignored { .. }));
    }

    #[test]
    fn nul_is_made_storable_in_strings_keys_and_nesting() {
        let mut v = json!({"event_id": "Ev\u{0}", "event": {"text": "a\u{0}b", "k\u{0}": [1, "\u{0}", {"x": "y"}]}});
        assert!(make_storable(&mut v));
        assert_eq!(
            v,
            json!({"event_id": "Ev\u{FFFD}", "event": {"text": "a\u{FFFD}b", "k\u{FFFD}": [1, "\u{FFFD}", {"x": "y"}]}})
        );
        assert!(!make_storable(&mut v), "nothing left to replace");
        assert_eq!(storable("ok".into()), "ok");
    }

    #[test]
    fn ids_for_commands_and_interactions() {
        let cmd = json!({"command": "/brief", "trigger_id": "123.456.abc", "team_id": "T0ROBEING"});
        assert_eq!(command_keys(&cmd).unwrap().event_id, "cmd:123.456.abc");
        let act = json!({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_ts": "17.5"}]});
        assert_eq!(interaction_keys(&act).unwrap().event_id, "act:U1:17.5");
        assert!(callback_keys(&json!({"event": {"type": "message"}})).is_err());
    }
}
