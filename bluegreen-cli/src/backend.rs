//! The `[backend]` and `[state]` tables of a deploy file, and what they build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{FileStore, Fleet, HealthProbe, MemoryStore, Router, StateStore};
use serde::Deserialize;

use crate::exit::CliError;

/// Which router, fleet and probe a deploy drives (`[backend]`, chosen by its `kind`).
#[derive(Debug, Clone)]
pub(crate) enum BackendConfig {
    /// `kind = "sim"`.
    Sim(SimBackend),
}

/// The backend kinds, as `kind` names them.
pub(crate) const KINDS: &[&str] = &["sim"];

/// The simulator, its world kept in a file so that every command sees the same one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimBackend {
    /// The world's file (created on first use).
    #[serde(default = "default_world")]
    world: PathBuf,
    /// Pools and their target counts when the world is first created.
    #[serde(default = "default_pools")]
    pools: BTreeMap<String, usize>,
    /// The version the initial targets run.
    #[serde(default = "default_version")]
    initial_version: String,
    /// Versions that misbehave: `"never_healthy"`, or a start-up delay such as `"20s"`.
    #[serde(default)]
    versions: BTreeMap<String, String>,
}

fn default_world() -> PathBuf {
    PathBuf::from(".bluegreen/world.json")
}

fn default_pools() -> BTreeMap<String, usize> {
    BTreeMap::from([("blue".to_owned(), 4), ("green".to_owned(), 0)])
}

fn default_version() -> String {
    "v1".to_owned()
}

/// Where deployments are recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateConfig {
    /// `file` (default) or `memory` (this process only).
    #[serde(default = "default_state_kind")]
    pub(crate) kind: StateKind,
    /// The file store's directory.
    #[serde(default = "default_state_path")]
    pub(crate) path: PathBuf,
    /// Who this deployer is (a CI job id, say); defaults to `bluegreen-HOST-PID`.
    #[serde(default)]
    pub(crate) owner: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { kind: default_state_kind(), path: default_state_path(), owner: None }
    }
}

/// The kinds of state store the command offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateKind {
    /// A directory of JSON files.
    File,
    /// Memory: nothing survives the command.
    Memory,
}

fn default_state_kind() -> StateKind {
    StateKind::File
}

fn default_state_path() -> PathBuf {
    PathBuf::from(".bluegreen/state")
}

/// The built backends.
pub(crate) struct Backends {
    pub(crate) router: Arc<dyn Router>,
    pub(crate) fleet: Arc<dyn Fleet>,
    pub(crate) probe: Arc<dyn HealthProbe>,
}

impl BackendConfig {
    /// Connects to (or, for the simulator, opens) the backends. Nothing is changed.
    pub(crate) fn build(&self) -> Result<Backends, CliError> {
        match self {
            Self::Sim(SimBackend { world, pools, initial_version, versions }) => {
                if let Some(dir) = world.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| CliError::bad_input(format!("{}: cannot create: {e}", dir.display())))?;
                }
                let mut builder = Sim::builder().shared_file(world);
                for (pool, count) in pools {
                    builder = builder.pool(pool.as_str(), *count, initial_version.as_str());
                }
                let sim = builder.build();
                for (version, behaviour) in versions {
                    sim.set_behaviour(version.as_str(), behaviour_of(version, behaviour)?);
                }
                Ok(Backends { router: sim.router(), fleet: sim.fleet(), probe: sim.probe() })
            }
        }
    }
}

fn behaviour_of(version: &str, text: &str) -> Result<VersionBehaviour, CliError> {
    if text == "never_healthy" {
        return Ok(VersionBehaviour::never_healthy());
    }
    humantime::parse_duration(text).map(|d| VersionBehaviour::healthy().with_startup(d)).map_err(|_| {
        CliError::bad_input(format!(
            "backend.versions.{version}: {text:?} is neither \"never_healthy\" nor a start-up delay such as \"20s\""
        ))
    })
}

impl StateConfig {
    /// Opens the store.
    pub(crate) fn open(&self) -> Result<Arc<dyn StateStore>, CliError> {
        Ok(match self.kind {
            StateKind::Memory => Arc::new(MemoryStore::new()),
            StateKind::File => Arc::new(FileStore::open(&self.path)?),
        })
    }

    /// The owner name this process uses.
    pub(crate) fn owner(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned).or_else(|| self.owner.clone()).unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
            format!("bluegreen-{host}-{}", std::process::id())
        })
    }

    /// Where a deployment's event log is kept.
    pub(crate) fn events_dir(&self, service: &str) -> PathBuf {
        self.path.join(service).join("events")
    }
}
