//! Evidence bundles: a report (CSV and HTML), the exact audit events it
//! was derived from, and a manifest naming the log position and the SHA-256
//! of every file, in one zip an auditor can check on their own, and
//! against the log.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

use audit_db::query::EventSource;
use audit_db::{Head, Store, StoredEvent};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::reports::{Run, Sources};

/// The manifest's name inside the bundle.
pub const MANIFEST: &str = "manifest.json";
/// The events' name inside the bundle.
pub const EVENTS: &str = "events.jsonl";

/// What a bundle says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `vigil VERSION`.
    pub generator: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The report type.
    pub report: String,
    /// The filters, as given.
    pub filters: String,
    /// The log position it stands on.
    pub chain: ChainPosition,
    /// Whether the whole chain verified up to there when it was made.
    pub verified: bool,
    /// File name → lower-case hex SHA-256.
    pub files: BTreeMap<String, String>,
}

/// A seq and its chain hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPosition {
    /// The last event's seq.
    pub seq: i64,
    /// Its chain hash.
    pub hash: String,
}

impl ChainPosition {
    /// The position of `head`.
    pub fn of(head: &Head) -> Self {
        Self {
            seq: head.seq,
            hash: head.hash.to_string(),
        }
    }
}

/// A bundle could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The zip container.
    #[error("{0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading or writing.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The manifest is missing or not one.
    #[error("not an evidence bundle: {0}")]
    NotABundle(String),
    /// The log.
    #[error(transparent)]
    Log(#[from] audit_db::Error),
    /// The report inside it.
    #[error(transparent)]
    Report(#[from] crate::reports::ReportError),
}

/// Makes the bundle of one report into `out`: the report as CSV (`csv`)
/// and HTML (`html`, the same report in the other format), every event it
/// was derived from (read from `source`, which may reach into the archive;
/// events named one by one are looked up in `store` first) and the
/// manifest naming `filters`. The log must have verified (the manifest
/// says so). Returns the report's rows.
pub async fn make<W: Write + Seek>(
    store: &Store,
    source: &dyn EventSource,
    csv: &Run<'_>,
    html: &Run<'_>,
    filters: &str,
    out: W,
) -> Result<u64, BundleError> {
    let mut sources = Sources::default();
    let mut csv_bytes = Vec::new();
    let written = crate::reports::run(source, csv, &mut csv_bytes, Some(&mut sources)).await?;
    let mut html_bytes = Vec::new();
    crate::reports::run(source, html, &mut html_bytes, None).await?;
    let mut events = Vec::new();
    for session in &sources.sessions {
        let filter = audit_db::Filter {
            session: Some(*session),
            until_seq: Some(csv.head.seq),
            ..audit_db::Filter::default()
        };
        let mut stream = source.events(filter);
        while let Some(e) = stream.next().await {
            events.push(e?);
        }
    }
    let mut missing = std::collections::BTreeSet::new();
    for seq in &sources.events {
        match store.range_page(*seq, *seq, 1).await?.pop() {
            Some(e) => events.push(e),
            None => {
                missing.insert(*seq);
            }
        }
    }
    // Archived: one pass over the archive for all of them.
    if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
        let filter = audit_db::Filter {
            until_seq: Some(last),
            ..audit_db::Filter::default()
        };
        let mut stream = source.events(filter);
        while let Some(e) = stream.next().await {
            let e = e?;
            if e.seq >= first && missing.contains(&e.seq) {
                events.push(e);
            }
        }
    }
    events.sort_by_key(|e| e.seq);
    events.dedup_by_key(|e| e.seq);
    let mut lines = Vec::new();
    for e in &events {
        writeln!(lines, "{}", event_json(e))?;
    }
    let manifest = Manifest {
        generator: format!("vigil {}", env!("CARGO_PKG_VERSION")),
        created_at: audit_db::time_us::format(audit_db::time_us::now()),
        report: csv.kind.name().to_owned(),
        filters: filters.to_owned(),
        chain: ChainPosition::of(&csv.head),
        verified: true,
        files: Default::default(),
    };
    let name = csv.kind.name();
    let (csv_name, html_name) = (format!("{name}.csv"), format!("{name}.html"));
    write(
        out,
        manifest,
        &[
            (&csv_name, &csv_bytes),
            (&html_name, &html_bytes),
            (EVENTS, &lines),
        ],
    )?;
    Ok(written.rows)
}

/// Writes a bundle of `files` (name, bytes) with its manifest into `out`.
pub fn write<W: Write + Seek>(
    out: W,
    mut manifest: Manifest,
    files: &[(&str, &[u8])],
) -> Result<(), BundleError> {
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // A fixed time: the same report makes the same bytes.
        .last_modified_time(zip::DateTime::default());
    for (name, bytes) in files {
        zip.start_file(*name, options)?;
        zip.write_all(bytes)?;
        manifest
            .files
            .insert((*name).to_owned(), hex::encode(Sha256::digest(bytes)));
    }
    let text =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::NotABundle(e.to_string()))?;
    zip.start_file(MANIFEST, options)?;
    zip.write_all(&text)?;
    // Flushed here: a buffered writer dropped later would lose its error.
    zip.finish()?.flush()?;
    Ok(())
}

/// An event as a bundle holds it: the row as `audit query --json` shows
/// it, with the previous hash, the encoding format and the payload's salt
/// (or, once erased, its digest), so that anyone can recompute its leaf
/// and its place in the chain.
pub fn event_json(e: &StoredEvent) -> serde_json::Value {
    let mut json = e.to_json();
    json["prev_hash"] = e.prev_hash.to_string().into();
    json["format"] = e.format.into();
    match &e.body {
        audit_db::record::Body::Kept {
            salt: Some(salt), ..
        } => json["salt"] = hex::encode(salt).into(),
        audit_db::record::Body::Kept { salt: None, .. } => {}
        audit_db::record::Body::Erased { digest } => {
            json["body_digest"] = digest.to_string().into()
        }
    }
    json
}

/// What checking a bundle found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Each problem, naming the file (and event) it is in.
    pub problems: Vec<String>,
    /// Events checked against the log.
    pub events_checked: u64,
}

/// Checks a bundle's files against its manifest and, with `store`, its
/// events and chain position against the log.
pub async fn verify<R: Read + Seek>(
    input: R,
    store: Option<&Store>,
) -> Result<Findings, BundleError> {
    let mut zip = zip::ZipArchive::new(input)
        .map_err(|e| BundleError::NotABundle(format!("not a zip file ({e})")))?;
    let mut findings = Findings::default();
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i)?;
        let name = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("member {i}"));
        let mut bytes = Vec::new();
        // A damaged member fails its CRC or its decompression: named, and the rest still checked.
        if let Err(e) = file.read_to_end(&mut bytes) {
            findings
                .problems
                .push(format!("{name}: cannot be read ({e})"));
            continue;
        }
        contents.insert(name, bytes);
    }
    let manifest: Manifest = match contents.get(MANIFEST) {
        Some(text) => serde_json::from_slice(text)
            .map_err(|e| BundleError::NotABundle(format!("{MANIFEST} is not a manifest ({e})")))?,
        None if findings.problems.iter().any(|p| p.starts_with(MANIFEST)) => {
            return Ok(findings);
        }
        None => return Err(BundleError::NotABundle(format!("it holds no {MANIFEST}"))),
    };
    for (name, want) in &manifest.files {
        match contents.get(name) {
            Some(bytes) if hex::encode(Sha256::digest(bytes)) == *want => {}
            Some(_) => findings.problems.push(format!(
                "{name}: its SHA-256 is not the manifest's (the file was changed)"
            )),
            None if findings
                .problems
                .iter()
                .any(|p| p.starts_with(name.as_str())) => {}
            None => findings.problems.push(format!("{name}: missing")),
        }
    }
    for name in contents.keys() {
        if name != MANIFEST && !manifest.files.contains_key(name) {
            findings
                .problems
                .push(format!("{name}: not in the manifest"));
        }
    }
    if let (Some(store), Some(events)) = (store, contents.get(EVENTS)) {
        check_events(store, &manifest, events, &mut findings).await?;
    }
    findings.manifest = Some(manifest);
    Ok(findings)
}

/// Each event of the bundle is the one the log holds at its seq, and the
/// manifest's chain position is the log's.
async fn check_events(
    store: &Store,
    manifest: &Manifest,
    events: &[u8],
    findings: &mut Findings,
) -> Result<(), BundleError> {
    let at = |seq: i64| async move {
        Ok::<Option<StoredEvent>, BundleError>(store.range_page(seq, seq, 1).await?.pop())
    };
    match at(manifest.chain.seq).await? {
        Some(e) if e.hash.to_string() == manifest.chain.hash => {}
        Some(_) => findings.problems.push(format!(
            "{MANIFEST}: the log's event at seq {} has another hash than the manifest says",
            manifest.chain.seq
        )),
        None => findings.problems.push(format!(
            "{MANIFEST}: the log has no event at seq {}",
            manifest.chain.seq
        )),
    }
    for (n, line) in String::from_utf8_lossy(events).lines().enumerate() {
        let line_no = n + 1;
        let parsed: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                findings
                    .problems
                    .push(format!("{EVENTS} line {line_no}: not a JSON event"));
                continue;
            }
        };
        let Some(seq) = parsed["seq"].as_i64() else {
            findings
                .problems
                .push(format!("{EVENTS} line {line_no}: no seq"));
            continue;
        };
        findings.events_checked += 1;
        match at(seq).await? {
            Some(logged) if event_json(&logged) == parsed => {}
            Some(_) => findings.problems.push(format!(
                "{EVENTS} line {line_no}: seq {seq} is not the event the log holds there"
            )),
            None => findings.problems.push(format!(
                "{EVENTS} line {line_no}: the log has no event at seq {seq}"
            )),
        }
    }
    Ok(())
}
