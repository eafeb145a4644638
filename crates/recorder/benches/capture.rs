//! Screen capture from a real 1920×1080 Xvfb display: MIT-SHM (the
//! server writes into a shared memfd, read back with `pread`) against
//! plain `GetImage` (the frame crosses the X socket), in the same run.
//!
//! Run: `cargo bench -p recorder --bench capture`.

use std::time::Instant;

use recorder::x11::X11;
use recorder::Source;
use testkit::Xvfb;

const FRAMES: u32 = 200;

/// Milliseconds of wall time per captured frame.
fn per_frame(x11: &mut X11) -> f64 {
    x11.next_frame().expect("a frame");
    let start = Instant::now();
    for _ in 0..FRAMES {
        x11.next_frame().expect("a frame");
    }
    start.elapsed().as_secs_f64() * 1000.0 / f64::from(FRAMES)
}

fn main() {
    let xvfb = Xvfb::start(1920, 1080);
    let mut shared = X11::open(Some(&xvfb.display)).expect("the display");
    assert!(shared.shared_memory(), "Xvfb offers no MIT-SHM 1.2");
    let mut plain = X11::open(Some(&xvfb.display))
        .expect("the display")
        .without_shared_memory();
    let (shm_ms, plain_ms) = (per_frame(&mut shared), per_frame(&mut plain));
    println!("1920x1080 capture, {FRAMES} frames each");
    println!("MIT-SHM  {shm_ms:.2} ms/frame");
    println!("GetImage {plain_ms:.2} ms/frame");
    println!(
        "total: MIT-SHM {shm_ms:.2} ms vs GetImage {plain_ms:.2} ms per frame, ratio {:.2}",
        shm_ms / plain_ms
    );
}
