//! The text of PowerPoint 97–2003 presentations (`.ppt`, `.pps`). Run in
//! the reader child ([`super`]).
//!
//! A `.ppt` is an OLE compound file whose `PowerPoint Document` stream is
//! a sequence of records (type, instance, length; containers hold
//! records). Which records are live is told by the edits: `Current User`
//! points at the last `UserEditAtom`, each edit at its persist directory
//! (object id → stream offset) and at the edit before it, and the newest
//! edit names the document. The document's slide list gives the slides in
//! order; each slide's own records hold the text of its shapes
//! (`TextCharsAtom` in UTF-16, `TextBytesAtom` in Latin-1), or, as
//! PowerPoint writes its placeholders, a reference to text kept in the
//! slide list itself (`OutlineTextRefAtom`).
//!
//! Read like `.pptx` ([`super::office`]): each slide under `# Slide N`,
//! each paragraph a line. Masters, notes and handouts are not read. A
//! password-protected presentation is named unreadable.

use std::collections::HashMap;

use super::{u16_at, u32_at};

// Record types.
const DOCUMENT: u16 = 0x03E8;
const SLIDE_PERSIST: u16 = 0x03F3;
const OUTLINE_TEXT_REF: u16 = 0x0F9E;
const TEXT_HEADER: u16 = 0x0F9F;
const TEXT_CHARS: u16 = 0x0FA0;
const TEXT_BYTES: u16 = 0x0FA8;
const SLIDE_LIST_WITH_TEXT: u16 = 0x0FF0;
const USER_EDIT: u16 = 0x0FF5;
const PERSIST_DIRECTORY: u16 = 0x1772;

/// The `Current User` token of a presentation encrypted with a password.
const ENCRYPTED_TOKEN: u32 = 0xF3D1_C4DF;
/// The slide list's instance that lists the slides (1: masters, 2: notes).
const SLIDES: u16 = 0;
/// Containers nest at most this deep in a real file (slide, drawing,
/// group, shape, text box); deeper is taken as damage.
const MAX_DEPTH: usize = 32;
/// Edits followed back at most (each fast save adds one).
const MAX_EDITS: usize = 4096;
/// The records walked and characters written, per byte of the stream, at
/// most: a real file walks each slide once, while a damaged or hostile one
/// can list one large slide a million times or refer to one long text
/// from every record.
const WORK_PER_BYTE: usize = 4;

/// Whether an OLE compound file holds a PowerPoint presentation.
pub fn is_presentation(bytes: &[u8]) -> bool {
    super::open_compound(bytes).is_ok_and(|file| file.is_stream("/PowerPoint Document"))
}

/// The text of a `.ppt`, or why not.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    let mut file = super::open_compound(bytes)?;
    let current_user = super::compound_stream(&mut file, "/Current User", super::MAX_DOCUMENT_BYTES)?;
    let document = super::compound_stream(&mut file, "/PowerPoint Document", super::MAX_DOCUMENT_BYTES)?;
    text_of_streams(&current_user, &document)
}

/// The text of a presentation's `Current User` and `PowerPoint Document`
/// streams: for property tests and fuzzing, which reach the parser
/// without a compound file around.
#[doc(hidden)]
pub fn text_of_streams(current_user: &[u8], stream: &[u8]) -> Result<String, String> {
    // The CurrentUserAtom: a record header, its size, a token, the offset
    // of the last edit.
    if u32_at(current_user, 12) == Some(ENCRYPTED_TOKEN) {
        return Err("a password-protected PowerPoint presentation".to_owned());
    }
    let last_edit = u32_at(current_user, 16).ok_or("its Current User stream is cut short")?;
    let (document_id, offsets) = persist_directory(stream, last_edit)?;
    let at = |id: u32| -> Result<Record<'_>, String> {
        let offset = offsets.get(&id).ok_or(format!("object {id} is not in the persist directory"))?;
        record_at(stream, *offset as usize).ok_or(format!("object {id} lies outside the stream"))
    };
    let document = at(document_id)?;
    if document.kind != DOCUMENT {
        return Err("the edit names no document".to_owned());
    }
    let mut out = String::new();
    let mut work = Work(WORK_PER_BYTE * stream.len() + 4096);
    let slide_list = children(document.data).find(|r| r.kind == SLIDE_LIST_WITH_TEXT && r.instance == SLIDES);
    for (n, (slide_id, outline)) in slides(slide_list.map_or(&[][..], |r| r.data)).into_iter().enumerate() {
        let slide = at(slide_id)?;
        out.push_str(&format!("# Slide {}\n", n + 1));
        let mut texts = Vec::new();
        texts_in(slide.data, &outline, 0, &mut texts, &mut work)?;
        // An empty placeholder adds nothing; "*" is a slide number's.
        for text in texts.iter().filter(|t| !matches!(t.trim(), "" | "*")) {
            out.push_str(text);
            out.push('\n');
        }
        out.push('\n');
    }
    Ok(out)
}

/// One record: its type, instance, whether it holds records, and its data.
struct Record<'a> {
    kind: u16,
    instance: u16,
    container: bool,
    data: &'a [u8],
}

/// The record at `at`, if it lies whole in `bytes`.
fn record_at(bytes: &[u8], at: usize) -> Option<Record<'_>> {
    let header = u16_at(bytes, at)?;
    let kind = u16_at(bytes, at + 2)?;
    let length = u32_at(bytes, at + 4)? as usize;
    let data = bytes.get(at + 8..(at + 8).checked_add(length)?)?;
    Some(Record { kind, instance: header >> 4, container: header & 0xF == 0xF, data })
}

/// The records in a container's data, in order, up to one cut short.
fn children(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let record = record_at(data, 0)?;
        data = &data[8 + record.data.len()..];
        Some(record)
    })
}

/// The live objects, from the last edit back to the first: the document's
/// id, and each object's offset in the stream (a newer edit's wins).
fn persist_directory(stream: &[u8], last_edit: u32) -> Result<(u32, HashMap<u32, u32>), String> {
    let mut offsets = HashMap::new();
    let mut document = None;
    let mut edit_at = last_edit;
    for _ in 0..MAX_EDITS {
        let edit = record_at(stream, edit_at as usize)
            .filter(|r| r.kind == USER_EDIT)
            .ok_or("its last edit is not where Current User says")?;
        let field = |at: usize| u32_at(edit.data, at).ok_or("an edit cut short");
        let (previous, directory_at) = (field(8)?, field(12)?);
        document.get_or_insert(field(16)?);
        let directory = record_at(stream, directory_at as usize)
            .filter(|r| r.kind == PERSIST_DIRECTORY)
            .ok_or("an edit's persist directory is not where it says")?;
        let mut entries = directory.data;
        while let Some(entry) = u32_at(entries, 0) {
            let (first, count) = (entry & 0xF_FFFF, (entry >> 20) as usize);
            for n in 0..count {
                let offset = u32_at(entries, 4 + 4 * n).ok_or("a persist directory cut short")?;
                offsets.entry(first + n as u32).or_insert(offset);
            }
            entries = &entries[4 + 4 * count..];
        }
        // Each edit points further back; 0 ends the chain.
        if previous == 0 || previous >= edit_at {
            return Ok((document.unwrap_or(0), offsets));
        }
        edit_at = previous;
    }
    Err(format!("more than {MAX_EDITS} edits"))
}

/// The slides of the slide list, in order: each one's object id and the
/// texts PowerPoint kept for its placeholders beside it, one per
/// `TextHeaderAtom` (an empty placeholder has a header and no text).
fn slides(list: &[u8]) -> Vec<(u32, Vec<String>)> {
    let mut out: Vec<(u32, Vec<String>)> = Vec::new();
    for record in children(list) {
        match (record.kind, out.last_mut()) {
            (SLIDE_PERSIST, _) => out.push((u32_at(record.data, 0).unwrap_or(0), Vec::new())),
            (TEXT_HEADER, Some((_, texts))) => texts.push(String::new()),
            (TEXT_CHARS | TEXT_BYTES, Some((_, texts))) => match texts.last_mut() {
                Some(text) if text.is_empty() => *text = text_of_atom(&record),
                _ => texts.push(text_of_atom(&record)),
            },
            _ => {}
        }
    }
    out
}

/// What is left of the work a presentation may cost ([`WORK_PER_BYTE`]).
struct Work(usize);

impl Work {
    fn spend(&mut self, units: usize) -> Result<(), String> {
        self.0 = self.0.checked_sub(units).ok_or("more work than its size explains (damaged or hostile)")?;
        Ok(())
    }
}

/// The texts of a slide's shapes, in the order of its records; a
/// reference to a placeholder's text takes it from `outline`.
fn texts_in(
    data: &[u8],
    outline: &[String],
    depth: usize,
    out: &mut Vec<String>,
    work: &mut Work,
) -> Result<(), String> {
    if depth == MAX_DEPTH {
        return Ok(());
    }
    for record in children(data) {
        work.spend(1)?;
        match record.kind {
            TEXT_CHARS | TEXT_BYTES => {
                work.spend(record.data.len())?;
                out.push(text_of_atom(&record));
            }
            OUTLINE_TEXT_REF => {
                let index = u32_at(record.data, 0).unwrap_or(u32::MAX) as usize;
                if let Some(text) = outline.get(index) {
                    work.spend(text.len())?;
                    out.push(text.clone());
                }
            }
            _ if record.container => texts_in(record.data, outline, depth + 1, out, work)?,
            _ => {}
        }
    }
    Ok(())
}

/// A text atom's characters, a paragraph a line.
fn text_of_atom(record: &Record<'_>) -> String {
    let text: String = match record.kind {
        TEXT_CHARS => char::decode_utf16(record.data.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])))
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .collect(),
        _ => record.data.iter().map(|&b| char::from(b)).collect(),
    };
    // Paragraphs end with CR, line breaks are VT.
    text.chars()
        .map(|c| match c {
            '\r' | '\u{B}' => '\n',
            c if c < ' ' && c != '\t' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::fixtures;

    #[test]
    fn a_powerpoint_97_file_from_libreoffice_reads_like_its_pptx() {
        let text = crate::documents::tidy(&text_of(&fixtures::bytes("plan-libreoffice.ppt")).unwrap());
        assert_eq!(text, fixtures::PLAN);
    }

    fn record(kind: u16, instance: u16, data: &[u8]) -> Vec<u8> {
        let version =
            if kind == SLIDE || kind == DOCUMENT || kind == SLIDE_LIST_WITH_TEXT || kind == DRAWING { 0xF } else { 0 };
        let mut out = ((instance << 4) | version).to_le_bytes().to_vec();
        out.extend(kind.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    fn chars(text: &str) -> Vec<u8> {
        record(TEXT_CHARS, 0, &text.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>())
    }

    const SLIDE: u16 = 0x03EE;
    const DRAWING: u16 = 0x040C;

    /// A presentation as PowerPoint writes one, then fast-saved once: the
    /// placeholders' text kept in the slide list, a text box's in the
    /// slide; the second edit replaces the slide.
    fn presentation(current_user_token: u32) -> (Vec<u8>, Vec<u8>) {
        let persist = |id: u32| [id.to_le_bytes(), [0; 4], [0; 4], [0; 4], [0; 4]].concat();
        let slide_list = [
            record(SLIDE_PERSIST, 0, &persist(2)),
            // An empty placeholder: a header, no text.
            record(TEXT_HEADER, 0, &4u32.to_le_bytes()),
            record(TEXT_HEADER, 0, &0u32.to_le_bytes()),
            chars("분기 계획"),
            record(TEXT_HEADER, 0, &1u32.to_le_bytes()),
            record(TEXT_BYTES, 0, b"Budget\rServers\x0bin January"),
        ]
        .concat();
        let document = record(DOCUMENT, 0, &record(SLIDE_LIST_WITH_TEXT, SLIDES, &slide_list));
        let slide = |extra: &str| {
            let shapes = [
                record(OUTLINE_TEXT_REF, 0, &0u32.to_le_bytes()),
                record(OUTLINE_TEXT_REF, 0, &1u32.to_le_bytes()),
                record(OUTLINE_TEXT_REF, 0, &2u32.to_le_bytes()),
                chars(extra),
                chars("*"),
            ]
            .concat();
            record(SLIDE, 0, &record(DRAWING, 0, &shapes))
        };
        let mut stream = Vec::new();
        let (document_at, old_slide_at) = (0u32, document.len() as u32);
        stream.extend(&document);
        stream.extend(slide("a draft"));
        let directory = |first: u32, offsets: &[u32]| {
            let mut data = (first | ((offsets.len() as u32) << 20)).to_le_bytes().to_vec();
            offsets.iter().for_each(|o| data.extend(o.to_le_bytes()));
            record(PERSIST_DIRECTORY, 0, &data)
        };
        let edit = |previous: u32, directory_at: u32| {
            let data = [0u32, 0, previous, directory_at, 1, 3, 0].map(u32::to_le_bytes).concat();
            record(USER_EDIT, 0, &data)
        };
        let first_directory_at = stream.len() as u32;
        stream.extend(directory(1, &[document_at, old_slide_at]));
        let first_edit_at = stream.len() as u32;
        stream.extend(edit(0, first_directory_at));
        let new_slide_at = stream.len() as u32;
        stream.extend(slide("text box: 담당 이서연"));
        let second_directory_at = stream.len() as u32;
        stream.extend(directory(2, &[new_slide_at]));
        let last_edit_at = stream.len() as u32;
        stream.extend(edit(first_edit_at, second_directory_at));
        // A CurrentUserAtom: its size, token and the last edit's offset.
        let current_user = record(0x0FF6, 0, &[20, current_user_token, last_edit_at].map(u32::to_le_bytes).concat());
        (current_user, stream)
    }

    #[test]
    fn placeholders_kept_in_the_slide_list_and_the_newest_edit_are_read() {
        let (current_user, stream) = presentation(0xE391_C05F);
        let text = crate::documents::tidy(&text_of_streams(&current_user, &stream).unwrap());
        assert_eq!(text, "# Slide 1\n분기 계획\nBudget\nServers\nin January\ntext box: 담당 이서연");
        let (current_user, stream) = presentation(ENCRYPTED_TOKEN);
        assert_eq!(
            text_of_streams(&current_user, &stream).unwrap_err(),
            "a password-protected PowerPoint presentation"
        );
    }

    #[test]
    fn one_large_slide_listed_a_hundred_times_is_refused_not_read_a_hundred_times() {
        let persist = [2u32.to_le_bytes(), [0; 4], [0; 4], [0; 4], [0; 4]].concat();
        let list: Vec<u8> = (0..100).flat_map(|_| record(SLIDE_PERSIST, 0, &persist)).collect();
        let document = record(DOCUMENT, 0, &record(SLIDE_LIST_WITH_TEXT, SLIDES, &list));
        let shapes: Vec<u8> = (0..2_000).flat_map(|_| chars("0123456789")).collect();
        let slide = record(SLIDE, 0, &record(DRAWING, 0, &shapes));
        let mut stream = [document.clone(), slide].concat();
        let directory_at = stream.len() as u32;
        let entry = 1 | (2 << 20);
        stream.extend(record(PERSIST_DIRECTORY, 0, &[entry, 0, document.len() as u32].map(u32::to_le_bytes).concat()));
        let edit_at = stream.len() as u32;
        stream.extend(record(USER_EDIT, 0, &[0u32, 0, 0, directory_at, 1, 3, 0].map(u32::to_le_bytes).concat()));
        let current_user = record(0x0FF6, 0, &[20, 0xE391_C05F, edit_at].map(u32::to_le_bytes).concat());
        assert_eq!(
            text_of_streams(&current_user, &stream).unwrap_err(),
            "more work than its size explains (damaged or hostile)"
        );
    }

    #[test]
    fn an_edit_that_points_nowhere_is_named() {
        let (mut current_user, stream) = presentation(0xE391_C05F);
        current_user[16..20].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            text_of_streams(&current_user, &stream).unwrap_err(),
            "its last edit is not where Current User says"
        );
    }
}
