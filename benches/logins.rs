//! What a login's answer takes, against a real `vigil gateway` process on
//! loopback: a wrong password for an account that exists against any
//! password for an email that has none, interleaved, in the same run. The
//! two must take as long (ratio ≈ 1), or the timing tells which accounts
//! exist; before both ran the same statements, an unknown email answered
//! about 4 ms sooner.
//!
//! Run: `cargo bench --bench logins`. The last line is the summary.

mod common;

use std::time::{Duration, Instant};

use common::{Setup, USER};
use protocol::wire::ErrorCode;

/// Logins timed on each side.
const ROUNDS: usize = 90;

fn main() {
    // Nothing may lock or throttle during the run: every login is checked.
    let setup = Setup::with_policy(
        "desktop_view",
        &["--lockout-threshold", "100", "--ip-failure-limit", "100000"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (known, unknown) = rt.block_on(async {
        let connector = &setup.connector;
        let timed = |email: String| async move {
            let start = Instant::now();
            let refused = connector
                .login(&email, "not the password at all", None)
                .await;
            let took = start.elapsed();
            assert_eq!(
                refused.err().and_then(|e| e.code()),
                Some(ErrorCode::BadCredentials),
                "{email}"
            );
            took
        };
        // Warm both paths (connections, page cache) before timing.
        timed(USER.to_owned()).await;
        timed("warm@example.com".to_owned()).await;
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            known.push(timed(USER.to_owned()).await);
            unknown.push(timed(format!("nobody{i}@example.com")).await);
        }
        (known, unknown)
    });
    setup.stop();
    let (k, u) = (median(known), median(unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    println!(
        "ours: wrong password of an account, median {:.2} ms over {ROUNDS}",
        ms(k)
    );
    println!(
        "reference: unknown email, median {:.2} ms over {ROUNDS}",
        ms(u)
    );
    println!(
        "ratio unknown/known {ratio:.3} (difference {:+.2} ms; target: no measurable difference)",
        ms(u) - ms(k)
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
