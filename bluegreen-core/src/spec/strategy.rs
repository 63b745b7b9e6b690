//! Strategies: how traffic and capacity move from the old version to the new.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a deploy moves traffic and capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Start the new version in the idle pool, test it, switch all traffic at once.
    BlueGreen(BlueGreen),
    /// Shift traffic to the new pool in explicit steps (or a preset), baking after each.
    Canary(Canary),
    /// Shift the same share every interval until all traffic has moved.
    Linear(Linear),
    /// Replace or update the live pool's targets batch by batch.
    Rolling(Rolling),
}

impl Strategy {
    /// The strategy's name as used in specs and events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BlueGreen(_) => "blue_green",
            Self::Canary(_) => "canary",
            Self::Linear(_) => "linear",
            Self::Rolling(_) => "rolling",
        }
    }
}

/// Blue-green settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlueGreen {
    /// Before the switch, run the analyses against the new targets directly for this long
    /// (then the `after_test_traffic` hooks run). Zero skips the test phase.
    #[serde(with = "humantime_serde")]
    pub test_for: Duration,
    /// After the switch, watch the new pool this long before the old one is touched.
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    /// Keep the old pool attached but idle this long after the bake, so a rollback is one
    /// split change; then drain and retire it (a fleet that provisions) or drain it, keeping its
    /// hosts on the old version (a standing environment of a fixed inventory). Unset: a fleet
    /// that provisions retires the old pool at once; a standing environment keeps it warm
    /// until the next deploy, so `bluegreen rollback` is a traffic switch.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub keep_old_for: Option<Duration>,
    /// Wait for a human before the switch (after the test phase and its hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<Approval>,
}

/// A wait for a human: `bluegreen resume` approves (so does `promote`, which also skips what is
/// left to bake); when `timeout` passes first, `on_timeout` decides. While it waits the
/// deployment is paused (`status`, `wait --until paused`, a `paused` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// How long to wait.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// What happens when nobody approved in time: roll back (the default) or go on.
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

/// What an [`Approval`] that timed out does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Fail the deploy: it rolls back.
    #[default]
    RollBack,
    /// Go on as if approved (a warning says it was not).
    Proceed,
}

impl fmt::Display for OnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RollBack => "roll back",
            Self::Proceed => "go on",
        })
    }
}

/// One traffic step of a canary: send `percent` to the new pool, then bake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftStep {
    /// Share of traffic on the new pool after this step, 1–100.
    pub percent: u32,
    /// How long to watch before the next step.
    #[serde(default, with = "humantime_serde")]
    pub bake: Duration,
}

/// Canary settings: explicit steps or a preset. The last step need not be 100: the executor
/// moves the rest after the last bake.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Canary {
    /// Explicit steps, increasing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ShiftStep>,
    /// A named preset instead of steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Watch this long after all traffic has moved.
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    /// Wait for a human before all traffic moves (after the last partial step's bake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve: Option<Approval>,
}

/// Linear settings: `percent` more every `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// Share moved per step, 1–100.
    pub percent: u32,
    /// Time between steps (each step bakes this long).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// Named traffic-shifting presets, matching AWS CodeDeploy's predefined ECS deployment
/// configurations and ECS's native blue/green defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Preset {
    /// `CodeDeployDefault.ECSAllAtOnce`: all traffic at once.
    AllAtOnce,
    /// `CodeDeployDefault.ECSCanary10Percent5Minutes`.
    Canary10Percent5Minutes,
    /// `CodeDeployDefault.ECSCanary10Percent15Minutes`.
    Canary10Percent15Minutes,
    /// `CodeDeployDefault.LambdaCanary10Percent30Minutes`.
    Canary10Percent30Minutes,
    /// `CodeDeployDefault.ECSLinear10PercentEvery1Minutes`.
    #[serde(alias = "Linear10PercentEvery1Minutes")]
    Linear10PercentEvery1Minute,
    /// `CodeDeployDefault.ECSLinear10PercentEvery3Minutes`.
    Linear10PercentEvery3Minutes,
    /// ECS native blue/green, linear: 10% every 6 minutes.
    EcsLinear10PercentEvery6Minutes,
    /// ECS native blue/green, canary: 5% for 10 minutes, then the rest.
    EcsCanary5Percent10Minutes,
}

impl Preset {
    /// The traffic steps this preset stands for.
    pub fn steps(self) -> Vec<ShiftStep> {
        let min = |m: u64| Duration::from_secs(m * 60);
        let canary =
            |percent, bake| vec![ShiftStep { percent, bake }, ShiftStep { percent: 100, bake: Duration::ZERO }];
        let linear = |percent: u32, every| {
            (1..=100 / percent)
                .map(|i| ShiftStep {
                    percent: i * percent,
                    bake: if i * percent < 100 { every } else { Duration::ZERO },
                })
                .collect()
        };
        match self {
            Self::AllAtOnce => vec![ShiftStep { percent: 100, bake: Duration::ZERO }],
            Self::Canary10Percent5Minutes => canary(10, min(5)),
            Self::Canary10Percent15Minutes => canary(10, min(15)),
            Self::Canary10Percent30Minutes => canary(10, min(30)),
            Self::Linear10PercentEvery1Minute => linear(10, min(1)),
            Self::Linear10PercentEvery3Minutes => linear(10, min(3)),
            Self::EcsLinear10PercentEvery6Minutes => linear(10, min(6)),
            Self::EcsCanary5Percent10Minutes => canary(5, min(10)),
        }
    }
}

/// Rolling settings. The seed's "10 servers, 2 at a time" is `batch = 2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    /// Targets per batch: a count (`2`) or a share of the pool (`"20%"`, rounded up).
    pub batch: BatchSize,
    /// `in_place`: drain, update, re-enable each target. `replace`: start new targets,
    /// then drain and retire old ones.
    #[serde(default)]
    pub mode: RollingMode,
    /// Replace mode: new targets started before old ones stop, per batch (defaults to the batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<BatchSize>,
    /// Targets out of service at once (in-place: defaults to the batch; replace: to 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<BatchSize>,
    /// Healthy serving targets never drop below this share of the pool's size (defaults to
    /// what the batch size leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_percent: Option<u32>,
    /// Interleave zones so a batch takes targets from every zone in turn.
    #[serde(default = "yes")]
    pub zone_balanced: bool,
    /// Watch the updated targets this long between batches.
    #[serde(default, with = "humantime_serde")]
    pub bake_between_batches: Duration,
    /// In place: whether a target's health gate beyond its first pass is watched while the
    /// next batch proceeds (`watched`, the default) or waited out before it starts
    /// (`blocking`).
    #[serde(default, skip_serializing_if = "Stability::is_default")]
    pub stability: Stability,
}

/// When the rest of an updated target's `health.min_healthy_time` is checked (rolling in
/// place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    /// A target serves again at its first passing probe; the rest of its gate
    /// (`healthy_threshold` passes in a row spanning `min_healthy_time`, by `deadline`) is
    /// watched — probed every interval — while the next batches proceed, as Kubernetes'
    /// readiness and Nomad's `min_healthy_time` split the two. A target failing
    /// `unhealthy_threshold` probes in a row within its window, or not stable by its deadline,
    /// fails the deploy, which rolls back; the capacity floor counts a watched target only while
    /// its probes pass. Before any step that is not a batch (hooks after the switch, the end),
    /// every window must have passed.
    #[default]
    Watched,
    /// A target serves again only after its whole gate (`healthy_threshold` passes spanning
    /// `min_healthy_time`): each batch waits it out before the next begins.
    Blocking,
}

impl Stability {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn yes() -> bool {
    true
}

impl Rolling {
    /// Rolling in place in batches of `count` targets, with defaults for the rest.
    pub fn in_place(count: usize) -> Self {
        Self {
            batch: BatchSize::Count(count),
            mode: RollingMode::InPlace,
            max_surge: None,
            max_unavailable: None,
            min_healthy_percent: None,
            zone_balanced: true,
            bake_between_batches: Duration::ZERO,
            stability: Stability::Watched,
        }
    }
}

/// How a rolling deploy changes a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollingMode {
    /// Drain, update in place, health-check, re-enable.
    #[default]
    InPlace,
    /// Start new targets, attach them, drain and retire old ones.
    Replace,
}

/// A number of targets, absolute or as a share of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// That many targets.
    Count(usize),
    /// That share of the pool, rounded up.
    Percent(u32),
}

impl BatchSize {
    /// The count for a pool of `total` targets.
    pub fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n as u64),
            Self::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Count(u64),
            Text(String),
        }
        let bad = || serde::de::Error::custom("expected a count (2) or a percentage (\"20%\")");
        match Repr::deserialize(d).map_err(|_| bad())? {
            Repr::Count(n) => Ok(Self::Count(n as usize)),
            Repr::Text(t) => {
                let t = t.trim();
                match t.strip_suffix('%') {
                    Some(p) => p.trim().parse().map(Self::Percent).map_err(|_| bad()),
                    None => t.parse().map(Self::Count).map_err(|_| bad()),
                }
            }
        }
    }
}
