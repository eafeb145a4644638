//! A throwaway X display for capture and input tests, with a keyboard
//! layout of the test's choosing and a terminal to type into.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An Xvfb server on a display of its own choosing, stopped when dropped.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    /// `:N`, as `DISPLAY` or `--display` take it.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with one `width`×`height` 24-bit screen; returns once it accepts clients.
    pub fn start(width: u32, height: u32) -> Self {
        // -displayfd: Xvfb picks a free display and prints its number once
        // ready. -noreset: a server that resets when its last client leaves
        // would forget the layout a test set.
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-noreset", "-nolisten", "tcp"])
            .args(["-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (scripts/test installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading Xvfb's display number");
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not start (it said {line:?})"));
        Self {
            child,
            display: format!(":{number}"),
        }
    }
}

impl Xvfb {
    /// Switches the display's keyboard to layout `name` (`us`, `de`, `fr`...).
    pub fn layout(&self, name: &str) {
        let status = Command::new("setxkbmap")
            .args(["-display", &self.display, name])
            .status()
            .expect("setxkbmap is installed (scripts/test installs it)");
        assert!(status.success(), "setxkbmap {name} failed");
    }

    /// Paints a `w`×`h` rectangle at (`x`, `y`) of the root window in
    /// colour `rgb` (0xRRGGBB), and returns once the server has done it.
    pub fn paint(&self, x: i16, y: i16, w: u16, h: u16, rgb: u32) {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{ConnectionExt, CreateGCAux, Rectangle};
        let (conn, screen) = x11rb::connect(Some(&self.display)).expect("connecting to Xvfb");
        let root = conn.setup().roots[screen].root;
        let gc = conn.generate_id().expect("an X id");
        conn.create_gc(gc, root, &CreateGCAux::new().foreground(rgb))
            .expect("a graphics context");
        conn.poly_fill_rectangle(
            root,
            gc,
            &[Rectangle {
                x,
                y,
                width: w,
                height: h,
            }],
        )
        .expect("painting");
        // A round trip: every request before it has been carried out.
        conn.get_input_focus()
            .expect("asking for the focus")
            .reply()
            .expect("the X server answered");
    }

    /// The keycodes held down on the display now.
    pub fn keys_down(&self) -> Vec<u8> {
        use x11rb::protocol::xproto::ConnectionExt;
        let (conn, _) = x11rb::connect(Some(&self.display)).expect("connecting to Xvfb");
        let keys = conn
            .query_keymap()
            .expect("asking for the keymap")
            .reply()
            .expect("the keymap")
            .keys;
        (0..=255u8)
            .filter(|&k| keys[usize::from(k / 8)] & (1 << (k % 8)) != 0)
            .collect()
    }

    /// An xterm in UTF-8 covering the whole display (no window manager:
    /// the keyboard goes to it wherever the pointer is on the screen) that saves the first line typed into it, without its newline, to
    /// `out`. Returns once its shell runs.
    pub fn terminal(&self, out: &Path) -> Terminal {
        let ready = out.with_extension("ready");
        let script = format!(
            "touch '{}'; IFS= read -r line; printf %s \"$line\" > '{}.part' && mv '{}.part' '{}'",
            ready.display(),
            out.display(),
            out.display(),
            out.display()
        );
        let child = Command::new("xterm")
            .args(["-display", &self.display, "-u8", "-geometry", "400x150+0+0"])
            .args(["-e", "sh", "-c", &script])
            .env("LC_ALL", "C.UTF-8")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xterm is installed (scripts/test installs it)");
        let terminal = Terminal {
            child,
            out: out.to_owned(),
        };
        wait_for_file(&ready, "the terminal's shell to start");
        terminal
    }
}

/// An xterm reading one line; killed when dropped.
#[derive(Debug)]
pub struct Terminal {
    child: Child,
    out: PathBuf,
}

impl Terminal {
    /// The line typed into the terminal, once Return was typed (30 s at most).
    pub fn line(&self) -> String {
        wait_for_file(&self.out, "a line typed into the terminal");
        std::fs::read_to_string(&self.out).expect("reading the typed line")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
