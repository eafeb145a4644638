//! Queries over the log: filters, and keyset paging that streams any number
//! of events in constant memory.

use futures::{Stream, TryStreamExt};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use crate::error::Result;
use crate::record::StoredEvent;
use crate::store::row::columns;
use crate::store::Store;

/// Rows fetched per round trip; bounds the memory a query holds.
pub const PAGE_SIZE: i64 = 1_000;

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
    /// Occurred at or after, microseconds since the epoch.
    pub since_us: Option<i64>,
    /// Occurred before, microseconds since the epoch.
    pub until_us: Option<i64>,
}

/// Streams the events matching `filter` in log order, one page at a time.
pub fn stream(
    store: Store,
    filter: Filter,
) -> impl Stream<Item = Result<StoredEvent>> + Send + 'static {
    futures::stream::try_unfold(Some(0i64), move |after| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let Some(after) = after else {
                return Ok::<_, crate::Error>(None);
            };
            let page = store.page(&filter, after, PAGE_SIZE).await?;
            let next = match page.last() {
                Some(last) if page.len() as i64 == PAGE_SIZE => Some(last.seq),
                _ => None,
            };
            Ok(Some((
                futures::stream::iter(page.into_iter().map(Ok)),
                next,
            )))
        }
    })
    .try_flatten()
}

/// Builds `SELECT … WHERE seq > after AND <filter> ORDER BY seq LIMIT n` for either backend.
pub(crate) fn page_sql<'a, DB>(filter: &'a Filter, after: i64, limit: i64) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(concat!(
        "SELECT ",
        columns!(),
        " FROM audit_events WHERE seq > "
    ));
    q.push_bind(after);
    if let Some(s) = filter.session {
        q.push(" AND session_id = ").push_bind(s);
    }
    if let Some(a) = &filter.actor {
        q.push(" AND actor = ").push_bind(a.as_str());
    }
    if let Some(k) = &filter.kind {
        q.push(" AND kind = ").push_bind(k.as_str());
    }
    if !filter.kinds.is_empty() {
        q.push(" AND kind IN (");
        let mut list = q.separated(", ");
        for k in &filter.kinds {
            list.push_bind(k.as_str());
        }
        q.push(")");
    }
    if let Some(seq) = filter.until_seq {
        q.push(" AND seq <= ").push_bind(seq);
    }
    if let Some(t) = filter.since_us {
        q.push(" AND occurred_at >= ").push_bind(t);
    }
    if let Some(t) = filter.until_us {
        q.push(" AND occurred_at < ").push_bind(t);
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(limit);
    q
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
        let q = page_sql::<sqlx::Postgres>(&f, 0, 10);
        assert_eq!(
            q.sql(),
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND kind = $2 AND occurred_at >= $3 ORDER BY seq LIMIT $4")
        );
        let f = Filter {
            kinds: vec!["a.b".into(), "c.d".into()],
            until_seq: Some(9),
            ..Filter::default()
        };
        let q = page_sql::<sqlx::Postgres>(&f, 0, 10);
        assert_eq!(
            q.sql(),
            concat!("SELECT ", columns!(), " FROM audit_events WHERE seq > $1 AND kind IN ($2, $3) AND seq <= $4 ORDER BY seq LIMIT $5")
        );
    }
}
