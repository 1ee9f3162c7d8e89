//! The text of Rich Text Format files (`.rtf`: what WordPad saves, and
//! what Word, LibreOffice and many mail and note programs export). Run in
//! the reader child ([`super`]).
//!
//! RTF is text: groups in braces, control words (`\par`, `\f2`, `\u54924`),
//! and the document's words between them. Characters outside ASCII come
//! either as `\uN` (UTF-16, followed by a fallback for old readers, which is
//! skipped) or as `\'hh` bytes in the code page of the document
//! (`\ansicpg949`) or of the current font (`\fcharset129` in the font
//! table): Korean text from WordPad is CP949 bytes, two per syllable, so a
//! raw RTF shown to a model loses every Korean word.
//!
//! What is read: the body, each paragraph a line; tables a row a line with
//! cells separated by tabs; what a field shows (not its instructions);
//! list numbers and bullets. Left out: the font, colour and style tables,
//! document information, pictures and objects' data, headers, footers,
//! footnotes, comments, and every destination marked ignorable (`\*`).

use encoding_rs::Encoding;

/// Groups nested deeper than any real document: taken as damage.
const MAX_DEPTH: usize = 10_000;

/// Destinations whose text is not the document's running text.
const LEFT_OUT: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"objdata",
    b"header",
    b"headerl",
    b"headerr",
    b"headerf",
    b"footer",
    b"footerl",
    b"footerr",
    b"footerf",
    b"footnote",
    b"annotation",
    b"atnid",
    b"atnauthor",
    b"fldinst",
    b"datafield",
    b"themedata",
    b"colorschememapping",
    b"latentstyles",
    b"datastore",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"generator",
    b"pgdsctbl",
    b"nonshppict",
    b"shpinst",
    b"filetbl",
    b"revtbl",
    b"xmlnstbl",
];

/// Whether `bytes` are an RTF document.
pub fn is_rtf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{\\rtf")
}

/// The state a group carries: set inside it, restored after it.
#[derive(Clone, Copy)]
struct Group {
    /// Inside a destination that is left out.
    left_out: bool,
    /// Inside the font table (its fonts' numbers and character sets are read).
    font_table: bool,
    /// The code page of `\'hh` bytes and 8-bit characters here.
    encoding: &'static Encoding,
    /// How many characters of fallback follow each `\uN` (`\ucN`).
    fallback: usize,
}

/// The reader's state between tokens.
struct Reader {
    out: String,
    groups: Vec<Group>,
    group: Group,
    /// The document's code page (`\ansicpg`), for fonts that name none.
    code_page: &'static Encoding,
    /// The fonts' code pages, by font number (`\fcharset`, `\cpg`).
    fonts: std::collections::HashMap<i32, &'static Encoding>,
    /// The font being defined in the font table.
    defining: Option<i32>,
    /// Bytes in the current code page, decoded together (a CP949 syllable
    /// is two `\'hh`).
    bytes: Vec<u8>,
    /// Fallback characters still to skip after a `\uN`.
    skipping: usize,
    /// The first half of a UTF-16 surrogate pair.
    high_surrogate: Option<u16>,
    /// The paragraph being read is in a table (`\intbl`, until `\pard`).
    in_table: bool,
}

/// The text of an RTF document, or why not.
pub fn text_of(rtf: &[u8]) -> Result<String, String> {
    if !is_rtf(rtf) {
        return Err("not an RTF document".to_owned());
    }
    let windows_1252 = encoding_rs::WINDOWS_1252;
    let mut reader = Reader {
        out: String::new(),
        groups: Vec::new(),
        group: Group { left_out: false, font_table: false, encoding: windows_1252, fallback: 1 },
        code_page: windows_1252,
        fonts: std::collections::HashMap::new(),
        defining: None,
        bytes: Vec::new(),
        skipping: 0,
        high_surrogate: None,
        in_table: false,
    };
    let mut at = 0;
    while let Some(&b) = rtf.get(at) {
        at += 1;
        match b {
            b'{' => {
                reader.flush();
                reader.skipping = 0;
                if reader.groups.len() == MAX_DEPTH {
                    return Err(format!("groups nested more than {MAX_DEPTH} deep"));
                }
                reader.groups.push(reader.group);
            }
            b'}' => {
                reader.flush();
                reader.skipping = 0;
                // A font's definition ends with its group.
                if reader.group.font_table {
                    reader.defining = None;
                }
                // Unbalanced closing braces end the document.
                let Some(outer) = reader.groups.pop() else { break };
                reader.group = outer;
            }
            b'\\' => at = reader.control(rtf, at),
            b'\r' | b'\n' => {}
            b => {
                if reader.skip_fallback() || reader.group.left_out {
                    continue;
                }
                match b {
                    b'\t' => reader.text("\t"),
                    b if b < 0x80 => {
                        reader.flush();
                        reader.out.push(char::from(b));
                    }
                    b => reader.bytes.push(b),
                }
            }
        }
    }
    reader.flush();
    Ok(reader.out)
}

impl Reader {
    /// Reads the control word or symbol after a backslash at `at`; returns
    /// where the next token starts.
    fn control(&mut self, rtf: &[u8], mut at: usize) -> usize {
        let Some(&first) = rtf.get(at) else { return at };
        if !first.is_ascii_alphabetic() {
            at += 1;
            if first == b'\'' {
                // A byte in the current code page, as two hex digits.
                let byte = rtf
                    .get(at..at + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = byte else { return at };
                if !self.skip_fallback() && !self.group.left_out {
                    self.bytes.push(byte);
                }
                return at + 2;
            }
            if self.skip_fallback() {
                return at;
            }
            match first {
                b'*' => self.group.left_out = true,
                b'\\' | b'{' | b'}' => self.text(&char::from(first).to_string()),
                b'~' => self.text(" "),
                b'_' => self.text("-"),
                b'\r' | b'\n' => self.paragraph(),
                _ => {}
            }
            return at;
        }
        let start = at;
        while rtf.get(at).is_some_and(u8::is_ascii_alphabetic) {
            at += 1;
        }
        let word = &rtf[start..at];
        let digits = at;
        if rtf.get(at) == Some(&b'-') {
            at += 1;
        }
        while rtf.get(at).is_some_and(u8::is_ascii_digit) && at - digits < 11 {
            at += 1;
        }
        let parameter = std::str::from_utf8(&rtf[digits..at]).ok().and_then(|p| p.parse::<i64>().ok());
        // One space after a control word belongs to it.
        if rtf.get(at) == Some(&b' ') {
            at += 1;
        }
        if word == b"bin" {
            // Binary data of the given length follows: stepped over whole.
            return at.saturating_add(parameter.unwrap_or(0).max(0) as usize);
        }
        if word == b"u" {
            if let Some(unit) = parameter {
                self.unicode(unit as i16 as u16);
                self.skipping = self.group.fallback;
            }
            return at;
        }
        if self.skip_fallback() {
            return at;
        }
        self.word(word, parameter);
        at
    }

    /// Acts on one control word.
    fn word(&mut self, word: &[u8], parameter: Option<i64>) {
        if LEFT_OUT.contains(&word) {
            self.flush();
            self.group.left_out = true;
            self.group.font_table |= word == b"fonttbl";
            return;
        }
        let number = parameter.and_then(|p| i32::try_from(p).ok());
        match word {
            b"ansicpg" => {
                if let Some(encoding) = number.and_then(code_page) {
                    self.code_page = encoding;
                    self.group.encoding = encoding;
                }
            }
            b"f" if self.group.font_table => self.defining = number,
            b"fcharset" | b"cpg" if self.group.font_table => {
                let encoding = number.and_then(if word == b"cpg" { code_page } else { character_set });
                if let (Some(font), Some(encoding)) = (self.defining, encoding) {
                    self.fonts.insert(font, encoding);
                }
            }
            b"f" => {
                let font = number.and_then(|n| self.fonts.get(&n).copied());
                self.flush();
                self.group.encoding = font.unwrap_or(self.code_page);
            }
            b"uc" => self.group.fallback = number.unwrap_or(1).clamp(0, 16) as usize,
            b"pard" => self.in_table = false,
            b"intbl" => self.in_table = true,
            b"par" | b"sect" | b"page" | b"line" => self.paragraph(),
            b"tab" | b"cell" | b"nestcell" => self.text("\t"),
            b"row" | b"nestrow" => {
                self.flush();
                if !self.group.left_out {
                    if self.out.ends_with('\t') {
                        self.out.pop();
                    }
                    self.out.push('\n');
                }
            }
            b"emdash" => self.text("—"),
            b"endash" => self.text("–"),
            b"bullet" => self.text("•"),
            b"lquote" => self.text("‘"),
            b"rquote" => self.text("’"),
            b"ldblquote" => self.text("“"),
            b"rdblquote" => self.text("”"),
            b"emspace" | b"enspace" | b"qmspace" => self.text(" "),
            _ => {}
        }
    }

    /// A paragraph ends: a line, or, inside a table cell, a space.
    fn paragraph(&mut self) {
        self.text(if self.in_table { " " } else { "\n" });
    }

    /// Whether this character is a `\uN`'s fallback, skipped (and counted).
    fn skip_fallback(&mut self) -> bool {
        if self.skipping == 0 {
            return false;
        }
        self.skipping -= 1;
        true
    }

    fn text(&mut self, text: &str) {
        self.flush();
        if !self.group.left_out {
            self.out.push_str(text);
        }
    }

    /// A UTF-16 unit from `\uN`, joined with its pair when it is half of one.
    fn unicode(&mut self, unit: u16) {
        self.flush();
        if self.group.left_out {
            return;
        }
        let units: Vec<u16> = match (self.high_surrogate.take(), unit) {
            (_, 0xD800..=0xDBFF) => {
                self.high_surrogate = Some(unit);
                return;
            }
            (Some(high), 0xDC00..=0xDFFF) => vec![high, unit],
            (_, unit) => vec![unit],
        };
        self.out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
    }

    /// Decodes the bytes gathered in the current code page.
    fn flush(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let (text, _) = self.group.encoding.decode_without_bom_handling(&self.bytes);
        if !self.group.left_out {
            self.out.push_str(&text);
        }
        self.bytes.clear();
    }
}

/// A Windows code page (`\ansicpg`, `\cpg`).
fn code_page(page: i32) -> Option<&'static Encoding> {
    let label = match page {
        949 => "euc-kr",
        932 => "shift_jis",
        936 => "gbk",
        950 => "big5",
        65001 => "utf-8",
        874 => "windows-874",
        1250..=1258 => return Encoding::for_label(format!("windows-{page}").as_bytes()),
        _ => return None,
    };
    Encoding::for_label(label.as_bytes())
}

/// A font's character set (`\fcharset`), as the code page it stands for.
fn character_set(set: i32) -> Option<&'static Encoding> {
    code_page(match set {
        0 => 1252,
        129 => 949,
        128 => 932,
        134 => 936,
        136 => 950,
        161 => 1253,
        162 => 1254,
        163 => 1258,
        177 => 1255,
        178 => 1256,
        186 => 1257,
        204 => 1251,
        222 => 874,
        238 => 1250,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::fixtures;

    fn read(rtf: &str) -> String {
        crate::documents::tidy(&text_of(rtf.as_bytes()).unwrap())
    }

    #[test]
    fn rtf_from_libreoffice_reads_like_its_docx() {
        let text = crate::documents::tidy(&text_of(&fixtures::bytes("korean-memo-libreoffice.rtf")).unwrap());
        assert_eq!(text, fixtures::MEMO);
    }

    #[test]
    fn wordpad_korean_in_the_code_page_and_in_a_fonts_character_set_is_decoded() {
        // WordPad on a Korean Windows: CP949 bytes under \ansicpg949.
        let wordpad = r"{\rtf1\ansi\ansicpg949\deff0{\fonttbl{\f0\fnil\fcharset129 \'b1\'bc\'b8\'b2;}}
{\*\generator Riched20 10.0.19041}\viewkind4\uc1 \pard\f0\fs20\'c8\'b8\'c0\'c7\'b7\'cf: 2026\'b3\'e2\par
Budget\tab\'bf\'b9\'bb\'ea\par}";
        assert_eq!(read(wordpad), "회의록: 2026년\nBudget\t예산");
        // An English document whose Korean font carries the character set.
        let font = r"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}{\f1\fcharset129 Gulim;}}\f0 caf\'e9 {\f1 \'c7\'d1\'b1\'db} \'e9\f1 \'c7\'d1\f0 \'e9\par}";
        assert_eq!(read(font), "café 한글 é한é", "a font without a character set is in the document's");
    }

    #[test]
    fn unicode_escapes_skip_their_fallback_and_join_surrogate_pairs() {
        let rtf = r"{\rtf1\uc1 \u54620?\u44544?\uc2 \u-10179\'3f\'3f\u-8704??!\par}";
        assert_eq!(read(rtf), "한글😀!");
    }

    #[test]
    fn tables_fields_and_left_out_destinations() {
        let rtf = r#"{\rtf1{\info{\title Secret}}{\header page head}\pard\intbl a\par b\cell c\cell\row
\pard {\field{\*\fldinst HYPERLINK "https://x"}{\fldrslt link}} \{x\}\~y\_z{\*\unknown gone}\line
{\pict\bin4 }}}}}done{\footnote note}\emdash\bullet\par}"#;
        assert_eq!(read(rtf), "a b\tc\nlink {x} y-z\ndone—•");
    }

    #[test]
    fn damage_is_named_or_read_past_never_a_panic() {
        assert_eq!(text_of(b"hello").unwrap_err(), "not an RTF document");
        let deep = format!("{{\\rtf1 {}", "{".repeat(MAX_DEPTH + 1));
        assert_eq!(text_of(deep.as_bytes()).unwrap_err(), format!("groups nested more than {MAX_DEPTH} deep"));
        for cut in [r"{\rtf1 a\'c", r"{\rtf1 a\u", r"{\rtf1 a\bin99999999999", r"{\rtf1 a\", r"{\rtf1 a\u-99999999999x"]
        {
            assert!(text_of(cut.as_bytes()).unwrap().starts_with('a'), "{cut}");
        }
    }
}
