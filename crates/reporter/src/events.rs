//! Streams audit events out as a fixed-width table or as JSON lines, one
//! event at a time, so a listing of any length runs in constant memory.

use std::io::Write;

use audit_db::{time_us, StoredEvent};
use futures::{Stream, StreamExt};

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a person at a terminal.
    Table,
    /// One JSON object per line, for tools.
    JsonLines,
}

/// What can stop a listing part-way.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Reading the log failed.
    #[error(transparent)]
    Read(#[from] audit_db::Error),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("writing the listing failed: {0}")]
    Write(#[from] std::io::Error),
}

/// Longest payload shown in a table cell before it is cut with `…`.
const DETAIL_WIDTH: usize = 100;

/// Writes every event of `events` to `out`; returns how many were written.
pub async fn write<S, W>(events: S, format: Format, out: &mut W) -> Result<u64, ListError>
where
    S: Stream<Item = audit_db::Result<StoredEvent>>,
    W: Write,
{
    let mut events = std::pin::pin!(events);
    let mut n = 0;
    if format == Format::Table {
        writeln!(
            out,
            "{:>8}  {:<27}  {:<22}  {:<36}  {:<32}  DETAILS",
            "SEQ", "OCCURRED", "TYPE", "SESSION", "ACTOR"
        )?;
    }
    while let Some(event) = events.next().await {
        let e = event?;
        match format {
            Format::JsonLines => {
                serde_json::to_writer(&mut *out, &e.json()).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
            Format::Table => writeln!(
                out,
                "{:>8}  {:<27}  {:<22}  {:<36}  {:<32}  {}",
                e.seq,
                time_us::format(e.occurred_at_us),
                e.kind,
                e.session.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                e.actor,
                cut(e.payload().unwrap_or("erased"), DETAIL_WIDTH)
            )?,
        }
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

fn cut(text: &str, width: usize) -> String {
    match text.char_indices().nth(width) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_db::Hash;

    fn event(seq: i64, payload: &str) -> StoredEvent {
        StoredEvent {
            seq,
            id: uuid::Uuid::from_u128(seq as u128),
            session: None,
            occurred_at_us: 0,
            recorded_at_us: 0,
            reported_at_us: None,
            source: "cli@host".into(),
            actor: "admin:ann".into(),
            kind: "admin.note".into(),
            body: audit_db::record::Body::Kept {
                payload: payload.into(),
                salt: Some([0; 16]),
            },
            format: 3,
            prev_hash: Hash::GENESIS,
            hash: Hash::GENESIS,
        }
    }

    async fn render(format: Format, events: Vec<StoredEvent>) -> String {
        let mut out = Vec::new();
        let n = write(
            futures::stream::iter(events.into_iter().map(Ok)),
            format,
            &mut out,
        )
        .await
        .unwrap();
        assert!(n <= 2);
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn json_lines_carry_the_payload_as_json() {
        let text = render(Format::JsonLines, vec![event(1, r#"{"text":"hi"}"#)]).await;
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["payload"]["text"], "hi");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["occurred_at"], "1970-01-01T00:00:00.000000Z");
    }

    #[tokio::test]
    async fn table_has_a_header_and_cuts_long_details() {
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(300));
        let text = render(Format::Table, vec![event(1, &long), event(2, "{}")]).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("SEQ") && lines[0].contains("DETAILS"));
        assert!(lines[1].ends_with('…'));
        assert!(lines[2].trim_end().ends_with("{}"));
    }

    #[tokio::test]
    async fn a_read_error_stops_the_listing() {
        let events = vec![Ok(event(1, "{}")), Err(audit_db::Error::NoHead)];
        let mut out = Vec::new();
        let err = write(futures::stream::iter(events), Format::JsonLines, &mut out)
            .await
            .unwrap_err();
        assert!(matches!(err, ListError::Read(audit_db::Error::NoHead)));
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
