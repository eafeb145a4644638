//! What both engines share: the inner link's halves, sending control
//! messages and files, and reporting audit events without stopping the
//! session when the gateway cannot be reached.

use std::path::Path;
use std::sync::Arc;

use audit_event::event::{ChatMessage, Direction, FileTransferred};
use audit_event::EventKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::files::{Digests, FileError, Hashes};
use super::proto::{self, Control, CHUNK_DATA};
use super::tape::Tape;
use crate::client::{Report, SessionReporter};
use crate::spool::Spool;
use protocol::wire::{Frame, WireError};

/// Bytes read from a file per call while sending it.
const READ_BLOCK: usize = 1 << 20;

/// The inner session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer sent something that is not the inner protocol.
    #[error("inner session protocol error: {0}")]
    Wire(#[from] WireError),
    /// The inner stream failed.
    #[error("inner session connection error: {0}")]
    Io(#[from] std::io::Error),
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The session ended before the answer came.
    #[error("the session ended")]
    Ended,
    /// The technician's group records every session, and no recording is on.
    #[error(
        "your group records every session: start a recording first (/record on, or --record DIR)"
    )]
    RecordingRequired,
    /// The peer sent something the protocol does not allow here (a wrong
    /// answer, a message only the other side sends).
    #[error("the other end broke the session protocol: {0}")]
    Peer(String),
    /// A recording is already on; one at a time.
    #[error("a recording is already on")]
    AlreadyRecording,
    /// The recording could not be finished (the file is kept as written).
    #[error("the recording could not be finished: {0}")]
    Recording(recorder::vrec::VrecError),
    /// A task of this side failed (a panic in a blocking step).
    #[error("an internal task failed: {0}")]
    Task(String),
}

/// The sending half of the inner link, shared by whoever writes.
pub(crate) struct Sender<S> {
    writer: Arc<Mutex<WriteHalf<S>>>,
}

impl<S> Clone for Sender<S> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Sender<S> {
    pub fn new(writer: WriteHalf<S>) -> Self {
        Self {
            writer: Arc::new(Mutex::new(writer)),
        }
    }

    pub async fn frame(&self, frame: &Frame) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(frame.as_bytes()).await?;
        w.flush().await
    }

    pub async fn control(&self, message: &Control) -> std::io::Result<()> {
        self.frame(&proto::control(message)).await
    }

    /// Streams `path` as chunks of `transfer` then `FileDone`, hashing as it
    /// reads, in constant memory. A file that grows or shrinks meanwhile is
    /// sent as read; the digests describe exactly the bytes sent.
    pub async fn file(&self, transfer: Uuid, path: &Path) -> Result<Digests, SessionError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|source| FileError::Io {
                doing: "opening",
                path: path.to_owned(),
                source,
            })?;
        let mut hashes = Hashes::default();
        // Large reads: each read of a tokio file is a trip to the blocking pool.
        let mut buf = vec![0u8; READ_BLOCK];
        loop {
            let n = file.read(&mut buf).await.map_err(|source| FileError::Io {
                doing: "reading",
                path: path.to_owned(),
                source,
            })?;
            if n == 0 {
                break;
            }
            hashes.update(&buf[..n]);
            for piece in buf[..n].chunks(CHUNK_DATA) {
                self.frame(&proto::chunk(transfer, piece)).await?;
            }
        }
        let digests = hashes.finish();
        self.control(&Control::FileDone {
            transfer,
            size: digests.size,
            md5: digests.md5.clone(),
            sha256: digests.sha256.clone(),
        })
        .await?;
        Ok(digests)
    }

    pub async fn shutdown(&self) {
        let _ = self.writer.lock().await.shutdown().await;
    }
}

/// Where one side's audit events go: its session link, and (console) the
/// spool for what the gateway does not acknowledge.
#[derive(Clone, Debug)]
pub(crate) struct Reporting {
    pub reporter: SessionReporter,
    pub spool: Option<Arc<Spool>>,
    pub session: Uuid,
    /// The console's recording, which gets a marker for every event reported.
    pub tape: Option<Arc<std::sync::Mutex<Tape>>>,
    /// Chat text may leave the inner session (the group stores it).
    pub store_chat: bool,
}

/// Reports an audit event. A failure never stops the session: the event is
/// spooled for later delivery if there is a spool, and the user is told.
pub(crate) async fn report(to: &Reporting, kind: EventKind) -> Option<String> {
    let name = kind.type_name();
    // Where the group does not store chat, its text stays inside the
    // session: the gateway gets (and the recording marks) only the length.
    let kind = match kind {
        EventKind::ChatMessage(chat) if !to.store_chat => {
            EventKind::ChatMessage(ChatMessage { text: None, ..chat })
        }
        other => other,
    };
    if let Some(tape) = &to.tape {
        let marked = tape.lock().unwrap_or_else(|e| e.into_inner()).mark(&kind);
        if let Err(e) = marked {
            tracing::warn!("could not mark {name} in the recording: {e}");
        }
    }
    let report = Report::now(&kind).in_session(to.session);
    let error = match to.reporter.report(&report).await {
        Ok(_) => return None,
        Err(e) => e,
    };
    // The caller shows the returned warning; logging it too would say it twice.
    tracing::debug!("could not report {name}: {error}");
    match &to.spool {
        Some(spool) => match spool.add(&report) {
            Ok(()) => Some(format!(
                "the gateway did not acknowledge {name} ({error}); it is spooled and will be resent"
            )),
            Err(e) => Some(format!("{name} was neither acknowledged nor spooled: {e}")),
        },
        None => Some(format!("the audit log did not receive {name}: {error}")),
    }
}

/// The `file.transferred` event of one end's view.
pub(crate) fn transferred(direction: Direction, name: &str, d: &Digests) -> EventKind {
    EventKind::FileTransferred(FileTransferred {
        direction,
        name: name.to_owned(),
        size: d.size,
        md5: d.md5.clone(),
        sha256: d.sha256.clone(),
    })
}

/// The sender's digests as a `FileDone` states them.
pub(crate) fn digests(size: u64, md5: String, sha256: String) -> Digests {
    Digests { size, md5, sha256 }
}
