//! A small `.vrec` file checked in (tests/data/known.vrec: 24 frames of
//! the synthetic source at 320×192, a pointer, a marker), read back to fixed
//! values: a change to the file format or the codec that old recordings
//! would not survive fails here. It is also written again from the same
//! frames and compared byte for byte: the writer's output is pinned too.
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use recorder::codec::Decoder;
use recorder::cursor::{Cursor, Shape};
use recorder::synthetic::Synthetic;
use recorder::vrec::{Entry, Header, Marker, Recording, Writer};
use sha2::{Digest, Sha256};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/known.vrec")
}

/// The recording the fixture holds, made from fixed inputs.
fn make(path: &Path) {
    let header = Header::new(320, 192, "known-answer", 1_700_000_000_000_000);
    let mut writer = Writer::create(path, header).unwrap();
    let mut source = Synthetic::new(320, 192, 7);
    let mut encoder = recorder::codec::Encoder::new();
    for n in 0..24u64 {
        let at = n * 100_000;
        if let Some(update) = encoder.encode(&source.frame(), at, n == 0) {
            writer.update(&update).unwrap();
        }
        if n == 3 {
            writer
                .cursor(&Cursor {
                    timestamp_us: at,
                    x: 10,
                    y: 20,
                    visible: true,
                    shape: Some(Shape {
                        serial: 1,
                        width: 2,
                        height: 2,
                        hot_x: 0,
                        hot_y: 0,
                        pixels: vec![255; 16],
                    }),
                })
                .unwrap();
        }
        if n == 6 {
            writer
                .marker(&Marker {
                    timestamp_us: at,
                    kind: "chat.message".into(),
                    text: "technician: hello".into(),
                })
                .unwrap();
        }
    }
    writer.finish(2_400_000).unwrap();
}

/// SHA-256 of each decoded screen, in order, as the fixture was written.
const FRAMES: &[&str] = &[
    "6f23daf3ef2d34261c8d34a0e0fe2be3c2a2b1ba5b99e229b834b7e7c5d261d6",
    "187f28e3ac0b3387f52cad9b81d276305f9e78a671d8c5737addd19b4844e35e",
    "3c87d0bb24a980cd3710b4736c6b85c38c6c0e4f8ee4fe53a970328dbf6c9639",
    "7277f7111583f2f733cafa424162950884201ad55603a5817be5097893645e56",
    "ba3ec3d1b281448c51dbb0b35b6f91df46d5b90489d75442ce972246b0ab33b6",
    "5872164c789820bfb73370b063520df9c959877687adf97fe513193d016aa756",
    "3532e745a6c95692b78ef08ba51b5527d3bcf7231b57703a08a4a38d00617319",
    "d4dbd43fba66556cb9764da886136b95872a7860e3e850591bae76ef13b89442",
];

#[test]
fn the_fixture_reads_back_to_fixed_frames() {
    let recording = Recording::open(&fixture()).unwrap();
    assert_eq!(
        (recording.header.width, recording.header.height),
        (320, 192)
    );
    assert_eq!(recording.header.recording, "known-answer");
    assert_eq!(recording.index.markers.len(), 1);
    assert_eq!(recording.index.cursor_updates, 1);
    let mut decoder = Decoder::new();
    let mut hashes = Vec::new();
    for entry in recording.entries(None).unwrap() {
        if let Entry::Update { bytes, .. } = entry.unwrap() {
            let frame = decoder.decode(&bytes).unwrap();
            hashes.push(hex::encode(Sha256::digest(&frame.pixels)));
        }
    }
    assert_eq!(hashes, FRAMES, "decoded frames differ from the fixture's");
}

#[test]
fn writing_the_same_frames_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.vrec");
    make(&again);
    assert!(
        std::fs::read(&again).unwrap() == std::fs::read(fixture()).unwrap(),
        "the writer's output changed: recordings written now differ from {}",
        fixture().display()
    );
}
