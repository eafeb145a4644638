//! The audit chain's known answers: three fixed events appended to an empty
//! log get fixed hashes. Every stored log was hashed this way; a change to
//! the encoding or the chaining would make all of them fail verification,
//! and fails here first. (The byte-level encoding of both formats is pinned
//! beside the encoder, in `encoding.rs`.)
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use audit_db::chain::{plan, Pending};
use audit_db::{Hash, Head};
use uuid::Uuid;

fn event(n: u128, kind: &'static str, payload: &str, reported: Option<i64>) -> Pending {
    Pending {
        id: Uuid::from_u128(n),
        session: (n == 2).then(|| Uuid::from_u128(0xabc)),
        occurred_at_us: 1_700_000_000_000_000 + n as i64,
        reported_at_us: reported,
        source: "gateway".into(),
        actor: "technician:ann@example.com".into(),
        kind,
        payload: payload.into(),
    }
}

#[test]
fn three_fixed_events_chain_to_fixed_hashes() {
    let events = [
        event(
            1,
            "login.succeeded",
            r#"{"email":"ann@example.com","ip":"192.0.2.7"}"#,
            None,
        ),
        event(
            2,
            "chat.message",
            r#"{"from":"technician","text":"hi","chars":2}"#,
            Some(5),
        ),
        event(3, "admin.note", r#"{"text":"done"}"#, None),
    ];
    let batch: Vec<&Pending> = events.iter().collect();
    let genesis = Head {
        seq: 0,
        hash: Hash::GENESIS,
    };
    let planned = plan(genesis, 1_700_000_000_000_100, &batch, &HashMap::new());
    let hashes: Vec<String> = planned.rows.iter().map(|r| r.hash.to_string()).collect();
    // Computed once, and checked against a separate implementation of the
    // layout encoding.rs describes (a few lines of Python).
    assert_eq!(
        hashes,
        [
            "84e1dc2a2ab1d9ae62ec2fdd1fe5a86dd81fff0adff996a9a54f87eff54ff26b",
            "5ba24130c1b893e2a1e3d3c12472e6f879c125e32e02ca93fafe5a7d785c9aa5",
            "e4ef5d51edf81049fb9dd4c66d0dd1d2f5399e250b0e00e06c834c00bbf59e12",
        ]
    );
    assert_eq!(planned.rows[0].prev_hash, Hash::GENESIS);
    assert_eq!(planned.rows[1].prev_hash, planned.rows[0].hash);
    assert_eq!(planned.head.seq, 3);
}
