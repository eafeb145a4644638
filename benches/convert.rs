//! `vigil convert` on the desktop corpus (../shared/corpus), against the
//! naive approach a user might script: every frame at a fixed 10 fps into
//! the same encoder settings. Per clip: conversion speed as a multiple of
//! real time (ours and naive, and the ratio), MP4 size per minute, PSNR of
//! our MP4 against the recording's own pictures. Then peak RSS of a
//! `vigil convert` process on one hour of recording. Totals last.
//!
//! Run: `cargo bench --bench convert` (VIGIL_CORPUS=DIR to point elsewhere;
//! `-- office idle` for only those clips, without the hour).
//!
//! `cargo bench --bench convert -- --avi-4gb` instead converts two hours to
//! an AVI larger than 4 GiB (MJPEG q 2) and checks that FFmpeg reads it as
//! a player would: its whole length, and a picture near its end found by
//! seeking through the OpenDML index.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use converter::output::{Container, Output};
use converter::pictures::Pictures;
use converter::{Options, DEFAULT_CRF};
use recorder::vrec::reader::Target;
use recorder::vrec::{Header, Recording};

use common::{long_recording, record, FPS};

fn main() {
    let Some(corpus) = testkit::media::corpus() else {
        println!("corpus not found (set VIGIL_CORPUS): nothing measured");
        return;
    };
    let (clips, all) = testkit::media::chosen_clips();
    let dir = tempfile::tempdir().expect("a temporary directory");
    if std::env::args().any(|a| a == "--avi-4gb") {
        return avi_past_4gb(&corpus, dir.path());
    }
    println!(
        "{:<9} {:>10} {:>10} {:>7} {:>12} {:>9} {:>9}",
        "clip", "ours ×rt", "naive ×rt", "ratio", "MP4 MB/min", "PSNR dB", "pictures"
    );
    let mut worst_ratio = f64::INFINITY;
    for clip in clips {
        let rec = dir.path().join(format!("{clip}.vrec"));
        record(
            &[corpus.join(format!("{clip}.mkv"))],
            &rec,
            dir.path(),
            Header::new(1920, 1080, "bench", 0),
        );
        let recording = Recording::open(&rec).expect("the recording");
        let seconds = recording.index.duration_us as f64 / 1e6;

        let ours = dir.path().join(format!("{clip}.mp4"));
        let start = Instant::now();
        let done =
            converter::convert(&rec, &ours, &Options::default(), |_, _| true).expect("converting");
        let ours_time = start.elapsed();

        let naive = dir.path().join(format!("{clip}-naive.mp4"));
        let start = Instant::now();
        naive_convert(&recording, &naive);
        let naive_time = start.elapsed();

        let (ours_x, naive_x) = (
            seconds / ours_time.as_secs_f64(),
            seconds / naive_time.as_secs_f64(),
        );
        worst_ratio = worst_ratio.min(ours_x / naive_x);
        println!(
            "{clip:<9} {ours_x:>10.1} {naive_x:>10.1} {:>7.2} {:>12.2} {:>9.1} {:>9}",
            ours_x / naive_x,
            done.size as f64 / 1e6 / (seconds / 60.0),
            mean_psnr(&recording, &ours),
            done.pictures
        );
    }
    if !all {
        println!("total: worst ours/naive speed ratio {worst_ratio:.2} (target > 1)");
        return;
    }
    let hour = long_recording(&corpus, dir.path(), 1, Header::new(1920, 1080, "bench", 0));
    let (hour_time, peak_kb) = convert_process(&hour, &dir.path().join("hour.mp4"), &[]);
    println!(
        "1 hour: converted in {hour_time:.0} s ({:.1}× real time), peak RSS {} MB (target ≤ 300)",
        3600.0 / hour_time,
        peak_kb / 1024
    );
    println!(
        "total: worst ours/naive speed ratio {worst_ratio:.2} (target > 1); 1-hour peak RSS {} MB",
        peak_kb / 1024
    );
}

/// Runs `vigil convert IN OUT EXTRA...`; returns its wall time (s) and peak RSS (kB).
fn convert_process(input: &Path, output: &Path, extra: &[&str]) -> (f64, u64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("convert")
        .arg(input)
        .arg(output)
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("vigil convert");
    let peak_kb = common::peak_rss_kb(&mut child, "vigil convert");
    (start.elapsed().as_secs_f64(), peak_kb)
}

/// Two hours as an AVI past 4 GiB (MJPEG q 2 makes one hour 2.3 GiB), read
/// back by FFmpeg: the length it reports, and a picture 10 s before the
/// end, found by seeking.
fn avi_past_4gb(corpus: &Path, dir: &Path) {
    let hour = long_recording(corpus, dir, 2, Header::new(1920, 1080, "bench", 0));
    let avi = dir.join("2h.avi");
    let (seconds, peak_kb) = convert_process(&hour, &avi, &["--quality", "2"]);
    let size = std::fs::metadata(&avi).expect("the AVI").len();
    let probe = testkit::media::stdout_of(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_packets", "-select_streams", "v:0"])
            .args(["-show_entries", "format=duration:stream=nb_read_packets"])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(&avi),
    );
    let report = String::from_utf8_lossy(&probe).replace('\n', " ");
    let recording = Recording::open(&hour).expect("the recording");
    let near_end = recording.index.duration_us - 10_000_000;
    let ours = recording.frame(Target::Time(near_end)).expect("a frame");
    // AVI pictures sit on 100 ms slots: ask for the slot the picture is in.
    let t = (ours.timestamp_us / 100_000) as f64 / 10.0;
    let db = testkit::media::psnr(&testkit::media::picture_at(&avi, t), &ours.frame.pixels);
    println!(
        "2h.avi: {:.2} GiB written in {seconds:.0} s, peak RSS {} MB; ffprobe: {report}",
        size as f64 / f64::from(1 << 30),
        peak_kb / 1024
    );
    println!(
        "total: AVI of {:.2} GiB (past 4 GiB: {}); picture at {t:.1} s of {:.0} s, PSNR {db:.1} dB (≥ 35: {})",
        size as f64 / f64::from(1 << 30),
        size > 4 << 30,
        recording.index.duration_us as f64 / 1e6,
        db >= 35.0
    );
}

/// Every 100 ms slot gets a frame, changed or not, into the same encoder settings.
fn naive_convert(recording: &Recording, out: &Path) {
    let mut video = Output::create(
        out,
        Container::Mp4,
        (1920, 1080),
        (1920, 1080),
        DEFAULT_CRF,
        &[],
    )
    .expect("the naive output");
    let duration = recording.index.duration_us;
    let mut pictures = Pictures::new(recording, 0, duration).expect("pictures");
    let slot = 1_000_000 / FPS;
    // The picture on screen, and the next one (its time and pixels).
    let mut current: Option<recorder::Frame> = None;
    let mut next: Option<(u64, recorder::Frame)> = None;
    let mut more = true;
    for n in 0..duration / slot {
        let t = n * slot;
        loop {
            if next.is_none() && more {
                match pictures.next_picture() {
                    Some(p) => {
                        let (at, frame) = p.expect("a picture");
                        next = Some((at, frame.clone()));
                    }
                    None => more = false,
                }
            }
            match next.take() {
                Some((at, frame)) if at <= t => current = Some(frame),
                other => {
                    next = other;
                    break;
                }
            }
        }
        if let Some(frame) = &current {
            video.push(frame, t).expect("encoding");
        }
    }
    video.finish(duration).expect("finishing");
}

/// Mean PSNR (B, G, R) of the MP4's pictures against the recording's, at ten of them.
fn mean_psnr(recording: &Recording, mp4: &Path) -> f64 {
    let frames = recording.index.frames;
    let picks: Vec<u64> = (0..10).map(|i| i * (frames - 1) / 9).collect();
    let mut total = 0.0;
    for n in &picks {
        let ours = recording.frame(Target::Index(*n)).expect("a frame");
        let t = ours.timestamp_us as f64 / 1e6;
        total += testkit::media::psnr(&testkit::media::picture_at(mp4, t), &ours.frame.pixels);
    }
    total / picks.len() as f64
}
