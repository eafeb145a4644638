//! Screen-content helpers for recording and conversion tests and benchmarks:
//! where the desktop corpus is, FFmpeg's view of a video, and PSNR.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The desktop corpus (`VIGIL_CORPUS`, or `../shared/corpus` beside the
/// project), if it is on this machine.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    dir.join("terminal.mkv").exists().then_some(dir)
}

/// The public corpus clips, in the order the benchmarks report them.
pub const CLIPS: [&str; 4] = ["terminal", "browser", "office", "idle"];

/// The clips a benchmark runs on: those named on its command line (flags
/// aside, e.g. `-- office idle`), or all of them; and whether it is all.
pub fn chosen_clips() -> (Vec<&'static str>, bool) {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let chosen = CLIPS
        .into_iter()
        .filter(|c| named.is_empty() || named.iter().any(|n| n == c))
        .collect();
    (chosen, named.is_empty())
}

/// FFmpeg decoding `inputs`, one after the other, to raw BGRA frames on
/// stdout (several go through a concat list written in `dir`).
pub fn raw_bgra(inputs: &[PathBuf], dir: &Path) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    match inputs {
        [one] => {
            cmd.arg("-i").arg(one);
        }
        many => {
            let list = dir.join("inputs.txt");
            let lines: String = many
                .iter()
                .map(|p| format!("file '{}'\n", p.display()))
                .collect();
            std::fs::write(&list, lines).expect("writing a concat list");
            cmd.args(["-f", "concat", "-safe", "0", "-i"]).arg(list);
        }
    }
    cmd.args(["-f", "rawvideo", "-pix_fmt", "bgra", "-"]);
    cmd
}

/// Runs `cmd` (FFmpeg, ffprobe) to the end and returns its stdout; a
/// failure panics with the program's name and its stderr.
pub fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The picture of `video` shown at `t` seconds (FFmpeg's: the first at or
/// after `t`), as BGRA. Found as a player finds it: a seek through the
/// file's index to the key frame before `t`, then decoding up to `t`.
pub fn picture_at(video: &Path, t: f64) -> Vec<u8> {
    stdout_of(
        Command::new("ffmpeg")
            .args(["-v", "error", "-ss", &format!("{t:.3}"), "-i"])
            .arg(video)
            .args(["-frames:v", "1"])
            .args(["-f", "rawvideo", "-pix_fmt", "bgra", "-"]),
    )
}

/// PSNR in dB over the B, G and R bytes of two BGRA pictures (99 when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "pictures of different sizes");
    let (mut sum, mut n) = (0f64, 0f64);
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = f64::from(p[c]) - f64::from(q[c]);
            sum += d * d;
            n += 1.0;
        }
    }
    if sum == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / (sum / n)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_is_higher_for_closer_pictures() {
        let a = vec![100u8; 64];
        let mut b = a.clone();
        assert_eq!(psnr(&a, &b), 99.0);
        b[0] = 110;
        let near = psnr(&a, &b);
        b[1] = 200;
        assert!(psnr(&a, &b) < near);
    }
}
