//! The text of Excel 97–2003 workbooks (`.xls`, BIFF8 records in an OLE
//! compound file), read with `calamine`. Run in the reader child
//! ([`super`]). Read like `.xlsx` ([`super::office`]): each sheet under
//! `# <its name>`, a row a line, columns in place, numbers as stored, and a
//! number its cell's format shows as a date or time as one (`2026-12-08`,
//! `09:30`, `2026-12-08 09:30`). A password-protected workbook is named
//! unreadable.

use calamine::{Data, Reader as _};

/// Whether an OLE compound file holds a workbook (`Workbook`, or `Book`
/// before Excel 97).
pub fn is_workbook(bytes: &[u8]) -> bool {
    super::open_compound(bytes).is_ok_and(|file| file.is_stream("/Workbook") || file.is_stream("/Book"))
}

/// The text of an `.xls` workbook, or why not.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    let mut workbook = calamine::Xls::new(std::io::Cursor::new(bytes)).map_err(|e| format!("workbook: {e}"))?;
    let mut out = String::new();
    for name in workbook.sheet_names() {
        let range = match workbook.worksheet_range(&name) {
            Ok(range) => range,
            // A chart or macro sheet: no cells.
            Err(calamine::XlsError::WorksheetNotFound(_)) => continue,
            Err(e) => return Err(format!("sheet {name}: {e}")),
        };
        out.push_str(&format!("# {name}\n"));
        // The range starts at its first cell in use: columns before it are
        // empty, and kept so that the others stay in place.
        let first_column = range.start().map_or(0, |(_, column)| column as usize);
        for row in range.rows() {
            let cells: Vec<String> = row.iter().map(cell).collect();
            let line = cells.join("\t");
            let line = line.trim_end_matches('\t');
            if !line.is_empty() {
                out.push_str(&"\t".repeat(first_column));
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// One cell as its sheet shows it, on one line.
fn cell(data: &Data) -> String {
    match data {
        Data::Empty => String::new(),
        Data::String(s) => s.replace(['\n', '\r', '\t'], " "),
        Data::Bool(true) => "TRUE".to_owned(),
        Data::Bool(false) => "FALSE".to_owned(),
        Data::DateTime(at) if at.is_datetime() => {
            let (year, month, day, hour, minute, _, _) = at.to_ymd_hms_milli();
            let serial = at.as_f64();
            if serial < 1.0 {
                format!("{hour:02}:{minute:02}")
            } else if serial.fract() == 0.0 {
                format!("{year:04}-{month:02}-{day:02}")
            } else {
                format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{super::fixtures, *};

    #[test]
    fn workbooks_saved_as_excel_97_read_like_their_xlsx() {
        let read = |name: &str| {
            let bytes = fixtures::bytes(name);
            assert!(is_workbook(&bytes), "{name}");
            super::super::tidy(&text_of(&bytes).unwrap())
        };
        let xlsx = |name: &str| super::super::tidy(&super::super::office::text_of(&fixtures::bytes(name)).unwrap());
        assert_eq!(read("budget-libreoffice.xls"), xlsx("budget-libreoffice.xlsx"));
        // Dates and date-times by the cells' formats, booleans as words.
        assert_eq!(read("schedule-libreoffice.xls"), xlsx("schedule-libreoffice.xlsx"));
        assert!(!is_workbook(&fixtures::bytes("korean-memo-python-hwpx.hwp")));
    }

    #[test]
    fn a_password_protected_workbook_is_named() {
        // FILEPASS (0x002F) right after the workbook's BOF record.
        let locked = fixtures::with_stream(fixtures::bytes("budget-libreoffice.xls"), "/Workbook", |stream| {
            let bof_end = 4 + usize::from(u16::from_le_bytes([stream[2], stream[3]]));
            let filepass = [0x2F, 0x00, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00];
            stream.splice(bof_end..bof_end, filepass);
        });
        let error = text_of(&locked).unwrap_err();
        assert!(error.contains("password"), "{error}");
    }
}
