//! Arbitrary bytes fed to the parsers of untrusted input: the frame codec
//! and the message decoder answer with frames or an error, never a panic,
//! and never buffer more than one frame's declared maximum.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use proptest::prelude::*;
use protocol::wire::{Codec, Frame, Message, HEADER, MAX_BODY};
use tokio_util::codec::Decoder;

/// Frames, then an error or the end; asserting each frame's bound.
fn frames_of(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match Codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.as_bytes().len() <= HEADER + MAX_BODY);
                frames.push(frame);
            }
            Ok(None) | Err(_) => break,
        }
        assert!(
            buf.capacity() <= bytes.len().max(HEADER + MAX_BODY),
            "buffered {} bytes",
            buf.capacity()
        );
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_frames_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        for frame in frames_of(&bytes) {
            let _ = Message::decode(&frame);
        }
    }

    #[test]
    fn a_length_prefix_never_buffers_more_than_a_frame(len in any::<u32>(), rest in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend(rest);
        frames_of(&bytes);
    }

    #[test]
    fn any_body_of_any_type_decodes_or_is_refused(kind in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::decode(&Frame::with_type(kind, &body));
    }

    #[test]
    fn json_like_bodies_decode_or_are_refused(
        kind in prop::sample::select(vec![0x01u8, 0x03, 0x10, 0x11, 0x21, 0x23, 0x25, 0x30, 0x40, 0x60, 0x61]),
        body in r#"\{("[a-z_]{1,12}":(null|true|-?[0-9]{1,20}|"[ -~]{0,20}"|\[[0-9,"a-z]{0,30}\]|\{\}),?){0,8}\}"#,
    ) {
        let _ = Message::decode(&Frame::with_type(kind, body.as_bytes()));
    }
}
