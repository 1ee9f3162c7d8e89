//! The conversation: every sentence robeing says in answer to a DM.
//! Texts are plain Slack mrkdwn without `<`, `>` or `&` (the sender escapes
//! everything, so those would show literally).

use super::Lang;
use crate::slack::files::Unread;

/// The placeholder shown while a slow reply is composed.
pub const PLACEHOLDER: &str = "…";

pub fn greeting(lang: Lang, name: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "안녕하세요, {name}님! 무엇을 도와드릴까요? 할 수 있는 일이 궁금하시면 \"도움말\"이라고 보내 주세요."
        ),
        Lang::En => format!("Hi, {name}! What can I do for you? Send \"help\" to see what I can do."),
    }
}

/// The first line of the welcome a new user gets in their DM.
pub fn welcome(lang: Lang, name: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "안녕하세요, {name}님! 저는 robeing이에요, Slack 안의 개인 비서예요. 여기로 언제든 말을 걸어 주세요. 나눈 대화는 기억해 두었다가 나중에 찾아 드려요."
        ),
        Lang::En => format!(
            "Hi, {name}! I am robeing, your assistant in Slack. Write to me here any time; I remember our conversations and find them again when you ask."
        ),
    }
}

pub fn help(lang: Lang, llm: bool) -> String {
    let mut s = match lang {
        Lang::Ko => String::from(
            "제가 할 수 있는 일이에요:\n\
             • *브리핑*: 매일 아침 Gmail 요약과 뉴스를 보내 드려요. 지금 받으시려면 `/brief` 를 입력하세요.\n\
             • *기억*: \"고양이에 대해 뭐라고 했지?\"처럼 물어보시면 예전에 하신 말씀을 찾아 드려요. 다른 대화의 메시지를 저에게 전달하시면 그것도 기억해 둬요.\n\
             • *상태*: 저장된 대화와 기억 상태를 알려 드려요.\n\
             • *재연결*: Gmail 연결 상태와 함께 Gmail을 (다시) 연결하는 버튼을 보내 드려요.\n\
             • *내보내기*: 지금까지의 대화 기록을 파일로 보내 드려요.\n\
             • *나를 잊어줘*: 확인 후 대화 기록과 기억을 모두 지워요.",
        ),
        Lang::En => String::from(
            "Here is what I can do:\n\
             • *brief*: every morning I send a summary of your Gmail and the news. Type `/brief` for one now.\n\
             • *memory*: ask \"what did I tell you about my cat?\" and I will find what you said before. Forward me a message from elsewhere and I keep it too.\n\
             • *status*: what I have stored for you and whether memory is working.\n\
             • *reconnect*: I show how your Gmail connection is and send the button that (re)connects it.\n\
             • *export*: I send you your whole conversation history as a file.\n\
             • *forget me*: after you confirm, I delete your conversations and memory.",
        ),
    };
    if !llm {
        s.push_str("\n\n");
        s.push_str(no_llm(lang));
    }
    s
}

pub fn no_llm(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "참고로 지금은 언어 모델(LLM)이 연결되어 있지 않아서, 위의 일 말고 자유로운 대화나 질문에 대한 답은 드릴 수 없어요. 보내신 메시지는 모두 기록해 두고 있어요."
        }
        Lang::En => {
            "Note: no language model (LLM) is connected right now, so beyond the things above I cannot hold a free conversation or answer open questions. Everything you send is still saved."
        }
    }
}

/// Replaces the placeholder when the LLM failed on an attempt and the reply
/// is retried later.
pub fn llm_late(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "… 답이 늦어지고 있어요. 언어 모델(LLM)이 지금 응답하지 않아서 잠시 후 다시 시도할게요. 답이 나오면 이 자리에 보여 드릴게요."
        }
        Lang::En => {
            "… My answer is late: the language model (LLM) is not answering right now. I will try again shortly and put the answer here."
        }
    }
}

/// After an LLM answer to a thread reply whose thread's first message
/// Slack would not give.
pub fn thread_parent_unread(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "(답글을 단 원래 메시지를 Slack에서 읽지 못해서 그 내용 없이 답했어요.)",
        Lang::En => "(I could not read the message you replied to, so I answered without it.)",
    }
}

/// After an LLM answer cut off by the model's length limit.
pub fn llm_cut_short(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "(언어 모델의 답이 길이 제한에 걸려 여기서 끊겼어요. 나머지가 필요하시면 \"계속\"이라고 보내 주세요.)"
        }
        Lang::En => "(The language model's answer was cut off here by its length limit. Send \"go on\" for the rest.)",
    }
}

/// After an answer given without the images sent: the LLM refused them.
pub fn images_not_shown(lang: Lang, names: &[&str]) -> String {
    let names = file_list(names);
    match lang {
        Lang::Ko => format!("(언어 모델이 이미지를 받지 않아서 {names}은(는) 보지 못하고 이름만 보고 답했어요.)"),
        Lang::En => format!(
            "(The language model would not take images, so I answered without seeing {names}, from the name only.)"
        ),
    }
}

/// Instead of (or after) an LLM answer its provider's content filter withheld.
pub fn llm_filtered(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "(언어 모델 제공자의 콘텐츠 필터가 이 메시지에 대한 답을 막았어요. 다르게 표현해서 다시 물어봐 주세요.)"
        }
        Lang::En => {
            "(The language model provider's content filter withheld the answer to this message. Try asking in other words.)"
        }
    }
}

/// A DM that is only files (no text), none of which could be read: which
/// and why.
pub fn files_only(lang: Lang, unread: &[(&str, Unread)]) -> String {
    let why = unread_list(lang, unread);
    match lang {
        Lang::Ko => {
            format!("보내 주신 파일을 읽지 못했어요 ({why}). 필요한 내용을 글로 적어 보내 주시면 도와드릴게요.")
        }
        Lang::En => {
            format!("I could not read what you sent ({why}). Write what you need in a message and I will help.")
        }
    }
}

/// Added to the reply of a DM that came with files some of which were not read.
pub fn files_unread(lang: Lang, unread: &[(&str, Unread)]) -> String {
    let why = unread_list(lang, unread);
    match lang {
        Lang::Ko => format!("(읽지 못한 파일: {why}. 나머지만 보고 답했어요.)"),
        Lang::En => format!("(I could not read {why}, so I answered from the rest.)"),
    }
}

/// The built-in responder's answer to text files sent without a message:
/// what it read, and how to get it back. `cut`: only the start was kept.
pub fn files_read(lang: Lang, names: &[&str], chars: usize, cut: bool) -> String {
    let names = file_list(names);
    let cut = if cut { files_cut(lang) } else { "" };
    match lang {
        Lang::Ko => format!(
            "파일({names}, {chars}자)을 읽고 기억해 두었어요{cut}. 나중에 \"…에 대해 뭐라고 했지?\" 하고 물어보시면 찾아 드릴게요."
        ),
        Lang::En => format!(
            "I read {names} ({chars} characters) and will remember it{cut}. Ask me \"what did I tell you about …?\" any time."
        ),
    }
}

/// Added to a built-in reply whose message came with text files it read.
pub fn files_read_note(lang: Lang, names: &[&str], cut: bool) -> String {
    let names = file_list(names);
    let cut = if cut { files_cut(lang) } else { "" };
    match lang {
        Lang::Ko => format!("(파일({names})도 읽고 기억해 두었어요{cut}.)"),
        Lang::En => format!("(I also read {names} and will remember it{cut}.)"),
    }
}

fn files_cut(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => " — 너무 길어서 앞부분 100,000자만 읽었어요",
        Lang::En => " — only its first 100,000 characters, as it is longer",
    }
}

/// The unread files with why: the files of each reason listed (at most
/// three, then how many more) before it, reasons in order of first
/// appearance.
fn unread_list(lang: Lang, unread: &[(&str, Unread)]) -> String {
    let mut reasons: Vec<Unread> = Vec::new();
    for (_, why) in unread {
        if !reasons.contains(why) {
            reasons.push(*why);
        }
    }
    reasons
        .into_iter()
        .map(|why| {
            let names: Vec<&str> = unread.iter().filter(|(_, w)| *w == why).map(|(n, _)| *n).collect();
            format!("{}: {}", file_list(&names), unread_reason(lang, why))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn unread_reason(lang: Lang, why: Unread) -> &'static str {
    match (lang, why) {
        (Lang::Ko, Unread::NotText) => "텍스트 파일, PDF, 오피스나 한글 문서가 아니에요 (이미지 등은 아직 읽지 못해요)",
        (Lang::En, Unread::NotText) => {
            "not a text file, PDF, Office or Hangul document (I cannot read images and the like yet)"
        }
        (Lang::Ko, Unread::TooLarge) => "너무 커요 (텍스트 파일은 1MB, 문서는 10MB까지 읽어요)",
        (Lang::En, Unread::TooLarge) => "too large (I read text files up to 1 MB and documents up to 10 MB)",
        (Lang::Ko, Unread::TooMany) => "한 메시지에서는 파일 5개까지만 읽어요",
        (Lang::En, Unread::TooMany) => "I read at most 5 files of one message",
        (Lang::Ko, Unread::Gone) => "Slack에서 파일을 받을 수 없어요 (삭제되었을 수 있어요)",
        (Lang::En, Unread::Gone) => "Slack offered no way to download it (it may have been deleted)",
        (Lang::Ko, Unread::NoAccess) => {
            "이 워크스페이스에서는 파일을 읽을 권한(files:read)이 없어요. Slack 관리자에게 앱을 다시 설치해 달라고 해 주세요"
        }
        (Lang::En, Unread::NoAccess) => {
            "I am not allowed to read files in this workspace (the app lacks the files:read permission; ask your Slack admin to reinstall it)"
        }
        (Lang::Ko, Unread::Unavailable) => "Slack에서 지금 파일을 받지 못했어요. 잠시 후 다시 보내 주세요",
        (Lang::En, Unread::Unavailable) => "Slack did not hand it over just now; send it again in a moment",
        (Lang::Ko, Unread::NotDecodable) => "UTF-8이나 EUC-KR 텍스트로 읽을 수 없어요",
        (Lang::En, Unread::NotDecodable) => "its text is not in UTF-8, UTF-16 or EUC-KR",
        (Lang::Ko, Unread::PdfWithoutText) => "글자가 없는 PDF예요 (스캔한 문서나 이미지뿐이에요)",
        (Lang::En, Unread::PdfWithoutText) => "a PDF without text in it (a scan, or images only)",
        (Lang::Ko, Unread::PdfUnreadable) => "PDF를 읽을 수 없었어요 (손상되었거나 암호가 걸렸거나 너무 복잡해요)",
        (Lang::En, Unread::PdfUnreadable) => "I could not read this PDF (damaged, encrypted or too complex)",
        (Lang::Ko, Unread::DocumentWithoutText) => "글자가 없는 문서예요",
        (Lang::En, Unread::DocumentWithoutText) => "a document without text in it",
        (Lang::Ko, Unread::DocumentUnreadable) => {
            "문서를 읽을 수 없었어요 (손상되었거나 암호가 걸렸거나 너무 복잡해요)"
        }
        (Lang::En, Unread::DocumentUnreadable) => {
            "I could not read this document (damaged, password-protected or too complex)"
        }
    }
}

/// File names as a list in a sentence: at most three, then how many more.
fn file_list(files: &[impl AsRef<str>]) -> String {
    let shown: Vec<String> = files.iter().take(3).map(|f| format!("\"{}\"", f.as_ref())).collect();
    match files.len().saturating_sub(3) {
        0 => shown.join(", "),
        more => format!("{} +{more}", shown.join(", ")),
    }
}

pub fn fallback(lang: Lang, name: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "{name}님, 메시지를 저장해 두었어요. 지금은 언어 모델(LLM)이 연결되어 있지 않아서 이 말씀에 제대로 답을 드릴 수는 없어요. \"도움말\"이라고 보내시면 제가 할 수 있는 일을 알려 드릴게요."
        ),
        Lang::En => format!(
            "Got it, {name} — I saved your message. No language model (LLM) is connected right now, so I cannot really answer this. Send \"help\" to see what I can do."
        ),
    }
}

pub fn brief(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "브리핑은 매일 아침(기본 09:00, 계신 곳의 시간 기준)에 DM으로 보내 드려요. 지금 바로 받으시려면 아무 채널에서나 `/brief` 를 입력하세요."
        }
        Lang::En => {
            "Your briefing arrives every morning (09:00 your time unless you changed it) in this DM. For one right now, type `/brief` in any channel."
        }
    }
}

/// What `status` says.
pub struct StatusFacts {
    pub exchanges: i64,
    pub memorized: i64,
    pub memory_on: bool,
    pub memory_pending: i64,
    pub llm_on: bool,
}

pub fn status(lang: Lang, f: &StatusFacts) -> String {
    match lang {
        Lang::Ko => {
            let memory = if f.memory_on {
                format!(
                    "켜짐 ({}개 기억됨{})",
                    f.memorized,
                    if f.memory_pending > 0 {
                        format!(", 전체 대기 {}건", f.memory_pending)
                    } else {
                        String::new()
                    }
                )
            } else {
                "꺼짐 (운영자가 ChromaDB를 설정하지 않았어요; 기록은 Postgres에만 저장돼요)".to_owned()
            };
            format!(
                "*상태*\n• 저장된 대화: {}건\n• 기억(ChromaDB): {memory}\n• 언어 모델: {}",
                f.exchanges,
                if f.llm_on { "연결됨" } else { "없음 (기본 응답기로 답해요)" }
            )
        }
        Lang::En => {
            let memory = if f.memory_on {
                format!(
                    "on ({} remembered{})",
                    f.memorized,
                    if f.memory_pending > 0 {
                        format!(", {} waiting overall", f.memory_pending)
                    } else {
                        String::new()
                    }
                )
            } else {
                "off (the operator has not configured ChromaDB; conversations are kept in Postgres only)".to_owned()
            };
            format!(
                "*Status*\n• Conversations stored: {}\n• Memory (ChromaDB): {memory}\n• Language model: {}",
                f.exchanges,
                if f.llm_on { "connected" } else { "none (built-in responder)" }
            )
        }
    }
}

pub fn recall_intro(lang: Lang, topic: &str) -> String {
    match lang {
        Lang::Ko => format!("\"{topic}\"에 대해 예전에 이렇게 말씀하셨어요:"),
        Lang::En => format!("Here is what you told me about \"{topic}\":"),
    }
}

pub fn recall_none(lang: Lang, topic: &str) -> String {
    match lang {
        Lang::Ko => format!("\"{topic}\"에 대해 말씀하신 기록을 찾지 못했어요."),
        Lang::En => format!("I could not find anything you told me about \"{topic}\"."),
    }
}

pub fn recall_from_postgres_only(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "(기억 저장소에 연결할 수 없어 대화 기록에서 글자 그대로 찾았어요.)",
        Lang::En => "(Memory is unavailable right now, so I searched your saved messages word for word.)",
    }
}

pub fn forget_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "정말 저와 나눈 대화 기록과 기억을 모두 지울까요? 되돌릴 수 없어요. 아래 버튼을 누르시거나 \"네, 잊어줘\"라고 보내 주세요."
        }
        Lang::En => {
            "Do you really want me to delete all our conversations and my memory of them? This cannot be undone. Press a button below, or send \"yes, forget me\"."
        }
    }
}

pub fn forget_confirm_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "네, 모두 지워 주세요",
        Lang::En => "Yes, delete everything",
    }
}

pub fn forget_cancel_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "취소",
        Lang::En => "Cancel",
    }
}

pub fn forgotten(lang: Lang, deleted: u64, memory_on: bool) -> String {
    match (lang, memory_on) {
        (Lang::Ko, true) => format!(
            "대화 기록 {deleted}건을 지웠고, 기억(ChromaDB)에서도 지우고 있어요. 이제 예전 대화는 기억하지 못해요."
        ),
        (Lang::Ko, false) => format!("대화 기록 {deleted}건을 지웠어요. 이제 예전 대화는 기억하지 못해요."),
        (Lang::En, true) => format!(
            "Done: I deleted {deleted} conversations and am removing them from memory (ChromaDB). I no longer remember what you told me."
        ),
        (Lang::En, false) => format!("Done: I deleted {deleted} conversations. I no longer remember what you told me."),
    }
}

pub fn forget_cancelled(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "알겠어요, 아무것도 지우지 않았어요.",
        Lang::En => "OK, I kept everything.",
    }
}

pub fn export_intro(lang: Lang, exchanges: usize) -> String {
    match lang {
        Lang::Ko => format!("대화 기록 내보내기: {exchanges}건을 파일로 보내 드려요."),
        Lang::En => format!("Your history export: {exchanges} conversations, in the file below."),
    }
}

/// The first lines of the export file.
pub fn export_file_header(lang: Lang, name: &str, user_id: &str, exchanges: usize, when: &str) -> String {
    match lang {
        Lang::Ko => format!("robeing 대화 기록: {name}님 ({user_id})\n{when}에 내보냄, {exchanges}건"),
        Lang::En => {
            format!("robeing conversation history: {name} ({user_id})\nExported {when}, {exchanges} conversations")
        }
    }
}

/// The export file's title in Slack.
pub fn export_file_title(lang: Lang, date: &str) -> String {
    match lang {
        Lang::Ko => format!("robeing 대화 기록 {date}"),
        Lang::En => format!("robeing conversation history {date}"),
    }
}

/// When Slack refuses the export file (`code` is Slack's error, e.g.
/// `missing_scope`), before the history goes out as messages.
pub fn export_not_a_file(lang: Lang, code: &str, parts: usize) -> String {
    match lang {
        Lang::Ko => format!(
            "Slack이 파일을 받지 않아서({code}) 다음 메시지 {parts}개로 나눠 보내 드려요. 운영자가 앱을 manifest.yaml로 다시 설치하면(files:write 권한) 다음부터는 파일로 보내 드릴 수 있어요."
        ),
        Lang::En => format!(
            "Slack would not take the file ({code}), so here it is in the next {parts} messages. Once the operator reinstalls the app from manifest.yaml (the files:write permission), exports come as a file again."
        ),
    }
}

pub fn export_truncated(lang: Lang, total_parts: usize) -> String {
    match lang {
        Lang::Ko => format!(
            "전체 기록은 {total_parts}개 메시지 분량이라 가장 최근 부분만 보내 드려요. 전체가 필요하시면 운영자에게 요청해 주세요."
        ),
        Lang::En => format!(
            "Your whole history would take {total_parts} messages, so this is the most recent part; ask the operator for a complete export."
        ),
    }
}

pub fn export_empty(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "내보낼 대화 기록이 아직 없어요.",
        Lang::En => "There is no conversation history to export yet.",
    }
}

pub fn export_part(lang: Lang, part: usize, parts: usize) -> String {
    match lang {
        Lang::Ko => format!("*대화 기록 ({part}/{parts})*"),
        Lang::En => format!("*History export ({part}/{parts})*"),
    }
}

pub fn export_you(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "나",
        Lang::En => "you",
    }
}

/// In a history export, the files a message carried.
pub fn export_files(lang: Lang, files: &[String]) -> String {
    match lang {
        Lang::Ko => format!("[파일: {}]", files.join(", ")),
        Lang::En => format!("[files: {}]", files.join(", ")),
    }
}

/// In a history export, where an exchange has no reply.
pub fn export_no_reply(lang: Lang, failed: bool) -> &'static str {
    match (lang, failed) {
        (Lang::Ko, true) => "(답하지 못함)",
        (Lang::En, true) => "(no reply: failed)",
        (Lang::Ko, false) => "(아직 답하지 않음)",
        (Lang::En, false) => "(no reply yet)",
    }
}

pub fn apology(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "죄송해요, 방금 메시지에 답을 드리지 못했어요. 잠시 후 다시 보내 주시겠어요?",
        Lang::En => "Sorry, I could not reply to your last message. Could you send it again in a little while?",
    }
}

/// Marks a message that was cut for the LLM prompt.
pub const TRUNCATED: &str = " […]";
