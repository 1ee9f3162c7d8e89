//! What a DM asks for, recognised from Korean and English phrasings. Used by
//! the built-in responder, and to route commands (forget, export) that must
//! never be left to an LLM.

/// A recognised request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Greeting,
    Help,
    Brief,
    Status,
    Reconnect,
    /// "forget me": ask for confirmation.
    Forget,
    /// "yes, forget me": confirmed in words.
    ForgetConfirmed,
    Export,
    /// "reconnect gmail", asked for and nothing else: answered with the
    /// connection's state and the (Re)connect Gmail button.
    ConnectGmail,
    /// "what did I tell you about X": X.
    Recall(String),
    Other,
}

impl Intent {
    /// Requests handled the same way with or without an LLM.
    pub fn is_command(&self) -> bool {
        matches!(self, Intent::Forget | Intent::ForgetConfirmed | Intent::Export | Intent::ConnectGmail)
    }
}

/// Lowercased, whitespace-collapsed, without surrounding punctuation.
fn normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let collapsed: Vec<&str> = lower.split_whitespace().collect();
    collapsed
        .join(" ")
        .trim_matches(|c: char| c.is_ascii_punctuation() || matches!(c, '~' | '…' | '！' | '？' | '。'))
        .to_owned()
}

fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).collect()
}

fn has_word(s: &str, list: &[&str]) -> bool {
    words(s).iter().any(|w| list.contains(w))
}

fn contains_any(s: &str, list: &[&str]) -> bool {
    list.iter().any(|p| s.contains(p))
}

/// The most words a "forget me" request has ("please forget everything
/// about me", "제 기록을 모두 삭제해 주세요").
const MAX_FORGET_WORDS: usize = 6;

/// Words an export request may hold besides the request itself
/// ("export my whole chat history please", "대화 기록 전부 내보내 주세요").
const EXPORT_FILLER: &[&str] = &[
    "a",
    "all",
    "can",
    "chat",
    "conversation",
    "conversations",
    "copy",
    "could",
    "data",
    "download",
    "entire",
    "full",
    "history",
    "i",
    "me",
    "messages",
    "my",
    "now",
    "of",
    "our",
    "please",
    "pls",
    "robeing",
    "send",
    "the",
    "want",
    "whole",
    "you",
    "대화",
    "대화를",
    "기록",
    "기록을",
    "대화기록",
    "대화기록을",
    "내용",
    "내용을",
    "전부",
    "전체",
    "모두",
    "다",
    "좀",
    "제",
    "내",
    "나의",
    "우리",
    "해",
    "해줘",
    "해줄래",
    "줘",
    "주세요",
    "해주세요",
    "부탁해",
    "부탁해요",
    "보내줘",
    "보내",
    "보내주세요",
    "받고",
    "싶어",
    "싶어요",
    "파일로",
];

/// Whether the whole message asks for the history export: the request
/// ("export", "내보내…", "send me my history", "기록 보내줘") and otherwise
/// only [`EXPORT_FILLER`].
fn is_export_request(t: &str) -> bool {
    let is_request_word = |w: &&str| *w == "export" || w.starts_with("내보내");
    let ws = words(t);
    let asks = ws.iter().any(is_request_word)
        || contains_any(t, &["download my history", "send me my history", "기록 보내줘", "기록을 보내줘"]);
    asks && ws.iter().all(|w| is_request_word(w) || EXPORT_FILLER.contains(w))
}

/// Words a Gmail (re)connect request may hold besides the request itself.
const GMAIL_REQUEST_WORDS: &[&str] = &[
    "reconnect",
    "connect",
    "gmail",
    "email",
    "mail",
    "google",
    "my",
    "the",
    "to",
    "account",
    "please",
    "pls",
    "again",
    "now",
    "can",
    "you",
    "i",
    "want",
    "robeing",
    "지메일",
    "지메일을",
    "gmail을",
    "메일",
    "메일을",
    "이메일",
    "이메일을",
    "구글",
    "계정",
    "계정을",
    "재연결",
    "재연결해",
    "재연결해줘",
    "재연결해주세요",
    "다시",
    "연결",
    "연결해",
    "연결해줘",
    "연결해주세요",
    "해",
    "해줘",
    "줘",
    "주세요",
    "해주세요",
    "좀",
    "부탁해",
    "부탁해요",
];

/// Whether the whole message asks to (re)connect Gmail: the request and
/// otherwise only [`GMAIL_REQUEST_WORDS`].
fn is_gmail_connect_request(t: &str) -> bool {
    let asks = has_word(t, &["reconnect"])
        || contains_any(t, &["connect gmail", "gmail connect", "재연결", "다시 연결", "지메일 연결", "gmail 연결"]);
    asks && words(t).iter().all(|w| GMAIL_REQUEST_WORDS.contains(w))
}

/// Recognises the request in a message.
pub fn detect(text: &str) -> Intent {
    let t = normalize(text);
    if t.is_empty() {
        return Intent::Other;
    }
    // Forgetting: confirmation first, it contains the request phrase.
    let forget_en = contains_any(
        &t,
        &[
            "forget me",
            "forget everything",
            "delete my data",
            "delete my history",
            "erase my data",
            "delete everything",
        ],
    );
    let forget_ko = contains_any(
        &t,
        &[
            "잊어줘",
            "잊어 줘",
            "잊어주세요",
            "잊어 주세요",
            "기록 삭제",
            "기록을 삭제",
            "기록 지워",
            "기록을 지워",
            "데이터 삭제",
        ],
    );
    let yes = {
        let first = words(&t).first().copied().unwrap_or("");
        matches!(first, "yes" | "y" | "confirm" | "네" | "응" | "예" | "어" | "확인" | "넵" | "ㅇㅇ")
    };
    // Commands act without the LLM, so only a message that is the request
    // counts as one: "forget me" is, "delete everything in my calendar for
    // tomorrow" or "can you help me export my spreadsheet to CSV?" are not
    // (the LLM answers those).
    let forget = (forget_en || forget_ko) && words(&t).len() <= MAX_FORGET_WORDS;
    if forget && yes {
        return Intent::ForgetConfirmed;
    }
    if forget {
        return Intent::Forget;
    }
    if is_export_request(&t) {
        return Intent::Export;
    }
    if is_gmail_connect_request(&t) {
        return Intent::ConnectGmail;
    }
    if let Some(topic) = recall_topic(&t) {
        return Intent::Recall(topic);
    }
    if has_word(&t, &["help", "commands", "usage"])
        || contains_any(
            &t,
            &[
                "what can you do",
                "how do i use",
                "도움",
                "사용법",
                "명령어",
                "뭐 할 수 있",
                "뭘 할 수 있",
                "무엇을 할 수 있",
                "뭐 해줄 수 있",
                "기능",
            ],
        )
    {
        return Intent::Help;
    }
    if has_word(&t, &["status"]) || contains_any(&t, &["상태"]) {
        return Intent::Status;
    }
    if has_word(&t, &["reconnect"])
        || contains_any(&t, &["connect gmail", "gmail connect", "재연결", "다시 연결", "지메일 연결", "gmail 연결"])
    {
        return Intent::Reconnect;
    }
    if has_word(&t, &["brief", "briefing", "summary"]) || contains_any(&t, &["morning summary", "브리핑", "요약"])
    {
        return Intent::Brief;
    }
    let short = t.chars().count() <= 24;
    if short
        && (has_word(&t, &["hi", "hello", "hey", "hiya", "howdy", "yo", "morning"])
            || contains_any(
                &t,
                &[
                    "good morning",
                    "good afternoon",
                    "good evening",
                    "하이",
                    "안녕",
                    "반가",
                    "ㅎㅇ",
                    "헬로",
                    "좋은 아침",
                ],
            ))
    {
        return Intent::Greeting;
    }
    Intent::Other
}

/// "what did I tell you about X" / "X에 대해 뭐라고 했지": X.
pub fn recall_topic(t: &str) -> Option<String> {
    const EN: &[&str] = &[
        "what did i tell you about ",
        "what have i told you about ",
        "what did i say about ",
        "what did i mention about ",
        "what did i write about ",
        "what do you remember about ",
        "do you remember what i said about ",
        "do you remember what i told you about ",
        "remind me what i said about ",
        "remind me what i told you about ",
    ];
    for prefix in EN {
        if let Some(pos) = t.find(prefix) {
            let rest = t[pos + prefix.len()..].trim().trim_end_matches(['?', '.', '!']).trim();
            let rest =
                ["my ", "the ", "our ", "a ", "an "].iter().find_map(|a| rest.strip_prefix(a)).unwrap_or(rest).trim();
            return (!rest.is_empty()).then(|| rest.to_owned());
        }
    }
    // Korean: "<topic>에 대해(서) 뭐라고 했지 / 말했었지 / 기억나"
    const MARKERS: &[&str] =
        &["에 대해서", "에 대해", "에대해서", "에대해", "에 관해서", "에 관해", "에관해", " 얘기", "에 대한 얘기"];
    const ASKS: &[&str] = &["뭐라고", "뭐라 했", "말했", "말한", "얘기했", "얘기한", "기억", "알려줬", "했었"];
    if contains_any(t, ASKS) {
        for m in MARKERS {
            if let Some(pos) = t.find(m) {
                let topic = t[..pos].trim();
                let topic = strip_korean_prefix(topic);
                if !topic.is_empty() {
                    return Some(topic.to_owned());
                }
            }
        }
        // "<topic>(은/는/이/가) 뭐라고 했지"
        if let Some(pos) = t.find("뭐라고") {
            let topic = strip_particle(t[..pos].trim());
            let topic = strip_korean_prefix(topic);
            if !topic.is_empty() {
                return Some(topic.to_owned());
            }
        }
    }
    None
}

/// "내가 " / "제가 " at the start of a Korean question.
fn strip_korean_prefix(t: &str) -> &str {
    ["내가 ", "제가 ", "우리 "].iter().find_map(|p| t.strip_prefix(p)).unwrap_or(t).trim()
}

fn strip_particle(t: &str) -> &str {
    for p in ["은", "는", "이", "가", "을", "를"] {
        if let Some(s) = t.strip_suffix(p)
            && !s.is_empty()
        {
            return s.trim();
        }
    }
    t
}

/// Search words for a topic: lowercased words of two or more characters,
/// minus common English filler, with Korean particles stripped.
pub fn topic_words(topic: &str) -> Vec<String> {
    const STOP: &[&str] = &["the", "my", "a", "an", "of", "about", "to", "and", "or", "is", "was", "you", "i", "me"];
    let mut out: Vec<String> = topic
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| strip_particle(&w.to_lowercase()).to_owned())
        .filter(|w| w.chars().count() >= 2 && !STOP.contains(&w.as_str()))
        .collect();
    out.dedup();
    if out.is_empty() && !topic.trim().is_empty() {
        out.push(topic.trim().to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_korean_and_english_phrasings() {
        assert_eq!(detect("하이"), Intent::Greeting);
        assert_eq!(detect("안녕하세요!"), Intent::Greeting);
        assert_eq!(detect("hi"), Intent::Greeting);
        assert_eq!(detect("Hello there"), Intent::Greeting);
        assert_eq!(detect("help"), Intent::Help);
        assert_eq!(detect("도움말"), Intent::Help);
        assert_eq!(detect("뭐 할 수 있어?"), Intent::Help);
        assert_eq!(detect("브리핑 보내줘"), Intent::Brief);
        assert_eq!(detect("status"), Intent::Status);
        assert_eq!(detect("상태 알려줘"), Intent::Status);
        assert_eq!(detect("reconnect gmail"), Intent::ConnectGmail);
        assert_eq!(detect("지메일 재연결"), Intent::ConnectGmail);
        assert_eq!(detect("Can you connect Gmail please?"), Intent::ConnectGmail);
        assert_eq!(detect("지메일 다시 연결해 주세요"), Intent::ConnectGmail);
        assert_eq!(detect("how do I reconnect gmail"), Intent::Reconnect);
        assert_eq!(detect("forget me"), Intent::Forget);
        assert_eq!(detect("나를 잊어줘"), Intent::Forget);
        assert_eq!(detect("yes, forget me"), Intent::ForgetConfirmed);
        assert_eq!(detect("네, 잊어줘"), Intent::ForgetConfirmed);
        assert_eq!(detect("export"), Intent::Export);
        assert_eq!(detect("내보내기"), Intent::Export);
        assert_eq!(detect("What did I tell you about my cat?"), Intent::Recall("cat".into()));
        assert_eq!(detect("고양이에 대해 뭐라고 했지?"), Intent::Recall("고양이".into()));
        assert_eq!(detect("내가 고양이에 대해서 뭐라고 했더라"), Intent::Recall("고양이".into()));
        assert_eq!(detect("회의는 뭐라고 했지"), Intent::Recall("회의".into()));
        assert_eq!(detect("Export my whole chat history, please"), Intent::Export);
        assert_eq!(detect("send me my history"), Intent::Export);
        assert_eq!(detect("대화 기록 전부 내보내 주세요"), Intent::Export);
        assert_eq!(detect("기록 보내줘"), Intent::Export);
        assert_eq!(detect("please forget everything about me"), Intent::Forget);
        assert_eq!(detect("my cat's name is Nabi"), Intent::Other);
        assert_eq!(detect("hi, can you tell me a long story about dragons"), Intent::Other);
    }

    #[test]
    fn a_command_word_inside_another_request_is_not_the_command() {
        // With an LLM these go to it; a command would act instead.
        for text in [
            "Can you help me export my spreadsheet to CSV?",
            "export the Q3 report by Friday",
            "I exported the slides",
            "보고서를 PDF로 내보내는 방법 알려줘",
            "Delete everything in my calendar for tomorrow",
            "please, please forget me and everything I ever said to you",
            "I need to reconnect with my old friend",
        ] {
            assert!(!detect(text).is_command(), "{text:?} is {:?}", detect(text));
        }
    }

    #[test]
    fn topic_words_drop_filler_and_particles() {
        assert_eq!(topic_words("my cat"), vec!["cat"]);
        assert_eq!(topic_words("고양이를"), vec!["고양이"]);
    }
}
