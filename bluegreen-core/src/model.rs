//! The nouns: targets, pools, versions and the traffic split.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

name_type!(
    /// A serving unit's identity, unique within one fleet (`i-0abc`, a task ARN, `web-3`).
    TargetId
);
name_type!(
    /// A pool's name: a group of targets a router weights as one (`blue`, a target group ARN).
    PoolName
);
name_type!(
    /// A software version (`v87`, an image tag, a task definition revision).
    Version
);

/// One serving unit: a task, an instance, a VM, a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Unique id within the fleet.
    pub id: TargetId,
    /// Where it listens (`10.0.1.7:8080`).
    pub address: String,
    /// Availability zone or failure domain, if the fleet knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The version it runs.
    pub version: Version,
    /// The provisioning tag it was created with (see [`ProvisionRequest::tag`](crate::ProvisionRequest)),
    /// which lets a re-run step find the targets an earlier run already created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Target {
    /// A target `id` listening at `address` and running `version`, with no zone and no
    /// provisioning tag.
    ///
    /// ```
    /// use bluegreen_core::Target;
    ///
    /// let web1 = Target::new("web-01", "10.0.1.7:8080", "v1").with_zone("eu-west-1a");
    /// assert_eq!(web1.id.as_str(), "web-01");
    /// assert_eq!(web1.zone.as_deref(), Some("eu-west-1a"));
    /// ```
    pub fn new(id: impl Into<TargetId>, address: impl Into<String>, version: impl Into<Version>) -> Self {
        Self { id: id.into(), address: address.into(), zone: None, version: version.into(), tag: None }
    }

    /// The same target in availability zone (or failure domain) `zone`.
    #[must_use]
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// The same target carrying provisioning tag `tag` (see [`ProvisionRequest::tag`](crate::ProvisionRequest)).
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// How a router treats one member of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Receives new requests.
    Serving,
    /// Receives no new requests; in-flight ones are finishing.
    Draining,
    /// Receives no requests (drained or in maintenance), still a member.
    Disabled,
}

/// A pool member as the router reports it: what it actually serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The target.
    pub id: TargetId,
    /// Its state in the router.
    pub state: MemberState,
    /// Requests or connections in flight, when the router can count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
}

/// Traffic weights over pools, in percent, summing to 100.
///
/// ```
/// use bluegreen_core::Split;
/// let split = Split::new([("blue", 90), ("green", 10)]).unwrap();
/// assert_eq!(split.weight(&"green".into()), 10);
/// assert_eq!(split.to_string(), "blue 90% / green 10%");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Split(BTreeMap<PoolName, u32>);

impl Split {
    /// A split from `(pool, percent)` pairs; refused unless the weights sum to 100.
    pub fn new<P: Into<PoolName>>(weights: impl IntoIterator<Item = (P, u32)>) -> Result<Self> {
        let split = Self(weights.into_iter().map(|(p, w)| (p.into(), w)).collect());
        split.validate("split")?;
        Ok(split)
    }

    /// The split that relative `weights` make (a load balancer's or DNS's own weights, any
    /// scale), in whole percents summing to 100 by the largest remainder; `None` if every
    /// weight is 0 (nothing is weighted). Pools at 0 are kept.
    ///
    /// ```
    /// use bluegreen_core::Split;
    /// let split = Split::from_weights([("a", 1), ("b", 1), ("c", 1)]).unwrap();
    /// assert_eq!(split.to_string(), "a 34% / b 33% / c 33%");
    /// assert!(Split::from_weights([("a", 0)]).is_none());
    /// ```
    pub fn from_weights<P: Into<PoolName>>(weights: impl IntoIterator<Item = (P, u64)>) -> Option<Self> {
        let weights: Vec<(PoolName, u64)> = weights.into_iter().map(|(p, w)| (p.into(), w)).collect();
        let total: u64 = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        // (pool, whole percent, remainder)
        let mut out: Vec<(PoolName, u64, u64)> =
            weights.into_iter().map(|(p, w)| (p, w * 100 / total, w * 100 % total)).collect();
        // The percents short of 100 go to the largest remainders (fewer than there are pools).
        let missing = 100 - out.iter().map(|(_, w, _)| w).sum::<u64>();
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|a, b| out[*b].2.cmp(&out[*a].2));
        for i in order.into_iter().take(usize::try_from(missing).unwrap_or(0)) {
            out[i].1 += 1;
        }
        Some(Self(out.into_iter().map(|(p, w, _)| (p, u32::try_from(w).unwrap_or(100))).collect()))
    }

    /// All traffic to one pool.
    pub fn all_to(pool: &PoolName) -> Self {
        Self(BTreeMap::from([(pool.clone(), 100)]))
    }

    /// `candidate` gets `percent`, `stable` the rest (pools at 0 are kept, so read-back compares).
    pub fn between(stable: &PoolName, candidate: &PoolName, percent: u32) -> Self {
        Self(BTreeMap::from([(stable.clone(), 100 - percent.min(100)), (candidate.clone(), percent.min(100))]))
    }

    /// Checks that the weights sum to 100; `field` names the spec field in the error.
    pub fn validate(&self, field: &str) -> Result<()> {
        let total: u32 = self.0.values().sum();
        if self.0.is_empty() {
            return Err(Error::invalid(field, "a split needs at least one pool"));
        }
        if total != 100 {
            return Err(Error::invalid(field, format!("weights sum to {total}, not 100")));
        }
        Ok(())
    }

    /// The weight of `pool` (0 if absent).
    pub fn weight(&self, pool: &PoolName) -> u32 {
        self.0.get(pool).copied().unwrap_or(0)
    }

    /// `(pool, weight)` pairs in pool-name order, including zero weights.
    pub fn iter(&self) -> impl Iterator<Item = (&PoolName, u32)> {
        self.0.iter().map(|(p, w)| (p, *w))
    }

    /// Pools that receive traffic (weight above 0).
    pub fn live_pools(&self) -> impl Iterator<Item = &PoolName> {
        self.0.iter().filter(|(_, w)| **w > 0).map(|(p, _)| p)
    }

    /// Whether two splits send the same traffic (pools at 0 and absent pools are equal).
    pub fn same_traffic(&self, other: &Split) -> bool {
        let pools = self.0.keys().chain(other.0.keys());
        pools.into_iter().all(|p| self.weight(p) == other.weight(p))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(p, w)| format!("{p} {w}%")).collect();
        f.write_str(&parts.join(" / "))
    }
}

/// A duration as an operator reads it: `350ms`, `2.5s`, `5m 30s`.
pub(crate) fn short(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < std::time::Duration::from_secs(60) {
        let tenths = (d.as_millis() + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_percents_summing_to_100() {
        let percents = |weights: &[u64]| {
            let named = weights.iter().enumerate().map(|(i, w)| (format!("p{i}"), *w));
            Split::from_weights(named).map(|s| s.iter().map(|(_, w)| w).collect::<Vec<_>>())
        };
        assert_eq!(percents(&[90, 10]), Some(vec![90, 10]));
        assert_eq!(percents(&[1]), Some(vec![100]));
        assert_eq!(percents(&[1, 1, 1]), Some(vec![34, 33, 33]));
        assert_eq!(percents(&[999, 0]), Some(vec![100, 0]));
        assert_eq!(percents(&[255, 1]), Some(vec![100, 0]));
        assert_eq!(percents(&[1, 2]), Some(vec![33, 67]));
        assert_eq!(percents(&[0, 0]), None);
    }
}
