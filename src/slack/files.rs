//! Reading the files a user sends robeing in a DM.
//!
//! A text file (a `text/*` type, JSON, YAML, a code snippet…) is downloaded
//! with the bot token and its text read, so the reply, the LLM and memory
//! can use what it says; so is a document (a PDF, a Word, PowerPoint or
//! Excel file, an OpenDocument), whose text a child process extracts
//! ([`crate::documents`]). Everything else is only named, with the reason
//! it was not read, and the reply tells the user that reason ([`Unread`]):
//! nothing sent is dropped in silence.
//!
//! The bot token goes only to URLs under `SLACK_FILES_URL`
//! (`https://files.slack.com`): a file URL anywhere else is not fetched.
//! Reading needs the `files:read` scope. Without it Slack does not refuse
//! with an error but answers with its HTML sign-in page; that is recognised
//! and reported as [`Unread::NoAccess`], in the reply, the log and `doctor`.
//! Logs carry each file's outcome, never its name or text.

use std::{path::Path, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::events::SlackFile;

/// The largest text file downloaded (a bigger one is named, not read).
pub const MAX_FILE_BYTES: u64 = 1_000_000;
/// The largest document (PDF, Office) downloaded.
pub const MAX_DOCUMENT_BYTES: u64 = crate::documents::MAX_DOCUMENT_BYTES;
/// Files read from one message; the rest are named.
pub const MAX_FILES_READ: usize = 5;
/// Characters of text kept from one message's files, all together.
pub const MAX_TEXT_CHARS: usize = 100_000;
/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at a download Slack failed transiently (5xx, timeout).
const ATTEMPTS: u32 = 2;

/// Application types that are text (besides every `text/*`).
const TEXT_APPLICATION_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/x-javascript",
    "application/typescript",
    "application/x-sh",
    "application/sql",
    "application/csv",
    "application/x-subrip",
];

/// Image types an LLM that accepts images is shown (`LLM_IMAGES`).
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
/// The largest image downloaded.
pub const MAX_IMAGE_BYTES: u64 = 10_000_000;

/// Office Open XML, OpenDocument and Office 97–2003 types, read like PDFs.
const OFFICE_TYPES: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.presentation",
    "application/vnd.oasis.opendocument.spreadsheet",
    // Word, Excel and PowerPoint 97–2003.
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
];

/// Rich Text Format, read like a Word file, not shown as its markup.
const RTF_TYPES: &[&str] = &["text/rtf", "application/rtf"];

/// Documents told by their extension: Slack passes on whatever type the
/// uploading browser guessed, for Hangul files (`.hwp`, `.hwpx`) mostly
/// `application/octet-stream`, and for old Office files whatever the
/// machine's registry said.
const DOCUMENT_EXTENSIONS: &[&str] = &["hwp", "hwpx", "doc", "xls", "ppt", "pps", "rtf"];

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its text (NUL replaced, so it can be stored); `cut` when only the
    /// start was kept ([`MAX_TEXT_CHARS`]).
    Read {
        text: String,
        cut: bool,
    },
    Unread(Unread),
    /// An image, to be shown to the LLM as it is (never stored).
    Image {
        mime: String,
        bytes: Vec<u8>,
    },
}

/// Why a file was not read; each is said to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// An image, an archive, audio…: nothing robeing can read.
    NotText,
    /// Bigger than [`MAX_FILE_BYTES`] (a document: [`MAX_DOCUMENT_BYTES`]).
    TooLarge,
    /// More files than [`MAX_FILES_READ`] came with the message.
    TooMany,
    /// Deleted, or Slack gave no address to download it from.
    Gone,
    /// The bot token may not read files (no `files:read` scope).
    NoAccess,
    /// Slack failed to hand it over (5xx, timeout); sending it again helps.
    Unavailable,
    /// Bytes that are not text in UTF-8, UTF-16 or EUC-KR.
    NotDecodable,
    /// A PDF without text (a scan, images only).
    PdfWithoutText,
    /// A PDF that could not be read (damaged, encrypted, too complex).
    PdfUnreadable,
    /// An Office or OpenDocument file without text.
    DocumentWithoutText,
    /// An Office or OpenDocument file that could not be read (damaged,
    /// password-protected, too complex).
    DocumentUnreadable,
}

impl Unread {
    /// The label in `/metrics` and the logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotText => "not_text",
            Self::TooLarge => "too_large",
            Self::TooMany => "too_many",
            Self::Gone => "gone",
            Self::NoAccess => "no_access",
            Self::Unavailable => "unavailable",
            Self::NotDecodable => "not_decodable",
            Self::PdfWithoutText => "pdf_without_text",
            Self::PdfUnreadable => "pdf_unreadable",
            Self::DocumentWithoutText => "document_without_text",
            Self::DocumentUnreadable => "document_unreadable",
        }
    }
}

impl FileRead {
    pub fn text(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Read { text, .. } => Some(text),
            Outcome::Unread(_) | Outcome::Image { .. } => None,
        }
    }
    /// An image to show the LLM: its type and bytes.
    pub fn image(&self) -> Option<(&str, &[u8])> {
        match &self.outcome {
            Outcome::Image { mime, bytes } => Some((mime, bytes)),
            _ => None,
        }
    }
    /// Read, but only its start was kept.
    pub fn is_cut(&self) -> bool {
        matches!(self.outcome, Outcome::Read { cut: true, .. })
    }
    pub fn unread(&self) -> Option<Unread> {
        match self.outcome {
            Outcome::Read { .. } | Outcome::Image { .. } => None,
            Outcome::Unread(why) => Some(why),
        }
    }
}

fn mime(file: &SlackFile) -> String {
    file.mimetype.as_deref().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Whether Slack describes the file as text (RTF, typed `text/rtf`, is
/// markup around the text, read as a document).
pub fn is_text(file: &SlackFile) -> bool {
    let mime = mime(file);
    file.mode.as_deref() == Some("snippet")
        || ((mime.starts_with("text/") || TEXT_APPLICATION_TYPES.contains(&&*mime)) && !is_rtf(file, &mime))
}

fn is_rtf(file: &SlackFile, mime: &str) -> bool {
    RTF_TYPES.contains(&mime) || file.extension.as_deref() == Some("rtf")
}

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Pdf,
    /// Word, PowerPoint, Excel (97–2003 too), RTF, OpenDocument, Hangul.
    Office,
    /// PNG, JPEG, GIF, WebP: read only to show an LLM that accepts images.
    Image,
    /// Named, not read.
    Other,
}

/// How Slack's description of the file says to read it.
pub fn kind(file: &SlackFile) -> Kind {
    let mime = mime(file);
    if is_text(file) {
        Kind::Text
    } else if mime == "application/pdf" {
        Kind::Pdf
    } else if OFFICE_TYPES.contains(&&*mime)
        || RTF_TYPES.contains(&&*mime)
        || file.extension.as_deref().is_some_and(|e| DOCUMENT_EXTENSIONS.contains(&e))
    {
        Kind::Office
    } else if IMAGE_TYPES.contains(&&*mime) {
        Kind::Image
    } else {
        Kind::Other
    }
}

/// Where and how files are fetched and read.
pub struct Reader<'a> {
    pub http: &'a reqwest::Client,
    pub token: Option<&'a SecretString>,
    /// `SLACK_FILES_URL`.
    pub files_url: &'a Url,
    /// The binary that reads documents ([`crate::config::Config::document_reader`]).
    pub document_reader: Option<&'a Path>,
    /// Images are downloaded, to show the LLM (`LLM_IMAGES`, and the reply
    /// goes to the LLM); otherwise they are named.
    pub images: bool,
}

/// Reads the text files and documents among `files`, in order, at most
/// [`MAX_FILES_READ`] of them and [`MAX_TEXT_CHARS`] of text in all. Never
/// fails: a file that could not be read says why.
pub async fn read_all(reader: &Reader<'_>, files: &[SlackFile]) -> Vec<FileRead> {
    let mut out = Vec::with_capacity(files.len());
    let mut budget = MAX_TEXT_CHARS;
    let mut downloads = 0;
    for file in files {
        let kind = kind(file);
        let max = match kind {
            Kind::Text => MAX_FILE_BYTES,
            Kind::Image => MAX_IMAGE_BYTES,
            _ => MAX_DOCUMENT_BYTES,
        };
        let outcome = if kind == Kind::Other || (kind == Kind::Image && !reader.images) {
            Outcome::Unread(Unread::NotText)
        } else if file.mode.as_deref() == Some("tombstone") {
            Outcome::Unread(Unread::Gone)
        } else if file.size.is_some_and(|s| s > max) {
            Outcome::Unread(Unread::TooLarge)
        } else if downloads == MAX_FILES_READ {
            Outcome::Unread(Unread::TooMany)
        } else {
            downloads += 1;
            match kind {
                Kind::Image => match download(reader, file, max).await {
                    Ok(bytes) => Outcome::Image { mime: mime(file), bytes },
                    Err(why) => Outcome::Unread(why),
                },
                _ => match read_one(reader, file, kind, max).await {
                    Ok(text) => {
                        let (text, cut) = keep(&text, budget);
                        budget -= text.chars().count();
                        Outcome::Read { text, cut }
                    }
                    Err(why) => Outcome::Unread(why),
                },
            }
        };
        let label = match &outcome {
            Outcome::Read { .. } => "read",
            Outcome::Image { .. } => "image",
            Outcome::Unread(why) => why.label(),
        };
        crate::metrics::metrics()
            .files_read
            .get_or_create(&crate::metrics::Outcome { outcome: label.to_owned() })
            .inc();
        match &outcome {
            Outcome::Unread(Unread::NoAccess) => tracing::warn!(
                "Slack would not hand over a file sent to robeing: the bot token lacks the files:read scope (reinstall the app from manifest.yaml)"
            ),
            Outcome::Unread(Unread::Unavailable) => {
                tracing::warn!("could not download a file sent to robeing; the reply says so")
            }
            _ => tracing::info!(outcome = label, "a file sent to robeing"),
        }
        out.push(FileRead { name: file.name.clone(), outcome });
    }
    out
}

/// What is stored of a message's files (`exchanges.file_text`): each read
/// file's text under a `[file "name"]` line; `None` when none was read.
pub fn stored_text(files: &[FileRead]) -> Option<String> {
    let texts: Vec<String> =
        files.iter().filter_map(|f| Some(format!("[file \"{}\"]\n{}", f.name, f.text()?))).collect();
    (!texts.is_empty()).then(|| texts.join("\n\n"))
}

/// The file name of a `[file "name"]` line of [`stored_text`].
pub fn stored_name(line: &str) -> Option<&str> {
    line.strip_prefix("[file \"").and_then(|l| l.strip_suffix("\"]"))
}

/// At most `budget` characters of `text`, NUL replaced; and whether it was cut.
fn keep(text: &str, budget: usize) -> (String, bool) {
    let text = crate::storage::exchanges::sanitize(text);
    match text.char_indices().nth(budget) {
        Some((i, _)) => (text[..i].to_owned(), true),
        None => (text.into_owned(), false),
    }
}

/// Whether `url` lies under `base` (same scheme, host and port; path below).
fn is_under(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && {
            let base_path = base.path().trim_end_matches('/');
            url.path() == base_path || url.path().starts_with(&format!("{base_path}/"))
        }
}

/// Downloads one file and reads its text.
async fn read_one(reader: &Reader<'_>, file: &SlackFile, kind: Kind, max: u64) -> Result<String, Unread> {
    use crate::documents::ReadError;
    let bytes = download(reader, file, max).await?;
    let (no_text, unreadable) = match kind {
        Kind::Text => return decode(&bytes).ok_or(Unread::NotDecodable),
        Kind::Pdf => (Unread::PdfWithoutText, Unread::PdfUnreadable),
        // Office files (images and other files are not read here).
        _ => (Unread::DocumentWithoutText, Unread::DocumentUnreadable),
    };
    let program = reader.document_reader.ok_or(unreadable)?;
    crate::documents::text_of(program, &bytes).await.map_err(|e| match e {
        ReadError::NoText => no_text,
        ReadError::Unreadable => unreadable,
    })
}

/// Downloads one file's bytes, at most `max`.
async fn download(reader: &Reader<'_>, file: &SlackFile, max: u64) -> Result<Vec<u8>, Unread> {
    let Reader { http, token, files_url, .. } = *reader;
    let url = file.url.as_deref().and_then(|u| Url::parse(u).ok()).ok_or(Unread::Gone)?;
    if !is_under(&url, files_url) {
        tracing::warn!(
            host = url.host_str().unwrap_or(""),
            "a file's address is not under SLACK_FILES_URL; not sending the bot token there"
        );
        return Err(Unread::Gone);
    }
    let token = token.ok_or(Unread::NoAccess)?;
    let mut last = Unread::Unavailable;
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(DOWNLOAD_TIMEOUT, fetch(http, token, &url, file, max)).await {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(Unread::Unavailable)) | Err(_) => last = Unread::Unavailable,
            Ok(Err(why)) => return Err(why),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(last)
}

/// One GET of the file's bytes, at most `max`.
async fn fetch(
    http: &reqwest::Client,
    token: &SecretString,
    url: &Url,
    file: &SlackFile,
    max: u64,
) -> Result<Vec<u8>, Unread> {
    let mut response =
        http.get(url.clone()).bearer_auth(token.expose_secret()).send().await.map_err(|_| Unread::Unavailable)?;
    let status = response.status();
    match status.as_u16() {
        200 => {}
        401 | 403 => return Err(Unread::NoAccess),
        404 | 410 => return Err(Unread::Gone),
        _ => return Err(Unread::Unavailable),
    }
    // Without `files:read`, Slack answers 200 with its sign-in page.
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let expected_html = file.mimetype.as_deref().is_some_and(|m| m.to_ascii_lowercase().starts_with("text/html"));
    if content_type.starts_with("text/html") && !expected_html {
        return Err(Unread::NoAccess);
    }
    if response.content_length().is_some_and(|l| l > max) {
        return Err(Unread::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| Unread::Unavailable)? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(Unread::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Text from bytes: UTF-8 (a BOM dropped), UTF-16 with a BOM, else EUC-KR
/// (Windows' Korean text files); `None` when none of them fits.
pub fn decode(bytes: &[u8]) -> Option<String> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, had_errors) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return (!had_errors).then(|| text.into_owned());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Some(text.to_owned());
    }
    encoding_rs::EUC_KR.decode_without_bom_handling_and_without_replacement(bytes).map(|t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mimetype: &str, mode: &str) -> SlackFile {
        SlackFile { name: "f".into(), mimetype: Some(mimetype.into()), mode: Some(mode.into()), ..SlackFile::default() }
    }

    #[test]
    fn text_is_told_by_type_or_snippet() {
        assert!(is_text(&file("text/plain", "hosted")));
        assert!(is_text(&file("text/markdown; charset=utf-8", "hosted")));
        assert!(is_text(&file("application/json", "hosted")));
        assert!(is_text(&file("application/octet-stream", "snippet")));
        assert!(!is_text(&file("image/png", "hosted")));
        assert!(!is_text(&file("application/pdf", "hosted")));
        assert!(!is_text(&SlackFile::default()));
    }

    #[test]
    fn hangul_files_are_read_by_their_extension_whatever_type_the_browser_guessed() {
        let named = |extension: &str, mimetype: &str| SlackFile {
            extension: Some(extension.into()),
            ..file(mimetype, "hosted")
        };
        assert_eq!(kind(&named("hwp", "application/octet-stream")), Kind::Office);
        assert_eq!(kind(&named("hwpx", "application/haansofthwpx")), Kind::Office);
        assert_eq!(kind(&named("exe", "application/octet-stream")), Kind::Other);
        assert_eq!(kind(&file("application/octet-stream", "hosted")), Kind::Other);
        // Word and PowerPoint 97–2003 files, by type or by extension.
        assert_eq!(kind(&file("application/msword", "hosted")), Kind::Office);
        assert_eq!(kind(&named("ppt", "application/octet-stream")), Kind::Office);
        assert_eq!(kind(&named("doc", "application/x-msword")), Kind::Office);
        // RTF is read as a document, whether typed as text or not.
        assert_eq!(kind(&file("text/rtf", "hosted")), Kind::Office);
        assert_eq!(kind(&named("rtf", "text/plain")), Kind::Office);
        assert_eq!(kind(&named("rtf", "application/msword")), Kind::Office);
        assert_eq!(kind(&SlackFile { extension: Some("rtf".into()), ..file("text/plain", "snippet") }), Kind::Text);
        assert_eq!(kind(&named("xls", "application/vnd.ms-excel")), Kind::Office);
    }

    #[test]
    fn decoding_takes_utf8_utf16_and_euc_kr_and_refuses_binary() {
        assert_eq!(decode("안녕 hello".as_bytes()).as_deref(), Some("안녕 hello"));
        assert_eq!(decode(b"\xEF\xBB\xBFbom").as_deref(), Some("bom"));
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain("회의".encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
        assert_eq!(decode(&utf16).as_deref(), Some("회의"));
        let (euc_kr, _, _) = encoding_rs::EUC_KR.encode("회의록: 3시");
        assert_eq!(decode(&euc_kr).as_deref(), Some("회의록: 3시"));
        assert_eq!(decode(&[0x89, b'P', b'N', b'G', 0xFF, 0xFF, 0x00, 0xC8]), None);
    }

    #[test]
    fn only_urls_under_the_files_base_get_the_token() {
        let base = Url::parse("https://files.slack.com").unwrap();
        let ok = Url::parse("https://files.slack.com/files-pri/T1-F1/a.txt").unwrap();
        assert!(is_under(&ok, &base));
        for other in [
            "http://files.slack.com/files-pri/T1-F1/a.txt",
            "https://files.slack.com.evil.example/a.txt",
            "https://evil.example/files.slack.com/a.txt",
            "https://files.slack.com:8443/a.txt",
        ] {
            assert!(!is_under(&Url::parse(other).unwrap(), &base), "{other}");
        }
        let fake = Url::parse("http://127.0.0.1:4000/files").unwrap();
        assert!(is_under(&Url::parse("http://127.0.0.1:4000/files/F1/a.txt").unwrap(), &fake));
        assert!(!is_under(&Url::parse("http://127.0.0.1:4000/api/a.txt").unwrap(), &fake));
        assert!(!is_under(&Url::parse("http://127.0.0.1:4000/files-other/a.txt").unwrap(), &fake));
    }

    #[test]
    fn stored_text_puts_each_file_under_its_name() {
        let read = |name: &str, text: &str| FileRead {
            name: name.into(),
            outcome: Outcome::Read { text: text.into(), cut: false },
        };
        let unread = FileRead { name: "b.png".into(), outcome: Outcome::Unread(Unread::NotText) };
        let stored = stored_text(&[read("a.txt", "one"), unread.clone(), read("c.md", "two")]).unwrap();
        assert_eq!(stored, "[file \"a.txt\"]\none\n\n[file \"c.md\"]\ntwo");
        let names: Vec<&str> = stored.lines().filter_map(stored_name).collect();
        assert_eq!(names, ["a.txt", "c.md"]);
        assert_eq!(stored_text(&[unread]), None);
    }

    #[test]
    fn text_is_kept_up_to_the_budget_on_a_character_boundary() {
        assert_eq!(keep("가나다", 2), ("가나".to_owned(), true));
        assert_eq!(keep("a\0b", 10), ("a\u{FFFD}b".to_owned(), false));
    }
}
