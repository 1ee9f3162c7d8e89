//! The text of Office Open XML files (Word `.docx`, PowerPoint `.pptx`,
//! Excel `.xlsx`), OpenDocument ones (`.odt`, `.odp`, `.ods`) and Hangul's
//! HWPX (`.hwpx`): ZIP archives of XML. Run in the reader child
//! ([`super`]), never in the server: an entry can unpack to far more than
//! its archive ([`MAX_ENTRY_BYTES`], and the child's memory limit). A
//! password-protected Office file is not a ZIP archive at all (it is an OLE
//! container), so it is named unreadable.
//!
//! What is read: a document's paragraphs and headings, its tables a row a
//! line with cells separated by tabs; each slide of a presentation in order
//! under `# Slide N`; each sheet of a workbook under `# <its name>`, a row
//! a line, columns in place, numbers as stored but those the cell's format
//! shows as dates or times (Excel keeps them as day counts), which read as
//! `2026-12-08 09:30`; a Hangul (HWPX) document's sections like a Word
//! document. Headers, footers, footnotes, speaker notes and comments are
//! not.

use std::io::Cursor;

use quick_xml::events::Event;

/// The most one archive entry may unpack to.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

/// The text of an Office or OpenDocument file, or why not.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a ZIP archive: {e}"))?;
    let has = |archive: &Archive<'_>, name: &str| archive.index_for_name(name).is_some();
    if has(&archive, "word/document.xml") {
        paragraphs(&entry(&mut archive, "word/document.xml")?, &WORD)
    } else if has(&archive, "ppt/presentation.xml") {
        slides(&mut archive)
    } else if has(&archive, "xl/workbook.xml") {
        sheets(&mut archive)
    } else if has(&archive, "Contents/content.hpf") {
        hangul_sections(&mut archive)
    } else if has(&archive, "content.xml") && has(&archive, "mimetype") {
        let spreadsheet = entry(&mut archive, "mimetype")?.trim() == "application/vnd.oasis.opendocument.spreadsheet";
        let vocabulary = if spreadsheet { &OPEN_SPREADSHEET } else { &OPEN_DOCUMENT };
        paragraphs(&entry(&mut archive, "content.xml")?, vocabulary)
    } else {
        Err("a ZIP archive, but not a Word, PowerPoint, Excel, OpenDocument or Hangul file".to_owned())
    }
}

/// One entry's XML, at most [`MAX_ENTRY_BYTES`].
fn entry(archive: &mut Archive<'_>, name: &str) -> Result<String, String> {
    let file = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let xml = super::read_at_most(file, MAX_ENTRY_BYTES, name)?;
    String::from_utf8(xml).map_err(|_| format!("{name} is not UTF-8"))
}

/// Which elements (local names) carry a format's text.
struct Vocabulary {
    /// Ends a line.
    paragraph: &'static [&'static str],
    /// Text is read only inside one of these (none: anywhere in a paragraph).
    text: &'static [&'static str],
    /// Tabs and line breaks count only inside one of these (none: anywhere).
    run: &'static [&'static str],
    tab: &'static [&'static str],
    line_break: &'static [&'static str],
    /// Repeated spaces (OpenDocument's `<text:s text:c="3"/>`).
    spaces: &'static [&'static str],
    /// Text inside these is not the document's (Excel's phonetic guides).
    skip: &'static [&'static str],
    /// A table's rows and cells: a row is a line, its cells are separated
    /// by tabs (the paragraphs of one cell by spaces).
    row: &'static [&'static str],
    cell: &'static [&'static str],
    /// What a paragraph may hold besides text (a table, a section's
    /// settings): a paragraph that holds one and no text of its own adds no
    /// line (HWPX puts each table in a paragraph).
    anchor: &'static [&'static str],
    /// Each starts a slide (`# Slide N`): OpenDocument's `draw:page`.
    slide: &'static [&'static str],
    /// Each starts a sheet (`# <its name attribute>`): an OpenDocument
    /// spreadsheet's `table:table`.
    sheet: &'static [&'static str],
}

/// No element means anything: the base the others name theirs over.
const NOTHING: Vocabulary = Vocabulary {
    paragraph: &[],
    text: &[],
    run: &[],
    tab: &[],
    line_break: &[],
    spaces: &[],
    skip: &[],
    row: &[],
    cell: &[],
    anchor: &[],
    slide: &[],
    sheet: &[],
};

/// `w:t` holds text (not `w:instrText`, field codes, nor `w:delText`,
/// deleted text); `w:tab` is a tab only in a run (`w:tabs` in a paragraph's
/// properties lists tab stops).
const WORD: Vocabulary = Vocabulary {
    paragraph: &["p"],
    text: &["t"],
    run: &["r"],
    tab: &["tab"],
    line_break: &["br", "cr"],
    row: &["tr"],
    cell: &["tc"],
    ..NOTHING
};

/// DrawingML (slides): `a:t` in `a:p`; `a:br` between runs; `a:tab`
/// appears only in tab-stop lists.
const SLIDE: Vocabulary =
    Vocabulary { paragraph: &["p"], text: &["t"], line_break: &["br"], row: &["tr"], cell: &["tc"], ..NOTHING };

/// OpenDocument: text anywhere in `text:p` and `text:h`, but not in a
/// comment (`office:annotation`) or a slide's speaker notes
/// (`presentation:notes`).
const OPEN_DOCUMENT: Vocabulary = Vocabulary {
    paragraph: &["p", "h"],
    tab: &["tab"],
    line_break: &["line-break"],
    spaces: &["s"],
    skip: &["annotation", "notes"],
    row: &["table-row"],
    cell: &["table-cell", "covered-table-cell"],
    slide: &["page"],
    ..NOTHING
};

/// Hangul's OWPML (HWPX): `hp:t` in `hp:p`, with `hp:tab`, `hp:lineBreak`
/// and special spaces inside it; footnotes, endnotes, headers, footers and
/// hidden comments sit inside the paragraph they hang from, and are left
/// out.
const HANGUL: Vocabulary = Vocabulary {
    paragraph: &["p"],
    text: &["t"],
    tab: &["tab"],
    line_break: &["lineBreak"],
    spaces: &["nbSpace", "fwSpace"],
    skip: &["footNote", "endNote", "header", "footer", "hiddenComment"],
    row: &["tr"],
    cell: &["tc"],
    anchor: &["tbl", "secPr", "ctrl"],
    ..NOTHING
};

/// An OpenDocument spreadsheet: each table is a sheet.
const OPEN_SPREADSHEET: Vocabulary = Vocabulary { sheet: &["table"], ..OPEN_DOCUMENT };

/// The text of `xml` as `vocabulary` reads it: a line per paragraph.
fn paragraphs(xml: &str, vocabulary: &Vocabulary) -> Result<String, String> {
    let mut out = String::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    // How deep inside text-bearing, run, skipped and cell elements the
    // reader is, and the slides begun.
    let (mut in_paragraph, mut in_text, mut in_run, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    let (mut in_cell, mut slides) = (0usize, 0usize);
    // Per open paragraph: where its text began, and whether it anchors
    // something.
    let mut open_paragraphs: Vec<(usize, bool)> = Vec::new();
    let is = |set: &[&str], name: &str| set.contains(&name);
    loop {
        let event = reader.read_event().map_err(|e| format!("XML: {e}"))?;
        let reading = skipped == 0 && (in_text > 0 || (vocabulary.text.is_empty() && in_paragraph > 0));
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if is(vocabulary.paragraph, name) {
                    in_paragraph += 1;
                    open_paragraphs.push((out.len(), false));
                } else if is(vocabulary.anchor, name) {
                    anchored(&mut open_paragraphs);
                }
                in_text += usize::from(is(vocabulary.text, name));
                in_run += usize::from(is(vocabulary.run, name));
                skipped += usize::from(is(vocabulary.skip, name));
                in_cell += usize::from(is(vocabulary.cell, name));
                let gap = if out.is_empty() { "" } else { "\n" };
                if is(vocabulary.slide, name) {
                    slides += 1;
                    out.push_str(&format!("{gap}# Slide {slides}\n"));
                } else if is(vocabulary.sheet, name) {
                    let sheet = attribute(&e, "name").unwrap_or_default();
                    out.push_str(&format!("{gap}# {sheet}\n"));
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                in_text = in_text.saturating_sub(usize::from(is(vocabulary.text, name)));
                in_run = in_run.saturating_sub(usize::from(is(vocabulary.run, name)));
                skipped = skipped.saturating_sub(usize::from(is(vocabulary.skip, name)));
                if is(vocabulary.paragraph, name) {
                    in_paragraph = in_paragraph.saturating_sub(1);
                    let (began, anchors) = open_paragraphs.pop().unwrap_or_default();
                    let own_line = !anchors || (out.len() > began && !out.ends_with('\n'));
                    if skipped == 0 && own_line {
                        out.push(if in_cell > 0 { ' ' } else { '\n' });
                    }
                } else if is(vocabulary.cell, name) {
                    in_cell = in_cell.saturating_sub(1);
                    out.truncate(out.trim_end_matches(' ').len());
                    out.push('\t');
                } else if is(vocabulary.row, name) {
                    out.truncate(out.trim_end_matches(['\t', ' ']).len());
                    out.push('\n');
                }
            }
            Event::Empty(e) if skipped == 0 => {
                let name = e.local_name();
                let name = name.as_ref();
                let in_a_run = vocabulary.run.is_empty() || in_run > 0;
                if is(vocabulary.anchor, name) {
                    anchored(&mut open_paragraphs);
                }
                if is(vocabulary.paragraph, name) {
                    out.push(if in_cell > 0 { ' ' } else { '\n' });
                } else if is(vocabulary.cell, name) {
                    // Empty cells, as many as it stands for (columns stay in place).
                    let repeated = attribute(&e, "number-columns-repeated").and_then(|n| n.parse().ok()).unwrap_or(1);
                    out.extend(std::iter::repeat_n('\t', usize::min(repeated, 16_384)));
                } else if in_a_run && is(vocabulary.tab, name) {
                    out.push('\t');
                } else if in_a_run && is(vocabulary.line_break, name) {
                    out.push('\n');
                } else if is(vocabulary.spaces, name) {
                    let count = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == "c")
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok()?.parse::<usize>().ok()
                        })
                        .unwrap_or(1);
                    out.extend(std::iter::repeat_n(' ', count.min(100)));
                }
            }
            Event::Text(t) if reading => out.push_str(&t.xml10_content()),
            Event::CData(t) if reading => out.push_str(&t),
            Event::GeneralRef(r) if reading => push_reference(&mut out, &r),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Marks the innermost open paragraph as anchoring something.
fn anchored(open: &mut [(usize, bool)]) {
    if let Some((_, anchors)) = open.last_mut() {
        *anchors = true;
    }
}

/// What `&name;` or `&#…;` stands for: a character, or one of XML's five
/// predefined entities (Office files declare no others).
fn push_reference(out: &mut String, reference: &quick_xml::events::BytesRef<'_>) {
    match reference.resolve_char_ref() {
        Ok(Some(c)) => out.push(c),
        _ => out.push_str(match &**reference {
            "amp" => "&",
            "lt" => "<",
            "gt" => ">",
            "quot" => "\"",
            "apos" => "'",
            _ => "",
        }),
    }
}

/// A presentation's slides in their order (`ppt/slides/slideN.xml`).
fn slides(archive: &mut Archive<'_>) -> Result<String, String> {
    let mut numbered: Vec<(u32, String)> = archive
        .file_names()
        .filter_map(|name| {
            let name = name.ok()?;
            let n = name.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?.parse().ok()?;
            Some((n, name.into_owned()))
        })
        .collect();
    numbered.sort();
    let mut out = String::new();
    for (n, name) in numbered {
        out.push_str(&format!("# Slide {n}\n"));
        out.push_str(&paragraphs(&entry(archive, &name)?, &SLIDE)?);
        out.push('\n');
    }
    Ok(out)
}

/// An HWPX document's sections (`Contents/sectionN.xml`) in the order of
/// its package's spine (`Contents/content.hpf`).
fn hangul_sections(archive: &mut Archive<'_>) -> Result<String, String> {
    let package = entry(archive, "Contents/content.hpf")?;
    let items = attribute_pairs(&package, "item", ("id", "href"))?;
    let sections: Vec<String> = tags(&package, "itemref")?
        .iter()
        .filter_map(|r| attribute(r, "idref"))
        .filter_map(|id| items.iter().find(|(i, _)| *i == id).map(|(_, href)| href.clone()))
        .filter(|href| href.starts_with("Contents/section"))
        .collect();
    if sections.is_empty() {
        return Err("an HWPX package whose spine names no section".to_owned());
    }
    let mut out = String::new();
    for section in sections {
        out.push_str(&paragraphs(&entry(archive, &section)?, &HANGUL)?);
    }
    Ok(out)
}

/// A workbook's sheets in their order, a row per line, cells by tabs.
fn sheets(archive: &mut Archive<'_>) -> Result<String, String> {
    let shared = match archive.index_for_name("xl/sharedStrings.xml") {
        Some(_) => shared_strings(&entry(archive, "xl/sharedStrings.xml")?)?,
        None => Vec::new(),
    };
    let styles = match archive.index_for_name("xl/styles.xml") {
        Some(_) => date_styles(&entry(archive, "xl/styles.xml")?)?,
        None => Vec::new(),
    };
    let targets = attribute_pairs(&entry(archive, "xl/_rels/workbook.xml.rels")?, "Relationship", ("Id", "Target"))?;
    let workbook = entry(archive, "xl/workbook.xml")?;
    // Dates count days from 1899-12-30, or from 1904-01-01 in the 1904
    // date system (old Mac workbooks).
    let date1904 = tags(&workbook, "workbookPr")?
        .first()
        .and_then(|e| attribute(e, "date1904"))
        .is_some_and(|v| v == "1" || v == "true");
    let dates = Dates { styles, date1904 };
    let mut out = String::new();
    for (name, id) in attribute_pairs(&workbook, "sheet", ("name", "id"))? {
        let Some(target) = targets.iter().find(|(i, _)| *i == id).map(|(_, t)| t) else { continue };
        // Relative to xl/, or absolute in the package.
        let path = match target.strip_prefix('/') {
            Some(absolute) => absolute.to_owned(),
            None => format!("xl/{target}"),
        };
        out.push_str(&format!("# {name}\n"));
        out.push_str(&cells(&entry(archive, &path)?, &shared, &dates)?);
        out.push('\n');
    }
    Ok(out)
}

/// `xl/sharedStrings.xml`: each `si`'s text, from its `t` runs but not
/// those of its phonetic guide (`rPh`); line breaks in it become spaces (a
/// cell is one line).
fn shared_strings(xml: &str) -> Result<Vec<String>, String> {
    let mut strings = Vec::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut current, mut in_text, mut in_guide) = (String::new(), false, 0usize);
    loop {
        match reader.read_event().map_err(|e| format!("XML: {e}"))? {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_text = true,
                "rPh" => in_guide += 1,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "rPh" => in_guide = in_guide.saturating_sub(1),
                "si" => strings.push(std::mem::take(&mut current).replace(['\n', '\r'], " ")),
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == "si" => strings.push(String::new()),
            Event::Text(t) if in_text && in_guide == 0 => current.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text && in_guide == 0 => push_reference(&mut current, &r),
            Event::Eof => return Ok(strings),
            _ => {}
        }
    }
}

/// The value of the attribute whose local name is `key`.
fn attribute(e: &quick_xml::events::BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == key)
        .and_then(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
}

/// Every `element` tag (by local name) in `xml`, in order.
fn tags<'x>(xml: &'x str, element: &str) -> Result<Vec<quick_xml::events::BytesStart<'x>>, String> {
    let mut out = Vec::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().map_err(|e| format!("XML: {e}"))? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == element => out.push(e),
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// Two attributes (by local name) of every `element` in `xml` that has
/// both, in order: a `.rels` part's relationships (`Id`, `Target`), a
/// workbook's sheets (`name`, `r:id`), number formats (`numFmtId`,
/// `formatCode`).
fn attribute_pairs(xml: &str, element: &str, (a, b): (&str, &str)) -> Result<Vec<(String, String)>, String> {
    Ok(tags(xml, element)?.iter().filter_map(|e| Some((attribute(e, a)?, attribute(e, b)?))).collect())
}

/// What a cell style shows a number as, when not as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateStyle {
    Date,
    DateTime,
    Time,
}

/// How a workbook's numbers that are dates are told and read.
struct Dates {
    /// Per cell style (`s`, an index into `cellXfs`).
    styles: Vec<Option<DateStyle>>,
    date1904: bool,
}

impl Dates {
    /// A number cell of style `style` as a date, time or both, when its
    /// style shows it as one: `2026-12-08`, `09:30`, `2026-12-08 09:30`.
    fn show(&self, style: Option<&str>, value: &str) -> Option<String> {
        let kind = (*self.styles.get(style?.parse::<usize>().ok()?)?)?;
        let serial: f64 = value.trim().parse().ok()?;
        if !(0.0..2_958_466.0).contains(&serial) {
            return None; // past 9999-12-31
        }
        let epoch = if self.date1904 {
            chrono::NaiveDate::from_ymd_opt(1904, 1, 1)?
        } else {
            chrono::NaiveDate::from_ymd_opt(1899, 12, 30)?
        };
        let seconds = (serial * 86_400.0).round() as i64;
        let at = epoch.and_hms_opt(0, 0, 0)? + chrono::Duration::seconds(seconds);
        Some(match kind {
            DateStyle::Date => at.format("%Y-%m-%d").to_string(),
            DateStyle::DateTime => at.format("%Y-%m-%d %H:%M").to_string(),
            DateStyle::Time => at.format("%H:%M").to_string(),
        })
    }
}

/// `xl/styles.xml`: which cell styles (`cellXfs`, in order) show numbers
/// as dates or times, by their number format: a built-in date one (14–22,
/// 27–36 and 50–58 in East Asian locales, 45–47) or a custom format code
/// with date or time letters outside quotes and brackets.
fn date_styles(xml: &str) -> Result<Vec<Option<DateStyle>>, String> {
    let custom: Vec<(String, String)> = attribute_pairs(xml, "numFmt", ("numFmtId", "formatCode"))?;
    let mut out = Vec::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_cell_xfs = false;
    loop {
        match reader.read_event().map_err(|e| format!("XML: {e}"))? {
            Event::Start(e) if e.local_name().as_ref() == "cellXfs" => in_cell_xfs = true,
            Event::End(e) if e.local_name().as_ref() == "cellXfs" => in_cell_xfs = false,
            Event::Start(e) | Event::Empty(e) if in_cell_xfs && e.local_name().as_ref() == "xf" => {
                let id = attribute(&e, "numFmtId").unwrap_or_default();
                let style = match id.parse::<u32>().unwrap_or(0) {
                    14..=17 | 27..=31 | 34..=36 | 50..=58 => Some(DateStyle::Date),
                    22 => Some(DateStyle::DateTime),
                    18..=21 | 32 | 33 | 45..=47 => Some(DateStyle::Time),
                    _ => custom.iter().find(|(i, _)| *i == id).and_then(|(_, code)| date_style_of(code)),
                };
                out.push(style);
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// Whether a number format code shows a date, a time or both: its letters
/// outside quoted text, `\`-escaped characters and `[…]` (colours, locales,
/// elapsed time) decide.
fn date_style_of(code: &str) -> Option<DateStyle> {
    let mut letters = String::new();
    let (mut quoted, mut bracketed, mut escaped) = (false, false, false);
    // The first section only (positive numbers).
    for c in code.split(';').next().unwrap_or("").chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => bracketed = true,
            ']' if !quoted => bracketed = false,
            _ if quoted || bracketed => {}
            c => letters.push(c.to_ascii_lowercase()),
        }
    }
    let date = letters.contains('y') || letters.contains('d');
    let time = letters.contains('h') || letters.contains('s');
    match (date, time) {
        (true, true) => Some(DateStyle::DateTime),
        (true, false) => Some(DateStyle::Date),
        (false, true) => Some(DateStyle::Time),
        // "mmm" alone is a month; "0.00" and "General" are numbers.
        (false, false) if letters.contains("mmm") => Some(DateStyle::Date),
        (false, false) => None,
    }
}

/// A worksheet's cells: a line per row, cells separated by tabs, an empty
/// cell for each column skipped (so columns stay in place); numbers styled
/// as dates or times shown as such ([`Dates`]).
fn cells(xml: &str, shared: &[String], dates: &Dates) -> Result<String, String> {
    let mut out = String::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    /// The cell being read.
    struct Cell {
        column: Option<usize>,
        /// `t`: `s` (shared string), `b`, `n`, `str`, `inlineStr`…
        kind: Option<String>,
        /// `s`: its style's index.
        style: Option<String>,
        value: String,
    }
    let mut cell: Option<Cell> = None;
    let mut in_value = false;
    let mut next_column = 0;
    loop {
        match reader.read_event().map_err(|e| format!("XML: {e}"))? {
            Event::Start(e) => match e.local_name().as_ref() {
                "row" => next_column = 0,
                "c" => {
                    let column = attribute(&e, "r").and_then(|r| column_of(&r));
                    cell = Some(Cell {
                        column,
                        kind: attribute(&e, "t"),
                        style: attribute(&e, "s"),
                        value: String::new(),
                    });
                }
                "v" | "t" => in_value = cell.is_some(),
                _ => {}
            },
            Event::Text(t) if in_value => {
                if let Some(cell) = cell.as_mut() {
                    cell.value.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if in_value => {
                if let Some(cell) = cell.as_mut() {
                    push_reference(&mut cell.value, &r);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "v" | "t" => in_value = false,
                "c" => {
                    let Some(Cell { column, kind, style, value }) = cell.take() else { continue };
                    let column = column.unwrap_or(next_column).max(next_column);
                    // Columns are bounded (Excel has 16,384): no runaway padding.
                    for _ in next_column..column.min(next_column + 16_384) {
                        out.push('\t');
                    }
                    let text = match kind.as_deref() {
                        Some("s") => {
                            value.trim().parse::<usize>().ok().and_then(|i| shared.get(i)).cloned().unwrap_or_default()
                        }
                        Some("b") => (if value.trim() == "1" { "TRUE" } else { "FALSE" }).to_owned(),
                        None | Some("n") => dates.show(style.as_deref(), &value).unwrap_or(value),
                        _ => value,
                    };
                    out.push_str(&text.replace(['\t', '\n', '\r'], " "));
                    out.push('\t');
                    next_column = column + 1;
                }
                "row" => {
                    while out.ends_with('\t') {
                        out.pop();
                    }
                    out.push('\n');
                }
                _ => {}
            },
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// The 0-based column of a cell reference ("C7" → 2).
fn column_of(reference: &str) -> Option<usize> {
    let letters: Vec<u8> = reference.bytes().take_while(u8::is_ascii_alphabetic).collect();
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let n = letters.iter().fold(0usize, |n, l| n * 26 + usize::from(l.to_ascii_uppercase() - b'A') + 1);
    Some(n - 1)
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures, *};

    #[test]
    fn column_references_become_indexes() {
        assert_eq!(column_of("A1"), Some(0));
        assert_eq!(column_of("c7"), Some(2));
        assert_eq!(column_of("AA10"), Some(26));
        assert_eq!(column_of("XFD1"), Some(16_383));
        assert_eq!(column_of("7"), None);
        assert_eq!(column_of("ABCD1"), None);
    }

    #[test]
    fn number_formats_that_show_dates_and_times_are_told_from_those_that_do_not() {
        for (code, style) in [
            ("yyyy\\-mm\\-dd", Some(DateStyle::Date)),
            ("yyyy\"년\" m\"월\" d\"일\"", Some(DateStyle::Date)),
            ("[$-412]yyyy-mm-dd hh:mm", Some(DateStyle::DateTime)),
            ("h:mm AM/PM", Some(DateStyle::Time)),
            ("mmm", Some(DateStyle::Date)),
            ("#,##0", None),
            ("0.00\"days\"", None),
            ("[Red]#,##0;[Blue]-#,##0", None),
            ("General", None),
        ] {
            assert_eq!(date_style_of(code), style, "{code}");
        }
        let dates = Dates { styles: vec![None, Some(DateStyle::Date), Some(DateStyle::DateTime)], date1904: false };
        assert_eq!(dates.show(Some("1"), "46364"), Some("2026-12-08".into()));
        assert_eq!(dates.show(Some("2"), "46364.3958333333"), Some("2026-12-08 09:30".into()));
        assert_eq!(dates.show(Some("0"), "46364"), None, "a number style");
        assert_eq!(dates.show(None, "46364"), None);
        assert_eq!(dates.show(Some("1"), "-3"), None, "no date before the epoch");
        assert_eq!(dates.show(Some("1"), "1e300"), None, "nor after 9999");
        let mac = Dates { date1904: true, ..dates };
        assert_eq!(mac.show(Some("1"), "44902"), Some("2026-12-08".into()));
    }

    #[test]
    fn word_tabs_and_breaks_count_in_runs_only_and_field_codes_are_not_text() {
        let xml = r#"<w:document xmlns:w="x"><w:body>
            <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
              <w:r><w:t>Name</w:t><w:tab/><w:t xml:space="preserve">Kim &amp; Lee &#xAE40;</w:t></w:r>
              <w:r><w:instrText>PAGE</w:instrText><w:br/><w:t>next</w:t></w:r></w:p>
            <w:p/><w:p><w:r><w:delText>gone</w:delText><w:t>end</w:t></w:r></w:p>
            </w:body></w:document>"#;
        assert_eq!(paragraphs(xml, &WORD).unwrap(), "Name\tKim & Lee 김\nnext\n\nend\n");
    }

    #[test]
    fn shared_strings_leave_out_phonetic_guides_and_keep_one_line_each() {
        let xml = r#"<sst><si><t>Kim &amp; Lee</t></si><si/><si><r><t>東京</t></r><rPh sb="0" eb="2"><t>トウキョウ</t></rPh><r><t xml:space="preserve">
 office</t></r></si></sst>"#;
        assert_eq!(shared_strings(xml).unwrap(), ["Kim & Lee", "", "東京  office"]);
    }

    #[test]
    fn opendocument_spaces_tabs_and_headings() {
        let xml = r#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text>
            <text:h>Title</text:h><text:p>a<text:s text:c="3"/>b<text:tab/>c<text:line-break/><text:span>d</text:span></text:p>
            </office:text></office:body></office:document-content>"#;
        assert_eq!(paragraphs(xml, &OPEN_DOCUMENT).unwrap(), "Title\na   b\tc\nd\n");
    }

    #[test]
    fn hangul_tabs_breaks_spaces_and_notes() {
        let xml = r#"<hs:sec xmlns:hs="s" xmlns:hp="p"><hp:p><hp:run><hp:t>이름<hp:tab width="4000" leader="0" type="1"/>김종태</hp:t>
            <hp:ctrl><hp:header id="1"><hp:subList><hp:p><hp:run><hp:t>머리말</hp:t></hp:run></hp:p></hp:subList></hp:header></hp:ctrl></hp:run></hp:p>
            <hp:p><hp:run><hp:t>a<hp:nbSpace/>b<hp:lineBreak/>c &amp; d</hp:t><hp:ctrl><hp:endNote><hp:subList><hp:p><hp:run><hp:t>미주</hp:t></hp:run></hp:p></hp:subList></hp:endNote></hp:ctrl></hp:run></hp:p></hs:sec>"#;
        assert_eq!(paragraphs(xml, &HANGUL).unwrap(), "이름\t김종태\na b\nc & d\n");
    }

    #[test]
    fn a_zip_that_is_no_office_file_and_bytes_that_are_no_zip_are_refused() {
        assert!(text_of(b"PK\x03\x04 not really").unwrap_err().starts_with("not a ZIP archive"));
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("notes.txt", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut zip, b"hello").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert_eq!(
            text_of(&bytes).unwrap_err(),
            "a ZIP archive, but not a Word, PowerPoint, Excel, OpenDocument or Hangul file"
        );
    }

    #[test]
    fn an_entry_that_unpacks_past_the_limit_is_refused() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", deflated).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..=MAX_ENTRY_BYTES >> 20 {
            std::io::Write::write_all(&mut zip, &zeros).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
        assert_eq!(
            text_of(&bytes).unwrap_err(),
            format!("word/document.xml unpacks to more than {MAX_ENTRY_BYTES} bytes")
        );
    }

    #[test]
    fn real_documents_from_libreoffice_and_python_read_as_written() {
        let read = |name: &str| super::super::tidy(&text_of(&fixtures::bytes(name)).unwrap());
        assert_eq!(read("korean-memo-libreoffice.docx"), fixtures::MEMO);
        assert_eq!(read("korean-memo-libreoffice.odt"), fixtures::MEMO);
        // Two sections; the footnote on the third line is left out.
        assert_eq!(read("korean-memo-python-hwpx.hwpx"), fixtures::MEMO);
        assert_eq!(read("plan-python-pptx.pptx"), fixtures::PLAN);
        assert_eq!(read("plan-libreoffice.odp"), fixtures::PLAN);
        assert_eq!(
            read("budget-libreoffice.xlsx"),
            "# 예산\n항목\t금액\t담당자\n서버 이전\t1200000\t이서연\nDesign review & QA\t350000\t박민수\n\
             \t\t\t\t합계\t1550000\n\n# Schedule\nTask\tDue\nSubmit budget\t2026-12-08\nMigrate servers\t2027-01-15"
        );
        // Dates and times as the cells' formats show them, booleans as words.
        assert_eq!(
            read("schedule-libreoffice.xlsx"),
            "# 일정\n할 일\t마감\t시작 시각\t예산\t완료\n\
             예산안 제출\t2026-12-08\t2026-12-08 09:30\t1200000\tTRUE\n\
             서버 이전\t2027-01-15\t2027-01-15 14:00\t350000.5\tFALSE"
        );
        // The same workbook as an OpenDocument spreadsheet keeps its empty
        // fourth row.
        assert_eq!(
            read("budget-libreoffice.ods"),
            "# 예산\n항목\t금액\t담당자\n서버 이전\t1200000\t이서연\nDesign review & QA\t350000\t박민수\n\n\
             \t\t\t\t합계\t1550000\n\n# Schedule\nTask\tDue\nSubmit budget\t2026-12-08\nMigrate servers\t2027-01-15"
        );
    }
}
