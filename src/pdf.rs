//! The text of a PDF a user sent, read in a child process.
//!
//! PDF parsers meet hostile and broken files, and the one robeing uses
//! (`pdf-extract`) can panic, recurse deeply or spin on them. So the server
//! never parses a PDF itself: [`text_of`] runs `robeing read-pdf` (this
//! same binary, [`crate::config::Config::pdf_reader`]) with the bytes on
//! its standard input, no environment (no secrets), a time limit and a cap
//! on what it may print, and at most [`MAX_READERS`] at once. A child that
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
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(reader = %reader.display(), error = %e, "cannot start the PDF reader");
            PdfError::Unreadable
        })?;
    let mut stdin = child.stdin.take().ok_or(PdfError::Unreadable)?;
    let mut stdout = child.stdout.take().ok_or(PdfError::Unreadable)?;
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
            tracing::info!(code = ?status.code(), "the PDF reader could not read a PDF");
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
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
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

/// `robeing read-pdf`: reads a PDF from standard input and prints its text
/// after [`HEADER`]. Exit code 0, or 1 when it is no readable PDF (the
/// reason on standard error).
pub fn read_stdin_to_stdout() -> i32 {
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
    let text = match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&pdf)) {
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
    fn tidy_keeps_lines_and_one_blank_between_paragraphs() {
        assert_eq!(tidy("\n\n Title  \n\n\n\nline one\nline two   \n\n"), " Title\n\nline one\nline two");
        assert_eq!(tidy(" \n\n "), "");
    }
}
