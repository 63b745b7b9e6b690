//! The dry run: every step with its expected duration and the capacity it leaves.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Plan, Step, TargetSet};
use crate::model::{PoolName, Split};
use crate::spec::{Stability, Strategy};

/// One row of a [`Timeline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRow {
    /// Step index, from 1.
    pub index: usize,
    /// The step, described.
    pub step: String,
    /// How long it takes when everything is healthy at the first try.
    #[serde(with = "humantime_serde")]
    pub expected: Duration,
    /// The longest it may take before it fails (deadlines and timeouts), `None` for a manual pause.
    #[serde(with = "humantime_serde")]
    pub at_most: Option<Duration>,
    /// Time from the start when the step is expected to end.
    #[serde(with = "humantime_serde")]
    pub ends_at: Duration,
    /// Targets running during the step (the cost peak).
    pub running: usize,
    /// Fewest targets serving traffic during the step.
    pub serving: usize,
    /// The part of `expected` spent waiting for the router's propagation delay (DNS caches:
    /// TTL + margin), per traffic change or drain; zero when the step has none.
    #[serde(default, with = "humantime_serde")]
    pub propagation_wait: Duration,
}

/// A plan's dry run: rows, the total expected duration, peak and lowest capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// One row per step.
    pub rows: Vec<TimelineRow>,
    /// Sum of expected durations.
    #[serde(with = "humantime_serde")]
    pub expected: Duration,
    /// Most targets running at once.
    pub peak_running: usize,
    /// Fewest targets serving traffic at once.
    pub lowest_serving: usize,
    /// Targets serving before the deploy.
    pub serving_before: usize,
    /// Each pool before the deploy: its targets, how many serve, its share of traffic.
    #[serde(default)]
    pub pools: Vec<PoolRow>,
    /// For a deploy between standing pools of a fixed inventory: what happens to each pool,
    /// and what a rollback will be (a traffic switch, no host updated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<String>,
    /// The plan's warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One pool's capacity before a deploy, in a [`Timeline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    /// The pool.
    pub pool: PoolName,
    /// Its members (serving or not).
    pub targets: usize,
    /// Those serving.
    pub serving: usize,
    /// Its share of traffic, in percent.
    pub percent: u32,
}

impl Plan {
    /// The dry run: what each step does, how long it should take, and the capacity it leaves.
    pub fn timeline(&self) -> Timeline {
        let health = &self.spec.health;
        let mut count = Counter::new(self);
        let mut rows = Vec::with_capacity(self.steps.len());
        let mut clock = Duration::ZERO;
        let serving_before = count.serving();
        let (mut peak, mut lowest) = (count.running, serving_before);
        // With watched stability windows a batch's gate ends after its passes; the rest of
        // the window runs beside the next batches, and the first other step waits for it.
        let watched = matches!(&self.spec.strategy, Strategy::Rolling(r) if r.stability == Stability::Watched);
        // A watched target serves at its first pass; the rest of its gate runs beside.
        let window_rest = health.fastest_pass();
        let mut window_open = false;
        for (i, step) in self.steps.iter().enumerate() {
            let mut low = count.serving();
            let (expected, at_most) = match step {
                Step::Hook { .. }
                | Step::Adopt { .. }
                | Step::Attach { .. }
                | Step::Detach { .. }
                | Step::Retire { .. }
                | Step::Provision { .. } => (Duration::ZERO, Some(Duration::ZERO)),
                Step::AwaitHealthy { .. } => (health.fastest_pass(), Some(health.deadline)),
                Step::TestTraffic { duration, .. } | Step::Bake { duration, .. } => (*duration, Some(*duration)),
                Step::ShiftTraffic { .. } => (self.propagation_delay, Some(self.propagation_delay)),
                Step::Pause { duration, .. } => (duration.unwrap_or_default(), *duration),
                // Nobody knows when a human answers: nothing expected, the timeout at most.
                Step::Approve { timeout, .. } => (Duration::ZERO, Some(*timeout)),
                Step::Drain { pool, timeout, .. } => {
                    let wait = self.drain_wait(&count, pool);
                    (wait, Some(wait.max(*timeout)))
                }
                Step::UpdateBatch { pool, targets, drain_timeout, .. } => {
                    // An idle pool's targets carry no traffic: updating them costs none.
                    if count.split.weight(pool) > 0 {
                        low = low.saturating_sub(targets.len());
                    }
                    let drain = self.drain_wait(&count, pool);
                    let gate = if watched { Duration::ZERO } else { health.fastest_pass() };
                    (drain + gate, Some(drain.max(*drain_timeout) + health.deadline))
                }
            };
            let (expected, at_most, text) = match step {
                Step::UpdateBatch { .. } if watched && !window_rest.is_zero() => {
                    window_open = true;
                    let rest = humantime::format_duration(window_rest);
                    (expected, at_most, format!("{step}; each target watched {rest} more beside what follows"))
                }
                Step::Bake { .. } | Step::UpdateBatch { .. } => (expected, at_most, step.to_string()),
                _ if window_open => {
                    window_open = false;
                    let rest = humantime::format_duration(window_rest);
                    let at_most = at_most.map(|a| a + window_rest);
                    (expected + window_rest, at_most, format!("{step} (after the last windows, {rest})"))
                }
                _ => (expected, at_most, step.to_string()),
            };
            let propagation_wait = match step {
                Step::ShiftTraffic { .. } => self.propagation_delay,
                Step::Drain { pool, .. } | Step::UpdateBatch { pool, .. } => self.drain_wait(&count, pool),
                _ => Duration::ZERO,
            };
            count.apply(step);
            clock += expected;
            peak = peak.max(count.running);
            let low = low.min(count.serving());
            lowest = lowest.min(low);
            rows.push(TimelineRow {
                index: i + 1,
                step: text,
                expected,
                at_most,
                ends_at: clock,
                running: count.running,
                serving: low,
                propagation_wait,
            });
        }
        // A plan that ends with a batch ends once its windows passed.
        if let (true, Some(last)) = (window_open, rows.last_mut()) {
            clock += window_rest;
            last.expected += window_rest;
            last.ends_at = clock;
            last.step.push_str(", and the deploy ends once they passed");
        }
        Timeline {
            rows,
            expected: clock,
            peak_running: peak,
            lowest_serving: lowest,
            serving_before,
            pools: self.pool_rows(),
            standing: self.standing_note(),
            warnings: self.warnings.clone(),
        }
    }

    /// The least a drain in `pool` lasts: the propagation delay (a DNS TTL) while the pool
    /// carries traffic, nothing once it carries none (the shift away waited already).
    fn drain_wait(&self, count: &Counter, pool: &PoolName) -> Duration {
        if count.split.weight(pool) > 0 {
            self.propagation_delay
        } else {
            Duration::ZERO
        }
    }

    fn pool_rows(&self) -> Vec<PoolRow> {
        let before = &self.before;
        before
            .pools
            .iter()
            .map(|(pool, targets)| PoolRow {
                pool: pool.clone(),
                targets: targets.len(),
                serving: before.serving(pool).len(),
                percent: before.split.weight(pool),
            })
            .collect()
    }

    fn standing_note(&self) -> Option<String> {
        if !self.standing || self.steps.is_empty() {
            return None;
        }
        let (stable, candidate) = (&self.stable_pool, &self.candidate_pool);
        let from = self.from_version.as_ref().map_or_else(|| "its version".to_owned(), ToString::to_string);
        let keep = match self.steps.iter().find(|s| matches!(s, Step::Drain { .. })) {
            None => format!("keeps its hosts on {from}, warm, until the next deploy"),
            Some(_) => match self.steps.iter().find_map(|s| match s {
                Step::Pause { duration: Some(d), .. } => Some(*d),
                _ => None,
            }) {
                Some(keep) => {
                    format!("keeps its hosts on {from}, warm, for {}, then drains them", crate::model::short(keep))
                }
                None => format!("drains its hosts, which stay on {from}"),
            },
        };
        Some(format!(
            "standing pools: {candidate}'s hosts are updated in place to {}; {stable} {keep}; a rollback switches \
             traffic back to {stable} without updating any host",
            self.spec.version
        ))
    }
}

/// Counts targets as the steps would move them.
struct Counter {
    split: Split,
    running: usize,
    /// Serving members per pool.
    attached: BTreeMap<PoolName, usize>,
    tagged: BTreeMap<String, usize>,
}

impl Counter {
    fn new(plan: &Plan) -> Self {
        let running = plan.before.pools.values().map(Vec::len).sum();
        let attached: BTreeMap<PoolName, usize> =
            plan.before.pools.keys().map(|p| (p.clone(), plan.before.serving(p).len())).collect();
        Self { split: plan.before.split.clone(), running, attached, tagged: BTreeMap::new() }
    }

    fn serving(&self) -> usize {
        self.split.live_pools().map(|p| self.attached.get(p).copied().unwrap_or(0)).sum()
    }

    fn size(&self, set: &TargetSet) -> usize {
        match set {
            TargetSet::Ids(ids) => ids.len(),
            TargetSet::Tagged(tag) => self.tagged.get(tag).copied().unwrap_or(0),
            TargetSet::TagPrefix(prefix) => {
                self.tagged.iter().filter(|(tag, _)| tag.starts_with(prefix.as_str())).map(|(_, n)| n).sum()
            }
        }
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Provision { count, tag, .. } => {
                self.running += count;
                self.tagged.insert(tag.clone(), *count);
            }
            Step::Attach { pool, targets } => *self.attached.entry(pool.clone()).or_default() += self.size(targets),
            Step::ShiftTraffic { split } => self.split = split.clone(),
            Step::Drain { pool, targets, .. } => {
                let n = self.size(targets);
                let attached = self.attached.entry(pool.clone()).or_default();
                *attached = attached.saturating_sub(n);
            }
            Step::Retire { targets } => self.running = self.running.saturating_sub(self.size(targets)),
            // Every target of the batch is serving again after it (an idle pool's too).
            Step::UpdateBatch { pool, targets, .. } => {
                let attached = self.attached.entry(pool.clone()).or_default();
                *attached = (*attached).max(targets.len());
            }
            _ => {}
        }
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = crate::model::short;
        // The step column is as wide as its longest step: nothing is cut off.
        let width = self.rows.iter().map(|r| r.step.chars().count()).max().unwrap_or(0).max(58);
        writeln!(
            f,
            "{:>3}  {:<width$} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "#", "step", "expected", "at most", "ends at", "running", "serving"
        )?;
        for r in &self.rows {
            let at_most = r.at_most.map_or_else(|| "manual".to_owned(), d);
            let mark = if r.propagation_wait.is_zero() { ' ' } else { '*' };
            writeln!(
                f,
                "{:>3}{mark} {:<width$} {:>9} {:>9} {:>9} {:>7} {:>7}",
                r.index,
                r.step,
                d(r.expected),
                at_most,
                d(r.ends_at),
                r.running,
                r.serving
            )?;
        }
        write!(
            f,
            "expected duration {}; peak {} targets running; lowest {} of {} serving",
            d(self.expected),
            self.peak_running,
            self.lowest_serving,
            self.serving_before
        )?;
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| format!("{} {} target(s), {} serving, {}% of traffic", p.pool, p.targets, p.serving, p.percent))
            .collect();
        if !pools.is_empty() {
            write!(f, "\npools before: {}", pools.join("; "))?;
        }
        if let Some(note) = &self.standing {
            write!(f, "\n{note}")?;
        }
        if let Some(wait) = self.rows.iter().map(|r| r.propagation_wait).find(|w| !w.is_zero()) {
            let n = self.rows.iter().filter(|r| !r.propagation_wait.is_zero()).count();
            write!(f, "\n* {n} steps wait {} each for DNS caches (TTL + margin), counted in `expected`", d(wait))?;
        }
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}
