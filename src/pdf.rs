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
/// The most the child may print: more than [`crate::slack::files::MAX_TEXT_CHARS`]
/// characters of UTF-8 could need.
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
    let _permit = READERS.acquire().await.map_err(|_| PdfError::Unreadable)?;
    match tokio::time::timeout(READ_TIMEOUT, run_reader(reader, pdf)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                timeout_secs = READ_TIMEOUT.as_secs(),
                "a PDF took too long to read; its reader was stopped"
            );
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
    let write = async move {
        // A reader that stops early closes its end: not an error of ours.
        let _ = stdin.write_all(pdf).await;
        drop(stdin);
    };
    let read = async {
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stdout.read(&mut chunk).await.map_err(|_| PdfError::Unreadable)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > MAX_OUTPUT_BYTES {
                return Err(PdfError::Unreadable);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    };
    let ((), output) = tokio::join!(write, read);
    let output = output?;
    let status = child.wait().await.map_err(|_| PdfError::Unreadable)?;
    if !status.success() {
        tracing::info!(code = ?status.code(), "the PDF reader could not read a PDF");
        return Err(PdfError::Unreadable);
    }
    let text = String::from_utf8(output).map_err(|_| PdfError::Unreadable)?;
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

    #[test]
    fn tidy_keeps_lines_and_one_blank_between_paragraphs() {
        assert_eq!(tidy("\n\n Title  \n\n\n\nline one\nline two   \n\n"), " Title\n\nline one\nline two");
        assert_eq!(tidy(" \n\n "), "");
    }
}
