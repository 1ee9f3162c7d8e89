//! A PDF's text, laid out from where each glyph is placed ([`PageText`]);
//! run in the reader child ([`super`]), never in the server. Also builds the
//! small PDFs `robeing doctor` and the tests read ([`simple`],
//! [`from_objects`]).

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
pub(super) fn text_of_pdf(pdf: &[u8]) -> Result<String, pdf_extract::OutputError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let fixture = super::super::fixtures::bytes;
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
}
