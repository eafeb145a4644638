//! The reports page (administrators and compliance staff): each report
//! `vigil report` makes, over the same filters, run on the server and
//! downloaded; every run is audited as `report.generated`, as on the
//! command line, with the SHA-256 of what was sent.

use std::io::Write;
use std::sync::Arc;

use audit_db::accounts::Role;
use audit_db::event::ReportGenerated;
use audit_db::{EventKind, NewEvent, Source};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use reporter::bundle;
use reporter::reports::{self, ReportFilter, ReportKind, Run};
use reporter::table::RowFormat;
use reporter::zone::Zone;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layout;
use super::sessions::{day_start, some};
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// Who may run reports.
const READERS: [Role; 2] = [Role::Admin, Role::Compliance];

/// The formats offered: name, how rows are written (none: an evidence
/// bundle, which holds the report as CSV and HTML), content type, file extension.
const FORMATS: [(&str, Option<RowFormat>, &str, &str); 4] = [
    (
        "csv",
        Some(RowFormat::Csv),
        "text/csv; charset=utf-8",
        "csv",
    ),
    (
        "html",
        Some(RowFormat::Html),
        "text/html; charset=utf-8",
        "html",
    ),
    (
        "jsonl",
        Some(RowFormat::JsonLines),
        "application/jsonl",
        "jsonl",
    ),
    ("bundle", None, "application/zip", "zip"),
];

/// The report form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Asked {
    #[serde(default)]
    report: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    technician: String,
    #[serde(default)]
    group: String,
}

fn allowed(viewer: &Viewer) -> Result<(), WebError> {
    if READERS.contains(&viewer.role) {
        Ok(())
    } else {
        Err(WebError::Forbidden("run reports"))
    }
}

/// `GET /reports`: the form.
pub(crate) async fn form(viewer: Viewer) -> Result<Markup, WebError> {
    allowed(&viewer)?;
    let body = html! {
        h2 { "Reports" }
        p { "Each report reads the audit log up to its head when it starts and says so in its footer; "
            "every run is recorded in the log (the access report lists them)." }
        p { "An evidence bundle is a zip of the report as CSV and HTML, every audit event it was "
            "made from, and a manifest with the log position and each file's SHA-256: "
            code { "vigil report verify FILE" } " checks it, on its own or against the log." }
        form.filters method="get" action="/reports/run" id="report-form" {
            label { "Report" select name="report" id="r-report" {
                @for (name, _) in ReportKind::ALL { option value=(name) { (name) } }
            } }
            label { "Format" select name="format" id="r-format" {
                @for (name, ..) in FORMATS { option value=(name) { (name) } }
            } }
            label { "From" input type="date" name="since" id="r-since"; }
            label { "To" input type="date" name="until" id="r-until"; }
            label { "Technician" input type="text" name="technician" id="r-technician"; }
            label { "Group" input type="text" name="group" id="r-group"; }
            button type="submit" id="run-report" { "Run and download" }
        }
    };
    Ok(layout("Reports", Some(&viewer), body))
}

/// `GET /reports/run`: the report as a download.
pub(crate) async fn run(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(asked): Query<Asked>,
) -> Result<Response, WebError> {
    allowed(&viewer)?;
    let kind = ReportKind::ALL
        .iter()
        .find(|(n, _)| *n == asked.report)
        .map(|(_, k)| *k)
        .ok_or_else(|| WebError::BadRequest(format!("no report called {:?}", asked.report)))?;
    let (format_name, format, content_type, extension) = FORMATS
        .iter()
        .find(|(n, ..)| *n == asked.format)
        .copied()
        .ok_or_else(|| WebError::BadRequest(format!("no format called {:?}", asked.format)))?;
    let filter = ReportFilter {
        since_us: day_start(&asked.since, 0, "since")?,
        until_us: day_start(&asked.until, 1, "until")?,
        technician: some(&asked.technician),
        group: some(&asked.group),
        ..ReportFilter::default()
    };
    let filters = [
        ("--since", &asked.since),
        ("--until", &asked.until),
        ("--technician", &asked.technician),
        ("--group", &asked.group),
    ]
    .iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| format!("{k} {}", v.trim()))
    .collect::<Vec<_>>()
    .join(" ");
    // A document handed to people (HTML, a bundle) stands on a verified
    // log, as on the command line.
    let proof = if matches!(format, Some(RowFormat::Html) | None) {
        reports::verified(&app.log).await?.map_err(|broken| {
            WebError::Altered(format!(
                "the audit log does not verify, so no report is made from it: {broken}"
            ))
        })?
    } else {
        "the log was not verified".to_owned()
    };
    let head = app.log.store().head().await?;
    let zone = Zone::utc();
    let run_as = |format| Run {
        kind,
        filter: &filter,
        format,
        zone: &zone,
        head,
        proof: &proof,
    };
    // Written to a file first: a report of a large log is not held in memory.
    let file = tempfile::tempfile().map_err(WebError::internal)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let store = app.log.store();
    let rows = match format {
        Some(format) => {
            reports::run(store, &run_as(format), &mut out, None)
                .await
                .map_err(WebError::internal)?
                .rows
        }
        None => {
            let (csv, html) = (run_as(RowFormat::Csv), run_as(RowFormat::Html));
            bundle::make(store, store, &csv, &html, &filters, &mut out)
                .await
                .map_err(WebError::internal)?
        }
    };
    out.flush().map_err(WebError::internal)?;
    let mut file = out.into_inner().map_err(WebError::internal)?;
    let (bytes, sha256) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        file.rewind()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        Ok::<_, std::io::Error>((bytes, sha))
    })
    .await
    .map_err(WebError::internal)?
    .map_err(WebError::internal)?;
    let event = NewEvent::now(
        viewer.actor(),
        Source::web(&app.config.host),
        EventKind::ReportGenerated(ReportGenerated {
            report: kind.name().to_owned(),
            filters,
            format: format_name.to_owned(),
            rows,
            sha256,
            up_to_seq: head.seq,
        }),
    );
    app.log.append_one(event).await.map_err(|e| {
        WebError::internal(format!(
            "the report's run could not be audited, so it is not sent: {e}"
        ))
    })?;
    let disposition = format!("attachment; filename=\"vigil-{}.{extension}\"", kind.name());
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from(bytes),
    )
        .into_response())
}
