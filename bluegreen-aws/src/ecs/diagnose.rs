//! Why tasks do not run: stopped reasons, container reasons and the service's events, in one
//! message, so a stuck deployment says why (no capacity, an image that cannot be pulled, a
//! failing container health check).

use std::fmt::Write as _;

use aws_sdk_ecs::types::Task;

use super::observe::{task_id, Observed};

/// How many stopped tasks a message describes.
const SHOWN: usize = 3;

/// `task 1a2b… STOPPED: <stoppedReason> [container app: CannotPullContainerError: …]`.
pub(super) fn stopped(task: &Task) -> String {
    let mut line = format!(
        "task {} {}: {}",
        task_id(task),
        task.last_status().unwrap_or("?"),
        task.stopped_reason().filter(|r| !r.is_empty()).unwrap_or("no reason given")
    );
    for container in task.containers() {
        if let Some(reason) = container.reason().filter(|r| !r.is_empty()) {
            let _ = write!(line, " [container {}: {reason}]", container.name().unwrap_or("?"));
        } else if let Some(code) = container.exit_code().filter(|c| *c != 0) {
            let _ = write!(line, " [container {} exited with {code}]", container.name().unwrap_or("?"));
        }
    }
    line
}

/// What a start of the tasks tagged `tag` shows: stopped tasks (`new_stops`), tasks not running
/// yet, and the service's latest events.
pub(super) fn start(observed: &Observed, tag: &str, new_stops: &[&Task]) -> String {
    let mut parts = Vec::new();
    if !new_stops.is_empty() {
        let mut shown: Vec<String> = new_stops.iter().take(SHOWN).map(|t| stopped(t)).collect();
        if new_stops.len() > SHOWN {
            shown.push(format!("and {} more", new_stops.len() - SHOWN));
        }
        parts.push(format!("{} task(s) stopped: {}", new_stops.len(), shown.join("; ")));
    }
    for set in observed.tagged(tag) {
        let waiting: Vec<String> = set
            .live()
            .filter(|t| t.last_status() != Some("RUNNING"))
            .map(|t| format!("task {} {}", task_id(t), t.last_status().unwrap_or("?")))
            .collect();
        let running = set.live().filter(|t| t.last_status() == Some("RUNNING")).count();
        let stability = set.set.stability_status().map(|s| format!(", {}", s.as_str())).unwrap_or_default();
        let mut line = format!("task set {} ({}{stability}): {running} running", set.id(), set.revision.name);
        if !waiting.is_empty() {
            let _ = write!(line, ", {}", waiting.join(", "));
        }
        parts.push(line);
    }
    if !observed.events.is_empty() {
        parts.push(format!(
            "latest service events: {}",
            observed.events.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
        ));
    }
    parts.join("; ")
}
