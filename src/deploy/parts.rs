//! `[backend]`'s router, fleet and probe: read from the one table, checked against the spec,
//! assembled into [`Backends`].

use std::sync::Arc;

use bluegreen_core::config::{ProbeConfig, ProbeKind};
use bluegreen_core::deploy_file::{DeployFile, DeployFileError, Parts};
use bluegreen_core::secrets::Secrets;
use bluegreen_core::{Error, Fleet, HealthProbe, PoolName, Router};

#[cfg(any(feature = "alb", feature = "ecs", feature = "route53"))]
use bluegreen_aws::{AwsSettings, SdkConfig};
/// Without an AWS backend there is no SDK configuration to pass.
#[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
type SdkConfig = ();

use super::Backends;

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

impl PartsConfig {
    /// Adds the settings' secrets (a TSIG key's) to `secrets`.
    #[cfg_attr(
        not(feature = "rfc2136"),
        allow(unused_variables, reason = "only the RFC 2136 router's settings hold a secret")
    )]
    pub(super) fn add_secrets(&self, secrets: &Secrets) {
        match &self.router {
            #[cfg(feature = "rfc2136")]
            RouterConfig::Rfc2136(config) => secrets.add(&config.tsig_secret),
            #[allow(unreachable_patterns, reason = "the other routers' settings hold no secret")]
            _ => {}
        }
    }

    /// The checks that need the spec: what a fleet can run, and the version it is given.
    pub(super) fn check_spec(&self, file: &DeployFile) -> Result<(), DeployFileError> {
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
pub(super) fn offline() -> SdkConfig {
    AwsSettings::offline()
}

#[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
pub(super) fn offline() -> SdkConfig {}

impl PartsConfig {
    /// The parts `kind` combines, from `parts` (whose features were checked).
    #[allow(unreachable_code, unused_variables, reason = "with no router or no fleet compiled in, no kind gets here")]
    pub(super) fn read(kind: &'static str, parts: &mut Parts<'_>, file: &DeployFile) -> Result<Self, DeployFileError> {
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
    pub(super) async fn sdk(&self) -> Option<SdkConfig> {
        match self.kind {
            "alb" | "ecs" | "route53" => Some(self.aws.load().await),
            _ => None,
        }
    }

    #[cfg(not(any(feature = "alb", feature = "ecs", feature = "route53")))]
    pub(super) async fn sdk(&self) -> Option<SdkConfig> {
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
    pub(super) fn assemble(&self, sdk: Option<&SdkConfig>) -> Result<Backends, Error> {
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
        Ok(Backends { router, fleet, probe, secrets: Secrets::new() })
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
