//! `vigil convert`: wires a progress bar and Ctrl-C to the `converter` crate.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use converter::{ConvertError, Options};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{format_clock, ConvertArgs};

/// Converts one recording, with a progress bar on a terminal.
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
    let (input, output) = (args.input.clone(), args.output.clone());
    let result = tokio::task::spawn_blocking(move || {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("converting {bar:40} {msg} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let result = converter::convert(&input, &output, &options, |at_us, total_us| {
            bar.set_length(total_us);
            bar.set_position(at_us);
            bar.set_message(format_clock(at_us));
            !stop.load(Ordering::Relaxed)
        });
        bar.finish_and_clear();
        result
    })
    .await?;
    interrupt.abort();
    match result {
        Ok(done) => {
            if let Some(why) = &done.truncated {
                eprintln!(
                    "vigil: warning: {} was cut off ({why}); converted up to its last whole chunk",
                    args.input.display()
                );
            }
            println!(
                "{}: {} pictures, {}, {} bytes",
                done.output.display(),
                done.pictures,
                format_clock(done.duration_us),
                done.size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ConvertError::Stopped) => {
            eprintln!("vigil: stopped; {} was not written", args.output.display());
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}
