//! The web portal in a real browser (Debian's Chromium over WebDriver):
//! logins and lockout, roles (a technician sees only their own sessions,
//! also by guessing addresses), CSRF, a session found by a word of its
//! chat, a recording played and sought to a marker with the canvas's pixels
//! compared with `vigil recording frame`, an altered recording refused, and
//! the access audit afterwards. Screenshots of each page are saved under
//! the test's target directory.

use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::{Browser, GatewayProcess};

use crate::desk::{frames_in, wait_until, Desk};
use crate::helpers::{events, run_in};

const COMPLIANCE: &str = "cora@example.com";
const OTHER_TECH: &str = "bob@example.com";
const LOCKED: &str = "lou@example.com";
const PASSWORD: &str = "Portal-Pass-2026!";

/// A recorded session on a 320×200 display: a red square, a chat line
/// (the recording's marker), a blue square; then it ends. Returns the
/// session and the recording's id and file.
fn recorded_session(data: &Path) -> (String, String, PathBuf) {
    let (mut desk, path) = Desk::recording(
        data,
        &[
            "--permissions",
            "desktop_view",
            "--force-recording",
            "true",
            "--store-chat",
            "true",
        ],
        (320, 200),
    );
    let frames = |n| frames_in(&path, n);
    desk.display.paint(20, 20, 80, 60, 0xd03030);
    wait_until("the red square recorded", frames(2));
    desk.send("the printer jams again");
    wait_until("the chat line in the log", || {
        events(data).iter().any(|e| e["type"] == "chat.message")
    });
    desk.display.paint(160, 100, 120, 80, 0x3060d0);
    wait_until("the blue square recorded", frames(3));
    desk.finish();
    let all = events(data);
    let stopped = all
        .iter()
        .find(|e| e["type"] == "recording.stopped")
        .expect("the recording was finished");
    (
        stopped["session"].as_str().unwrap().to_owned(),
        stopped["payload"]["recording"].as_str().unwrap().to_owned(),
        path,
    )
}

/// The size line of the latest checkpoint the gateway wrote in `data`.
fn size_line(data: &Path) -> u64 {
    std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".checkpoint")?
                .parse()
                .ok()
        })
        .max()
        .expect("the gateway wrote a checkpoint")
}

fn add_user(data: &Path, email: &str, role: &str) {
    run_in(
        data,
        &[
            "admin", "user", "add", email, "--group", "tier1", "--role", role,
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
}

fn log_in(b: &Browser, base: &str, email: &str, password: &str) {
    b.goto(&format!("{base}/login"));
    b.type_into("#email", email);
    b.type_into("#password", password);
    submit(b, "#login");
}

/// Clicks `css` and waits for the page it leads to.
fn submit(b: &Browser, css: &str) {
    b.js("window.vigilLeaving = true; return true;");
    b.click(css);
    b.wait_until(
        "the next page",
        "return !window.vigilLeaving && document.readyState === 'complete';",
    );
}

/// The canvas's pixels, RGBA, read in the page.
fn canvas_rgba(b: &Browser) -> Vec<u8> {
    let v = b.js(
        "const c = document.getElementById('screen');
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let s = '';
         for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode.apply(null, d.subarray(i, i + 8192));
         return btoa(s);",
    );
    base64_decode(v.as_str().unwrap())
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    clean
        .chunks(4)
        .flat_map(|q| {
            let n = q.iter().enumerate().fold(0u32, |acc, (i, &c)| {
                acc | u32::from(value(c)) << (18 - 6 * i)
            });
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(q.len() - 1)
        })
        .collect()
}

/// Waits until the player shows the screen at `t` (µs), then checks the
/// canvas pixel for pixel against `vigil recording frame --at t`.
fn same_as_recording_frame(b: &Browser, data: &Path, file: &Path, t: u64) {
    b.wait_until(
        "the picture at the time sought",
        &format!("return window.vigilPlayer.state().shown === {t};"),
    );
    let shown = canvas_rgba(b);
    let png = data.join(format!("at-{t}.png"));
    let at = format!("{}.{:06}", t / 1_000_000, t % 1_000_000);
    run_in(
        data,
        &[
            "recording",
            "frame",
            file.to_str().unwrap(),
            "--at",
            &at,
            "-o",
            png.to_str().unwrap(),
        ],
        "",
    )
    .ok();
    let mut expected = crate::recording::png_pixels(&png);
    expected.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
    assert_eq!(shown.len(), expected.len());
    assert!(
        shown == expected,
        "the canvas at {t} µs is the frame `recording frame` gives"
    );
}

fn player_state(b: &Browser) -> Value {
    b.js("return window.vigilPlayer ? window.vigilPlayer.state() : null;")
}

#[test]
fn the_portal_finds_plays_and_audits_in_a_browser() {
    let Some(b) = Browser::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (session, recording, file) = recorded_session(data);
    add_user(data, COMPLIANCE, "compliance");
    add_user(data, OTHER_TECH, "technician");
    add_user(data, LOCKED, "technician");
    let portal =
        GatewayProcess::start_portal(Path::new(env!("CARGO_BIN_EXE_vigil")), data, &[], &[]);
    let base = format!("https://{}", portal.addr);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Lockout after 5 wrong passwords, said in the page.
    for _ in 0..5 {
        log_in(&b, &base, LOCKED, "wrong-password");
        assert!(b.text("#login-message").contains("wrong email or password"));
    }
    log_in(&b, &base, LOCKED, PASSWORD);
    let message = b.text("#login-message");
    assert!(message.contains("locked"), "{message}");
    b.screenshot(&shots.join("login-locked.png"));

    // Compliance finds the session by a word of its chat.
    log_in(&b, &base, COMPLIANCE, PASSWORD);
    b.wait_until(
        "the sessions page",
        "return !!document.getElementById('filters');",
    );
    b.type_into("#f-words", "jams");
    submit(&b, "#search");
    let row = format!("#sessions tr[data-session='{session}']");
    b.wait_until(
        "the session found by a chat word",
        &format!("return !!document.querySelector(\"{row}\");"),
    );
    b.screenshot(&shots.join("sessions.png"));
    b.type_into("#f-words", " nowhere-said");
    submit(&b, "#search");
    b.wait_until(
        "no match",
        "return !!document.getElementById('no-sessions');",
    );

    // The session page: transcript and recording.
    b.goto(&format!("{base}/sessions/{session}"));
    assert!(b.text("#chat").contains("the printer jams again"));
    assert!(b.text("#recordings").contains(&recording));
    b.screenshot(&shots.join("session.png"));

    // The player: verified, a marker for the chat line, pixels as `recording frame` says.
    submit(&b, "#recordings a");
    b.wait_until(
        "the first picture",
        "const s = window.vigilPlayer && window.vigilPlayer.state(); return !!s && s.shown >= 0;",
    );
    assert_eq!(b.text("#badge"), "SHA-256 verified");
    let marker_t: u64 = b
        .js("const m = [...document.querySelectorAll('#markers button')].find(b => b.parentElement.textContent.includes('chat.message')); return m ? Number(m.dataset.t) : -1;")
        .as_i64()
        .and_then(|t| u64::try_from(t).ok())
        .expect("a chat marker on the timeline");
    b.js("[...document.querySelectorAll('#markers li')].find(l => l.textContent.includes('chat.message')).querySelector('button').click(); return true;");
    same_as_recording_frame(&b, data, &file, marker_t);
    b.screenshot(&shots.join("player.png"));
    // Played at ×8 to the end.
    b.js("document.getElementById('speed').value = '8'; document.getElementById('speed').dispatchEvent(new Event('change')); return true;");
    b.click("#play");
    b.wait_until(
        "played to the end",
        "const s = window.vigilPlayer.state(); return s.ended && !s.playing;",
    );
    let state = player_state(&b);
    assert_eq!(state["late"], 0, "{state}");
    // The last picture has both squares (canvas RGBA, Xvfb's 24-bit colours).
    let last = canvas_rgba(&b);
    let at = |x: usize, y: usize| last[(y * 320 + x) * 4..(y * 320 + x) * 4 + 3].to_vec();
    assert_eq!(at(50, 50), [0xd0, 0x30, 0x30], "the red square at the end");
    assert_eq!(
        at(200, 150),
        [0x30, 0x60, 0xd0],
        "the blue square at the end"
    );
    let end = b
        .js("return window.vigilPlayer.state().position;")
        .as_u64()
        .unwrap();
    b.js(&format!("window.vigilPlayer.seek({end}); return true;"));
    same_as_recording_frame(&b, data, &file, end);

    // A form with a wrong CSRF token is refused and changes nothing.
    let status = b.js(
        "const x = new XMLHttpRequest(); x.open('POST', '/logout', false);
         x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
         x.send('csrf=forged'); return x.status;",
    );
    assert_eq!(status, 403);
    b.goto(&format!("{base}/sessions"));
    assert!(b.text(".who").contains(COMPLIANCE), "still logged in");

    // The integrity page: the log's size, the gateway's last checkpoint, a verification.
    b.goto(&format!("{base}/integrity"));
    let size: u64 = b.text("#size").parse().unwrap();
    assert!(size >= events(data).len() as u64 - 1, "{size}");
    assert!(b
        .text("#checkpoint")
        .contains(&format!("\n{}", size_line(data))));
    submit(&b, "#verify");
    assert!(
        b.text("#verdict").contains("intact"),
        "{}",
        b.text("#verdict")
    );
    b.screenshot(&shots.join("integrity.png"));

    // A report run from the portal, audited as on the command line.
    b.goto(&format!("{base}/reports"));
    b.screenshot(&shots.join("reports.png"));
    let csv = b.js(
        "const x = new XMLHttpRequest(); x.open('GET', '/reports/run?report=sessions&format=csv&technician=ann%40example.com', false);
         x.send(); return [x.status, x.getResponseHeader('Content-Disposition'), x.responseText];",
    );
    assert_eq!(csv[0], 200, "{csv}");
    assert!(csv[1].as_str().unwrap().contains("vigil-sessions.csv"));
    assert!(csv[2].as_str().unwrap().contains(&session), "{csv}");
    // An evidence bundle from the page checks out against the log.
    let zip = b.js(
        "return (async () => { const r = await fetch('/reports/run?report=chat&format=bundle');
         const bytes = new Uint8Array(await r.arrayBuffer()); let s = '';
         for (const c of bytes) s += String.fromCharCode(c);
         return [r.status, r.headers.get('Content-Type'), btoa(s)]; })();",
    );
    assert_eq!(
        (&zip[0], &zip[1]),
        (&Value::from(200), &Value::from("application/zip"))
    );
    let bundle = data.join("chat-bundle.zip");
    std::fs::write(&bundle, base64_decode(zip[2].as_str().unwrap())).unwrap();
    let checked = run_in(data, &["report", "verify", bundle.to_str().unwrap()], "");
    let said = checked.ok();
    assert!(said.lines().any(|l| l == "intact"), "{said}");
    assert!(
        !said.contains("events checked against the log: 0"),
        "{said}"
    );
    submit(&b, "#logout");
    assert!(b.text("#login-message").contains("logged out"));

    // Another technician sees none of it, by list or by address.
    log_in(&b, &base, OTHER_TECH, PASSWORD);
    b.wait_until(
        "the sessions page",
        "return !!document.getElementById('filters');",
    );
    assert!(b.js("return !!document.getElementById('no-sessions');") == Value::Bool(true));
    for url in [
        format!("{base}/sessions/{session}"),
        format!("{base}/sessions/{session}/recordings/{recording}"),
    ] {
        b.goto(&url);
        assert!(b.text("#error").contains("not found"), "{url}");
    }
    for page in ["integrity", "reports"] {
        b.goto(&format!("{base}/{page}"));
        assert!(b.text("#error").contains("may not"), "{page}");
    }
    let api = b.js(&format!(
        "const x = new XMLHttpRequest(); x.open('GET', '/api/sessions/{session}/recordings/{recording}/info', false); x.send(); return [x.status, x.responseText];"
    ));
    assert_eq!(api[0], 404, "{api}");
    b.screenshot(&shots.join("not-found.png"));
    b.goto(&format!("{base}/sessions"));
    submit(&b, "#logout");

    // An altered recording is refused with the verdict.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    log_in(&b, &base, COMPLIANCE, PASSWORD);
    b.goto(&format!("{base}/sessions/{session}/recordings/{recording}"));
    b.wait_until(
        "the refusal",
        "return document.getElementById('badge').textContent === 'altered';",
    );
    assert!(b
        .text("#player-note")
        .contains("not the one the log recorded"));
    b.screenshot(&shots.join("player-altered.png"));
    assert_eq!(portal.stop().0, 0);

    // What cora saw is in the log, and in the access report.
    let all = events(data);
    let seen: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["type"] == "record.viewed" && e["actor"] == format!("compliance:{COMPLIANCE}")
        })
        .collect();
    assert!(seen
        .iter()
        .any(|e| e["payload"]["what"] == "session" && e["session"] == session));
    assert!(seen
        .iter()
        .any(|e| e["payload"]["what"] == "recording" && e["payload"]["target"] == recording));
    assert!(
        !all.iter()
            .any(|e| e["type"] == "record.viewed"
                && e["actor"] == format!("technician:{OTHER_TECH}")),
        "nothing was shown to bob, so nothing is recorded as seen by him"
    );
    assert!(all
        .iter()
        .any(|e| e["type"] == "account.locked" && e["payload"]["email"] == LOCKED));
    assert!(all.iter().any(
        |e| e["type"] == "login.succeeded" && e["source"].as_str().unwrap().starts_with("web@")
    ));
    assert!(all.iter().any(|e| e["type"] == "report.generated"
        && e["actor"] == format!("compliance:{COMPLIANCE}")
        && e["payload"]["filters"] == "--technician ann@example.com"));
    let report = run_in(data, &["report", "access", "--format", "csv"], "");
    assert!(report.ok().contains("record.viewed"), "{report:?}");
}

/// An HTTPS client that trusts the portal's development CA and follows no redirects.
fn client(portal: &GatewayProcess) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&portal.ca).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A player stream's end: its code and text.
type StreamEnd = Option<(u8, String)>;

/// The records of a player stream: (type, time) for pictures and pointers, and its end.
fn stream_records(bytes: &[u8]) -> (Vec<(u8, u64)>, StreamEnd) {
    let (mut records, mut at) = (Vec::new(), 0);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    while at < bytes.len() {
        match bytes[at] {
            b'P' => {
                records.push((b'P', u64_at(at + 1)));
                at += 21 + u32_at(at + 17);
            }
            b'C' => {
                records.push((b'C', u64_at(at + 1)));
                at += 26;
            }
            b'S' => at += 17 + u32_at(at + 13),
            b'E' => {
                let len = u32_at(at + 2);
                let text = String::from_utf8(bytes[at + 6..at + 6 + len].to_vec()).unwrap();
                assert_eq!(at + 6 + len, bytes.len(), "the end is the last record");
                return (records, Some((bytes[at + 1], text)));
            }
            other => panic!("unknown record {other} at {at}"),
        }
    }
    (records, None)
}

/// A recording whose console was killed plays up to its last whole chunk
/// and says so; forged cookies and CSRF tokens, traversal in recording
/// ids, over-long addresses, bad dates and posts from another origin get
/// a clear answer with the right status.
#[test]
fn a_cut_off_recording_plays_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (desk, path) = Desk::recording(
        data,
        &["--permissions", "desktop_view", "--force-recording", "true"],
        (320, 200),
    );
    desk.display.paint(10, 10, 50, 50, 0x30d030);
    wait_until("the green square in the file", frames_in(&path, 2));
    wait_until("recording.started in the log", || {
        events(data)
            .iter()
            .any(|e| e["type"] == "recording.started")
    });
    let started = events(data)
        .into_iter()
        .find(|e| e["type"] == "recording.started")
        .unwrap();
    let (session, recording) = (
        started["session"].as_str().unwrap().to_owned(),
        started["payload"]["recording"].as_str().unwrap().to_owned(),
    );
    desk.kill_console();
    add_user(data, COMPLIANCE, "compliance");
    let portal =
        GatewayProcess::start_portal(Path::new(env!("CARGO_BIN_EXE_vigil")), data, &[], &[]);
    let base = format!(
        "https://localhost:{}",
        portal.addr.rsplit(':').next().unwrap()
    );
    let http = client(&portal);

    // A post naming another origin is refused before any password is checked.
    let r = http
        .post(format!("{base}/login"))
        .header("origin", "https://evil.example")
        .form(&[("email", COMPLIANCE), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{base}/login"))
        .form(&[("email", COMPLIANCE), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let get = |path: &str, cookie: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .unwrap()
    };

    // The cut-off recording: unfinished in the log, cut off in the file, played to its end.
    let api = format!("/api/sessions/{session}/recordings/{recording}");
    let info: Value = get(&format!("{api}/info"), &cookie).json().unwrap();
    assert_eq!(info["verdict"]["state"], "unfinished", "{info}");
    assert!(
        info["cut_off"].as_str().unwrap().contains("cut off"),
        "{info}"
    );
    let stream = get(&format!("{api}/stream?from=0"), &cookie)
        .bytes()
        .unwrap();
    let (records, end) = stream_records(&stream);
    assert!(
        records.iter().filter(|r| r.0 == b'P').count() >= 2,
        "{records:?}"
    );
    let (code, text) = end.expect("the stream says how it ends");
    assert_eq!(code, 1, "cut off: {text}");
    assert!(text.contains("cut off"), "{text}");

    // A cookie the portal never gave, or none: back to the login form.
    for c in ["__Host-vigil=0123456789abcdef", ""] {
        let r = get("/sessions", c);
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/login?ended=1");
    }
    assert_eq!(
        get(&format!("{api}/info"), "").status(),
        401,
        "the API answers 401"
    );
    // State changes without the visit's CSRF token.
    for form in [vec![], vec![("csrf", "forged")]] {
        let r = http
            .post(format!("{base}/logout"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().unwrap().contains("security token"));
    }
    assert_eq!(get("/sessions", &cookie).status(), 200, "still logged in");
    // Traversal, malformed ids and dates, over-long addresses.
    let r = get(
        &format!("/sessions/{session}/recordings/..%2F..%2Fetc%2Fpasswd"),
        &cookie,
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("is not a recording id"));
    assert_eq!(get("/sessions/not-a-session", &cookie).status(), 400);
    let r = get("/sessions?since=yesterday", &cookie);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("YYYY-MM-DD"));
    let long = format!("/sessions?words={}", "w".repeat(5000));
    assert_eq!(get(&long, &cookie).status(), 414);
    let r = get(&format!("{api}/stream?from=soon"), &cookie);
    assert_eq!(r.status(), 400);
    assert_eq!(portal.stop().0, 0);
}

/// `vigil gateway --web` serves the portal from the gateway's process: a
/// technician logs in to it and sees their own sessions.
#[test]
fn the_gateway_serves_the_portal_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    crate::helpers::add_technician(data);
    let gw = crate::helpers::start_gateway(data, &["--web", "127.0.0.1:0"]);
    let portal = gw
        .portal
        .clone()
        .expect("the gateway printed its portal's address");
    crate::helpers::run_session(data, &gw);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&gw.ca).unwrap()).unwrap();
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", portal.rsplit(':').next().unwrap());
    let r = http
        .post(format!("{base}/login"))
        .form(&[
            ("email", "ann@example.com"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(format!("{base}/sessions"))
        .header("cookie", cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let created = events(data)
        .into_iter()
        .find(|e| e["type"] == "session.created")
        .expect("a session");
    assert!(
        page.contains(created["session"].as_str().unwrap()),
        "{page}"
    );
    assert_eq!(gw.stop().0, 0);
}

/// The page's status, read by a same-origin request with the visit's cookie.
fn status_of(b: &Browser, method: &str, path: &str, body: &str) -> i64 {
    let script = format!(
        "return (async () => {{ const r = await fetch({path:?}, {{method: {method:?}, \
         credentials: 'same-origin', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, \
         body: {method:?} === 'GET' ? undefined : {body:?}}}); return r.status; }})();"
    );
    // WebDriver waits for the promise a script returns.
    b.js(&script).as_i64().expect("a status")
}

#[test]
fn administration_works_in_a_browser_and_compliance_changes_only_holds() {
    let Some(b) = Browser::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    crate::helpers::add_technician(data);
    const ADMIN: &str = "ada@example.com";
    add_user(data, ADMIN, "admin");
    add_user(data, COMPLIANCE, "compliance");
    let receiver = testkit::Receiver::start();
    let gw = crate::helpers::start_gateway(data, &["--web", "127.0.0.1:0"]);
    let port = gw.portal.as_deref().unwrap().rsplit(':').next().unwrap();
    let base = format!("https://localhost:{port}");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // An administrator adds a webhook endpoint (its secret shown once) and a technician.
    log_in(&b, &base, ADMIN, PASSWORD);
    b.click("#nav-admin");
    b.wait_until(
        "the accounts page",
        "return !!document.getElementById('add-user');",
    );
    b.goto(&format!("{base}/admin/webhooks"));
    b.type_into("#w-url", &receiver.url);
    b.click("#w-private");
    b.click("#w-http");
    submit(&b, "#w-add");
    let said = b.text("#said");
    assert!(said.contains("added") && said.contains("whsec_"), "{said}");
    b.goto(&format!("{base}/admin/accounts"));
    b.type_into("#u-email", "Nia@Example.com");
    b.type_into("#u-password", PASSWORD);
    submit(&b, "#u-add");
    assert!(b.text("#said").contains("nia@example.com added"));
    let row = "#technicians tr[data-email='nia@example.com']";
    assert!(b.text(row).contains("must change password"));
    // Bad input is refused with the reason (400), and nothing changes.
    b.type_into("#u-email", "nia@example.com");
    b.type_into("#u-password", PASSWORD);
    submit(&b, "#u-add");
    assert!(
        b.text("#said").contains("already exists"),
        "{}",
        b.text("#said")
    );
    b.type_into("#u-email", "short@example.com");
    b.type_into("#u-password", "short");
    submit(&b, "#u-add");
    assert!(
        b.text("#said").starts_with("Refused"),
        "{}",
        b.text("#said")
    );
    let csrf = b
        .js("return document.querySelector('input[name=csrf]').value;")
        .as_str()
        .unwrap()
        .to_owned();
    let add_short = format!(
        "csrf={csrf}&action=add&email=x%40example.com&group=tier1&role=technician&password=short"
    );
    assert_eq!(
        status_of(&b, "POST", "/admin/accounts/user", &add_short),
        400
    );
    // Disabled from its row.
    b.js(&format!(
        "document.querySelector(\"{row} details\").open = true; return true;"
    ));
    submit(&b, &format!("{row} button[value=disable]"));
    assert!(b.text(row).contains("disabled"));
    b.screenshot(&shots.join("admin-accounts.png"));

    // A session's posts reach the endpoint; one is replayed with its id.
    crate::helpers::run_session(data, &gw);
    let posts = receiver.wait_for(2, std::time::Duration::from_secs(30));
    assert_eq!(posts.len(), 2, "session.started and session.ended posted");
    let ended = posts
        .iter()
        .find(|p| p.json()["type"] == "session.ended")
        .expect("session.ended posted");
    let id = ended.header("webhook-id").to_owned();
    b.goto(&format!("{base}/admin/webhooks"));
    let delivery = format!("#deliveries tr[data-delivery='{id}']");
    assert_eq!(
        b.js(&format!(
            "return document.querySelector(\"{delivery}\").dataset.status;"
        )),
        "delivered"
    );
    submit(&b, &format!("{delivery} button"));
    assert!(
        b.text("#said").contains("1 post(s) queued again"),
        "{}",
        b.text("#said")
    );
    let posts = receiver.wait_for(3, std::time::Duration::from_secs(30));
    assert_eq!(posts.len(), 3, "the replayed post arrived");
    assert_eq!(
        posts[2].header("webhook-id"),
        id,
        "replayed with its original id"
    );
    b.screenshot(&shots.join("admin-webhooks.png"));
    // The session's page lists its deliveries.
    let session = events(data)
        .iter()
        .find(|e| e["type"] == "session.created")
        .expect("a session")["session"]
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&format!("{base}/sessions/{session}"));
    assert!(b.text("#session-deliveries").contains("session.ended"));
    b.js("document.getElementById('session-deliveries').scrollIntoView(); return true;");
    b.screenshot(&shots.join("session-deliveries.png"));
    b.goto(&format!("{base}/admin/policy"));
    b.screenshot(&shots.join("admin-policy.png"));
    submit(&b, "#logout");

    // Compliance: no administration, by link, by address or by a forged form.
    log_in(&b, &base, COMPLIANCE, PASSWORD);
    assert_eq!(
        b.js("return !!document.getElementById('nav-admin');"),
        false
    );
    let csrf = b
        .js("return document.querySelector('input[name=csrf]').value;")
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&format!("{base}/admin/accounts"));
    assert!(b.text("#error").contains("may not"), "{}", b.text("#error"));
    let add = format!(
        "csrf={csrf}&action=add&email=eve%40example.com&group=tier1&role=admin&password={PASSWORD}"
    );
    assert_eq!(status_of(&b, "POST", "/admin/accounts/user", &add), 403);
    let enable = format!("csrf={csrf}&action=enable&email=nia%40example.com");
    assert_eq!(status_of(&b, "POST", "/admin/accounts/user", &enable), 403);
    assert_eq!(status_of(&b, "GET", "/admin/webhooks", ""), 403);
    assert_eq!(status_of(&b, "GET", "/admin/policy", ""), 403);
    let users = run_in(data, &["admin", "user", "list", "--json"], "")
        .ok()
        .to_owned();
    assert!(!users.contains("eve@example.com"), "{users}");
    assert!(users.contains("\"disabled\":true"), "{users}");

    // ...but places and releases a legal hold.
    b.goto(&format!("{base}/sessions"));
    b.click("#nav-holds");
    b.wait_until(
        "the holds page",
        "return !!document.getElementById('place-hold');",
    );
    b.type_into("#h-session", &session);
    b.type_into("#h-reason", "matter 2026-114");
    submit(&b, "#h-place");
    assert!(
        b.text("#said").contains("placed on session"),
        "{}",
        b.text("#said")
    );
    b.screenshot(&shots.join("admin-holds.png"));
    b.type_into("#holds input[name=reason]", "matter closed");
    submit(&b, "#holds button[value=release]");
    assert!(b.text("#said").contains("released"), "{}", b.text("#said"));
    assert!(b.text("#holds").contains("matter closed"));

    // Every change is audited under the person who made it, from the portal.
    let changes: Vec<_> = events(data)
        .into_iter()
        .filter(|e| e["type"] == "admin.change")
        .collect();
    let by = |actor: &str, target: &str| {
        changes.iter().any(|e| {
            e["actor"].as_str().unwrap_or("").contains(actor)
                && e["payload"]["target"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(target)
                && e["source"].as_str().unwrap_or("").starts_with("web@")
        })
    };
    assert!(by(ADMIN, "user:nia@example.com"), "{changes:#?}");
    assert!(by(ADMIN, "webhook:"), "{changes:#?}");
    assert!(by(COMPLIANCE, "hold:"), "{changes:#?}");
    assert!(!by(COMPLIANCE, "user:"), "{changes:#?}");
    assert_eq!(gw.stop().0, 0);
}
