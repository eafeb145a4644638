//! Arbitrary bytes fed to the recorder's parsers of untrusted input (a
//! screen update from a peer, a cursor update, a `.vrec` file from disk):
//! an error, never a panic, and no allocation beyond the declared limits
//! (`codec::MAX_PIXELS`; a key update of 65535×65535 used to ask for 16 GiB).
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use recorder::codec::Decoder;
use recorder::cursor::Cursor;
use recorder::vrec::{Entry, Recording};

/// An update header: version 1, key or not, a timestamp, a size.
fn header(key: bool, width: u16, height: u16) -> Vec<u8> {
    let mut h = vec![1, u8::from(key)];
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&width.to_le_bytes());
    h.extend_from_slice(&height.to_le_bytes());
    h
}

/// Opens `bytes` as a recording and decodes all it yields.
fn read_all(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.vrec");
    std::fs::write(&path, bytes).unwrap();
    let Ok(recording) = Recording::open(&path) else {
        return;
    };
    let Ok(entries) = recording.entries(None) else {
        return;
    };
    let mut decoder = Decoder::new();
    for entry in entries {
        match entry {
            Ok(Entry::Update { bytes, .. }) => {
                let _ = decoder.decode(&bytes);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_update_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Decoder::new().decode(&bytes);
    }

    #[test]
    fn any_screen_size_is_refused_or_bounded(key in any::<bool>(), width in any::<u16>(), height in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut update = header(key, width, height);
        update.extend_from_slice(&zstd::bulk::compress(&body, 1).unwrap());
        let mut decoder = Decoder::new();
        if let Ok(frame) = decoder.decode(&update) {
            prop_assert!(frame.pixels.len() <= recorder::codec::MAX_PIXELS * 4);
        }
    }

    #[test]
    fn any_compressed_body_of_a_small_screen_decodes_or_is_refused(key in any::<bool>(), body in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut decoder = Decoder::new();
        let mut key_update = header(true, 128, 128);
        key_update.extend_from_slice(&zstd::bulk::compress(&[0u8; 4], 1).unwrap());
        let _ = decoder.decode(&key_update);
        let mut update = header(key, 128, 128);
        update.extend_from_slice(&zstd::bulk::compress(&body, 1).unwrap());
        let _ = decoder.decode(&update);
    }

    #[test]
    fn any_cursor_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Cursor::decode(&bytes);
    }

    #[test]
    fn any_file_opens_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        read_all(&bytes);
    }

    #[test]
    fn a_damaged_recording_reads_or_is_refused(cut in 0usize..20_000, flips in prop::collection::vec((0usize..20_000, any::<u8>()), 0..8)) {
        let known = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/known.vrec")).unwrap();
        let mut bytes = known[..cut.min(known.len())].to_vec();
        for (at, value) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= value;
            }
        }
        read_all(&bytes);
    }
}
