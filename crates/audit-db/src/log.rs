//! The audit log handle: validated, batched, durable appends through one
//! writer task (group commit), and the read side of the store.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::chain::{Anchor, Pending};
use crate::error::{Error, Result};
use crate::event::{Actor, BodiesErased, EventKind, NewEvent, Source};
use crate::query::{self, Filter};
use crate::record::{Receipt, StoredEvent};
use crate::store::{is_transient, DbUrl, OpenMode, Store};
use crate::time_us;
use crate::verify::{self, Progress, VerifyReport};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 8_192;
/// Append requests that may wait for the writer before callers are held back.
const QUEUE: usize = 1_024;
/// Largest payload accepted, in bytes of JSON.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Longest actor or source text accepted, in bytes.
pub const MAX_NAME: usize = 512;
/// Attempts at a batch that fails for a transient reason (lock contention, dropped connection).
const ATTEMPTS: u32 = 6;

/// The audit log: append events, read them back, verify the chain.
/// Cloning shares the same writer task.
#[derive(Clone, Debug)]
pub struct AuditLog {
    store: Store,
    tx: mpsc::Sender<Msg>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    appended: watch::Receiver<i64>,
}

#[derive(Debug)]
enum Msg {
    Append(Request),
    Shutdown,
}

#[derive(Debug)]
struct Request {
    events: Vec<Pending>,
    ack: oneshot::Sender<Result<Vec<Receipt>>>,
}

impl AuditLog {
    /// Opens the store at `url` and starts its writer task.
    pub async fn open(url: &DbUrl, mode: OpenMode) -> Result<Self> {
        Ok(Self::start(Store::open(url, mode).await?))
    }

    /// Starts a writer task over an open store.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (appended_tx, appended) = watch::channel(0);
        let writer = tokio::spawn(run_writer(store.clone(), rx, appended_tx));
        Self {
            store,
            tx,
            writer: Arc::new(Mutex::new(Some(writer))),
            appended,
        }
    }

    /// The seq of the last event this handle's writer made durable (0
    /// before the first), changing after each commit: in-process readers
    /// of new events (the webhook dispatcher) wait on it instead of polling.
    pub fn appended(&self) -> watch::Receiver<i64> {
        self.appended.clone()
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends `events` in order; returns once every one of them is durable.
    /// An event whose id is already in the log is not stored again: its
    /// receipt names the existing place and says `duplicate`.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Receipt>> {
        let events = events
            .into_iter()
            .map(prepare)
            .collect::<Result<Vec<_>>>()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Append(Request { events, ack }))
            .await
            .map_err(|_| Error::WriterGone)?;
        done.await.map_err(|_| Error::WriterGone)?
    }

    /// Appends one event; returns once it is durable.
    pub async fn append_one(&self, event: NewEvent) -> Result<Receipt> {
        let mut receipts = self.append(vec![event]).await?;
        receipts.pop().ok_or(Error::WriterGone)
    }

    /// Erases the bodies (payloads and their salts) of the events at
    /// `seqs`, leaving their leaves, so the chain, the Merkle tree and every
    /// proof stay valid. The erasure is recorded first, as an `audit.erased`
    /// event by `actor` naming the seqs and `reason`, so a body never goes
    /// unrecorded; a crash in between leaves the record and the bodies, and
    /// erasing again finishes the work. Returns the record's receipt and how
    /// many bodies were erased now (bodies erased before are not counted).
    pub async fn erase(
        &self,
        seqs: &[i64],
        actor: Actor,
        source: Source,
        reason: &str,
    ) -> Result<(Receipt, u64)> {
        let head = self.store.head().await?;
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable();
        seqs.dedup();
        if let Some(&bad) = seqs.iter().find(|&&s| s < 1 || s > head.seq) {
            return Err(Error::NoSuchEvent {
                seq: bad,
                last: head.seq,
            });
        }
        let record = NewEvent::now(
            actor,
            source,
            EventKind::BodiesErased(BodiesErased {
                ranges: ranges(&seqs),
                reason: reason.to_owned(),
            }),
        );
        let receipt = self.append_one(record).await?;
        let erased = self.store.erase_bodies(&seqs).await?;
        Ok((receipt, erased))
    }

    /// Streams events matching `filter` in log order, in constant memory.
    pub fn query(
        &self,
        filter: Filter,
    ) -> impl Stream<Item = Result<StoredEvent>> + Send + 'static {
        query::stream(self.store.clone(), filter)
    }

    /// Verifies the whole chain (see [`verify::verify`]).
    pub async fn verify(&self, anchor: Option<Anchor>) -> Result<VerifyReport> {
        verify::verify(&self.store, anchor, &Progress::default()).await
    }

    /// Verifies the whole chain, counting rows into `progress` as it goes.
    pub async fn verify_with_progress(
        &self,
        anchor: Option<Anchor>,
        progress: &Progress,
    ) -> Result<VerifyReport> {
        verify::verify(&self.store, anchor, progress).await
    }

    /// Commits everything submitted so far, stops the writer and closes the
    /// store. Appends after this fail with [`Error::WriterGone`].
    pub async fn close(&self) {
        if let Some(writer) = self.writer.lock().await.take() {
            if self.tx.send(Msg::Shutdown).await.is_ok() {
                // The writer only ends by returning; a panic there is a bug we cannot mend here.
                let _ = writer.await;
            }
        }
        self.store.close().await;
    }
}

/// Sorted, distinct seqs as inclusive `[first, last]` ranges.
/// Sorted seqs as inclusive `[first, last]` ranges, as audit events name them.
pub fn ranges(seqs: &[i64]) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for &seq in seqs {
        match out.last_mut() {
            Some(last) if last[1] + 1 == seq => last[1] = seq,
            _ => out.push([seq, seq]),
        }
    }
    out
}

/// Validates an event and serialises its payload, on the caller's task.
fn prepare(e: NewEvent) -> Result<Pending> {
    let kind = e.kind.type_name();
    let payload = e.kind.payload_json().map_err(|source| Error::Payload {
        kind: kind.to_owned(),
        source,
    })?;
    let bad = |reason: String| Error::BadEvent { id: e.id, reason };
    if payload.len() > MAX_PAYLOAD {
        return Err(bad(format!(
            "{kind} payload is {} bytes, more than {MAX_PAYLOAD}",
            payload.len()
        )));
    }
    for (what, text) in [("actor", e.actor.as_str()), ("source", e.source.as_str())] {
        if text.is_empty() || text.len() > MAX_NAME || text.chars().any(char::is_control) {
            return Err(bad(format!(
                "{what} {text:?} must be 1 to {MAX_NAME} bytes without control characters"
            )));
        }
    }
    Ok(Pending {
        id: e.id,
        session: e.session,
        occurred_at_us: e.occurred_at_us,
        reported_at_us: e.reported_at_us,
        source: e.source.into_string(),
        actor: e.actor.into_string(),
        kind,
        payload,
        salt: crate::encoding::new_salt(),
    })
}

/// The single writer: takes every request waiting, commits them as one
/// batch, and answers each caller only after the commit.
async fn run_writer(store: Store, mut rx: mpsc::Receiver<Msg>, appended: watch::Sender<i64>) {
    let mut stopping = false;
    while !stopping {
        let mut requests = Vec::new();
        let mut events = 0;
        match rx.recv().await {
            None | Some(Msg::Shutdown) => stopping = true,
            Some(Msg::Append(r)) => {
                events += r.events.len();
                requests.push(r);
            }
        }
        while !stopping && events < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Append(r)) => {
                    events += r.events.len();
                    requests.push(r);
                }
                Ok(Msg::Shutdown) => stopping = true,
                Err(_) => break,
            }
        }
        if !requests.is_empty() {
            if let Some(last) = commit(&store, requests).await {
                appended.send_replace(last);
            }
        }
    }
}

/// Commits one batch and answers its callers; the last seq stored, if any.
async fn commit(store: &Store, requests: Vec<Request>) -> Option<i64> {
    let batch: Vec<&Pending> = requests.iter().flat_map(|r| r.events.iter()).collect();
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    let result = loop {
        let now = time_us::from_datetime(OffsetDateTime::now_utc());
        match store.write_batch(&batch, now).await {
            Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "audit append failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => break other,
        }
    };
    drop(batch);
    match result {
        Ok(receipts) => {
            let last = receipts.iter().map(|r| r.seq).max();
            let mut receipts = receipts.into_iter();
            for r in requests {
                let mine = receipts.by_ref().take(r.events.len()).collect();
                // A caller that stopped waiting has no one to tell.
                let _ = r.ack.send(Ok(mine));
            }
            last
        }
        Err(e) => {
            // Refused by design, not failed: the caller reports it.
            if matches!(e, Error::Restored { .. }) {
                tracing::debug!(error = %e, "audit append refused");
            } else {
                tracing::error!(error = %e, events = requests.iter().map(|r| r.events.len()).sum::<usize>(), "audit append failed");
            }
            let message = e.to_string();
            for r in requests {
                let _ = r.ack.send(Err(Error::Append(message.clone())));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn seqs_become_ranges() {
        assert_eq!(ranges(&[]), Vec::<[i64; 2]>::new());
        assert_eq!(ranges(&[4]), [[4, 4]]);
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), [[1, 3], [7, 7], [9, 10]]);
    }
}
