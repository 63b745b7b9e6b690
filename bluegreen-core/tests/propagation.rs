//! A router with a propagation delay (a DNS TTL plus resolver margin): no target is updated,
//! detached or stopped before the delay has passed since its address left the answer — its
//! drain, or the shift that took its pool's traffic away — whatever the spec's
//! `drain.timeout`, and the plan says so.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::{BlueGreen, Capabilities, Event, EventKind, Rolling, Spec, Status, Strategy, TargetId};
use support::*;

/// TTL 60 s + margin 5 s, as the issue observed over RFC 2136.
const DELAY: Duration = Duration::from_secs(65);

fn dns_like(pools: &[(&str, usize)]) -> Sim {
    let mut builder = Sim::builder().capabilities(
        Capabilities::load_balancer()
            .with_per_target_drain(false)
            .with_observes_in_flight(false)
            .with_propagation_delay(DELAY),
    );
    for (pool, n) in pools {
        builder = builder.pool(*pool, *n, "v1");
    }
    builder.build()
}

/// For each target: when its drain began and when it was updated / stopped (event times).
fn drained_then(events: &[Event], done: impl Fn(&EventKind) -> Vec<TargetId>) -> Vec<(TargetId, Duration)> {
    let mut drained: BTreeMap<TargetId, Duration> = BTreeMap::new();
    let mut gaps = Vec::new();
    for e in events {
        if let EventKind::DrainStarted { targets, .. } = &e.kind {
            for t in targets {
                drained.insert(t.clone(), e.at);
            }
        }
        for t in done(&e.kind) {
            let began = drained.get(&t).unwrap_or_else(|| panic!("{t} changed without a drain"));
            gaps.push((t, e.at - *began));
        }
    }
    gaps
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_waits_the_ttl_after_each_drain_even_with_the_default_drain_timeout() {
    let sim = dns_like(&[("blue", 4)]);
    let (builder, log) = executor(&sim);
    let spec = quick(Spec::new("www", "v2", Strategy::Rolling(Rolling::in_place(1))));
    assert_eq!(spec.drain.timeout, secs(30), "the default drain timeout is shorter than the delay");
    let exec = builder.build();
    let plan = exec.plan(&spec).await.unwrap();
    assert!(
        plan.warnings.iter().any(|w| w.contains("drain.timeout (30s)") && w.contains("1m 5s")),
        "the plan says the drains last the delay: {:?}",
        plan.warnings
    );
    let timeline = plan.timeline();
    let batches: Vec<_> = timeline.rows.iter().filter(|r| r.step.starts_with("batch")).collect();
    assert_eq!(batches.len(), 4);
    for row in &batches {
        assert_eq!(row.propagation_wait, DELAY, "{}", row.step);
        assert!(row.expected >= DELAY, "{}: expected {:?} leaves out the TTL wait", row.step, row.expected);
    }
    assert!(timeline.to_string().contains("4 steps wait 1m 5s each for DNS caches"), "{timeline}");

    let outcome = exec.deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let updated = drained_then(&log.events(), |k| match k {
        EventKind::TargetUpdated { target, .. } => vec![target.clone()],
        _ => Vec::new(),
    });
    assert_eq!(updated.len(), 4);
    for (target, gap) in updated {
        assert!(gap >= DELAY, "{target} updated {gap:?} after its drain began, before TTL + margin ({DELAY:?})");
    }
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn a_blue_green_stops_the_old_pool_only_after_the_ttl() {
    let sim = dns_like(&[("blue", 2), ("green", 0)]);
    let (builder, log) = executor(&sim);
    let spec = quick(Spec::new("www", "v2", Strategy::BlueGreen(BlueGreen::default())));
    let outcome = builder.build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let stopped = drained_then(&log.events(), |k| match k {
        EventKind::TargetsStopped { targets } => targets.clone(),
        _ => Vec::new(),
    });
    assert_eq!(stopped.len(), 2);
    // The old pool's records left the answer at the switch; the switch waited the delay, so
    // the drain after it (of a pool in no answer) waits nothing more.
    let events = log.events();
    let at = |matches: fn(&EventKind) -> bool| events.iter().find(|e| matches(&e.kind)).unwrap().at;
    let shifted = at(|k| matches!(k, EventKind::TrafficShifted { .. }));
    let stopped_at = at(|k| matches!(k, EventKind::TargetsStopped { .. }));
    assert!(stopped_at >= shifted + DELAY, "stopped {:?} after the switch", stopped_at - shifted);
    assert!(outcome.elapsed < DELAY * 2, "one wait, not two: {:?}", outcome.elapsed);
}
