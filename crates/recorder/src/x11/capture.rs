//! Frames and the pointer, read from an X display.

use std::fs::File;
use std::os::unix::fs::FileExt;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder, Window};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::cursor::{Cursor, Shape, MAX_SHAPE};
use crate::{Frame, Source, SourceError};

/// A display being captured.
pub struct X11 {
    conn: RustConnection,
    root: Window,
    width: u16,
    height: u16,
    xfixes: bool,
    last_serial: Option<u32>,
    /// The segment frames are read through, when MIT-SHM works.
    shared: Option<Shared>,
    /// The root window's damage object, when the DAMAGE extension is there.
    damage: Option<damage::Damage>,
    /// Drawing happened since the last frame (or none was taken yet).
    damaged: bool,
    /// A used frame's pixels, filled again by the next capture.
    spare: Option<Vec<u8>>,
}

/// A screen-sized memfd attached to the server as an MIT-SHM segment.
struct Shared {
    seg: shm::Seg,
    file: File,
}

impl Shared {
    /// Shares a new memfd of `bytes` with the server, if it can take one
    /// (MIT-SHM 1.2 or later, on a connection that passes descriptors).
    fn attach(conn: &RustConnection, bytes: u64) -> Result<Self, String> {
        let version = conn
            .shm_query_version()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        if (version.major_version, version.minor_version) < (1, 2) {
            return Err(format!(
                "MIT-SHM {}.{} cannot take a descriptor",
                version.major_version, version.minor_version
            ));
        }
        let fd = rustix::fs::memfd_create("vigil-capture", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
        let file = File::from(fd);
        file.set_len(bytes)
            .map_err(|e| format!("sizing the memfd: {e}"))?;
        let theirs = file.try_clone().map_err(|e| format!("dup: {e}"))?;
        let seg = conn.generate_id().map_err(|e| e.to_string())?;
        // Checked, not fire-and-forget: a remote server refuses here.
        conn.shm_attach_fd(seg, theirs, false)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| format!("attaching: {e:?}"))?;
        Ok(Self { seg, file })
    }
}

impl std::fmt::Debug for X11 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X11({}x{})", self.width, self.height)
    }
}

fn capture_error(what: impl std::fmt::Display) -> SourceError {
    SourceError::Capture(what.to_string())
}

impl X11 {
    /// Connects to `display` (e.g. `:1`; `None` for `$DISPLAY`).
    pub fn open(display: Option<&str>) -> Result<Self, SourceError> {
        let name = display.unwrap_or("$DISPLAY");
        let (conn, screen) = x11rb::connect(display)
            .map_err(|e| capture_error(format!("cannot connect to X display {name}: {e}")))?;
        let setup = conn.setup();
        let root = setup
            .roots
            .get(screen)
            .ok_or_else(|| capture_error(format!("display {name} has no screen {screen}")))?;
        let depth = root.root_depth;
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map(|f| f.bits_per_pixel);
        if bpp != Some(32) || setup.image_byte_order != ImageOrder::LSB_FIRST || depth < 24 {
            return Err(capture_error(format!(
                "display {name} has depth {depth} at {bpp:?} bits per pixel; only 24/32-bit little-endian screens are supported"
            )));
        }
        let (root_window, width, height) = (root.root, root.width_in_pixels, root.height_in_pixels);
        let has = |ext: &'static str| matches!(conn.extension_information(ext), Ok(Some(_)));
        let xfixes = has(x11rb::protocol::xfixes::X11_EXTENSION_NAME)
            && conn
                .xfixes_query_version(4, 0)
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some();
        let screen_bytes = u64::from(width) * u64::from(height) * 4;
        let shared = if has(shm::X11_EXTENSION_NAME) {
            Shared::attach(&conn, screen_bytes)
                .inspect_err(|why| tracing::debug!("MIT-SHM not used ({why}); GetImage instead"))
                .ok()
        } else {
            None
        };
        let damage = if has(damage::X11_EXTENSION_NAME) {
            watch_damage(&conn, root_window)
                .inspect_err(|why| tracing::debug!("DAMAGE not used ({why}); every frame captured"))
                .ok()
        } else {
            None
        };
        Ok(Self {
            shared,
            damage,
            damaged: true,
            spare: None,
            conn,
            root: root_window,
            width,
            height,
            xfixes,
            last_serial: None,
        })
    }

    /// Whether frames come through MIT-SHM (else through `GetImage`).
    pub fn shared_memory(&self) -> bool {
        self.shared.is_some()
    }

    /// Reads frames with `GetImage` from now on, even where MIT-SHM works.
    pub fn without_shared_memory(mut self) -> Self {
        if let Some(shared) = self.shared.take() {
            // The server also lets go of it when the connection closes.
            let _ = self.conn.shm_detach(shared.seg);
        }
        self
    }

    /// The pointer now, with its shape if that changed since the last call
    /// (`None` without the XFixes extension).
    pub fn pointer(&mut self, timestamp_us: u64) -> Result<Option<Cursor>, SourceError> {
        if !self.xfixes {
            return Ok(None);
        }
        let image = self
            .conn
            .xfixes_get_cursor_image()
            .map_err(capture_error)?
            .reply()
            .map_err(capture_error)?;
        let changed = self.last_serial != Some(image.cursor_serial);
        let shape = (changed && image.width <= MAX_SHAPE && image.height <= MAX_SHAPE).then(|| {
            self.last_serial = Some(image.cursor_serial);
            Shape {
                serial: u64::from(image.cursor_serial),
                width: image.width,
                height: image.height,
                hot_x: image.xhot,
                hot_y: image.yhot,
                // ARGB words, little-endian: B G R A bytes, premultiplied as XFixes gives them.
                pixels: image
                    .cursor_image
                    .iter()
                    .flat_map(|p| p.to_le_bytes())
                    .collect(),
            }
        });
        Ok(Some(Cursor {
            timestamp_us,
            x: i32::from(image.x),
            y: i32::from(image.y),
            visible: true,
            shape,
        }))
    }
}

/// Asks the server to report drawing on `root` (once, until subtracted).
fn watch_damage(conn: &RustConnection, root: Window) -> Result<damage::Damage, String> {
    // The protocol requires the version handshake before any other request.
    conn.damage_query_version(1, 1)
        .map_err(|e| e.to_string())?
        .reply()
        .map_err(|e| e.to_string())?;
    let id = conn.generate_id().map_err(|e| e.to_string())?;
    conn.damage_create(id, root, damage::ReportLevel::NON_EMPTY)
        .map_err(|e| e.to_string())?
        .check()
        .map_err(|e| format!("{e:?}"))?;
    Ok(id)
}

impl Source for X11 {
    fn unchanged(&mut self) -> Result<bool, SourceError> {
        let Some(id) = self.damage else {
            return Ok(false);
        };
        while let Some(event) = self.conn.poll_for_event().map_err(capture_error)? {
            if matches!(event, Event::DamageNotify(_)) {
                self.damaged = true;
            }
        }
        if !self.damaged {
            return Ok(true);
        }
        // Re-armed before the capture, so drawing during it is reported.
        self.conn
            .damage_subtract(id, x11rb::NONE, x11rb::NONE)
            .map_err(capture_error)?;
        self.conn.flush().map_err(capture_error)?;
        self.damaged = false;
        Ok(false)
    }

    fn size(&self) -> (u32, u32) {
        (u32::from(self.width), u32::from(self.height))
    }

    fn cursor(&mut self, timestamp_us: u64) -> Result<Option<Cursor>, SourceError> {
        self.pointer(timestamp_us)
    }

    fn recycle(&mut self, frame: Frame) {
        self.spare = Some(frame.pixels);
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let want = usize::from(self.width) * usize::from(self.height) * 4;
        let mut pixels = match &self.shared {
            Some(shared) => {
                let image = self
                    .conn
                    .shm_get_image(
                        self.root,
                        0,
                        0,
                        self.width,
                        self.height,
                        !0,
                        ImageFormat::Z_PIXMAP.into(),
                        shared.seg,
                        0,
                    )
                    .map_err(capture_error)?
                    .reply()
                    .map_err(capture_error)?;
                if image.size as usize != want {
                    return Err(capture_error(format!(
                        "MIT-SHM GetImage wrote {} bytes for a {}x{} screen",
                        image.size, self.width, self.height
                    )));
                }
                let mut pixels = self.spare.take().unwrap_or_default();
                pixels.resize(want, 0);
                shared
                    .file
                    .read_exact_at(&mut pixels, 0)
                    .map_err(|e| capture_error(format!("reading the shared screen: {e}")))?;
                pixels
            }
            None => {
                let image = self
                    .conn
                    .get_image(
                        ImageFormat::Z_PIXMAP,
                        self.root,
                        0,
                        0,
                        self.width,
                        self.height,
                        !0,
                    )
                    .map_err(capture_error)?
                    .reply()
                    .map_err(capture_error)?;
                if image.data.len() != want {
                    return Err(capture_error(format!(
                        "GetImage returned {} bytes for a {}x{} screen",
                        image.data.len(),
                        self.width,
                        self.height
                    )));
                }
                image.data
            }
        };
        // The fourth byte of a 24-bit visual is padding with arbitrary
        // values: left alone, it would look like changes that are not on screen.
        pixels.chunks_exact_mut(4).for_each(|p| p[3] = 255);
        Ok(Some(Frame {
            width: u32::from(self.width),
            height: u32::from(self.height),
            pixels,
        }))
    }
}
