//! The live display of a running deploy: an indicatif progress display on a terminal, plain
//! event lines otherwise, JSON lines with `--output json`.

use std::io::IsTerminal;
use std::time::Duration;

use bluegreen_core::{Event, EventKind};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::args::Output;

/// The running display.
pub(crate) struct Display {
    task: JoinHandle<()>,
}

impl Display {
    /// Waits until every event has been shown (the sender is gone once the executor is).
    pub(crate) async fn finish(self) {
        let _ = self.task.await;
    }
}

/// Starts showing events from `events`.
pub(crate) fn start(events: UnboundedReceiver<Event>, output: Output) -> Display {
    let task = match output {
        Output::Json => tokio::spawn(json_lines(events)),
        Output::Text if std::io::stderr().is_terminal() => tokio::spawn(live(events)),
        Output::Text => tokio::spawn(plain(events)),
    };
    Display { task }
}

async fn json_lines(mut events: UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        if let Ok(line) = serde_json::to_string(&event) {
            println!("{line}");
        }
    }
}

async fn plain(mut events: UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        println!("{event}");
    }
}

/// A bar of `width` cells for a share in percent.
pub(crate) fn bar(percent: u32, width: usize) -> String {
    let filled = (percent as usize * width).div_ceil(100).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

async fn live(mut events: UnboundedReceiver<Event>) {
    let multi = MultiProgress::new();
    let steps = multi.add(ProgressBar::new(1));
    steps.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    steps.enable_steady_tick(Duration::from_millis(120));
    let traffic = multi.add(ProgressBar::new_spinner());
    traffic.set_style(
        ProgressStyle::with_template("  traffic {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let health = multi.add(ProgressBar::new_spinner());
    health.set_style(
        ProgressStyle::with_template("  targets {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut healthy = 0usize;
    while let Some(event) = events.recv().await {
        match &event.kind {
            EventKind::DeploymentStarted { steps: total, .. } => steps.set_length(*total as u64),
            EventKind::DeploymentResumed { from_step } => steps.set_position(*from_step as u64),
            EventKind::StepStarted { step, .. } => steps.set_message(step.clone()),
            EventKind::StepCompleted { index, .. } => steps.set_position(*index as u64 + 1),
            EventKind::TrafficShifted { to, .. } => {
                let parts: Vec<String> = to.iter().map(|(pool, w)| format!("{pool} {} {w:>3}%", bar(w, 20))).collect();
                traffic.set_message(parts.join("   "));
            }
            EventKind::TargetHealthy { .. } => {
                healthy += 1;
                health.set_message(format!("{healthy} passed their health gate"));
            }
            _ => {}
        }
        // Every event also goes above the bars, as the log.
        multi.suspend(|| eprintln!("{event}"));
    }
    steps.finish_and_clear();
    traffic.finish_and_clear();
    health.finish_and_clear();
}
