//! Each deployment's event log, kept beside the state (`STATE/SERVICE/events/ID.jsonl`) for
//! `bluegreen report`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bluegreen_core::{Event, EventSink};

use crate::exit::CliError;

/// Appends every event to its deployment's JSON-lines file.
#[derive(Debug)]
pub(crate) struct EventFiles {
    dir: PathBuf,
    open: Mutex<Option<(String, File)>>,
}

impl EventFiles {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, open: Mutex::new(None) }
    }
}

impl EventSink for EventFiles {
    fn emit(&self, event: &Event) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.as_ref().is_none_or(|(id, _)| *id != event.deployment_id) {
            let _ = std::fs::create_dir_all(&self.dir);
            let path = self.dir.join(format!("{}.jsonl", event.deployment_id));
            *open =
                OpenOptions::new().create(true).append(true).open(path).ok().map(|f| (event.deployment_id.clone(), f));
        }
        // The log is for reports: failing to write it must not stop a deploy.
        if let (Some((_, file)), Ok(line)) = (open.as_mut(), serde_json::to_string(event)) {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Reads a deployment's event log.
pub(crate) fn read(path: &Path) -> Result<Vec<Event>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::bad_input(format!("{}: cannot read the event log: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| CliError::bad_input(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}
