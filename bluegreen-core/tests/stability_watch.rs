//! The stability watch of a rolling deploy in place: a target serves again once it passed its
//! probes, the rest of its `min_healthy_time` is watched while the next batches proceed, and a
//! target that dies inside its window still rolls the deploy back — with the capacity floor
//! held throughout. `stability = "blocking"` waits each window out before the next batch.

mod support;

use std::time::Duration;

use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{EventKind, HealthPolicy, MemberState, Rolling, Spec, Stability, Status, Strategy};
use support::*;

/// Probes every second, two passes to serve again, two failures to fail, a 10 s window.
fn health() -> HealthPolicy {
    HealthPolicy {
        interval: secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: secs(10),
        deadline: secs(60),
    }
}

fn rolling(stability: Stability) -> Spec {
    let rolling = Rolling { stability, ..Rolling::in_place(2) };
    Spec::new("web", "v2", Strategy::Rolling(rolling)).with_health(health())
}

/// Ten blue targets on v1; v2 as `v2`.
fn pool(v2: VersionBehaviour) -> Sim {
    Sim::builder().pool("blue", 10, "v1").version("v2", v2).build()
}

#[tokio::test(start_paused = true)]
async fn a_watched_window_lets_the_next_batch_start_and_the_deploy_end_once_every_window_passed() {
    let sim = pool(VersionBehaviour::healthy());
    let (builder, log) = executor(&sim);
    let outcome = builder.build().deploy(&rolling(Stability::Watched)).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    let watched = outcome.elapsed;

    let sim = pool(VersionBehaviour::healthy());
    let (builder, _) = executor(&sim);
    let outcome = builder.build().deploy(&rolling(Stability::Blocking)).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let blocking = outcome.elapsed;
    // Five batches: blocking waits out five 10 s windows; watched, five gates of two passes and
    // the last window.
    assert!(blocking >= secs(50), "blocking: {blocking:?}");
    assert!(watched <= secs(20), "watched: {watched:?}");

    // No success before the last batch's window: the deploy ends ≥ 10 s after its targets'
    // first pass.
    let events = log.events();
    let last_healthy = events.iter().rev().find(|e| matches!(e.kind, EventKind::TargetHealthy { .. })).unwrap();
    assert!(watched >= last_healthy.at + secs(8), "ended {watched:?}, last gate passed at {:?}", last_healthy.at);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_dies_inside_its_window_rolls_the_deploy_back_with_the_floor_held() {
    // Passes its gate after about a second, dies five seconds after it started.
    let sim = pool(VersionBehaviour::dies_after(secs(5)));
    let (builder, log) = executor(&sim);
    let outcome = builder.build().deploy(&rolling(Stability::Watched)).await.unwrap();
    let lines = log.lines().join("\n");
    assert_eq!(outcome.status, Status::RolledBack, "{lines}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("within its window (2 passes spanning 10s)"), "{reason}");
    // The simulator's judge saw the floor (8 of 10) held and no traffic moved to a pool
    // without a healthy target.
    assert!(sim.violations().is_empty(), "{:?}\n{lines}", sim.violations());
    // Back on v1, every target serving.
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v1"), "{:?}", sim.targets());
    assert!(sim.members("blue").values().all(|s| *s == MemberState::Serving));
    // Caught within two probe intervals of the first death (5 s after the first update).
    let events = log.events();
    let first_update = events.iter().find(|e| matches!(e.kind, EventKind::TargetUpdated { .. })).unwrap().at;
    let caught = events.iter().find(|e| matches!(e.kind, EventKind::TargetUnhealthy { .. })).unwrap().at;
    assert!(caught <= first_update + secs(5) + secs(3), "caught at {caught:?}, first update at {first_update:?}");

    // Two batches of five: both pass their gates within two seconds, and the deploy still
    // waits for their windows before it could succeed — where the death is caught.
    let sim = pool(VersionBehaviour::dies_after(secs(5)));
    let (builder, log) = executor(&sim);
    let spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(5))).with_health(health());
    let outcome = builder.build().deploy(&spec).await.unwrap();
    let batches_done = log.events().iter().filter(|e| matches!(e.kind, EventKind::StepCompleted { .. })).count();
    assert_eq!(batches_done, 2, "both batches ran before the windows ended");
    assert_eq!(outcome.status, Status::RolledBack, "a deploy whose targets die in their windows is not a success");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test(start_paused = true)]
async fn the_plan_shows_the_windows_beside_the_next_batches() {
    let sim = pool(VersionBehaviour::healthy());
    let (builder, _) = executor(&sim);
    let executor = builder.build();
    let watched = executor.plan(&rolling(Stability::Watched)).await.unwrap().timeline();
    let blocking = executor.plan(&rolling(Stability::Blocking)).await.unwrap().timeline();
    let text = watched.to_string();
    assert!(text.contains("each target watched 10s more beside what follows"), "{text}");
    assert!(text.contains("and the deploy ends once they passed"), "{text}");
    // Five first passes and the last 10 s window, against five gates of 10 s.
    assert_eq!(watched.expected, secs(10), "{text}");
    assert_eq!(blocking.expected, secs(50), "{blocking}");
}
