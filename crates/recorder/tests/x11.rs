//! X11 capture and input injection against a real Xvfb display showing a
//! picture drawn by the test.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use recorder::input::{Inject, InputEvent};
use recorder::x11::keymap::char_keysym;
use recorder::x11::{X11Input, X11};
use recorder::Source;
use testkit::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt, CreateWindowAux, EventMask, InputFocus, WindowClass,
};
use x11rb::protocol::Event;

/// Waits, up to 5 s, for an event `want` accepts.
fn wait_event(conn: &impl Connection, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = conn.poll_for_event().unwrap() {
            if want(&e) {
                return e;
            }
            continue;
        }
        assert!(Instant::now() < deadline, "no such event within 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn captures_a_known_picture_and_injects_input() {
    let xvfb = Xvfb::start(320, 200);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().background_pixel(0x33_66_99),
    )
    .unwrap();
    conn.clear_area(false, root, 0, 0, 0, 0).unwrap();
    let window = conn.generate_id().unwrap();
    conn.create_window(
        24,
        window,
        root,
        100,
        50,
        64,
        32,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(0xff_00_00)
            .event_mask(EventMask::BUTTON_PRESS | EventMask::KEY_PRESS | EventMask::EXPOSURE),
    )
    .unwrap();
    conn.map_window(window).unwrap();
    conn.flush().unwrap();
    wait_event(&conn, |e| matches!(e, Event::Expose(_)));

    let mut x11 = X11::open(Some(&xvfb.display)).unwrap();
    assert_eq!(x11.size(), (320, 200));
    assert!(x11.shared_memory(), "Xvfb takes an MIT-SHM memfd");
    let frame = x11.next_frame().unwrap().unwrap();
    // The same picture, the same bytes, through the socket.
    let mut plain = X11::open(Some(&xvfb.display))
        .unwrap()
        .without_shared_memory();
    assert!(!plain.shared_memory());
    assert_eq!(plain.next_frame().unwrap().unwrap(), frame);
    let at = |x: usize, y: usize| &frame.pixels[(y * 320 + x) * 4..][..4];
    assert_eq!(at(10, 10), &[0x99, 0x66, 0x33, 255], "the root background");
    assert_eq!(at(130, 60), &[0, 0, 0xff, 255], "the red window");
    assert_eq!(
        at(99, 60),
        &[0x99, 0x66, 0x33, 255],
        "just left of the window"
    );

    let mut input = X11Input::open(Some(&xvfb.display)).unwrap();
    input.inject(&InputEvent::Move { x: 120, y: 60 }).unwrap();
    let cursor = x11.pointer(1).unwrap().expect("XFixes is there");
    assert_eq!((cursor.x, cursor.y), (120, 60));
    assert!(cursor.shape.is_some(), "the first report carries the shape");
    assert!(
        x11.pointer(2).unwrap().unwrap().shape.is_none(),
        "an unchanged shape is not resent"
    );

    click(&mut input, 1);
    let press = wait_event(&conn, |e| matches!(e, Event::ButtonPress(_)));
    let Event::ButtonPress(press) = press else {
        unreachable!()
    };
    assert_eq!((press.detail, press.event_x, press.event_y), (1, 20, 10));

    conn.set_input_focus(InputFocus::POINTER_ROOT, window, x11rb::CURRENT_TIME)
        .unwrap();
    conn.flush().unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    key(&mut input, 0x61);
    let key = wait_event(&conn, |e| matches!(e, Event::KeyPress(_)));
    let Event::KeyPress(key) = key else {
        unreachable!()
    };
    assert_eq!(key.detail, 38, "a is keycode 38 on a US keyboard");
}

fn click(input: &mut X11Input, button: u8) {
    for press in [true, false] {
        input.inject(&InputEvent::Button { button, press }).unwrap();
    }
}

fn key(input: &mut X11Input, keysym: u32) {
    for press in [true, false] {
        input.inject(&InputEvent::Key { keysym, press }).unwrap();
    }
}

fn hold(input: &mut X11Input, keysym: u32, press: bool) {
    input.inject(&InputEvent::Key { keysym, press }).unwrap();
}

/// What the layout test types: Shift and AltGr levels on every layout,
/// and letters no US or French key carries.
pub const TYPED: &str = "Hello World: a+b=c @x #1 (ok)! ü € ß";

const SHIFT_L: u32 = 0xffe1;
const CAPS_LOCK: u32 = 0xffe5;
const RETURN: u32 = 0xff0d;

#[test]
fn text_arrives_as_typed_whatever_the_end_users_layout() {
    for layout in ["us", "de", "fr"] {
        let xvfb = Xvfb::start(640, 200);
        xvfb.layout(layout);
        let dir = tempfile::tempdir().unwrap();
        let terminal = xvfb.terminal(&dir.path().join("line"));
        let mut input = X11Input::open(Some(&xvfb.display)).unwrap();
        // No window manager: keys go to the window under the pointer.
        input.inject(&InputEvent::Move { x: 100, y: 30 }).unwrap();
        for c in TYPED.chars() {
            key(&mut input, char_keysym(c));
        }
        // The technician holds Shift: characters still come out as sent.
        hold(&mut input, SHIFT_L, true);
        for c in "xY1".chars() {
            key(&mut input, char_keysym(c));
        }
        hold(&mut input, SHIFT_L, false);
        // Caps Lock on the end user's side changes nothing either.
        key(&mut input, CAPS_LOCK);
        for c in "zZ".chars() {
            key(&mut input, char_keysym(c));
        }
        key(&mut input, CAPS_LOCK);
        key(&mut input, RETURN);
        assert_eq!(
            terminal.line(),
            format!("{TYPED}xY1zZ"),
            "on layout {layout}"
        );
        assert_eq!(xvfb.keys_down(), Vec::<u8>::new(), "nothing held");
    }
}

#[test]
fn everything_held_is_let_go_on_release_all_on_failure_and_when_dropped() {
    let xvfb = Xvfb::start(320, 200);
    let mut input = X11Input::open(Some(&xvfb.display)).unwrap();
    let held = |input: &mut X11Input| {
        hold(input, SHIFT_L, true);
        hold(input, 0xffe3, true);
        input
            .inject(&InputEvent::Button {
                button: 1,
                press: true,
            })
            .unwrap();
        assert_eq!(xvfb.keys_down().len(), 2, "Shift and Control down");
    };
    held(&mut input);
    input.inject(&InputEvent::ReleaseAll).unwrap();
    assert_eq!(xvfb.keys_down(), Vec::<u8>::new());

    held(&mut input);
    let refused = input.inject(&InputEvent::Button {
        button: 0,
        press: true,
    });
    assert!(refused.unwrap_err().to_string().contains("button 0"));
    assert_eq!(xvfb.keys_down(), Vec::<u8>::new(), "let go on a failure");

    held(&mut input);
    drop(input);
    assert_eq!(xvfb.keys_down(), Vec::<u8>::new(), "let go when dropped");
}

#[test]
fn a_still_screen_is_not_captured_again_until_something_draws() {
    let xvfb = Xvfb::start(160, 100);
    let (conn, screen) = x11rb::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let mut x11 = X11::open(Some(&xvfb.display)).unwrap();
    assert!(!x11.unchanged().unwrap(), "nothing captured yet");
    let before = x11.next_frame().unwrap().unwrap();
    assert!(x11.unchanged().unwrap(), "nothing drew since");
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().background_pixel(0x00_80_00),
    )
    .unwrap();
    conn.clear_area(false, root, 0, 0, 0, 0).unwrap();
    conn.flush().unwrap();
    // The damage report travels back from the server: wait for it (5 s at most).
    let deadline = Instant::now() + Duration::from_secs(5);
    while x11.unchanged().unwrap() {
        assert!(Instant::now() < deadline, "no damage reported within 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = x11.next_frame().unwrap().unwrap();
    assert_ne!(after, before);
    assert_eq!(&after.pixels[..4], &[0, 0x80, 0, 255]);
    assert!(x11.unchanged().unwrap(), "re-armed, and nothing drew since");
}

#[test]
fn a_missing_display_is_a_clear_error() {
    let err = X11::open(Some(":987")).unwrap_err().to_string();
    assert!(err.contains("cannot connect to X display :987"), "{err}");
    let err = X11Input::open(Some(":987")).unwrap_err().to_string();
    assert!(err.contains("cannot connect to X display :987"), "{err}");
}
