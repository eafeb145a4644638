//! `vigil convert`: wires progress bars and Ctrl-C to the `converter` crate.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use converter::batch::{self, Job, Outcome, Step};
use converter::{Container, ConvertError, Converted, Options};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::{format_clock, ConvertArgs, VideoFormat};

/// Converts one recording to the named output, or (with `--out`) a
/// recording or a directory of them into a directory.
pub async fn run(args: ConvertArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.store(true, Ordering::Relaxed);
        }
    });
    let options = Options {
        from_us: args.from.unwrap_or(0),
        to_us: args.to,
        scale: args.scale,
        quality: args.quality,
        force: args.force,
        burn_in: args.burn_in,
    };
    let result = match (&args.output, &args.out) {
        (Some(_), _) if args.input.is_dir() => bail!(
            "{} is a directory: convert every recording in it with --out DIR",
            args.input.display()
        ),
        (Some(output), _) => {
            let (input, output) = (args.input.clone(), output.clone());
            tokio::task::spawn_blocking(move || one(&input, &output, &options, &stop)).await?
        }
        (None, Some(out)) => {
            let container = match args.format {
                VideoFormat::Mp4 => Container::Mp4,
                VideoFormat::Avi => Container::Avi,
            };
            let jobs = batch::find(&args.input, out, container)?;
            if jobs.is_empty() {
                bail!("{}: no .vrec recording under it", args.input.display());
            }
            let workers = args.jobs.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            );
            tokio::task::spawn_blocking(move || many(&jobs, &options, workers, &stop)).await?
        }
        (None, None) => bail!("name an output file, or a directory with --out"),
    };
    interrupt.abort();
    result
}

/// One conversion, with a bar for it.
fn one(input: &Path, output: &Path, options: &Options, stop: &AtomicBool) -> Result<ExitCode> {
    let bar = ProgressBar::new(0).with_style(style("converting {bar:40} {msg} ({eta} left)"));
    let result = converter::convert(input, output, options, |at_us, total_us| {
        bar.set_length(total_us);
        bar.set_position(at_us);
        bar.set_message(format_clock(at_us));
        !stop.load(Ordering::Relaxed)
    });
    bar.finish_and_clear();
    match result {
        Ok(done) => {
            warn_if_cut_off(input, &done);
            println!("{}", converted_line(&done));
            Ok(ExitCode::SUCCESS)
        }
        Err(ConvertError::Stopped) => {
            eprintln!("vigil: stopped; {} was not written", output.display());
            Ok(ExitCode::from(130))
        }
        Err(
            e @ (ConvertError::Exists(_)
            | ConvertError::Different(_)
            | ConvertError::EmptyRange { .. }),
        ) => Err(anyhow::anyhow!("{}", with_hint(&e))),
        Err(e) => Err(e.into()),
    }
}

/// A conversion error, with the option that would change the outcome.
fn with_hint(e: &ConvertError) -> String {
    match e {
        ConvertError::Exists(_) | ConvertError::Different(_) => {
            format!("{e} (--force replaces it)")
        }
        ConvertError::EmptyRange { .. } => format!("{e}: --from must be before --to and the end"),
        other => other.to_string(),
    }
}

/// A batch: a bar for the whole (recordings done) and one per conversion
/// under way; a line for each recording as it ends; a summary.
fn many(jobs: &[Job], options: &Options, workers: usize, stop: &AtomicBool) -> Result<ExitCode> {
    let multi = MultiProgress::new();
    let total = multi.add(
        ProgressBar::new(jobs.len() as u64)
            .with_style(style("{pos}/{len} recordings {bar:40} ({eta} left)")),
    );
    let bars: Mutex<Vec<Option<ProgressBar>>> = Mutex::new(vec![None; jobs.len()]);
    // Lines above the bars on a terminal; plain lines otherwise.
    let say = |line: String| {
        if multi.is_hidden() {
            println!("{line}");
        } else {
            multi.suspend(|| println!("{line}"));
        }
    };
    let report = |n: usize, step: Step| -> bool {
        let Ok(mut bars) = bars.lock() else {
            return false;
        };
        match step {
            Step::Started => {
                let name = jobs[n].input.display().to_string();
                let bar = multi.insert_before(
                    &total,
                    ProgressBar::new(0).with_style(style("{bar:30} {msg}")),
                );
                bar.set_message(name);
                bars[n] = Some(bar);
            }
            Step::Progress(at_us, total_us) => {
                if let Some(bar) = &bars[n] {
                    bar.set_length(total_us);
                    bar.set_position(at_us);
                }
            }
            Step::Done(outcome) => {
                if let Some(bar) = bars[n].take() {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                total.inc(1);
                let input = jobs[n].input.display();
                match outcome {
                    Outcome::Converted(done) => {
                        warn_if_cut_off(&jobs[n].input, done);
                        say(converted_line(done));
                    }
                    Outcome::Skipped => say(format!(
                        "{}: skipped, already converted from {input}",
                        jobs[n].output.display()
                    )),
                    Outcome::Failed(ConvertError::Stopped) => {}
                    Outcome::Failed(e) => {
                        multi.suspend(|| eprintln!("vigil: {input}: {}", with_hint(e)));
                    }
                }
            }
        }
        !stop.load(Ordering::Relaxed)
    };
    let outcomes = batch::run(jobs, options, workers, &report);
    total.finish_and_clear();
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let converted = count(|o| matches!(o, Outcome::Converted(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped));
    let stopped = count(|o| matches!(o, Outcome::Failed(ConvertError::Stopped)));
    let failed = outcomes.len() - converted - skipped - stopped;
    println!("{converted} converted, {skipped} skipped, {failed} failed, {stopped} not done");
    Ok(if stop.load(Ordering::Relaxed) {
        eprintln!("vigil: stopped; the conversions under way were not written");
        ExitCode::from(130)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn warn_if_cut_off(input: &Path, done: &Converted) {
    if let Some(why) = &done.truncated {
        eprintln!(
            "vigil: warning: {} was cut off ({why}); converted up to its last whole chunk",
            input.display()
        );
    }
}

fn converted_line(done: &Converted) -> String {
    format!(
        "{}: {} pictures, {}, {} bytes",
        done.output.display(),
        done.pictures,
        format_clock(done.duration_us),
        done.size
    )
}
