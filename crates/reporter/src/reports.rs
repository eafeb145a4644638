//! The compliance reports: which events each reads, the rows it makes, and
//! the filters every report takes. Each streams the log once, in seq
//! order; session reports hold only the sessions still open at that point
//! of the log, so memory does not grow with the log's length.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;

use audit_db::event::{EventKind, LoginFailed, Party};
use audit_db::query::EventSource;
use audit_db::{Filter, StoredEvent};
use futures::StreamExt;
use uuid::Uuid;

use crate::session::SessionStory;
use crate::table::{Cell, RowFormat, RowWriter, WriteError};
use crate::zone::Zone;

/// A report a compliance officer can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// One row per session.
    Sessions,
    /// The chat lines.
    Chat,
    /// The files that crossed, with both ends' digests.
    Files,
    /// Logins, failures, locks, unlocks, logoffs.
    Logins,
    /// Administrative changes and notes.
    Admin,
    /// Who ran which report.
    Access,
    /// Requests, grants and denials per permission and technician.
    Permissions,
    /// Sessions never picked up, joins abandoned, joins refused.
    Missed,
    /// Per day and technician: sessions, mean and p95 duration, failed
    /// logins, denied permissions.
    Summary,
    /// Every finished recording, and with `check_recordings` whether the
    /// file is still the one the log recorded.
    Recordings,
}

impl ReportKind {
    /// Every report, by name.
    pub const ALL: [(&'static str, ReportKind); 10] = [
        ("sessions", ReportKind::Sessions),
        ("chat", ReportKind::Chat),
        ("files", ReportKind::Files),
        ("logins", ReportKind::Logins),
        ("admin", ReportKind::Admin),
        ("access", ReportKind::Access),
        ("permissions", ReportKind::Permissions),
        ("missed", ReportKind::Missed),
        ("summary", ReportKind::Summary),
        ("recordings", ReportKind::Recordings),
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    fn columns(self) -> Vec<&'static str> {
        match self {
            ReportKind::Sessions => vec![
                "session",
                "technician",
                "group",
                "end_user_address",
                "end_user_host",
                "created",
                "picked_up",
                "ended",
                "duration_ms",
                "end_reason",
                "bytes_relayed",
                "granted",
                "denied",
                "files",
                "chat_lines",
                "recorded",
                "recording_sha256",
            ],
            ReportKind::Chat => vec!["time", "session", "technician", "from", "text", "chars"],
            ReportKind::Files => vec![
                "time",
                "session",
                "technician",
                "name",
                "direction",
                "size",
                "sender_md5",
                "sender_sha256",
                "receiver_md5",
                "receiver_sha256",
                "matched",
            ],
            ReportKind::Logins => vec!["time", "event", "email", "address", "reason", "detail"],
            ReportKind::Admin => vec!["time", "event", "actor", "source", "target", "change"],
            ReportKind::Access => {
                vec![
                    "time", "actor", "source", "report", "format", "filters", "rows", "sha256",
                    "event", "session", "target",
                ]
            }
            ReportKind::Permissions => {
                vec!["technician", "permission", "requested", "granted", "denied"]
            }
            ReportKind::Missed => {
                vec![
                    "time",
                    "what",
                    "session",
                    "technician",
                    "end_user_address",
                    "detail",
                ]
            }
            ReportKind::Recordings => vec![
                "time",
                "session",
                "technician",
                "recording",
                "path",
                "size",
                "sha256",
                "duration_ms",
                "verdict",
            ],
            ReportKind::Summary => vec![
                "day",
                "technician",
                "sessions",
                "mean_duration_ms",
                "p95_duration_ms",
                "failed_logins",
                "denied_permissions",
            ],
        }
    }

    /// The audit types the report reads (empty: every session's events).
    fn kinds(self) -> Vec<String> {
        let names: &[&str] = match self {
            ReportKind::Sessions
            | ReportKind::Chat
            | ReportKind::Files
            | ReportKind::Permissions
            | ReportKind::Missed
            | ReportKind::Summary => &[],
            ReportKind::Logins => &[
                "login.succeeded",
                "login.failed",
                "account.locked",
                "account.unlocked",
                "logout",
                "password.changed",
            ],
            ReportKind::Admin => &["admin.change", "admin.note"],
            ReportKind::Access => &["report.generated", "record.viewed", "record.exported"],
            ReportKind::Recordings => &["recording.stopped"],
        };
        names.iter().map(|n| (*n).to_owned()).collect()
    }
}

/// What every report can be narrowed to.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    /// At or after (microseconds since the epoch): a session by its creation.
    pub since_us: Option<i64>,
    /// Before.
    pub until_us: Option<i64>,
    /// Only this technician's (email, any case).
    pub technician: Option<String>,
    /// Only this group's sessions.
    pub group: Option<String>,
    /// Only this session.
    pub session: Option<Uuid>,
    /// Only from addresses in this network.
    pub ip: Option<ipnet::IpNet>,
    /// Recordings: read each file through and judge it against the log.
    pub check_recordings: bool,
}

/// Running a report failed part-way.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the log.
    #[error(transparent)]
    Read(#[from] audit_db::Error),
    /// Writing the output.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Where in the log a report stands, and what `proof` says of it.
pub fn stamp(head: &audit_db::Head, proof: &str) -> String {
    format!(
        "Built from the audit log up to seq {} (hash {}); {proof}.",
        head.seq, head.hash
    )
}

/// Verifies the whole log for a report's stamp: what the stamp says of
/// it when intact, or the first break (no report should then be made).
pub async fn verified(
    log: &audit_db::AuditLog,
) -> Result<Result<String, audit_db::ChainBreak>, audit_db::Error> {
    let report = log.verify(None).await?;
    Ok(report
        .outcome
        .map(|()| format!("the log verified intact up to seq {}", report.head.seq)))
}

/// What a finished report was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// The log's head when it started (its last seq and that event's
    /// chain hash): nothing after it is in the report.
    pub head: audit_db::Head,
}

/// Where a report's rows came from: the sessions and the single events
/// (by seq) it read, for an evidence bundle.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Sessions reported on.
    pub sessions: Vec<Uuid>,
    /// Events reported on one by one.
    pub events: Vec<i64>,
}

/// How one run is made.
pub struct Run<'a> {
    /// The report.
    pub kind: ReportKind,
    /// What it is narrowed to.
    pub filter: &'a ReportFilter,
    /// How rows are written.
    pub format: RowFormat,
    /// The zone a table or HTML shows times and counts days in.
    pub zone: &'a Zone,
    /// The log position it stands on: nothing after it is read.
    pub head: audit_db::Head,
    /// Whether the log was verified, for the stamp.
    pub proof: &'a str,
}

/// Runs a report over the events of `source` into `out`; with `sources`,
/// notes what its rows came from.
pub async fn run<W: Write>(
    source: &dyn EventSource,
    run: &Run<'_>,
    out: W,
    mut sources: Option<&mut Sources>,
) -> Result<Written, ReportError> {
    let (kind, filter, format, head, proof) =
        (run.kind, run.filter, run.format, run.head, run.proof);
    let up_to_seq = head.seq;
    let title = format!("Vigil {} report", kind.name());
    let mut rows = RowWriter::titled(out, format, kind.columns(), &title, run.zone)?;
    rows.set_footer(stamp(&head, proof));
    let session_report = kind.kinds().is_empty();
    let query = Filter {
        kinds: kind.kinds(),
        session: filter.session,
        until_seq: Some(up_to_seq),
        // A session's events all come after its creation.
        since_us: filter.since_us,
        ..Filter::default()
    };
    let mut events = source.events(query);
    let mut open: HashMap<Uuid, SessionStory> = HashMap::new();
    let mut totals = Totals::in_zone(run.zone);
    while let Some(e) = events.next().await {
        let e = e?;
        if session_report {
            let in_range = filter.until_us.is_none_or(|until| e.occurred_at_us < until);
            if e.session.is_none() && in_range && totals.loose_event(kind, &e, filter, &mut rows)? {
                // A session-less event the session reports count.
                if let Some(s) = sources.as_deref_mut() {
                    s.events.push(e.seq);
                }
            }
            let Some(session) = e.session else { continue };
            if e.kind == "session.created" {
                if filter
                    .until_us
                    .is_some_and(|until| e.occurred_at_us >= until)
                {
                    continue;
                }
                open.insert(session, SessionStory::new(session));
            }
            // Sessions created before the range are not in it.
            let Some(story) = open.get_mut(&session) else {
                continue;
            };
            story.add(&e);
            if e.kind == "session.ended" {
                if let Some(story) = open.remove(&session) {
                    if session_rows(kind, &story, filter, &mut rows, &mut totals)? {
                        if let Some(s) = sources.as_deref_mut() {
                            s.sessions.push(session);
                        }
                    }
                }
            }
        } else if filter.until_us.is_none_or(|until| e.occurred_at_us < until) {
            let row = match kind {
                ReportKind::Recordings => recording_row(&e, filter).await,
                _ => event_row(kind, &e, filter),
            };
            if let Some(cells) = row {
                rows.row(&cells)?;
                if let Some(s) = sources.as_deref_mut() {
                    s.events.push(e.seq);
                }
            }
        }
    }
    // Sessions still open when the report was made, oldest first.
    let mut left: Vec<SessionStory> = open.into_values().collect();
    left.sort_by_key(|s| s.first_seq);
    for story in &left {
        if session_rows(kind, story, filter, &mut rows, &mut totals)? {
            if let Some(s) = sources.as_deref_mut() {
                s.sessions.push(story.session);
            }
        }
    }
    totals.write(kind, &mut rows)?;
    Ok(Written {
        rows: rows.finish()?,
        head,
    })
}

fn story_matches(story: &SessionStory, f: &ReportFilter) -> bool {
    let tech = |t: &str| {
        story
            .technician
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(t))
    };
    f.technician.as_deref().is_none_or(tech)
        && f.group
            .as_deref()
            .is_none_or(|g| story.group.as_deref() == Some(g))
        && f.ip.is_none_or(|net| {
            story
                .address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| net.contains(&a))
        })
}

fn session_rows<W: Write>(
    kind: ReportKind,
    s: &SessionStory,
    filter: &ReportFilter,
    rows: &mut RowWriter<W>,
    totals: &mut Totals,
) -> Result<bool, WriteError> {
    if !story_matches(s, filter) {
        return Ok(false);
    }
    totals.story(kind, s);
    let id = Cell::Text(s.session.to_string());
    let tech = Cell::text(s.technician.clone());
    match kind {
        ReportKind::Sessions => {
            let end = s.ended.as_ref();
            let list = |items: Vec<String>| Cell::Text(items.join(" "));
            let recording = s.recordings.last();
            rows.row(&[
                id,
                tech,
                Cell::text(s.group.clone()),
                Cell::text(s.address.clone()),
                Cell::text(s.host.clone()),
                Cell::time(s.created_at_us),
                Cell::time(s.picked_up_at_us),
                Cell::time(end.map(|e| e.at_us)),
                end.map_or(Cell::Empty, |e| Cell::Int(e.duration_ms as i64)),
                Cell::text(end.map(|e| e.reason.clone())),
                end.map_or(Cell::Empty, |e| {
                    Cell::Int((e.bytes_to_applet + e.bytes_to_console) as i64)
                }),
                list(s.granted.iter().map(|g| g.permission.to_string()).collect()),
                list(s.denied.iter().map(|d| d.permission.to_string()).collect()),
                Cell::Int(s.files.len() as i64),
                Cell::Int(s.chat.len() as i64),
                Cell::Bool(!s.recordings.is_empty()),
                Cell::text(recording.map(|r| r.sha256.clone())),
            ])?;
        }
        ReportKind::Chat => {
            for c in &s.chat {
                let from = match c.from {
                    Party::Technician => "technician",
                    Party::EndUser => "end_user",
                };
                rows.row(&[
                    Cell::Time(c.at_us),
                    id.clone(),
                    tech.clone(),
                    Cell::Text(from.to_owned()),
                    // Where the group keeps no chat text, the cell says so.
                    Cell::Text(c.text.clone().unwrap_or_else(|| "(not stored)".to_owned())),
                    Cell::Int(c.chars as i64),
                ])?;
            }
        }
        ReportKind::Files => {
            for f in &s.files {
                let d = |x: &Option<crate::session::Digests>, md5: bool| {
                    Cell::text(
                        x.as_ref()
                            .map(|d| if md5 { d.md5.clone() } else { d.sha256.clone() }),
                    )
                };
                rows.row(&[
                    Cell::Time(f.at_us),
                    id.clone(),
                    tech.clone(),
                    Cell::Text(f.name.clone()),
                    Cell::Text(f.direction.to_owned()),
                    Cell::Int(f.size as i64),
                    d(&f.sender, true),
                    d(&f.sender, false),
                    d(&f.receiver, true),
                    d(&f.receiver, false),
                    Cell::Bool(f.matched),
                ])?;
            }
        }
        ReportKind::Missed if s.picked_up_at_us.is_none() => {
            let (what, at) = match s.joined_at_us {
                Some(at) => ("joined_not_picked_up", at),
                None => ("never_joined", s.created_at_us.unwrap_or_default()),
            };
            rows.row(&[
                Cell::Time(at),
                Cell::Text(what.to_owned()),
                id,
                tech,
                Cell::text(s.address.clone()),
                Cell::text(s.ended.as_ref().map(|e| format!("ended: {}", e.reason))),
            ])?;
        }
        _ => {}
    }
    Ok(true)
}

/// What the aggregate reports add up as the log goes by.
#[derive(Default)]
struct Totals {
    /// The zone whose calendar days the summary counts in.
    zone: Zone,
    /// (technician, permission) → requested, granted, denied.
    permissions: std::collections::BTreeMap<(String, String), [i64; 3]>,
    /// (day, technician) → session durations, failed logins, denials.
    days: std::collections::BTreeMap<(String, String), DayTotals>,
}

#[derive(Default)]
struct DayTotals {
    durations: Vec<u64>,
    failed_logins: i64,
    denied: i64,
}

impl Totals {
    fn in_zone(zone: &Zone) -> Self {
        Totals {
            zone: zone.clone(),
            ..Totals::default()
        }
    }

    fn story(&mut self, kind: ReportKind, s: &SessionStory) {
        let tech = s.technician.clone().unwrap_or_default();
        match kind {
            ReportKind::Permissions => {
                for p in &s.requested {
                    self.permission(&tech, p.as_str())[0] += 1;
                }
                for g in &s.granted {
                    self.permission(&tech, g.permission.as_str())[1] += 1;
                }
                for d in &s.denied {
                    self.permission(&tech, d.permission.as_str())[2] += 1;
                }
            }
            ReportKind::Summary => {
                let Some(created) = s.created_at_us else {
                    return;
                };
                let totals = self.days.entry((self.zone.day(created), tech)).or_default();
                totals
                    .durations
                    .push(s.ended.as_ref().map_or(0, |e| e.duration_ms));
                totals.denied += s.denied.len() as i64;
            }
            _ => {}
        }
    }

    fn permission(&mut self, tech: &str, permission: &str) -> &mut [i64; 3] {
        self.permissions
            .entry((tech.to_owned(), permission.to_owned()))
            .or_default()
    }

    /// Events outside any session: failed logins for the summary, refused
    /// joins for the missed report. Whether `e` counted.
    fn loose_event<W: Write>(
        &mut self,
        kind: ReportKind,
        e: &StoredEvent,
        f: &ReportFilter,
        rows: &mut RowWriter<W>,
    ) -> Result<bool, WriteError> {
        match (kind, e.decode().ok().flatten()) {
            (ReportKind::Summary, Some(EventKind::LoginFailed(l))) => {
                let wanted = f
                    .technician
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(&l.email))
                    && f.ip.is_none_or(|net| net.contains(&l.ip));
                if wanted {
                    self.days
                        .entry((self.zone.day(e.occurred_at_us), l.email))
                        .or_default()
                        .failed_logins += 1;
                }
                Ok(wanted)
            }
            // A refused join belongs to no technician or group: only
            // reports not narrowed to one list it.
            (ReportKind::Missed, Some(EventKind::SessionJoinRefused(r)))
                if f.technician.is_none()
                    && f.group.is_none()
                    && f.ip.is_none_or(|net| net.contains(&r.ip)) =>
            {
                let reason = serde_json::to_value(r.reason).ok();
                rows.row(&[
                    Cell::Time(e.occurred_at_us),
                    Cell::Text("join_refused".to_owned()),
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Text(r.ip.to_string()),
                    Cell::text(reason.as_ref().and_then(|v| v.as_str()).map(str::to_owned)),
                ])?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn write<W: Write>(self, kind: ReportKind, rows: &mut RowWriter<W>) -> Result<(), WriteError> {
        match kind {
            ReportKind::Permissions => {
                for ((tech, permission), [requested, granted, denied]) in self.permissions {
                    rows.row(&[
                        Cell::Text(tech),
                        Cell::Text(permission),
                        Cell::Int(requested),
                        Cell::Int(granted),
                        Cell::Int(denied),
                    ])?;
                }
            }
            ReportKind::Summary => {
                for ((day, tech), mut t) in self.days {
                    for ms in &t.durations {
                        rows.chart_duration(*ms);
                    }
                    t.durations.sort_unstable();
                    let n = t.durations.len();
                    let (mean, p95) = if n == 0 {
                        (Cell::Empty, Cell::Empty)
                    } else {
                        let sum: u64 = t.durations.iter().sum();
                        // Nearest rank: the smallest duration at or above 95 % of them.
                        let rank = (n * 95).div_ceil(100).max(1) - 1;
                        (
                            Cell::Int((sum / n as u64) as i64),
                            Cell::Int(t.durations[rank] as i64),
                        )
                    };
                    rows.row(&[
                        Cell::Text(day),
                        Cell::Text(tech),
                        Cell::Int(n as i64),
                        mean,
                        p95,
                        Cell::Int(t.failed_logins),
                        Cell::Int(t.denied),
                    ])?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A recording's row; with `check_recordings`, its file read through and
/// judged against what this event recorded (its size and SHA-256).
async fn recording_row(e: &StoredEvent, f: &ReportFilter) -> Option<Vec<Cell>> {
    let Some(EventKind::RecordingStopped(r)) = e.decode().ok().flatten() else {
        return None;
    };
    let tech = e
        .actor
        .strip_prefix("technician:")
        .unwrap_or(&e.actor)
        .to_owned();
    if f.technician
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case(&tech))
    {
        return None;
    }
    let (duration, verdict) = if f.check_recordings {
        let path = std::path::PathBuf::from(&r.path);
        // The duration as the file's own index gives it (to its end, idle
        // tail included), and the verdict from reading it all through.
        let checked = tokio::task::spawn_blocking(move || {
            let check = recorder::vrec::integrity::check(&path)?;
            let duration = recorder::vrec::Recording::open(&path)
                .map(|r| r.index.duration_us)
                .unwrap_or(check.scan.index.duration_us);
            Ok::<_, recorder::vrec::VrecError>((check, duration))
        })
        .await
        .ok();
        match checked {
            Some(Ok((check, duration_us))) => {
                let logged = recorder::vrec::integrity::Logged {
                    started: true,
                    stopped: Some((r.size, r.sha256.clone())),
                };
                let verdict = recorder::vrec::integrity::judge(&check, Some(&logged));
                (
                    Cell::Int((duration_us / 1000) as i64),
                    Cell::Text(verdict.word().to_owned()),
                )
            }
            Some(Err(err)) => (Cell::Empty, Cell::Text(format!("unreadable: {err}"))),
            None => (Cell::Empty, Cell::Text("unreadable".to_owned())),
        }
    } else {
        (Cell::Empty, Cell::Text("not checked (--check)".to_owned()))
    };
    Some(vec![
        Cell::Time(e.occurred_at_us),
        Cell::text(e.session.map(|s| s.to_string())),
        Cell::Text(tech),
        Cell::Text(r.recording),
        Cell::Text(r.path),
        Cell::Int(r.size as i64),
        Cell::Text(r.sha256),
        duration,
        verdict,
    ])
}

/// A row of a report over single events, if `e` is in it.
fn event_row(kind: ReportKind, e: &StoredEvent, f: &ReportFilter) -> Option<Vec<Cell>> {
    let decoded = e.decode().ok().flatten()?;
    let time = Cell::Time(e.occurred_at_us);
    let event = Cell::Text(e.kind.clone());
    let in_net = |ip: Option<IpAddr>| f.ip.is_none_or(|net| ip.is_some_and(|a| net.contains(&a)));
    let is_tech = |email: &str| {
        f.technician
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case(email))
    };
    match (kind, decoded) {
        (ReportKind::Logins, k) => {
            let (email, ip, reason, detail) = match k {
                EventKind::LoginSucceeded(l) => (l.email, Some(l.ip), String::new(), String::new()),
                EventKind::LoginFailed(LoginFailed { email, ip, reason }) => (
                    email,
                    Some(ip),
                    serde_json::to_value(reason).ok()?.as_str()?.to_owned(),
                    String::new(),
                ),
                EventKind::AccountLocked(l) => (
                    l.email,
                    l.ip,
                    String::new(),
                    format!("after {} failures", l.failed_attempts),
                ),
                EventKind::AccountUnlocked(u) => (
                    u.email,
                    None,
                    serde_json::to_value(u.by).ok()?.as_str()?.to_owned(),
                    String::new(),
                ),
                EventKind::Logout(l) => (
                    l.email,
                    Some(l.ip),
                    serde_json::to_value(l.reason).ok()?.as_str()?.to_owned(),
                    String::new(),
                ),
                EventKind::PasswordChanged(p) => {
                    (p.email, Some(p.ip), String::new(), String::new())
                }
                _ => return None,
            };
            if !is_tech(&email) || !in_net(ip) {
                return None;
            }
            Some(vec![
                time,
                event,
                Cell::Text(email),
                Cell::text(ip.map(|i| i.to_string())),
                Cell::Text(reason),
                Cell::Text(detail),
            ])
        }
        (ReportKind::Admin, k) => {
            let (target, change) = match k {
                EventKind::AdminChange(c) => (c.target, c.change),
                EventKind::AdminNote(n) => (String::new(), n.text),
                _ => return None,
            };
            Some(vec![
                time,
                event,
                Cell::Text(e.actor.clone()),
                Cell::Text(e.source.clone()),
                Cell::Text(target),
                Cell::Text(change),
            ])
        }
        (ReportKind::Access, EventKind::ReportGenerated(r)) => Some(vec![
            time,
            Cell::Text(e.actor.clone()),
            Cell::Text(e.source.clone()),
            Cell::Text(r.report),
            Cell::Text(r.format),
            Cell::Text(r.filters),
            Cell::Int(r.rows as i64),
            Cell::Text(r.sha256),
            Cell::Text(e.kind.clone()),
            Cell::Empty,
            Cell::Empty,
        ]),
        (ReportKind::Access, EventKind::RecordViewed(r)) => Some(vec![
            time,
            Cell::Text(e.actor.clone()),
            Cell::Text(e.source.clone()),
            Cell::Text(r.what),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Text(e.kind.clone()),
            Cell::text(e.session.map(|s| s.to_string())),
            Cell::Text(r.target),
        ]),
        (ReportKind::Access, EventKind::RecordExported(r)) => Some(vec![
            time,
            Cell::Text(e.actor.clone()),
            Cell::Text(e.source.clone()),
            Cell::Text(r.what),
            Cell::Text(r.format),
            Cell::Empty,
            Cell::Int(r.bytes as i64),
            Cell::Text(r.sha256),
            Cell::Text(e.kind.clone()),
            Cell::text(e.session.map(|s| s.to_string())),
            Cell::Text(r.target),
        ]),
        _ => None,
    }
}
