//! The text of Hangul word processor files in the binary HWP 5 format
//! (`.hwp`, what Hancom Office wrote before HWPX and still writes by
//! default in many Korean offices). Run in the reader child ([`super`]).
//!
//! An HWP 5 file is an OLE compound file. Its `FileHeader` stream says
//! whether the streams are compressed (raw deflate), whether the document
//! is password-protected (named unreadable: its key is the password) and
//! whether it is a distribution document (배포용 문서: read-only for its
//! readers, its sections in `ViewText` rather than `BodyText`, each
//! AES-128 encrypted with a key stored in its first record, hidden by
//! the stream of MSVC's `rand()`; [`distributed_section`]). The text is in
//! `BodyText/Section0`, `Section1`, …: a sequence of records (tag, nesting
//! level, size), among them each paragraph's text as UTF-16 with control
//! characters mixed in.
//!
//! What is read: each paragraph a line; tables a row a line with cells
//! separated by tabs (the paragraphs of one cell by spaces); text boxes in
//! place. Headers, footers, footnotes, endnotes and hidden comments are
//! not (they interrupt the text they hang from).

use super::compound_stream;

/// The most one section stream may unpack to.
pub const MAX_SECTION_BYTES: u64 = 64 << 20;

/// The signature at the start of the `FileHeader` stream.
const SIGNATURE: &[u8] = b"HWP Document File";

// `FileHeader` properties.
const COMPRESSED: u32 = 1;
const PASSWORD: u32 = 1 << 1;
const DISTRIBUTION: u32 = 1 << 2;

// Record tags (HWPTAG_BEGIN is 0x10).
const PARA_TEXT: u16 = 0x10 + 51;
const DISTRIBUTE_DOC_DATA: u16 = 0x10 + 12;
const CTRL_HEADER: u16 = 0x10 + 55;
const LIST_HEADER: u16 = 0x10 + 56;

/// A control's id as the file stores it: its four characters, last first.
const fn control_id(name: &[u8; 4]) -> [u8; 4] {
    [name[3], name[2], name[1], name[0]]
}
const TABLE: [u8; 4] = control_id(b"tbl ");
/// Controls whose paragraphs are not the document's running text.
const LEFT_OUT: [[u8; 4]; 5] =
    [control_id(b"head"), control_id(b"foot"), control_id(b"fn  "), control_id(b"en  "), control_id(b"tcmt")];

/// Whether `bytes` are an OLE compound file (HWP 5, but also old Word,
/// Excel and PowerPoint files, and encrypted Office ones).
pub fn is_compound_file(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1])
}

/// The text of an HWP 5 file, or why not.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    let mut file = super::open_compound(bytes)?;
    if !file.is_stream("/FileHeader") {
        return Err(match file.is_stream("/EncryptionInfo") || file.is_stream("/EncryptedPackage") {
            true => "a password-protected Office file".to_owned(),
            false => "an OLE compound file, but no HWP, Word, Excel or PowerPoint document".to_owned(),
        });
    }
    let header = compound_stream(&mut file, "/FileHeader", 256)?;
    if !header.starts_with(SIGNATURE) || header.len() < 40 {
        return Err("its FileHeader is not an HWP 5 file header".to_owned());
    }
    let properties = u32::from_le_bytes([header[36], header[37], header[38], header[39]]);
    if properties & PASSWORD != 0 {
        return Err("a password-protected HWP document".to_owned());
    }
    let storage = if properties & DISTRIBUTION != 0 { "ViewText" } else { "BodyText" };
    let mut out = String::new();
    for n in 0.. {
        let name = format!("/{storage}/Section{n}");
        if !file.is_stream(&name) {
            break;
        }
        let mut raw = compound_stream(&mut file, &name, MAX_SECTION_BYTES)?;
        if properties & DISTRIBUTION != 0 {
            raw = distributed_section(&raw).map_err(|e| format!("{name}: {e}"))?;
        }
        let section = if properties & COMPRESSED != 0 { inflate(&raw, &name)? } else { raw };
        section_text(&section, &mut out).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(out)
}

/// A distribution document's section, decrypted: a `DISTRIBUTE_DOC_DATA`
/// record of 256 bytes, XORed with bytes from MSVC's `rand()` seeded by
/// its first four, which then hold the AES-128 key at offset 4 + (seed mod
/// 16); the rest of the stream is encrypted with that key (ECB).
fn distributed_section(raw: &[u8]) -> Result<Vec<u8>, String> {
    use aes::cipher::{BlockDecrypt as _, KeyInit as _};
    let Some(Ok(first)) = records(raw).next() else {
        return Err("no record".to_owned());
    };
    if first.tag != DISTRIBUTE_DOC_DATA || first.data.len() != 256 {
        return Err("its first record is not the distribution data".to_owned());
    }
    let mut data = [0u8; 256];
    data.copy_from_slice(first.data);
    let seed = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mut state = seed;
    let mut rand = move || {
        state = state.wrapping_mul(214_013).wrapping_add(2_531_011);
        (state >> 16) & 0x7FFF
    };
    let (mut mask, mut left) = (0u8, 0u32);
    for (i, byte) in data.iter_mut().enumerate() {
        if left == 0 {
            mask = (rand() & 0xFF) as u8;
            left = (rand() & 0xF) + 1;
        }
        if i >= 4 {
            *byte ^= mask;
        }
        left -= 1;
    }
    let at = 4 + (seed & 0xF) as usize;
    let cipher = aes::Aes128::new_from_slice(&data[at..at + 16]).map_err(|e| e.to_string())?;
    // What follows the record (a 4-byte header and its 256 bytes).
    let mut rest = raw[4 + 256..].to_vec();
    rest.truncate(rest.len() - rest.len() % 16);
    for block in rest.chunks_exact_mut(16) {
        cipher.decrypt_block(block.into());
    }
    Ok(rest)
}

/// The text of one section's records, unpacked: for property tests and
/// fuzzing, which reach the record walker without a compound file around.
#[doc(hidden)]
pub fn section_text_of(section: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    section_text(section, &mut out)?;
    Ok(out)
}

/// A compressed stream unpacked (raw deflate), at most [`MAX_SECTION_BYTES`].
fn inflate(raw: &[u8], name: &str) -> Result<Vec<u8>, String> {
    super::read_at_most(flate2::read::DeflateDecoder::new(raw), MAX_SECTION_BYTES, name)
}

/// One record of a section: its tag, nesting level and data.
struct Record<'a> {
    tag: u16,
    level: u16,
    data: &'a [u8],
}

/// The records of a section, in order; an error for one cut short.
fn records(mut bytes: &[u8]) -> impl Iterator<Item = Result<Record<'_>, String>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let word = |b: &[u8]| b.get(..4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        let Some(header) = word(bytes) else {
            bytes = &[];
            return Some(Err("a record header cut short".to_owned()));
        };
        let (tag, level) = ((header & 0x3FF) as u16, ((header >> 10) & 0x3FF) as u16);
        let (size, start): (Option<usize>, usize) = match header >> 20 {
            // A size of 0xFFF means the real size follows.
            0xFFF => (word(&bytes[4..]).map(|s| s as usize), 8),
            size => (Some(size as usize), 4),
        };
        match size.and_then(|size| bytes.get(start..start.checked_add(size)?)) {
            Some(data) => {
                bytes = &bytes[start + data.len()..];
                Some(Ok(Record { tag, level, data }))
            }
            None => {
                bytes = &[];
                Some(Err(format!("record {tag} cut short")))
            }
        }
    })
}

/// A table being read: the level of its control and the row of the cell
/// read last.
struct Table {
    level: u16,
    row: Option<u16>,
}

/// Appends a section's text to `out`.
fn section_text(section: &[u8], out: &mut String) -> Result<(), String> {
    let mut tables: Vec<Table> = Vec::new();
    // The level of a control whose records are being left out.
    let mut leaving_out: Option<u16> = None;
    for record in records(section) {
        let record = record?;
        if let Some(level) = leaving_out {
            if record.level > level {
                continue;
            }
            leaving_out = None;
        }
        while tables.last().is_some_and(|t| record.level <= t.level) {
            tables.pop();
            end_line(out);
        }
        match record.tag {
            CTRL_HEADER => {
                let id = record.data.get(..4).unwrap_or_default();
                if LEFT_OUT.iter().any(|c| c == id) {
                    leaving_out = Some(record.level);
                } else if id == TABLE {
                    end_line(out);
                    tables.push(Table { level: record.level, row: None });
                }
            }
            // A cell: its row and column follow the list's own 8 bytes.
            LIST_HEADER => {
                if let Some(table) = tables.last_mut().filter(|t| record.level == t.level + 1) {
                    let row = match record.data.get(10..12) {
                        Some(r) => u16::from_le_bytes([r[0], r[1]]),
                        None => table.row.unwrap_or(0),
                    };
                    match table.row {
                        None => {}
                        Some(previous) if previous == row => {
                            out.truncate(out.trim_end_matches(' ').len());
                            out.push('\t');
                        }
                        Some(_) => end_line(out),
                    }
                    table.row = Some(row);
                }
            }
            PARA_TEXT => paragraph_text(record.data, !tables.is_empty(), out),
            _ => {}
        }
    }
    if !tables.is_empty() {
        end_line(out);
    }
    Ok(())
}

/// Ends the line `out` is on, if it holds anything (a table's rows start on
/// lines of their own).
fn end_line(out: &mut String) {
    out.truncate(out.trim_end_matches([' ', '\t']).len());
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// A paragraph's text: UTF-16 code units with control characters (below
/// 32) among them. Some controls are one unit; the others take eight (the
/// code, six units of data, the code again), whatever the data holds. A
/// paragraph that only anchors controls (a table, a section's settings)
/// adds no line of its own.
fn paragraph_text(data: &[u8], in_cell: bool, out: &mut String) {
    let units: Vec<u16> = data.chunks_exact(2).map(|u| u16::from_le_bytes([u[0], u[1]])).collect();
    let mut i = 0;
    let mut text: Vec<u16> = Vec::with_capacity(units.len());
    let mut anchors = false;
    while i < units.len() {
        let unit = units[i];
        i += 1;
        match unit {
            32.. => text.push(unit),
            // A line break; the paragraph's end.
            10 => text.push(u16::from(b'\n')),
            13 => text.push(u16::from(if in_cell { b' ' } else { b'\n' })),
            // A tab (with its data: width, leader).
            9 => {
                text.push(u16::from(b'\t'));
                i += 7;
            }
            // Hyphen; no-break space; fixed-width space.
            24 => text.push(u16::from(b'-')),
            30 | 31 => text.push(u16::from(b' ')),
            // Other single-unit controls: nothing to read.
            0 | 25..=29 => {}
            // Inline and extended controls (a table, a footnote, a field…):
            // their content, if any, is in records of their own.
            _ => {
                anchors = true;
                i += 7;
            }
        }
    }
    if anchors && text.iter().all(|&u| u == u16::from(b'\n') || u == u16::from(b' ')) {
        return;
    }
    out.push_str(&String::from_utf16_lossy(&text));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARA_HEADER: u16 = 0x10 + 50;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn record(tag: u16, level: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if data.len() < 0xFFF {
            let header = u32::from(tag) | (u32::from(level) << 10) | ((data.len() as u32) << 20);
            out.extend(header.to_le_bytes());
        } else {
            let header = u32::from(tag) | (u32::from(level) << 10) | (0xFFF << 20);
            out.extend(header.to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn controls_take_their_width_and_tabs_breaks_and_spaces_are_kept() {
        let mut data = utf16("이름");
        // A tab whose data holds spaces, which are not text.
        data.extend(utf16("\t\u{0}\u{0}\u{0}   \t"));
        data.extend(utf16("김종태"));
        // A field begins (extended control 3) and a line break.
        data.extend(utf16("\u{3}dl\u{0}\u{0}\u{0}\u{0}\u{3}\n끝\u{1e}!\r"));
        let mut out = String::new();
        paragraph_text(&data, false, &mut out);
        assert_eq!(out, "이름\t김종태\n끝 !\n");
        // A paragraph holding only a table adds no line; an empty one does.
        paragraph_text(&utf16("\u{b} lbt\u{0}\u{0}\u{0}\u{0}\u{b}\r"), false, &mut out);
        paragraph_text(&utf16("\r"), false, &mut out);
        assert_eq!(out, "이름\t김종태\n끝 !\n\n");
    }

    #[test]
    fn footnotes_and_headers_are_left_out_and_long_records_are_read() {
        let long = "가".repeat(3_000);
        let mut section = record(PARA_HEADER, 0, &[0; 24]);
        section.extend(record(PARA_TEXT, 1, &utf16("본문\r")));
        section.extend(record(CTRL_HEADER, 1, &control_id(b"fn  ")));
        section.extend(record(LIST_HEADER, 2, &[0; 16]));
        section.extend(record(PARA_HEADER, 2, &[0; 24]));
        section.extend(record(PARA_TEXT, 3, &utf16("각주\r")));
        section.extend(record(CTRL_HEADER, 1, &control_id(b"head")));
        section.extend(record(PARA_TEXT, 3, &utf16("머리말\r")));
        section.extend(record(PARA_HEADER, 0, &[0; 24]));
        section.extend(record(PARA_TEXT, 1, &utf16(&format!("{long}\r"))));
        let mut out = String::new();
        section_text(&section, &mut out).unwrap();
        assert_eq!(out, format!("본문\n{long}\n"));
    }

    /// `bytes` with its `FileHeader` properties replaced.
    fn with_properties(bytes: &[u8], properties: u32) -> Vec<u8> {
        super::super::fixtures::with_stream(bytes.to_vec(), "/FileHeader", |header| {
            header[36..40].copy_from_slice(&properties.to_le_bytes())
        })
    }

    #[test]
    fn a_real_hwp_file_reads_like_the_other_formats() {
        let bytes = super::super::fixtures::bytes("korean-memo-python-hwpx.hwp");
        assert!(is_compound_file(&bytes));
        // Two compressed sections, a table, a footnote left out.
        assert_eq!(super::super::tidy(&text_of(&bytes).unwrap()), super::super::fixtures::MEMO);
        assert_eq!(
            text_of(&with_properties(&bytes, COMPRESSED | PASSWORD)).unwrap_err(),
            "a password-protected HWP document"
        );
        // Marked a distribution document, it has no ViewText to read.
        assert_eq!(text_of(&with_properties(&bytes, COMPRESSED | DISTRIBUTION)), Ok(String::new()));
    }

    #[test]
    fn a_distribution_document_is_decrypted() {
        // Made from the same memo (see the fixtures' README); pyhwp reads it too.
        let bytes = super::super::fixtures::bytes("korean-memo-distribution.hwp");
        assert_eq!(super::super::tidy(&text_of(&bytes).unwrap()), super::super::fixtures::MEMO);
        // A section whose first record is not the key's is refused.
        let damaged = super::super::fixtures::with_stream(bytes, "/ViewText/Section1", |section| section[0] = 0);
        assert_eq!(
            text_of(&damaged),
            Err("/ViewText/Section1: its first record is not the distribution data".to_owned())
        );
    }

    #[test]
    fn other_compound_files_are_named_not_misread() {
        let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        std::io::Write::write_all(&mut file.create_stream("/VisioDocument").unwrap(), b"a drawing").unwrap();
        file.flush().unwrap();
        let bytes = file.into_inner().into_inner();
        assert!(is_compound_file(&bytes));
        assert!(
            text_of(&bytes).unwrap_err().contains("but no HWP, Word, Excel or PowerPoint document"),
            "{:?}",
            text_of(&bytes)
        );
        assert!(text_of(&bytes[..600]).unwrap_err().starts_with("not an OLE compound file"));
    }

    #[test]
    fn a_record_cut_short_is_an_error_not_a_panic() {
        let mut section = record(PARA_TEXT, 1, &utf16("abc\r"));
        section.truncate(section.len() - 1);
        assert_eq!(section_text(&section, &mut String::new()), Err("record 67 cut short".to_owned()));
        assert!(section_text(&[1, 2], &mut String::new()).is_err());
        let huge_size = (u32::from(PARA_TEXT) | (0xFFF << 20)).to_le_bytes();
        let mut section = huge_size.to_vec();
        section.extend(u32::MAX.to_le_bytes());
        assert!(section_text(&section, &mut String::new()).is_err());
    }
}
