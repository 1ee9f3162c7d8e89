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
    render::escape,
    scheduler::{scheduled_at, user_tz},
};
use crate::{
    i18n::{Lang, briefing as words},
    startup::AppState,
    storage,
};

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
    let lang = Lang::of_locale(user.locale.as_deref());
    let tz = user_tz(state, user.tz.as_deref());
    let next = match next_at(state, &user, now).await? {
        Some(at) => words::next_at(lang, at, tz),
        None => words::off(lang).to_owned(),
    };
    let last = match storage::briefings::latest(&state.db, user_id).await? {
        None => words::none_yet(lang).to_owned(),
        Some(b) => {
            let when = b.delivered_at.unwrap_or(b.claimed_at).with_timezone(&tz).format("%Y-%m-%d %H:%M");
            let reason = b.skip_reason.or(b.failure_reason).map(|r| format!(" — {}", escape(&r))).unwrap_or_default();
            words::last(
                lang,
                &when.to_string(),
                &b.status,
                b.email_status.as_deref().unwrap_or("-"),
                b.news_status.as_deref().unwrap_or("-"),
                &reason,
            )
        }
    };
    let current = user.briefing_time.map(|t| t.format("%H:%M").to_string()).unwrap_or_else(|| "default".into());
    let option = |value: &str| {
        let text = if value == "default" {
            words::default_time(lang, &state.config.briefing_time.format("%H:%M").to_string())
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
    let toggle_text = words::toggle(lang, user.briefing_enabled);
    let toggle_value = if user.briefing_enabled { "off" } else { "on" };
    Ok(json!({
        "type": "home",
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": words::settings_header(lang) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": next } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": last } ] },
            { "type": "actions", "elements": [
                {
                    "type": "static_select",
                    "action_id": ACTION_TIME,
                    "placeholder": { "type": "plain_text", "text": words::time_placeholder(lang) },
                    "initial_option": option(&current),
                    "options": values.iter().map(|v| option(v)).collect::<Vec<_>>(),
                },
                { "type": "button", "action_id": ACTION_TOGGLE, "value": toggle_value,
                  "text": { "type": "plain_text", "text": toggle_text } },
                { "type": "button", "action_id": ACTION_SEND_NOW, "value": "now", "style": "primary",
                  "text": { "type": "plain_text", "text": words::send_now(lang) } },
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
