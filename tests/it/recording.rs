//! `vigil recording ...` on real screen content: short cuts of the desktop
//! corpus (tests/data/corpus), decoded to raw frames by the real FFmpeg.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use recorder::vrec::reader::Target;
use recorder::vrec::{Ending, Recording};

use crate::helpers::{run_in, Run};

const CLIPS: [&str; 4] = ["terminal", "browser", "office", "idle"];
const FRAME_US: u64 = 100_000;

fn clip(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/corpus/{name}.mkv"))
}

/// Every frame of a clip as BGRA, decoded by FFmpeg.
fn raw_frames(name: &str) -> Vec<Vec<u8>> {
    testkit::media::stdout_of(&mut testkit::media::raw_bgra(&[clip(name)], Path::new(".")))
        .chunks_exact(1920 * 1080 * 4)
        .map(<[u8]>::to_vec)
        .collect()
}

/// `vigil recording encode` fed by FFmpeg's raw frames of `name`, as a user would pipe them.
pub fn encode(data: &Path, name: &str, out: &Path) -> Run {
    let mut ffmpeg = testkit::media::raw_bgra(&[clip(name)], data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("running ffmpeg");
    let frames = ffmpeg.stdout.take().expect("piped");
    let run: Run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .env_remove("RUST_LOG")
        .current_dir(data)
        .args([
            "recording",
            "encode",
            "--size",
            "1920x1080",
            "--fps",
            "10",
            "-o",
        ])
        .arg(out)
        .stdin(frames)
        .output()
        .expect("running vigil")
        .into();
    assert!(ffmpeg.wait().expect("ffmpeg").success());
    run
}

#[test]
fn every_frame_of_every_clip_round_trips_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for name in CLIPS {
        let frames = raw_frames(name);
        assert_eq!(frames.len(), 30, "{name}");
        let path = dir.path().join(format!("{name}.vrec"));
        encode(dir.path(), name, &path).ok();
        let rec = Recording::open(&path).unwrap();
        assert_eq!(rec.ending, Ending::Complete);
        assert_eq!(rec.index.duration_us, 30 * FRAME_US);
        for (i, raw) in frames.iter().enumerate() {
            let found = rec.frame(Target::Time(i as u64 * FRAME_US)).unwrap();
            assert!(found.frame.pixels == *raw, "{name}: frame {i} differs");
        }
        // The updates, decoded in order, are exactly the frames that changed.
        let mut decoder = recorder::codec::Decoder::new();
        let mut distinct = frames.clone();
        distinct.dedup();
        let mut n = 0;
        for entry in rec.entries(None).unwrap() {
            if let recorder::vrec::Entry::Update { bytes, .. } = entry.unwrap() {
                assert!(
                    decoder.decode(&bytes).unwrap().pixels == distinct[n],
                    "{name}: update {n}"
                );
                n += 1;
            }
        }
        assert_eq!(n, distinct.len(), "{name}: one update per changed frame");
    }
}

#[test]
fn info_and_frame_commands_show_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vrec");
    encode(dir.path(), "terminal", &path).ok();
    let p = path.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", p, "--json"], "").ok())
            .unwrap();
    assert_eq!(
        (
            info["state"].as_str(),
            info["width"].as_u64(),
            info["height"].as_u64()
        ),
        (Some("complete"), Some(1920), Some(1080))
    );
    assert_eq!(info["duration_us"].as_u64(), Some(3_000_000));
    let frames = raw_frames("terminal");
    let png = dir.path().join("f.png");
    let png_s = png.to_str().unwrap();
    run_in(
        dir.path(),
        &["recording", "frame", p, "--at", "00:00:01.750", "-o", png_s],
        "",
    )
    .ok();
    assert!(
        png_pixels(&png) == frames[17],
        "the frame on screen at 1.75 s is frame 17"
    );
    let again = run_in(
        dir.path(),
        &["recording", "frame", p, "--index", "0", "-o", png_s],
        "",
    );
    assert!(again.error_line().contains("already exists"), "{again:?}");
    run_in(
        dir.path(),
        &[
            "recording",
            "frame",
            p,
            "--index",
            "0",
            "-o",
            png_s,
            "--force",
        ],
        "",
    )
    .ok();
    assert!(png_pixels(&png) == frames[0]);
    let past = run_in(
        dir.path(),
        &[
            "recording",
            "frame",
            p,
            "--at",
            "10:00",
            "-o",
            png_s,
            "--force",
        ],
        "",
    );
    assert!(past.error_line().contains("last frame"), "{past:?}");
}

/// A PNG's pixels as BGRA.
pub fn png_pixels(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    buf.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
    buf
}

#[test]
fn a_cut_recording_reads_to_its_last_chunk_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vrec");
    encode(dir.path(), "terminal", &path).ok();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.vrec");
    std::fs::write(&cut, &bytes[..bytes.len() * 9 / 10]).unwrap();
    let c = cut.to_str().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", c, "--json"], "").ok())
            .unwrap();
    assert_eq!(info["state"], "truncated");
    let kept = info["frames"].as_u64().unwrap();
    assert!(kept > 0);
    let verify = run_in(dir.path(), &["recording", "verify", c], "");
    assert_eq!(verify.code, 1, "{verify:?}");
    assert!(verify.stdout.contains("truncated"), "{verify:?}");
    let repaired = run_in(dir.path(), &["recording", "repair", c], "");
    assert!(repaired.ok().contains("repaired"), "{repaired:?}");
    assert!(
        dir.path().join("cut.vrec.tail").exists(),
        "the cut-off bytes are kept aside"
    );
    let info: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["recording", "info", c, "--json"], "").ok())
            .unwrap();
    assert_eq!(
        (info["state"].as_str(), info["frames"].as_u64()),
        (Some("complete"), Some(kept))
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.vrec");
    std::fs::write(&text, "meeting notes, not a recording").unwrap();
    let t = text.to_str().unwrap();
    for args in [
        vec!["recording", "info", t],
        vec!["recording", "frame", t, "--index", "0", "-o", "x.png"],
    ] {
        assert!(run_in(dir.path(), &args, "")
            .error_line()
            .contains("not a .vrec recording"));
    }
    // A frame and a half of input: the whole frame is kept, the rest reported.
    let out = dir.path().join("half.vrec");
    let o = out.to_str().unwrap();
    let input = "x".repeat(4 * 4 * 4 + 10);
    let run = run_in(
        dir.path(),
        &[
            "recording",
            "encode",
            "--size",
            "4x4",
            "--fps",
            "5",
            "-o",
            o,
        ],
        &input,
    );
    assert!(run.error_line().contains("ends inside a frame"), "{run:?}");
    let rec = Recording::open(&out).unwrap();
    assert_eq!((rec.ending, rec.index.frames), (Ending::Complete, 1));
    let again = run_in(
        dir.path(),
        &[
            "recording",
            "encode",
            "--size",
            "4x4",
            "--fps",
            "5",
            "-o",
            o,
        ],
        "",
    );
    assert!(again.error_line().contains("already exists"), "{again:?}");
    assert!(
        run_in(
            dir.path(),
            &[
                "recording",
                "encode",
                "--size",
                "4",
                "--fps",
                "5",
                "-o",
                "y.vrec"
            ],
            ""
        )
        .code
            == 2
    );
}
