//! Serde configurations of what the engine itself provides: the health probe a backend's hosts
//! are checked with ([`ProbeConfig`]), the simulator ([`SimConfig`], feature `sim`) and where
//! deployments are recorded on this machine ([`StateConfig`]).
//!
//! Each is read once (serde), checked when built, and errors name the field at fault relative
//! to the config's own table (`timeout`, `path`; the empty field is the table itself): put them
//! under where the table sits with [`Error::within`](crate::Error::within). The backend crates
//! keep theirs beside their routers and fleets; a deploy file combines them (the facade's
//! `bluegreen::deploy`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::probe::{HealthProbe, TcpProbe};

/// How the health gate checks a target: `kind = "http"` (default; `path`, `expect_status`,
/// `timeout`) or `"tcp"` (`timeout`). `kind = "alb"` names the load balancer's own checks,
/// which only a backend with a load balancer builds: [`ProbeConfig::build`] refuses it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProbeConfig {
    /// `http` (default), `tcp`, or `alb` (the load balancer's own health checks).
    #[serde(default)]
    pub kind: ProbeKind,
    /// HTTP: the path asked on each target (`/healthz`).
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP: a healthy status, or `[low, high]`; default 200–399.
    #[serde(default)]
    pub expect_status: Option<StatusRange>,
    /// One check's timeout (default 2 s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// The kinds of [`ProbeConfig`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProbeKind {
    /// An HTTP GET of `path` on each target (feature `http-probe`).
    #[default]
    Http,
    /// A TCP connection to each target.
    Tcp,
    /// The load balancer's target health (built by the ALB backend, not here).
    Alb,
}

/// `200` or `[200, 299]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged, expecting = "an HTTP status or [low, high]")]
pub enum StatusRange {
    /// One status.
    One(u16),
    /// `[low, high]`, both included.
    Range([u16; 2]),
}

impl ProbeConfig {
    /// The probe this describes (`http` or `tcp`). `Error::Invalid` names the field at fault
    /// (`kind`, `path`, `expect_status`, `timeout`; the empty field for the table).
    pub fn build(&self) -> Result<Arc<dyn HealthProbe>> {
        match self.kind {
            ProbeKind::Alb => Err(Error::invalid(
                "kind",
                "an alb probe asks the load balancer: only kind = \"alb\" or \"ecs\" have one",
            )),
            ProbeKind::Tcp => {
                if self.path.is_some() || self.expect_status.is_some() {
                    let field = if self.path.is_some() { "path" } else { "expect_status" };
                    return Err(Error::invalid(field, "only an http probe takes a path and statuses"));
                }
                let timeout = self.timeout.unwrap_or(Duration::from_secs(2));
                if timeout.is_zero() {
                    return Err(Error::invalid("timeout", "must be longer than 0s"));
                }
                Ok(Arc::new(TcpProbe::new(timeout)))
            }
            ProbeKind::Http => self.http(),
        }
    }

    #[cfg(feature = "http-probe")]
    fn http(&self) -> Result<Arc<dyn HealthProbe>> {
        let path = self
            .path
            .as_deref()
            .ok_or_else(|| Error::invalid("", "missing `path` (an http probe asks it on each host)"))?;
        let mut builder = crate::probe::HttpProbe::builder(path);
        match self.expect_status {
            Some(StatusRange::One(status)) => builder = builder.expect_status(status..=status),
            Some(StatusRange::Range([low, high])) => builder = builder.expect_status(low..=high),
            None => {}
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        Ok(Arc::new(builder.build()?))
    }

    #[cfg(not(feature = "http-probe"))]
    fn http(&self) -> Result<Arc<dyn HealthProbe>> {
        Err(Error::invalid("kind", "an http probe needs the feature `http-probe`: use kind = \"tcp\""))
    }
}

/// The simulator, its world kept in a file so that every process sees the same one
/// (feature `sim`).
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SimConfig {
    /// The world's file (created 0600 on first use, in directories created 0700; default
    /// `.bluegreen/world.json`).
    #[serde(default = "default_world")]
    pub world: PathBuf,
    /// Pools and their target counts when the world is first created (default 4 blue, 0 green).
    #[serde(default = "default_pools")]
    pub pools: std::collections::BTreeMap<String, usize>,
    /// The version the initial targets run (default `v1`).
    #[serde(default = "default_version")]
    pub initial_version: String,
    /// Versions that misbehave: `"never_healthy"`, or a start-up delay such as `"20s"`.
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, String>,
}

#[cfg(feature = "sim")]
fn default_world() -> PathBuf {
    PathBuf::from(".bluegreen/world.json")
}

#[cfg(feature = "sim")]
fn default_pools() -> std::collections::BTreeMap<String, usize> {
    std::collections::BTreeMap::from([("blue".to_owned(), 4), ("green".to_owned(), 0)])
}

#[cfg(feature = "sim")]
fn default_version() -> String {
    "v1".to_owned()
}

#[cfg(feature = "sim")]
impl SimConfig {
    /// Refuses a version behaviour that is neither `never_healthy` nor a duration
    /// (`versions.<version>`), without touching the world's file.
    pub fn check(&self) -> Result<()> {
        self.behaviours().map(drop)
    }

    /// Opens the world (creating its file, 0600, and its missing directories, 0700, on first
    /// use). Nothing is changed.
    pub fn open(&self) -> Result<crate::sim::Sim> {
        let behaviours = self.behaviours()?;
        if let Some(dir) = self.world.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir)
                .map_err(|e| Error::invalid("world", format!("{}: cannot create: {e}", dir.display())))?;
        }
        let mut builder = crate::sim::Sim::builder().shared_file(&self.world);
        for (pool, count) in &self.pools {
            builder = builder.pool(pool.as_str(), *count, self.initial_version.as_str());
        }
        let sim = builder.try_build()?;
        for (version, behaviour) in behaviours {
            sim.set_behaviour(version.as_str(), behaviour);
        }
        Ok(sim)
    }

    fn behaviours(&self) -> Result<Vec<(&String, crate::sim::VersionBehaviour)>> {
        use crate::sim::VersionBehaviour;
        self.versions
            .iter()
            .map(|(version, text)| {
                if text == "never_healthy" {
                    return Ok((version, VersionBehaviour::never_healthy()));
                }
                let delay = humantime::parse_duration(text).map_err(|_| {
                    Error::invalid(
                        format!("versions.{version}"),
                        format!("{text:?} is neither \"never_healthy\" nor a start-up delay such as \"20s\""),
                    )
                })?;
                Ok((version, VersionBehaviour::healthy().with_startup(delay)))
            })
            .collect()
    }
}

/// Where deployments are recorded on this machine, and who records them: the
/// [`FileStore`](crate::FileStore)'s directory and the lock owner's name.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct StateConfig {
    /// The file store's directory (default `.bluegreen/state`).
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// Who this deployer is (a CI job id, say); `None`: the program picks one.
    #[serde(default)]
    pub owner: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { path: default_state_path(), owner: None }
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from(".bluegreen/state")
}

impl StateConfig {
    /// Opens (creating it) the file store at [`StateConfig::path`].
    pub fn open_file(&self) -> Result<crate::FileStore> {
        crate::FileStore::open(&self.path)
    }

    /// The file store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
