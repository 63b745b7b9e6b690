//! The AWS kinds of `[backend]` (`alb`, `ecs`, `route53`) and the `dynamodb` state store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use bluegreen_aws::{AlbRouter, AwsConfig, DynamoDbStore, EcsFleet};
use bluegreen_core::{Error, HealthProbe, PoolName};
use bluegreen_dns::{Route53RecordType, Route53Router};
use serde::Deserialize;

use crate::backend::{
    default_margin, default_ttl, default_update_timeout, rename_field, within, Backends, HostEntry, Hosts, ProbeConfig,
    ProbeKind,
};

/// `[backend.aws]` / `[state.aws]`: where the clients connect. Unset values come from the SDK's
/// default chain (`AWS_REGION`, `AWS_PROFILE`, the config files, instance or task roles).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AwsSettings {
    /// `eu-west-1`.
    #[serde(default)]
    region: Option<String>,
    /// A profile of the shared config files.
    #[serde(default)]
    profile: Option<String>,
    /// Another endpoint for every service (an emulator, a VPC endpoint).
    #[serde(default)]
    endpoint_url: Option<String>,
}

impl AwsSettings {
    pub(crate) async fn load(&self) -> SdkConfig {
        let mut config = AwsConfig::new();
        if let Some(region) = &self.region {
            config = config.region(region);
        }
        if let Some(profile) = &self.profile {
            config = config.profile(profile);
        }
        if let Some(url) = &self.endpoint_url {
            config = config.endpoint_url(url);
        }
        config.load().await
    }
}

/// A configuration that makes no call: the builders' own checks run against it while the
/// deploy file is read.
fn offline() -> SdkConfig {
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build()
}

/// `[backend.alb]`: the listener (or rule) whose forward action is the split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlbSettings {
    /// The listener whose default action is weighted, or which holds `rule_arn`.
    listener_arn: String,
    /// A listener rule to weight instead of the default action (`/reporting*`).
    #[serde(default)]
    rule_arn: Option<String>,
    /// A test listener kept forwarding to the idle pool (pre-traffic checks on another port).
    #[serde(default)]
    test_listener_arn: Option<String>,
    /// Pool name → target group ARN.
    target_groups: BTreeMap<String, String>,
    /// How often a drain reads the targets' health (default 2 s).
    #[serde(default, with = "humantime_serde")]
    drain_poll: Option<Duration>,
}

impl AlbSettings {
    fn router(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<AlbRouter, Error> {
        for pool in pools {
            if !self.target_groups.contains_key(pool.as_str()) {
                return Err(Error::invalid(
                    "backend.alb.target_groups",
                    format!("pool {pool} has no target group (name one for each of the spec's pools)"),
                ));
            }
        }
        let groups = self.target_groups.iter().map(|(pool, arn)| (pool.as_str(), arn.clone()));
        let mut router = AlbRouter::new(config, &self.listener_arn, groups).map_err(rename_field(|field| {
            if field == "pools" || field.starts_with("pools.") {
                field.replacen("pools", "backend.alb.target_groups", 1)
            } else if field.starts_with("pools[") {
                field
            } else {
                format!("backend.alb.{field}")
            }
        }))?;
        if let Some(rule) = &self.rule_arn {
            router = router.on_rule(rule).map_err(within("backend.alb"))?;
        }
        if let Some(test) = &self.test_listener_arn {
            router = router.test_listener(test).map_err(within("backend.alb"))?;
        }
        if let Some(every) = self.drain_poll {
            router = router.drain_poll_interval(every);
        }
        Ok(router)
    }
}

/// The probe of an ALB backend: the ALB's own view unless `[backend.probe]` says otherwise.
fn alb_probe(router: &AlbRouter, probe: Option<&ProbeConfig>) -> Result<Arc<dyn HealthProbe>, Error> {
    match probe {
        Some(p) if p.kind != ProbeKind::Alb => Hosts::probe_of(p),
        _ => Ok(Arc::new(router.health_probe())),
    }
}

/// `kind = "alb"`: `AlbRouter` and a fixed inventory of hosts (`ip:port` ids, or `i-…:port` in
/// instance target groups) updated by a shell command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlbBackend {
    #[serde(default)]
    aws: AwsSettings,
    alb: AlbSettings,
    updater: String,
    #[serde(default = "default_update_timeout", with = "humantime_serde")]
    update_timeout: Duration,
    hosts: Vec<HostEntry>,
    /// `[backend.probe]`; default `kind = "alb"` (the target groups' health checks).
    #[serde(default)]
    probe: Option<ProbeConfig>,
}

impl AlbBackend {
    /// The inventory, its updater and `[backend.probe]` (default: the ALB's own view).
    pub(crate) fn hosts(&self) -> Hosts<'_> {
        static ALB_PROBE: std::sync::LazyLock<ProbeConfig> = std::sync::LazyLock::new(ProbeConfig::alb);
        Hosts {
            updater: &self.updater,
            update_timeout: self.update_timeout,
            hosts: &self.hosts,
            probe: self.probe.as_ref().unwrap_or(&ALB_PROBE),
        }
    }

    pub(crate) async fn build(&self, pools: &[PoolName]) -> Result<Backends, Error> {
        self.assemble(&self.aws.load().await, pools)
    }

    pub(crate) fn check(&self, pools: &[PoolName]) -> Result<(), Error> {
        self.assemble(&offline(), pools).map(drop)
    }

    fn assemble(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<Backends, Error> {
        // The ALB knows an ip target by its address: the host's id must be that address.
        for (i, host) in self.hosts.iter().enumerate() {
            let instance = host.id.starts_with("i-");
            if !instance && host.id != host.address {
                return Err(Error::invalid(
                    format!("backend.hosts[{i}].id"),
                    format!(
                        "{:?}: an ALB ip target is named by its address, so the id must be {:?} (or an instance id i-…:port)",
                        host.id, host.address
                    ),
                ));
            }
        }
        let router = self.alb.router(config, pools)?;
        let fleet = self.hosts().fleet()?;
        let probe = alb_probe(&router, self.probe.as_ref())?;
        Ok(Backends { router: Arc::new(router), fleet: Arc::new(fleet), probe })
    }
}

/// `kind = "ecs"`: `AlbRouter` and an `EcsFleet` (task sets of a service with the `EXTERNAL`
/// deployment controller).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EcsBackend {
    #[serde(default)]
    aws: AwsSettings,
    alb: AlbSettings,
    /// The cluster (name or ARN).
    cluster: String,
    /// The service (name or ARN).
    service: String,
    /// The container whose image changes and whose port is registered.
    container: String,
    /// The image of a version: `registry/app:{version}`.
    image: String,
    /// Environment variables set on the container of every new revision.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Longest wait for new tasks to run.
    #[serde(default, with = "humantime_serde")]
    start_timeout: Option<Duration>,
    /// How often ECS is asked while waiting.
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    /// `[backend.probe]`; default `kind = "alb"`.
    #[serde(default)]
    probe: Option<ProbeConfig>,
}

impl EcsBackend {
    pub(crate) async fn build(&self, pools: &[PoolName]) -> Result<Backends, Error> {
        self.assemble(&self.aws.load().await, pools)
    }

    pub(crate) fn check(&self, pools: &[PoolName]) -> Result<(), Error> {
        self.assemble(&offline(), pools).map(drop)
    }

    fn assemble(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<Backends, Error> {
        let router = self.alb.router(config, pools)?;
        let mut builder =
            EcsFleet::builder(config, &self.cluster, &self.service).container(&self.container).image(&self.image);
        for (name, value) in &self.env {
            builder = builder.env(name, value);
        }
        if let Some(timeout) = self.start_timeout {
            builder = builder.start_timeout(timeout);
        }
        if let Some(every) = self.poll_interval {
            builder = builder.poll_interval(every);
        }
        let fleet = builder.build().map_err(within("backend"))?;
        let probe = alb_probe(&router, self.probe.as_ref())?;
        Ok(Backends { router: Arc::new(router), fleet: Arc::new(fleet), probe })
    }
}

/// `kind = "route53"`: `Route53Router` on weighted record sets and a fixed inventory of hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Route53Backend {
    #[serde(default)]
    aws: AwsSettings,
    /// The hosted zone's id (`Z0123456789ABC`).
    hosted_zone_id: String,
    /// The name the pools' weighted records share (`www.example.com.`).
    name: String,
    /// `A` (default) or `AAAA`.
    #[serde(default)]
    record_type: RecordType,
    /// The records' TTL (1 s to 1 day).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    ttl: Duration,
    /// Added to the TTL for resolvers that keep answers longer.
    #[serde(default = "default_margin", with = "humantime_serde")]
    margin: Duration,
    /// Longest wait for a change to be `INSYNC`.
    #[serde(default, with = "humantime_serde")]
    change_timeout: Option<Duration>,
    updater: String,
    #[serde(default = "default_update_timeout", with = "humantime_serde")]
    update_timeout: Duration,
    hosts: Vec<HostEntry>,
    probe: ProbeConfig,
}

/// Route53 address record types.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) enum RecordType {
    #[default]
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

impl Route53Backend {
    pub(crate) async fn build(&self, pools: &[PoolName]) -> Result<Backends, Error> {
        self.assemble(&self.aws.load().await, pools)
    }

    pub(crate) fn check(&self, pools: &[PoolName]) -> Result<(), Error> {
        self.assemble(&offline(), pools).map(drop)
    }

    fn assemble(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<Backends, Error> {
        let record_type = match self.record_type {
            RecordType::A => Route53RecordType::A,
            RecordType::Aaaa => Route53RecordType::Aaaa,
        };
        let mut builder = Route53Router::builder(config, &self.hosted_zone_id, &self.name)
            .record_type(record_type)
            .ttl(self.ttl)
            .resolver_margin(self.margin);
        for pool in pools {
            builder = builder.pool(pool.as_str());
        }
        if let Some(timeout) = self.change_timeout {
            builder = builder.change_timeout(timeout);
        }
        let router = builder.build().map_err(rename_field(|field| match field.as_str() {
            f if f.starts_with("pools") => field,
            "hosted_zone_id" | "zone" => "backend.hosted_zone_id".to_owned(),
            "record_name" => "backend.name".to_owned(),
            f => format!("backend.{f}"),
        }))?;
        self.hosts().with_router(router)
    }

    /// The inventory, its updater and `[backend.probe]`.
    pub(crate) fn hosts(&self) -> Hosts<'_> {
        Hosts { updater: &self.updater, update_timeout: self.update_timeout, hosts: &self.hosts, probe: &self.probe }
    }
}

/// Opens a DynamoDB state store on `table`.
pub(crate) async fn dynamodb_store(aws: &AwsSettings, table: &str) -> DynamoDbStore {
    DynamoDbStore::new(&aws.load().await, table)
}
