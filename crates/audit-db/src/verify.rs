//! `audit verify`: walks the whole log, in parallel stretches, and reports
//! the first place where it is not what was written: a row that does not
//! hash or link, or Merkle tree hashes that differ from the ones its
//! events give.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::archive::Archive;
use crate::chain::{Anchor, BreakKind, ChainBreak, Head, Walker};
use crate::error::{Error, Result};
use crate::merkle;
use crate::record::Hash;
use crate::store::Store;

/// Rows fetched per round trip while verifying.
pub(crate) const PAGE: i64 = 8_192;
/// Below this many events one stretch is quicker than coordinating several.
const PARALLEL_FROM: i64 = 50_000;

/// The outcome of verifying the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked and found intact.
    pub events: u64,
    /// Of those, rows whose body was erased (their leaves are intact).
    pub erased: u64,
    /// Seqs whose events left for archives (their leaves are checked
    /// against the tree; their bodies, by `retention verify`).
    pub archived: u64,
    /// The chain head as recorded by the last append.
    pub head: Head,
    /// In a database made by `vigil retention restore`, the bundles in it
    /// (their events were checked against their signed checkpoints);
    /// empty for a live log.
    pub restored: Vec<String>,
    /// `Ok` when intact; otherwise the first break.
    pub outcome: Result<(), ChainBreak>,
}

/// How far a verification has got, readable from another task (e.g. to
/// draw a progress bar). Clones share the same counters.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub(crate) checked: Arc<AtomicU64>,
    pub(crate) total: Arc<AtomicU64>,
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
    let restorations = crate::restored::restorations(store).await?;
    if !restorations.is_empty() {
        return crate::restored::verify(store, &restorations, progress).await;
    }
    let head = store.head().await?;
    let max_seq = store.max_seq().await?;
    // A log that could not be converted from formats 1 and 2 has no tree
    // (its chain break is what verify reports).
    let check_tree = match store.range_page(1, 1, 1).await?.first() {
        Some(first) => first.format >= crate::encoding::CURRENT_FORMAT,
        None => true,
    };
    let archived: Arc<Vec<(i64, i64)>> = Arc::new(
        Archive::new(store.clone())
            .ranges()
            .await?
            .into_iter()
            .map(|r| (r.first_seq, r.last_seq))
            .collect(),
    );
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
            check_tree.then_some(head.seq),
            archived.clone(),
            progress.checked.clone(),
        )));
    }

    let mut events = 0;
    let mut erased = 0;
    let mut archived = 0;
    let mut before: Option<(i64, Hash)> = None;
    let mut outcome = Ok(());
    for task in tasks {
        let (walker, broke) = task
            .await
            .map_err(|e| Error::Task(format!("verifier: {e}")))??;
        events += walker.rows;
        erased += walker.erased;
        archived += walker.archived;
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

    // An empty head with rows means every row was added outside vigil.
    if outcome.is_ok() {
        outcome = crate::chain::check_end(head, max_seq, before);
    }
    if outcome.is_ok() {
        outcome = tree_beyond(store, check_tree, head.seq).await?;
    }
    Ok(VerifyReport {
        events,
        erased,
        archived,
        head,
        outcome,
        restored: Vec::new(),
    })
}

/// A break if the tree holds hashes past the last event.
async fn tree_beyond(
    store: &Store,
    check_tree: bool,
    last_seq: i64,
) -> Result<Result<(), ChainBreak>> {
    if !check_tree {
        return Ok(Ok(()));
    }
    let size = store.tree_size().await? as i64;
    Ok(if size > last_seq {
        Err(ChainBreak {
            seq: last_seq + 1,
            kind: BreakKind::TreeBeyondLog { last_seq },
        })
    } else {
        Ok(())
    })
}

/// Checks the Merkle tree's stored rows against the leaves of the rows the
/// walker found intact: from the stored right edge before the stretch
/// (which the stretch before checks), the hashes each leaf's append makes
/// are computed again and must be the ones stored.
struct TreeCheck {
    size: u64,
    edge: merkle::Stored,
    /// The head's seq: rows past it are not in the tree (verify names them).
    to: i64,
}

impl TreeCheck {
    /// The check of a stretch starting at seq `from`; `Err(seq)` when the
    /// stored edge before it cannot be read.
    async fn start(store: &Store, from: i64, to: i64) -> Result<std::result::Result<Self, i64>> {
        let size = (from - 1) as u64;
        match store.tree_hashes(&merkle::frontier(size)).await {
            Ok(edge) => Ok(Ok(Self { size, edge, to })),
            Err(Error::Tree(_)) => Ok(Err(from)),
            Err(e) => Err(e),
        }
    }

    /// Checks the rows for `leaves` (the next leaves in order) against
    /// `stored`; the first seq whose stored hashes are missing or differ.
    fn check(&mut self, leaves: &[Hash], stored: &[(i64, Vec<u8>)]) -> Option<i64> {
        let first = self.size as i64 + 1;
        let leaves = &leaves[..(self.to - first + 1).clamp(0, leaves.len() as i64) as usize];
        let nodes = match merkle::append(self.size, leaves, &self.edge) {
            Ok(nodes) => nodes,
            Err(_) => return Some(first),
        };
        if let Some(seq) = merkle::first_mismatch(self.size, &nodes, stored) {
            return Some(seq);
        }
        self.size += leaves.len() as u64;
        self.edge = merkle::edge_after(self.size, &self.edge, &nodes);
        None
    }
}

/// Passes the walker over the archived seqs from where it is up to
/// `until` (inclusive), with their leaves from `tree` (this page's rows of
/// `audit_tree`); it stops at the first seq no archived stretch covers,
/// which the walker then names as missing.
fn pass_archived(
    walker: &mut Walker,
    archived: &[(i64, i64)],
    until: i64,
    tree: &[(i64, Vec<u8>)],
) -> std::result::Result<(), ChainBreak> {
    while walker.next_seq() <= until {
        let seq = walker.next_seq();
        let i = archived.partition_point(|&(_, last)| last < seq);
        let Some(&(_, last)) = archived.get(i).filter(|&&(first, _)| first <= seq) else {
            return Ok(());
        };
        for seq in seq..=last.min(until) {
            let leaf = tree
                .binary_search_by_key(&seq, |(s, _)| *s)
                .ok()
                .and_then(|i| Hash::from_slice(tree[i].1.get(..32)?));
            walker.push_archived(seq, leaf)?;
        }
    }
    Ok(())
}

/// Walks seqs `from..=to`, and checks the tree up to `tree_to` if given;
/// returns the walker and the first break, if any. `archived` is the
/// stretches of seqs that left for archives (first, last), in order.
#[allow(clippy::too_many_arguments)]
async fn walk(
    store: Store,
    from: i64,
    to: i64,
    prev: Option<Hash>,
    anchor: Option<Anchor>,
    tree_to: Option<i64>,
    archived: Arc<Vec<(i64, i64)>>,
    checked: Arc<AtomicU64>,
) -> Result<(Walker, Option<ChainBreak>)> {
    let tree_break = |seq| ChainBreak {
        seq,
        kind: BreakKind::TreeMismatch,
    };
    let mut walker = Walker::new(from, to, prev, anchor);
    let mut tree = None;
    if let Some(tree_to) = tree_to {
        match TreeCheck::start(&store, from, tree_to).await? {
            Ok(check) => tree = Some(check),
            Err(seq) => return Ok((walker, Some(tree_break(seq)))),
        }
    }
    let mut cursor = from;
    // A window of seqs at a time, so that a long archived stretch (no rows,
    // a tree row per seq) is read in bounded pages too.
    while cursor <= to {
        let end = (cursor + PAGE - 1).min(to);
        let page = store.packed_page(cursor, end, PAGE).await?;
        let page_len = (end - cursor + 1) as u64;
        cursor = end + 1;
        let archived = archived.clone();
        // Hashing is CPU work: keep it off the async worker threads.
        let (w, t, broke) = tokio::task::spawn_blocking(move || {
            let chain = page
                .rows
                .iter()
                .try_for_each(|(seq, packed)| {
                    pass_archived(&mut walker, &archived, *seq - 1, &page.tree)?;
                    walker.push(*seq, packed.as_deref())
                })
                .and_then(|()| pass_archived(&mut walker, &archived, end, &page.tree))
                .err();
            // The leaves of the rows before a chain break are checked too:
            // the first break by seq is the one reported.
            let leaves = std::mem::take(&mut walker.leaves);
            let in_tree = tree
                .as_mut()
                .and_then(|t| t.check(&leaves, &page.tree))
                .map(tree_break);
            (walker, tree, in_tree.or(chain))
        })
        .await
        .map_err(|e| Error::Task(format!("verifier: {e}")))?;
        (walker, tree) = (w, t);
        checked.fetch_add(page_len, Ordering::Relaxed);
        if broke.is_some() {
            return Ok((walker, broke));
        }
    }
    let broke = walker.finish().err();
    Ok((walker, broke))
}
