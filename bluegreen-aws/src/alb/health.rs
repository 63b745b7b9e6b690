//! [`AlbTargetHealth`]: the ALB's own health checks as a [`HealthProbe`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_core::{Health, HealthProbe, Target};
use tokio::time::Instant;

use super::target::target_name;
use crate::error::AwsError;

/// One target's state in one target group, with the ALB's reason.
#[derive(Debug, Clone)]
struct Seen {
    state: TargetHealthStateEnum,
    reason: Option<String>,
}

/// The answer of one `DescribeTargetHealth` of one target group, and when it was asked.
#[derive(Debug, Clone)]
struct Reading {
    asked_at: Instant,
    targets: Arc<Result<BTreeMap<String, Seen>, String>>,
}

/// Asks the Application Load Balancer whether a target passes its health checks.
///
/// A target is healthy when the ALB reports it `healthy` in one of the probe's target groups;
/// any other state is unhealthy with the ALB's reason and description
/// (`target group …/green/…: unhealthy (Target.ResponseCodeMismatch: Health checks failed with
/// these codes: [502])`), which the executor puts in its health events. A target registered in
/// none of them is unhealthy ("not registered").
///
/// This is the check that matters for traffic: the ALB sends requests only to targets it finds
/// healthy, whatever another probe says. It reacts at the speed of the target group's health
/// check (interval × healthy threshold, 5 × 30 s by default), so give the health gate a
/// deadline longer than that.
///
/// Calls are shared: checks of many targets that start together are answered by one
/// `DescribeTargetHealth` per target group (never one sent before the check began), so a
/// health gate over 50 targets makes one call per group per round, not 50.
///
/// Targets are named as [`AlbRouter`](crate::AlbRouter) names them: `ip:port` for `ip` target
/// groups, `i-…:port` for `instance` target groups.
///
/// IAM action: `elasticloadbalancing:DescribeTargetHealth`.
#[derive(Debug, Clone)]
pub struct AlbTargetHealth {
    client: Client,
    target_groups: Arc<Vec<String>>,
    readings: Arc<Vec<tokio::sync::Mutex<Option<Reading>>>>,
    /// Where each target was last seen (an index into `target_groups`), to ask that group first.
    last_seen: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl AlbTargetHealth {
    /// A probe over these target groups (the router's pools: see
    /// [`AlbRouter::health_probe`](crate::AlbRouter::health_probe)).
    pub fn new(config: &SdkConfig, target_groups: impl IntoIterator<Item = String>) -> Self {
        Self::from_client(Client::new(config), target_groups)
    }

    /// Like [`new`](Self::new), through an existing client.
    pub fn from_client(client: Client, target_groups: impl IntoIterator<Item = String>) -> Self {
        let target_groups: Vec<String> = target_groups.into_iter().collect();
        let readings = target_groups.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        Self { client, target_groups: Arc::new(target_groups), readings: Arc::new(readings), last_seen: Arc::default() }
    }

    /// The targets of group `index` as the ALB sees them, asked no earlier than `since`.
    async fn read(&self, index: usize, since: Instant) -> Arc<Result<BTreeMap<String, Seen>, String>> {
        let mut reading = self.readings[index].lock().await;
        if let Some(fresh) = reading.as_ref().filter(|r| r.asked_at >= since) {
            return fresh.targets.clone();
        }
        let asked_at = Instant::now();
        let arn = &self.target_groups[index];
        let answer = self.client.describe_target_health().target_group_arn(arn).send().await;
        let targets = match answer {
            Ok(out) => Ok(out
                .target_health_descriptions
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| {
                    let target = d.target()?;
                    let id = target_name(target.id().unwrap_or_default(), target.port().unwrap_or_default());
                    let health = d.target_health();
                    let state = health.and_then(|h| h.state()).cloned().unwrap_or(TargetHealthStateEnum::Initial);
                    let reason = health.and_then(|h| {
                        let code = h.reason().map(|r| r.as_str().to_owned());
                        match (code, h.description()) {
                            (Some(code), Some(text)) => Some(format!("{code}: {text}")),
                            (code, text) => code.or_else(|| text.map(str::to_owned)),
                        }
                    });
                    Some((id, Seen { state, reason }))
                })
                .collect()),
            Err(e) => {
                Err(AwsError::from_sdk("elasticloadbalancing:DescribeTargetHealth", &format!("target group {arn}"), e)
                    .to_string())
            }
        };
        let targets = Arc::new(targets);
        *reading = Some(Reading { asked_at, targets: targets.clone() });
        targets
    }
}

#[async_trait]
impl HealthProbe for AlbTargetHealth {
    async fn check(&self, target: &Target) -> Health {
        let since = Instant::now();
        let id = target.id.as_str();
        // The group it was last seen in first: one call in the usual case.
        let first = self.last_seen.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied();
        let order = first.into_iter().chain((0..self.target_groups.len()).filter(|i| Some(*i) != first));
        let mut seen_elsewhere = None;
        let mut failures = Vec::new();
        for index in order {
            match &*self.read(index, since).await {
                Err(e) => failures.push(e.clone()),
                Ok(targets) => {
                    let Some(seen) = targets.get(id) else { continue };
                    self.last_seen.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), index);
                    if seen.state == TargetHealthStateEnum::Healthy {
                        return Health::Healthy;
                    }
                    seen_elsewhere.get_or_insert_with(|| {
                        let reason = seen.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                        format!("target group {}: {}{reason}", self.target_groups[index], seen.state.as_str())
                    });
                }
            }
        }
        match (seen_elsewhere, failures.is_empty()) {
            (Some(reason), _) => Health::unhealthy(reason),
            (None, true) => Health::unhealthy(format!("{id} is not registered in any target group of the probe")),
            (None, false) => Health::unhealthy(format!("cannot read the ALB's view: {}", failures.join("; "))),
        }
    }
}
