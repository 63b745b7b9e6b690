//! `Spec::validate`: every check that needs no backend.

use std::time::Duration;

use super::{
    AnalysisSpec, BatchSize, HttpSuccessRateSpec, RollbackPace, Rolling, RollingMode, ShiftStep, Spec, Strategy,
};
use crate::error::{Error, Result};

/// A day: the longest wait any single setting may ask for without being a typo.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Spec {
    /// Checks everything that needs no backend, and names the first field at fault.
    ///
    /// # Errors
    /// [`Error::Invalid`] with the field's path, e.g. `strategy.steps[1].percent`.
    pub fn validate(&self) -> Result<()> {
        if self.service.trim().is_empty() {
            return Err(Error::invalid("service", "must not be empty"));
        }
        if self.version.as_str().trim().is_empty() {
            return Err(Error::invalid("version", "must not be empty"));
        }
        self.validate_pools()?;
        if self.replicas == Some(0) {
            return Err(Error::invalid("replicas", "must be at least 1"));
        }
        self.validate_strategy()?;
        self.validate_health()?;
        longest("drain.timeout", self.drain.timeout)?;
        self.validate_rollback()?;
        self.validate_retry()?;
        for (i, hook) in self.hooks.iter().enumerate() {
            if hook.command.trim().is_empty() {
                return Err(Error::invalid(format!("hooks[{i}].command"), "must not be empty"));
            }
            positive(&format!("hooks[{i}].timeout"), hook.timeout)?;
        }
        for (i, analysis) in self.analyses.iter().enumerate() {
            validate_analysis(&format!("analyses[{i}]"), analysis)?;
        }
        Ok(())
    }

    /// The steps a canary, linear or blue-green deploy shifts traffic by, from the strategy.
    pub fn shift_steps(&self) -> Vec<ShiftStep> {
        match &self.strategy {
            Strategy::BlueGreen(bg) => vec![ShiftStep { percent: 100, bake: bg.bake }],
            Strategy::Canary(c) => {
                let mut steps = c.preset.map(|p| p.steps()).unwrap_or_else(|| c.steps.clone());
                match steps.last_mut() {
                    Some(last) if last.percent == 100 => last.bake = last.bake.max(c.bake),
                    _ => steps.push(ShiftStep { percent: 100, bake: c.bake }),
                }
                steps
            }
            Strategy::Linear(l) => {
                let mut steps = Vec::new();
                let mut percent = 0;
                while percent < 100 {
                    percent = (percent + l.percent.max(1)).min(100);
                    let bake = if percent < 100 { l.interval } else { Duration::ZERO };
                    steps.push(ShiftStep { percent, bake });
                }
                steps
            }
            Strategy::Rolling(_) => Vec::new(),
        }
    }

    fn validate_pools(&self) -> Result<()> {
        if self.pools.is_empty() || self.pools.len() > 2 {
            return Err(Error::invalid("pools", format!("expected 1 or 2 pools, got {}", self.pools.len())));
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.as_str().trim().is_empty() {
                return Err(Error::invalid(format!("pools[{i}]"), "must not be empty"));
            }
        }
        if self.pools.len() == 2 && self.pools[0] == self.pools[1] {
            return Err(Error::invalid(
                "pools[1]",
                format!("the two pools must differ, both are {:?}", self.pools[0].as_str()),
            ));
        }
        let shifts_traffic = !matches!(self.strategy, Strategy::Rolling(_));
        if shifts_traffic && self.pools.len() != 2 {
            return Err(Error::invalid("pools", format!("{} needs two pools", self.strategy.name())));
        }
        Ok(())
    }

    fn validate_strategy(&self) -> Result<()> {
        match &self.strategy {
            Strategy::BlueGreen(bg) => {
                longest("strategy.test_for", bg.test_for)?;
                longest("strategy.bake", bg.bake)?;
                longest("strategy.keep_old_for", bg.keep_old_for.unwrap_or_default())
            }
            Strategy::Canary(c) => {
                match (c.preset.is_some(), c.steps.is_empty()) {
                    (true, false) => return Err(Error::invalid("strategy.steps", "give steps or a preset, not both")),
                    (false, true) => return Err(Error::invalid("strategy.steps", "a canary needs steps or a preset")),
                    _ => {}
                }
                let mut previous = 0;
                for (i, step) in c.steps.iter().enumerate() {
                    let field = format!("strategy.steps[{i}].percent");
                    if step.percent == 0 || step.percent > 100 {
                        return Err(Error::invalid(field, format!("must be 1–100, got {}", step.percent)));
                    }
                    if step.percent <= previous {
                        return Err(Error::invalid(
                            field,
                            format!("steps must increase: {} follows {previous}", step.percent),
                        ));
                    }
                    previous = step.percent;
                    longest(&format!("strategy.steps[{i}].bake"), step.bake)?;
                }
                longest("strategy.bake", c.bake)
            }
            Strategy::Linear(l) => {
                if l.percent == 0 || l.percent > 100 {
                    return Err(Error::invalid("strategy.percent", format!("must be 1–100, got {}", l.percent)));
                }
                longest("strategy.interval", l.interval)
            }
            Strategy::Rolling(r) => validate_rolling(r),
        }
    }

    fn validate_health(&self) -> Result<()> {
        let h = &self.health;
        if h.healthy_threshold == 0 {
            return Err(Error::invalid("health.healthy_threshold", "must be at least 1"));
        }
        if h.unhealthy_threshold == 0 {
            return Err(Error::invalid("health.unhealthy_threshold", "must be at least 1"));
        }
        positive("health.interval", h.interval)?;
        positive("health.timeout", h.timeout)?;
        longest("health.interval", h.interval)?;
        longest("health.min_healthy_time", h.min_healthy_time)?;
        longest("health.deadline", h.deadline)?;
        if h.timeout > h.interval {
            return Err(Error::invalid(
                "health.timeout",
                format!("{} is longer than the interval {}", fmt(h.timeout), fmt(h.interval)),
            ));
        }
        if h.deadline < h.fastest_pass() {
            return Err(Error::invalid(
                "health.deadline",
                format!("{} is shorter than the fastest possible pass {}", fmt(h.deadline), fmt(h.fastest_pass())),
            ));
        }
        Ok(())
    }

    fn validate_rollback(&self) -> Result<()> {
        if let RollbackPace::Ramp { percent, interval } = &self.rollback.pace {
            if *percent == 0 || *percent > 100 {
                return Err(Error::invalid("rollback.pace.ramp.percent", format!("must be 1–100, got {percent}")));
            }
            longest("rollback.pace.ramp.interval", *interval)?;
        }
        Ok(())
    }

    fn validate_retry(&self) -> Result<()> {
        let r = &self.retry;
        if r.max_attempts == 0 {
            return Err(Error::invalid("retry.max_attempts", "must be at least 1"));
        }
        if !(r.multiplier >= 1.0 && r.multiplier <= 10.0) {
            return Err(Error::invalid("retry.multiplier", format!("must be 1–10, got {}", r.multiplier)));
        }
        if r.initial_backoff > r.max_backoff {
            return Err(Error::invalid("retry.initial_backoff", "is longer than retry.max_backoff"));
        }
        longest("retry.max_backoff", r.max_backoff)
    }
}

fn validate_rolling(r: &Rolling) -> Result<()> {
    check_size("strategy.batch", r.batch, false)?;
    if let Some(s) = r.max_surge {
        check_size("strategy.max_surge", s, true)?;
    }
    if let Some(u) = r.max_unavailable {
        check_size("strategy.max_unavailable", u, true)?;
    }
    if let Some(p) = r.min_healthy_percent {
        if p > 100 {
            return Err(Error::invalid("strategy.min_healthy_percent", format!("must be 0–100, got {p}")));
        }
    }
    let zero = |s: Option<BatchSize>| matches!(s, Some(BatchSize::Count(0) | BatchSize::Percent(0)));
    match r.mode {
        RollingMode::InPlace => {
            if r.max_surge.is_some_and(|s| !zero(Some(s))) {
                return Err(Error::invalid(
                    "strategy.max_surge",
                    "in-place updates start no extra targets; use mode = \"replace\"",
                ));
            }
            if zero(r.max_unavailable) {
                return Err(Error::invalid(
                    "strategy.max_unavailable",
                    "an in-place update takes each batch out of service, so 0 cannot work; use mode = \"replace\" with max_surge",
                ));
            }
        }
        RollingMode::Replace => {
            if zero(r.max_surge) && zero(r.max_unavailable) {
                return Err(Error::invalid(
                    "strategy.max_unavailable",
                    "max_surge and max_unavailable are both 0: no target could ever be replaced",
                ));
            }
        }
    }
    longest("strategy.bake_between_batches", r.bake_between_batches)
}

fn check_size(field: &str, size: BatchSize, zero_ok: bool) -> Result<()> {
    match size {
        BatchSize::Count(0) | BatchSize::Percent(0) if !zero_ok => Err(Error::invalid(field, "must be at least 1")),
        BatchSize::Percent(p) if p > 100 => Err(Error::invalid(field, format!("must be at most 100%, got {p}%"))),
        _ => Ok(()),
    }
}

fn validate_analysis(field: &str, analysis: &AnalysisSpec) -> Result<()> {
    match analysis {
        AnalysisSpec::HttpSuccessRate(HttpSuccessRateSpec {
            url,
            min_success_percent,
            window,
            requests_per_check,
            timeout,
            ..
        }) => {
            if cfg!(not(feature = "http-probe")) {
                return Err(Error::invalid(
                    field,
                    "an http_success_rate analysis needs bluegreen-core's `http-probe` feature, which this build leaves out",
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid(format!("{field}.url"), format!("{url:?} is not an http(s) URL")));
            }
            if !(0.0..=100.0).contains(min_success_percent) {
                return Err(Error::invalid(
                    format!("{field}.min_success_percent"),
                    format!("must be 0–100, got {min_success_percent}"),
                ));
            }
            if *requests_per_check == 0 {
                return Err(Error::invalid(format!("{field}.requests_per_check"), "must be at least 1"));
            }
            positive(&format!("{field}.window"), *window)?;
            positive(&format!("{field}.timeout"), *timeout)
        }
    }
}

fn positive(field: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(Error::invalid(field, "must be longer than 0s"));
    }
    Ok(())
}

fn longest(field: &str, d: Duration) -> Result<()> {
    if d > LONGEST_WAIT {
        return Err(Error::invalid(field, format!("{} is longer than a day; is the unit right?", fmt(d))));
    }
    Ok(())
}

fn fmt(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}
