//! The recorder on the desktop corpus (../shared/corpus), against what a
//! user would otherwise record: H.264 from FFmpeg (libx264 veryfast, CRF 23,
//! yuv420p, lossy), encoded in the same run from the same raw frames.
//!
//! Per clip: changed frames, `.vrec` MB/min, H.264 MB/min, size ratio,
//! encode CPU ms/frame (ours on one thread; FFmpeg's user+system time over
//! all its threads) and decode frames/s. Then one hour of recording (the
//! clips concatenated, 36,000 frames) and the time to find the frame at
//! random times. The totals are the last line.
//!
//! `cargo bench -p recorder --bench corpus` (VIGIL_CORPUS=DIR to point
//! elsewhere; `-- office idle` measures only those clips, without the hour).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use recorder::codec::{Decoder, Encoder};
use recorder::vrec::reader::Target;
use recorder::vrec::{Entry, Header, Recording, Writer};
use recorder::Frame;

const W: u32 = 1920;
const H: u32 = 1080;
const FPS: u64 = 10;

fn main() {
    let Some(corpus) = testkit::media::corpus() else {
        println!("corpus not found (set VIGIL_CORPUS): nothing measured");
        return;
    };
    let (clips, all) = testkit::media::chosen_clips();
    let dir = tempfile::tempdir().expect("temporary directory");
    println!(
        "{:<9} {:>8} {:>12} {:>13} {:>6} {:>13} {:>15} {:>11}",
        "clip",
        "changed",
        "vrec MB/min",
        "H.264 MB/min",
        "ratio",
        "enc ms/frame",
        "H.264 ms/frame",
        "decode fps"
    );
    let (mut ours, mut theirs, mut our_cpu, mut their_cpu, mut frames) = (0.0, 0.0, 0.0, 0.0, 0u64);
    for clip in clips {
        let input = corpus.join(format!("{clip}.mkv"));
        let path = dir.path().join(format!("{clip}.vrec"));
        let enc = record(
            testkit::media::raw_bgra(std::slice::from_ref(&input), dir.path()),
            &path,
        );
        let minutes = enc.frames as f64 / FPS as f64 / 60.0;
        let vrec_mb = std::fs::metadata(&path).expect("recording").len() as f64 / 1e6 / minutes;
        let (h264_bytes, h264_cpu) = h264(&input, &dir.path().join(format!("{clip}.mp4")));
        let h264_mb = h264_bytes as f64 / 1e6 / minutes;
        let dec_fps = decode_rate(&path);
        let (ms, h264_ms) = (
            enc.cpu.as_secs_f64() * 1e3 / enc.frames as f64,
            h264_cpu * 1e3 / enc.frames as f64,
        );
        println!(
            "{clip:<9} {:>8} {vrec_mb:>12.2} {h264_mb:>13.2} {:>6.2} {ms:>13.2} {h264_ms:>15.1} {dec_fps:>11.0}",
            format!("{}/{}", enc.updates.saturating_sub(1), enc.frames - 1),
            vrec_mb / h264_mb,
        );
        ours += vrec_mb;
        theirs += h264_mb;
        our_cpu += enc.cpu.as_secs_f64();
        their_cpu += h264_cpu;
        frames += enc.frames;
    }

    let (ms, h264_ms) = (
        our_cpu * 1e3 / frames as f64,
        their_cpu * 1e3 / frames as f64,
    );
    let totals = format!(
        "total: vrec {ours:.2} MB/min vs H.264 {theirs:.2} MB/min, ratio {:.2} (target < 0.75); encode {ms:.2} vs {h264_ms:.1} ms/frame, CPU ratio {:.3}",
        ours / theirs,
        ms / h264_ms
    );
    if !all {
        println!("{totals}");
        return;
    }
    // One hour: the four clips, fifteen times over, as one recording.
    let hour_clips: Vec<_> = (0..15)
        .flat_map(|_| {
            testkit::media::CLIPS
                .iter()
                .map(|c| corpus.join(format!("{c}.mkv")))
        })
        .collect();
    let hour = dir.path().join("hour.vrec");
    let started = Instant::now();
    let enc = record(testkit::media::raw_bgra(&hour_clips, dir.path()), &hour);
    let rec = Recording::open(&hour).expect("the hour's recording");
    let mut seeks = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let t = state % rec.index.duration_us;
        let start = Instant::now();
        rec.frame(Target::Time(t)).expect("a frame of the hour");
        seeks.push(start.elapsed());
    }
    let mean = seeks.iter().sum::<Duration>() / seeks.len() as u32;
    let max = seeks.iter().max().copied().unwrap_or_default();
    println!(
        "1 hour: {} frames, {:.1} MB, {} seek points, made in {:.0} s; frame at a random time: mean {:.1} ms, max {:.1} ms over {} seeks",
        enc.frames,
        std::fs::metadata(&hour).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        rec.index.seek.len(),
        started.elapsed().as_secs_f64(),
        mean.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        seeks.len()
    );
    let (ms, h264_ms) = (
        our_cpu * 1e3 / frames as f64,
        their_cpu * 1e3 / frames as f64,
    );
    println!(
        "total: vrec {ours:.2} MB/min vs H.264 {theirs:.2} MB/min, ratio {:.2} (target < 0.75); encode {ms:.2} vs {h264_ms:.1} ms/frame, CPU ratio {:.3}",
        ours / theirs,
        ms / h264_ms
    );
}

struct Encoded {
    frames: u64,
    updates: u64,
    /// Thread CPU time in the encoder and writer only.
    cpu: Duration,
}

/// Records FFmpeg's frames through the live codec path, timing only our part.
fn record(mut decode: Command, path: &Path) -> Encoded {
    let mut child = decode.stdout(Stdio::piped()).spawn().expect("ffmpeg");
    let mut raw = child.stdout.take().expect("piped");
    let header = Header::new(W, H, "bench", 0);
    let mut writer = Writer::create(path, header).expect("new recording");
    let mut encoder = Encoder::new();
    let mut frame = Frame::black(W, H);
    let (mut frames, mut updates, mut cpu) = (0u64, 0u64, Duration::ZERO);
    while raw.read_exact(&mut frame.pixels).is_ok() {
        let start = ThreadTime::now();
        if let Some(update) = encoder.encode(&frame, frames * 1_000_000 / FPS, false) {
            writer.update(&update).expect("writing");
            updates += 1;
        }
        cpu += start.elapsed();
        frames += 1;
    }
    assert!(child.wait().expect("ffmpeg").success(), "ffmpeg failed");
    writer.finish(frames * 1_000_000 / FPS).expect("finishing");
    Encoded {
        frames,
        updates,
        cpu,
    }
}

/// Bytes and CPU seconds of FFmpeg's H.264 from the same raw frames.
fn h264(input: &Path, out: &Path) -> (u64, f64) {
    let script = format!(
        "ffmpeg -v error -i '{}' -f rawvideo -pix_fmt bgra - | ffmpeg -hide_banner -nostats -loglevel info -benchmark -y -f rawvideo -pix_fmt bgra -s {W}x{H} -r {FPS} -i - -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p '{}'",
        input.display(),
        out.display()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "bench: utime=12.345s stime=0.678s rtime=5.432s"
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .expect("ffmpeg -benchmark prints utime and stime")
    };
    let bytes = std::fs::metadata(out).expect("mp4").len();
    (bytes, field("utime=") + field("stime="))
}

/// Updates decoded per second, in order, from a finished recording.
fn decode_rate(path: &Path) -> f64 {
    let rec = Recording::open(path).expect("recording");
    let updates: Vec<Vec<u8>> = rec
        .entries(None)
        .expect("entries")
        .filter_map(|e| match e.expect("entry") {
            Entry::Update { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    let mut decoder = Decoder::new();
    let start = Instant::now();
    for u in &updates {
        decoder.decode(u).expect("decodes");
    }
    updates.len() as f64 / start.elapsed().as_secs_f64()
}
