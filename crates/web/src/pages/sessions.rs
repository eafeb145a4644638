//! The sessions page: search and filter (technician, group, dates, the end
//! user's address, words of the chat), newest first, a page at a time,
//! through the sessions index. A technician sees only their own.

use std::sync::Arc;

use audit_db::session_index::{IndexedSession, SessionQuery};
use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::{duration, layout, when};
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

/// Sessions per page.
const PAGE: u32 = 50;

/// The filters, as the form sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    technician: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    address: String,
    /// `YYYY-MM-DD`, from its start (UTC).
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD`, to its end (UTC).
    #[serde(default)]
    until: String,
    #[serde(default)]
    words: String,
    /// `CREATED:ID` of the last session of the page before.
    #[serde(default)]
    before: String,
}

/// `text` trimmed, or `None` when blank.
pub(crate) fn some(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Midnight (UTC) of `YYYY-MM-DD`, in microseconds, `days` later.
pub(crate) fn day_start(text: &str, days: i64, field: &str) -> Result<Option<i64>, WebError> {
    let Some(text) = some(text) else {
        return Ok(None);
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(&text, format).map_err(|_| {
        WebError::BadRequest(format!(
            "{field} must be a date as YYYY-MM-DD, not {text:?}"
        ))
    })?;
    let at = date.midnight().assume_utc() + time::Duration::days(days);
    Ok(Some(
        i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
    ))
}

impl Filters {
    fn query(&self, viewer: &Viewer) -> Result<SessionQuery, WebError> {
        let before = match some(&self.before) {
            None => None,
            Some(b) => {
                let parsed = b
                    .split_once(':')
                    .and_then(|(c, i)| Some((c.parse().ok()?, i.parse().ok()?)));
                Some(parsed.ok_or_else(|| {
                    WebError::BadRequest(format!("before must be CREATED:ID, not {b:?}"))
                })?)
            }
        };
        Ok(SessionQuery {
            // A technician's own sessions, whatever the form says.
            technician: if viewer.sees_all() {
                some(&self.technician).map(|t| t.to_lowercase())
            } else {
                Some(viewer.email.clone())
            },
            group: some(&self.group),
            address: some(&self.address),
            since_us: day_start(&self.since, 0, "since")?,
            until_us: day_start(&self.until, 1, "until")?,
            words: some(&self.words),
            before,
            limit: PAGE + 1,
        })
    }

    /// This search's address with `before` set to continue after `last`.
    fn next(&self, last: &IndexedSession) -> String {
        let pairs = [
            ("technician", self.technician.as_str()),
            ("group", &self.group),
            ("address", &self.address),
            ("since", &self.since),
            ("until", &self.until),
            ("words", &self.words),
        ];
        let mut url = String::from("/sessions?");
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            url.push_str(&format!("{k}={}&", encode(v)));
        }
        url.push_str(&format!("before={}:{}", last.created_at_us, last.id));
        url
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /sessions`.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Markup, WebError> {
    let query = filters.query(&viewer)?;
    app.catch_up().await?;
    let mut found = app.index.search(&query).await?;
    let more = found.len() > PAGE as usize;
    found.truncate(PAGE as usize);
    let body = html! {
        h2 { "Sessions" }
        form.filters method="get" action="/sessions" id="filters" {
            @if viewer.sees_all() {
                label { "Technician" input type="text" name="technician" id="f-technician" value=(filters.technician); }
            }
            label { "Group" input type="text" name="group" id="f-group" value=(filters.group); }
            label { "End user address" input type="text" name="address" id="f-address" value=(filters.address); }
            label { "From" input type="date" name="since" id="f-since" value=(filters.since); }
            label { "To" input type="date" name="until" id="f-until" value=(filters.until); }
            label { "Words in chat" input type="text" name="words" id="f-words" value=(filters.words); }
            button type="submit" id="search" { "Search" }
            a href="/sessions" { "Clear" }
        }
        @if found.is_empty() {
            p.empty id="no-sessions" { "No session matches." }
        } @else {
            table id="sessions" {
                thead { tr {
                    th { "Created (UTC)" } th { "Technician" } th { "Group" } th { "End user" }
                    th { "Duration" } th { "Ended" } th { "Chat" } th { "Files" } th { "Recordings" } th { "Session" }
                } }
                tbody {
                    @for s in &found {
                        tr data-session=(s.session) {
                            td { (when(s.created_at_us)) }
                            td { (s.technician.as_deref().unwrap_or("")) }
                            td { (s.group.as_deref().unwrap_or("")) }
                            td { (s.address.as_deref().unwrap_or("")) @if let Some(h) = &s.host { " · " (h) } }
                            td { @if let Some(end) = s.ended_at_us {
                                (duration(end.saturating_sub(s.created_at_us).max(0) as u64 / 1000))
                            } @else { span.badge.warn { "open" } } }
                            td { (s.end_reason.as_deref().unwrap_or("")) }
                            td.num { (s.chat_lines) }
                            td.num { (s.files) }
                            td.num { (s.recordings) }
                            td.mono { a href=(format!("/sessions/{}", s.session)) { (s.session) } }
                        }
                    }
                }
            }
        }
        div.pager {
            span { (found.len()) " shown, newest first" }
            @if more {
                @if let Some(last) = found.last() {
                    a href=(filters.next(last)) id="older" { "Older sessions →" }
                }
            }
        }
    };
    Ok(layout("Sessions", Some(&viewer), body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_db::accounts::Role;

    fn viewer(role: Role) -> Viewer {
        Viewer {
            email: "ann@example.com".into(),
            role,
            csrf: String::new(),
            ip: [127, 0, 0, 1].into(),
        }
    }

    #[test]
    fn a_technician_is_held_to_their_own_sessions() {
        let f = Filters {
            technician: "bob@example.com".into(),
            ..Filters::default()
        };
        let q = f.query(&viewer(Role::Technician)).unwrap();
        assert_eq!(q.technician.as_deref(), Some("ann@example.com"));
        let q = f.query(&viewer(Role::Compliance)).unwrap();
        assert_eq!(q.technician.as_deref(), Some("bob@example.com"));
    }

    #[test]
    fn dates_cover_whole_days_and_bad_ones_are_named() {
        let f = Filters {
            since: "2026-12-01".into(),
            until: "2026-12-01".into(),
            ..Filters::default()
        };
        let q = f.query(&viewer(Role::Admin)).unwrap();
        assert_eq!(q.until_us.unwrap() - q.since_us.unwrap(), 86_400_000_000);
        let bad = Filters {
            since: "yesterday".into(),
            ..Filters::default()
        };
        let e = bad.query(&viewer(Role::Admin)).unwrap_err().to_string();
        assert!(e.contains("since") && e.contains("yesterday"), "{e}");
        let bad = Filters {
            before: "x".into(),
            ..Filters::default()
        };
        assert!(bad.query(&viewer(Role::Admin)).is_err());
    }

    #[test]
    fn the_next_page_keeps_the_filters() {
        let f = Filters {
            words: "printer jam&x".into(),
            ..Filters::default()
        };
        let last = IndexedSession {
            id: 7,
            session: uuid::Uuid::nil(),
            technician: None,
            group: None,
            address: None,
            host: None,
            created_at_us: 42,
            ended_at_us: None,
            end_reason: None,
            events: 0,
            chat_lines: 0,
            files: 0,
            recordings: 0,
        };
        assert_eq!(
            f.next(&last),
            "/sessions?words=printer%20jam%26x&before=42:7"
        );
    }
}
