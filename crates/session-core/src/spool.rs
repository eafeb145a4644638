//! The console's spool: audit events the gateway did not acknowledge (its
//! link dropped, it restarted), kept on disk one JSON object per line until
//! a later connection delivers them. Each keeps its event id, so an event
//! that did arrive before the link dropped is stored once.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use crate::client::{ClientError, Connector, Report, Technician};

/// Events waiting for the gateway, in a file.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    // One writer at a time within the process; the file is not shared
    // between processes (one spool per console).
    lock: Mutex<()>,
}

/// The spool file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("spool {}: {source}", path.display())]
pub struct SpoolError {
    path: PathBuf,
    source: std::io::Error,
}

impl Spool {
    /// The spool at `path` (created when the first event is added).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            lock: Mutex::new(()),
        }
    }

    fn err(&self) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
        move |source| SpoolError {
            path: self.path.clone(),
            source,
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `report` until it is delivered; durable when this returns.
    pub fn add(&self, report: &Report) -> Result<(), SpoolError> {
        let _g = self.guard();
        let line = serde_json::to_string(report).map_err(|e| (self.err())(e.into()))?;
        // Spooled events hold chat text: the file is the technician's alone.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(self.err())?;
        writeln!(file, "{line}").map_err(self.err())?;
        file.sync_all().map_err(self.err())
    }

    /// The events waiting, oldest first. A line cut off by a crash is skipped.
    pub fn pending(&self) -> Result<Vec<Report>, SpoolError> {
        let _g = self.guard();
        self.read()
    }

    fn read(&self) -> Result<Vec<Report>, SpoolError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err((self.err())(e)),
        };
        let mut reports = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(self.err())?;
            match serde_json::from_str(&line) {
                Ok(r) => reports.push(r),
                Err(e) => tracing::warn!("skipping an unreadable spool line: {e}"),
            }
        }
        Ok(reports)
    }

    /// Forgets the delivered events (rewrites the file through a rename).
    fn forget(&self, delivered: &HashSet<Uuid>) -> Result<(), SpoolError> {
        let _g = self.guard();
        let left: Vec<_> = self
            .read()?
            .into_iter()
            .filter(|r| !delivered.contains(&r.id))
            .collect();
        if left.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((self.err())(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.err())?;
        for r in &left {
            let line = serde_json::to_string(r).map_err(|e| (self.err())(e.into()))?;
            writeln!(file, "{line}").map_err(self.err())?;
        }
        file.sync_all().map_err(self.err())?;
        std::fs::rename(&tmp, &self.path).map_err(self.err())
    }

    /// Delivers what is waiting over a technician's control link, oldest
    /// first, and forgets each once acknowledged. Stops at the first failure
    /// (the rest stays for next time). Returns how many were delivered.
    pub async fn deliver(&self, tech: &mut Technician) -> Result<usize, DeliverError> {
        let mut delivered = HashSet::new();
        let mut result = Ok(());
        for report in self.pending()? {
            match tech.report(&report).await {
                Ok(_) => {
                    delivered.insert(report.id);
                }
                Err(ClientError::EventRefused(why)) => {
                    // It will never be accepted: keeping it would block the rest.
                    tracing::warn!("the gateway refused spooled event {}: {why}", report.id);
                    delivered.insert(report.id);
                }
                Err(e) => {
                    result = Err(DeliverError::Client(e));
                    break;
                }
            }
        }
        self.forget(&delivered)?;
        result.map(|()| delivered.len())
    }

    /// Like [`Spool::deliver`]; if the control link is gone (the gateway
    /// restarted), logs in again once through `connector` as `email` and
    /// retries, leaving `tech` on the new link.
    pub async fn deliver_again(
        &self,
        tech: &mut Technician,
        connector: &Connector,
        email: &str,
        password: &str,
    ) -> Result<usize, DeliverError> {
        match self.deliver(tech).await {
            Err(DeliverError::Client(_)) => {
                *tech = connector
                    .login(email, password, None)
                    .await
                    .map_err(DeliverError::Client)?;
                self.deliver(tech).await
            }
            done => done,
        }
    }
}

/// Delivering the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    /// The spool file could not be read or written.
    Spool(#[from] SpoolError),
    #[error("delivering spooled events: {0}")]
    /// The gateway could not be reached or refused.
    Client(ClientError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_event::event::{ChatMessage, Party};
    use audit_event::EventKind;

    fn chat(n: u64) -> Report {
        Report::now(&EventKind::ChatMessage(ChatMessage {
            from: Party::Technician,
            text: None,
            chars: n,
        }))
    }

    #[test]
    fn events_survive_until_forgotten_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.jsonl");
        let spool = Spool::new(&path);
        assert!(spool.pending().unwrap().is_empty());
        let (a, b) = (chat(1), chat(2));
        spool.add(&a).unwrap();
        spool.add(&b).unwrap();
        // A crash in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"tor")
            .unwrap();
        let again = Spool::new(&path);
        assert_eq!(again.pending().unwrap(), vec![a.clone(), b.clone()]);
        again.forget(&HashSet::from([a.id])).unwrap();
        assert_eq!(again.pending().unwrap(), vec![b.clone()]);
        again.forget(&HashSet::from([b.id])).unwrap();
        assert!(!path.exists());
    }
}
