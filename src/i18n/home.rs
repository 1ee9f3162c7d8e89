//! The top of App Home: who robeing is to the user, their Gmail state in
//! one line, how to use `/brief`, and their data (Forget me).

use super::Lang;

/// `name` is escaped by the caller.
pub fn intro(lang: Lang, name: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "안녕하세요, *{name}*님. 저는 비서 robeing이에요. 이 앱의 메시지 탭에서 말을 걸어 주시면, 나눈 이야기를 기억하면서 답해 드려요."
        ),
        Lang::En => format!(
            "Hi *{name}*. I'm robeing, your assistant: write to me in this app's Messages tab and I'll answer, remembering what we talked about."
        ),
    }
}

/// The Gmail line, from the stored connection state.
pub fn gmail_state(lang: Lang, state: Option<&str>) -> &'static str {
    match (lang, state) {
        (Lang::Ko, Some("connected")) => "Gmail: 연결됨. 브리핑에 받은편지함 요약이 들어가요.",
        (Lang::En, Some("connected")) => "Gmail: connected. Your briefing includes a summary of your inbox.",
        (Lang::Ko, Some("needs_reconnect")) => "Gmail: 다시 연결 필요. robeing이 더 이상 받은편지함을 읽을 수 없어요.",
        (Lang::En, Some("needs_reconnect")) => "Gmail: needs reconnecting. robeing can no longer read your inbox.",
        (Lang::Ko, _) => "Gmail: 연결되지 않음. 연결하기 전까지 브리핑에는 뉴스만 들어가요.",
        (Lang::En, _) => "Gmail: not connected. Your briefing has news only until you connect it.",
    }
}

pub fn brief_usage(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "지금 브리핑(Gmail 요약과 뉴스)을 받으려면 아무 곳에서나 `/brief` 를 입력하세요. 매일 아침에도 보내 드려요."
        }
        Lang::En => {
            "Type `/brief` anywhere for your briefing now (Gmail summary and news). It also arrives every morning."
        }
    }
}

pub fn your_data(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "*내 데이터.* robeing은 대화를 기억하기 위해 저장해요. 모두 잊게 할 수도 있어요.",
        Lang::En => "*Your data.* robeing keeps our conversations to remember them. You can have it forget everything.",
    }
}

pub fn forget_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "나를 잊어줘",
        Lang::En => "Forget me",
    }
}

pub fn forget_confirm_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "모두 잊을까요?",
        Lang::En => "Forget everything?",
    }
}

pub fn forget_confirm_text(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "우리 대화가 robeing의 데이터베이스와 기억에서 모두 지워져요. 되돌릴 수 없어요.",
        Lang::En => "All our conversations are deleted from robeing's database and its memory. This cannot be undone.",
    }
}

/// "Keep" in App Home's confirmation dialogs (Forget me, Disconnect Gmail).
pub fn keep(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "유지",
        Lang::En => "Keep",
    }
}
