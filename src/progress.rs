//! Progress on stderr for long operations. Drawn only on a terminal, and only
//! once an operation has run long enough to be worth it.

use std::time::Duration;

use audit_db::verify::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Operations shorter than this finish without drawing anything.
const SHOW_AFTER: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_millis(100);

/// A bar following a verification until [`Shown::finish`].
pub struct Shown {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Starts following `progress` as "verifying N/M events".
pub fn verification(progress: Progress) -> Shown {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(SHOW_AFTER) => {}
        }
        let style = ProgressStyle::with_template(
            "verifying {bar:40} {human_pos}/{human_len} events ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::new(progress.total()).with_style(style);
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            bar.set_length(progress.total());
            bar.set_position(progress.checked());
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
        }
        bar.finish_and_clear();
    });
    Shown { stop, task }
}

impl Shown {
    /// Removes the bar (if it was drawn) before results are printed.
    pub async fn finish(self) {
        // The task ends on this signal; if it already ended, there is nothing to stop.
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// A running count ("encoding 1234 frames") on stderr, drawn only on a terminal.
pub fn counter(verb: &str, unit: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{verb} {{spinner}} {{human_pos}} {unit} ({{per_sec}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner().with_style(style);
    bar.enable_steady_tick(REFRESH);
    bar
}
