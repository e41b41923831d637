//! The one CSV writer every export goes through (reports, order fulfilment): RFC 4180 by the
//! `csv` crate (CRLF line ends, a field quoted only when it holds a comma, a quote or a line
//! break, inner quotes doubled), UTF-8 without a byte order mark, and always the guard against
//! spreadsheet formula injection, so no export can forget it.

use std::borrow::Cow;

/// Characters that make a spreadsheet read a cell as a formula. A text cell starting with one
/// gets a leading `'`, so a product named `=HYPERLINK(…)` stays text (CSV injection). Numbers
/// are written by [`Cell::Int`] and never guarded: `-5` is a number, not a formula.
pub const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One cell of a row.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// Text, guarded against formula injection.
    Text(&'a str),
    /// An integer (đồng, units, positions): written as digits, never guarded.
    Int(i128),
    /// An empty field.
    Empty,
}

/// The text a spreadsheet shows for `s`: `s` itself, or `'s` when it would start a formula.
pub fn guarded(s: &str) -> Cow<'_, str> {
    if s.starts_with(FORMULA_LEADS) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Writing into memory fails only if the `csv` crate itself does; the export turns it into a
/// 500 (or a cut stream) rather than a panic.
#[derive(Debug, thiserror::Error)]
#[error("writing CSV: {0}")]
pub struct CsvError(#[from] csv::Error);

impl From<CsvError> for crate::http::error::HttpError {
    fn from(e: CsvError) -> Self {
        // The writer's words are for the log; the client gets the code.
        tracing::error!(error = %e, "CSV export failed");
        Self::new(
            nightmarket_wire::ErrorCode::Internal,
            "the server hit an internal error; it is logged",
        )
    }
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        // Every row of a table has the header's width: a row of another width is a bug that
        // must fail the export, not shift a spreadsheet's columns.
        .flexible(false)
        .from_writer(Vec::new())
}

/// A CSV table being written into memory. An export either writes one table whole (reports)
/// or writes a page at a time and hands each page's bytes on with [`CsvTable::take`] (orders),
/// so the memory held is one page, whatever the size of the export.
pub struct CsvTable {
    out: csv::Writer<Vec<u8>>,
}

impl std::fmt::Debug for CsvTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvTable").finish_non_exhaustive()
    }
}

impl Default for CsvTable {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvTable {
    /// An empty table (no header: a streamed export writes it on its first page only).
    pub fn new() -> Self {
        Self { out: writer() }
    }

    /// A table that starts with `columns` as its header row.
    pub fn with_header(columns: &[&str]) -> Result<Self, CsvError> {
        let mut t = Self::new();
        t.row(columns.iter().map(|c| Cell::Text(c)))?;
        Ok(t)
    }

    /// Appends one row.
    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = Cell<'a>>) -> Result<(), CsvError> {
        for cell in cells {
            match cell {
                Cell::Text(s) => self.out.write_field(guarded(s).as_bytes())?,
                Cell::Int(n) => self.out.write_field(n.to_string())?,
                Cell::Empty => self.out.write_field([])?,
            }
        }
        self.out.write_record(None::<&[u8]>)?;
        Ok(())
    }

    /// The bytes written since the last take, leaving the table open for more rows.
    pub fn take(&mut self) -> Result<Vec<u8>, CsvError> {
        let full = std::mem::replace(&mut self.out, writer());
        full.into_inner()
            .map_err(|e| CsvError(csv::Error::from(e.into_error())))
    }

    /// All the bytes written (the whole table when nothing was taken before).
    pub fn finish(mut self) -> Result<Vec<u8>, CsvError> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[Cell<'_>]]) -> String {
        let mut t = CsvTable::new();
        for r in rows {
            t.row(r.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
        }
        String::from_utf8(t.finish().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let out = table(&[&[
            Cell::Text("o~s~b"),
            Cell::Text("Mật ong \"Ba Vì\", hoa nhãn"),
            Cell::Text("a\nb"),
            Cell::Text("plain"),
            Cell::Int(-5),
            Cell::Empty,
        ]]);
        assert_eq!(
            out,
            "o~s~b,\"Mật ong \"\"Ba Vì\"\", hoa nhãn\",\"a\nb\",plain,-5,\r\n"
        );
    }

    #[test]
    fn every_formula_lead_is_guarded_and_reads_back_as_text() {
        let names = [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1",
            "-1+2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ];
        let cells: Vec<Cell<'_>> = names.iter().map(|n| Cell::Text(n)).collect();
        let out = table(&[&cells]);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_bytes());
        let row = reader
            .records()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("one row in {out:?}"));
        let read: Vec<&str> = row.iter().collect();
        let want: Vec<String> = names.iter().map(|n| format!("'{n}")).collect();
        assert_eq!(read, want);
    }

    #[test]
    fn take_hands_on_each_page_once() {
        let mut t = CsvTable::with_header(&["a", "b"]).unwrap_or_else(|e| panic!("{e}"));
        let first = t.take().unwrap_or_else(|e| panic!("{e}"));
        t.row([Cell::Int(1), Cell::Text("x")])
            .unwrap_or_else(|e| panic!("{e}"));
        let second = t.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, b"a,b\r\n");
        assert_eq!(second, b"1,x\r\n");
    }
}
