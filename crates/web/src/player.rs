//! Recordings played in the browser without conversion. The server reads
//! the `.vrec` with the recorder's own decoder, from the key point before
//! the wanted time, and streams what changes as PNG pieces with their times
//! (`stream`); `assets/player.js` draws them on a canvas at the playback
//! speed, and seeks by asking for a stream from another time. Before any
//! picture is sent, the file's SHA-256 is compared with the one its
//! `recording.stopped` event holds: an altered file is refused with that
//! verdict; a file the log never saw finished plays up to its last whole
//! chunk, and says so.
//!
//! The stream is a sequence of records, little-endian:
//!
//! ```text
//! 'P' t:u64 x:u16 y:u16 w:u16 h:u16 len:u32 png     pixels at (x, y) from time t (µs)
//! 'C' t:u64 x:i32 y:i32 visible:u8 shape:u64        the pointer (its hot spot) and shape
//! 'S' shape:u64 hot_x:u16 hot_y:u16 len:u32 png     a pointer shape
//! 'E' code:u8 len:u32 text                          the end: 0 complete, 1 cut off, 2 failed
//! ```
//!
//! The first picture is the whole screen as it is at the asked time. Above
//! ×1, the updates of one display refresh (1/60 s at that speed) are merged
//! into one picture of what they changed, as the screen is after the last
//! of them: the browser would draw them in the same refresh anyway. Large
//! pictures come as bands, encoded and decoded in parallel.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use audit_db::event::RecordExported;
use audit_db::EventKind;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use recorder::codec::{self, Applied};
use recorder::cursor::Cursor;
use recorder::frame::Frame;
use recorder::vrec::reader::{Entry, Index, Target};
use recorder::vrec::{Ending, Recording};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, WebError};
use crate::pages::{layout, when};
use crate::visit::Viewer;
use crate::{access, App};

/// Stream bytes buffered before they are handed to the connection.
const FLUSH: usize = 256 * 1024;
/// Buffers queued ahead of a slow connection (the decoder then waits).
const AHEAD: usize = 8;

/// Recordings' SHA-256, by path, size and modification time: a file is
/// hashed once however often it is opened, and again once it changes.
#[derive(Debug, Default)]
pub(crate) struct Digests(Mutex<HashMap<(PathBuf, u64, SystemTime), String>>);

impl Digests {
    fn of(&self, path: &FsPath) -> Result<(u64, String), WebError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| WebError::NotFound(format!("recording file {}: {e}", path.display())))?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let k = (path.to_owned(), meta.len(), modified);
        if let Some(sha) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&k) {
            return Ok((meta.len(), sha.clone()));
        }
        let (size, sha) = recorder::vrec::integrity::digest(path).map_err(WebError::internal)?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, sha.clone());
        Ok((size, sha))
    }
}

/// A recording of a session, found through the log.
struct Located {
    path: PathBuf,
    /// Size and SHA-256 its `recording.stopped` event holds, if there is one.
    logged: Option<(u64, String)>,
}

/// What the file's digest says against the log.
#[derive(Clone, Debug, Serialize)]
struct Verdict {
    /// `verified`, `unfinished` or `altered`.
    state: &'static str,
    /// A sentence for the badge.
    text: String,
    /// The file's SHA-256.
    sha256: String,
}

fn verdict(located: &Located, size: u64, sha: &str) -> Verdict {
    let (state, text) = match &located.logged {
        Some((logged_size, logged_sha)) if logged_sha == sha && *logged_size == size => (
            "verified",
            "SHA-256 matches its recording.stopped event".to_owned(),
        ),
        Some((logged_size, logged_sha)) => (
            "altered",
            format!(
                "the file ({size} bytes, SHA-256 {sha}) is not the one the log recorded \
                 ({logged_size} bytes, SHA-256 {logged_sha})"
            ),
        ),
        None => (
            "unfinished",
            "the log holds no recording.stopped for it: it was never finished".to_owned(),
        ),
    };
    Verdict {
        state,
        text,
        sha256: sha.to_owned(),
    }
}

/// A recording id as the header and the log hold it: letters, digits, `-`, `_`, `.`.
fn check_id(id: &str) -> Result<(), WebError> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(WebError::BadRequest(format!(
            "{:?} is not a recording id",
            id.chars().take(100).collect::<String>()
        )))
    }
}

/// Finds `recording` of `session` where the log says it was written (or,
/// moved, by its file name in a configured directory). The id is compared
/// with the log's, never joined into a path; the file must be a recording
/// whose header names the same id and session.
async fn locate(
    app: &App,
    viewer: &Viewer,
    session: Uuid,
    recording: &str,
) -> Result<Located, WebError> {
    check_id(recording)?;
    let (_, events) = crate::pages::load_session(app, viewer, session).await?;
    let mut path = None;
    let mut logged = None;
    for e in &events {
        match e.decode() {
            Ok(Some(EventKind::RecordingStarted(r))) if r.recording == recording => {
                path.get_or_insert(r.path);
            }
            Ok(Some(EventKind::RecordingStopped(r))) if r.recording == recording => {
                logged = Some((r.size, r.sha256));
                path = Some(r.path);
            }
            _ => {}
        }
    }
    let not_found = || WebError::NotFound(format!("recording {recording} of session {session}"));
    let logged_path = PathBuf::from(path.ok_or_else(not_found)?);
    let mut candidates = vec![logged_path.clone()];
    if let Some(name) = logged_path.file_name() {
        candidates.extend(app.config.recordings.iter().map(|d| d.join(name)));
    }
    let path = candidates
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "vrec") && p.is_file())
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "the file of recording {recording} ({} is not there, nor in the portal's --recordings directories)",
                logged_path.display()
            ))
        })?;
    Ok(Located { path, logged })
}

/// Opens a located recording and checks its header against the request.
fn open(located: &Located, session: Uuid, recording: &str) -> Result<Recording, WebError> {
    let rec = Recording::open(&located.path)
        .map_err(|e| WebError::Altered(format!("the file cannot be read as a recording: {e}")))?;
    if rec.header.recording != recording || rec.header.session != session.to_string() {
        return Err(WebError::Altered(format!(
            "the file at {} holds recording {} of session {:?}, not this one",
            located.path.display(),
            rec.header.recording,
            rec.header.session
        )));
    }
    Ok(rec)
}

/// Finds, opens and judges a recording; an altered one is refused.
async fn checked(
    app: &Arc<App>,
    viewer: &Viewer,
    session: Uuid,
    recording: &str,
) -> Result<(Located, Verdict), WebError> {
    let located = locate(app, viewer, session, recording).await?;
    let (path, hashing) = (located.path.clone(), app.clone());
    // Hashing reads the whole file: off the async threads.
    let (size, sha) = tokio::task::spawn_blocking(move || hashing.digests.of(&path))
        .await
        .map_err(WebError::internal)??;
    let verdict = verdict(&located, size, &sha);
    if verdict.state == "altered" {
        return Err(WebError::Altered(verdict.text));
    }
    Ok((located, verdict))
}

/// `GET /sessions/{id}/recordings/{recording}`: the player.
pub(crate) async fn page(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((session, recording)): Path<(Uuid, String)>,
) -> Result<Markup, WebError> {
    check_id(&recording)?;
    crate::pages::load_session(&app, &viewer, session).await?;
    let api = format!("/api/sessions/{session}/recordings/{recording}");
    let body = html! {
        h2 { "Recording " span.mono { (recording) } }
        p { a href=(format!("/sessions/{session}")) { "← Session " (session) } }
        div.player id="player" data-api=(api) {
            div.stage {
                canvas id="screen" width="16" height="9" {}
                canvas id="pointer" width="16" height="9" {}
            }
            div.controls {
                button type="button" id="play" disabled { "Play" }
                label { "Speed "
                    select id="speed" {
                        option value="1" selected { "×1" }
                        option value="2" { "×2" }
                        option value="4" { "×4" }
                        option value="8" { "×8" }
                    }
                }
                div.timeline id="timeline" { input type="range" id="seek" min="0" max="0" step="1000" value="0"; }
                span id="clock" { "0:00 / 0:00" }
                span.badge id="badge" { "checking…" }
                a.button id="download" href=(format!("/sessions/{session}/recordings/{recording}/video.mp4")) { "Download MP4" }
            }
            p id="player-note" {}
        }
        h3 { "Markers" }
        ol.markers id="markers" {}
        script src="/assets/player.js" defer {}
    };
    Ok(layout("Recording", Some(&viewer), body))
}

#[derive(Serialize)]
struct MarkerJson<'a> {
    t: u64,
    kind: &'a str,
    text: &'a str,
}

/// `GET /api/.../info`: what the player needs before the first picture;
/// opening the player is the access the log records.
pub(crate) async fn info(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((session, recording)): Path<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let (located, verdict) = checked(&app, &viewer, session, &recording).await?;
    let rec = open(&located, session, &recording)?;
    access::viewed(&app, &viewer, Some(session), "recording", &recording).await?;
    let Index {
        duration_us,
        frames,
        seek,
        markers,
        ..
    } = &rec.index;
    let ending = match &rec.ending {
        Ending::Complete => None,
        Ending::Truncated {
            valid_len,
            file_len,
            reason,
        } => Some(format!(
            "the file is cut off ({reason}): it plays up to its last whole chunk ({valid_len} of {file_len} bytes)"
        )),
    };
    let body = serde_json::json!({
        "recording": recording,
        "session": session,
        "width": rec.header.width,
        "height": rec.header.height,
        "started": when(rec.header.started_us),
        "duration_us": duration_us,
        "frames": frames,
        "key_points": seek.iter().map(|p| p.timestamp_us).collect::<Vec<_>>(),
        "markers": markers.iter().map(|m| MarkerJson { t: m.timestamp_us, kind: &m.kind, text: &m.text }).collect::<Vec<_>>(),
        "verdict": verdict,
        "cut_off": ending,
    });
    Ok(axum::Json(body).into_response())
}

/// `GET /api/.../stream?from=µs&speed=N`'s query.
#[derive(Debug, Deserialize)]
pub(crate) struct From {
    #[serde(default)]
    from: u64,
    /// The playback speed the pictures are for (1 to 8).
    #[serde(default = "one")]
    speed: u32,
}

fn one() -> u32 {
    1
}

/// A browser shows at most this many pictures a second.
const DISPLAY_HZ: u64 = 60;

/// The recording time one display refresh covers at `speed`: updates
/// within it are drawn in the same refresh anyway, so above ×1 they are
/// sent as one picture of their union, as it is after the last of them.
fn merge_window(speed: u32) -> u64 {
    match speed.clamp(1, 8) {
        1 => 0,
        s => u64::from(s) * 1_000_000 / DISPLAY_HZ,
    }
}

/// `GET /api/.../stream`: the pictures from `from` on (see the module's
/// documentation for the records).
pub(crate) async fn stream(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((session, recording)): Path<(Uuid, String)>,
    Query(q): Query<From>,
) -> Result<Response, ApiError> {
    let (located, _) = checked(&app, &viewer, session, &recording).await?;
    let rec = open(&located, session, &recording)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            buf: Vec::new(),
            tx,
        };
        let result = produce(&rec, q.from, merge_window(q.speed), &mut out);
        let (code, text) = match (&result, &rec.ending) {
            (Err(e), _) if e == "gone" => return,
            (Err(e), _) => (2u8, e.clone()),
            (Ok(()), Ending::Complete) => (0, String::new()),
            (Ok(()), Ending::Truncated { reason, .. }) => (1, format!("cut off: {reason}")),
        };
        out.buf.push(b'E');
        out.buf.push(code);
        out.buf
            .extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.buf.extend_from_slice(text.as_bytes());
        let _ = out.flush();
    });
    let body = Body::from_stream(tokio_stream(rx));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

/// The stream's buffer and where it goes.
struct Out {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Out {
    /// Hands the buffer over; `Err("gone")` once the browser went away.
    fn flush(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(bytes))
            .map_err(|_| "gone".to_owned())
    }

    /// The parts `rects` of `frame`, shown from time `t`.
    fn pictures(
        &mut self,
        t: u64,
        frame: &Frame,
        rects: &[(usize, usize, usize, usize)],
    ) -> Result<(), String> {
        let pieces = pieces(rects);
        for ((x, y, w, h), png) in pieces.iter().zip(encode_all(frame, &pieces)) {
            let png = png.map_err(|e| format!("encoding a picture: {e}"))?;
            self.buf.push(b'P');
            self.buf.extend_from_slice(&t.to_le_bytes());
            for v in [x, y, w, h] {
                self.buf.extend_from_slice(&(*v as u16).to_le_bytes());
            }
            self.buf
                .extend_from_slice(&(png.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(&png);
        }
        Ok(())
    }

    fn pointer(&mut self, c: &Cursor, shape: u64) -> Result<(), String> {
        if let Some(s) = &c.shape {
            let mut png = Vec::new();
            s.write_png(&mut png)
                .map_err(|e| format!("encoding a pointer: {e}"))?;
            self.buf.push(b'S');
            self.buf.extend_from_slice(&s.serial.to_le_bytes());
            self.buf.extend_from_slice(&s.hot_x.to_le_bytes());
            self.buf.extend_from_slice(&s.hot_y.to_le_bytes());
            self.buf
                .extend_from_slice(&(png.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(&png);
        }
        self.buf.push(b'C');
        self.buf.extend_from_slice(&c.timestamp_us.to_le_bytes());
        self.buf.extend_from_slice(&c.x.to_le_bytes());
        self.buf.extend_from_slice(&c.y.to_le_bytes());
        self.buf.push(u8::from(c.visible));
        self.buf.extend_from_slice(&shape.to_le_bytes());
        Ok(())
    }
}

/// Pixels a piece holds at most: a larger rectangle is cut into bands,
/// encoded (and decoded by the browser) in parallel.
const PIECE: usize = 1920 * 136;

/// `rects` with each large one cut into horizontal bands of at most [`PIECE`] pixels.
fn pieces(rects: &[(usize, usize, usize, usize)]) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::with_capacity(rects.len());
    for &(x, y, w, h) in rects {
        let rows = (PIECE / w.max(1)).max(1);
        let mut top = y;
        while top < y + h {
            let n = rows.min(y + h - top);
            out.push((x, top, w, n));
            top += n;
        }
    }
    out
}

/// Each piece of `frame` as a PNG, on as many threads as the machine has
/// when there is enough to share.
fn encode_all(
    frame: &Frame,
    pieces: &[(usize, usize, usize, usize)],
) -> Vec<Result<Vec<u8>, png::EncodingError>> {
    let area: usize = pieces.iter().map(|(_, _, w, h)| w * h).sum();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || pieces.len() < 2 || area < PIECE {
        return pieces.iter().map(|&r| crop_png(frame, r)).collect();
    }
    // Shared out in turn, so that each thread gets bands of every size.
    let mut done: Vec<Option<Result<Vec<u8>, png::EncodingError>>> =
        pieces.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(pieces.len()))
            .map(|k| {
                scope.spawn(move || {
                    (k..pieces.len())
                        .step_by(threads)
                        .map(|i| (i, crop_png(frame, pieces[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            // A worker panics only if the encoder does; its pieces then stay empty.
            for (i, png) in worker.join().unwrap_or_default() {
                done[i] = Some(png);
            }
        }
    });
    done.into_iter()
        .map(|png| png.unwrap_or(Err(png::EncodingError::LimitsExceeded)))
        .collect()
}

/// A part of `frame` as an RGBA PNG, fast rather than small.
fn crop_png(
    frame: &Frame,
    (x, y, w, h): (usize, usize, usize, usize),
) -> Result<Vec<u8>, png::EncodingError> {
    let stride = frame.width as usize * 4;
    let mut rgba = Vec::with_capacity(w * h * 4);
    for row in y..y + h {
        let line = &frame.pixels[row * stride + x * 4..row * stride + (x + w) * 4];
        rgba.extend(line.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0], 255]));
    }
    let mut png = Vec::with_capacity(rgba.len() / 8);
    let mut encoder = png::Encoder::new(&mut png, w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgba)?;
    writer.finish()?;
    Ok(png)
}

/// The rectangles `tiles` cover: per row of tiles, from its first changed
/// tile to its last, with rows of the same span joined.
fn rects(width: u32, height: u32, tiles: &[usize]) -> Vec<(usize, usize, usize, usize)> {
    let cols = (width as usize).div_ceil(codec::TILE);
    let mut spans: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
    for &t in tiles {
        let (row, col) = (t / cols, t % cols);
        let span = spans.entry(row).or_insert((col, col));
        span.0 = span.0.min(col);
        span.1 = span.1.max(col);
    }
    let mut out: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut last: Option<(usize, (usize, usize))> = None;
    for (row, span) in spans {
        let (x, y, _, h) = codec::tile_rect(width, height, row * cols + span.0);
        let (x1, _, w1, _) = codec::tile_rect(width, height, row * cols + span.1);
        let w = x1 + w1 - x;
        match (last, out.last_mut()) {
            (Some((prev, prev_span)), Some(r)) if prev + 1 == row && prev_span == span => r.3 += h,
            _ => out.push((x, y, w, h)),
        }
        last = Some((row, span));
    }
    out
}

/// Updates received but not yet sent, merged (see [`merge_window`]).
#[derive(Default)]
struct Merging {
    /// The first one's time, if any is held.
    first: Option<u64>,
    /// The last one's time: the picture's.
    last: u64,
    /// Tiles any of them changed.
    tiles: Vec<usize>,
    /// One of them was a key update (the whole screen is sent).
    key: bool,
    /// Pointer records that came meanwhile, sent after the picture.
    pointers: Vec<(Cursor, u64)>,
}

impl Merging {
    /// Sends what is held: the changed part of `frame`, then the pointers.
    fn send(&mut self, out: &mut Out, frame: Option<&Frame>) -> Result<(), String> {
        if let (Some(_), Some(frame)) = (self.first.take(), frame) {
            let (width, height) = (frame.width, frame.height);
            let rects = if self.key {
                vec![(0, 0, width as usize, height as usize)]
            } else {
                rects(width, height, &self.tiles)
            };
            out.pictures(self.last, frame, &rects)?;
        }
        self.tiles.clear();
        self.key = false;
        for (c, serial) in std::mem::take(&mut self.pointers) {
            out.pointer(&c, serial)?;
        }
        Ok(())
    }
}

/// Writes the stream of `rec` from `from` into `out`, merging the updates
/// within each `window` of recording time (0: none).
fn produce(rec: &Recording, from: u64, window: u64, out: &mut Out) -> Result<(), String> {
    let from = from.min(rec.index.duration_us);
    let (width, height) = (rec.header.width, rec.header.height);
    let full = (0, 0, width as usize, height as usize);
    // The screen at `from` first, found the quick way (a key point with only
    // the cache slots it reads restored): a seek shows it while the stream
    // behind it, which needs the whole cache, is still being prepared.
    let started = std::time::Instant::now();
    let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1e3;
    let mut pictured = match rec.frame(Target::Time(from)) {
        Ok(found) => {
            let found_ms = ms(started);
            out.pictures(from, &found.frame, &[full])?;
            out.flush()?;
            tracing::debug!(
                "player: the picture at {from} µs found in {found_ms:.0} ms, sent after {:.0} ms",
                ms(started)
            );
            true
        }
        Err(_) => false,
    };
    let resuming = std::time::Instant::now();
    let resumed = rec.resume(from).map_err(|e| e.to_string())?;
    tracing::debug!("player: the stream resumed in {:.0} ms", ms(resuming));
    let mut decoder = resumed.decoder;
    let mut cursor = resumed.cursor;
    let mut shape = resumed.shape;
    let mut serial = shape
        .as_ref()
        .and_then(|s| s.shape.as_ref())
        .map_or(0, |s| s.serial);
    // Past `from`: every change is sent as it comes.
    let mut live = false;
    // What is on screen at `from` (the picture if it is not out yet), once.
    let go_live = |out: &mut Out,
                   frame: Option<&Frame>,
                   pictured: &mut bool,
                   cursor: &Option<Cursor>,
                   (shape, serial): (&Option<Cursor>, u64)| {
        if let (false, Some(frame)) = (*pictured, frame) {
            out.pictures(from, frame, &[full])?;
            *pictured = true;
        }
        if let Some(s) = shape {
            out.pointer(s, serial)?;
        }
        if let Some(c) = cursor {
            let at_from = Cursor {
                timestamp_us: from,
                shape: None,
                ..c.clone()
            };
            out.pointer(&at_from, serial)?;
        }
        out.flush()
    };
    let mut merging = Merging::default();
    for entry in resumed.entries {
        match entry.map_err(|e| e.to_string())? {
            Entry::Update { bytes, offset } => {
                let head =
                    codec::info(&bytes).map_err(|e| format!("update at byte {offset}: {e}"))?;
                if !live && head.timestamp_us > from {
                    go_live(
                        out,
                        decoder.frame(),
                        &mut pictured,
                        &cursor,
                        (&shape, serial),
                    )?;
                    live = true;
                }
                // Past the window: what is held goes out as the screen is now.
                if merging
                    .first
                    .is_some_and(|first| head.timestamp_us.saturating_sub(first) >= window)
                {
                    merging.send(out, decoder.frame())?;
                }
                let mut tiles = Vec::new();
                let frame = decoder
                    .decode_traced(&bytes, |a| {
                        tiles.push(match a {
                            Applied::Pixels { tile, .. }
                            | Applied::Cached { tile, .. }
                            | Applied::Moved { tile } => tile,
                        })
                    })
                    .map_err(|e| format!("update at byte {offset}: {e}"))?;
                if !live {
                    continue;
                }
                merging.first.get_or_insert(head.timestamp_us);
                merging.last = head.timestamp_us;
                merging.tiles.extend(tiles);
                merging.key |= head.key;
                if window == 0 {
                    merging.send(out, Some(frame))?;
                }
                if out.buf.len() >= FLUSH || head.key {
                    out.flush()?;
                }
            }
            Entry::Cursor(c) => {
                if let Some(s) = &c.shape {
                    serial = s.serial;
                }
                if live && merging.first.is_some() {
                    merging.pointers.push((c, serial));
                } else if live {
                    out.pointer(&c, serial)?;
                } else {
                    if c.shape.is_some() {
                        shape = Some(c.clone());
                    }
                    cursor = Some(c);
                }
            }
            Entry::Marker(_) | Entry::KeyPoint { .. } => {}
        }
        if out.buf.len() >= FLUSH {
            out.flush()?;
        }
    }
    if !live {
        go_live(
            out,
            decoder.frame(),
            &mut pictured,
            &cursor,
            (&shape, serial),
        )?;
    }
    merging.send(out, decoder.frame())?;
    out.flush()
}

/// `GET /sessions/{id}/recordings/{recording}/video.mp4`: the recording
/// converted by the converter, audited as an export with its digest.
pub(crate) async fn download(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((session, recording)): Path<(Uuid, String)>,
) -> Result<Response, WebError> {
    let (located, _) = checked(&app, &viewer, session, &recording).await?;
    open(&located, session, &recording)?;
    let dir = tempfile::tempdir().map_err(WebError::internal)?;
    let output = dir.path().join(format!("{recording}.mp4"));
    let (input, out) = (located.path.clone(), output.clone());
    tokio::task::spawn_blocking(move || {
        converter::convert(&input, &out, &converter::Options::default(), |_, _| true)
    })
    .await
    .map_err(WebError::internal)?
    .map_err(|e| WebError::internal(format!("converting {recording}: {e}")))?;
    let bytes = tokio::fs::read(&output).await.map_err(WebError::internal)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    access::exported(
        &app,
        &viewer,
        Some(session),
        RecordExported {
            what: "recording".into(),
            target: recording.clone(),
            format: "mp4".into(),
            bytes: bytes.len() as u64,
            sha256,
        },
    )
    .await?;
    let disposition = format!("attachment; filename=\"{recording}.mp4\"");
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_ids_are_only_names() {
        assert!(check_id("rec-2026_12.01").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            "%2e%2e",
            &"x".repeat(101),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn changed_tiles_become_few_rectangles() {
        // 200x130: 4 columns (the last 8 wide), 3 rows (the last 2 high).
        assert_eq!(rects(200, 130, &[0]), [(0, 0, 64, 64)]);
        assert_eq!(rects(200, 130, &[1, 3]), [(64, 0, 136, 64)]);
        assert_eq!(rects(200, 130, &[1, 5, 9]), [(64, 0, 64, 130)]);
        assert_eq!(rects(200, 130, &[0, 5]), [(0, 0, 64, 64), (64, 64, 64, 64)]);
    }

    #[test]
    fn a_crop_is_the_frames_pixels() {
        let mut frame = Frame::black(8, 4);
        frame.fill(2, 1, 3, 2, [10, 20, 30, 255]);
        let png = crop_png(&frame, (2, 1, 3, 2)).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[30, 20, 10, 255]);
        assert!(buf.chunks_exact(4).all(|p| p == [30, 20, 10, 255]));
    }

    #[test]
    fn large_pictures_are_cut_into_bands_that_cover_them_once() {
        let bands = pieces(&[(0, 0, 1920, 1080), (0, 0, 64, 64)]);
        assert!(bands.len() > 2);
        assert!(bands.iter().all(|&(_, _, w, h)| w * h <= PIECE));
        let rows: usize = bands[..bands.len() - 1].iter().map(|b| b.3).sum();
        assert_eq!(rows, 1080);
        assert!(bands
            .windows(2)
            .take(bands.len() - 2)
            .all(|p| p[0].1 + p[0].3 == p[1].1));
        assert_eq!(bands.last(), Some(&(0, 0, 64, 64)));
        // Encoded in parallel, each band is the frame's pixels where it lies.
        let mut frame = Frame::black(1920, 1080);
        frame.fill(0, 1000, 1920, 80, [1, 2, 3, 255]);
        let pngs = encode_all(&frame, &bands[..bands.len() - 1]);
        let last = pngs.last().unwrap().as_ref().unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(last))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        assert!(buf
            .chunks_exact(4)
            .rev()
            .take(1920 * 80)
            .all(|p| p == [3, 2, 1, 255]));
    }

    #[test]
    fn updates_merge_within_a_refresh_above_normal_speed() {
        assert_eq!(merge_window(1), 0);
        assert_eq!(merge_window(0), 0);
        assert_eq!(merge_window(8), 133_333);
        assert_eq!(merge_window(100), merge_window(8));
    }

    #[test]
    fn the_verdict_compares_size_and_digest() {
        let l = |logged| Located {
            path: PathBuf::new(),
            logged,
        };
        assert_eq!(
            verdict(&l(Some((3, "ab".into()))), 3, "ab").state,
            "verified"
        );
        assert_eq!(
            verdict(&l(Some((3, "ab".into()))), 3, "cd").state,
            "altered"
        );
        assert_eq!(
            verdict(&l(Some((3, "ab".into()))), 4, "ab").state,
            "altered"
        );
        assert_eq!(verdict(&l(None), 3, "ab").state, "unfinished");
    }
}
