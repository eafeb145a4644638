//! The console page benchmark: a real gateway, console and applet
//! (processes), the applet on a 1920×1080 Xvfb display, the page open in
//! headless Chromium.
//!
//! 1. An X change to the page's canvas: a rectangle drawn on the display,
//!    timed until a canvas pixel the browser reads shows it (target median
//!    ≤ 100 ms, p95 ≤ 200 ms).
//! 2. Input round trip: a click on the page until the X pointer is there
//!    (target p95 ≤ 50 ms).
//! 3. Applet CPU with the page open on a still screen (target ≤ 0.5 %).
//! 4. Applet CPU and memory with a full-screen terminal printing noise 10
//!    times a second (the issue measured 24.7 % and 62 → 133 MB that never
//!    came back).
//!
//! Run: `cargo bench --bench page`. Needs Xvfb, xterm, Chromium and
//! chromedriver (scripts/test installs them). The last line is the summary.

mod common;

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Setup, PASSWORD, USER};
use session_core::lines::ConsoleLine;
use testkit::{Browser, Xvfb};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, CreateGCAux, Rectangle};

const WIDTH: u16 = 1920;
const HEIGHT: u16 = 1080;
const ROUNDS: usize = 60;

fn main() {
    let setup = Setup::start("desktop_view,remote_control");
    let xvfb = Xvfb::start(u32::from(WIDTH), u32::from(HEIGHT));
    let ca = setup.gw.ca.to_str().expect("a UTF-8 path").to_owned();
    let mut console = vigil(
        &setup,
        &[
            "console",
            "--gateway",
            &setup.gw.addr,
            "--ca",
            &ca,
            "--user",
            USER,
            "--json",
        ],
    );
    let mut to_console = console.stdin.take().expect("piped");
    let mut lines = BufReader::new(console.stdout.take().expect("piped")).lines();
    writeln!(to_console, "{PASSWORD}\n/new").expect("the console's input");
    let url = wait(&mut lines, |l| match l {
        ConsoleLine::Viewer { url } => Some(url),
        _ => None,
    });
    let pin = wait(&mut lines, |l| match l {
        ConsoleLine::SessionCreated { pin, .. } => Some(pin),
        _ => None,
    });
    let mut applet = vigil(
        &setup,
        &[
            "applet",
            "--gateway",
            &setup.gw.addr,
            "--ca",
            &ca,
            "--pin",
            &pin,
            "--consent",
            "grant-all",
            "--json",
            "--display",
            &xvfb.display,
        ],
    );
    writeln!(to_console, "/pick\n/view\n/control").expect("the console's input");
    wait(&mut lines, |l| match l {
        ConsoleLine::Control { granted: true, .. } => Some(()),
        _ => None,
    });
    let browser = Browser::start().expect("Chromium and chromedriver are installed");
    browser.goto(&url);
    browser.wait_until(
        "the first picture on the page",
        "return Number(document.getElementById('screen').dataset.updates || 0) > 0",
    );

    println!("== 1. X change to the page's canvas, {ROUNDS} rounds, 1920x1080");
    let changes = x_change_to_canvas(&xvfb, &browser);
    let (change_p50, change_p95) = (percentile(&changes, 50), percentile(&changes, 95));
    println!(
        "ours: median {change_p50:.1} ms, p95 {change_p95:.1} ms; reference (targets): median 100 ms, p95 200 ms; ratios {:.2} and {:.2}",
        change_p50 / 100.0,
        change_p95 / 200.0
    );

    println!(
        "== 2. input round trip, a click on the page until the X pointer is there, {ROUNDS} rounds"
    );
    let trips = click_to_pointer(&xvfb, &browser);
    let (trip_p50, trip_p95) = (percentile(&trips, 50), percentile(&trips, 95));
    println!(
        "ours: median {trip_p50:.1} ms, p95 {trip_p95:.1} ms; reference (target): p95 50 ms; ratio {:.2}",
        trip_p95 / 50.0
    );

    println!("== 3. applet CPU, page open, still screen, 10 s");
    let idle = cpu_percent(applet.id(), Duration::from_secs(10));
    println!(
        "ours: {idle:.2} % of a core; reference (target): 0.5 %; ratio {:.2}",
        idle / 0.5
    );

    println!(
        "== 4. applet CPU and memory, full-screen terminal printing noise 10 times a second, 2 x 20 s"
    );
    let before = rss_mb(applet.id());
    let mut noise = noise_terminal(&xvfb);
    let (busy, first_peak) = cpu_and_peak_rss(applet.id(), Duration::from_secs(20));
    // Twice as long a burst must not take more: the memory is bounded.
    let (_, peak) = cpu_and_peak_rss(applet.id(), Duration::from_secs(20));
    let _ = noise.kill();
    let _ = noise.wait();
    std::thread::sleep(Duration::from_secs(10));
    let after = rss_mb(applet.id());
    writeln!(to_console, "/view off").expect("the console's input");
    wait(&mut lines, |l| match l {
        ConsoleLine::ViewEnded { .. } => Some(()),
        _ => None,
    });
    std::thread::sleep(Duration::from_secs(5));
    let view_off = rss_mb(applet.id());
    println!(
        "ours: {busy:.1} % of a core, RSS {before:.0} MB before, {first_peak:.0} MB at most in the first 20 s, {peak:.0} MB in the next 20 s, {after:.0} MB 10 s after, {view_off:.0} MB once the view is off; reference (the issue's measurement): 24.7 %, 62 -> 133 MB kept; CPU ratio {:.2}",
        busy / 24.7
    );

    println!(
        "ratio ours/reference: X change median {:.2} ({change_p50:.0}/100 ms), p95 {:.2} ({change_p95:.0}/200 ms); click p95 {:.2} ({trip_p95:.0}/50 ms); idle CPU {:.2} ({idle:.2}/0.5 %); noise CPU {:.2} ({busy:.1}/24.7 %), RSS {before:.0}/{first_peak:.0}/{peak:.0}/{after:.0}/{view_off:.0} MB (before/first 20 s/next 20 s/after/view off)",
        change_p50 / 100.0,
        change_p95 / 200.0,
        trip_p95 / 50.0,
        idle / 0.5,
        busy / 24.7
    );
    drop(browser);
    writeln!(to_console, "/end").expect("the console's input");
    drop(to_console);
    let _ = console.wait();
    let _ = applet.wait();
    setup.stop();
}

fn vigil(setup: &Setup, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(setup.dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting vigil")
}

/// Reads the console's lines until `pick` takes one.
fn wait<T>(
    lines: &mut Lines<BufReader<ChildStdout>>,
    mut pick: impl FnMut(ConsoleLine) -> Option<T>,
) -> T {
    for line in lines.by_ref() {
        let line = line.expect("reading the console");
        let parsed: ConsoleLine = serde_json::from_str(&line).expect("a console line");
        if let ConsoleLine::Error { message } = &parsed {
            panic!("the console failed: {message}");
        }
        if let Some(found) = pick(parsed) {
            return found;
        }
    }
    panic!("the console ended early");
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

/// Draws a 300×200 rectangle in a new colour each round and times it until
/// the page's canvas shows that colour at its centre (both clocks are the
/// system's wall clock).
fn x_change_to_canvas(xvfb: &Xvfb, browser: &Browser) -> Vec<f64> {
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).expect("the display");
    let root = conn.setup().roots[screen].root;
    let gc = conn.generate_id().expect("an id");
    conn.create_gc(gc, root, &CreateGCAux::new())
        .expect("a graphics context");
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (r, g, b) = (
            (round * 53 + 40) % 256,
            (round * 97 + 90) % 256,
            (round * 31 + 160) % 256,
        );
        browser.js(&format!(
            "window.__seen = null; const c = document.getElementById('screen').getContext('2d');
             const check = () => {{
               const p = c.getImageData(250, 250, 1, 1).data;
               if (p[0] === {r} && p[1] === {g} && p[2] === {b}) window.__seen = performance.timeOrigin + performance.now();
               else setTimeout(check, 1);
             }};
             check(); return true"
        ));
        let pixel = (r << 16 | g << 8 | b) as u32;
        conn.change_gc(
            gc,
            &x11rb::protocol::xproto::ChangeGCAux::new().foreground(pixel),
        )
        .expect("a colour");
        let drawn = now_ms();
        conn.poly_fill_rectangle(
            root,
            gc,
            &[Rectangle {
                x: 100,
                y: 100,
                width: 300,
                height: 200,
            }],
        )
        .expect("drawing");
        x11rb::wrapper::ConnectionExt::sync(&conn).expect("the drawing done");
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            if let Some(seen) = browser.js("return window.__seen").as_f64() {
                break seen;
            }
            assert!(
                Instant::now() < deadline,
                "the change never reached the canvas"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        times.push(seen - drawn);
        std::thread::sleep(Duration::from_millis(150));
    }
    times
}

/// Clicks the canvas (synthetic mouse events, as the page's own handlers
/// take them) at a new place each round and times it until the display's
/// pointer is there, watched from another thread.
fn click_to_pointer(xvfb: &Xvfb, browser: &Browser) -> Vec<f64> {
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (ox, oy) = (60 + (round * 37) % 700, 60 + (round * 53) % 400);
        let target = browser.js(&format!(
            "const c = document.getElementById('screen'), r = c.getBoundingClientRect();
             return [Math.round({ox} * c.width / c.clientWidth), Math.round({oy} * c.height / c.clientHeight)]"
        ));
        let want = (
            target[0].as_i64().expect("x") as i16,
            target[1].as_i64().expect("y") as i16,
        );
        let display = xvfb.display.clone();
        let watcher = std::thread::spawn(move || {
            let (conn, screen) = x11rb::connect(Some(&display)).expect("the display");
            let root = conn.setup().roots[screen].root;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let p = conn
                    .query_pointer(root)
                    .expect("asking")
                    .reply()
                    .expect("the pointer");
                if (p.root_x, p.root_y) == want {
                    return now_ms();
                }
                assert!(Instant::now() < deadline, "the pointer never got there");
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let clicked = browser
            .js(&format!(
                "const c = document.getElementById('screen'), r = c.getBoundingClientRect();
                 const at = {{ clientX: r.left + {ox}, clientY: r.top + {oy}, bubbles: true, button: 0 }};
                 const t = performance.timeOrigin + performance.now();
                 c.dispatchEvent(new MouseEvent('mousedown', at));
                 window.dispatchEvent(new MouseEvent('mouseup', at));
                 return t"
            ))
            .as_f64()
            .expect("a time");
        let arrived = watcher.join().expect("the watcher");
        times.push(arrived - clicked);
        std::thread::sleep(Duration::from_millis(100));
    }
    times
}

/// A full-screen xterm printing a screenful of random letters 10 times a second.
fn noise_terminal(xvfb: &Xvfb) -> Child {
    Command::new("xterm")
        .args([
            "-display",
            &xvfb.display,
            "-geometry",
            "400x150+0+0",
            "-e",
            "sh",
            "-c",
        ])
        .arg("while :; do tr -dc 'A-Za-z0-9 ' </dev/urandom | head -c 40000; sleep 0.1; done")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xterm is installed")
}

/// CPU time of `pid` (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is alive");
    // Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// The share of one core `pid` used over `span`.
fn cpu_percent(pid: u32, span: Duration) -> f64 {
    cpu_and_peak_rss(pid, span).0
}

/// CPU share over `span`, and the largest RSS seen (MB), sampled every 100 ms.
fn cpu_and_peak_rss(pid: u32, span: Duration) -> (f64, f64) {
    // Linux counts in USER_HZ, 100 a second on every architecture Vigil runs on.
    const TICKS: f64 = 100.0;
    let (start, t0) = (cpu_ticks(pid), Instant::now());
    let mut peak = 0f64;
    while t0.elapsed() < span {
        peak = peak.max(rss_mb(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = (cpu_ticks(pid) - start) as f64 / TICKS;
    (100.0 * used / t0.elapsed().as_secs_f64(), peak)
}

/// Resident memory of `pid` in MB.
fn rss_mb(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

fn percentile(samples: &[f64], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
