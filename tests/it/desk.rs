//! The technician's desk as people use it: gateway, console and applet as
//! separate processes, the applet on a real X display (Xvfb), the console
//! recording, serving its screen page, and being killed.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use recorder::vrec::Recording;
use session_core::lines::ConsoleLine;
use testkit::{GatewayProcess, Xvfb};

use crate::helpers::{
    add_technician, applet_args, run_in, spawn, start_gateway, wait_line, PASSWORD,
};
use crate::recording::png_pixels;

/// A live session between a console and an applet on an X display.
pub(crate) struct Desk {
    gw: GatewayProcess,
    pub(crate) display: Xvfb,
    console: Child,
    input: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    pub(crate) applet: Child,
    /// The console's page.
    pub(crate) url: String,
}

impl Desk {
    /// Group `tier1` gets `group_settings`; a `width`×`height` display; a
    /// console (with `console_args`) creates a session that an applet on the
    /// display joins, consenting to everything; the console picks it up.
    pub(crate) fn start(
        data: &Path,
        group_settings: &[&str],
        (width, height): (u32, u32),
        console_args: &[&str],
    ) -> Self {
        add_technician(data);
        let mut set = vec!["admin", "group", "set", "tier1"];
        set.extend_from_slice(group_settings);
        run_in(data, &set, "").ok();
        let gw = start_gateway(data, &[]);
        let display = Xvfb::start(width, height);
        let args = crate::helpers::console_args(&gw, console_args);
        let mut console = spawn(data, &args);
        let mut input = console.stdin.take().unwrap();
        writeln!(input, "{PASSWORD}\n/new").unwrap();
        let mut lines = BufReader::new(console.stdout.take().unwrap()).lines();
        let url = wait_line(&mut lines, |l| match l {
            ConsoleLine::Viewer { url } => Some(url),
            _ => None,
        });
        let pin = wait_line(&mut lines, |l| match l {
            ConsoleLine::SessionCreated { pin, .. } => Some(pin),
            _ => None,
        });
        let applet = spawn(
            data,
            &applet_args(&gw, &pin, &["--display", &display.display]),
        );
        let mut desk = Self {
            gw,
            display,
            console,
            input: Some(input),
            lines,
            applet,
            url,
        };
        desk.send("/pick");
        desk
    }

    /// A desk whose console records into `DATA/recordings` and views the
    /// screen (the group gets `group_settings`); returns once the first
    /// screen is in the recording, with the recording's file.
    pub(crate) fn recording(
        data: &Path,
        group_settings: &[&str],
        size: (u32, u32),
    ) -> (Self, PathBuf) {
        let recordings = data.join("recordings");
        let mut desk = Self::start(
            data,
            group_settings,
            size,
            &["--record", recordings.to_str().unwrap()],
        );
        let path = PathBuf::from(desk.wait(|l| match l {
            ConsoleLine::Recording { path } => Some(path),
            _ => None,
        }));
        desk.send("/view");
        assert!(desk.view_granted());
        wait_until("the first screen in the file", frames_in(&path, 1));
        (desk, path)
    }

    /// Types `line` into the console.
    pub(crate) fn send(&mut self, line: &str) {
        writeln!(self.input.as_mut().expect("console input open"), "{line}").unwrap();
    }

    /// The first of the console's next lines that `pick` takes (failing on an error line).
    pub(crate) fn wait<T>(&mut self, pick: impl FnMut(ConsoleLine) -> Option<T>) -> T {
        wait_line(&mut self.lines, pick)
    }

    /// Whether the next answer to `/view` granted it.
    pub(crate) fn view_granted(&mut self) -> bool {
        self.wait(|l| match l {
            ConsoleLine::View { granted, .. } => Some(granted),
            _ => None,
        })
    }

    /// Kills the console as a crash would, and the applet; the gateway stops cleanly.
    pub(crate) fn kill_console(mut self) {
        self.console.kill().unwrap();
        self.console.wait().unwrap();
        let _ = self.applet.kill();
        let _ = self.applet.wait();
        assert_eq!(self.gw.stop().0, 0);
    }

    /// Ends the input; the console finishes and exits 0; the gateway stops cleanly.
    pub(crate) fn finish(mut self) {
        drop(self.input.take());
        assert!(self.console.wait().unwrap().success());
        let _ = self.applet.wait();
        assert_eq!(self.gw.stop().0, 0);
    }
}

/// Whether the recording at `path` holds at least `n` screen updates yet.
pub(crate) fn frames_in(path: &Path, n: u64) -> impl FnMut() -> bool + '_ {
    move || Recording::open(path).is_ok_and(|r| r.index.frames >= n)
}

/// Waits (at most 30 s) until `done` holds.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_console_killed_while_recording_leaves_a_readable_repairable_recording() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (desk, path) = Desk::recording(
        data,
        &["--permissions", "desktop_view", "--force-recording", "true"],
        (640, 400),
    );
    // Its start is reported once the first screen is in; killed before the
    // gateway has it, a recording is rightly unknown to the log.
    wait_until("recording.started in the log", || {
        crate::helpers::events(data)
            .iter()
            .any(|e| e["type"] == "recording.started")
    });
    desk.kill_console();

    let p = path.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(run_in(data, &["recording", "info", p, "--json"], "").ok()).unwrap();
    assert_eq!(info["state"], "truncated", "{info}");
    assert!(info["frames"].as_u64().unwrap() >= 1);
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(640), Some(400))
    );
    let verify = run_in(data, &["recording", "verify", p, "--json"], "");
    assert_eq!(verify.code, 1, "{verify:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&verify.stdout).unwrap()["verdict"],
        "truncated"
    );
    run_in(data, &["recording", "repair", p], "").ok();
    let png = data.join("first.png");
    run_in(
        data,
        &[
            "recording",
            "frame",
            p,
            "--index",
            "0",
            "-o",
            png.to_str().unwrap(),
        ],
        "",
    )
    .ok();
    assert_eq!(png_pixels(&png).len(), 640 * 400 * 4);
}

#[test]
fn a_group_that_forces_recording_cannot_view_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut desk = Desk::start(
        dir.path(),
        &["--permissions", "desktop_view", "--force-recording", "true"],
        (320, 200),
        &[],
    );
    desk.send("/view");
    let refused = loop {
        let line = desk.lines.next().expect("console output").unwrap();
        match serde_json::from_str::<ConsoleLine>(&line).unwrap() {
            ConsoleLine::View { .. } => panic!("viewed without recording"),
            ConsoleLine::Error { message } => break message,
            _ => {}
        }
    };
    assert!(refused.contains("records every session"), "{refused}");
    desk.send("/record on\n/view\n/end");
    assert!(desk.view_granted());
    desk.finish();
}

/// A minimal HTTP/1.1 request to 127.0.0.1 (the viewer serves nothing else): status and body.
pub(crate) fn http(method: &str, url: &str, body: &str) -> (u16, Vec<u8>) {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(host).expect("connecting to the viewer");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("reading the viewer's answer");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, response[split + 4..].to_vec())
}

#[test]
fn the_viewer_page_shows_the_screen_and_takes_control_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut desk = Desk::start(
        dir.path(),
        &["--permissions", "desktop_view,remote_control"],
        (320, 200),
        &[],
    );
    let url = desk.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, page) = http("GET", &url, "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("EventSource(\"events\")"));
    assert_eq!(http("GET", &format!("{url}favicon.svg"), "").0, 200);
    desk.send("/view");
    assert!(desk.view_granted());
    let mut png = Vec::new();
    wait_until("the first screen on the page", || {
        let (status, body) = http("GET", &format!("{url}screen.png"), "");
        png = body;
        status == 200
    });
    let decoded = png::Decoder::new(&png[..]).read_info().unwrap();
    assert_eq!((decoded.info().width, decoded.info().height), (320, 200));
    // Without the token, nothing is served.
    let bare = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned()
        + "/screen.png";
    assert_eq!(http("GET", &bare, "").0, 404);

    desk.send("/control");
    assert!(desk.wait(|l| match l {
        ConsoleLine::Control { granted, .. } => Some(granted),
        _ => None,
    }));
    let (status, _) = http(
        "POST",
        &format!("{url}input"),
        r#"[{"kind":"move","x":210,"y":33}]"#,
    );
    assert_eq!(status, 204);
    let display = desk.display.display.clone();
    wait_until("the pointer at (210, 33)", || {
        let c = recorder::x11::X11::open(Some(&display))
            .unwrap()
            .pointer(0)
            .unwrap()
            .unwrap();
        (c.x, c.y) == (210, 33)
    });
    assert_eq!(
        http(
            "POST",
            &format!("{url}input"),
            r#"[{"kind":"button","button":0,"press":true}]"#
        )
        .0,
        400
    );
    // The console's input ends after these: a missing line fails, never hangs.
    desk.send("/control off\n/end");
    drop(desk.input.take());
    desk.wait(|l| matches!(l, ConsoleLine::ControlEnded {}).then_some(()));
    desk.finish();
}
