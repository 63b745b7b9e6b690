//! The `[backend]` and `[state]` tables of a deploy file, and what they build.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{
    Error, FileStore, Fleet, HealthProbe, HttpProbe, MemoryStore, PoolName, Router, StateStore, Target, TcpProbe,
};
use bluegreen_dns::{Rfc2136Router, TsigAlgorithm, TsigKey};
use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter, HostFleet, Updater};
use serde::Deserialize;

use crate::aws::{AlbBackend, AwsSettings, EcsBackend, Route53Backend};
use crate::exit::CliError;

/// Which router, fleet and probe a deploy drives (`[backend]`, chosen by its `kind`).
#[derive(Debug, Clone)]
pub(crate) enum BackendConfig {
    /// `kind = "sim"`.
    Sim(SimBackend),
    /// `kind = "haproxy"`: a running HAProxy and a fixed inventory of hosts.
    Haproxy(HaproxyBackend, Vec<PoolName>),
    /// `kind = "rfc2136"`: a DNS name updated by RFC 2136 and a fixed inventory of hosts.
    Rfc2136(Rfc2136Backend, Vec<PoolName>),
    /// `kind = "alb"`: an Application Load Balancer and a fixed inventory of hosts.
    Alb(Box<AlbBackend>, Vec<PoolName>),
    /// `kind = "ecs"`: an Application Load Balancer and an ECS service's task sets.
    Ecs(Box<EcsBackend>, Vec<PoolName>),
    /// `kind = "route53"`: Route53 weighted record sets and a fixed inventory of hosts.
    Route53(Box<Route53Backend>, Vec<PoolName>),
}

/// The backend kinds, as `kind` names them.
pub(crate) const KINDS: &[&str] = &["sim", "haproxy", "rfc2136", "alb", "ecs", "route53"];

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

/// `kind = "haproxy"`: `HaproxyRouter` over one HAProxy backend whose servers are named
/// `<pool><separator><host id>`, and a `HostFleet` updated by a shell command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HaproxyBackend {
    /// The runtime API's unix socket (`stats socket … level admin`).
    #[serde(default)]
    socket: Option<PathBuf>,
    /// The runtime API on TCP (`stats socket ipv4@127.0.0.1:9999 level admin`), instead of `socket`.
    #[serde(default)]
    address: Option<SocketAddr>,
    /// The HAProxy backend holding every pool's servers.
    haproxy_backend: String,
    /// Between pool and host id in server names (`.`, `-`, `_` or `:`).
    #[serde(default = "default_separator")]
    separator: char,
    /// Keywords for servers the router creates (`check inter 2s fall 3 rise 2`).
    #[serde(default)]
    server_options: String,
    /// Longest wait for one runtime-API command.
    #[serde(default, with = "humantime_serde")]
    command_timeout: Option<Duration>,
    /// The shell command that updates one host (`ssh {host} 'deploy.sh {version}'`).
    updater: String,
    /// How long one update may take.
    #[serde(default = "default_update_timeout", with = "humantime_serde")]
    update_timeout: Duration,
    /// `[[backend.hosts]]`: the inventory.
    hosts: Vec<HostEntry>,
    /// `[backend.probe]`.
    probe: ProbeConfig,
}

fn default_separator() -> char {
    '.'
}

/// `kind = "rfc2136"`: `Rfc2136Router` over one DNS name, and a `HostFleet`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rfc2136Backend {
    /// The primary that accepts updates (`ip:port`, DNS over TCP).
    server: SocketAddr,
    /// The zone (`example.test.`).
    zone: String,
    /// The name whose A records are the split (`www.example.test.`).
    name: String,
    /// The TTL of the records written.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    ttl: Duration,
    /// Added to the TTL for resolvers that hold answers longer.
    #[serde(default = "default_margin", with = "humantime_serde")]
    margin: Duration,
    /// The weight step of splits, in percent (must divide 100).
    #[serde(default = "default_granularity")]
    granularity: u32,
    /// The TSIG key's name, as the server knows it.
    tsig_key: String,
    /// The TSIG key's base64 secret (use `${env.NAME}`).
    tsig_secret: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    tsig_algorithm: Algorithm,
    /// Longest wait for one DNS exchange.
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    /// Authoritative servers to wait for after each write: label → `ip:port`.
    #[serde(default)]
    authoritatives: BTreeMap<String, SocketAddr>,
    /// How long to wait for them.
    #[serde(default = "default_sync_timeout", with = "humantime_serde")]
    sync_timeout: Duration,
    /// The shell command that updates one host (`ssh {host} 'deploy.sh {version}'`).
    updater: String,
    /// How long one update may take.
    #[serde(default = "default_update_timeout", with = "humantime_serde")]
    update_timeout: Duration,
    /// `[[backend.hosts]]`: the inventory.
    hosts: Vec<HostEntry>,
    /// `[backend.probe]`.
    probe: ProbeConfig,
}

pub(crate) fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

pub(crate) fn default_margin() -> Duration {
    Duration::from_secs(5)
}

fn default_granularity() -> u32 {
    50
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(60)
}

/// TSIG algorithms by their usual names.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) enum Algorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// The host inventory, its updater and the probe (shared by the kinds with fixed hosts).
pub(crate) struct Hosts<'a> {
    pub(crate) updater: &'a str,
    pub(crate) update_timeout: Duration,
    pub(crate) hosts: &'a [HostEntry],
    pub(crate) probe: &'a ProbeConfig,
}

/// The `Hosts` of a backend struct that has the four fields.
macro_rules! hosts_of {
    ($b:expr) => {
        Hosts { updater: &$b.updater, update_timeout: $b.update_timeout, hosts: &$b.hosts, probe: &$b.probe }
    };
}

pub(crate) fn default_update_timeout() -> Duration {
    Duration::from_secs(600)
}

/// One host of the inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostEntry {
    pub(crate) id: String,
    pub(crate) address: String,
    #[serde(default)]
    zone: Option<String>,
    /// The version it runs now.
    version: String,
}

/// `[backend.probe]`: how the health gate checks a host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProbeConfig {
    /// `http` (default), `tcp`, or `alb` (the load balancer's own health checks).
    #[serde(default)]
    pub(crate) kind: ProbeKind,
    /// HTTP: the path asked on each host (`/healthz`).
    #[serde(default)]
    path: Option<String>,
    /// HTTP: a healthy status, or `[low, high]`; default 200–399.
    #[serde(default)]
    expect_status: Option<StatusRange>,
    /// One check's timeout (default 2 s).
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

/// The probe kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProbeKind {
    #[default]
    Http,
    Tcp,
    /// The ALB's target health (kinds `alb` and `ecs` only).
    Alb,
}

impl ProbeConfig {
    /// `kind = "alb"`, nothing else.
    pub(crate) fn alb() -> Self {
        Self { kind: ProbeKind::Alb, path: None, expect_status: None, timeout: None }
    }
}

/// `200` or `[200, 299]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged, expecting = "an HTTP status or [low, high]")]
pub(crate) enum StatusRange {
    One(u16),
    Range([u16; 2]),
}

/// Placeholders a command updater replaces (see `bluegreen_vm::Updater`).
const PLACEHOLDERS: &[&str] = &["id", "host", "address", "version", "from_version"];

/// Renames the field of an `Error::Invalid` from a builder to where it is in the file;
/// other errors pass unchanged.
pub(crate) fn rename_field(rename: impl Fn(String) -> String) -> impl Fn(Error) -> Error {
    move |error| match error {
        Error::Invalid { field, reason } => Error::Invalid { field: rename(field), reason },
        other => other,
    }
}

/// Prefixes the field of an `Error::Invalid` from a builder with where it is in the file.
pub(crate) fn within(prefix: &'static str) -> impl Fn(Error) -> Error {
    rename_field(move |field| if field.starts_with("pools[") { field } else { format!("{prefix}.{field}") })
}

impl Hosts<'_> {
    pub(crate) fn fleet(&self) -> Result<HostFleet, Error> {
        check_template(self.updater)?;
        if self.update_timeout.is_zero() {
            return Err(Error::invalid("backend.update_timeout", "must be longer than 0s"));
        }
        let updater = Updater::command(self.updater).with_timeout(self.update_timeout);
        let mut targets = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            check_address(&host.address)
                .map_err(|reason| Error::invalid(format!("backend.hosts[{i}].address"), reason))?;
            let target = Target {
                id: host.id.as_str().into(),
                address: host.address.clone(),
                zone: host.zone.clone(),
                version: host.version.as_str().into(),
                tag: None,
            };
            // Refuses ids and addresses that could not go into the command, before anything runs.
            updater.render(&target, &target.version).map_err(|e| match e {
                Error::Invalid { field, reason } => {
                    let key = match field.as_str() {
                        "updater.{id}" => "id",
                        "updater.{version}" | "updater.{from_version}" => "version",
                        _ => "address",
                    };
                    Error::invalid(format!("backend.hosts[{i}].{key}"), reason)
                }
                other => other,
            })?;
            targets.push(target);
        }
        HostFleet::new(targets, updater).map_err(within("backend"))
    }

    pub(crate) fn probe(&self) -> Result<Arc<dyn HealthProbe>, Error> {
        Self::probe_of(self.probe)
    }

    /// Refuses a version the updater command could not take (`Error::Invalid` on `version`),
    /// so a deploy to it fails while the file is read, not after the first host was drained.
    pub(crate) fn check_version(&self, version: &bluegreen_core::Version) -> Result<(), Error> {
        let Some(host) = self.hosts.first() else { return Ok(()) };
        let target = Target {
            id: host.id.as_str().into(),
            address: host.address.clone(),
            zone: None,
            version: host.version.as_str().into(),
            tag: None,
        };
        Updater::command(self.updater).render(&target, version).map(drop).map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::invalid("version", reason),
            other => other,
        })
    }

    /// `router` with this inventory's fleet and probe.
    pub(crate) fn with_router(&self, router: impl Router + 'static) -> Result<Backends, Error> {
        let fleet = self.fleet()?;
        let probe = self.probe()?;
        Ok(Backends { router: Arc::new(router), fleet: Arc::new(fleet), probe })
    }

    /// The probe `[backend.probe]` describes (`http` or `tcp`).
    pub(crate) fn probe_of(p: &ProbeConfig) -> Result<Arc<dyn HealthProbe>, Error> {
        match p.kind {
            ProbeKind::Alb => Err(Error::invalid(
                "backend.probe.kind",
                "an alb probe asks the load balancer: only kind = \"alb\" or \"ecs\" have one",
            )),
            ProbeKind::Tcp => {
                if p.path.is_some() || p.expect_status.is_some() {
                    let field = if p.path.is_some() { "backend.probe.path" } else { "backend.probe.expect_status" };
                    return Err(Error::invalid(field, "only an http probe takes a path and statuses"));
                }
                let timeout = p.timeout.unwrap_or(Duration::from_secs(2));
                if timeout.is_zero() {
                    return Err(Error::invalid("backend.probe.timeout", "must be longer than 0s"));
                }
                Ok(Arc::new(TcpProbe::new(timeout)))
            }
            ProbeKind::Http => {
                let path = p.path.as_deref().ok_or_else(|| {
                    Error::invalid("backend.probe", "missing `path` (an http probe asks it on each host)")
                })?;
                let mut builder = HttpProbe::builder(path);
                match p.expect_status {
                    Some(StatusRange::One(status)) => builder = builder.expect_status(status..=status),
                    Some(StatusRange::Range([low, high])) => builder = builder.expect_status(low..=high),
                    None => {}
                }
                if let Some(timeout) = p.timeout {
                    builder = builder.timeout(timeout);
                }
                Ok(Arc::new(builder.build().map_err(within("backend.probe"))?))
            }
        }
    }
}

/// Checks a host address is `host:port` (IPv6 as `[addr]:port`) with a port of 1–65535: the
/// probes and the router need the port.
fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} has no port: write host:port (10.0.1.1:8080)"));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(format!("{address:?} is not host:port (an IPv6 address is written [fd00::1]:8080)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{address:?}: the port {port:?} is not a number from 1 to 65535")),
    }
}

/// Refuses `{name}` placeholders the updater does not know (a typo would reach the shell).
fn check_template(template: &str) -> Result<(), Error> {
    if template.trim().is_empty() {
        return Err(Error::invalid("backend.updater", "must not be empty"));
    }
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let preceded_by_dollar = offset + open > 0 && template.as_bytes()[offset + open - 1] == b'$';
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            let looks_like_one =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if looks_like_one && !preceded_by_dollar && !PLACEHOLDERS.contains(&name) {
                return Err(Error::invalid(
                    "backend.updater",
                    format!("unknown placeholder {{{name}}}: use {}", placeholder_list()),
                ));
            }
        }
        offset += open + 1;
        rest = after;
    }
    Ok(())
}

fn placeholder_list() -> String {
    PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
}

impl HaproxyBackend {
    fn build(&self, pools: &[PoolName]) -> Result<Backends, Error> {
        let endpoint = match (&self.socket, self.address) {
            (Some(path), None) => HaproxyEndpoint::unix(path.clone()),
            (None, Some(address)) => HaproxyEndpoint::tcp(address),
            (Some(_), Some(_)) => {
                return Err(Error::invalid("backend.address", "give either `socket` or `address`, not both"));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "backend",
                    "missing `socket` (the runtime API's unix socket) or `address` (its TCP address)",
                ));
            }
        };
        let mut builder = HaproxyRouter::builder(endpoint, self.haproxy_backend.as_str())
            .pools(pools.iter().cloned())
            .separator(self.separator)
            .server_options(self.server_options.as_str());
        if let Some(timeout) = self.command_timeout {
            builder = builder.command_timeout(timeout);
        }
        let router = builder.build().map_err(rename_field(|field| match field.as_str() {
            "backend" => "backend.haproxy_backend".to_owned(),
            f if f.starts_with("pools[") => field,
            f => format!("backend.{f}"),
        }))?;
        hosts_of!(self).with_router(router)
    }
}

impl Rfc2136Backend {
    fn build(&self, pools: &[PoolName]) -> Result<Backends, Error> {
        // DNS carries addresses only: each host needs an IPv4 one (its A record).
        for (i, host) in self.hosts.iter().enumerate() {
            let address = host.address.as_str();
            check_address(address).map_err(|reason| Error::invalid(format!("backend.hosts[{i}].address"), reason))?;
            if address.parse::<std::net::SocketAddrV4>().is_err() {
                return Err(Error::invalid(
                    format!("backend.hosts[{i}].address"),
                    format!(
                        "{address:?} is not an IPv4 address and port (10.0.0.7:8080): the address becomes an A record"
                    ),
                ));
            }
        }
        let algorithm = match self.tsig_algorithm {
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        };
        let key = TsigKey::new(&self.tsig_key, algorithm, &self.tsig_secret).map_err(rename_field(|field| {
            if field == "tsig.secret" { "backend.tsig_secret" } else { "backend.tsig_key" }.to_owned()
        }))?;
        let mut builder = Rfc2136Router::builder(self.server, &self.zone, &self.name)
            .tsig(key)
            .ttl(self.ttl)
            .resolver_margin(self.margin)
            .weight_granularity(self.granularity);
        for pool in pools {
            builder = builder.pool(pool.as_str());
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if !self.authoritatives.is_empty() {
            builder = builder.authoritatives(
                self.authoritatives.iter().map(|(label, address)| (label.clone(), *address)),
                self.sync_timeout,
            );
        }
        let router = builder.build().map_err(rename_field(|field| match field.as_str() {
            "weight_granularity" => "backend.granularity".to_owned(),
            "tsig" | "tsig.name" => "backend.tsig_key".to_owned(),
            "tsig.algorithm" => "backend.tsig_algorithm".to_owned(),
            f if f.starts_with("pools") => field,
            f => format!("backend.{f}"),
        }))?;
        hosts_of!(self).with_router(router)
    }
}

/// Where deployments are recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateConfig {
    /// `file` (default), `memory` (this process only) or `dynamodb`.
    #[serde(default = "default_state_kind")]
    pub(crate) kind: StateKind,
    /// The DynamoDB store's table (`pk` and `sk` string keys; see docs/aws.md).
    #[serde(default)]
    pub(crate) table: Option<String>,
    /// `[state.aws]`: where the DynamoDB client connects.
    #[serde(default)]
    pub(crate) aws: AwsSettings,
    /// The file store's directory.
    #[serde(default = "default_state_path")]
    pub(crate) path: PathBuf,
    /// Who this deployer is (a CI job id, say); defaults to `bluegreen-HOST-PID`.
    #[serde(default)]
    pub(crate) owner: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            kind: default_state_kind(),
            table: None,
            aws: AwsSettings::default(),
            path: default_state_path(),
            owner: None,
        }
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
    /// A DynamoDB table, for deploys run from many machines.
    Dynamodb,
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
    pub(crate) async fn build(&self) -> Result<Backends, CliError> {
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
                let sim = builder.try_build()?;
                for (version, behaviour) in versions {
                    sim.set_behaviour(version.as_str(), behaviour_of(version, behaviour)?);
                }
                Ok(Backends { router: sim.router(), fleet: sim.fleet(), probe: sim.probe() })
            }
            Self::Haproxy(haproxy, pools) => Ok(haproxy.build(pools)?),
            Self::Rfc2136(dns, pools) => Ok(dns.build(pools)?),
            Self::Alb(alb, pools) => Ok(alb.build(pools).await?),
            Self::Ecs(ecs, pools) => Ok(ecs.build(pools).await?),
            Self::Route53(route53, pools) => Ok(route53.build(pools).await?),
        }
    }

    /// The kind's name when it drives a fixed inventory of hosts (which can only be updated in
    /// place), `None` for kinds that start targets (the simulator, ECS).
    pub(crate) fn fixed_inventory(&self) -> Option<&'static str> {
        match self {
            Self::Sim(_) | Self::Ecs(..) => None,
            Self::Haproxy(..) => Some("haproxy"),
            Self::Rfc2136(..) => Some("rfc2136"),
            Self::Alb(..) => Some("alb"),
            Self::Route53(..) => Some("route53"),
        }
    }

    /// The host inventory and its updater, for the kinds that have one.
    pub(crate) fn hosts(&self) -> Option<Hosts<'_>> {
        match self {
            Self::Sim(_) | Self::Ecs(..) => None,
            Self::Haproxy(b, _) => Some(hosts_of!(b)),
            Self::Rfc2136(b, _) => Some(hosts_of!(b)),
            Self::Alb(b, _) => Some(b.hosts()),
            Self::Route53(b, _) => Some(b.hosts()),
        }
    }

    /// Refuses settings the backends' builders refuse, while the deploy file is read: every
    /// kind but the simulator is built (no connection is made, nothing is sent) and
    /// dropped; `Error::Invalid` names the field as a path in the file (`backend.separator`).
    /// The simulator's settings are checked when it is opened.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self {
            Self::Sim(_) => Ok(()),
            Self::Haproxy(haproxy, pools) => haproxy.build(pools).map(drop),
            Self::Rfc2136(dns, pools) => dns.build(pools).map(drop),
            Self::Alb(alb, pools) => alb.check(pools),
            Self::Ecs(ecs, pools) => ecs.check(pools),
            Self::Route53(route53, pools) => route53.check(pools),
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
    pub(crate) async fn open(&self) -> Result<Arc<dyn StateStore>, CliError> {
        Ok(match self.kind {
            StateKind::Memory => Arc::new(MemoryStore::new()),
            StateKind::File => Arc::new(FileStore::open(&self.path)?),
            StateKind::Dynamodb => {
                let table = self.table.as_deref().ok_or_else(|| {
                    CliError::bad_input("state: kind = \"dynamodb\" needs `table` (the state table's name)")
                })?;
                Arc::new(crate::aws::dynamodb_store(&self.aws, table).await)
            }
        })
    }

    /// The owner name this process uses: the flag, the file's `state.owner`, else
    /// `bluegreen-<host>-<pid>` (see [`crate::owner`]).
    pub(crate) fn owner(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned).or_else(|| self.owner.clone()).unwrap_or_else(crate::owner::this_process)
    }
}
