//! Reading the archive as if it were online: the live log's events and the
//! bundles' in one stream, in seq order (`audit query --archive`,
//! `report --archive`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use audit_db::query::{EventSource, Filter};
use audit_db::{Store, StoredEvent};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::bundle::{self, BundleError};

/// Events read ahead per open bundle.
const AHEAD: usize = 1024;

/// The live log of `store` with the bundles of an archive directory.
#[derive(Clone, Debug)]
pub struct WithArchive {
    store: Store,
    bundles: Vec<Span>,
}

#[derive(Clone, Debug)]
struct Span {
    manifest: PathBuf,
    first: i64,
}

impl WithArchive {
    /// The live log of `store` with every bundle in `dir`, which must all
    /// be of one log.
    pub fn open(store: Store, dir: &Path) -> Result<Self, BundleError> {
        let mut bundles: Vec<Span> = bundle::manifests_of_one_log(dir, None)?
            .into_iter()
            .map(|(manifest, m)| Span {
                first: m.first_seq(),
                manifest,
            })
            .collect();
        bundles.sort_by_key(|b| b.first);
        Ok(Self { store, bundles })
    }
}

impl EventSource for WithArchive {
    fn events(&self, filter: Filter) -> BoxStream<'static, audit_db::Result<StoredEvent>> {
        let pending: VecDeque<Span> = self
            .bundles
            .iter()
            .filter(|b| filter.until_seq.is_none_or(|u| b.first <= u))
            .cloned()
            .collect();
        let merge = Merge {
            live: Box::pin(audit_db::query::stream(self.store.clone(), filter.clone())),
            live_head: None,
            live_done: false,
            pending,
            open: Vec::new(),
            filter,
        };
        Box::pin(futures::stream::unfold(merge, |mut m| async move {
            m.next().await.map(|item| (item, m))
        }))
    }
}

struct Merge {
    live: BoxStream<'static, audit_db::Result<StoredEvent>>,
    live_head: Option<StoredEvent>,
    live_done: bool,
    /// Bundles not opened yet, by first seq.
    pending: VecDeque<Span>,
    /// Open bundles: what they send, and their next event.
    open: Vec<(
        mpsc::Receiver<audit_db::Result<StoredEvent>>,
        Option<StoredEvent>,
    )>,
    filter: Filter,
}

impl Merge {
    async fn next(&mut self) -> Option<audit_db::Result<StoredEvent>> {
        if self.live_head.is_none() && !self.live_done {
            match self.live.next().await {
                Some(Ok(e)) => self.live_head = Some(e),
                Some(Err(e)) => return Some(Err(e)),
                None => self.live_done = true,
            }
        }
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].1.is_none() {
                match self.open[i].0.recv().await {
                    Some(Ok(e)) => self.open[i].1 = Some(e),
                    Some(Err(e)) => return Some(Err(e)),
                    None => {
                        self.open.swap_remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
        // A bundle is opened once the events before it are out: most do
        // not overlap, so few are open at once.
        loop {
            let min = self.min_seq();
            let due = self
                .pending
                .front()
                .is_some_and(|b| min.is_none_or(|m| b.first <= m));
            if !due {
                break;
            }
            let Some(span) = self.pending.pop_front() else {
                break;
            };
            let mut rx = open(span, self.filter.clone());
            match rx.recv().await {
                Some(Ok(e)) => self.open.push((rx, Some(e))),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
        let min = self.min_seq()?;
        // The live copy wins where both hold a seq (a bundle its run never
        // committed, whose events are still online).
        for (_, head) in &mut self.open {
            if head.as_ref().is_some_and(|e| e.seq == min)
                && self.live_head.as_ref().is_some_and(|e| e.seq == min)
            {
                *head = None;
            }
        }
        if self.live_head.as_ref().is_some_and(|e| e.seq == min) {
            return self.live_head.take().map(Ok);
        }
        self.open
            .iter_mut()
            .find(|(_, head)| head.as_ref().is_some_and(|e| e.seq == min))
            .and_then(|(_, head)| head.take())
            .map(Ok)
    }

    fn min_seq(&self) -> Option<i64> {
        self.open
            .iter()
            .filter_map(|(_, h)| h.as_ref().map(|e| e.seq))
            .chain(self.live_head.as_ref().map(|e| e.seq))
            .min()
    }
}

/// Reads a bundle's events that `filter` selects on a blocking thread.
fn open(span: Span, filter: Filter) -> mpsc::Receiver<audit_db::Result<StoredEvent>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        let result = bundle::for_each_event(&span.manifest, |event, _| {
            if filter.matches(&event) {
                // The reader went away: stop reading.
                tx.blocking_send(Ok(event))
                    .map_err(|_| "no longer read".to_owned())?;
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(audit_db::Error::Archive {
                bundle: span.manifest,
                reason: e.to_string(),
            }));
        }
    });
    rx
}
