//! Capture from an X11 display, and input injected into it (XTEST), over
//! x11rb's pure-Rust connection. Frames are read from the root window
//! through MIT-SHM where the server offers it (a local display): the server
//! writes the screen into a memfd it shares with us, and we read it back
//! with `pread`, so no `unsafe` mapping is needed and 8 MB a frame do not
//! cross the socket. Elsewhere (a remote display, no MIT-SHM 1.2) frames
//! come with a plain `GetImage`. Where the DAMAGE extension is there, a
//! screen nothing drew on since the last frame is not captured at all, so
//! a still desktop costs next to no CPU. The pointer comes from XFixes,
//! apart from the screen, so cursor moves cost no tiles.

use std::fs::File;
use std::os::unix::fs::FileExt;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder, Window};
use x11rb::protocol::xtest::ConnectionExt as _;
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
    xtest: bool,
    last_serial: Option<u32>,
    /// Keysym → keycode, read from the server's keymap when first needed.
    keymap: Option<std::collections::HashMap<u32, u8>>,
    /// The segment frames are read through, when MIT-SHM works.
    shared: Option<Shared>,
    /// The root window's damage object, when the DAMAGE extension is there.
    damage: Option<damage::Damage>,
    /// Drawing happened since the last frame (or none was taken yet).
    damaged: bool,
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
        let xtest = has(x11rb::protocol::xtest::X11_EXTENSION_NAME);
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
            conn,
            root: root_window,
            width,
            height,
            xfixes,
            xtest,
            last_serial: None,
            keymap: None,
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

    /// Whether input can be injected (the XTEST extension is there).
    pub fn can_inject(&self) -> bool {
        self.xtest
    }

    /// Moves the pointer to (x, y), clamped to the screen.
    pub fn move_pointer(&self, x: i32, y: i32) -> Result<(), SourceError> {
        let x = x.clamp(0, i32::from(self.width) - 1) as i16;
        let y = y.clamp(0, i32::from(self.height) - 1) as i16;
        self.fake(x11rb::protocol::xproto::MOTION_NOTIFY_EVENT, 0, x, y)
    }

    /// Presses or releases mouse button `button` (1 left, 2 middle, 3 right, 4/5 wheel).
    pub fn button(&self, button: u8, press: bool) -> Result<(), SourceError> {
        use x11rb::protocol::xproto::{BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT};
        let kind = if press {
            BUTTON_PRESS_EVENT
        } else {
            BUTTON_RELEASE_EVENT
        };
        self.fake(kind, button, 0, 0)
    }

    /// Presses or releases the key with X keycode `keycode`.
    pub fn key(&self, keycode: u8, press: bool) -> Result<(), SourceError> {
        use x11rb::protocol::xproto::{KEY_PRESS_EVENT, KEY_RELEASE_EVENT};
        let kind = if press {
            KEY_PRESS_EVENT
        } else {
            KEY_RELEASE_EVENT
        };
        self.fake(kind, keycode, 0, 0)
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), SourceError> {
        if !self.xtest {
            return Err(capture_error(
                "the display has no XTEST extension: input cannot be injected",
            ));
        }
        self.conn
            .xtest_fake_input(kind, detail, 0, self.root, x, y, 0)
            .map_err(capture_error)?;
        self.conn.flush().map_err(capture_error)?;
        Ok(())
    }
}

impl X11 {
    /// The keycode that types `keysym` on this display.
    fn keycode(&mut self, keysym: u32) -> Result<u8, SourceError> {
        if self.keymap.is_none() {
            let setup = self.conn.setup();
            let (min, max) = (setup.min_keycode, setup.max_keycode);
            let reply = self
                .conn
                .get_keyboard_mapping(min, max - min + 1)
                .map_err(capture_error)?
                .reply()
                .map_err(capture_error)?;
            let per = usize::from(reply.keysyms_per_keycode.max(1));
            let mut map = std::collections::HashMap::new();
            for (i, syms) in reply.keysyms.chunks(per).enumerate() {
                for &sym in syms.iter().filter(|&&s| s != 0) {
                    // The first keycode found for a keysym wins (unshifted before shifted).
                    map.entry(sym).or_insert(min + i as u8);
                }
            }
            self.keymap = Some(map);
        }
        self.keymap
            .as_ref()
            .and_then(|m| m.get(&keysym).copied())
            .ok_or_else(|| {
                capture_error(format!("no key on this display types keysym {keysym:#x}"))
            })
    }
}

impl crate::input::Inject for X11 {
    fn inject(&mut self, event: &crate::input::InputEvent) -> Result<(), SourceError> {
        use crate::input::InputEvent;
        event.check().map_err(capture_error)?;
        match *event {
            InputEvent::Move { x, y } => self.move_pointer(x, y),
            InputEvent::Button { button, press } => self.button(button, press),
            InputEvent::Key { keysym, press } => {
                let code = self.keycode(keysym)?;
                self.key(code, press)
            }
        }
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
                let mut pixels = vec![0; want];
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
