//! The browser pages of the Gmail OAuth flow (`/oauth/google/start` and
//! `/oauth/google/callback`): one [`Page`] per outcome, each a title, what
//! happened, and what to do next. Plain text; the page builder escapes it.

use super::Lang;

/// Every outcome the OAuth routes show in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// A query parameter came twice (the flow never sends that).
    DuplicateParam { param: String, callback: bool },
    /// No Google OAuth client is configured.
    NotConfigured,
    /// `/start` without its signed token.
    MissingToken,
    /// The connect link is older than its 15 minutes.
    LinkExpired,
    /// The connect link was altered or not made by robeing.
    LinkInvalid,
    /// The link's Slack user is unknown.
    UnknownUser,
    /// robeing could not begin the sign-in.
    StartFailed,
    /// The callback has no `state`.
    NoState,
    /// The callback has both `code` and `error`.
    CodeAndError,
    /// The callback has neither.
    NeitherCodeNorError,
    /// The person declined on Google's page.
    Declined,
    /// Google redirected back with another error code.
    GoogleError { error: String },
    /// Connected.
    Connected { email: String, slack_name: String },
    /// A `state` robeing did not issue.
    UnknownState,
    /// A `state` already used.
    ReusedState,
    /// A `state` older than 10 minutes.
    ExpiredState,
    /// Google refused the code.
    CodeRejected { error: String },
    /// Google gave no refresh token.
    NoRefreshToken,
    /// Signed in without granting Gmail.
    MissingScope,
    /// Google or the database did not answer.
    CallbackFailed,
}

/// A page's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    pub title: &'static str,
    pub what: String,
    pub next: &'static str,
}

fn ask_again(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Slack에서 robeing에게 새 링크를 요청하세요(robeing 홈 탭의 Gmail 부분에 있어요).",
        Lang::En => "Ask robeing in Slack for a new link (the Gmail section of its Home tab has one).",
    }
}

fn use_the_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Slack에서 robeing이 보낸 버튼으로 다시 시작하세요.",
        Lang::En => "Start again with the button robeing sent you in Slack.",
    }
}

impl Page {
    pub fn text(&self, lang: Lang) -> PageText {
        let ko = lang == Lang::Ko;
        let p = |title: &'static str, what: String, next: &'static str| PageText { title, what, next };
        let invalid_response =
            if ko { "이 로그인 응답은 올바르지 않아요" } else { "This sign-in response is not valid" };
        match self {
            Page::DuplicateParam { param, callback } => p(
                if *callback {
                    invalid_response
                } else if ko {
                    "올바르지 않은 링크예요"
                } else {
                    "This link is not valid"
                },
                if ko {
                    format!("`{param}` 값이 두 번 이상 들어 있어요.")
                } else {
                    format!("The parameter `{param}` was given more than once.")
                },
                ask_again(lang),
            ),
            Page::NotConfigured => p(
                if ko { "Gmail이 설정되어 있지 않아요" } else { "Gmail is not set up" },
                if ko {
                    "이 robeing에는 Google OAuth 클라이언트가 설정되어 있지 않아 Gmail을 연결할 수 없어요.".into()
                } else {
                    "This robeing has no Google OAuth client configured, so Gmail cannot be connected.".into()
                },
                if ko {
                    "운영자에게 GOOGLE_CLIENT_ID와 GOOGLE_CLIENT_SECRET 설정을 요청하세요."
                } else {
                    "Ask your operator to set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET."
                },
            ),
            Page::MissingToken => p(
                if ko { "올바르지 않은 링크예요" } else { "This link is not valid" },
                if ko {
                    "링크에 서명된 토큰이 없어요.".into()
                } else {
                    "The link is missing its signed token.".into()
                },
                ask_again(lang),
            ),
            Page::LinkExpired => p(
                if ko { "만료된 링크예요" } else { "This link has expired" },
                if ko {
                    "연결 링크는 15분 동안만 쓸 수 있어요. Slack으로 새 링크를 보내 드렸어요.".into()
                } else {
                    "Connect links work for 15 minutes. I have sent you a fresh one in Slack.".into()
                },
                if ko {
                    "Slack을 열고 새 버튼을 눌러 주세요."
                } else {
                    "Open Slack and click the new button."
                },
            ),
            Page::LinkInvalid => p(
                if ko { "올바르지 않은 링크예요" } else { "This link is not valid" },
                if ko {
                    "링크가 바뀌었거나 robeing이 만든 링크가 아니에요.".into()
                } else {
                    "The link was changed or was not made by robeing.".into()
                },
                ask_again(lang),
            ),
            Page::UnknownUser => p(
                if ko { "알 수 없는 Slack 사용자예요" } else { "Unknown Slack user" },
                if ko {
                    "robeing은 이 링크가 만들어진 Slack 사용자를 아직 몰라요.".into()
                } else {
                    "robeing has not met the Slack user this link was made for.".into()
                },
                if ko {
                    "먼저 Slack에서 robeing에게 DM을 보낸 다음 새 링크를 요청하세요."
                } else {
                    "Send robeing a direct message in Slack first, then ask for a new link."
                },
            ),
            Page::StartFailed => p(
                if ko { "문제가 생겼어요" } else { "Something went wrong" },
                if ko {
                    "robeing이 Google 로그인을 시작하지 못했어요.".into()
                } else {
                    "robeing could not start the Google sign-in.".into()
                },
                if ko {
                    "잠시 후 다시 시도해 주세요. 원인은 운영자 로그에 있어요."
                } else {
                    "Please try again in a minute; the operator's logs have the cause."
                },
            ),
            Page::NoState => p(
                invalid_response,
                if ko {
                    "`state` 값이 없어서 robeing이 시작한 로그인의 응답이 아니에요.".into()
                } else {
                    "It has no `state` parameter, so it did not come from a sign-in robeing started.".into()
                },
                ask_again(lang),
            ),
            Page::CodeAndError => p(
                invalid_response,
                if ko {
                    "코드와 오류가 함께 들어 있어요.".into()
                } else {
                    "It carries both a code and an error.".into()
                },
                ask_again(lang),
            ),
            Page::NeitherCodeNorError => p(
                invalid_response,
                if ko {
                    "코드도 오류도 들어 있지 않아요.".into()
                } else {
                    "It has neither a code nor an error.".into()
                },
                ask_again(lang),
            ),
            Page::Declined => p(
                if ko { "Gmail이 연결되지 않았어요" } else { "Gmail was not connected" },
                if ko {
                    "Google 화면에서 접근을 거절하셔서 robeing이 Gmail을 읽을 수 없고, 브리핑에는 메일이 빠져요.".into()
                } else {
                    "You declined access on Google's page, so robeing cannot read your Gmail and briefings will leave email out.".into()
                },
                if ko {
                    "마음이 바뀌셨나요? Slack에서 robeing이 보낸 Gmail 연결 버튼을 누르세요."
                } else {
                    "Changed your mind? Use the Connect Gmail button robeing sent you in Slack."
                },
            ),
            Page::GoogleError { error } => p(
                if ko { "Gmail이 연결되지 않았어요" } else { "Gmail was not connected" },
                if ko {
                    format!("Google이 `{error}` 오류로 답했어요.")
                } else {
                    format!("Google answered with the error `{error}`.")
                },
                if ko {
                    "Slack에서 robeing이 보낸 버튼으로 다시 시도하세요."
                } else {
                    "Try again with the button robeing sent you in Slack."
                },
            ),
            Page::Connected { email, slack_name } => p(
                if ko { "Gmail이 연결되었어요" } else { "Gmail connected" },
                if ko {
                    format!(
                        "이제 robeing이 Slack 사용자 {slack_name}님의 받은편지함 {email} 을(를) 읽을 수 있어요(읽기 전용)."
                    )
                } else {
                    format!("robeing can now read the inbox of {email} (read-only) for the Slack user {slack_name}.")
                },
                if ko {
                    "이 탭을 닫고 Slack으로 돌아가셔도 돼요."
                } else {
                    "You can close this tab and go back to Slack."
                },
            ),
            Page::UnknownState => p(
                if ko { "올바르지 않은 로그인 링크예요" } else { "This sign-in link is not valid" },
                if ko {
                    "robeing이 시작한 로그인이 아니에요(또는 링크가 바뀌었어요).".into()
                } else {
                    "robeing did not start this sign-in (or the link was altered).".into()
                },
                ask_again(lang),
            ),
            Page::ReusedState => p(
                if ko { "이미 사용된 로그인이에요" } else { "This sign-in was already used" },
                if ko {
                    "로그인은 한 번만 쓸 수 있어요. 이 로그인은 이미 완료되었거나 시도되었어요.".into()
                } else {
                    "Each sign-in works once; this one was already completed or attempted.".into()
                },
                if ko {
                    "아직 Gmail이 연결되지 않았다면 Slack에서 robeing이 보낸 버튼을 누르세요."
                } else {
                    "If Gmail is not connected yet, use the button robeing sent you in Slack."
                },
            ),
            Page::ExpiredState => p(
                if ko { "만료된 로그인이에요" } else { "This sign-in has expired" },
                if ko {
                    "로그인은 시작하고 10분 안에 마쳐야 해요.".into()
                } else {
                    "A sign-in must be finished within 10 minutes of starting it.".into()
                },
                use_the_button(lang),
            ),
            Page::CodeRejected { error } => p(
                if ko { "Google이 로그인을 거절했어요" } else { "Google refused the sign-in" },
                if ko {
                    format!("Google이 로그인 코드를 받아들이지 않았어요(`{error}`).")
                } else {
                    format!("Google did not accept the sign-in code (`{error}`).")
                },
                use_the_button(lang),
            ),
            Page::NoRefreshToken => p(
                if ko { "Gmail이 연결되지 않았어요" } else { "Gmail was not connected" },
                if ko {
                    "Google이 robeing에 계속(오프라인) 접근할 권한을 주지 않아서 내일은 Gmail을 읽을 수 없어요.".into()
                } else {
                    "Google did not give robeing lasting (offline) access, so it could not read your Gmail tomorrow."
                        .into()
                },
                if ko {
                    "https://myaccount.google.com/permissions 에서 robeing을 삭제한 뒤 Slack의 버튼으로 다시 연결하세요."
                } else {
                    "Remove robeing at https://myaccount.google.com/permissions, then connect again with the button in Slack."
                },
            ),
            Page::MissingScope => p(
                if ko { "Gmail 접근 권한을 받지 못했어요" } else { "Gmail access was not granted" },
                if ko {
                    "로그인은 하셨지만 robeing이 메일을 읽도록 허용하지 않으셨어요.".into()
                } else {
                    "You signed in, but did not allow robeing to read your email.".into()
                },
                if ko {
                    "다시 연결하고 Gmail 읽기를 허용하는 칸을 선택하세요."
                } else {
                    "Connect again and tick the box that lets robeing read your Gmail."
                },
            ),
            Page::CallbackFailed => p(
                if ko { "문제가 생겼어요" } else { "Something went wrong" },
                if ko {
                    "robeing이 Gmail 연결을 마치지 못했어요(Google이나 데이터베이스가 응답하지 않았어요).".into()
                } else {
                    "robeing could not finish connecting Gmail (Google or the database did not answer).".into()
                },
                if ko {
                    "잠시 후 Slack의 버튼으로 다시 시도해 주세요."
                } else {
                    "Please try again in a minute with the button in Slack."
                },
            ),
        }
    }

    /// One of each, for tests that check every page in both languages:
    /// walked with [`Page::next_example`], whose `match` has no wildcard, so
    /// a new page does not compile until it is part of this list.
    pub fn examples() -> Vec<Page> {
        let first = Page::DuplicateParam { param: "state".into(), callback: true };
        std::iter::successors(Some(first), Page::next_example).collect()
    }

    fn next_example(&self) -> Option<Page> {
        Some(match self {
            Page::DuplicateParam { callback: true, .. } => Page::DuplicateParam { param: "t".into(), callback: false },
            Page::DuplicateParam { callback: false, .. } => Page::NotConfigured,
            Page::NotConfigured => Page::MissingToken,
            Page::MissingToken => Page::LinkExpired,
            Page::LinkExpired => Page::LinkInvalid,
            Page::LinkInvalid => Page::UnknownUser,
            Page::UnknownUser => Page::StartFailed,
            Page::StartFailed => Page::NoState,
            Page::NoState => Page::CodeAndError,
            Page::CodeAndError => Page::NeitherCodeNorError,
            Page::NeitherCodeNorError => Page::Declined,
            Page::Declined => Page::GoogleError { error: "server_error".into() },
            Page::GoogleError { .. } => Page::Connected { email: "a@example.com".into(), slack_name: "Jane".into() },
            Page::Connected { .. } => Page::UnknownState,
            Page::UnknownState => Page::ReusedState,
            Page::ReusedState => Page::ExpiredState,
            Page::ExpiredState => Page::CodeRejected { error: "invalid_grant".into() },
            Page::CodeRejected { .. } => Page::NoRefreshToken,
            Page::NoRefreshToken => Page::MissingScope,
            Page::MissingScope => Page::CallbackFailed,
            Page::CallbackFailed => return None,
        })
    }
}
