//! A deploy file's `[backend]` and `[state]`, built with the backends this crate was compiled
//! with (feature `deploy-file`).
//!
//! `[backend]`'s `kind` picks a router, a fleet and a probe, whose settings sit side by side in
//! that one table; each backend crate owns its part's serde config (`HaproxyRouterConfig`,
//! `HostFleetConfig`, `Rfc2136RouterConfig`, `Route53RouterConfig`, `AlbRouterConfig`,
//! `EcsFleetConfig`; core's [`ProbeConfig`] and [`SimConfig`](crate::config::SimConfig)), and
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

use bluegreen_core::config::{ProbeConfig, ProbeKind, StateConfig};
use bluegreen_core::deploy_file::{DeployFile, DeployFileError, Parts, Substitutions};
use bluegreen_core::{
    Error, Executor, ExecutorBuilder, Fleet, HealthProbe, MemoryStore, PoolName, Router, Spec, StateStore,
};
use serde::Deserialize;

#[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
use bluegreen_aws::{AwsSettings, SdkConfig};
/// Without an AWS backend there is no SDK configuration to pass.
#[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
type SdkConfig = ();

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
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends").field("router", &self.router.name()).finish_non_exhaustive()
    }
}

impl Backends {
    /// An executor builder over these backends.
    pub fn executor(self) -> ExecutorBuilder {
        Executor::builder(self.router, self.fleet, self.probe)
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

/// A router's, a fleet's and a probe's settings, from one `[backend]` table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PartsConfig {
    /// The table's `kind`.
    pub kind: &'static str,
    /// The router's settings.
    pub router: RouterConfig,
    /// The fleet's settings.
    pub fleet: FleetConfig,
    /// `[backend.probe]`; `None` for the load balancer's own view (`alb`, `ecs`).
    pub probe: Option<ProbeConfig>,
    /// `[backend.aws]`: where the AWS clients connect.
    #[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
    pub aws: AwsSettings,
    /// The spec's pools, which the router serves.
    pub pools: Vec<PoolName>,
}

/// The routers a `[backend]` can name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RouterConfig {
    /// `kind = "haproxy"`.
    #[cfg(feature = "haproxy")]
    Haproxy(bluegreen_vm::HaproxyRouterConfig),
    /// `kind = "rfc2136"`.
    #[cfg(feature = "rfc2136")]
    Rfc2136(bluegreen_dns::Rfc2136RouterConfig),
    /// `kind = "route53"`.
    #[cfg(feature = "route53")]
    Route53(bluegreen_dns::Route53RouterConfig),
    /// `kind = "alb"` and `"ecs"`: `[backend.alb]`.
    #[cfg(feature = "alb")]
    Alb(bluegreen_aws::AlbRouterConfig),
}

/// The fleets a `[backend]` can name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FleetConfig {
    /// A fixed inventory of hosts (every kind but `sim` and `ecs`).
    #[cfg(feature = "hosts")]
    Hosts(bluegreen_vm::HostFleetConfig),
    /// `kind = "ecs"`: an ECS service's task sets.
    #[cfg(feature = "ecs")]
    Ecs(bluegreen_aws::EcsFleetConfig),
}

/// The kinds of `[state]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateKind {
    /// A directory of JSON files (default).
    #[default]
    File,
    /// Memory: nothing survives the process.
    Memory,
    /// A DynamoDB table, for deploys run from many machines (feature `dynamodb`).
    Dynamodb,
}

/// `[state]`, read and checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StateSection {
    /// Which store.
    pub kind: StateKind,
    /// The file store's directory and the owner's name.
    pub local: StateConfig,
    /// The DynamoDB store's table and client.
    #[cfg(feature = "dynamodb")]
    pub dynamodb: bluegreen_aws::DynamoDbStateConfig,
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
        let state = StateSection::read(&file)?;
        Ok(Self { file, backend, state })
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.file.spec
    }

    /// Connects to (or, for the simulator, opens) the backends. Nothing is changed.
    pub async fn backends(&self) -> Result<Backends, Error> {
        self.backend.build().await
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
            Self::Parts(parts) => parts.assemble(Some(&offline())).map(drop),
        }
    }

    /// Connects to (or, for the simulator, opens) the backends. Nothing is changed.
    pub async fn build(&self) -> Result<Backends, Error> {
        match self {
            #[cfg(feature = "sim")]
            Self::Sim(config) => {
                let sim = config.open().map_err(|e| e.within("backend"))?;
                Ok(Backends { router: sim.router(), fleet: sim.fleet(), probe: sim.probe() })
            }
            Self::Parts(parts) => parts.assemble(parts.sdk().await.as_ref()),
        }
    }
}

impl PartsConfig {
    /// The checks that need the spec: what a fleet can run, and the version it is given.
    fn check_spec(&self, file: &DeployFile) -> Result<(), DeployFileError> {
        #[allow(unused_variables, reason = "without `hosts` or `ecs` there is no fleet to check")]
        let spec = &file.spec;
        match &self.fleet {
            #[cfg(feature = "hosts")]
            FleetConfig::Hosts(hosts) => {
                use bluegreen_core::{RollingMode, Strategy};
                hosts.check_pools(&spec.pools).map_err(|e| file.invalid(e.within("backend")))?;
                if self.kind != "haproxy" {
                    if let Some(i) = hosts.hosts.iter().position(|h| h.server.is_some()) {
                        let field = format!("backend.hosts[{i}].server");
                        return Err(file.error_at(
                            &field,
                            format!(
                                "invalid {field}: kind = \"{}\" has no server names to adopt (only kind = \"haproxy\" \
                                 does): leave `server` out",
                                self.kind
                            ),
                        ));
                    }
                }
                let refused = match &spec.strategy {
                    // A rolling replace starts new hosts: a fixed inventory cannot.
                    Strategy::Rolling(r) if r.mode == RollingMode::Replace => {
                        Some(("strategy.mode", "rolling replace"))
                    }
                    Strategy::Rolling(_) => None,
                    // Blue-green, canary and linear switch between standing pools.
                    _ if hosts.has_pools() => None,
                    other => Some(("strategy.kind", other.name())),
                };
                if let Some((what, name)) = refused {
                    return Err(file.error_at(
                        what,
                        format!(
                            "invalid {what}: kind = \"{}\" has a fixed inventory of hosts, which {name} would need to \
                             start new ones of: put the hosts in two standing pools (`pool = \"blue\"` / \"green\" on \
                             each host) for blue-green, canary and linear, or use kind = \"rolling\" with mode = \
                             \"in_place\" (the default)",
                            self.kind
                        ),
                    ));
                }
                hosts.check_version(&spec.version).map_err(|e| file.invalid(e))
            }
            #[cfg(feature = "ecs")]
            FleetConfig::Ecs(_) if matches!(spec.strategy, bluegreen_core::Strategy::Rolling(_)) => {
                // A rolling deploy retires part of a task set, and ECS picks which task a lower
                // scale stops (maybe a serving one): refused before anything runs.
                Err(file.error_at(
                    "strategy.kind",
                    "invalid strategy.kind: on kind = \"ecs\" versions are whole task sets: use blue_green, canary or linear",
                ))
            }
            #[allow(unreachable_patterns, reason = "without `ecs` the arms above cover every fleet")]
            _ => Ok(()),
        }
    }
}

/// The SDK configuration the builders' checks run against: it can make no call.
#[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
fn offline() -> SdkConfig {
    AwsSettings::offline()
}

#[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
fn offline() -> SdkConfig {}

impl PartsConfig {
    /// The parts `kind` combines, from `parts` (whose features were checked).
    #[allow(unreachable_code, unused_variables, reason = "with no router or no fleet compiled in, no kind gets here")]
    fn read(kind: &'static str, parts: &mut Parts<'_>, file: &DeployFile) -> Result<Self, DeployFileError> {
        let router = match kind {
            #[cfg(feature = "haproxy")]
            "haproxy" => RouterConfig::Haproxy(parts.take()?),
            #[cfg(feature = "rfc2136")]
            "rfc2136" => RouterConfig::Rfc2136(parts.take()?),
            #[cfg(feature = "route53")]
            "route53" => RouterConfig::Route53(parts.take()?),
            #[cfg(feature = "alb")]
            "alb" | "ecs" => RouterConfig::Alb(parts.required("alb")?),
            _ => return Err(file.error_at("backend.kind", format!("invalid backend.kind: no router for {kind}"))),
        };
        let fleet = match kind {
            #[cfg(feature = "ecs")]
            "ecs" => FleetConfig::Ecs(parts.take()?),
            #[cfg(feature = "hosts")]
            "haproxy" | "rfc2136" | "route53" | "alb" => FleetConfig::Hosts(parts.take()?),
            _ => return Err(file.error_at("backend.kind", format!("invalid backend.kind: no fleet for {kind}"))),
        };
        // The load balancer's own view is the default probe where there is one.
        let probe = match kind {
            "alb" | "ecs" => parts.field("probe")?,
            _ => Some(parts.required("probe")?),
        };
        Ok(Self {
            kind,
            router,
            fleet,
            probe,
            #[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
            aws: match kind {
                "alb" | "ecs" | "route53" => parts.field("aws")?.unwrap_or_default(),
                _ => AwsSettings::default(),
            },
            pools: file.spec.pools.clone(),
        })
    }

    /// The SDK configuration of `[backend.aws]`, for the kinds that call AWS.
    #[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
    async fn sdk(&self) -> Option<SdkConfig> {
        match self.kind {
            "alb" | "ecs" | "route53" => Some(self.aws.load().await),
            _ => None,
        }
    }

    #[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
    async fn sdk(&self) -> Option<SdkConfig> {
        None
    }

    /// The inventory's hosts that stand in a pool, `(id, pool, address)`: a DNS router reads
    /// records of theirs with no bookkeeping as their members (adopted with `--adopt`).
    #[cfg(any(feature = "rfc2136", feature = "route53"))]
    fn pooled_hosts(&self) -> Vec<(String, PoolName, String)> {
        match &self.fleet {
            #[cfg(feature = "hosts")]
            FleetConfig::Hosts(hosts) => hosts
                .hosts
                .iter()
                .filter_map(|h| Some((h.id.clone(), PoolName::from(h.pool.as_deref()?), h.address.clone())))
                .collect(),
            #[allow(unreachable_patterns, reason = "the DNS routers' fleet is a fixed inventory")]
            _ => Vec::new(),
        }
    }

    /// The router, fleet and probe over `sdk`'s clients (no call is made).
    #[allow(
        unreachable_code,
        unused_variables,
        reason = "with no router or no fleet compiled in, there is nothing to build"
    )]
    fn assemble(&self, sdk: Option<&SdkConfig>) -> Result<Backends, Error> {
        #[allow(unused_variables, reason = "only the AWS kinds use the SDK configuration")]
        let aws = || sdk.ok_or_else(|| Error::invalid("backend.aws", "no AWS configuration was loaded"));
        // The router, and its own view of its members' health if it has one.
        let (router, own_probe): (Arc<dyn Router>, Option<Arc<dyn HealthProbe>>) = match &self.router {
            #[cfg(feature = "haproxy")]
            RouterConfig::Haproxy(config) => {
                let named = match &self.fleet {
                    #[cfg(feature = "hosts")]
                    FleetConfig::Hosts(hosts) => hosts.named_servers().map_err(|e| e.within("backend"))?,
                    #[allow(unreachable_patterns, reason = "HAProxy's fleet is a fixed inventory")]
                    _ => Vec::new(),
                };
                let router = config.build_naming(&self.pools, named).map_err(|e| e.within("backend"))?;
                (Arc::new(router), None)
            }
            #[cfg(feature = "rfc2136")]
            RouterConfig::Rfc2136(config) => {
                let router = config.build_describing(&self.pools, self.pooled_hosts());
                (Arc::new(router.map_err(|e| e.within("backend"))?), None)
            }
            #[cfg(feature = "route53")]
            RouterConfig::Route53(config) => {
                let router = config.build_describing(aws()?, &self.pools, self.pooled_hosts());
                (Arc::new(router.map_err(|e| e.within("backend"))?), None)
            }
            #[cfg(feature = "alb")]
            RouterConfig::Alb(config) => {
                let router = config.build(aws()?, &self.pools).map_err(|e| e.within("backend.alb"))?;
                let own: Arc<dyn HealthProbe> = Arc::new(router.health_probe());
                (Arc::new(router), Some(own))
            }
            #[allow(unreachable_patterns, reason = "with a router feature on, the arms above cover every router")]
            _ => unreachable!("no kind reads a router that is not compiled in"),
        };
        let fleet: Arc<dyn Fleet> = match &self.fleet {
            #[cfg(feature = "hosts")]
            FleetConfig::Hosts(config) => {
                let fleet = config.build().map_err(|e| e.within("backend"))?;
                config.check_hosts(self.router.member_check()).map_err(|e| e.within("backend"))?;
                Arc::new(fleet)
            }
            #[cfg(feature = "ecs")]
            FleetConfig::Ecs(config) => Arc::new(config.build(aws()?).map_err(|e| e.within("backend"))?),
            #[allow(unreachable_patterns, reason = "with a fleet feature on, the arms above cover every fleet")]
            _ => unreachable!("no kind reads a fleet that is not compiled in"),
        };
        let probe = match (&self.probe, own_probe) {
            (Some(probe), _) if probe.kind != ProbeKind::Alb => probe.build(),
            (_, Some(own)) => Ok(own),
            (Some(probe), None) => probe.build(),
            (None, None) => Err(Error::invalid("", "missing")),
        }
        .map_err(|e| e.within("backend.probe"))?;
        Ok(Backends { router, fleet, probe })
    }
}

impl RouterConfig {
    /// What this router asks of each host of a fixed inventory (`HostFleetConfig::check_hosts`).
    #[cfg(feature = "hosts")]
    fn member_check(&self) -> fn(&str, &str) -> Result<(), Error> {
        match self {
            #[cfg(feature = "rfc2136")]
            Self::Rfc2136(_) => bluegreen_dns::Rfc2136RouterConfig::check_member,
            #[cfg(feature = "alb")]
            Self::Alb(_) => bluegreen_aws::AlbRouterConfig::check_member,
            #[allow(unreachable_patterns, reason = "some routers ask nothing of their members")]
            _ => |_, _| Ok(()),
        }
    }
}

impl StateSection {
    fn read(file: &DeployFile) -> Result<Self, DeployFileError> {
        let mut parts = file.parts("state")?;
        let kind: StateKind = parts.kind_as()?.unwrap_or_default();
        let local: StateConfig = parts.take()?;
        #[cfg(feature = "dynamodb")]
        let dynamodb: bluegreen_aws::DynamoDbStateConfig = parts.take()?;
        parts.finish()?;
        if kind == StateKind::Dynamodb {
            #[cfg(feature = "dynamodb")]
            if dynamodb.check().is_err() {
                return Err(
                    file.error_at("state.kind", "invalid state: kind = \"dynamodb\" needs `table` (the state table)")
                );
            }
            #[cfg(not(feature = "dynamodb"))]
            return Err(file.error_at(
                "state.kind",
                "invalid state.kind: kind = \"dynamodb\" needs the feature(s) dynamodb of bluegreen",
            ));
        }
        Ok(Self {
            kind,
            local,
            #[cfg(feature = "dynamodb")]
            dynamodb,
        })
    }

    /// Opens the store.
    pub async fn open(&self) -> Result<Arc<dyn StateStore>, Error> {
        Ok(match self.kind {
            StateKind::Memory => Arc::new(MemoryStore::new()),
            StateKind::File => Arc::new(self.local.open_file()?),
            #[cfg(feature = "dynamodb")]
            StateKind::Dynamodb => Arc::new(self.dynamodb.open().await.map_err(|e| e.within("state"))?),
            #[cfg(not(feature = "dynamodb"))]
            StateKind::Dynamodb => return Err(Error::invalid("state.kind", "needs the feature `dynamodb`")),
        })
    }
}
