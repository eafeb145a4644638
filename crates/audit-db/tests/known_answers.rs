//! The audit chain's known answers: three fixed events (with fixed salts)
//! appended to an empty log get fixed hashes and a fixed Merkle root. Every stored log was hashed this way; a change to
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
        salt: [n as u8; 16],
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
            "df7a6e26abd5348d0b9561a13fc92f282a5b40bfb0de32c66c9e08a5495d36ec",
            "a36d4795d35f2876af65e2008567c84133c57433213243a9f364233bdafa6ff0",
            "5841c284c085ad59aade04584ef72c40c716099477c995336fb65d0f6be9776b",
        ]
    );
    assert_eq!(planned.rows[0].prev_hash, Hash::GENESIS);
    assert_eq!(planned.rows[1].prev_hash, planned.rows[0].hash);
    assert_eq!(planned.head.seq, 3);
    // The same encoding is each event's Merkle leaf (RFC 6962: a 0x00
    // prefix for leaves, 0x01 for nodes).
    let leaves: Vec<Hash> = planned.rows.iter().map(|r| r.leaf).collect();
    let nodes = audit_db::merkle::append(0, &leaves, &Default::default()).unwrap();
    let stored = nodes.into_iter().collect();
    assert_eq!(
        audit_db::merkle::root(3, &stored).unwrap().to_string(),
        "108eb5d07669730a0c1f98bf58458cc77a417a2d629bba3ba7385f7917ecd5fd"
    );
}
