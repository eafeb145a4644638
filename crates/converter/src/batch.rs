//! Converting every recording under a directory, several at once, and
//! skipping those whose output was already made from the same input.
//!
//! "The same input" is decided by content, not by name or time: each
//! output carries the SHA-256 of the recording it was made from and the
//! options that shaped it ([`Provenance`]), so a renamed or touched file is
//! still skipped and a repaired or re-recorded one is not. An output made
//! from a cut-off recording (one still being written when the batch ran)
//! is replaced without `--force` once the recording has changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::{convert_from, Container, ConvertError, Converted, Options, Provenance};

/// One recording and the video it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The recording.
    pub input: PathBuf,
    /// The video it becomes.
    pub output: PathBuf,
}

/// What became of a [`Job`].
#[derive(Debug)]
pub enum Outcome {
    /// Converted now.
    Converted(Converted),
    /// The output was already made from this input with these options.
    Skipped,
    /// Failed; the others go on.
    Failed(ConvertError),
}

/// A step of a job, as a batch reports it.
#[derive(Debug)]
pub enum Step<'a> {
    /// The conversion began.
    Started,
    /// Converted this far (µs) of this many.
    Progress(u64, u64),
    /// The conversion ended so.
    Done(&'a Outcome),
}

/// The recordings (`*.vrec`, at any depth) under `input_dir`, in name
/// order, each with the output at the same place under `output_dir`; or,
/// if `input_dir` is a file, that one, with its output in `output_dir`.
pub fn find(
    input_dir: &Path,
    output_dir: &Path,
    container: Container,
) -> Result<Vec<Job>, ConvertError> {
    if let Some(name) = input_dir.file_name().filter(|_| input_dir.is_file()) {
        return Ok(vec![Job {
            input: input_dir.to_owned(),
            output: output_dir.join(name).with_extension(container.extension()),
        }]);
    }
    let mut jobs = Vec::new();
    let mut dirs = vec![input_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let io = |source| ConvertError::Io {
            path: dir.clone(),
            what: "listing recordings",
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            // Not followed through symbolic links: no loops, no surprises.
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && is_recording(&path) {
                let relative = path.strip_prefix(input_dir).unwrap_or(&path);
                let output = output_dir
                    .join(relative)
                    .with_extension(container.extension());
                jobs.push(Job {
                    input: path,
                    output,
                });
            }
        }
    }
    jobs.sort_by(|a, b| a.input.cmp(&b.input));
    Ok(jobs)
}

fn is_recording(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Hidden files are half-written temporaries, never finished recordings.
    !name.starts_with('.')
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("vrec"))
}

/// Converts `jobs` on `workers` threads. `report` hears each job's steps
/// (by its place in `jobs`) and may return `false` to stop: conversions
/// under way are abandoned (leaving nothing behind) and the rest not begun.
/// Returns each job's outcome, in the order of `jobs`.
pub fn run(
    jobs: &[Job],
    options: &Options,
    workers: usize,
    report: &(dyn Fn(usize, Step) -> bool + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(jobs.len()).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(n) else { break };
                let outcome = if report(n, Step::Started) {
                    convert_job(job, options, |at, total| {
                        report(n, Step::Progress(at, total))
                    })
                } else {
                    Outcome::Failed(ConvertError::Stopped)
                };
                report(n, Step::Done(&outcome));
                if let Ok(mut all) = outcomes.lock() {
                    all[n] = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Failed(ConvertError::Stopped)))
        .collect()
}

/// One job: skipped if its output came from this very input with these
/// options; refused if the output is something else (unless `force`).
fn convert_job(job: &Job, options: &Options, progress: impl FnMut(u64, u64) -> bool) -> Outcome {
    let attempt = || {
        let container = Container::for_path(&job.output)
            .ok_or_else(|| ConvertError::Container(job.output.clone()))?;
        let source = Provenance::of(&job.input, options)?;
        // Absent now: nothing that appears meanwhile is overwritten.
        let replace = job.output.exists();
        if replace {
            match Provenance::read(&job.output) {
                Some(made) if made.same_source(&source) => return Ok(None),
                // Made from a recording that was still being written: the
                // whole one replaces it.
                Some(made) if made.cut_off => {}
                _ if options.force => {}
                _ => return Err(ConvertError::Different(job.output.clone())),
            }
        }
        if let Some(dir) = job.output.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ConvertError::Io {
                path: dir.to_owned(),
                what: "creating the output directory",
                source,
            })?;
        }
        convert_from(
            &job.input,
            &job.output,
            container,
            options,
            &source,
            replace,
            progress,
        )
        .map(Some)
    };
    match attempt() {
        Ok(Some(done)) => Outcome::Converted(done),
        Ok(None) => Outcome::Skipped,
        Err(e) => Outcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_are_found_at_any_depth_and_mapped_under_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("in/2026/11")).unwrap();
        for name in [
            "in/a.vrec",
            "in/2026/11/b.VREC",
            "in/notes.txt",
            "in/.c.vrec",
            "in/a.vrec.tail",
        ] {
            std::fs::write(d.join(name), b"").unwrap();
        }
        let jobs = find(&d.join("in"), &d.join("out"), Container::Mp4).unwrap();
        let pairs: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.input.strip_prefix(d).unwrap().to_owned(),
                    j.output.strip_prefix(d).unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("in/2026/11/b.VREC".into(), "out/2026/11/b.mp4".into()),
                ("in/a.vrec".into(), "out/a.mp4".into()),
            ] as [(PathBuf, PathBuf); 2]
        );
        assert!(matches!(
            find(&d.join("missing"), &d.join("out"), Container::Avi),
            Err(ConvertError::Io { .. })
        ));
        // One file, named on its own: taken whatever its name.
        let one = find(&d.join("in/notes.txt"), &d.join("out"), Container::Avi).unwrap();
        assert_eq!(
            one,
            [Job {
                input: d.join("in/notes.txt"),
                output: d.join("out/notes.avi"),
            }]
        );
    }
}
