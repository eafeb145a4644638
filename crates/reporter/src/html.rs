//! A report as one self-contained HTML file: no scripts, nothing fetched,
//! printable on A4. The table streams out row by row; the charts (inline
//! SVG) are added at the end from totals kept on the way, and shown above
//! the table by CSS order, so no row is held in memory.

use std::collections::BTreeMap;
use std::io::Write;

use crate::zone::Zone;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
@page { size: A4 landscape; margin: 12mm; }
body { font: 10pt/1.35 system-ui, sans-serif; color: #111; margin: 1.5em; }
main { display: flex; flex-direction: column; }
.charts { order: -1; display: flex; flex-wrap: wrap; gap: 1em; margin-bottom: 1em; }
.charts figure { margin: 0; break-inside: avoid; }
.charts figcaption { font-weight: 600; margin-bottom: .3em; }
h1 { order: -3; font-size: 15pt; margin: 0 0 .6em; }
.zone { order: -2; margin: 0 0 .8em; }
table { border-collapse: collapse; width: 100%; font-size: 8.5pt; }
th, td { border: 1px solid #bbb; padding: 2px 4px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #eee; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
footer { margin-top: 1em; font-size: 8.5pt; color: #444; }
";

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// Totals the charts are drawn from.
#[derive(Default)]
pub(crate) struct Charts {
    /// day → technician → sessions.
    sessions: BTreeMap<String, BTreeMap<String, f64>>,
    /// Duration buckets (see [`BUCKETS`]).
    durations: [f64; 6],
    /// day → failed logins.
    failed: BTreeMap<String, f64>,
    any_duration: bool,
    any_failed: bool,
}

const BUCKETS: [(&str, u64); 6] = [
    ("< 1 min", 60_000),
    ("1–5 min", 300_000),
    ("5–15 min", 900_000),
    ("15–30 min", 1_800_000),
    ("30–60 min", 3_600_000),
    ("≥ 1 h", u64::MAX),
];

impl Charts {
    /// Adds `count` sessions of `technician` on `day`.
    pub(crate) fn sessions(&mut self, day: &str, technician: &str, count: f64) {
        *self
            .sessions
            .entry(day.to_owned())
            .or_default()
            .entry(technician.to_owned())
            .or_default() += count;
    }

    /// Adds one session's duration.
    pub(crate) fn duration(&mut self, ms: u64) {
        self.any_duration = true;
        let i = BUCKETS.iter().position(|(_, max)| ms < *max).unwrap_or(5);
        self.durations[i] += 1.0;
    }

    /// Adds failed logins on `day`.
    pub(crate) fn failed(&mut self, day: &str, count: f64) {
        self.any_failed = true;
        *self.failed.entry(day.to_owned()).or_default() += count;
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.sessions.is_empty() && !self.any_duration && !self.any_failed {
            return Ok(());
        }
        writeln!(out, "<section class=\"charts\">")?;
        if !self.sessions.is_empty() {
            let techs: Vec<String> = {
                let mut t: Vec<String> = self
                    .sessions
                    .values()
                    .flat_map(|m| m.keys().cloned())
                    .collect();
                t.sort();
                t.dedup();
                t
            };
            let days: Vec<String> = self.sessions.keys().cloned().collect();
            let series: Vec<(String, Vec<f64>)> = techs
                .iter()
                .map(|t| {
                    let values = days
                        .iter()
                        .map(|d| self.sessions[d].get(t).copied().unwrap_or(0.0))
                        .collect();
                    (t.clone(), values)
                })
                .collect();
            figure(out, "Sessions per day, by technician", &days, &series)?;
        }
        if self.any_duration {
            let labels: Vec<String> = BUCKETS.iter().map(|(l, _)| (*l).to_owned()).collect();
            let series = vec![("sessions".to_owned(), self.durations.to_vec())];
            figure(out, "Session durations", &labels, &series)?;
        }
        if self.any_failed {
            let days: Vec<String> = self.failed.keys().cloned().collect();
            let series = vec![(
                "failed logins".to_owned(),
                days.iter().map(|d| self.failed[d]).collect(),
            )];
            figure(out, "Failed logins per day", &days, &series)?;
        }
        writeln!(out, "</section>")
    }
}

/// A stacked bar chart as inline SVG, with its legend.
fn figure(
    out: &mut impl Write,
    caption: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
) -> std::io::Result<()> {
    let (w, h, left, bottom, top) = (520.0, 220.0, 40.0, 40.0, 10.0);
    let n = labels.len().max(1) as f64;
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| series.iter().map(|(_, v)| v[i]).sum())
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max).max(1.0);
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / n;
    let bar = (slot * 0.7).clamp(1.0, 36.0);
    writeln!(out, "<figure><figcaption>{}</figcaption>", escape(caption))?;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape(caption)
    )?;
    writeln!(
        out,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#444\"/><line x1=\"{left}\" y1=\"{0}\" x2=\"{}\" y2=\"{0}\" stroke=\"#444\"/>",
        h - bottom,
        w - 5.0
    )?;
    writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">0</text>",
        left - 4.0,
        top + 8.0,
        max,
        left - 4.0,
        h - bottom
    )?;
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for (k, (name, values)) in series.iter().enumerate() {
            let v = values[i];
            if v <= 0.0 {
                continue;
            }
            let bh = v / max * plot_h;
            y -= bh;
            writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
                PALETTE[k % PALETTE.len()],
                escape(name),
                v
            )?;
        }
        // Labels under every bar while they fit, else every few.
        let every = (labels.len() / 12).max(1);
        if i % every == 0 {
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"8\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - bottom + 12.0,
                escape(label)
            )?;
        }
    }
    writeln!(out, "</svg>")?;
    if series.len() > 1 {
        write!(out, "<div>")?;
        for (k, (name, _)) in series.iter().enumerate() {
            write!(
                out,
                "<span style=\"margin-right:1em\"><span style=\"display:inline-block;width:.8em;height:.8em;background:{}\"></span> {}</span>",
                PALETTE[k % PALETTE.len()],
                escape(name)
            )?;
        }
        writeln!(out, "</div>")?;
    }
    writeln!(out, "</figure>")
}

/// The document up to the first row.
pub(crate) fn head(
    out: &mut impl Write,
    title: &str,
    zone: &Zone,
    columns: &[&str],
) -> std::io::Result<()> {
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{0}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{0}</h1>\n<p class=\"zone\">Times are in {1}; days are {1} calendar days.</p>\n<section class=\"report\">\n<table>\n<thead><tr>",
        escape(title),
        escape(zone.name())
    )?;
    for c in columns {
        write!(out, "<th>{}</th>", escape(c))?;
    }
    writeln!(out, "</tr></thead>\n<tbody>")
}

/// One row.
pub(crate) fn row(out: &mut impl Write, cells: &[(String, bool)]) -> std::io::Result<()> {
    write!(out, "<tr>")?;
    for (text, numeric) in cells {
        if *numeric {
            write!(out, "<td class=\"n\">{}</td>", escape(text))?;
        } else {
            write!(out, "<td>{}</td>", escape(text))?;
        }
    }
    writeln!(out, "</tr>")
}

/// The document after the last row: the charts and the stamp.
pub(crate) fn tail(
    out: &mut impl Write,
    charts: &Charts,
    footer: &str,
    rows: u64,
) -> std::io::Result<()> {
    writeln!(out, "</tbody>\n</table>\n</section>")?;
    charts.write(out)?;
    writeln!(
        out,
        "<footer><p>{rows} rows. {}</p><p>Made by Vigil {}.</p></footer>\n</main>\n</body>\n</html>",
        escape(footer),
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn durations_fall_in_their_buckets() {
        let mut c = Charts::default();
        for ms in [0, 59_999, 60_000, 299_999, 3_600_000, 10_000_000] {
            c.duration(ms);
        }
        assert_eq!(c.durations, [2.0, 2.0, 0.0, 0.0, 0.0, 2.0]);
    }
}
