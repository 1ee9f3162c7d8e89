//! The text of Word 97–2003 documents (`.doc`, the binary format Word
//! wrote until 2007 and many archives still hold). Run in the reader child
//! ([`super`]).
//!
//! A `.doc` is an OLE compound file. Its `WordDocument` stream starts with
//! the File Information Block (FIB), which gives the length of the main
//! text and where, in the `0Table` or `1Table` stream, two structures lie:
//! the piece table (`Clx`), which says where each run of characters is
//! stored (8-bit Windows-1252 or UTF-16, anywhere in the stream, in any
//! order once a file was fast-saved), and the paragraph properties
//! (`PlcBtePapx`, pages of `PapxFkp`), which say which paragraphs are
//! table cells and which mark a row's end.
//!
//! What is read: the main text, each paragraph a line; tables a row a line
//! with cells separated by tabs (the paragraphs of one cell by spaces);
//! what a field shows (a date, a page number, a hyperlink's words), not its
//! instructions. Headers, footers, footnotes, comments and text boxes are
//! separate stories after the main text and are not read. A
//! password-protected document is named unreadable; so is a Word 6/95 one.

use std::ops::Range;

use super::{u16_at, u32_at};

/// The signature at the start of a FIB.
const WORD_IDENT: u16 = 0xA5EC;
/// The first FIB version of Word 97; older files have another layout.
const WORD_97: u16 = 0x00C1;

// FIB flags (`FibBase`, offset 0x0A).
const ENCRYPTED: u16 = 1 << 8;
const TABLE_1: u16 = 1 << 9;
const OBFUSCATED: u16 = 1 << 15;

// Positions in the FIB's variable parts: `ccpText` in `FibRgLw97`, and the
// (offset, length) pairs of `PlcBtePapx` and `Clx` in `FibRgFcLcb97`.
const CCP_TEXT: usize = 3;
const PLCF_BTE_PAPX: usize = 13;
const CLX: usize = 33;

// Paragraph properties (sprms) that place a paragraph in a table.
const SPRM_IN_TABLE: u16 = 0x2416;
const SPRM_ROW_END: u16 = 0x2417;
const SPRM_INNER_CELL: u16 = 0x244B;
const SPRM_INNER_ROW_END: u16 = 0x244C;
const SPRM_TABLE_DEFINITION: u16 = 0xD608;
const SPRM_CHANGE_TABS: u16 = 0xC615;

// Characters with a meaning in the text.
const CELL_MARK: char = '\u{7}';
const FIELD_BEGIN: char = '\u{13}';
const FIELD_SEPARATOR: char = '\u{14}';
const FIELD_END: char = '\u{15}';

/// Whether an OLE compound file holds a Word document.
pub fn is_word_document(bytes: &[u8]) -> bool {
    super::open_compound(bytes).is_ok_and(|file| file.is_stream("/WordDocument"))
}

/// The text of a `.doc`, or why not.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    let mut file = super::open_compound(bytes)?;
    let word = stream(&mut file, "/WordDocument")?;
    let fib = Fib::of(&word)?;
    let table = stream(&mut file, if fib.table_1 { "/1Table" } else { "/0Table" })?;
    text_of_streams(&word, &table)
}

/// The text of a document's `WordDocument` stream and its table stream:
/// for property tests and fuzzing, which reach the parser without a
/// compound file around.
#[doc(hidden)]
pub fn text_of_streams(word: &[u8], table: &[u8]) -> Result<String, String> {
    let fib = Fib::of(word)?;
    let pieces = pieces(table, fib.clx.clone(), word.len())?;
    let paragraphs = Paragraphs::of(word, table, fib.bte_papx.clone());
    let mut text = Text::default();
    let mut left = (fib.text_length as usize).min(word.len());
    // The first half of a UTF-16 surrogate pair (an emoji, say).
    let mut high = None;
    for piece in pieces {
        if left == 0 {
            break;
        }
        let length = piece.characters.len().min(left);
        left -= length;
        for n in 0..length {
            let at = piece.start + n * piece.width;
            let c = match (piece.width, high.take()) {
                (1, _) => decode_8bit(word[at]),
                (_, high_half) => match (high_half, u16::from_le_bytes([word[at], word[at + 1]])) {
                    (_, unit @ 0xD800..=0xDBFF) => {
                        high = Some(unit);
                        continue;
                    }
                    (Some(high_half), low @ 0xDC00..=0xDFFF) => {
                        char::decode_utf16([high_half, low]).next().and_then(Result::ok).unwrap_or('\u{FFFD}')
                    }
                    (_, unit) => char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'),
                },
            };
            text.push(c, || paragraphs.at(at as u32));
        }
    }
    Ok(text.out)
}

/// A stream's bytes (no stream of a document can be longer than it).
fn stream(file: &mut super::Compound<'_>, name: &str) -> Result<Vec<u8>, String> {
    super::compound_stream(file, name, super::MAX_DOCUMENT_BYTES)
}

/// What robeing needs of the File Information Block.
struct Fib {
    table_1: bool,
    /// `ccpText`: the main text's length in characters.
    text_length: u32,
    /// Where the piece table and the paragraph properties' index lie in
    /// the table stream.
    clx: Range<usize>,
    bte_papx: Range<usize>,
}

impl Fib {
    fn of(word: &[u8]) -> Result<Self, String> {
        let short = || "its File Information Block is cut short".to_owned();
        if u16_at(word, 0) != Some(WORD_IDENT) {
            return Err("its WordDocument stream is not a Word document".to_owned());
        }
        let version = u16_at(word, 2).ok_or_else(short)?;
        if version < WORD_97 {
            return Err(format!("a Word 6/95 document (version {version:#x}), older than Word 97"));
        }
        let flags = u16_at(word, 0x0A).ok_or_else(short)?;
        if flags & (ENCRYPTED | OBFUSCATED) != 0 {
            return Err("a password-protected Word document".to_owned());
        }
        // The FIB's three arrays, each after its count.
        let shorts = 0x20;
        let longs = shorts + 2 + 2 * usize::from(u16_at(word, shorts).ok_or_else(short)?);
        let pairs = longs + 2 + 4 * usize::from(u16_at(word, longs).ok_or_else(short)?);
        let pair_count = usize::from(u16_at(word, pairs).ok_or_else(short)?);
        let long = |n: usize| u32_at(word, longs + 2 + 4 * n).ok_or_else(short);
        let pair = |n: usize| -> Result<Range<usize>, String> {
            if n >= pair_count {
                return Err(short());
            }
            let at = pairs + 2 + 8 * n;
            let (offset, length) = (u32_at(word, at).ok_or_else(short)?, u32_at(word, at + 4).ok_or_else(short)?);
            Ok(offset as usize..offset as usize + length as usize)
        };
        Ok(Self {
            table_1: flags & TABLE_1 != 0,
            text_length: long(CCP_TEXT)?,
            clx: pair(CLX)?,
            bte_papx: pair(PLCF_BTE_PAPX)?,
        })
    }
}

/// A run of the text as stored: its characters (CPs) and where the first
/// is in the `WordDocument` stream, one or two bytes each.
struct Piece {
    characters: Range<usize>,
    start: usize,
    width: usize,
}

/// The piece table, in text order, each piece checked to lie in a stream
/// of `word_length` bytes.
fn pieces(table: &[u8], clx: Range<usize>, word_length: usize) -> Result<Vec<Piece>, String> {
    let mut clx = table.get(clx).ok_or("its piece table lies outside the table stream")?;
    // Property runs (`Prc`, type 1) come first; then the piece table
    // (`Pcdt`, type 2).
    let plc = loop {
        match clx.first() {
            Some(1) => {
                let size = u16_at(clx, 1).ok_or("a property run cut short")? as usize;
                clx = clx.get(3 + size..).ok_or("a property run cut short")?;
            }
            Some(2) => {
                let size = u32_at(clx, 1).ok_or("the piece table cut short")? as usize;
                break clx.get(5..5usize.saturating_add(size)).ok_or("the piece table cut short")?;
            }
            _ => return Err("no piece table".to_owned()),
        }
    };
    // n + 1 character positions, then n descriptors of 8 bytes.
    if plc.len() < 16 || (plc.len() - 4) % 12 != 0 {
        return Err("a piece table of an impossible size".to_owned());
    }
    let count = (plc.len() - 4) / 12;
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let (from, to) = (u32_at(plc, 4 * n).unwrap_or(0) as usize, u32_at(plc, 4 * (n + 1)).unwrap_or(0) as usize);
        let stored = u32_at(plc, 4 * (count + 1) + 8 * n + 2).unwrap_or(0);
        let (start, width) = match stored & (1 << 30) {
            0 => (stored as usize, 2),
            _ => ((stored & 0x3FFF_FFFF) as usize / 2, 1),
        };
        let fits = to
            .checked_sub(from)
            .and_then(|length| start.checked_add(length * width))
            .is_some_and(|end| end <= word_length);
        if to < from || !fits {
            return Err(format!("piece {n} lies outside the document"));
        }
        out.push(Piece { characters: from..to, start, width });
    }
    Ok(out)
}

/// Windows-1252, as Word stores the text of pieces it compressed.
/// (Outside 0x80–0x9F it is Latin-1.)
fn decode_8bit(byte: u8) -> char {
    if !(0x80..0xA0).contains(&byte) {
        return char::from(byte);
    }
    let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(std::slice::from_ref(&byte));
    text.chars().next().unwrap_or('\u{FFFD}')
}

/// Where a paragraph mark stands in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Place {
    /// Inside a table cell: its paragraph marks end lines of the cell.
    in_table: bool,
    /// The mark that ends a table row.
    row_end: bool,
    /// A cell or row end of a table nested in a cell.
    inner_end: bool,
}

/// The paragraph properties of the text, as runs of the `WordDocument`
/// stream (from the `PapxFkp` pages the `PlcBtePapx` names), for what
/// robeing asks of them: where tables are.
struct Paragraphs {
    runs: Vec<(Range<u32>, Place)>,
}

impl Paragraphs {
    /// Damaged properties cost only the table layout: the text is read
    /// without them.
    fn of(word: &[u8], table: &[u8], bte_papx: Range<usize>) -> Self {
        let mut runs = Vec::new();
        let plc = table.get(bte_papx).unwrap_or_default();
        let pages = plc.len().saturating_sub(4) / 8;
        // Each page once: a damaged index naming one page a million times
        // would otherwise cost a million pages' work.
        let mut seen = std::collections::HashSet::new();
        for n in 0..pages {
            let Some(page) = u32_at(plc, 4 * (pages + 1) + 4 * n)
                .map(|pn| (pn & 0x3F_FFFF) as usize * 512)
                .filter(|&at| seen.insert(at))
                .and_then(|at| word.get(at..at + 512))
            else {
                continue;
            };
            let count = usize::from(page[511]);
            for run in 0..count {
                let (Some(from), Some(to)) = (u32_at(page, 4 * run), u32_at(page, 4 * (run + 1))) else { break };
                let offset = 2 * usize::from(page.get(4 * (count + 1) + 13 * run).copied().unwrap_or(0));
                let place = if offset == 0 { Place::default() } else { place_of(page, offset) };
                if place != Place::default() && from < to {
                    runs.push((from..to, place));
                }
            }
        }
        runs.sort_by_key(|(range, _)| range.start);
        Self { runs }
    }

    /// Where the paragraph whose mark is at `at` (a stream offset) stands.
    fn at(&self, at: u32) -> Place {
        let i = self.runs.partition_point(|(range, _)| range.start <= at);
        match i.checked_sub(1).map(|i| &self.runs[i]) {
            Some((range, place)) if range.contains(&at) => *place,
            _ => Place::default(),
        }
    }
}

/// The table properties of the `PapxInFkp` at `offset` of an FKP page.
fn place_of(page: &[u8], offset: usize) -> Place {
    let mut place = Place::default();
    // Its size in words: 2 × cb − 1 bytes, or, for cb = 0, 2 × the next byte.
    let properties = match page.get(offset).copied() {
        Some(0) => page.get(offset + 1).and_then(|&cb| page.get(offset + 2..offset + 2 + 2 * usize::from(cb))),
        Some(cb) => page.get(offset + 1..offset + 2 * usize::from(cb)),
        None => None,
    };
    // The style (2 bytes), then the properties.
    let mut sprms = properties.and_then(|p| p.get(2..)).unwrap_or_default();
    while let Some(op) = u16_at(sprms, 0) {
        let operand = &sprms[2..];
        let size = match op >> 13 {
            0 | 1 => 1,
            2 | 4 | 5 => 2,
            3 => 4,
            7 => 3,
            _ if op == SPRM_TABLE_DEFINITION => u16_at(operand, 0).map_or(usize::MAX, |cb| 1 + usize::from(cb)),
            // Its size can only be had from its contents when 255.
            _ if op == SPRM_CHANGE_TABS && operand.first() == Some(&255) => break,
            _ => operand.first().map_or(usize::MAX, |&cb| 1 + usize::from(cb)),
        };
        let on = operand.first().is_some_and(|&v| v != 0);
        match op {
            SPRM_IN_TABLE => place.in_table = on,
            SPRM_ROW_END => place.row_end = on,
            SPRM_INNER_CELL | SPRM_INNER_ROW_END => place.inner_end |= on,
            _ => {}
        }
        let Some(rest) = operand.get(size..) else { break };
        sprms = rest;
    }
    place
}

/// The text being written, and the fields open around it.
#[derive(Default)]
struct Text {
    out: String,
    /// For each field open, whether its result (what it shows) has begun.
    fields: Vec<bool>,
    /// How many of them are still in their instructions (not shown): a
    /// count, so that a character costs the same however deep fields nest.
    hidden: usize,
}

impl Text {
    /// Appends one character of the main text; `place` tells, for a
    /// paragraph or cell mark, where its paragraph stands.
    fn push(&mut self, c: char, place: impl FnOnce() -> Place) {
        match c {
            FIELD_BEGIN => {
                self.fields.push(false);
                self.hidden += 1;
            }
            FIELD_SEPARATOR => {
                if let Some(shown @ false) = self.fields.last_mut() {
                    *shown = true;
                    self.hidden -= 1;
                }
            }
            FIELD_END => {
                let was_hidden = self.fields.pop() == Some(false);
                self.hidden -= usize::from(was_hidden);
            }
            _ if self.hidden == 0 => self.write(c, place),
            _ => {}
        }
    }

    fn write(&mut self, c: char, place: impl FnOnce() -> Place) {
        match c {
            '\r' | CELL_MARK => {
                let place = place();
                if place.row_end {
                    // The last cell's tab ends the row instead.
                    if self.out.ends_with('\t') {
                        self.out.pop();
                    }
                    self.out.push('\n');
                } else if c == CELL_MARK || place.inner_end {
                    self.out.push('\t');
                } else if place.in_table {
                    self.out.push(' ');
                } else {
                    self.out.push('\n');
                }
            }
            // A line break, a page or section break.
            '\u{B}' | '\u{C}' => self.out.push('\n'),
            '\t' => self.out.push('\t'),
            // A non-breaking hyphen; a non-breaking space.
            '\u{1E}' => self.out.push('-'),
            '\u{A0}' => self.out.push(' '),
            // Pictures, objects, note and comment marks, soft hyphens.
            c if c < ' ' || c == '\u{1F}' => {}
            c => self.out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::fixtures;

    fn read(name: &str) -> String {
        crate::documents::tidy(&text_of(&fixtures::bytes(name)).unwrap())
    }

    #[test]
    fn a_word_97_document_from_libreoffice_reads_like_its_docx() {
        assert_eq!(read("korean-memo-libreoffice.doc"), fixtures::MEMO);
    }

    #[test]
    fn a_link_and_a_page_count_show_their_words_and_notes_headers_and_footers_are_left_out() {
        assert_eq!(
            read("report-libreoffice.doc"),
            "주간 보고\n자세한 내용은 보고서 링크를 보세요.\nTotal pages: 1.\n\
             담당\t업무\t비고\n이서연\t예산안 제출\n끝. 🙂"
        );
    }

    #[test]
    fn password_protected_old_and_damaged_documents_are_named_not_read() {
        let memo = || fixtures::bytes("korean-memo-libreoffice.doc");
        let locked = fixtures::with_stream(memo(), "/WordDocument", |word| word[0x0B] |= (ENCRYPTED >> 8) as u8);
        assert_eq!(text_of(&locked).unwrap_err(), "a password-protected Word document");
        let word_95 = fixtures::with_stream(memo(), "/WordDocument", |word| word[2..4].copy_from_slice(&[0x65, 0]));
        assert_eq!(text_of(&word_95).unwrap_err(), "a Word 6/95 document (version 0x65), older than Word 97");
        // The piece table's first piece said to start past the stream's end.
        let (clx, table_name) = {
            let bytes = memo();
            let mut file = cfb::CompoundFile::open(std::io::Cursor::new(&bytes[..])).unwrap();
            let fib = Fib::of(&stream(&mut file, "/WordDocument").unwrap()).unwrap();
            (fib.clx, if fib.table_1 { "/1Table" } else { "/0Table" })
        };
        let far = fixtures::with_stream(memo(), table_name, |table| {
            let plc = &mut table[clx.start + 5..clx.end];
            let count = (plc.len() - 4) / 12;
            plc[4 * (count + 1) + 2..4 * (count + 1) + 6].copy_from_slice(&0x3FFF_0000u32.to_le_bytes());
        });
        assert_eq!(text_of(&far).unwrap_err(), "piece 0 lies outside the document");
    }

    #[test]
    fn fields_show_their_result_and_tables_their_rows() {
        let mut text = Text::default();
        let plain = || Place::default();
        for c in "Page \u{13} PAGE \u{14}3\u{15} of \u{13} NUMPAGES \u{15}9\r".chars() {
            text.push(c, plain);
        }
        let cell = || Place { in_table: true, ..Place::default() };
        let row = || Place { in_table: true, row_end: true, ..Place::default() };
        for c in "a\rb\u{7}\u{7}c\u{7}".chars() {
            text.push(c, cell);
        }
        text.push('\u{7}', row);
        assert_eq!(text.out, "Page 3 of 9\na b\t\tc\n", "an empty cell stays a cell");
        // A field in another's result shows its own result; an end
        // without a beginning changes nothing.
        let mut text = Text::default();
        for c in "\u{15}a\u{13} REF \u{14}b\u{13} DATE \u{14}c\u{15}d\u{15}e".chars() {
            text.push(c, plain);
        }
        assert_eq!(text.out, "abcde");
    }
}
