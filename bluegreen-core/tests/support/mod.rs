//! Shared set-up for the executor tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::{Event, EventKind, Executor, ExecutorBuilder, HealthPolicy, MemorySink, Spec};

/// An executor over `sim` that records events and checks invariants after each one.
pub fn executor(sim: &Sim) -> (ExecutorBuilder, MemorySink) {
    let log = MemorySink::new();
    let builder = Executor::builder(sim.router(), sim.fleet(), sim.probe()).shared_sink(sim.sink()).sink(log.clone());
    (builder, log)
}

/// A fast health policy: 1 s interval, 2 passes, no minimum healthy time, 1 min deadline.
pub fn quick_health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(60),
    }
}

/// `spec` with the quick health policy.
pub fn quick(spec: Spec) -> Spec {
    spec.with_health(quick_health())
}

/// Minutes.
pub fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// Seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Fails the test with the event log if `sim` saw any invariant violation.
pub fn assert_no_violations(sim: &Sim, log: &MemorySink) {
    let violations = sim.violations();
    assert!(violations.is_empty(), "invariant violations: {violations:#?}\nlog:\n{}", log.lines().join("\n"));
}

/// The index of the first event matching `pred`.
pub fn position(events: &[Event], pred: impl Fn(&EventKind) -> bool) -> Option<usize> {
    events.iter().position(|e| pred(&e.kind))
}
