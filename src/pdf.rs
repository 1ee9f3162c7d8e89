//! The text of a PDF a user sent, read in a child process.
//!
//! PDF parsers meet hostile and broken files, and the one robeing uses
//! (`pdf-extract`) can panic, recurse deeply or spin on them. So the server
//! never parses a PDF itself: [`text_of`] runs `robeing read-pdf` (this
//! same binary, [`crate::config::Config::pdf_reader`]) with the bytes on
//! its standard input, no environment (no secrets), a time limit, a cap
//! on what it may print, and at most [`MAX_READERS`] at once; the child
//! limits its own memory first ([`READER_MEMORY`]). A child that
//! crashes, overruns or prints something else costs one file, never the
//! server. [`read_stdin_to_stdout`] is the child's side.

use std::{
    io::{Read as _, Write as _},
    path::Path,
    process::Stdio,
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The first line the child prints before the text, so that a binary
/// that is not robeing's reader (or an older one) is never taken for one.
const HEADER: &str = "robeing-pdf-text/1\n";
/// How long one PDF may take to read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// PDFs read at the same time (each child can take a core).
pub const MAX_READERS: usize = 2;
/// The most of the child's output read: more than
/// [`crate::slack::files::MAX_TEXT_CHARS`] characters of UTF-8 could need;
/// a longer text is cut there (and the reader stopped).
const MAX_OUTPUT_BYTES: usize = 4 * crate::slack::files::MAX_TEXT_CHARS + HEADER.len();
/// The largest PDF the child reads.
pub const MAX_PDF_BYTES: u64 = 10_000_000;
/// The memory the child may write to (`RLIMIT_DATA`: heap and private
/// writable mappings, set by the child on itself before it reads a byte).
/// A 100-page PDF needs about 17 MiB resident; a PDF whose streams unpack
/// to gigabytes (a decompression bomb: 10 MB can hold 10 GB of zeros)
/// makes its allocation fail here instead of growing until the kernel's
/// OOM killer picks a process. Not `RLIMIT_AS`: the allocator reserves
/// 1 GiB of address space up front (inaccessible, so not counted here).
pub const READER_MEMORY: u64 = 512 << 20;

static READERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_READERS);

/// Why a PDF's text could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdfError {
    /// Read, but it holds no text (a scan, images only).
    NoText,
    /// Damaged, encrypted, too complex, or the reader crashed or overran.
    Unreadable,
}

/// The text of `pdf`, read by `reader read-pdf` in a child process.
pub async fn text_of(reader: &Path, pdf: &[u8]) -> Result<String, PdfError> {
    text_within(reader, pdf, READ_TIMEOUT).await
}

async fn text_within(reader: &Path, pdf: &[u8], limit: Duration) -> Result<String, PdfError> {
    let _permit = READERS.acquire().await.map_err(|_| PdfError::Unreadable)?;
    // On a timeout the child is dropped, and `kill_on_drop` ends it.
    match tokio::time::timeout(limit, run_reader(reader, pdf)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(timeout_secs = limit.as_secs_f64(), "a PDF took too long to read; its reader was stopped");
            Err(PdfError::Unreadable)
        }
    }
}

async fn run_reader(reader: &Path, pdf: &[u8]) -> Result<String, PdfError> {
    let mut child = tokio::process::Command::new(reader)
        .arg("read-pdf")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(reader = %reader.display(), error = %e, "cannot start the PDF reader");
            PdfError::Unreadable
        })?;
    let mut stdin = child.stdin.take().ok_or(PdfError::Unreadable)?;
    let mut stdout = child.stdout.take().ok_or(PdfError::Unreadable)?;
    let stderr = child.stderr.take().ok_or(PdfError::Unreadable)?;
    // Read by a task of its own too (a reader that fills the pipe must not
    // block), the first few KiB only: why the reader failed, for the log.
    let complaint = tokio::spawn(async move {
        let mut said = Vec::new();
        let _ = stderr.take(4096).read_to_end(&mut said).await;
        said
    });
    // Written by a task of its own, so that a reader that stops reading its
    // input while printing (or being stopped) never blocks the read below.
    let input = pdf.to_vec();
    let writer = tokio::spawn(async move {
        // A reader that stops early closes its end: not an error of ours.
        let _ = stdin.write_all(&input).await;
    });
    // A long PDF prints more than is ever kept: the start is read, then the
    // reader is stopped.
    let mut output = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let capped = loop {
        let n = stdout.read(&mut chunk).await.map_err(|_| PdfError::Unreadable)?;
        if n == 0 {
            break false;
        }
        let room = MAX_OUTPUT_BYTES - output.len();
        output.extend_from_slice(&chunk[..n.min(room)]);
        if n >= room {
            break true;
        }
    };
    writer.abort();
    if capped {
        let _ = child.start_kill();
        let _ = child.wait().await;
    } else {
        let status = child.wait().await.map_err(|_| PdfError::Unreadable)?;
        if !status.success() {
            let said = complaint.await.unwrap_or_default();
            tracing::info!(why = why_it_failed(status, &said), "the PDF reader could not read a PDF");
            return Err(PdfError::Unreadable);
        }
    }
    let text = match std::str::from_utf8(&output) {
        Ok(text) => text,
        // Cut inside a character by the cap: up to the last whole one.
        Err(e) if capped => std::str::from_utf8(&output[..e.valid_up_to()]).map_err(|_| PdfError::Unreadable)?,
        Err(_) => return Err(PdfError::Unreadable),
    };
    let text = text.strip_prefix(HEADER).ok_or_else(|| {
        tracing::error!(reader = %reader.display(), "the PDF reader printed something else than robeing's reader does");
        PdfError::Unreadable
    })?;
    let text = tidy(text);
    if text.is_empty() { Err(PdfError::NoText) } else { Ok(text) }
}

/// Why a reader failed, for the log: never its words (a parser's message
/// can quote the file), only which kind of failure it was.
fn why_it_failed(status: std::process::ExitStatus, said: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    let said = String::from_utf8_lossy(said);
    if said.contains("memory allocation of") {
        return format!("over its memory limit ({} MiB)", READER_MEMORY >> 20);
    }
    match (status.code(), status.signal()) {
        (Some(1), _) => "not a PDF it can read (damaged, encrypted, or the parser failed on it)".to_owned(),
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("ended by signal {signal}"),
        (None, None) => "ended without a status".to_owned(),
    }
}

/// The extracted text without the blank runs PDF layout leaves: trailing
/// spaces cut, at most one empty line in a row, none at either end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// A small, valid PDF 1.4: one page showing `lines` in Helvetica (none: a
/// page without text, like a scan's). `robeing doctor` reads one to check
/// the reader works; the tests send them.
pub fn simple(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 14 TL 72 720 Td\n");
    for line in lines {
        let escaped = line.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET\n");
    with_content(&content)
}

/// A one-page PDF 1.4 whose page shows `content` (operators, with `/F1`
/// Helvetica).
fn with_content(content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    from_objects(&objects.map(String::into_bytes))
}

/// A PDF 1.4 file of these objects (numbered from 1; the first is the
/// catalog) with its cross-reference table.
pub fn from_objects(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

/// The text of a PDF's pages, as [`PageText`] lays it out (one empty line
/// between pages). An encrypted PDF is read when it opens with the empty
/// password (a PDF that only forbids copying or printing).
fn text_of_pdf(pdf: &[u8]) -> Result<String, pdf_extract::OutputError> {
    let mut doc = pdf_extract::Document::load_mem(pdf)?;
    if doc.is_encrypted() {
        doc.decrypt("")?;
    }
    list_cid_widths(&mut doc);
    let mut page = PageText::default();
    pdf_extract::output_doc(&doc, &mut page)?;
    Ok(page.text)
}

/// Rewrites each CID font's glyph widths (`/W`) in the one of its two forms
/// the parser reads right. `/W` lists widths as `c [w1 w2 …]` (glyphs from
/// c on) or as `c_first c_last w` (a range of one width); `pdf-extract`
/// 0.12 misreads the second form (it takes `c_first` for all three
/// numbers), so those glyphs got the font's default width. Chrome writes
/// ranges for punctuation and digits: a comma 0.94 em wide instead of 0.3
/// hid the space after it. Ranges become lists here; anything else in the
/// array is left as it is.
fn list_cid_widths(doc: &mut pdf_extract::Document) {
    use pdf_extract::{Object, ObjectId};
    fn as_lists(w: &[Object]) -> Option<Vec<Object>> {
        let mut out = Vec::with_capacity(w.len());
        let mut i = 0;
        let mut changed = false;
        while i < w.len() {
            match (&w[i], w.get(i + 1), w.get(i + 2)) {
                (first @ Object::Integer(_), Some(list @ Object::Array(_)), _) => {
                    out.extend([first.clone(), list.clone()]);
                    i += 2;
                }
                (Object::Integer(first), Some(Object::Integer(last)), Some(width)) if last >= first => {
                    // At most one CID range's worth (CIDs are 16-bit).
                    let count = (last - first + 1).min(1 << 16) as usize;
                    out.extend([Object::Integer(*first), Object::Array(vec![width.clone(); count])]);
                    changed = true;
                    i += 3;
                }
                _ => return None,
            }
        }
        changed.then_some(out)
    }
    let is_cid_font = |d: &pdf_extract::Dictionary| {
        matches!(d.get(b"Subtype").and_then(Object::as_name), Ok(b"CIDFontType0" | b"CIDFontType2"))
    };
    // `/W` inline in the font's dictionary, or an array object of its own.
    let mut referenced: Vec<ObjectId> = Vec::new();
    for object in doc.objects.values_mut() {
        let Object::Dictionary(font) = object else { continue };
        if !is_cid_font(font) {
            continue;
        }
        match font.get_mut(b"W") {
            Ok(Object::Array(w)) => {
                if let Some(lists) = as_lists(w) {
                    *w = lists;
                }
            }
            Ok(Object::Reference(id)) => referenced.push(*id),
            _ => {}
        }
    }
    for id in referenced {
        if let Some(Object::Array(w)) = doc.objects.get_mut(&id)
            && let Some(lists) = as_lists(w)
        {
            *w = lists;
        }
    }
}

/// Lines and spaces from where the parser places each glyph (the parser's
/// own plain-text output only looks between the strings a PDF shows, and
/// loses spaces two common kinds of PDF make):
/// - a glyph that starts more than a tenth of the font size after the last
///   one ended follows a space: words spaced by moving the pen, as TeX's
///   `[(word) -333 (word)] TJ` does;
/// - a glyph without a printable Unicode value (none, or a control
///   character) writes nothing and leaves its advance as such a gap:
///   Chrome's "Save as PDF" draws each space as a glyph its ToUnicode map
///   sends to U+0001 (the space is said only in marked content), so Korean
///   text came out with no spaces at all;
/// - a baseline more than 1.5 font sizes away (or back to the left and half
///   a size away) starts a new line;
/// - a line never starts with a space, nor has two in a row (LibreOffice
///   places space glyphs and gaps both).
#[derive(Default)]
struct PageText {
    text: String,
    /// The page's height: PDF's y grows upwards, lines go downwards.
    height: f64,
    /// Where the last written glyph ended, and its baseline (`None` at the
    /// start of a page).
    last: Option<(f64, f64)>,
}

impl PageText {
    /// At the start of the text or of a line, or after a space.
    fn after_space(&self) -> bool {
        self.text.is_empty() || self.text.ends_with([' ', '\n'])
    }
}

impl pdf_extract::OutputDev for PageText {
    fn begin_page(
        &mut self,
        _: u32,
        media_box: &pdf_extract::MediaBox,
        _: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        self.height = media_box.ury - media_box.lly;
        self.last = None;
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        // The font size on the page: the text matrix scales (and may flip) it.
        let size = font_size * (trm.m11 * trm.m22 - trm.m12 * trm.m21).abs().sqrt();
        let (x, y) = (trm.m31, self.height - trm.m32);
        if char.chars().all(char::is_control) {
            return Ok(());
        }
        if let Some((end, baseline)) = self.last {
            let dy = (y - baseline).abs();
            if dy > size * 1.5 || (x < end && dy > size * 0.5) {
                self.text.push('\n');
            } else if x > end + size * 0.1 && !self.after_space() {
                self.text.push(' ');
            }
        }
        let char = if self.after_space() { char.trim_start_matches(' ') } else { char };
        self.text.push_str(char);
        self.last = Some((x + width * size, y));
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
}

/// `robeing read-pdf`: reads a PDF from standard input and prints its text
/// after [`HEADER`]. Exit code 0, or 1 when it is no readable PDF (the
/// reason on standard error).
pub fn read_stdin_to_stdout() -> i32 {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_DATA, READER_MEMORY, READER_MEMORY) {
        eprintln!("robeing read-pdf: cannot limit its own memory, so it reads nothing: {e}");
        return 1;
    }
    let mut pdf = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_PDF_BYTES + 1).read_to_end(&mut pdf) {
        eprintln!("robeing read-pdf: cannot read standard input: {e}");
        return 1;
    }
    if pdf.len() as u64 > MAX_PDF_BYTES {
        eprintln!("robeing read-pdf: larger than {MAX_PDF_BYTES} bytes");
        return 1;
    }
    // The parser may panic on a broken file: that is a "could not read".
    std::panic::set_hook(Box::new(|_| {}));
    let text = match std::panic::catch_unwind(|| text_of_pdf(&pdf)) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            eprintln!("robeing read-pdf: {e}");
            return 1;
        }
        Err(_) => {
            eprintln!("robeing read-pdf: the PDF parser failed on this file");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(HEADER.as_bytes()).and_then(|()| out.write_all(text.as_bytes())).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("robeing read-pdf: cannot write the text: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in reader: a shell script run as `<script> read-pdf` (with
    /// no environment, so no PATH: commands by their full path).
    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_reader_that_hangs_lies_floods_or_fails_costs_only_that_file() {
        let dir = std::env::temp_dir().join(format!("robeing-pdf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let quick = Duration::from_secs(2);
        assert!(std::env::var_os("HOME").is_some(), "the test's own environment has HOME");
        let echo = script(&dir, "echo", "printf 'robeing-pdf-text/1\\n'; /bin/cat; printf ' [%s]' \"$HOME\"");
        let text = text_within(&echo, b"page one  \n\n\n\npage two", quick).await;
        assert_eq!(text, Ok("page one\n\npage two []".to_owned()), "tidied, and no environment reaches the reader");
        let started = std::time::Instant::now();
        let hangs = script(&dir, "hangs", "exec /bin/sleep 30");
        assert_eq!(text_within(&hangs, b"%PDF", quick).await, Err(PdfError::Unreadable));
        assert!(started.elapsed() < Duration::from_secs(10), "stopped at the limit: {:?}", started.elapsed());
        let other = script(&dir, "other", "/bin/cat >/dev/null; echo 'running 0 tests'");
        assert_eq!(text_within(&other, b"%PDF", quick).await, Err(PdfError::Unreadable), "not robeing's reader");
        // Endless output (a very long PDF), input never read: the start is
        // kept and the reader stopped, without waiting for the limit.
        let floods = script(&dir, "floods", "printf 'robeing-pdf-text/1\\n'; exec /usr/bin/yes aaaaaaaaaaaaaaa");
        let started = std::time::Instant::now();
        let start = text_within(&floods, &vec![b'%'; 1_000_000], quick).await.expect("the start is kept");
        assert!(started.elapsed() < quick, "not waited out: {:?}", started.elapsed());
        assert!(start.len() <= MAX_OUTPUT_BYTES && start.len() > MAX_OUTPUT_BYTES - 100, "{}", start.len());
        assert!(start.lines().all(|l| l == "aaaaaaaaaaaaaaa"));
        let fails = script(&dir, "fails", "/bin/cat >/dev/null; printf 'robeing-pdf-text/1\\npartial'; exit 1");
        assert_eq!(text_within(&fails, b"%PDF", quick).await, Err(PdfError::Unreadable));
        let empty = script(&dir, "empty", "/bin/cat >/dev/null; printf 'robeing-pdf-text/1\\n \\n\\n'");
        assert_eq!(text_within(&empty, b"%PDF", quick).await, Err(PdfError::NoText));
        assert_eq!(text_within(&dir.join("missing"), b"%PDF", quick).await, Err(PdfError::Unreadable));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn words_spaced_by_moving_the_pen_keep_their_space_and_kerning_adds_none() {
        let pdf =
            with_content("BT /F1 12 Tf 72 720 Td [(Hello) -333 (world) -20 (!)] TJ 0 -20 Td (  two  spaces) Tj ET\n");
        assert_eq!(text_of_pdf(&pdf).unwrap(), "Hello world!\ntwo spaces");
        let lines = ["Quarterly report (Q3)", "Revenue grew 12 percent."];
        assert_eq!(text_of_pdf(&simple(&lines)).unwrap(), lines.join("\n"));
    }

    #[test]
    fn korean_pdfs_from_chrome_and_libreoffice_keep_their_spaces() {
        let fixture =
            |name: &str| std::fs::read(format!("{}/tests/fixtures/pdf/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // Chrome's spaces are glyphs mapped to U+0001; its punctuation's
        // widths are `/W` ranges.
        assert_eq!(
            text_of_pdf(&fixture("korean-memo-chromium.pdf")).unwrap(),
            "회의록: 2026년 12월 1일\n참석자: 김종태, 이서연, 박민수\n\
             다음 주 화요일까지 예산안을 제출하기로 했습니다. 담당자는 이서연입니다.\n\
             서버 이전은 1월 15일에 진행합니다."
        );
        // LibreOffice sets the digits in another font, a gap away (as
        // pdftotext reads it too).
        assert_eq!(
            text_of_pdf(&fixture("korean-memo-libreoffice.pdf")).unwrap(),
            "회의록: 2026 년 12 월 1 일\n참석자: 김종태, 이서연, 박민수\n\
             다음 주 화요일까지 예산안을 제출하기로 했습니다. 담당자는 이서연입니다.\n\
             서버 이전은 1 월 15 일에 진행합니다."
        );
    }

    #[test]
    fn tidy_keeps_lines_and_one_blank_between_paragraphs() {
        assert_eq!(tidy("\n\n Title  \n\n\n\nline one\nline two   \n\n"), " Title\n\nline one\nline two");
        assert_eq!(tidy(" \n\n "), "");
    }
}
