//! `audit verify`: walks the whole log, in parallel stretches, and reports
//! the first place where it is not what was written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::chain::{Anchor, BreakKind, ChainBreak, Head, Walker};
use crate::error::{Error, Result};
use crate::record::Hash;
use crate::store::Store;

/// Rows fetched per round trip while verifying.
const PAGE: i64 = 8_192;
/// Below this many events one stretch is quicker than coordinating several.
const PARALLEL_FROM: i64 = 50_000;

/// The outcome of verifying the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked and found intact.
    pub events: u64,
    /// The chain head as recorded by the last append.
    pub head: Head,
    /// `Ok` when intact; otherwise the first break.
    pub outcome: Result<(), ChainBreak>,
}

/// How far a verification has got, readable from another task (e.g. to
/// draw a progress bar). Clones share the same counters.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    checked: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl Progress {
    /// Rows checked so far.
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }
    /// Rows to check in all (0 until known).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Verifies every event; with `anchor`, also that the event at `anchor.seq`
/// still has the hash recorded there earlier (catches a log rewritten whole).
/// `progress` counts the rows as they are checked.
pub async fn verify(
    store: &Store,
    anchor: Option<Anchor>,
    progress: &Progress,
) -> Result<VerifyReport> {
    let stretches = if store.max_seq().await? < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
    };
    verify_in_stretches(store, anchor, stretches, progress).await
}

/// [`verify`], with the log split into `stretches` parts checked concurrently.
pub async fn verify_in_stretches(
    store: &Store,
    anchor: Option<Anchor>,
    stretches: usize,
    progress: &Progress,
) -> Result<VerifyReport> {
    let head = store.head().await?;
    let max_seq = store.max_seq().await?;
    let to = head.seq.max(max_seq).max(anchor.map_or(0, |a| a.seq));
    progress.total.store(to.max(0) as u64, Ordering::Relaxed);
    let stretches = stretches.max(1) as i64;
    let len = (to + stretches - 1) / stretches;
    let mut tasks = Vec::new();
    for i in 0..stretches {
        let from = 1 + i * len;
        let until = ((i + 1) * len).min(to);
        if from > until {
            break;
        }
        let prev = (from == 1).then_some(Hash::GENESIS);
        tasks.push(tokio::spawn(walk(
            store.clone(),
            from,
            until,
            prev,
            anchor,
            progress.checked.clone(),
        )));
    }

    let mut events = 0;
    let mut before: Option<(i64, Hash)> = None;
    let mut outcome = Ok(());
    for task in tasks {
        let (walker, broke) = task
            .await
            .map_err(|e| Error::Task(format!("verifier: {e}")))??;
        events += walker.rows;
        if outcome.is_err() {
            continue;
        }
        // Join this stretch to the last row of the one before it.
        if let (Some((last_seq, last_hash)), Some((first_seq, first_prev))) = (before, walker.first)
        {
            if first_seq == last_seq + 1 && first_prev != last_hash {
                outcome = Err(ChainBreak {
                    seq: first_seq,
                    kind: BreakKind::Relinked,
                });
                continue;
            }
        }
        if let Some(b) = broke {
            outcome = Err(b);
            continue;
        }
        before = walker.last.or(before);
    }

    if outcome.is_ok() && head.seq > 0 {
        outcome = if max_seq > head.seq {
            Err(ChainBreak {
                seq: head.seq + 1,
                kind: BreakKind::BeyondHead { head_seq: head.seq },
            })
        } else if before.is_some_and(|(seq, hash)| seq == head.seq && hash != head.hash) {
            Err(ChainBreak {
                seq: head.seq,
                kind: BreakKind::HeadMismatch { head_seq: head.seq },
            })
        } else {
            Ok(())
        };
    } else if outcome.is_ok() && max_seq > 0 {
        // Rows but an empty head: every row was added outside vigil.
        outcome = Err(ChainBreak {
            seq: 1,
            kind: BreakKind::BeyondHead { head_seq: 0 },
        });
    }
    Ok(VerifyReport {
        events,
        head,
        outcome,
    })
}

/// Walks seqs `from..=to`; returns the walker and the first break, if any.
async fn walk(
    store: Store,
    from: i64,
    to: i64,
    prev: Option<Hash>,
    anchor: Option<Anchor>,
    checked: Arc<AtomicU64>,
) -> Result<(Walker, Option<ChainBreak>)> {
    let mut walker = Walker::new(from, to, prev, anchor);
    let mut cursor = from;
    while cursor <= to {
        let page = store.packed_page(cursor, to, PAGE).await?;
        let Some(&(last, _)) = page.last() else { break };
        cursor = last + 1;
        let full = page.len() as i64 == PAGE;
        let page_len = page.len() as u64;
        // Hashing is CPU work: keep it off the async worker threads.
        let (w, broke) = tokio::task::spawn_blocking(move || {
            let broke = page
                .iter()
                .try_for_each(|(seq, packed)| walker.push(*seq, packed.as_deref()))
                .err();
            (walker, broke)
        })
        .await
        .map_err(|e| Error::Task(format!("verifier: {e}")))?;
        walker = w;
        checked.fetch_add(page_len, Ordering::Relaxed);
        if broke.is_some() {
            return Ok((walker, broke));
        }
        if !full {
            break;
        }
    }
    let broke = walker.finish().err();
    Ok((walker, broke))
}
