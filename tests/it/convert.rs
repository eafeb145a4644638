//! `vigil convert` on recordings of the corpus cuts, checked with the real
//! ffprobe and FFmpeg: codec, size, duration, and the pictures themselves.

use std::path::Path;
use std::process::Command;

use recorder::vrec::reader::Target;
use recorder::vrec::Recording;

use testkit::media::{picture_at, psnr, stdout_of};

use crate::helpers::{run_in, Run};
use crate::recording::encode;

/// ffprobe's view of `file`: codec, pixel format, width, height, duration (s).
fn probe(file: &Path) -> (String, String, u64, u64, f64) {
    let out = stdout_of(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args([
                "stream=codec_name,pix_fmt,width,height:format=duration",
                "-of",
                "json",
            ])
            .arg(file),
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap().to_owned(),
        s["pix_fmt"].as_str().unwrap().to_owned(),
        s["width"].as_u64().unwrap(),
        s["height"].as_u64().unwrap(),
        v["format"]["duration"].as_str().unwrap().parse().unwrap(),
    )
}

#[test]
fn recordings_convert_to_mp4_that_look_like_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["terminal", "office"] {
        let rec_path = dir.path().join(format!("{name}.vrec"));
        encode(dir.path(), name, &rec_path).ok();
        let mp4 = dir.path().join(format!("{name}.mp4"));
        run_in(
            dir.path(),
            &["convert", rec_path.to_str().unwrap(), mp4.to_str().unwrap()],
            "",
        )
        .ok();
        let (codec, pix_fmt, w, h, duration) = probe(&mp4);
        assert_eq!(
            (codec.as_str(), pix_fmt.as_str(), w, h),
            ("h264", "yuv420p", 1920, 1080)
        );
        assert!((duration - 3.0).abs() <= 0.1, "{name}: duration {duration}");
        let rec = Recording::open(&rec_path).unwrap();
        let last = rec.index.frames - 1;
        for n in [0, last / 2, last] {
            // At a picture's own time: players (and FFmpeg's -ss) show the
            // first picture at or after a time.
            let ours = rec.frame(Target::Index(n)).unwrap();
            let t = ours.timestamp_us as f64 / 1e6;
            let db = psnr(&picture_at(&mp4, t), &ours.frame.pixels);
            assert!(db >= 35.0, "{name} picture {n} at {t} s: PSNR {db:.1} dB");
        }
    }
}

#[test]
fn recordings_convert_to_avi_that_decodes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("idle.vrec");
    encode(dir.path(), "idle", &rec_path).ok();
    let avi = dir.path().join("idle.avi");
    run_in(
        dir.path(),
        &["convert", rec_path.to_str().unwrap(), avi.to_str().unwrap()],
        "",
    )
    .ok();
    let (codec, _, w, h, duration) = probe(&avi);
    assert_eq!((codec.as_str(), w, h), ("mjpeg", 1920, 1080));
    assert!((duration - 3.0).abs() <= 0.1, "duration {duration}");
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&avi)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}

#[test]
fn bad_input_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec_path = d.join("t.vrec");
    encode(d, "terminal", &rec_path).ok();
    let r = rec_path.to_str().unwrap();
    let out = d.join("t.mp4");
    let o = out.to_str().unwrap();
    // Cut off: converted up to the last whole chunk, with a warning.
    let bytes = std::fs::read(&rec_path).unwrap();
    let cut = d.join("cut.vrec");
    std::fs::write(&cut, &bytes[..bytes.len() * 19 / 20]).unwrap();
    let run = run_in(
        d,
        &[
            "convert",
            cut.to_str().unwrap(),
            d.join("cut.mp4").to_str().unwrap(),
        ],
        "",
    );
    run.ok();
    assert!(run.stderr.contains("cut off"), "{run:?}");
    // Cut inside its first screen: nothing to convert, said so.
    let empty = d.join("empty.vrec");
    std::fs::write(&empty, &bytes[..300]).unwrap();
    let none = run_in(
        d,
        &[
            "convert",
            empty.to_str().unwrap(),
            d.join("e.mp4").to_str().unwrap(),
        ],
        "",
    );
    assert!(none.error_line().contains("no picture"), "{none:?}");
    // Not a recording.
    let text = d.join("notes.vrec");
    std::fs::write(&text, "not video").unwrap();
    assert!(run_in(d, &["convert", text.to_str().unwrap(), o], "")
        .error_line()
        .contains("not a .vrec recording"));
    // An existing output is kept unless --force.
    std::fs::write(&out, "keep me").unwrap();
    let refused: Run = run_in(d, &["convert", r, o], "");
    let line = refused.error_line();
    assert!(
        line.contains("already exists (--force replaces it)"),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    run_in(d, &["convert", r, o, "--force"], "").ok();
    assert_eq!(probe(&out).0, "h264");
    // Another extension, and an empty range.
    assert!(
        run_in(d, &["convert", r, d.join("t.webm").to_str().unwrap()], "")
            .error_line()
            .contains(".mp4 or .avi")
    );
    assert!(run_in(
        d,
        &[
            "convert",
            r,
            d.join("x.mp4").to_str().unwrap(),
            "--from",
            "2",
            "--to",
            "1"
        ],
        ""
    )
    .error_line()
    .contains("not before"));
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vigil-convert-"))
        .collect();
    assert!(leftovers.is_empty(), "half files left: {leftovers:?}");
}

#[test]
fn an_excerpt_and_a_scaled_size() {
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("b.vrec");
    encode(dir.path(), "browser", &rec_path).ok();
    let mp4 = dir.path().join("b.mp4");
    run_in(
        dir.path(),
        &[
            "convert",
            rec_path.to_str().unwrap(),
            mp4.to_str().unwrap(),
            "--from",
            "1",
            "--to",
            "2.5",
            "--scale",
            "961:541",
        ],
        "",
    )
    .ok();
    let (_, _, w, h, duration) = probe(&mp4);
    assert_eq!((w, h), (960, 540), "made even");
    assert!((duration - 1.5).abs() <= 0.1, "duration {duration}");
}

#[test]
fn burn_in_stamps_every_frame_and_the_clock_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("i.vrec");
    encode(dir.path(), "idle", &rec_path).ok();
    let plain = dir.path().join("plain.mp4");
    let stamped = dir.path().join("stamped.mp4");
    let r = rec_path.to_str().unwrap();
    run_in(dir.path(), &["convert", r, plain.to_str().unwrap()], "").ok();
    run_in(
        dir.path(),
        &["convert", r, stamped.to_str().unwrap(), "--burn-in"],
        "",
    )
    .ok();
    let (a, b) = (picture_at(&plain, 0.0), picture_at(&stamped, 0.0));
    // The bottom-left corner differs; the rest of the picture is the same.
    let corner = |p: &[u8]| -> Vec<u8> {
        (1040..1080)
            .flat_map(|y| p[(y * 1920) * 4..(y * 1920 + 400) * 4].to_vec())
            .collect()
    };
    let top = |p: &[u8]| p[..1920 * 4 * 900].to_vec();
    assert!(psnr(&corner(&a), &corner(&b)) < 20.0, "the stamp is there");
    assert!(psnr(&top(&a), &top(&b)) >= 35.0, "and nowhere else");
    // The clock runs: the stamp at 2 s differs from the one at 0 s.
    let later = picture_at(&stamped, 2.0);
    assert_ne!(corner(&b), corner(&later));
}

#[test]
fn a_directory_converts_once_and_again_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inbox = d.join("recordings");
    std::fs::create_dir_all(inbox.join("2026-11")).unwrap();
    let (a, b) = (inbox.join("a.vrec"), inbox.join("2026-11/b.vrec"));
    encode(d, "idle", &a).ok();
    encode(d, "terminal", &b).ok();
    let broken = inbox.join("broken.vrec");
    std::fs::write(&broken, "not video").unwrap();
    let out = d.join("videos");
    let (a_mp4, b_mp4) = (out.join("a.mp4"), out.join("2026-11/b.mp4"));
    let batch = |extra: &[&str]| {
        let mut args = vec![
            "convert",
            inbox.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_in(d, &args, "")
    };
    // Two converted side by side; the broken one named, and the exit says so.
    let first = batch(&["--jobs", "2"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert!(
        first.stderr.contains("broken.vrec") && first.stderr.contains("not a .vrec recording"),
        "{first:?}"
    );
    assert!(
        first.stdout.contains("2 converted, 0 skipped, 1 failed"),
        "{first:?}"
    );
    for video in [&a_mp4, &b_mp4] {
        let (codec, _, w, _, duration) = probe(video);
        assert_eq!((codec.as_str(), w), ("h264", 1920));
        assert!((duration - 3.0).abs() <= 0.1, "duration {duration}");
    }
    std::fs::remove_file(&broken).unwrap();
    // Again: nothing to do, nothing touched.
    let (a_bytes, b_bytes) = (
        std::fs::read(&a_mp4).unwrap(),
        std::fs::read(&b_mp4).unwrap(),
    );
    let again = batch(&[]);
    assert!(
        again.ok().contains("0 converted, 2 skipped, 0 failed"),
        "{again:?}"
    );
    assert_eq!(std::fs::read(&a_mp4).unwrap(), a_bytes);
    // Another recording under a converted name: its output is not replaced
    // unless asked; the unchanged one is still skipped.
    std::fs::copy(&b, &a).unwrap();
    let changed = batch(&[]);
    assert_eq!(changed.code, 1, "{changed:?}");
    assert!(
        changed.stderr.contains("not converted from this recording"),
        "{changed:?}"
    );
    assert_eq!(std::fs::read(&a_mp4).unwrap(), a_bytes);
    let forced = batch(&["--force"]);
    assert!(
        forced.ok().contains("1 converted, 1 skipped, 0 failed"),
        "{forced:?}"
    );
    assert_ne!(std::fs::read(&a_mp4).unwrap(), a_bytes);
    assert_eq!(std::fs::read(&b_mp4).unwrap(), b_bytes);
    // A recording still being written converts as far as it goes, and its
    // output is replaced, unasked, once the recording is whole.
    let whole = std::fs::read(&b).unwrap();
    let growing = inbox.join("c.vrec");
    std::fs::write(&growing, &whole[..whole.len() * 9 / 10]).unwrap();
    let partial = batch(&[]);
    assert!(
        partial.ok().contains("1 converted, 2 skipped"),
        "{partial:?}"
    );
    assert!(partial.stderr.contains("cut off"), "{partial:?}");
    let c_mp4 = out.join("c.mp4");
    let short = probe(&c_mp4).4;
    std::fs::write(&growing, &whole).unwrap();
    let finished = batch(&[]);
    assert!(
        finished.ok().contains("1 converted, 2 skipped"),
        "{finished:?}"
    );
    assert!(probe(&c_mp4).4 > short, "the whole recording is longer");
    // One recording into a directory, as AVI.
    let avi_dir = d.join("avi");
    run_in(
        d,
        &[
            "convert",
            b.to_str().unwrap(),
            "--out",
            avi_dir.to_str().unwrap(),
            "--format",
            "avi",
        ],
        "",
    )
    .ok();
    assert_eq!(probe(&avi_dir.join("b.avi")).0, "mjpeg");
    // An empty directory is an error, not a silent success.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = run_in(
        d,
        &[
            "convert",
            empty.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(none.error_line().contains("no .vrec recording"), "{none:?}");
    // A directory with one output file: said how to do it instead.
    let one = run_in(
        d,
        &[
            "convert",
            inbox.to_str().unwrap(),
            d.join("x.mp4").to_str().unwrap(),
        ],
        "",
    );
    assert!(one.error_line().contains("--out DIR"), "{one:?}");
}

/// The presentation times of `file`'s decoded pictures, in order.
fn picture_times(file: &Path) -> Vec<f64> {
    let out = stdout_of(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
            .arg(file),
    );
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect()
}

/// What `vigil convert` says it wrote is what a player decodes: as many
/// pictures (there used to be one more), at times that only increase, the
/// video as long as the recording, with or without burn-in, MP4 or AVI.
#[test]
fn the_pictures_reported_are_the_pictures_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("b.vrec");
    encode(dir.path(), "browser", &rec_path).ok();
    let r = rec_path.to_str().unwrap();
    for (name, extra) in [
        ("plain.mp4", &[][..]),
        ("stamped.mp4", &["--burn-in"][..]),
        (
            "excerpt.mp4",
            &["--burn-in", "--from", "0.55", "--to", "2.5"][..],
        ),
        ("plain.avi", &[][..]),
    ] {
        let out = dir.path().join(name);
        let mut args = vec!["convert", r, out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let said = run_in(dir.path(), &args, "").ok().to_owned();
        let pictures: usize = said
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{said}"));
        let times = picture_times(&out);
        if name.ends_with(".mp4") {
            assert_eq!(times.len(), pictures, "{name}: {said}");
        } else {
            // AVI runs at a fixed rate: slots without a new picture repeat the last.
            assert!(times.len() >= pictures, "{name}: {said}");
        }
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{name}: {times:?}");
        let expected = if name.starts_with("excerpt") {
            1.95
        } else {
            3.0
        };
        let duration = probe(&out).4;
        assert!((duration - expected).abs() < 0.11, "{name}: {duration} s");
    }
}
