//! Progress for long work, shown only when a person is watching.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether to draw progress: stdout and stderr are both terminals.
pub fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// Runs `work`, showing a spinner with the elapsed time on stderr once it has run
/// for a second (quick statements print no spinner).
pub async fn with_spinner<T>(message: &str, work: impl Future<Output = T>) -> T {
    if !on_terminal() {
        return work.await;
    }
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message.to_string());
    let show = {
        let spinner = spinner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            spinner.enable_steady_tick(Duration::from_millis(120));
        })
    };
    let result = work.await;
    show.abort();
    spinner.finish_and_clear();
    result
}

/// A bar counting `total` units on stderr, hidden when no one is watching.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    if !on_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {percent}% {human_pos}/{human_len} rows, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Training progress: one line per iteration with its loss, on a terminal only.
pub struct TrainingProgress {
    bar: ProgressBar,
}

impl TrainingProgress {
    pub fn new() -> Self {
        let bar = if on_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }
}

impl ember_ml_ops::models::Progress for TrainingProgress {
    fn iteration(&self, model_type: &str, iteration: usize, max: usize, loss: f64) {
        if !self.bar.is_hidden() {
            self.bar.println(format!(
                "{model_type} iteration {iteration}/{max}  loss {loss:.8}"
            ));
        }
    }
}
