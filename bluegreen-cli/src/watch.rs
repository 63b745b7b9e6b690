//! `status` and `wait`: where a deployment stands, once, redrawn until it ends, or awaited
//! until it gets somewhere; each exits with the code of where it stands, so a pipeline stage
//! can end at a phase and a later stage pick the deployment up.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use bluegreen_core::{DeploymentRecord, EventKind, Lease, Phase, StateStore};
use serde_json::json;
use tokio::time::Instant;

use crate::args::{Output, TargetArgs};
use crate::commands::{print_json, target};
use crate::exit::{CliError, Code};
use crate::specfile::load_records;

/// How often the state store is read again while watching or waiting.
const POLL: Duration = Duration::from_millis(500);

/// What `wait --until` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// The deployment ended (the default).
    Finished,
    /// The deployment is paused: a manual or timed pause step, or `bluegreen pause`.
    Paused,
    /// The deployment is rolling back.
    RollingBack,
    /// At least this many steps are done.
    Step(usize),
}

impl FromStr for Until {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "finished" => Ok(Self::Finished),
            "paused" => Ok(Self::Paused),
            "rolling-back" => Ok(Self::RollingBack),
            _ => match text.strip_prefix("step:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => Ok(Self::Step(n)),
                _ => Err(format!("{text:?}: expected finished, paused, rolling-back or step:N (N from 1)")),
            },
        }
    }
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Finished => f.write_str("finished"),
            Self::Paused => f.write_str("paused"),
            Self::RollingBack => f.write_str("rolling-back"),
            Self::Step(n) => write!(f, "step:{n}"),
        }
    }
}

/// Where a deployment stands, as `status` and `wait` exit: its outcome's code once finished;
/// [`Code::Running`] while the owner it records holds the service's lock; otherwise it stopped
/// unfinished (Ctrl-C, or a deployer that died and whose lease expired): [`Code::Interrupted`],
/// resumable.
fn standing(record: &DeploymentRecord, holder: Option<&Lease>) -> Code {
    match (&record.phase, &record.outcome) {
        (Phase::Finished, Some(outcome)) => Code::of(outcome.status),
        (Phase::Finished, None) => Code::NeedsHuman,
        _ if holder.is_some_and(|lease| lease.owner == record.owner) => Code::Running,
        _ => Code::Interrupted,
    }
}

/// One look at the deployment: its record, the lock's holder, and whether its last pause is
/// still in force.
struct Look {
    record: DeploymentRecord,
    holder: Option<Lease>,
    paused: bool,
}

impl Look {
    async fn take(store: &dyn StateStore, id: &str) -> Result<Self, CliError> {
        let record = store.load(id).await.map_err(CliError::unknown)?;
        let holder = store.holder(&record.service).await?;
        let events = store.events(id).await?;
        let paused = events
            .iter()
            .rev()
            .find_map(|e| match e.kind {
                EventKind::Paused { .. } => Some(true),
                EventKind::Resumed | EventKind::DeploymentFinished { .. } => Some(false),
                _ => None,
            })
            .unwrap_or(false);
        Ok(Self { record, holder, paused })
    }

    fn code(&self) -> Code {
        standing(&self.record, self.holder.as_ref())
    }

    fn reached(&self, until: Until) -> bool {
        match until {
            Until::Finished => self.record.phase == Phase::Finished,
            Until::Paused => self.paused,
            Until::RollingBack => self.record.phase == Phase::RollingBack,
            Until::Step(n) => self.record.completed_steps >= n,
        }
    }

    /// What `status` prints.
    fn show(&self, output: Output) {
        let record = &self.record;
        let s = record.summary();
        let code = self.code();
        match output {
            Output::Json => print_json(&json!({
                "deployment": s,
                "standing": code.kind(),
                "paused": self.paused,
                "lock": self.holder,
                "failure": record.failure,
            })),
            Output::Text => {
                println!(
                    "deployment {} ({} {} → {})",
                    s.id,
                    s.strategy,
                    s.from_version.as_deref().unwrap_or("nothing"),
                    s.to_version
                );
                let phase = match (s.phase, s.status) {
                    (Phase::Finished, Some(status)) => status.to_string(),
                    (_, _) if code == Code::Interrupted => "stopped unfinished (resumable)".to_owned(),
                    (_, _) if self.paused => "paused".to_owned(),
                    (phase, _) => format!("{phase:?}").to_lowercase().replace("rollingback", "rolling back"),
                };
                println!("  state:  {phase}, {} of {} steps done", s.completed_steps, s.total_steps);
                if let Some(step) =
                    record.plan.steps.get(record.completed_steps).filter(|_| record.phase != Phase::Finished)
                {
                    println!("  now:    step {}: {step}", record.completed_steps + 1);
                }
                if let Some(failure) = &record.failure {
                    println!("  failed: {failure}");
                }
                match &self.holder {
                    Some(lease) => println!("  lock:   held by {} (fence {})", lease.owner, lease.fence),
                    None => println!("  lock:   free"),
                }
            }
        }
    }

    /// What changes between two looks worth showing again.
    fn key(&self) -> (Phase, usize, bool, Option<String>, Code) {
        (self.record.phase, self.record.completed_steps, self.paused, self.record.failure.clone(), self.code())
    }
}

/// `bluegreen status [--watch]`: where the deployment stands; with `--watch`, shown again
/// whenever it changes (redrawn on a terminal) until it is no longer running.
pub(crate) async fn status(args: &TargetArgs, watch: bool) -> Result<Code, CliError> {
    let file = load_records(&args.file)?;
    let store = file.state_store().await?;
    let id = target(store.as_ref(), &file, args.id.as_deref()).await?.id;
    let redraw = args.file.output == Output::Text && std::io::stdout().is_terminal();
    let mut shown = None;
    loop {
        let look = Look::take(store.as_ref(), &id).await?;
        if shown.as_ref() != Some(&look.key()) {
            if redraw && shown.is_some() {
                // Clear the screen and go home: the new state replaces the old.
                print!("\x1b[2J\x1b[H");
            }
            look.show(args.file.output);
            shown = Some(look.key());
        }
        if !watch || look.code() != Code::Running {
            return Ok(look.code());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `bluegreen wait [--until U] [--timeout D]`: waits until the deployment reaches `until` (exit
/// 0), ends or stops first (its own code), or `timeout` passes ([`Code::Running`]).
pub(crate) async fn wait(args: &TargetArgs, until: Until, timeout: Option<Duration>) -> Result<Code, CliError> {
    let file = load_records(&args.file)?;
    let store = file.state_store().await?;
    let id = target(store.as_ref(), &file, args.id.as_deref()).await?.id;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let look = Look::take(store.as_ref(), &id).await?;
        let (code, why) = if look.code() != Code::Running {
            (look.code(), "it is no longer running")
        } else if look.reached(until) {
            (Code::Done, "reached")
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            (Code::Running, "still running at the timeout")
        } else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let reached = look.reached(until);
        match args.file.output {
            Output::Json => print_json(&json!({
                "deployment": look.record.summary(),
                "until": until.to_string(),
                "reached": reached,
                "standing": look.code().kind(),
            })),
            Output::Text => println!(
                "deployment {}: {} {until} ({why}; {} of {} steps done)",
                id,
                if reached { "reached" } else { "did not reach" },
                look.record.completed_steps,
                look.record.plan.steps.len()
            ),
        }
        return Ok(code);
    }
}
