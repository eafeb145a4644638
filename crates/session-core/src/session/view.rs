//! The desktop view: the applet streams its screen (captured, encoded,
//! cut into fragments, paced by the console's acknowledgements); the
//! console puts the updates back together, decodes them for the
//! technician, and hands the very same bytes to a recording.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_event::event::{DesktopViewEnded, DesktopViewStarted};
use audit_event::EventKind;
use recorder::codec::{self, Decoder};
use recorder::cursor::Cursor;
use recorder::stream::{fragments, Reassembler, ScreenStream};
use recorder::{Frame, Source, SourceError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::link::{report, Reporting, Sender};
use super::proto::{Control, POINTER, SCREEN};
use protocol::wire::{Frame as WireFrame, MAX_BODY};

/// A screen to stream, as the applet opens it when a view starts.
pub type ScreenSource = Box<dyn Source + Send>;
/// Opens the screen (e.g. connects to the X display).
pub type OpenScreen = Arc<dyn Fn() -> Result<ScreenSource, SourceError> + Send + Sync>;
/// Where remote input goes, as the applet opens it when control starts.
pub type InputSink = Box<dyn recorder::input::Inject + Send + Sync>;
/// Opens the input sink (e.g. connects to the X display for XTEST).
pub type OpenInput = Arc<dyn Fn() -> Result<InputSink, recorder::input::InputError> + Send + Sync>;

/// The largest screen update the console accepts (a 4K key update is far smaller).
pub const MAX_UPDATE: usize = 64 << 20;

/// A running screen stream on the applet, stopped when dropped.
pub(crate) struct Streaming {
    acks: mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Streaming {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Passes on the console's `ViewAck` or key request.
    pub fn tell(&self, message: Control) {
        let _ = self.acks.send(message);
    }

    /// Starts streaming `screen` over `send` at `fps` frames per second at most.
    pub fn start<S>(screen: ScreenSource, send: Sender<S>, reporting: Reporting, fps: u32) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(stream(
            screen,
            send,
            reporting,
            fps.max(1),
            acks_rx,
            stop.clone(),
        ));
        Self { acks, stop, task }
    }
}

async fn stream<S>(
    screen: ScreenSource,
    send: Sender<S>,
    reporting: Reporting,
    fps: u32,
    mut acks: mpsc::UnboundedReceiver<Control>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (width, height) = screen.size();
    report(
        &reporting,
        EventKind::DesktopViewStarted(DesktopViewStarted { width, height }),
    )
    .await;
    let mut stream = Some(ScreenStream::new(screen));
    let worker = match Worker::start() {
        Ok(worker) => worker,
        Err(e) => {
            stopped(
                &send,
                &reporting,
                0,
                format!("the screen capture could not start: {e}"),
            )
            .await;
            return;
        }
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / fps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_pointer: Option<(i32, i32)> = None;
    let reason = loop {
        tokio::select! {
            _ = stop.cancelled() => break "stopped by the technician".to_owned(),
            message = acks.recv() => match (message, stream.as_mut()) {
                (Some(Control::ViewAck { seq }), Some(s)) => s.acknowledge(seq),
                (Some(Control::ViewKey), Some(s)) => s.want_key(),
                _ => {}
            },
            _ = tick.tick() => {
                let Some(mut s) = stream.take() else { break "the screen stream failed".to_owned() };
                if !s.has_room() {
                    stream = Some(s);
                    continue;
                }
                let t = started.elapsed().as_micros() as u64;
                // Capture and encoding are CPU work: off the async threads.
                let joined = worker.run(move || {
                    let update = s.capture(t);
                    let pointer = s.source_mut().cursor(t);
                    (s, update, pointer)
                })
                .await;
                let Some((s, update, pointer)) = joined else { break "the screen capture stopped".to_owned() };
                stream = Some(s);
                let update = match update {
                    Ok(u) => u,
                    Err(e) => break format!("screen capture failed: {e}"),
                };
                if let Some((seq, bytes)) = update {
                    let mut failed = false;
                    for piece in fragments(seq, &bytes, MAX_BODY) {
                        if send.frame(&WireFrame::with_type(SCREEN, &piece)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break "the session closed".to_owned();
                    }
                }
                if let Ok(Some(c)) = pointer {
                    if c.shape.is_some() || last_pointer != Some((c.x, c.y)) {
                        last_pointer = Some((c.x, c.y));
                        if send.frame(&WireFrame::with_type(POINTER, &c.encode())).await.is_err() {
                            break "the session closed".to_owned();
                        }
                    }
                }
            }
        }
    };
    let updates = stream.as_ref().map(|s| s.sent()).unwrap_or(0);
    stopped(&send, &reporting, updates, reason).await;
}

/// Reports the stream's end: audited first, since `view_ended` tells the
/// console the end is in the audit log, so it may close the session.
async fn stopped<S>(send: &Sender<S>, reporting: &Reporting, updates: u64, reason: String)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    report(
        reporting,
        EventKind::DesktopViewEnded(DesktopViewEnded {
            reason: reason.clone(),
            updates,
        }),
    )
    .await;
    let _ = send.control(&Control::ViewEnded { reason }).await;
}

/// The thread that captures and encodes, one for the whole stream. The
/// blocking pool's threads come and go, and glibc keeps what each freed in
/// that thread's own arena: after a busy minute of full-screen frames the
/// applet held 120 MB it no longer used. One long-lived thread reuses its own.
struct Worker {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Worker {
    fn start() -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("vigil-capture".to_owned())
            // It ends when the stream drops its sender.
            .spawn(move || queue.into_iter().for_each(|job| job()))?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the worker; `None` if the worker is gone.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(job());
            }))
            .ok()?;
        result.await.ok()
    }
}

/// What the technician sees: the latest screen and pointer.
#[derive(Clone, Debug, Default)]
pub struct Screen {
    /// The latest picture, once one has arrived.
    pub frame: Option<Arc<Frame>>,
    /// The pointer, once known.
    pub cursor: Option<Cursor>,
    /// Updates received so far.
    pub updates: u64,
}

/// The console's end of the stream: reassembly, decoding, acknowledgement.
#[derive(Debug)]
pub(crate) struct Viewer {
    reassembler: Reassembler,
    decoder: Decoder,
    screen: watch::Sender<Screen>,
    /// Waiting for a key update (after a decoding failure, or at the start).
    need_key: bool,
}

/// A whole update as the console received it.
pub(crate) struct Received {
    pub seq: u32,
    /// The update, or `None` if it was skipped while waiting for a key.
    pub bytes: Option<Vec<u8>>,
}

impl Viewer {
    pub fn new() -> (Self, watch::Receiver<Screen>) {
        let (screen, rx) = watch::channel(Screen::default());
        let viewer = Self {
            reassembler: Reassembler::new(MAX_UPDATE),
            decoder: Decoder::new(),
            screen,
            need_key: true,
        };
        (viewer, rx)
    }

    /// Takes one fragment. Returns a completed update once decoded; an
    /// error says what was wrong (the caller asks for a key update).
    pub fn fragment(&mut self, bytes: &[u8]) -> Result<Option<Received>, String> {
        let Some((seq, update)) = self.reassembler.push(bytes).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let head = codec::info(&update).map_err(|e| e.to_string())?;
        if self.need_key && !head.key {
            // Acknowledged so the applet's window moves on, but not shown.
            return Ok(Some(Received { seq, bytes: None }));
        }
        match self.decoder.decode(&update) {
            Ok(frame) => {
                self.need_key = false;
                let frame = Arc::new(frame.clone());
                self.screen.send_modify(|s| {
                    s.frame = Some(frame);
                    s.updates += 1;
                });
                Ok(Some(Received {
                    seq,
                    bytes: Some(update),
                }))
            }
            Err(e) => {
                self.need_key = true;
                Err(format!("screen update {seq} does not decode: {e}"))
            }
        }
    }

    /// Takes a cursor update.
    pub fn pointer(&mut self, bytes: &[u8]) -> Result<Cursor, String> {
        let mut cursor = Cursor::decode(bytes).map_err(|e| e.to_string())?;
        self.screen.send_modify(|s| {
            // Keep the last shape: updates carry one only when it changes.
            if cursor.shape.is_none() {
                cursor.shape = s.cursor.as_ref().and_then(|c| c.shape.clone());
            }
            s.cursor = Some(cursor.clone());
        });
        Ok(cursor)
    }
}
