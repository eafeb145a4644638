//! Every wire message as fixed bytes: a change to a message's encoding (a
//! renamed field, another type byte, another number format) fails here
//! before it reaches a peer of another version. Each case also decodes the
//! fixed bytes back to the message.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use audit_event::event::JoinMethod;
use audit_event::Permission;
use protocol::wire::{ErrorCode, Message, Waiting};
use uuid::Uuid;

const GUID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
const ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// Each message with its type byte and its JSON body, exactly as sent.
fn cases() -> Vec<(Message, u8, &'static str)> {
    vec![
        (
            Message::Hello {
                version: 1,
                client: "vigil console".into(),
            },
            0x01,
            r#"{"client":"vigil console","version":1}"#,
        ),
        (
            Message::Welcome {
                version: 1,
                gateway: "gw1".into(),
            },
            0x02,
            r#"{"gateway":"gw1","version":1}"#,
        ),
        (
            Message::Error {
                code: ErrorCode::Throttled,
                message: "slow down".into(),
                retry_after_s: Some(30),
            },
            0x03,
            r#"{"code":"throttled","message":"slow down","retry_after_s":30}"#,
        ),
        (
            Message::Login {
                email: "ann@example.com".into(),
                password: "pw".into(),
                new_password: None,
            },
            0x10,
            r#"{"email":"ann@example.com","new_password":null,"password":"pw"}"#,
        ),
        (
            Message::LoginOk {
                email: "ann@example.com".into(),
                group: "tier1".into(),
                role: "technician".into(),
                permissions: vec![Permission::DesktopView, Permission::SendFiles],
                idle_timeout_s: 900,
                password_expires_us: Some(1_700_000_000_000_000),
                force_recording: true,
            },
            0x11,
            r#"{"email":"ann@example.com","force_recording":true,"group":"tier1","idle_timeout_s":900,"password_expires_us":1700000000000000,"permissions":["desktop_view","send_files"],"role":"technician"}"#,
        ),
        (Message::Logout {}, 0x12, "{}"),
        (Message::CreateSession {}, 0x20, "{}"),
        (
            Message::SessionCreated {
                guid: GUID,
                pin: "042137".into(),
                expires_us: 1_700_000_600_000_000,
            },
            0x21,
            r#"{"expires_us":1700000600000000,"guid":"01234567-89ab-cdef-0123-456789abcdef","pin":"042137"}"#,
        ),
        (Message::ListQueue {}, 0x22, "{}"),
        (
            Message::Queue {
                waiting: vec![Waiting {
                    guid: GUID,
                    joined_us: 5,
                    ip: "192.0.2.7".parse().unwrap(),
                    via: JoinMethod::Pin,
                }],
            },
            0x23,
            r#"{"waiting":[{"guid":"01234567-89ab-cdef-0123-456789abcdef","ip":"192.0.2.7","joined_us":5,"via":"pin"}]}"#,
        ),
        (
            Message::PickUp {
                guid: GUID,
                csr: "CSR".into(),
            },
            0x24,
            r#"{"csr":"CSR","guid":"01234567-89ab-cdef-0123-456789abcdef"}"#,
        ),
        (
            Message::PickedUp {
                guid: GUID,
                ticket: "ab".repeat(16),
                certificate: "CERT".into(),
                session_ca: "CA".into(),
                grant: vec![Permission::RemoteControl],
            },
            0x25,
            r#"{"certificate":"CERT","grant":["remote_control"],"guid":"01234567-89ab-cdef-0123-456789abcdef","session_ca":"CA","ticket":"abababababababababababababababab"}"#,
        ),
        (
            Message::Join {
                code: "042137".into(),
                csr: "CSR".into(),
            },
            0x30,
            r#"{"code":"042137","csr":"CSR"}"#,
        ),
        (
            Message::Joined {
                guid: GUID,
                technician: "ann@example.com".into(),
            },
            0x31,
            r#"{"guid":"01234567-89ab-cdef-0123-456789abcdef","technician":"ann@example.com"}"#,
        ),
        (
            Message::Paired {
                certificate: "CERT".into(),
                session_ca: "CA".into(),
            },
            0x32,
            r#"{"certificate":"CERT","session_ca":"CA"}"#,
        ),
        (
            Message::Attach {
                guid: GUID,
                ticket: "ab".repeat(16),
            },
            0x40,
            r#"{"guid":"01234567-89ab-cdef-0123-456789abcdef","ticket":"abababababababababababababababab"}"#,
        ),
        (
            Message::Attached { guid: GUID },
            0x41,
            r#"{"guid":"01234567-89ab-cdef-0123-456789abcdef"}"#,
        ),
        (
            Message::End {
                reason: "ended by the end user".into(),
            },
            0x51,
            r#"{"reason":"ended by the end user"}"#,
        ),
        (
            Message::Event {
                id: ID,
                occurred_us: 1_700_000_000_000_000,
                session: Some(GUID),
                kind: "chat.message".into(),
                payload: serde_json::json!({"from": "technician", "text": null, "chars": 5}),
            },
            0x60,
            r#"{"id":"01900000-0000-7000-8000-000000000001","kind":"chat.message","occurred_us":1700000000000000,"payload":{"chars":5,"from":"technician","text":null},"session":"01234567-89ab-cdef-0123-456789abcdef"}"#,
        ),
        (
            Message::EventAck {
                id: ID,
                seq: 42,
                duplicate: false,
            },
            0x61,
            r#"{"duplicate":false,"id":"01900000-0000-7000-8000-000000000001","seq":42}"#,
        ),
        (
            Message::EventRefused {
                id: ID,
                message: "no".into(),
            },
            0x62,
            r#"{"id":"01900000-0000-7000-8000-000000000001","message":"no"}"#,
        ),
        // Data carries opaque bytes, not JSON: its body is the bytes themselves.
        (Message::Data(vec![0xde, 0xad, 0xbe, 0xef]), 0x50, ""),
    ]
}

#[test]
fn every_message_has_fixed_bytes() {
    for (message, kind, body) in cases() {
        let body: Vec<u8> = match &message {
            // Data is opaque bytes, not JSON.
            Message::Data(bytes) => bytes.clone(),
            _ => body.as_bytes().to_vec(),
        };
        let mut expected = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        expected.push(kind);
        expected.extend_from_slice(&body);
        let frame = message.encode();
        assert_eq!(
            frame.as_bytes(),
            &expected[..],
            "{:?}: got {:?}",
            message.kind(),
            String::from_utf8_lossy(&frame.as_bytes()[5..])
        );
        assert_eq!(Message::decode(&frame).unwrap(), message);
    }
}

#[test]
fn every_message_type_is_covered() {
    let covered: std::collections::BTreeSet<u8> = cases().iter().map(|(_, k, _)| *k).collect();
    let defined: std::collections::BTreeSet<u8> = (0..=u8::MAX)
        .filter(|b| protocol::wire::Kind::from_byte(*b).is_some())
        .collect();
    assert_eq!(covered, defined);
}
