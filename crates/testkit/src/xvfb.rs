//! A throwaway X display for capture tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
        // -displayfd: Xvfb picks a free display and prints its number once ready.
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
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

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
