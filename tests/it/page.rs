//! The console's page in a real browser: Debian's Chromium, headless, over
//! WebDriver, against a real gateway, console and applet on an Xvfb
//! display with a terminal on it. Screenshots of each step are saved in
//! `target/tmp/page-screenshots/`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use recorder::input::{Inject, InputEvent};
use session_core::lines::{AppletLine, ConsoleLine};
use sha2::{Digest, Sha256};
use testkit::Browser;

use crate::desk::{http, Desk};
use crate::helpers::events;

/// What is typed from the page: Shift and AltGr levels on every layout,
/// and letters no US or French key carries.
const TYPED: &str = "Hello World: a+b=c @x #1 (ok)! ü € ß";
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `document.getElementById(id)` in a script.
fn el(id: &str) -> String {
    format!("document.getElementById({id:?})")
}

/// A script that is true once badge `id` says `on`.
fn badge_is(id: &str, on: bool) -> String {
    format!("return {}.dataset.on === {:?}", el(id), on.to_string())
}

#[test]
fn the_page_is_a_console_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let shots = screenshots();
    let shot = |name: &str| browser.screenshot(&shots.join(format!("{name}.png")));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut desk = Desk::start(
        data,
        &[
            "--permissions",
            "desktop_view,remote_control,send_files,receive_files",
        ],
        (800, 500),
        &[],
    );
    let (session, sas) = desk.wait(|l| match l {
        ConsoleLine::Paired { session, sas } => Some((session, sas)),
        _ => None,
    });
    let mut applet_lines = BufReader::new(desk.applet.stdout.take().unwrap()).lines();
    let mut applet_says = |want: &dyn Fn(&AppletLine) -> bool| loop {
        let line = applet_lines.next().expect("the applet is running").unwrap();
        let parsed: AppletLine = serde_json::from_str(&line).unwrap();
        if want(&parsed) {
            return parsed;
        }
    };

    // The session, as the page shows it.
    browser.goto(&desk.url);
    browser.wait_until(
        "the session on the page",
        &format!(
            "return {}.textContent === {:?}",
            el("guid"),
            session.to_string()
        ),
    );
    assert_eq!(browser.text("#sas"), sas);
    assert!(browser.text("#end-user").contains("127.0.0.1"));
    let favicon = browser.js("return document.querySelector('link[rel=icon]').href");
    assert!(favicon.as_str().unwrap().ends_with("/favicon.svg"));
    for id in ["badge-view", "badge-control", "badge-record"] {
        browser.wait_until(id, &badge_is(id, false));
    }
    shot("1-picked-up");

    // View, control and recording, each by its button, each shown as it is.
    browser.click("#btn-view");
    browser.wait_until("view on", &badge_is("badge-view", true));
    browser.wait_until(
        "a picture on the canvas",
        &format!("return Number({}.dataset.updates || 0) > 0", el("screen")),
    );
    browser.click("#btn-control");
    browser.wait_until("control on", &badge_is("badge-control", true));
    browser.click("#btn-record");
    browser.wait_until("recording on", &badge_is("badge-record", true));
    browser.wait_until(
        "the recording's file and time",
        &format!(
            "return /^Recording \\d\\d:\\d\\d:\\d\\d · .*\\.vrec$/.test({}.textContent)",
            el("badge-record")
        ),
    );
    assert!(browser.text("#granted").contains("remote_control"));
    shot("2-view-control-record");

    // A pointer that moves on a still screen moves on the page.
    let mut pointer = recorder::x11::X11Input::open(Some(&desk.display.display)).unwrap();
    pointer
        .inject(&InputEvent::Move { x: 321, y: 123 })
        .unwrap();
    browser.wait_until(
        "the pointer at (321, 123) on the page",
        "return cursor !== null && cursor.x === 321 && cursor.y === 123",
    );
    drop(pointer);

    // Chat both ways.
    browser.type_into("#chat-input", &format!("hello from the page{ENTER}"));
    applet_says(&|l| matches!(l, AppletLine::Chat { text, .. } if text == "hello from the page"));
    writeln!(
        desk.applet.stdin.as_mut().unwrap(),
        "hello from the end user"
    )
    .unwrap();
    browser.wait_until(
        "the end user's chat on the page",
        &format!(
            "return {}.textContent.includes('end user:hello from the end user')",
            el("chat-log")
        ),
    );

    // A file sent from the browser arrives whole, and its hashes are in the log.
    let upload = data.join("report.txt");
    let content = b"quarterly numbers\n".repeat(5000);
    std::fs::write(&upload, &content).unwrap();
    browser.type_into("#send-file", upload.to_str().unwrap());
    browser.click("#send-form button");
    browser.wait_until(
        "the sent file verified on the page",
        &format!(
            "return {}.textContent.includes('verified on both ends')",
            el("transfers")
        ),
    );
    let sha256 = hex::encode(Sha256::digest(&content));
    let logged: Vec<_> = events(data)
        .into_iter()
        .filter(|e| e["type"] == "file.transferred" && e["payload"]["sha256"] == sha256)
        .collect();
    assert_eq!(logged.len(), 2, "both ends audit the same SHA-256");

    // A file requested from the page can be downloaded from it.
    let wanted = data.join("on-the-end-users-disk.bin");
    std::fs::write(&wanted, b"from the end user").unwrap();
    browser.type_into("#get-path", &format!("{}{ENTER}", wanted.display()));
    browser.wait_until(
        "a download link",
        &format!("return {}.querySelector('a') !== null", el("transfers")),
    );
    let link = browser.js(&format!(
        "return {}.querySelector('a').href",
        el("transfers")
    ));
    let (status, body) = http("GET", link.as_str().unwrap(), "");
    assert_eq!((status, body.as_slice()), (200, &b"from the end user"[..]));
    shot("3-chat-and-files");

    // Typed on the page, arriving exactly in a terminal on each layout.
    for layout in ["us", "de", "fr"] {
        desk.display.layout(layout);
        let terminal = desk.display.terminal(&data.join(format!("typed-{layout}")));
        browser.click("#screen");
        browser.type_into("#screen", TYPED);
        if layout == "fr" {
            // Seen on the page before it is sent: dark text on the white
            // terminal's first line (not the black screen between terminals).
            browser.wait_until(
                "the typed line on the page's screen",
                &format!(
                    "const d = {}.getContext('2d').getImageData(0, 0, 400, 16).data; \
                     let dark = 0, light = 0; \
                     for (let i = 0; i < d.length; i += 4) {{ if (d[i] < 80) dark++; if (d[i] > 200) light++; }} \
                     return light > 3000 && dark > 200",
                    el("screen")
                ),
            );
            shot("4-typed-on-a-french-layout");
        }
        browser.type_into("#screen", ENTER);
        assert_eq!(
            terminal.line(),
            TYPED,
            "typed from the page on layout {layout}"
        );
    }
    // The last Enter's release may still be on its way (the terminal acts
    // on the press): what matters is that every key is let go.
    crate::desk::wait_until("every key typed let go", || {
        desk.display.keys_down().is_empty()
    });

    // Shift held when the page loses focus: its release would never come,
    // so everything is let go on the X side.
    browser.click("#screen");
    browser.js(&format!(
        "const s = {}; \
         s.dispatchEvent(new KeyboardEvent('keydown', {{ key: 'Shift', code: 'ShiftLeft', bubbles: true }})); \
         return true",
        el("screen")
    ));
    crate::desk::wait_until("Shift held on the end user's side", || {
        !desk.display.keys_down().is_empty()
    });
    browser.click("#chat-input");
    crate::desk::wait_until("everything let go when the page lost focus", || {
        desk.display.keys_down().is_empty()
    });

    // A permission the group lacks: the denial shows as it happens.
    browser.type_into("#command", &format!("/sysinfo{ENTER}"));
    browser.wait_until(
        "the denial on the page",
        &format!(
            "return [...{}.querySelectorAll('li.bad')].some(li => li.textContent.includes('denied'))",
            el("events")
        ),
    );
    browser.wait_until(
        "the denial in the alert",
        &format!("return {}.classList.contains('shown')", el("alert")),
    );
    shot("5-denied");

    // Recording off, control off, then the end.
    browser.click("#btn-record");
    browser.wait_until("recording off", &badge_is("badge-record", false));
    browser.click("#btn-control");
    browser.wait_until("control off", &badge_is("badge-control", false));
    browser.click("#btn-end");
    browser.wait_until(
        "no session on the page",
        &format!("return {}.textContent === 'none'", el("guid")),
    );
    for id in ["badge-view", "badge-control", "badge-record"] {
        browser.wait_until(id, &badge_is(id, false));
    }
    browser.wait_until(
        "the end on the page",
        &format!(
            "return {}.textContent.includes('Session {session} ended: the session ended')",
            el("events")
        ),
    );
    shot("6-ended");
    let recorded = std::fs::read_dir(data.join("vigil-recordings"))
        .unwrap()
        .count();
    assert_eq!(recorded, 1, "the recording was saved");
    desk.finish();
}
