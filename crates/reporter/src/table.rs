//! Report rows out, one at a time: CSV (RFC 4180, safe to open in a
//! spreadsheet), JSON lines, or aligned columns for a terminal.

use std::io::Write;

use audit_db::time_us;

use crate::zone::Zone;

/// One value of a report row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Text, written as given (CSV neutralises formulas).
    Text(String),
    /// A whole number.
    Int(i64),
    /// A time, microseconds since the epoch (RFC 3339: UTC in machine
    /// formats, the report's zone in tables and HTML).
    Time(i64),
    /// Yes or no.
    Bool(bool),
    /// Nothing known.
    Empty,
}

impl Cell {
    /// Text, or [`Cell::Empty`] for `None`.
    pub fn text(value: Option<impl Into<String>>) -> Self {
        value.map_or(Cell::Empty, |v| Cell::Text(v.into()))
    }

    /// A time, or [`Cell::Empty`] for `None`.
    pub fn time(value: Option<i64>) -> Self {
        value.map_or(Cell::Empty, Cell::Time)
    }

    /// The cell as a person reads it, times in `zone`.
    fn display(&self, zone: &Zone) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Time(us) => zone.format(*us),
            Cell::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
            Cell::Empty => String::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(t) => t.clone().into(),
            Cell::Int(n) => (*n).into(),
            Cell::Time(us) => time_us::format(*us).into(),
            Cell::Bool(b) => (*b).into(),
            Cell::Empty => serde_json::Value::Null,
        }
    }
}

/// How rows are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    /// RFC 4180 with a header row.
    Csv,
    /// One JSON object per row, keyed by column.
    JsonLines,
    /// Aligned columns.
    Table,
    /// One self-contained HTML file, with charts where the report has them.
    Html,
}

/// Writing a report failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output.
    #[error("writing the report failed: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV encoder.
    #[error("writing the report as CSV failed: {0}")]
    Csv(#[from] csv::Error),
}

/// Rows kept to size the table's columns before the first is printed.
const TABLE_SAMPLE: usize = 200;
/// The widest a table column grows; longer cells are cut with `…`.
const TABLE_MAX_WIDTH: usize = 60;

/// Writes rows of `columns` to `out` in `format`.
pub struct RowWriter<W: Write> {
    columns: Vec<&'static str>,
    zone: Zone,
    inner: Inner<W>,
    rows: u64,
    footer: String,
}

enum Inner<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json(W),
    Html {
        out: W,
        charts: Box<crate::html::Charts>,
    },
    Table {
        out: W,
        pending: Vec<Vec<String>>,
        widths: Option<Vec<usize>>,
    },
}

impl<W: Write> RowWriter<W> {
    /// A writer; the CSV header goes out at once.
    pub fn new(out: W, format: RowFormat, columns: Vec<&'static str>) -> Result<Self, WriteError> {
        Self::titled(out, format, columns, "Vigil report", &Zone::utc())
    }

    /// A writer whose HTML document has `title`, and whose table or HTML
    /// shows times in `zone` (machine formats are always UTC).
    pub fn titled(
        mut out: W,
        format: RowFormat,
        columns: Vec<&'static str>,
        title: &str,
        zone: &Zone,
    ) -> Result<Self, WriteError> {
        let inner = match format {
            RowFormat::Html => {
                crate::html::head(&mut out, title, zone, &columns)?;
                Inner::Html {
                    out,
                    charts: Box::default(),
                }
            }
            RowFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                w.write_record(&columns)?;
                Inner::Csv(Box::new(w))
            }
            RowFormat::JsonLines => Inner::Json(out),
            RowFormat::Table => Inner::Table {
                out,
                pending: Vec::new(),
                widths: None,
            },
        };
        Ok(Self {
            columns,
            zone: zone.clone(),
            inner,
            rows: 0,
            footer: String::new(),
        })
    }

    /// The line an HTML document ends with (the log position it stands on).
    pub fn set_footer(&mut self, footer: String) {
        self.footer = footer;
    }

    /// Writes one row (as many cells as columns).
    pub fn row(&mut self, cells: &[Cell]) -> Result<(), WriteError> {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows += 1;
        match &mut self.inner {
            Inner::Csv(w) => w.write_record(cells.iter().map(csv_cell))?,
            Inner::Html { out, charts } => {
                chart(charts, &self.columns, cells, &self.zone);
                let texts: Vec<(String, bool)> = cells
                    .iter()
                    .map(|c| (c.display(&self.zone), matches!(c, Cell::Int(_))))
                    .collect();
                crate::html::row(out, &texts)?;
            }
            Inner::Json(out) => {
                let obj: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(cells)
                    .map(|(c, v)| ((*c).to_owned(), v.json()))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(obj))?;
            }
            Inner::Table {
                out,
                pending,
                widths,
            } => {
                let texts: Vec<String> = cells.iter().map(|c| table_cell(c, &self.zone)).collect();
                match widths {
                    Some(w) => write_table_row(out, w, &texts)?,
                    None => {
                        pending.push(texts);
                        if pending.len() >= TABLE_SAMPLE {
                            *widths = Some(flush_table(out, &self.columns, pending)?);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds one session's duration to an HTML document's duration chart
    /// (for reports whose rows are not sessions); other formats ignore it.
    pub fn chart_duration(&mut self, ms: u64) {
        if let Inner::Html { charts, .. } = &mut self.inner {
            charts.duration(ms);
        }
    }

    /// Finishes the output; returns how many rows were written.
    pub fn finish(self) -> Result<u64, WriteError> {
        match self.inner {
            Inner::Csv(mut w) => w.flush()?,
            Inner::Json(mut out) => out.flush()?,
            Inner::Html { mut out, charts } => {
                crate::html::tail(&mut out, &charts, &self.footer, self.rows)?;
                out.flush()?;
            }
            Inner::Table {
                mut out,
                mut pending,
                widths,
            } => {
                if widths.is_none() {
                    flush_table(&mut out, &self.columns, &mut pending)?;
                }
                out.flush()?;
            }
        }
        Ok(self.rows)
    }
}

/// Feeds the charts from a row of a report that has them: sessions per
/// day and technician, durations, failed logins per day.
fn chart(charts: &mut crate::html::Charts, columns: &[&'static str], cells: &[Cell], zone: &Zone) {
    let at = |name: &str| columns.iter().position(|c| *c == name).map(|i| &cells[i]);
    let day = match (at("created"), at("day")) {
        (Some(Cell::Time(us)), _) => zone.day(*us),
        (_, Some(Cell::Text(d))) => d.clone(),
        _ => return,
    };
    let Some(tech) = at("technician") else { return };
    let tech = tech.display(zone);
    let count = match at("sessions") {
        Some(Cell::Int(n)) => *n as f64,
        Some(_) => 0.0,
        None => 1.0,
    };
    charts.sessions(&day, &tech, count);
    if let Some(Cell::Int(ms)) = at("duration_ms") {
        charts.duration(u64::try_from(*ms).unwrap_or(0));
    }
    if let Some(Cell::Int(n)) = at("failed_logins") {
        charts.failed(&day, *n as f64);
    }
}

/// A CSV cell, neutralised against formula injection: text a spreadsheet
/// would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) is
/// prefixed with `'`, which spreadsheets show as text. Borrowed where it
/// can be: a large report writes millions of cells.
fn csv_cell(cell: &Cell) -> CsvCell<'_> {
    match cell {
        Cell::Text(t) if t.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
            CsvCell::Owned(format!("'{t}"))
        }
        Cell::Text(t) => CsvCell::Borrowed(t),
        Cell::Time(us) => match time_us::TimeText::new(*us) {
            Some(text) => CsvCell::Time(text),
            None => CsvCell::Owned(time_us::format(*us)),
        },
        Cell::Bool(true) => CsvCell::Borrowed("yes"),
        Cell::Bool(false) => CsvCell::Borrowed("no"),
        Cell::Empty => CsvCell::Borrowed(""),
        Cell::Int(n) => CsvCell::Owned(n.to_string()),
    }
}

/// A cell's CSV text.
enum CsvCell<'a> {
    Borrowed(&'a str),
    Owned(String),
    Time(time_us::TimeText),
}

impl AsRef<[u8]> for CsvCell<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            CsvCell::Borrowed(t) => t.as_bytes(),
            CsvCell::Owned(t) => t.as_bytes(),
            CsvCell::Time(t) => t.as_str().as_bytes(),
        }
    }
}

/// A table cell on one line, cut to the column limit.
fn table_cell(cell: &Cell, zone: &Zone) -> String {
    let flat: String = cell
        .display(zone)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > TABLE_MAX_WIDTH {
        let cut: String = flat.chars().take(TABLE_MAX_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn flush_table<W: Write>(
    out: &mut W,
    columns: &[&'static str],
    pending: &mut Vec<Vec<String>>,
) -> std::io::Result<Vec<usize>> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in pending.iter() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    write_table_row(out, &widths, &header)?;
    for row in pending.drain(..) {
        write_table_row(out, &widths, &row)?;
    }
    Ok(widths)
}

fn write_table_row<W: Write>(
    out: &mut W,
    widths: &[usize],
    cells: &[String],
) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, (w, cell)) in widths.iter().zip(cells).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        if i + 1 < cells.len() {
            let pad = w.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_of(rows: &[Vec<Cell>]) -> String {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, RowFormat::Csv, vec!["a", "b"]).unwrap();
        for r in rows {
            w.row(r).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_round_trips_commas_quotes_newlines_and_non_ascii() {
        let tricky = [
            "plain",
            "a, b",
            "say \"hi\"",
            "two\nlines",
            "crlf\r\ninside",
            "Grüße, 日本語 ✓",
            "",
        ];
        let rows: Vec<Vec<Cell>> = tricky
            .iter()
            .map(|t| vec![Cell::Text((*t).to_owned()), Cell::Int(7)])
            .collect();
        let text = csv_of(&rows);
        assert!(text.starts_with("a,b\r\n"));
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
        assert_eq!(back, tricky);
    }

    #[test]
    fn every_formula_prefix_is_neutralised() {
        for bad in [
            "=1+2",
            "+1",
            "-1+1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\")",
        ] {
            let text = csv_of(&[vec![Cell::Text(bad.to_owned()), Cell::Int(-5)]]);
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let rec = reader.records().next().unwrap().unwrap();
            assert_eq!(&rec[0], format!("'{bad}"), "{bad:?}");
            // Numbers are numbers, not formulas.
            assert_eq!(&rec[1], "-5");
        }
        let safe = csv_of(&[vec![Cell::Text("a=b".into()), Cell::Empty]]);
        assert!(safe.contains("a=b,\r\n"), "{safe:?}");
    }

    #[test]
    fn json_lines_are_keyed_by_column_and_typed() {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, RowFormat::JsonLines, vec!["a", "b"]).unwrap();
        w.row(&[Cell::Time(0), Cell::Bool(true)]).unwrap();
        w.row(&[Cell::Empty, Cell::Int(3)]).unwrap();
        assert_eq!(w.finish().unwrap(), 2);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["a"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(lines[0]["b"], true);
        assert_eq!(lines[1]["a"], serde_json::Value::Null);
        assert_eq!(lines[1]["b"], 3);
    }

    #[test]
    fn tables_align_and_keep_each_row_on_one_line() {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, RowFormat::Table, vec!["name", "n"]).unwrap();
        w.row(&[Cell::Text("a\nb".into()), Cell::Int(10)]).unwrap();
        w.row(&[Cell::Text("longer name".into()), Cell::Int(2)])
            .unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "NAME         N\na b          10\nlonger name  2\n");
    }
}
