//! A report's answer or a record list as a file: CSV (UTF-8 with a byte-order mark, so
//! Excel reads Chinese right) or XLSX. Headers are the column labels in the chosen
//! language, else the names. Text that a spreadsheet would run as a formula is written
//! as text.

use rust_xlsxwriter::{Format, Workbook};
use serde_json::Value;

use crate::Output;

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The CSV writer failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The XLSX writer failed.
    #[error("writing XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

/// Most characters an XLSX cell holds.
const MAX_CELL_CHARS: usize = 32_767;

fn header(out: &Output, lang: &str) -> Vec<String> {
    out.columns
        .iter()
        .map(|c| {
            c.label
                .get(lang)
                .or_else(|| c.label.get("en"))
                .cloned()
                .unwrap_or_else(|| c.name.clone())
        })
        .collect()
}

pub use trellis_import::cell::defuse;

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => defuse(s),
        other => other.to_string(),
    }
}

/// The answer as CSV.
pub fn csv(out: &Output, lang: &str) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    w.write_record(header(out, lang).iter().map(|h| defuse(h)))?;
    for row in &out.rows {
        w.write_record(row.iter().map(text))?;
    }
    w.into_inner()
        .map_err(|e| ExportError::Csv(e.into_error().into()))
}

/// The answer as an XLSX workbook with one sheet; numbers stay numbers.
pub fn xlsx(out: &Output, lang: &str, sheet: &str) -> Result<Vec<u8>, ExportError> {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    start_sheet(ws, sheet, &header(out, lang))?;
    for (r, row) in out.rows.iter().enumerate() {
        write_row(ws, u32::try_from(r + 1).unwrap_or(u32::MAX), row)?;
    }
    Ok(book.save_to_buffer()?)
}

/// Name a sheet (at most 31 characters, without []:*?/\) and write its bold header.
fn start_sheet(
    ws: &mut rust_xlsxwriter::Worksheet,
    sheet: &str,
    headers: &[String],
) -> Result<(), ExportError> {
    let name: String = sheet
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect();
    if !name.is_empty() {
        ws.set_name(name)?;
    }
    let bold = Format::new().set_bold();
    for (c, h) in headers.iter().enumerate() {
        ws.write_string_with_format(0, col(c), h, &bold)?;
    }
    Ok(())
}

/// One row of values: numbers stay numbers, text stays text.
fn write_row(
    ws: &mut rust_xlsxwriter::Worksheet,
    r: u32,
    row: &[Value],
) -> Result<(), ExportError> {
    for (c, v) in row.iter().enumerate() {
        match v {
            Value::Null => {}
            Value::Number(n) => {
                ws.write_number(r, col(c), n.as_f64().unwrap_or_default())?;
            }
            Value::Bool(b) => {
                ws.write_boolean(r, col(c), *b)?;
            }
            // write_string never makes a formula, whatever the text starts with. A cell
            // holds at most 32,767 characters.
            Value::String(s) => {
                let cell: String = s.chars().take(MAX_CELL_CHARS).collect();
                ws.write_string(r, col(c), cell)?;
            }
            other => {
                ws.write_string(r, col(c), other.to_string())?;
            }
        }
    }
    Ok(())
}

/// Most data rows an XLSX sheet holds (below its header).
pub const MAX_XLSX_ROWS: u64 = 1_048_575;

/// A one-sheet workbook written row by row: rows go to a temporary file as they come
/// (constant memory), and the workbook is assembled when saved.
pub struct XlsxStream {
    book: Workbook,
    rows: u32,
}

impl XlsxStream {
    /// A workbook whose sheet has `headers`.
    pub fn new(sheet: &str, headers: &[String]) -> Result<Self, ExportError> {
        let mut book = Workbook::new();
        let ws = book.add_worksheet_with_constant_memory()?;
        start_sheet(ws, sheet, headers)?;
        Ok(Self { book, rows: 0 })
    }

    /// Append a row.
    pub fn row(&mut self, row: &[Value]) -> Result<(), ExportError> {
        self.rows += 1;
        let ws = self.book.worksheet_from_index(0)?;
        write_row(ws, self.rows, row)
    }

    /// Write the workbook to `path`.
    pub fn save(mut self, path: &std::path::Path) -> Result<(), ExportError> {
        Ok(self.book.save(path)?)
    }
}

fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Column;

    fn sample() -> Output {
        Output {
            form: "lead".into(),
            columns: vec![
                Column {
                    name: "source".into(),
                    kind: "text",
                    label: [("zh-CN".to_owned(), "来源".to_owned())].into(),
                    filter: None,
                },
                Column {
                    name: "count".into(),
                    kind: "integer",
                    label: Default::default(),
                    filter: None,
                },
            ],
            rows: vec![
                vec![json!("=HYPERLINK(\"x\")"), json!(3)],
                vec![Value::Null, json!(0)],
            ],
            drill: None,
            truncated: false,
        }
    }

    #[test]
    fn csv_has_a_bom_labels_and_defused_formulas() {
        let bytes = csv(&sample(), "zh-CN").unwrap_or_default();
        let s = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(s, "\u{feff}来源,count\n\"'=HYPERLINK(\"\"x\"\")\",3\n,0\n");
    }

    #[test]
    fn xlsx_is_a_zip() {
        let bytes = xlsx(&sample(), "en", "lead/by:source").unwrap_or_default();
        assert_eq!(&bytes[..2], b"PK");
    }
}
