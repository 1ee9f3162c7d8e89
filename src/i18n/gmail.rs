//! The Gmail connection as the user sees it in Slack: the Connect and
//! Reconnect prompts, the reminder before a briefing, the DMs that tell how
//! an OAuth sign-in ended, and App Home's Gmail section.
//!
//! Arguments are mrkdwn-ready: `since` is a Slack `<!date…>` token, `email`
//! and `reason` come escaped from the caller.

use super::Lang;

pub fn connect_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail 연결",
        Lang::En => "Connect Gmail",
    }
}

pub fn reconnect_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail 다시 연결",
        Lang::En => "Reconnect Gmail",
    }
}

/// The reconnect prompt after a breakage: why, since when, what to do.
pub fn reconnect_prompt(lang: Lang, since: &str, reason: &str) -> String {
    match lang {
        Lang::Ko => format!(
            ":warning: *Gmail을 더 이상 읽을 수 없어요* ({since}부터).\n*이유:* {reason}\n다시 연결하기 전까지 아침 브리핑에는 메일을 읽지 못했다고 나와요. *Gmail 다시 연결* 을 누르고 Google에 로그인해 주세요. 1분이면 돼요."
        ),
        Lang::En => format!(
            ":warning: *I can no longer read your Gmail* (since {since}).\n*Why:* {reason}\nUntil you reconnect, your morning briefing will say that email could not be read. Click *Reconnect Gmail* and sign in with Google; it takes a minute."
        ),
    }
}

/// The notification text of [`reconnect_prompt`].
pub fn reconnect_prompt_fallback(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail을 더 이상 읽을 수 없어요. Gmail 다시 연결을 눌러 Google에 다시 로그인해 주세요.",
        Lang::En => "I can no longer read your Gmail. Click Reconnect Gmail to sign in with Google again.",
    }
}

/// The one reminder before the next briefing while Gmail is still broken.
pub fn reminder(lang: Lang, since: &str, reason: &str) -> String {
    match lang {
        Lang::Ko => format!(
            ":alarm_clock: *알림:* 아직 Gmail을 읽을 수 없어서({since}부터) 내일 브리핑에는 메일이 빠져요.\n*이유:* {reason}"
        ),
        Lang::En => format!(
            ":alarm_clock: *Reminder:* I still cannot read your Gmail (since {since}), so tomorrow's briefing will not include your email.\n*Why:* {reason}"
        ),
    }
}

pub fn reminder_fallback(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "알림: 다음 브리핑 전에 Gmail을 다시 연결해 주세요.",
        Lang::En => "Reminder: reconnect Gmail before your next briefing.",
    }
}

/// For someone who never connected and asked for something that needs Gmail.
pub fn connect_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "브리핑에 메일을 넣으려면 Gmail 읽기 권한이 필요해요. *Gmail 연결* 을 누르고 Google에 로그인해 주세요."
        }
        Lang::En => {
            "To include your email in briefings, I need read-only access to your Gmail. Click *Connect Gmail* and sign in with Google."
        }
    }
}

pub fn connect_prompt_fallback(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail을 연결하면 브리핑에 메일이 들어가요.",
        Lang::En => "Connect Gmail to include your email in briefings.",
    }
}

/// DM after an expired connect link was opened (with a fresh button).
pub fn link_expired(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "그 Gmail 링크는 만료되었어요(링크는 15분 동안만 쓸 수 있어요). 새 링크를 보내 드려요.",
        Lang::En => "That Gmail link had expired (links work for 15 minutes). Here is a fresh one.",
    }
}

/// DM after the user declined on Google's consent page.
pub fn declined(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "Gmail 접근을 거절하셔서 브리핑에는 메일이 빠져요. 실수였다면 *Gmail 연결* 을 누르고 *허용* 을 선택해 주세요."
        }
        Lang::En => {
            "You declined Gmail access, so briefings will leave your email out. If that was a mistake, click *Connect Gmail* and choose *Allow*."
        }
    }
}

/// DM after Google answered the redirect with another error code.
pub fn google_error(lang: Lang, error: &str) -> String {
    match lang {
        Lang::Ko => format!("Google이 Gmail을 연결하지 않았어요(`{error}`). 아래 버튼으로 다시 시도해 주세요."),
        Lang::En => {
            format!("Google did not connect your Gmail (it said `{error}`). Please try again with the button below.")
        }
    }
}

/// Replaces the earlier Reconnect prompt once Gmail is connected.
pub fn connected(lang: Lang, email: &str) -> String {
    match lang {
        Lang::Ko => {
            format!(":white_check_mark: Gmail이 *{email}* 계정으로 연결되었어요. 이제 브리핑에 메일이 들어가요.")
        }
        Lang::En => {
            format!(":white_check_mark: Gmail connected as *{email}*. Your briefings will include your inbox.")
        }
    }
}

/// The DM that says Gmail is connected.
pub fn connected_short(lang: Lang, email: &str) -> String {
    match lang {
        Lang::Ko => format!("Gmail이 {email} 계정으로 연결되었어요"),
        Lang::En => format!("Gmail connected as {email}"),
    }
}

/// How a sign-in ended badly, for the DM that comes with a fresh button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Reused,
    Expired,
    CodeRejected,
    NoRefreshToken,
    MissingScope,
    Internal,
}

impl Failure {
    pub const ALL: [Failure; 6] = [
        Failure::Reused,
        Failure::Expired,
        Failure::CodeRejected,
        Failure::NoRefreshToken,
        Failure::MissingScope,
        Failure::Internal,
    ];
}

pub fn callback_failed(lang: Lang, failure: Failure) -> &'static str {
    match (lang, failure) {
        (Lang::Ko, Failure::Reused) => {
            "그 Gmail 로그인 링크는 이미 사용되었어요. 아직 Gmail이 연결되지 않았다면 이 새 버튼을 눌러 주세요."
        }
        (Lang::En, Failure::Reused) => {
            "That Gmail sign-in link was already used. If Gmail is still not connected, use this fresh button."
        }
        (Lang::Ko, Failure::Expired) => "Gmail 로그인이 10분을 넘겨 만료되었어요. 이 버튼으로 다시 시작해 주세요.",
        (Lang::En, Failure::Expired) => {
            "Your Gmail sign-in took longer than 10 minutes and expired. Start again with this button."
        }
        (Lang::Ko, Failure::CodeRejected) => "Google이 Gmail 로그인을 거절했어요. 이 버튼으로 다시 시도해 주세요.",
        (Lang::En, Failure::CodeRejected) => "Google refused the Gmail sign-in. Please try again with this button.",
        (Lang::Ko, Failure::NoRefreshToken) => {
            "Google이 Gmail에 계속 접근할 권한을 주지 않았어요. https://myaccount.google.com/permissions 에서 robeing을 삭제한 뒤 *Gmail 연결* 을 다시 눌러 주세요."
        }
        (Lang::En, Failure::NoRefreshToken) => {
            "Google did not give me lasting access to your Gmail. Remove robeing at https://myaccount.google.com/permissions, then click *Connect Gmail* again."
        }
        (Lang::Ko, Failure::MissingScope) => {
            "로그인은 하셨지만 *이메일 읽기* 를 허용하지 않으셔서 아직 Gmail을 읽을 수 없어요. *Gmail 연결* 을 누르고 허용해 주세요."
        }
        (Lang::En, Failure::MissingScope) => {
            "You signed in but did not tick *Read your email*, so I still cannot read your Gmail. Click *Connect Gmail* and allow it."
        }
        (Lang::Ko, Failure::Internal) => "Gmail을 연결하는 중에 문제가 생겼어요. 잠시 후 다시 시도해 주세요.",
        (Lang::En, Failure::Internal) => {
            "Something went wrong while connecting your Gmail. Please try again in a minute."
        }
    }
}

/// The answer to "reconnect gmail" from a user whose Gmail works.
pub fn connected_already(lang: Lang, email: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "Gmail은 {email} 계정으로 잘 연결되어 있어요. Google에 다시 로그인하시거나 다른 계정으로 바꾸시려면 Gmail 다시 연결을 눌러 주세요."
        ),
        Lang::En => format!(
            "Your Gmail is connected as {email} and working. To sign in with Google again, or with another account, press Reconnect Gmail."
        ),
    }
}

pub fn home_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail",
        Lang::En => "Gmail",
    }
}

pub fn home_not_configured(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "이 robeing에는 Gmail이 설정되어 있지 않아 브리핑에 메일이 빠져요. (운영자: GOOGLE_CLIENT_ID를 설정하세요.)"
        }
        Lang::En => {
            "Gmail is not configured on this robeing; briefings leave email out. (Operator: set GOOGLE_CLIENT_ID.)"
        }
    }
}

pub fn home_lookup_failed(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "지금은 Gmail 연결 상태를 확인하지 못했어요. 잠시 후 다시 열어 주세요.",
        Lang::En => "I could not look up your Gmail connection just now; please try again shortly.",
    }
}

pub fn home_connected(lang: Lang, email: &str, since: Option<&str>) -> String {
    match (lang, since) {
        (Lang::Ko, Some(since)) => format!(":white_check_mark: *{email}* 계정으로 연결됨 ({since}부터)."),
        (Lang::Ko, None) => format!(":white_check_mark: *{email}* 계정으로 연결됨."),
        (Lang::En, Some(since)) => format!(":white_check_mark: Connected as *{email}* since {since}."),
        (Lang::En, None) => format!(":white_check_mark: Connected as *{email}*."),
    }
}

pub fn home_needs_reconnect(lang: Lang, since: &str, reason: &str) -> String {
    match lang {
        Lang::Ko => format!(":warning: *다시 연결 필요* ({since}부터).\n*이유:* {reason}"),
        Lang::En => format!(":warning: *Needs reconnect* since {since}.\n*Why:* {reason}"),
    }
}

pub fn home_not_connected(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "연결되지 않음: 브리핑에 메일이 빠져요.",
        Lang::En => "Not connected: briefings leave your email out.",
    }
}

pub fn disconnect_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail 연결 해제",
        Lang::En => "Disconnect Gmail",
    }
}

pub fn disconnect_confirm_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail 연결을 해제할까요?",
        Lang::En => "Disconnect Gmail?",
    }
}

pub fn disconnect_confirm_text(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "브리핑에 더 이상 메일이 들어가지 않고, Google에서 robeing의 접근 권한이 취소돼요.",
        Lang::En => "Briefings will no longer include your email, and robeing's access is revoked at Google.",
    }
}

pub fn disconnect_confirm(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "연결 해제",
        Lang::En => "Disconnect",
    }
}
