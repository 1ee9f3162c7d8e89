//! Briefing settings in App Home: the view a user sees (when their next
//! briefing arrives, how the last one went, their time, on/off, "send one
//! now") and the handling of its actions.
//!
//! Merge boundary: the Slack transport publishes [`view`] with `views.publish`
//! on `app_home_opened` (and after each action), and routes `block_actions`
//! whose `action_id` starts with `briefing_` to [`handle_action`].

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde_json::{Value, json};

use super::{
    compose::Lang,
    render::escape,
    scheduler::{scheduled_at, user_tz},
};
use crate::{startup::AppState, storage};

/// `action_id` of the time picker (value `HH:MM`, or `default`).
pub const ACTION_TIME: &str = "briefing_time";
/// `action_id` of the on/off button (value `on` or `off`).
pub const ACTION_TOGGLE: &str = "briefing_toggle";
/// `action_id` of "send one now".
pub const ACTION_SEND_NOW: &str = "briefing_send_now";

/// When the user's next daily briefing will arrive, or `None` when it is off.
pub async fn next_at(
    state: &AppState,
    user: &storage::users::User,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    if !user.briefing_enabled {
        return Ok(None);
    }
    let tz = user_tz(state, user.tz.as_deref());
    let time = user.briefing_time.unwrap_or(state.config.briefing_time);
    let today = now.with_timezone(&tz).date_naive();
    let at = scheduled_at(today, time, tz);
    if at > now && !storage::briefings::daily_exists(&state.db, &user.user_id, today).await? {
        return Ok(Some(at));
    }
    Ok(Some(scheduled_at(today + Duration::days(1), time, tz)))
}

/// The App Home view (`{"type": "home", "blocks": [...]}`).
pub async fn view(state: &AppState, user_id: &str, now: DateTime<Utc>) -> anyhow::Result<Value> {
    let user = storage::users::get(&state.db, user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("unknown Slack user `{user_id}`"))?;
    let lang = Lang::from_locale(user.locale.as_deref());
    let tz = user_tz(state, user.tz.as_deref());
    let ko = lang == Lang::Ko;
    let next = match next_at(state, &user, now).await? {
        Some(at) => {
            let local = at.with_timezone(&tz);
            if ko {
                format!("다음 브리핑: *{}* ({tz})", local.format("%m월 %d일 %H:%M"))
            } else {
                format!("Next briefing: *{}* ({tz})", local.format("%a %-d %b, %H:%M"))
            }
        }
        None if ko => "매일 브리핑이 *꺼져* 있습니다.".into(),
        None => "Your daily briefing is *off*.".into(),
    };
    let last = match storage::briefings::latest(&state.db, user_id).await? {
        None if ko => "아직 브리핑이 없습니다.".to_owned(),
        None => "No briefing yet.".to_owned(),
        Some(b) => {
            let when = b.delivered_at.unwrap_or(b.claimed_at).with_timezone(&tz).format("%Y-%m-%d %H:%M");
            let sections = format!(
                "email {}, news {}",
                b.email_status.as_deref().unwrap_or("-"),
                b.news_status.as_deref().unwrap_or("-")
            );
            let reason = b.skip_reason.or(b.failure_reason).map(|r| format!(" — {}", escape(&r))).unwrap_or_default();
            if ko {
                format!("지난 브리핑: {when} · {} · {sections}{reason}", b.status)
            } else {
                format!("Last briefing: {when} · {} · {sections}{reason}", b.status)
            }
        }
    };
    let current = user.briefing_time.map(|t| t.format("%H:%M").to_string()).unwrap_or_else(|| "default".into());
    let option = |value: &str| {
        let text = if value == "default" {
            let d = state.config.briefing_time.format("%H:%M");
            if ko { format!("기본값 ({d})") } else { format!("Default ({d})") }
        } else {
            value.to_owned()
        };
        json!({ "text": { "type": "plain_text", "text": text }, "value": value })
    };
    let mut values: Vec<String> = vec!["default".into()];
    values.extend((10..=24).map(|half_hours| format!("{:02}:{:02}", half_hours / 2, (half_hours % 2) * 30)));
    if !values.contains(&current) {
        values.push(current.clone());
    }
    let (toggle_text, toggle_value) = match (user.briefing_enabled, ko) {
        (true, false) => ("Turn off", "off"),
        (true, true) => ("끄기", "off"),
        (false, false) => ("Turn on", "on"),
        (false, true) => ("켜기", "on"),
    };
    Ok(json!({
        "type": "home",
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": if ko { "☀️ 모닝 브리핑" } else { "☀️ Morning briefing" } } },
            { "type": "section", "text": { "type": "mrkdwn", "text": next } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": last } ] },
            { "type": "actions", "elements": [
                {
                    "type": "static_select",
                    "action_id": ACTION_TIME,
                    "placeholder": { "type": "plain_text", "text": if ko { "브리핑 시간" } else { "Briefing time" } },
                    "initial_option": option(&current),
                    "options": values.iter().map(|v| option(v)).collect::<Vec<_>>(),
                },
                { "type": "button", "action_id": ACTION_TOGGLE, "value": toggle_value,
                  "text": { "type": "plain_text", "text": toggle_text } },
                { "type": "button", "action_id": ACTION_SEND_NOW, "value": "now", "style": "primary",
                  "text": { "type": "plain_text", "text": if ko { "지금 받기" } else { "Send one now" } } },
            ] },
        ]
    }))
}

/// What an App Home action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeOutcome {
    TimeSet(Option<NaiveTime>),
    Enabled(bool),
    Sent(super::deliver::Via),
}

/// Applies one App Home action for `user_id` at `now`. When the new setting
/// puts today's briefing time more than the catch-up window in the past, a
/// `skipped` row records why today has none, so the scheduler does not call
/// it "missed: service was down".
pub async fn handle_action(
    state: &AppState,
    user_id: &str,
    action_id: &str,
    value: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<HomeOutcome> {
    let user = storage::users::get(&state.db, user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("unknown Slack user `{user_id}`"))?;
    let outcome = match (action_id, value) {
        (ACTION_TIME, Some(v)) => {
            let time = match v {
                "default" => None,
                v => Some(crate::config::parse_clock_time(v).ok_or_else(|| anyhow::anyhow!("`{v}` is not a time"))?),
            };
            storage::briefings::set_briefing_time(&state.db, user_id, time).await?;
            HomeOutcome::TimeSet(time)
        }
        (ACTION_TOGGLE, Some(v @ ("on" | "off"))) => {
            storage::briefings::set_briefing_enabled(&state.db, user_id, v == "on").await?;
            HomeOutcome::Enabled(v == "on")
        }
        (ACTION_SEND_NOW, _) => {
            let done = super::deliver::on_demand_for(state, &user, None, None, "app_home").await?;
            return Ok(HomeOutcome::Sent(done.via));
        }
        (other, v) => anyhow::bail!("unknown App Home action `{other}` (value {v:?})"),
    };
    // Today's time already far behind: say so now rather than "missed" later.
    let Some(user) = storage::users::get(&state.db, user_id).await? else { return Ok(outcome) };
    if user.briefing_enabled {
        let tz = user_tz(state, user.tz.as_deref());
        let time = user.briefing_time.unwrap_or(state.config.briefing_time);
        let today = now.with_timezone(&tz).date_naive();
        let at = scheduled_at(today, time, tz);
        let grace = super::scheduler::catch_up_window(state);
        if now - at > grace {
            let reason = format!(
                "settings changed in App Home at {} {tz}, after today's {} briefing time",
                now.with_timezone(&tz).format("%H:%M"),
                time.format("%H:%M")
            );
            storage::briefings::skip_daily(&state.db, user_id, today, "app_home", &reason).await?;
        }
    }
    Ok(outcome)
}
