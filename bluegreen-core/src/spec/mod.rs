//! The deployment spec: what to deploy and how, as serde data, validated once.
//!
//! A [`Spec`] is compiled into a [`Plan`](crate::Plan) against an observed
//! [`Snapshot`](crate::Snapshot). [`Spec::validate`] needs no backend; everything it refuses is
//! refused before the executor makes a single backend call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::model::{PoolName, Version};

mod concurrency;
mod policy;
mod strategy;
mod validate;

pub use concurrency::{ConcurrencyPolicy, SupersedeWith};
pub use policy::{
    DrainPolicy, HealthPolicy, OldUnhealthyPolicy, RetryPolicy, RollbackPace, RollbackPolicy, ShortBakePolicy,
};
pub use strategy::{
    Approval, BatchSize, BlueGreen, Canary, Linear, OnTimeout, Preset, Rolling, RollingMode, ShiftStep, Stability,
    Strategy,
};

/// Everything a deployment needs to know, as written by an operator.
///
/// Parse with [`Spec::from_json`] (errors name the field's path), check with
/// [`Spec::validate`]. Every section but `service`, `version` and `strategy` has defaults.
///
/// ```
/// use bluegreen_core::Spec;
/// let spec = Spec::from_json(r#"{
///     "service": "checkout", "version": "v2",
///     "strategy": { "kind": "canary", "preset": "Canary10Percent5Minutes" }
/// }"#).unwrap();
/// spec.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spec {
    /// The service being deployed: names the lock, the history and events.
    pub service: String,
    /// The version to deploy.
    pub version: Version,
    /// How traffic and capacity move.
    pub strategy: Strategy,
    /// The two pools of a blue-green, canary or linear deploy (the live one is found by
    /// reading the split). A rolling deploy updates whichever of them is live; left at the
    /// default, it updates whichever one pool of the router carries all traffic.
    #[serde(default = "default_pools")]
    pub pools: Vec<PoolName>,
    /// Targets in the new pool; defaults to as many as the live pool has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    /// Zones to spread new targets over (round-robin); empty lets the fleet choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// When a target counts as healthy.
    #[serde(default)]
    pub health: HealthPolicy,
    /// How targets are drained.
    #[serde(default)]
    pub drain: DrainPolicy,
    /// How a failed deploy is undone.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// How backend calls that fail with a retryable error are repeated.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What happens when another deployment of the service holds its lock (needs a state
    /// store on the executor).
    #[serde(default)]
    pub concurrency: ConcurrencyPolicy,
    /// Shell-command hooks at named points (closures are added on the executor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<CommandHookSpec>,
    /// Analyses evaluated while a step bakes (closures are added on the executor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisSpec>,
    /// What to do with a bake shorter than the router's propagation delay (DNS routers).
    #[serde(default)]
    pub short_bakes: ShortBakePolicy,
}

pub(crate) fn default_pools() -> Vec<PoolName> {
    vec![PoolName::from("blue"), PoolName::from("green")]
}

/// A shell command run at a hook point (`sh -c`), with the deploy's facts in its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHookSpec {
    /// When it runs.
    pub point: HookPoint,
    /// The command line, run by `sh -c`.
    pub command: String,
    /// Killed and failed after this long.
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(300)
}

/// An analysis declared in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnalysisSpec {
    /// Sends HTTP GETs while a step bakes and fails the step when the success rate over the
    /// window drops below the threshold.
    HttpSuccessRate(HttpSuccessRateSpec),
}

/// Settings of [`AnalysisSpec::HttpSuccessRate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSuccessRateSpec {
    /// The URL to request (usually the service's front door).
    pub url: String,
    /// Lowest acceptable share of 2xx/3xx answers, in percent.
    pub min_success_percent: f64,
    /// The sliding window the rate is computed over.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Requests sent each time the analysis is evaluated.
    #[serde(default = "default_requests_per_check")]
    pub requests_per_check: u32,
    /// No verdict before this many requests are in the window.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Timeout of one request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl HttpSuccessRateSpec {
    /// Settings for `url` and `min_success_percent`, defaults for the rest.
    pub fn new(url: impl Into<String>, min_success_percent: f64) -> Self {
        Self {
            url: url.into(),
            min_success_percent,
            window: default_window(),
            requests_per_check: default_requests_per_check(),
            min_requests: default_min_requests(),
            timeout: default_request_timeout(),
        }
    }
}

fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_requests_per_check() -> u32 {
    5
}
fn default_min_requests() -> u32 {
    10
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Spec {
    /// A spec with defaults for everything but the three required fields.
    pub fn new(service: impl Into<String>, version: impl Into<Version>, strategy: Strategy) -> Self {
        Self {
            service: service.into(),
            version: version.into(),
            strategy,
            pools: default_pools(),
            replicas: None,
            zones: Vec::new(),
            health: HealthPolicy::default(),
            drain: DrainPolicy::default(),
            rollback: RollbackPolicy::default(),
            retry: RetryPolicy::default(),
            concurrency: ConcurrencyPolicy::default(),
            hooks: Vec::new(),
            analyses: Vec::new(),
            short_bakes: ShortBakePolicy::default(),
        }
    }

    /// Parses JSON; a syntax error, type error or unknown field gives [`Error::Invalid`] naming
    /// the field's path (`strategy.steps[1].bake`). Does not [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::invalid("spec", e.to_string()))?;
        Self::from_value(&value)
    }

    /// Reads a spec from a JSON value (what a TOML or YAML front end produces); errors name
    /// the field's path as [`from_json`](Self::from_json) does.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        from_value_with_path(value).map_err(|(path, reason)| {
            // Tagged enums (the strategy, analyses) hide the path inside them; find it again.
            let inner = locate_in_tagged(value, &path);
            let (path, reason) = inner.unwrap_or((path, reason));
            Error::invalid(if path == "." || path.is_empty() { "spec".to_owned() } else { path }, reason)
        })
    }

    /// Replaces the health policy.
    #[must_use]
    pub fn with_health(mut self, health: HealthPolicy) -> Self {
        self.health = health;
        self
    }

    /// Replaces the drain policy.
    #[must_use]
    pub fn with_drain(mut self, drain: DrainPolicy) -> Self {
        self.drain = drain;
        self
    }

    /// Replaces the rollback policy.
    #[must_use]
    pub fn with_rollback(mut self, rollback: RollbackPolicy) -> Self {
        self.rollback = rollback;
        self
    }

    /// Sets the concurrency policy.
    #[must_use]
    pub fn with_concurrency(mut self, policy: ConcurrencyPolicy) -> Self {
        self.concurrency = policy;
        self
    }

    /// Replaces the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the two pools.
    #[must_use]
    pub fn with_pools(mut self, a: impl Into<PoolName>, b: impl Into<PoolName>) -> Self {
        self.pools = vec![a.into(), b.into()];
        self
    }

    /// Sets how many targets the new pool gets.
    #[must_use]
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Sets the zones new targets are spread over.
    #[must_use]
    pub fn with_zones(mut self, zones: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a shell-command hook.
    #[must_use]
    pub fn with_command_hook(mut self, point: HookPoint, command: impl Into<String>, timeout: Duration) -> Self {
        self.hooks.push(CommandHookSpec { point, command: command.into(), timeout });
        self
    }

    /// Adds a declared analysis.
    #[must_use]
    pub fn with_analysis(mut self, analysis: AnalysisSpec) -> Self {
        self.analyses.push(analysis);
        self
    }
}

fn from_value_with_path<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> std::result::Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// Deserializes the variant a tagged object names, to find the path of an error inside it.
fn locate_in_tagged(root: &serde_json::Value, path: &str) -> Option<(String, String)> {
    let object = root.pointer(&json_pointer(path)?)?.as_object()?;
    let kind = object.get("kind")?.as_str()?;
    let mut fields = object.clone();
    fields.remove("kind");
    let fields = serde_json::Value::Object(fields);
    let found = match (path.starts_with("strategy"), kind) {
        (true, "blue_green") => from_value_with_path::<BlueGreen>(&fields).err(),
        (true, "canary") => from_value_with_path::<Canary>(&fields).err(),
        (true, "linear") => from_value_with_path::<Linear>(&fields).err(),
        (true, "rolling") => from_value_with_path::<Rolling>(&fields).err(),
        (false, "http_success_rate") => from_value_with_path::<HttpSuccessRateSpec>(&fields).err(),
        _ => None,
    }?;
    Some((format!("{path}.{}", found.0), found.1))
}

/// `strategy` → `/strategy`, `analyses[1]` → `/analyses/1`.
fn json_pointer(path: &str) -> Option<String> {
    let mut pointer = String::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, index)) => {
                pointer.push('/');
                pointer.push_str(name);
                pointer.push('/');
                pointer.push_str(index.strip_suffix(']')?);
            }
            None => {
                pointer.push('/');
                pointer.push_str(part);
            }
        }
    }
    Some(pointer)
}
