//! The text of a document a user sent (a PDF, a Word, PowerPoint or Excel
//! file (97–2003's `.doc`, `.ppt` and `.xls` too), an RTF file, an
//! OpenDocument, a Hangul `.hwp` or `.hwpx`), read in a child process.
//!
//! Document parsers meet hostile and broken files: the PDF parser robeing
//! uses (`pdf-extract`) can panic, recurse deeply or spin on them, and an
//! Office file is a ZIP archive that can unpack to gigabytes. So the
//! server never parses a document itself: [`text_of`] runs `robeing
//! read-document` (this same binary, [`crate::config::Config::pdf_reader`])
//! with the bytes on its standard input, no environment (no secrets), a
//! time limit, a cap on what it may print, and at most [`MAX_READERS`] at
//! once; the child limits its own memory first ([`READER_MEMORY`]). A
//! child that crashes, overruns or prints something else costs one file,
//! never the server. [`read_stdin_to_stdout`] is the child's side; it tells
//! the kind from the bytes and hands them to [`pdf`], [`office`] (ZIP
//! archives of XML, HWPX among them), [`rtf`], or [`xls`], [`doc`], [`ppt`]
//! or [`hwp`] (OLE compound files, told apart by their streams).

pub mod doc;
pub mod hwp;
pub mod office;
pub mod pdf;
pub mod ppt;
pub mod rtf;
pub mod xls;

use std::{
    io::{Read as _, Write as _},
    path::Path,
    process::Stdio,
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The first line the child prints before the text, so that a binary
/// that is not robeing's reader is never taken for one. (It names PDFs, the
/// first documents read: a server started before an upgrade still runs the
/// new binary as `read-pdf`, an alias, and expects this line.)
const HEADER: &str = "robeing-pdf-text/1\n";
/// How long one document may take to read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Documents read at the same time (each child can take a core).
pub const MAX_READERS: usize = 2;
/// The most of the child's output read: more than
/// [`crate::slack::files::MAX_TEXT_CHARS`] characters of UTF-8 could need;
/// a longer text is cut there (and the reader stopped).
const MAX_OUTPUT_BYTES: usize = 4 * crate::slack::files::MAX_TEXT_CHARS + HEADER.len();
/// The largest document the child reads.
pub const MAX_DOCUMENT_BYTES: u64 = 10_000_000;
/// The memory the child may write to beyond what it has mapped when it
/// starts reading (`RLIMIT_DATA`, which counts heap and private writable
/// mappings, set by the child on itself before it reads a byte). A
/// 100-page PDF needs about 17 MiB resident; a PDF whose streams unpack to
/// gigabytes (a decompression bomb: 10 MB can hold 10 GB of zeros; an
/// Office file's entries likewise) makes its allocation fail here instead
/// of growing until the kernel's OOM killer picks a process. Not
/// `RLIMIT_AS`: the allocator reserves 1 GiB of address space up front.
pub const READER_MEMORY: u64 = 512 << 20;

/// Set in the child's (otherwise empty) environment: mimalloc reserves a
/// 1 GiB arena before `main`, and on a machine that overcommits it maps it
/// writable at once (`arena_eager_commit`), which `RLIMIT_DATA` counts in
/// full. With that arena counted, a limit of [`READER_MEMORY`] alone was
/// below what the child already had, and any allocation the arena could
/// not serve failed: 24 of 1,230 reads of ordinary documents. Committed
/// as used instead, the limit means what it says.
const READER_ALLOCATOR: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

static READERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_READERS);

/// Why a document's text could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Read, but it holds no text (a scan, images only, an empty file).
    NoText,
    /// Damaged, encrypted, too complex, or the reader crashed or overran.
    Unreadable,
}

/// The text of `document`, read by `reader read-document` in a child
/// process.
pub async fn text_of(reader: &Path, document: &[u8]) -> Result<String, ReadError> {
    text_within(reader, document, READ_TIMEOUT).await
}

async fn text_within(reader: &Path, document: &[u8], limit: Duration) -> Result<String, ReadError> {
    let _permit = READERS.acquire().await.map_err(|_| ReadError::Unreadable)?;
    // On a timeout the child is dropped, and `kill_on_drop` ends it.
    match tokio::time::timeout(limit, run_reader(reader, document)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                timeout_secs = limit.as_secs_f64(),
                "a document took too long to read; its reader was stopped"
            );
            Err(ReadError::Unreadable)
        }
    }
}

async fn run_reader(reader: &Path, document: &[u8]) -> Result<String, ReadError> {
    let mut child = tokio::process::Command::new(reader)
        .arg("read-document")
        .env_clear()
        .env(READER_ALLOCATOR.0, READER_ALLOCATOR.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(reader = %reader.display(), error = %e, "cannot start the document reader");
            ReadError::Unreadable
        })?;
    let mut stdin = child.stdin.take().ok_or(ReadError::Unreadable)?;
    let mut stdout = child.stdout.take().ok_or(ReadError::Unreadable)?;
    let stderr = child.stderr.take().ok_or(ReadError::Unreadable)?;
    // Read by a task of its own too (a reader that fills the pipe must not
    // block), the first few KiB only: why the reader failed, for the log.
    let complaint = tokio::spawn(async move {
        let mut said = Vec::new();
        let _ = stderr.take(4096).read_to_end(&mut said).await;
        said
    });
    // Written by a task of its own, so that a reader that stops reading its
    // input while printing (or being stopped) never blocks the read below.
    let input = document.to_vec();
    let writer = tokio::spawn(async move {
        // A reader that stops early closes its end: not an error of ours.
        let _ = stdin.write_all(&input).await;
    });
    // A long document prints more than is ever kept: the start is read, then the
    // reader is stopped.
    let mut output = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let capped = loop {
        let n = stdout.read(&mut chunk).await.map_err(|_| ReadError::Unreadable)?;
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
        let status = child.wait().await.map_err(|_| ReadError::Unreadable)?;
        if !status.success() {
            let said = complaint.await.unwrap_or_default();
            tracing::info!(why = why_it_failed(status, &said), "the document reader could not read a document");
            return Err(ReadError::Unreadable);
        }
    }
    let text = match std::str::from_utf8(&output) {
        Ok(text) => text,
        // Cut inside a character by the cap: up to the last whole one.
        Err(e) if capped => std::str::from_utf8(&output[..e.valid_up_to()]).map_err(|_| ReadError::Unreadable)?,
        Err(_) => return Err(ReadError::Unreadable),
    };
    let text = text.strip_prefix(HEADER).ok_or_else(|| {
        tracing::error!(reader = %reader.display(), "the document reader printed something else than robeing's reader does");
        ReadError::Unreadable
    })?;
    let text = tidy(text);
    if text.is_empty() { Err(ReadError::NoText) } else { Ok(text) }
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
        (Some(1), _) => "not a document it can read (damaged, encrypted, or the parser failed on it)".to_owned(),
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("ended by signal {signal}"),
        (None, None) => "ended without a status".to_owned(),
    }
}

/// The extracted text without the blank runs document layout leaves: trailing
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

/// `robeing read-document`: reads a document from standard input and
/// prints its text after [`HEADER`]. Exit code 0, or 1 when it is no
/// document it can read (the reason on standard error).
pub fn read_stdin_to_stdout() -> i32 {
    if let Err(e) = limit_own_memory() {
        eprintln!("robeing read-document: cannot limit its own memory, so it reads nothing: {e}");
        return 1;
    }
    let mut document = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut document) {
        eprintln!("robeing read-document: cannot read standard input: {e}");
        return 1;
    }
    if document.len() as u64 > MAX_DOCUMENT_BYTES {
        eprintln!("robeing read-document: larger than {MAX_DOCUMENT_BYTES} bytes");
        return 1;
    }
    // A parser may panic on a broken file: that is a "could not read".
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(|| {
        if document.starts_with(b"%PDF-") {
            pdf::text_of_pdf(&document).map_err(|e| e.to_string())
        } else if document.starts_with(b"PK\x03\x04") {
            office::text_of(&document)
        } else if rtf::is_rtf(&document) {
            rtf::text_of(&document)
        } else if xls::is_workbook(&document) {
            xls::text_of(&document)
        } else if doc::is_word_document(&document) {
            doc::text_of(&document)
        } else if ppt::is_presentation(&document) {
            ppt::text_of(&document)
        } else if hwp::is_compound_file(&document) {
            hwp::text_of(&document)
        } else {
            Err("neither a PDF nor an Office, OpenDocument or Hangul file".to_owned())
        }
    });
    let text = match read {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            eprintln!("robeing read-document: {e}");
            return 1;
        }
        Err(_) => {
            eprintln!("robeing read-document: the parser failed on this file");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(HEADER.as_bytes()).and_then(|()| out.write_all(text.as_bytes())).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("robeing read-document: cannot write the text: {e}");
            1
        }
    }
}

/// At most `limit` bytes from `source` (`what` names it in errors): a
/// source that holds more is refused, not cut (an archive entry or stream
/// that unpacks past its limit).
fn read_at_most(source: impl std::io::Read, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    source.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("{what}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{what} unpacks to more than {limit} bytes"));
    }
    Ok(bytes)
}

/// An OLE compound file (`.hwp`, `.doc`, `.ppt`), opened to read its streams.
type Compound<'a> = cfb::CompoundFile<std::io::Cursor<&'a [u8]>>;

fn open_compound(bytes: &[u8]) -> Result<Compound<'_>, String> {
    cfb::CompoundFile::open(std::io::Cursor::new(bytes)).map_err(|e| format!("not an OLE compound file: {e}"))
}

/// A compound file's stream, at most `limit` bytes.
fn compound_stream(file: &mut Compound<'_>, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let s = file.open_stream(name).map_err(|e| format!("{name}: {e}"))?;
    read_at_most(s, limit, name)
}

/// The little-endian `u16` at `at` of a binary format, if there is one.
fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// The little-endian `u32` at `at`, if there is one.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Lets this process map [`READER_MEMORY`] more than it has now (started
/// by hand, without [`READER_ALLOCATOR`], it already counts the allocator's
/// arena, and a limit below that would fail allocations at random).
fn limit_own_memory() -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let mapped = data_size(&status).ok_or("/proc/self/status has no VmData line")?;
    let limit = mapped.saturating_add(READER_MEMORY);
    setrlimit(Resource::RLIMIT_DATA, limit, limit).map_err(|e| e.to_string())
}

/// `VmData` of a `/proc/<pid>/status`, in bytes.
fn data_size(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmData:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The real documents of `tests/fixtures/documents` (see its README).
#[cfg(test)]
pub(crate) mod fixtures {
    /// A fixture's bytes.
    pub fn bytes(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/documents/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// An OLE compound file (`.hwp`, `.xls`, `.doc`) with one stream changed by `edit`.
    pub fn with_stream(compound: Vec<u8>, stream: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        use std::io::{Read as _, Write as _};
        let mut file = cfb::CompoundFile::open(std::io::Cursor::new(compound)).unwrap();
        let mut bytes = Vec::new();
        file.open_stream(stream).unwrap().read_to_end(&mut bytes).unwrap();
        edit(&mut bytes);
        file.create_stream(stream).unwrap().write_all(&bytes).unwrap();
        file.flush().unwrap();
        file.into_inner().into_inner()
    }

    /// The meeting memo as read from the Word, OpenDocument and Hangul
    /// fixtures (tidied).
    pub const MEMO: &str = "회의록: 2026년 12월 1일\n참석자: 김종태, 이서연, 박민수\n\
                            다음 주 화요일까지 예산안을 제출하기로 했습니다. 담당자는 이서연입니다.\n\
                            항목\t금액\n서버 이전\t1,200,000원\nDesign review & QA\t350,000원\n\
                            Server migration happens on January 15.";

    /// The plan as read from the PowerPoint and OpenDocument fixtures
    /// (tidied).
    pub const PLAN: &str = "# Slide 1\n2026년 1분기 계획\nrobeing 팀 · Q1 planning\n\n\
                            # Slide 2\n할 일\n예산안 제출: 화요일까지\n서버 이전: 1월 15일\n\
                            Hire two engineers & one designer";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in reader: a shell script run as `<script> read-document` (with
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
        let echo = script(
            &dir,
            "echo",
            "printf 'robeing-pdf-text/1\\n'; /bin/cat; printf ' [%s] [%s]' \"$HOME\" \"$MIMALLOC_ARENA_EAGER_COMMIT\"",
        );
        let text = text_within(&echo, b"page one  \n\n\n\npage two", quick).await;
        assert_eq!(
            text,
            Ok("page one\n\npage two [] [0]".to_owned()),
            "tidied, and no environment reaches the reader but the allocator's setting"
        );
        let started = std::time::Instant::now();
        let hangs = script(&dir, "hangs", "exec /bin/sleep 30");
        assert_eq!(text_within(&hangs, b"%PDF", quick).await, Err(ReadError::Unreadable));
        assert!(started.elapsed() < Duration::from_secs(10), "stopped at the limit: {:?}", started.elapsed());
        let other = script(&dir, "other", "/bin/cat >/dev/null; echo 'running 0 tests'");
        assert_eq!(text_within(&other, b"%PDF", quick).await, Err(ReadError::Unreadable), "not robeing's reader");
        // Endless output (a very long PDF), input never read: the start is
        // kept and the reader stopped, without waiting for the limit.
        let floods = script(&dir, "floods", "printf 'robeing-pdf-text/1\\n'; exec /usr/bin/yes aaaaaaaaaaaaaaa");
        let started = std::time::Instant::now();
        let start = text_within(&floods, &vec![b'%'; 1_000_000], quick).await.expect("the start is kept");
        assert!(started.elapsed() < quick, "not waited out: {:?}", started.elapsed());
        assert!(start.len() <= MAX_OUTPUT_BYTES && start.len() > MAX_OUTPUT_BYTES - 100, "{}", start.len());
        assert!(start.lines().all(|l| l == "aaaaaaaaaaaaaaa"));
        let fails = script(&dir, "fails", "/bin/cat >/dev/null; printf 'robeing-pdf-text/1\\npartial'; exit 1");
        assert_eq!(text_within(&fails, b"%PDF", quick).await, Err(ReadError::Unreadable));
        let empty = script(&dir, "empty", "/bin/cat >/dev/null; printf 'robeing-pdf-text/1\\n \\n\\n'");
        assert_eq!(text_within(&empty, b"%PDF", quick).await, Err(ReadError::NoText));
        assert_eq!(text_within(&dir.join("missing"), b"%PDF", quick).await, Err(ReadError::Unreadable));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_data_size_is_read_from_proc_status() {
        let status = "Name:\trobeing\nVmPeak:\t 1075232 kB\nVmData:\t    6312 kB\nVmStk:\t 132 kB\n";
        assert_eq!(data_size(status), Some(6312 * 1024));
        assert_eq!(data_size("Name:\trobeing\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(data_size(&own).is_some_and(|bytes| bytes > 0), "{own}");
    }

    #[test]
    fn tidy_keeps_lines_and_one_blank_between_paragraphs() {
        assert_eq!(tidy("\n\n Title  \n\n\n\nline one\nline two   \n\n"), " Title\n\nline one\nline two");
        assert_eq!(tidy(" \n\n "), "");
    }
}
