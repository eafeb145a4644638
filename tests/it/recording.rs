//! `vigil recording ...` on real screen content: short cuts of the desktop
//! corpus (tests/data/corpus), decoded to raw frames by the real FFmpeg.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use recorder::vrec::reader::Target;
use recorder::vrec::{Ending, Recording};

use crate::helpers::{run_in, Run};

const CLIPS: [&str; 4] = ["terminal", "browser", "office", "idle"];
const FRAME_US: u64 = 100_000;

fn clip(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/corpus/{name}.mkv"))
}

/// Every frame of a clip as BGRA, decoded by FFmpeg.
fn raw_frames(name: &str) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip(name))
        .args(["-f", "rawvideo", "-pix_fmt", "bgra", "-"])
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(1920 * 1080 * 4)
        .map(<[u8]>::to_vec)
        .collect()
}

/// `vigil recording encode` fed by FFmpeg's raw frames of `name`, as a user would pipe them.
fn encode(data: &Path, name: &str, out: &Path) -> Run {
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip(name))
        .args(["-f", "rawvideo", "-pix_fmt", "bgra", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("running ffmpeg");
    let frames = ffmpeg.stdout.take().expect("piped");
    let run: Run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .env_remove("RUST_LOG")
        .arg("--data")
        .arg(data)
        .args([
            "recording",
            "encode",
            "--size",
            "1920x1080",
            "--fps",
            "10",
            "-o",
        ])
        .arg(out)
        .stdin(frames)
        .output()
        .expect("running vigil")
        .into();
    assert!(ffmpeg.wait().expect("ffmpeg").success());
    run
}

#[test]
fn every_frame_of_every_clip_round_trips_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for name in CLIPS {
        let frames = raw_frames(name);
        assert_eq!(frames.len(), 30, "{name}");
        let path = dir.path().join(format!("{name}.vrec"));
        encode(dir.path(), name, &path).ok();
        let rec = Recording::open(&path).unwrap();
        assert_eq!(rec.ending, Ending::Complete);
        assert_eq!(rec.index.duration_us, 30 * FRAME_US);
        for (i, raw) in frames.iter().enumerate() {
            let found = rec.frame(Target::Time(i as u64 * FRAME_US)).unwrap();
            assert!(found.frame.pixels == *raw, "{name}: frame {i} differs");
        }
        // The updates, decoded in order, are exactly the frames that changed.
        let mut decoder = recorder::codec::Decoder::new();
        let mut distinct = frames.clone();
        distinct.dedup();
        let mut n = 0;
        for entry in rec.entries(None).unwrap() {
            if let recorder::vrec::Entry::Update { bytes, .. } = entry.unwrap() {
                assert!(
                    decoder.decode(&bytes).unwrap().pixels == distinct[n],
                    "{name}: update {n}"
                );
                n += 1;
            }
        }
        assert_eq!(n, distinct.len(), "{name}: one update per changed frame");
    }
}

#[test]
fn info_and_frame_commands_show_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vrec");
    encode(dir.path(), "terminal", &path).ok();
    let p = path.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", p, "--json"], "").ok())
            .unwrap();
    assert_eq!(
        (
            info["state"].as_str(),
            info["width"].as_u64(),
            info["height"].as_u64()
        ),
        (Some("complete"), Some(1920), Some(1080))
    );
    assert_eq!(info["duration_us"].as_u64(), Some(3_000_000));
    let frames = raw_frames("terminal");
    let png = dir.path().join("f.png");
    let png_s = png.to_str().unwrap();
    run_in(
        dir.path(),
        &["recording", "frame", p, "--at", "00:00:01.750", "-o", png_s],
        "",
    )
    .ok();
    assert!(
        png_pixels(&png) == frames[17],
        "the frame on screen at 1.75 s is frame 17"
    );
    let again = run_in(
        dir.path(),
        &["recording", "frame", p, "--index", "0", "-o", png_s],
        "",
    );
    assert!(again.error_line().contains("already exists"), "{again:?}");
    run_in(
        dir.path(),
        &[
            "recording",
            "frame",
            p,
            "--index",
            "0",
            "-o",
            png_s,
            "--force",
        ],
        "",
    )
    .ok();
    assert!(png_pixels(&png) == frames[0]);
    let past = run_in(
        dir.path(),
        &[
            "recording",
            "frame",
            p,
            "--at",
            "10:00",
            "-o",
            png_s,
            "--force",
        ],
        "",
    );
    assert!(past.error_line().contains("last frame"), "{past:?}");
}

/// A PNG's pixels as BGRA.
fn png_pixels(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    buf.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
    buf
}

#[test]
fn a_cut_recording_reads_to_its_last_chunk_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vrec");
    encode(dir.path(), "terminal", &path).ok();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.vrec");
    std::fs::write(&cut, &bytes[..bytes.len() * 9 / 10]).unwrap();
    let c = cut.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", c, "--json"], "").ok())
            .unwrap();
    assert_eq!(info["state"], "truncated");
    let kept = info["frames"].as_u64().unwrap();
    assert!(kept > 0);
    let verify = run_in(dir.path(), &["recording", "verify", c], "");
    assert_eq!(verify.code, 1, "{verify:?}");
    assert!(verify.stdout.contains("truncated"), "{verify:?}");
    let repaired = run_in(dir.path(), &["recording", "repair", c], "");
    assert!(repaired.ok().contains("repaired"), "{repaired:?}");
    assert!(
        dir.path().join("cut.vrec.tail").exists(),
        "the cut-off bytes are kept aside"
    );
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", c, "--json"], "").ok())
            .unwrap();
    assert_eq!(
        (info["state"].as_str(), info["frames"].as_u64()),
        (Some("complete"), Some(kept))
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.vrec");
    std::fs::write(&text, "meeting notes, not a recording").unwrap();
    let t = text.to_str().unwrap();
    for args in [
        vec!["recording", "info", t],
        vec!["recording", "frame", t, "--index", "0", "-o", "x.png"],
    ] {
        assert!(run_in(dir.path(), &args, "")
            .error_line()
            .contains("not a .vrec recording"));
    }
    // A frame and a half of input: the whole frame is kept, the rest reported.
    let out = dir.path().join("half.vrec");
    let o = out.to_str().unwrap();
    let input = "x".repeat(4 * 4 * 4 + 10);
    let run = run_in(
        dir.path(),
        &[
            "recording",
            "encode",
            "--size",
            "4x4",
            "--fps",
            "5",
            "-o",
            o,
        ],
        &input,
    );
    assert!(run.error_line().contains("ends inside a frame"), "{run:?}");
    let rec = Recording::open(&out).unwrap();
    assert_eq!((rec.ending, rec.index.frames), (Ending::Complete, 1));
    let again = run_in(
        dir.path(),
        &[
            "recording",
            "encode",
            "--size",
            "4x4",
            "--fps",
            "5",
            "-o",
            o,
        ],
        "",
    );
    assert!(again.error_line().contains("already exists"), "{again:?}");
    assert!(
        run_in(
            dir.path(),
            &[
                "recording",
                "encode",
                "--size",
                "4",
                "--fps",
                "5",
                "-o",
                "y.vrec"
            ],
            ""
        )
        .code
            == 2
    );
}

/// Reads JSON lines from `lines` until one has `"event": event`; returns it.
fn wait_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    event: &str,
) -> serde_json::Value {
    for line in lines {
        let line = line.expect("reading the console");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == event {
            return v;
        }
        assert_ne!(v["event"], "error", "the console failed: {v}");
    }
    panic!("the console ended before printing {event}");
}

#[test]
fn a_console_killed_while_recording_leaves_a_readable_repairable_recording() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    crate::helpers::add_technician(data);
    run_in(
        data,
        &[
            "admin",
            "group",
            "set",
            "tier1",
            "--permissions",
            "desktop_view",
            "--force-recording",
            "true",
        ],
        "",
    )
    .ok();
    let gw = crate::helpers::start_gateway(data, &[]);
    let ca = gw.ca.to_str().unwrap().to_owned();
    let display = testkit::Xvfb::start(640, 400);
    let recordings = data.join("recordings");
    let vigil = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .env_remove("RUST_LOG")
            .arg("--data")
            .arg(data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting vigil")
    };
    let mut console = vigil(&[
        "console",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--user",
        "ann@example.com",
        "--json",
        "--record",
        recordings.to_str().unwrap(),
    ]);
    let mut input = console.stdin.take().unwrap();
    writeln!(input, "{}\n/new", crate::helpers::PASSWORD).unwrap();
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let pin = wait_line(&mut lines, "session_created")["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut applet = vigil(&[
        "applet",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--pin",
        &pin,
        "--consent",
        "grant-all",
        "--json",
        "--display",
        &display.display,
        "--download-dir",
        data.to_str().unwrap(),
    ]);
    writeln!(input, "/pick\n/view").unwrap();
    let path = PathBuf::from(wait_line(&mut lines, "recording")["path"].as_str().unwrap());
    assert_eq!(wait_line(&mut lines, "view")["granted"], true);
    // The first screen reaches the file (bounded wait on the file itself).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Recording::open(&path).map(|r| r.index.frames).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no screen was recorded within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    console.kill().unwrap();
    console.wait().unwrap();
    let _ = applet.kill();
    let _ = applet.wait();

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
    assert_eq!(gw.stop().0, 0);
}

#[test]
fn a_group_that_forces_recording_cannot_view_without_it() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    crate::helpers::add_technician(data);
    run_in(
        data,
        &[
            "admin",
            "group",
            "set",
            "tier1",
            "--permissions",
            "desktop_view",
            "--force-recording",
            "true",
        ],
        "",
    )
    .ok();
    let gw = crate::helpers::start_gateway(data, &[]);
    let ca = gw.ca.to_str().unwrap().to_owned();
    let display = testkit::Xvfb::start(320, 200);
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .env_remove("RUST_LOG")
            // `/record on` writes to ./vigil-recordings: inside the test's directory.
            .current_dir(data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting vigil")
    };
    let mut console = spawn(&[
        "console",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--user",
        "ann@example.com",
        "--json",
    ]);
    let mut input = console.stdin.take().unwrap();
    writeln!(input, "{}\n/new", crate::helpers::PASSWORD).unwrap();
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let pin = wait_line(&mut lines, "session_created")["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut applet = spawn(&[
        "applet",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--pin",
        &pin,
        "--consent",
        "grant-all",
        "--json",
        "--display",
        &display.display,
        "--download-dir",
        data.to_str().unwrap(),
    ]);
    writeln!(input, "/pick\n/view").unwrap();
    let refused = loop {
        let line = lines.next().expect("console output").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "error" {
            break v;
        }
        assert_ne!(v["event"], "view", "viewed without recording: {v}");
    };
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("records every session"),
        "{refused}"
    );
    writeln!(input, "/record on\n/view\n/end").unwrap();
    assert_eq!(wait_line(&mut lines, "view")["granted"], true);
    drop(input);
    assert!(console.wait().unwrap().success());
    let _ = applet.wait();
    assert_eq!(gw.stop().0, 0);
}

/// A minimal HTTP/1.1 request to 127.0.0.1 (the viewer serves nothing else): status and body.
fn http(method: &str, url: &str, body: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(host).expect("connecting to the viewer");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
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
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    crate::helpers::add_technician(data);
    run_in(
        data,
        &[
            "admin",
            "group",
            "set",
            "tier1",
            "--permissions",
            "desktop_view,remote_control",
        ],
        "",
    )
    .ok();
    let gw = crate::helpers::start_gateway(data, &[]);
    let ca = gw.ca.to_str().unwrap().to_owned();
    let display = testkit::Xvfb::start(320, 200);
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .env_remove("RUST_LOG")
            .current_dir(data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting vigil")
    };
    let mut console = spawn(&[
        "console",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--user",
        "ann@example.com",
        "--json",
    ]);
    let mut input = console.stdin.take().unwrap();
    writeln!(input, "{}\n/new", crate::helpers::PASSWORD).unwrap();
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let pin = wait_line(&mut lines, "session_created")["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut applet = spawn(&[
        "applet",
        "--gateway",
        &gw.addr,
        "--ca",
        &ca,
        "--pin",
        &pin,
        "--consent",
        "grant-all",
        "--json",
        "--display",
        &display.display,
    ]);
    writeln!(input, "/pick\n/view").unwrap();
    let url = wait_line(&mut lines, "viewer")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, page) = http("GET", &url, "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("screen.png"));
    let (status, png) = http("GET", &format!("{url}screen.png?after=-1"), "");
    assert_eq!(status, 200);
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

    writeln!(input, "/control").unwrap();
    assert_eq!(wait_line(&mut lines, "control")["granted"], true);
    let (status, _) = http(
        "POST",
        &format!("{url}input"),
        r#"[{"kind":"move","x":210,"y":33}]"#,
    );
    assert_eq!(status, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let c = recorder::x11::X11::open(Some(&display.display))
            .unwrap()
            .pointer(0)
            .unwrap()
            .unwrap();
        if (c.x, c.y) == (210, 33) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pointer did not move within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        http(
            "POST",
            &format!("{url}input"),
            r#"[{"kind":"button","button":0,"press":true}]"#
        )
        .0,
        400
    );
    writeln!(input, "/end").unwrap();
    drop(input);
    assert!(console.wait().unwrap().success());
    let _ = applet.wait();
    assert_eq!(gw.stop().0, 0);
}
