//! Queries over the log: filters, and keyset paging that streams any number
//! of events in constant memory.

use futures::{Stream, TryStreamExt};
use uuid::Uuid;

use crate::error::Result;
use crate::record::StoredEvent;
use crate::store::row::columns;
use crate::store::Store;

/// Events per page of a streamed read: enough to make the per-page
/// statement cost vanish, few enough that the pages in flight stay small.
pub const READ_PAGE: i64 = 1_000;

/// Which events a query returns; every field set narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this session's events.
    pub session: Option<Uuid>,
    /// Only this actor's, as stored (e.g. `technician:ann@example.com`).
    pub actor: Option<String>,
    /// A stored type name such as `login.failed`.
    pub kind: Option<String>,
    /// Any one of these stored type names (empty: any type).
    pub kinds: Vec<String>,
    /// Only events up to this seq (a reader that took the head first
    /// knows everything up to it has been read, whatever matched).
    pub until_seq: Option<i64>,
    /// Only events after this seq (a reader catching up from where it was).
    pub after_seq: Option<i64>,
    /// Occurred at or after, microseconds since the epoch.
    pub since_us: Option<i64>,
    /// Occurred before, microseconds since the epoch.
    pub until_us: Option<i64>,
}

/// Pages read ahead of the consumer: the store reads and decodes the next
/// page while the current one is written out (on another core).
const PAGES_AHEAD: usize = 2;

/// Streams the events matching `filter` in log order, one page at a time.
///
/// A producer (a blocking thread holding one SQLite connection, or a task
/// on the PostgreSQL pool) reads keyset-paged pages into a bounded channel,
/// so memory stays at a few pages whatever the log's size, and reading
/// overlaps with whatever the consumer does with each event. Dropping the
/// stream stops the producer at its next page.
pub fn stream(
    store: Store,
    filter: Filter,
) -> impl Stream<Item = Result<StoredEvent>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(PAGES_AHEAD);
    store.read_pages(&filter, tx);
    futures::stream::unfold(rx, |mut rx| async move {
        let page: Result<Vec<StoredEvent>> = rx.recv().await?;
        Some((page, rx))
    })
    .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
    .try_flatten()
}

impl Filter {
    /// Whether `e` is one of the events this filter selects (what the page
    /// statement's `WHERE` says, for events read from elsewhere).
    pub fn matches(&self, e: &StoredEvent) -> bool {
        self.session.is_none_or(|s| e.session == Some(s))
            && self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.kind.as_ref().is_none_or(|k| *k == e.kind)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.until_seq.is_none_or(|u| e.seq <= u)
            && self.after_seq.is_none_or(|a| e.seq > a)
            && self.since_us.is_none_or(|t| e.occurred_at_us >= t)
            && self.until_us.is_none_or(|t| e.occurred_at_us < t)
    }
}

/// Where readers (listings, reports) get events from: the live log, or the
/// live log with its archive.
pub trait EventSource: Send + Sync {
    /// Every event `filter` matches, in seq order.
    fn events(&self, filter: Filter) -> futures::stream::BoxStream<'static, Result<StoredEvent>>;
}

impl EventSource for Store {
    fn events(&self, filter: Filter) -> futures::stream::BoxStream<'static, Result<StoredEvent>> {
        Box::pin(stream(self.clone(), filter))
    }
}

/// Where read pages go: each is a page of events or the error that ended the read.
pub(crate) type PageSender = tokio::sync::mpsc::Sender<Result<Vec<StoredEvent>>>;

/// A value bound to a page query's placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Uuid(Uuid),
    Text(String),
}

/// Whose SQL a [`PageQuery`] is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// `SELECT … WHERE seq > $1 AND <filter> ORDER BY seq LIMIT $n`, with the
/// filter's values: built once per query, bound once per page by either
/// backend. Placeholders are numbered in the order they appear, because
/// SQLite numbers `$n` parameters by first appearance, not by `n`.
///
/// For SQLite, a list of types and a time range are written so that no
/// index can serve them (`+kind`, `+occurred_at`): SQLite would otherwise
/// read every matching entry of that index after `$1` into a temporary
/// B-tree to sort it by seq, for every page. Scanning seq from `$1` and
/// testing each row is one pass in all. Equalities on one session, actor
/// or type stay indexed: those indexes end in seq, so they already give
/// rows in seq order.
#[derive(Clone, Debug)]
pub(crate) struct PageQuery {
    /// The statement; `$1` is the last seq already read, the last
    /// placeholder the page size.
    pub sql: String,
    /// The values of `$2`, `$3`, … before the page size.
    pub params: Vec<Param>,
    /// The seq the first page starts after.
    pub start: i64,
}

impl PageQuery {
    pub(crate) fn new(filter: &Filter, dialect: Dialect) -> Self {
        // A column SQLite may not use an index for.
        let scanned = |column: &str| match dialect {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => column.to_owned(),
        };
        let mut sql = String::from(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_events WHERE seq > $1"
        ));
        let mut params = Vec::new();
        let mut bind = |sql: &mut String, p: Param| {
            params.push(p);
            sql.push_str(&format!("${}", params.len() + 1));
        };
        if let Some(s) = filter.session {
            sql.push_str(" AND session_id = ");
            bind(&mut sql, Param::Uuid(s));
        }
        if let Some(a) = &filter.actor {
            sql.push_str(" AND actor = ");
            bind(&mut sql, Param::Text(a.clone()));
        }
        if let Some(k) = &filter.kind {
            sql.push_str(" AND kind = ");
            bind(&mut sql, Param::Text(k.clone()));
        }
        if let [kind] = filter.kinds.as_slice() {
            sql.push_str(" AND kind = ");
            bind(&mut sql, Param::Text(kind.clone()));
        } else if !filter.kinds.is_empty() {
            sql.push_str(&format!(" AND {} IN (", scanned("kind")));
            for (i, k) in filter.kinds.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                bind(&mut sql, Param::Text(k.clone()));
            }
            sql.push(')');
        }
        if let Some(seq) = filter.until_seq {
            sql.push_str(" AND seq <= ");
            bind(&mut sql, Param::Int(seq));
        }
        if let Some(t) = filter.since_us {
            sql.push_str(&format!(" AND {} >= ", scanned("occurred_at")));
            bind(&mut sql, Param::Int(t));
        }
        if let Some(t) = filter.until_us {
            sql.push_str(&format!(" AND {} < ", scanned("occurred_at")));
            bind(&mut sql, Param::Int(t));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len() + 2));
        PageQuery {
            sql,
            params,
            start: filter.after_seq.unwrap_or(0).max(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_reach_the_sql() {
        let f = Filter {
            kind: Some("admin.note".into()),
            since_us: Some(5),
            ..Filter::default()
        };
        let q = PageQuery::new(&f, Dialect::Postgres);
        assert_eq!(
            q.sql,
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND kind = $2 AND occurred_at >= $3 ORDER BY seq LIMIT $4")
        );
        assert_eq!(q.params, [Param::Text("admin.note".into()), Param::Int(5)]);
        let f = Filter {
            kinds: vec!["a.b".into(), "c.d".into()],
            until_seq: Some(9),
            ..Filter::default()
        };
        let q = PageQuery::new(&f, Dialect::Postgres);
        assert_eq!(
            q.sql,
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND kind IN ($2, $3) AND seq <= $4 ORDER BY seq LIMIT $5")
        );
        let q = PageQuery::new(&f, Dialect::Sqlite);
        assert_eq!(
            q.sql,
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND +kind IN ($2, $3) AND seq <= $4 ORDER BY seq LIMIT $5")
        );
        let one = Filter {
            kinds: vec!["a.b".into()],
            since_us: Some(1),
            ..Filter::default()
        };
        let q = PageQuery::new(&one, Dialect::Sqlite);
        assert_eq!(
            q.sql,
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND kind = $2 AND +occurred_at >= $3 ORDER BY seq LIMIT $4")
        );
    }
}
