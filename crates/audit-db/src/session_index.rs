//! The sessions index: one row per session (who, which group, the end
//! user's address and computer, when, how it ended, what it held) and the
//! words of its chat (an inverted index), derived from the log so that a page of
//! sessions is found through indexes instead of by reading the log.
//!
//! The index is never a source of truth. It takes in events after the last
//! seq it has seen ([`SessionIndex::catch_up`]); whatever takes events or
//! bodies out of the log (an erasure, a retention archive) empties it in
//! the same transaction, so it never holds text the log no longer holds,
//! and the next catch-up builds it again.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{db, Result};
use crate::query::{self, Filter};
use crate::store::{on_pool, Store};
use crate::{EventKind, StoredEvent};

/// Events taken in per transaction while catching up.
const CHUNK: usize = 5_000;

/// Sessions a page shows at most.
pub const MAX_PAGE: u32 = 500;

/// Words of a search used at most.
const MAX_WORDS: usize = 8;

/// Sessions a word may be said in and still be looked up from its own
/// rows; a commoner one is probed session by session from the newest.
const RARE: i64 = 2_000;

/// The longest word indexed (longer ones are not words people search for).
const MAX_WORD: usize = 64;

/// The sessions index of one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionIndex {
    store: Store,
}

/// A session as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedSession {
    /// The index's own number for it (the tie-breaker of the page order).
    pub id: i64,
    /// The session.
    pub session: Uuid,
    /// The technician who created it (or picked it up).
    pub technician: Option<String>,
    /// The technician's group when it was created.
    pub group: Option<String>,
    /// The end user's address, as the gateway saw it.
    pub address: Option<String>,
    /// The end user's computer, as their applet named it.
    pub host: Option<String>,
    /// When it was created (or, if that event is gone, its first event).
    pub created_at_us: i64,
    /// When it ended.
    pub ended_at_us: Option<i64>,
    /// How it ended.
    pub end_reason: Option<String>,
    /// Its events.
    pub events: i64,
    /// Chat lines.
    pub chat_lines: i64,
    /// File reports (each end reports a file it sent or received).
    pub files: i64,
    /// Recordings finished.
    pub recordings: i64,
}

/// Which sessions to list: every given filter must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionQuery {
    /// Only this technician's.
    pub technician: Option<String>,
    /// Only this group's.
    pub group: Option<String>,
    /// Only those joined from this address.
    pub address: Option<String>,
    /// Created at or after (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Created before.
    pub until_us: Option<i64>,
    /// Words the session's chat holds, all of them (as [`words`] splits them).
    pub words: Option<String>,
    /// Only sessions listed after this one (created earlier, or at the same
    /// time with a lower id): the next page.
    pub before: Option<(i64, i64)>,
    /// Sessions on the page.
    pub limit: u32,
}

/// What one chunk of events changes of one session.
#[derive(Debug, Default)]
struct Delta {
    technician: Option<String>,
    group: Option<String>,
    address: Option<String>,
    host: Option<String>,
    created_at: Option<i64>,
    first_at: i64,
    ended_at: Option<i64>,
    end_reason: Option<String>,
    events: i64,
    words: BTreeSet<String>,
    chat_lines: i64,
    files: i64,
    recordings: i64,
}

impl Delta {
    fn add(&mut self, e: &StoredEvent) {
        if self.events == 0 {
            self.first_at = e.occurred_at_us;
        }
        self.events += 1;
        // A body that does not decode (erased, or of a newer version) still counts as an event.
        let Ok(Some(kind)) = e.decode() else { return };
        match kind {
            EventKind::SessionCreated(c) => {
                self.technician.get_or_insert(c.technician);
                self.group = self.group.take().or(c.group);
                self.created_at = Some(e.occurred_at_us);
            }
            EventKind::SessionPickedUp(p) => {
                self.technician.get_or_insert(p.technician);
            }
            EventKind::SessionJoined(j) => {
                if let Some(ip) = j.ip {
                    self.address = Some(ip.to_string());
                }
            }
            EventKind::SessionEndUser(u) => self.host = Some(u.host),
            EventKind::SessionEnded(end) => {
                self.ended_at = Some(e.occurred_at_us);
                self.end_reason = Some(end.reason.to_string());
            }
            EventKind::ChatMessage(c) => {
                self.chat_lines += 1;
                if let Some(text) = c.text {
                    self.words.extend(words(&text));
                }
            }
            EventKind::FileTransferred(_) => self.files += 1,
            EventKind::RecordingStopped(_) => self.recordings += 1,
            _ => {}
        }
    }
}

/// A row of [`COLUMNS`] as an [`IndexedSession`] (a macro: the two
/// backends' rows are different types).
macro_rules! indexed_from_row {
    ($r:expr) => {{
        let r = $r;
        (|| -> std::result::Result<IndexedSession, sqlx::Error> {
            let session: Vec<u8> = r.try_get(1)?;
            Ok(IndexedSession {
                id: r.try_get(0)?,
                session: Uuid::from_slice(&session).map_err(|e| sqlx::Error::Decode(e.into()))?,
                technician: r.try_get(2)?,
                group: r.try_get(3)?,
                address: r.try_get(4)?,
                host: r.try_get(5)?,
                created_at_us: r.try_get(6)?,
                ended_at_us: r.try_get(7)?,
                end_reason: r.try_get(8)?,
                events: r.try_get(9)?,
                chat_lines: r.try_get(10)?,
                files: r.try_get(11)?,
                recordings: r.try_get(12)?,
            })
        })()
    }};
}

const COLUMNS: &str = "id, session_id, technician, group_name, address, host, created_at, \
                       ended_at, end_reason, events, chat_lines, files, recordings";

const UPSERT: &str = "INSERT INTO session_index (session_id, technician, group_name, address, \
     host, created_at, ended_at, end_reason, events, chat_lines, files, recordings) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (session_id) DO UPDATE SET \
     technician = COALESCE(session_index.technician, excluded.technician), \
     group_name = COALESCE(session_index.group_name, excluded.group_name), \
     address = COALESCE(excluded.address, session_index.address), \
     host = COALESCE(excluded.host, session_index.host), \
     created_at = CASE WHEN $13 THEN excluded.created_at ELSE session_index.created_at END, \
     ended_at = COALESCE(excluded.ended_at, session_index.ended_at), \
     end_reason = COALESCE(excluded.end_reason, session_index.end_reason), \
     events = session_index.events + excluded.events, \
     chat_lines = session_index.chat_lines + excluded.chat_lines, \
     files = session_index.files + excluded.files, \
     recordings = session_index.recordings + excluded.recordings \
     RETURNING id";

/// The statements that empty the index, for the backend named `backend`
/// (`sqlx::Database::NAME`); on SQLite the erasure's `secure_delete`
/// zeroes the freed pages.
pub(crate) fn reset_statements(backend: &str) -> &'static [&'static str] {
    if backend == "SQLite" {
        &[
            "DELETE FROM session_words",
            "DELETE FROM session_index",
            "UPDATE session_index_head SET seq = 0",
        ]
    } else {
        // TRUNCATE: the rows leave the heap at once, not at the next VACUUM.
        &[
            "TRUNCATE session_words, session_index",
            "UPDATE session_index_head SET seq = 0",
        ]
    }
}

/// Empties the index inside `conn`'s transaction (see [`reset_statements`]).
pub(crate) async fn reset_with<DB>(conn: &mut DB::Connection) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    for sql in reset_statements(DB::NAME) {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(db("emptying the sessions index"))?;
    }
    Ok(())
}

impl SessionIndex {
    /// The index kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The last seq the index has taken in.
    pub async fn seq(&self) -> Result<i64> {
        let sql = "SELECT seq FROM session_index_head WHERE one = 1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .fetch_one(pool).await.map_err(db("reading the sessions index's head"))?))
    }

    /// Takes in every event after the last one it has, a chunk per
    /// transaction; returns the events taken in. Another process catching
    /// up at the same time, or an erasure emptying the index meanwhile,
    /// makes a chunk's commit find another head: that chunk is dropped and
    /// the catch-up stops, leaving the index as the other left it.
    pub async fn catch_up(&self) -> Result<u64> {
        let mut head = self.seq().await?;
        let mut events = std::pin::pin!(query::stream(
            self.store.clone(),
            Filter {
                after_seq: Some(head),
                ..Filter::default()
            },
        ));
        let mut taken = 0u64;
        let mut chunk: BTreeMap<Uuid, Delta> = BTreeMap::new();
        let mut last = head;
        loop {
            let next = events.try_next().await?;
            if let Some(e) = &next {
                last = e.seq;
                if let Some(session) = e.session {
                    chunk.entry(session).or_default().add(e);
                }
                taken += 1;
            }
            if last > head && (next.is_none() || taken.is_multiple_of(CHUNK as u64)) {
                if !self.apply(head, last, std::mem::take(&mut chunk)).await? {
                    return Ok(taken);
                }
                head = last;
            }
            if next.is_none() {
                return Ok(taken);
            }
        }
    }

    /// Applies one chunk and moves the head from `from` to `to`, in one
    /// transaction; `false` if the head was no longer `from`.
    async fn apply(&self, from: i64, to: i64, chunk: BTreeMap<Uuid, Delta>) -> Result<bool> {
        const DOING: &str = "updating the sessions index";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db(DOING))?;
            // First, so that the write lock is taken before anything is read.
            let moved = sqlx::query("UPDATE session_index_head SET seq = $1 WHERE seq = $2")
                .bind(to)
                .bind(from)
                .execute(&mut *tx)
                .await
                .map_err(db(DOING))?
                .rows_affected();
            if moved != 1 {
                return Ok(false);
            }
            for (session, d) in &chunk {
                let id: i64 = sqlx::query_scalar(UPSERT)
                    .bind(&session.as_bytes()[..])
                    .bind(&d.technician)
                    .bind(&d.group)
                    .bind(&d.address)
                    .bind(&d.host)
                    .bind(d.created_at.unwrap_or(d.first_at))
                    .bind(d.ended_at)
                    .bind(&d.end_reason)
                    .bind(d.events)
                    .bind(d.chat_lines)
                    .bind(d.files)
                    .bind(d.recordings)
                    .bind(d.created_at.is_some())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db(DOING))?;
                for word in &d.words {
                    sqlx::query(
                        "INSERT INTO session_words (word, session) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(word)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(DOING))?;
                }
            }
            tx.commit().await.map_err(db(DOING))?;
            Ok(true)
        })
    }

    /// The sessions `q` selects, newest first.
    pub async fn search(&self, q: &SessionQuery) -> Result<Vec<IndexedSession>> {
        let mut sql = format!("SELECT {COLUMNS} FROM session_index WHERE 1 = 1");
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        let mut n = 0;
        let mut param = |sql: &mut String| {
            n += 1;
            sql.push_str(&format!("${n}"));
        };
        for (column, value) in [
            ("technician", &q.technician),
            ("group_name", &q.group),
            ("address", &q.address),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = "));
                param(&mut sql);
                texts.push(v.clone());
            }
        }
        if let Some(t) = q.since_us {
            sql.push_str(" AND created_at >= ");
            param(&mut sql);
            ints.push(t);
        }
        if let Some(t) = q.until_us {
            sql.push_str(" AND created_at < ");
            param(&mut sql);
            ints.push(t);
        }
        if let Some((created, id)) = q.before {
            sql.push_str(" AND (created_at < ");
            param(&mut sql);
            ints.push(created);
            sql.push_str(" OR (created_at = ");
            param(&mut sql);
            ints.push(created);
            sql.push_str(" AND id < ");
            param(&mut sql);
            ints.push(id);
            sql.push_str("))");
        }
        // The rarest word, if rare, picks the candidates; every other word
        // (and a common rarest one) is probed per session, from the newest
        // down, so a page of a common word stops at the page's end.
        let mut searched: Vec<String> = q
            .words
            .as_deref()
            .map(words)
            .into_iter()
            .flatten()
            .collect();
        searched.sort_unstable();
        searched.dedup();
        searched.truncate(MAX_WORDS);
        let mut counted = Vec::with_capacity(searched.len());
        for w in searched {
            counted.push((self.sessions_saying(&w).await?, w));
        }
        counted.sort_unstable();
        let mut texts_after = Vec::new();
        for (i, (count, word)) in counted.into_iter().enumerate() {
            if i == 0 && count <= RARE {
                sql.push_str(" AND id IN (SELECT session FROM session_words WHERE word = ");
            } else {
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM session_words \
                     WHERE session = session_index.id AND word = ",
                );
            }
            param(&mut sql);
            sql.push(')');
            texts_after.push(word);
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ");
        let limit = i64::from(q.limit.clamp(1, MAX_PAGE));
        param(&mut sql);
        let rows = on_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            for t in &texts {
                query = query.bind(t.as_str());
            }
            for v in &ints {
                query = query.bind(*v);
            }
            for w in &texts_after {
                query = query.bind(w.as_str());
            }
            query = query.bind(limit);
            let rows = query.fetch_all(pool).await.map_err(db("searching the sessions index"))?;
            rows.iter().map(|r| indexed_from_row!(r)).collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db("reading the sessions index"))?
        });
        Ok(rows)
    }

    /// In how many sessions `word` is said, counted up to just past [`RARE`].
    async fn sessions_saying(&self, word: &str) -> Result<i64> {
        let sql =
            "SELECT COUNT(*) FROM (SELECT 1 FROM session_words WHERE word = $1 LIMIT $2) AS w";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(word)
            .bind(RARE + 1)
            .fetch_one(pool).await.map_err(db("counting a word's sessions"))?))
    }

    /// The index's row of `session`, if it has one.
    pub async fn get(&self, session: Uuid) -> Result<Option<IndexedSession>> {
        let sql = format!("SELECT {COLUMNS} FROM session_index WHERE session_id = $1");
        let found = on_pool!(self, pool => sqlx::query(&sql)
            .bind(&session.as_bytes()[..])
            .fetch_optional(pool)
            .await
            .map_err(db("reading the sessions index"))?
            .map(|r| indexed_from_row!(r))
            .transpose()
            .map_err(db("reading the sessions index"))?);
        Ok(found)
    }
}

/// The words of `text` as the index keeps them: lower case, split at
/// anything but letters, digits and the `.`, `-`, `_`, `@` inside a word
/// (so addresses, versions and names stay whole), at most [`MAX_WORD`]
/// characters. A search splits what is typed the same way, so nothing
/// typed is read as syntax.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let inner = |c: char| matches!(c, '.' | '-' | '_' | '@');
    text.split(move |c: char| !(c.is_alphanumeric() || inner(c)))
        .map(move |w| w.trim_matches(inner))
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD)
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_as_people_read_them() {
        let w: Vec<String> =
            words("The Printer... says: OFFLINE (v1.2-beta) ann@example.com!").collect();
        assert_eq!(
            w,
            [
                "the",
                "printer",
                "says",
                "offline",
                "v1.2-beta",
                "ann@example.com"
            ]
        );
        let w: Vec<String> = words("\"OR* ( x AND \u{fc}ber").collect();
        assert_eq!(w, ["or", "x", "and", "\u{fc}ber"]);
        assert_eq!(words(&"x".repeat(65)).count(), 0);
    }
}
