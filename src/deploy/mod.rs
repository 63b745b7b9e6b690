//! A deploy file's `[backend]` and `[state]`, built with the backends this crate was compiled
//! with (feature `deploy-file`).
//!
//! `[backend]`'s `kind` picks a router, a fleet and a probe, whose settings sit side by side in
//! that one table; each backend crate owns its part's serde config (`HaproxyRouterConfig`,
//! `HostFleetConfig`, `Rfc2136RouterConfig`, `Route53RouterConfig`, `AlbRouterConfig`,
//! `EcsFleetConfig`; core's [`ProbeConfig`](crate::config::ProbeConfig) and [`SimConfig`](crate::config::SimConfig)), and
//! this module only dispatches:
//!
//! | `kind` | router | fleet | probe | features |
//! |---|---|---|---|---|
//! | `sim` | the simulator's | the simulator's | the simulator's | `sim` |
//! | `haproxy` | `HaproxyRouterConfig` | `HostFleetConfig` | `probe` | `haproxy`, `hosts` |
//! | `rfc2136` | `Rfc2136RouterConfig` | `HostFleetConfig` | `probe` | `rfc2136`, `hosts` |
//! | `route53` | `Route53RouterConfig` + `aws` | `HostFleetConfig` | `probe` | `route53`, `hosts` |
//! | `alb` | `alb` (`AlbRouterConfig`) + `aws` | `HostFleetConfig` | `probe`, default the ALB's | `alb`, `hosts` |
//! | `ecs` | `alb` (`AlbRouterConfig`) + `aws` | `EcsFleetConfig` | `probe`, default the ALB's | `alb`, `ecs` |
//!
//! `[state]`'s `kind` is `file` (default; `path`), `memory` or `dynamodb` (`table`, `aws`;
//! feature `dynamodb`); `owner` names the deployer.
//!
//! Everything is checked while the file is read ([`Deployment::load`]): the builders run
//! against settings that make no call, and a fixed inventory of hosts refuses strategies that
//! start new targets, ECS refuses rolling, a host updater refuses a version it cannot take.
//! [`open`] is the one call for an embedder: the spec, the backends and the state store.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bluegreen::deploy_file::Substitutions;
//!
//! let opened = bluegreen::deploy::open("deploy.toml".as_ref(), &Substitutions::new(), None).await?;
//! let executor = opened.backends.executor().state_store(opened.store, "ci-job-42").build();
//! println!("{}", executor.plan(&opened.spec).await?.timeline());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bluegreen_core::deploy_file::{DeployFile, DeployFileError, Substitutions};
use bluegreen_core::secrets::Secrets;
use bluegreen_core::{Error, Executor, ExecutorBuilder, Fleet, HealthProbe, Router, Spec, StateStore};

mod parts;
mod state;

pub use parts::{FleetConfig, PartsConfig, RouterConfig};
pub use state::{StateKind, StateSection};

/// Each `kind` of `[backend]` and the features of this crate it needs.
const KINDS: &[(&str, &[(&str, bool)])] = &[
    ("sim", &[("sim", cfg!(feature = "sim"))]),
    ("haproxy", &[("haproxy", cfg!(feature = "haproxy")), ("hosts", cfg!(feature = "hosts"))]),
    ("rfc2136", &[("rfc2136", cfg!(feature = "rfc2136")), ("hosts", cfg!(feature = "hosts"))]),
    ("alb", &[("alb", cfg!(feature = "alb")), ("hosts", cfg!(feature = "hosts"))]),
    ("ecs", &[("alb", cfg!(feature = "alb")), ("ecs", cfg!(feature = "ecs"))]),
    ("route53", &[("route53", cfg!(feature = "route53")), ("hosts", cfg!(feature = "hosts"))]),
];

/// A deploy's router, fleet and probe.
pub struct Backends {
    /// Moves traffic.
    pub router: Arc<dyn Router>,
    /// Owns capacity.
    pub fleet: Arc<dyn Fleet>,
    /// Checks one target.
    pub probe: Arc<dyn HealthProbe>,
    /// What the deploy file's references and the backends' settings hold secret
    /// ([`DeployFile::secrets`]): the executor keeps them out of what it writes.
    pub secrets: Secrets,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends").field("router", &self.router.name()).finish_non_exhaustive()
    }
}

impl Backends {
    /// An executor builder over these backends, keeping their [`secrets`](Self::secrets) out
    /// of events, outcomes and the state store.
    pub fn executor(self) -> ExecutorBuilder {
        Executor::builder(self.router, self.fleet, self.probe).secrets(self.secrets)
    }
}

/// `[backend]`, read and checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// `kind = "sim"`: the simulator, its world in a file.
    #[cfg(feature = "sim")]
    Sim(bluegreen_core::config::SimConfig),
    /// Every other kind: a router, a fleet and a probe.
    Parts(Box<PartsConfig>),
}

/// A deploy file read and checked: its spec, `[backend]` and `[state]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Deployment {
    /// The file (the spec, and where each value is: [`DeployFile::locate`]).
    pub file: DeployFile,
    /// `[backend]`.
    pub backend: BackendConfig,
    /// `[state]`.
    pub state: StateSection,
}

impl Deployment {
    /// Reads and checks the deploy file at `path` (`version` replaces its `version`).
    pub fn load(path: &Path, subs: &Substitutions, version: Option<&str>) -> Result<Self, DeployFileError> {
        Self::read(DeployFile::load(path, subs, version)?)
    }

    /// Reads `[backend]` and `[state]` of a parsed file ([`DeployFile::parse`] reads text), and
    /// checks them with its spec.
    pub fn read(file: DeployFile) -> Result<Self, DeployFileError> {
        let backend = BackendConfig::read(&file)?;
        backend.check_spec(&file)?;
        backend.add_secrets(file.secrets());
        let state = StateSection::read(&file)?;
        Ok(Self { file, backend, state })
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.file.spec
    }

    /// Connects to (or, for the simulator, opens) the backends. Nothing is changed.
    pub async fn backends(&self) -> Result<Backends, Error> {
        let mut backends = self.backend.build().await?;
        backends.secrets = self.file.secrets().clone();
        Ok(backends)
    }

    /// What the file holds secret: its references' values and the backends' keys (a TSIG
    /// secret). Redact a program's own output with it.
    pub fn secrets(&self) -> &Secrets {
        self.file.secrets()
    }

    /// Opens the state store.
    pub async fn state_store(&self) -> Result<Arc<dyn StateStore>, Error> {
        self.state.open().await
    }
}

/// A deploy file read for its recorded deployments only — what `status`, `history`, `report`,
/// `wait` and the commands that steer a running deploy need: the service and `[state]`.
/// References elsewhere (a TSIG secret in `[backend]`, a version from the environment) need not
/// resolve and the spec is not checked, so reading the records needs no backend secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Recorded {
    /// The file (its spec unchecked, unresolved references left as written).
    pub file: DeployFile,
    /// `[state]`.
    pub state: StateSection,
}

impl Recorded {
    /// Reads the deploy file at `path` for its records.
    ///
    /// # Errors
    /// A [`DeployFileError`] for a file that cannot be read, or whose `service` or `[state]`
    /// holds a reference that cannot be resolved (at its line).
    pub fn load(path: &Path, subs: &Substitutions) -> Result<Self, DeployFileError> {
        let file = DeployFile::load(path, &subs.clone().leave_unresolved(), None)?;
        file.require_resolved(&["service", "state"])?;
        let state = StateSection::read(&file)?;
        Ok(Self { file, state })
    }

    /// The service whose deployments are recorded.
    pub fn service(&self) -> &str {
        &self.file.spec.service
    }

    /// Opens the state store.
    pub async fn state_store(&self) -> Result<Arc<dyn StateStore>, Error> {
        self.state.open().await
    }
}

/// What [`open`] gives: everything an executor needs.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened {
    /// The spec, validated.
    pub spec: Spec,
    /// The router, fleet and probe.
    pub backends: Backends,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// `[state] owner`, if the file names one.
    pub owner: Option<String>,
}

/// Why [`open`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The file is refused, or a backend refused what it names (at its line).
    File(DeployFileError),
    /// A backend or the state store could not be opened.
    Backend(Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(e) => e.fmt(f),
            Self::Backend(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::File(e) => Some(e),
            Self::Backend(e) => Some(e),
        }
    }
}

/// Reads the deploy file at `path` and opens what it names: the spec, the backends and the
/// state store. Nothing is changed.
pub async fn open(path: &Path, subs: &Substitutions, version: Option<&str>) -> Result<Opened, OpenError> {
    let deployment = Deployment::load(path, subs, version).map_err(OpenError::File)?;
    let located = |e: Error| deployment.file.locate(e).map_or_else(OpenError::Backend, OpenError::File);
    let backends = deployment.backends().await.map_err(located)?;
    let store = deployment.state_store().await.map_err(located)?;
    Ok(Opened { spec: deployment.file.spec.clone(), backends, store, owner: deployment.state.local.owner.clone() })
}

impl BackendConfig {
    fn read(file: &DeployFile) -> Result<Self, DeployFileError> {
        let mut parts = file.parts("backend")?;
        let kinds = KINDS.iter().map(|(kind, _)| *kind).collect::<Vec<_>>().join(", ");
        let kind = match parts.kind() {
            Some(kind) => kind.as_str().ok_or_else(|| {
                file.error_at("backend.kind", format!("invalid backend.kind: expected one of {kinds}"))
            })?,
            None => return Err(file.error_at("backend", format!("invalid backend: missing `kind` (one of {kinds})"))),
        };
        let Some((kind, features)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            return Err(file.error_at(
                "backend.kind",
                format!("invalid backend.kind: unknown variant `{kind}`, expected one of {kinds}"),
            ));
        };
        let missing: Vec<&str> = features.iter().filter(|(_, on)| !on).map(|(feature, _)| *feature).collect();
        if !missing.is_empty() {
            return Err(file.error_at(
                "backend.kind",
                format!(
                    "invalid backend.kind: kind = \"{kind}\" needs the feature(s) {} of bluegreen",
                    missing.join(", ")
                ),
            ));
        }
        let config = match *kind {
            #[cfg(feature = "sim")]
            "sim" => Self::Sim(parts.take()?),
            _ => Self::Parts(Box::new(PartsConfig::read(kind, &mut parts, file)?)),
        };
        parts.finish()?;
        config.check().map_err(|e| file.invalid(e))?;
        Ok(config)
    }

    /// Adds the settings' secrets (a TSIG key's) to `secrets`.
    fn add_secrets(&self, secrets: &Secrets) {
        match self {
            #[cfg(feature = "sim")]
            Self::Sim(_) => {}
            Self::Parts(parts) => parts.add_secrets(secrets),
        }
    }

    /// The checks of the parts that need the spec.
    #[allow(irrefutable_let_patterns, reason = "without `sim` every backend has parts")]
    fn check_spec(&self, file: &DeployFile) -> Result<(), DeployFileError> {
        if let Self::Parts(parts) = self {
            parts.check_spec(file)
        } else {
            Ok(())
        }
    }

    /// Refuses settings the backends' builders refuse: each is built against settings that
    /// make no call (and dropped); `Error::Invalid` names the field as a path in the file
    /// (`backend.separator`).
    pub fn check(&self) -> Result<(), Error> {
        match self {
            #[cfg(feature = "sim")]
            Self::Sim(sim) => sim.check().map_err(|e| e.within("backend")),
            Self::Parts(parts) => parts.assemble(Some(&parts::offline())).map(drop),
        }
    }

    /// Connects to (or, for the simulator, opens) the backends. Nothing is changed.
    pub async fn build(&self) -> Result<Backends, Error> {
        match self {
            #[cfg(feature = "sim")]
            Self::Sim(config) => {
                let sim = config.open().map_err(|e| e.within("backend"))?;
                Ok(Backends { router: sim.router(), fleet: sim.fleet(), probe: sim.probe(), secrets: Secrets::new() })
            }
            Self::Parts(parts) => parts.assemble(parts.sdk().await.as_ref()),
        }
    }
}
