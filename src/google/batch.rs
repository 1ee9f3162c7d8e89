//! The wire format of Gmail's batch endpoint (`POST /batch/gmail/v1`, see
//! Google's "Batching requests" guide): many API calls in one HTTP request.
//! Pure functions, no I/O; [`super::gmail`] sends and receives.
//!
//! A request is `multipart/mixed`; each part is `Content-Type:
//! application/http` with a `Content-ID`, and its content is an HTTP request
//! with the path only (`GET /gmail/v1/users/me/messages/…`). The outer
//! request's `Authorization` applies to every inner one.
//!
//! The answer is `multipart/mixed` too (its own boundary, named in its
//! `Content-Type`): each part holds a whole HTTP/1.1 response (status line,
//! headers, body) and echoes the request's `Content-ID` prefixed with
//! `response-`. Google may run the calls in any order, so answers are paired
//! with requests by that `Content-ID`; a part without one takes the place of
//! its position. [`parse_response`] follows RFC 2046: CRLF or bare LF line
//! ends, a preamble and an epilogue are ignored, the boundary may be quoted,
//! header names are case-insensitive, and anything it cannot read is a
//! [`MalformedBatch`] naming the problem, never a panic.

use std::fmt::Write as _;

/// Most calls Google accepts in one batch request.
pub const MAX_PARTS: usize = 100;

/// Why a batch answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed batch answer: {0}")]
pub struct MalformedBatch(pub String);

fn malformed(what: impl Into<String>) -> MalformedBatch {
    MalformedBatch(what.into())
}

/// A fresh boundary for a request: random, so no message id can contain it.
pub fn new_boundary() -> String {
    format!("batch_robeing_{:032x}", rand::random::<u128>())
}

/// The `Content-ID` of the `index`-th inner request.
pub fn content_id(index: usize) -> String {
    format!("item-{index}")
}

/// The `multipart/mixed` body of a batch of `GET`s, one part per
/// path-and-query (each already percent-encoded), `Content-ID: <item-N>` for
/// the N-th.
pub fn encode_gets<'a>(boundary: &str, targets: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = String::new();
    for (index, target) in targets.into_iter().enumerate() {
        let _ = write!(
            body,
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{}>\r\n\r\nGET {target}\r\n\r\n",
            content_id(index)
        );
    }
    let _ = write!(body, "--{boundary}--\r\n");
    body
}

/// The request's `Content-Type` header for `boundary`.
pub fn request_content_type(boundary: &str) -> String {
    format!("multipart/mixed; boundary={boundary}")
}

/// One inner answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerResponse {
    /// The part's `Content-ID` without the angle brackets, if it had one
    /// (`response-item-3`).
    pub content_id: Option<String>,
    pub status: u16,
    /// The inner response's headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl InnerResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The boundary of a `multipart/mixed` `Content-Type` header value.
pub fn boundary_of(content_type: &str) -> Result<String, MalformedBatch> {
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return Err(malformed(format!("Content-Type is {media:?}, not multipart/mixed")));
    }
    for param in params {
        let Some((name, value)) = param.split_once('=') else { continue };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').ok_or_else(|| malformed("unterminated quoted boundary"))?,
            None => value,
        };
        // RFC 2046: 1 to 70 characters, not ending in a space.
        if value.is_empty() || value.len() > 70 || value.ends_with(' ') {
            return Err(malformed(format!("invalid boundary {value:?}")));
        }
        return Ok(value.to_owned());
    }
    Err(malformed("Content-Type has no boundary"))
}

/// The parts of a `multipart/mixed` body: the bytes between delimiter lines
/// (`--boundary`), the line break before each delimiter excluded; the
/// preamble and the epilogue dropped. A missing close delimiter
/// (`--boundary--`) means the answer was cut short.
pub fn split_parts<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<&'a [u8]>, MalformedBatch> {
    let dash = format!("--{boundary}");
    let dash = dash.as_bytes();
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter is seen.
    let mut open: Option<usize> = None;
    let mut line_start = 0;
    while line_start <= body.len() {
        let line_end = body[line_start..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| line_start + i);
        let next = line_end + 1;
        let line = &body[line_start..line_end];
        if let Some(after) = line.strip_prefix(dash) {
            let after = after.strip_suffix(b"\r").unwrap_or(after);
            let (close, padding) = match after.strip_prefix(b"--") {
                Some(rest) => (true, rest),
                None => (false, after),
            };
            // Only transport padding may follow a delimiter; otherwise this
            // line merely starts with the boundary's text.
            if padding.iter().all(|&b| b == b' ' || b == b'\t') {
                if let Some(start) = open {
                    // The line break before the delimiter belongs to it.
                    let mut end = line_start.saturating_sub(1).max(start);
                    if end > start && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                    parts.push(&body[start..end]);
                }
                if close {
                    return Ok(parts);
                }
                open = Some(next.min(body.len()));
            }
        }
        line_start = next;
    }
    Err(match open {
        None => malformed(format!("no part delimited by --{boundary}")),
        Some(_) => malformed(format!("no closing --{boundary}-- (answer cut short?)")),
    })
}

/// Splits `bytes` at its first empty line: (header lines, the rest). Lines
/// end in CRLF or LF; headers may be folded (continuation lines start with a
/// space or tab). With no empty line, everything is headers.
fn split_head(bytes: &[u8]) -> Result<(Vec<String>, &[u8]), MalformedBatch> {
    let mut lines: Vec<String> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i);
        let raw = &bytes[at..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        at = (end + 1).min(bytes.len());
        if raw.is_empty() {
            return Ok((lines, &bytes[at..]));
        }
        let text = std::str::from_utf8(raw).map_err(|_| malformed("a header line is not UTF-8"))?;
        match (text.starts_with([' ', '\t']), lines.last_mut()) {
            (true, Some(previous)) => {
                previous.push(' ');
                previous.push_str(text.trim());
            }
            _ => lines.push(text.to_owned()),
        }
    }
    Ok((lines, &bytes[bytes.len()..]))
}

/// `Name: value` pairs; lines without a colon are skipped (Google's own
/// documentation shows one such line).
fn header_pairs(lines: &[String]) -> Vec<(String, String)> {
    lines.iter().filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect()
}

/// One part: MIME headers, an empty line, then an HTTP/1.1 response.
fn parse_part(index: usize, part: &[u8]) -> Result<InnerResponse, MalformedBatch> {
    let (mime_lines, http) = split_head(part)?;
    let mime = header_pairs(&mime_lines);
    let content_id = mime
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-id"))
        .map(|(_, v)| v.trim_start_matches('<').trim_end_matches('>').trim().to_owned());
    let (mut lines, body) = split_head(http)?;
    if lines.is_empty() {
        return Err(malformed(format!("part {} holds no HTTP response", index + 1)));
    }
    let status_line = lines.remove(0);
    let mut words = status_line.split_whitespace();
    let status = match (words.next(), words.next()) {
        (Some(version), Some(code))
            if version.starts_with("HTTP/") && code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) =>
        {
            code.parse::<u16>().map_err(|_| malformed("unreadable status code"))?
        }
        _ => {
            let shown: String = status_line.chars().take(40).collect();
            return Err(malformed(format!("part {} starts with {shown:?}, not an HTTP status line", index + 1)));
        }
    };
    Ok(InnerResponse { content_id, status, headers: header_pairs(&lines), body: body.to_vec() })
}

/// Every inner response of a batch answer, in the order of the parts.
pub fn parse_response(content_type: &str, body: &[u8]) -> Result<Vec<InnerResponse>, MalformedBatch> {
    let boundary = boundary_of(content_type)?;
    split_parts(&boundary, body)?.into_iter().enumerate().map(|(i, part)| parse_part(i, part)).collect()
}

/// Pairs the answers with `expected` requests (numbered as
/// [`content_id`] does): by `Content-ID` (`response-item-N`) where a part
/// has one, else by its position. Every request must be answered exactly once.
pub fn in_request_order(expected: usize, answers: Vec<InnerResponse>) -> Result<Vec<InnerResponse>, MalformedBatch> {
    if answers.len() != expected {
        return Err(malformed(format!("{} answers to {expected} requests", answers.len())));
    }
    let mut slots: Vec<Option<InnerResponse>> = vec![None; expected];
    for (position, answer) in answers.into_iter().enumerate() {
        let slot = match &answer.content_id {
            None => position,
            Some(id) => id
                .strip_prefix("response-")
                .and_then(|id| id.strip_prefix("item-"))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < expected)
                .ok_or_else(|| malformed(format!("answer with unknown Content-ID <{id}>")))?,
        };
        if slots[slot].is_some() {
            return Err(malformed(format!("request {} answered twice", content_id(slot))));
        }
        slots[slot] = Some(answer);
    }
    // Counts match and no slot is filled twice, so every slot is filled.
    Ok(slots.into_iter().flatten().collect())
}

/// A path segment percent-encoded (RFC 3986 unreserved characters kept), so
/// an id can never break the request line.
pub fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/mixed; boundary=batch_abc";

    fn part(id: Option<&str>, status: &str, body: &str, eol: &str) -> String {
        let id = id.map(|i| format!("Content-ID: <{i}>{eol}")).unwrap_or_default();
        format!(
            "--batch_abc{eol}Content-Type: application/http{eol}{id}{eol}{status}{eol}Content-Type: application/json; charset=UTF-8{eol}{eol}{body}{eol}"
        )
    }

    #[test]
    fn a_google_style_answer_parses_with_crlf() {
        let body = format!(
            "{}{}--batch_abc--\r\n",
            part(Some("response-item-0"), "HTTP/1.1 200 OK", "{\"id\":\"a\"}", "\r\n"),
            part(Some("response-item-1"), "HTTP/1.1 404 Not Found", "{\"error\":{}}", "\r\n"),
        );
        let answers = parse_response(CT, body.as_bytes()).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].status, 200);
        assert_eq!(answers[0].content_id.as_deref(), Some("response-item-0"));
        assert_eq!(answers[0].body, b"{\"id\":\"a\"}");
        assert_eq!(answers[0].header("content-type"), Some("application/json; charset=UTF-8"));
        assert_eq!(answers[1].status, 404);
    }

    #[test]
    fn bare_lf_preamble_epilogue_and_a_quoted_boundary_are_read() {
        let body = format!(
            "This is the preamble.\n{}--batch_abc--\nand an epilogue\n--batch_abc\nignored",
            part(Some("response-item-0"), "HTTP/1.1 200", "{}", "\n")
        );
        let answers = parse_response("Multipart/Mixed; charset=x; Boundary=\"batch_abc\"", body.as_bytes()).unwrap();
        assert_eq!(answers.len(), 1);
        assert_eq!((answers[0].status, answers[0].body.as_slice()), (200, b"{}".as_slice()));
    }

    #[test]
    fn shuffled_answers_are_paired_by_content_id_and_missing_ids_by_position() {
        let body = format!(
            "{}{}{}--batch_abc--",
            part(Some("response-item-2"), "HTTP/1.1 200 OK", "two", "\r\n"),
            part(None, "HTTP/1.1 200 OK", "one", "\r\n"),
            part(Some("response-item-0"), "HTTP/1.1 429 Too Many Requests", "zero", "\r\n"),
        );
        let answers = in_request_order(3, parse_response(CT, body.as_bytes()).unwrap()).unwrap();
        let bodies: Vec<&[u8]> = answers.iter().map(|a| a.body.as_slice()).collect();
        assert_eq!(bodies, [b"zero".as_slice(), b"one", b"two"]);
    }

    #[test]
    fn a_line_that_only_starts_with_the_boundary_is_content() {
        let body = "--batch_abc\r\n\r\nHTTP/1.1 200 OK\r\n\r\n--batch_abcdef\r\n--batch_abc--";
        let answers = parse_response(CT, body.as_bytes()).unwrap();
        assert_eq!(answers[0].body, b"--batch_abcdef");
    }

    #[test]
    fn malformed_answers_name_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            ("application/json", "{}", "not multipart/mixed"),
            ("multipart/mixed", "", "no boundary"),
            ("multipart/mixed; boundary=\"x", "", "unterminated"),
            (CT, "<html>oops</html>", "no part delimited"),
            (CT, "--batch_abc\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"id\"", "cut short"),
            (CT, "--batch_abc\r\n\r\nGET /x\r\n--batch_abc--", "not an HTTP status line"),
            (CT, "--batch_abc\r\n\r\n--batch_abc--", "holds no HTTP response"),
        ];
        for (ct, body, needle) in cases {
            let err = parse_response(ct, body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(needle), "{body:?}: {err}");
        }
        let two = |a: &str, b: &str| {
            let body = format!(
                "{}{}--batch_abc--",
                part(Some(a), "HTTP/1.1 200 OK", "", "\n"),
                part(Some(b), "HTTP/1.1 200 OK", "", "\n")
            );
            in_request_order(2, parse_response(CT, body.as_bytes()).unwrap()).unwrap_err().to_string()
        };
        assert!(two("response-item-0", "response-item-0").contains("answered twice"));
        assert!(two("response-item-0", "response-item-7").contains("unknown Content-ID"));
        assert!(two("response-item-0", "other").contains("unknown Content-ID"));
        let one = format!("{}--batch_abc--", part(None, "HTTP/1.1 200 OK", "", "\n"));
        assert!(
            in_request_order(2, parse_response(CT, one.as_bytes()).unwrap())
                .unwrap_err()
                .to_string()
                .contains("1 answers to 2")
        );
    }

    #[test]
    fn requests_follow_googles_format() {
        let body = encode_gets("b1", ["/gmail/v1/users/me/messages/a?format=metadata", "/x"]);
        assert_eq!(
            body,
            "--b1\r\nContent-Type: application/http\r\nContent-ID: <item-0>\r\n\r\nGET /gmail/v1/users/me/messages/a?format=metadata\r\n\r\n\
             --b1\r\nContent-Type: application/http\r\nContent-ID: <item-1>\r\n\r\nGET /x\r\n\r\n--b1--\r\n"
        );
        assert_eq!(boundary_of(&request_content_type("b1")).unwrap(), "b1");
        assert_ne!(new_boundary(), new_boundary());
        assert!(new_boundary().len() <= 70);
        assert_eq!(path_segment("18c2ee11/../x y\r\n"), "18c2ee11%2F..%2Fx%20y%0D%0A");
    }
}
