//! Arbitrary bytes as frames of the inner session (what the other end of a
//! session sends): a message or an error, never a panic; and the stream of
//! screen fragments they carry is reassembled within its bound or refused.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use protocol::wire::Frame;
use recorder::stream::Reassembler;
use session_core::session::proto::Inner;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_inner_frame_decodes_or_is_refused(kind in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Inner::decode(&Frame::with_type(kind, &body));
    }

    #[test]
    fn control_like_bodies_decode_or_are_refused(
        body in r#"\{"type":"(chat|ask|answer|file_offer|file_accept|file_get|file_done|file_result|file_refused|view_start|view_ack|view_key|view_stop|input|control_start)"(,"[a-z_]{1,10}":(null|true|-?[0-9]{1,12}|"[ -~]{0,16}"|\[[0-9,]{0,20}\]))*\}"#,
    ) {
        let _ = Inner::decode(&Frame::with_type(0x01, body.as_bytes()));
    }

    #[test]
    fn any_screen_fragments_reassemble_or_are_refused(fragments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let limit = 256;
        let mut reassembler = Reassembler::new(limit);
        for fragment in fragments {
            if let Ok(Some((_, update))) = reassembler.push(&fragment) {
                prop_assert!(update.len() <= limit);
            }
        }
    }
}
