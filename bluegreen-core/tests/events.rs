//! Events: stable names, the JSON-lines sink and the channel sink.

mod support;

use bluegreen_core::sim::Sim;
use bluegreen_core::{BlueGreen, ChannelSink, Event, EventKind, JsonLinesSink, Spec, Strategy};
use support::quick;

/// The `event` names are part of the JSON output's contract: renaming one breaks pipelines.
#[test]
fn event_names_are_stable() {
    let split = bluegreen_core::Split::new([("blue", 100)]).unwrap();
    let d = std::time::Duration::from_secs(1);
    let kinds = vec![
        EventKind::DeploymentStarted {
            service: "s".into(),
            strategy: "canary".into(),
            from: None,
            to: "v2".into(),
            steps: 1,
        },
        EventKind::Warning { message: "m".into() },
        EventKind::DeploymentResumed { from_step: 1 },
        EventKind::StepStarted { index: 0, step: "x".into() },
        EventKind::StepCompleted { index: 0, took: d },
        EventKind::TargetsStarted { version: "v2".into(), targets: vec![] },
        EventKind::TargetHealthy { target: "t".into(), after: d },
        EventKind::TargetUnhealthy { target: "t".into(), reason: "r".into() },
        EventKind::TargetsRegistered { pool: "blue".into(), targets: vec![] },
        EventKind::TrafficShifted { from: split.clone(), to: split.clone() },
        EventKind::AwaitingPropagation { wait: d },
        EventKind::DrainStarted { pool: "blue".into(), targets: vec![] },
        EventKind::TargetsDrained {
            pool: "blue".into(),
            targets: vec![],
            in_flight_at_start: None,
            in_flight_at_end: None,
            timed_out: false,
        },
        EventKind::TargetsDeregistered { pool: "blue".into(), targets: vec![] },
        EventKind::TargetUpdated { target: "t".into(), from: "v1".into(), to: "v2".into() },
        EventKind::TargetsStopped { targets: vec![] },
        EventKind::BakeStarted { duration: d },
        EventKind::AnalysisFailed { analysis: "a".into(), reason: "r".into() },
        EventKind::HookFinished { point: "before_traffic".into(), hook: "h".into(), ok: true, output: String::new() },
        EventKind::Retrying { operation: "o".into(), attempt: 1, error: "e".into(), backoff: d },
        EventKind::Paused { reason: "r".into() },
        EventKind::Resumed,
        EventKind::Promoted,
        EventKind::AbortRequested,
        EventKind::RollbackStarted { reason: "r".into() },
        EventKind::RollbackBlocked { reason: "r".into() },
        EventKind::SteadyState { split, versions: vec![] },
        EventKind::DeploymentFinished { status: bluegreen_core::Status::Succeeded, reason: None },
    ];
    let names: Vec<String> = kinds
        .into_iter()
        .map(|kind| {
            let event = Event { deployment_id: "d".into(), seq: 0, at: d, kind };
            let json = serde_json::to_value(&event).unwrap();
            let back: Event = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, event, "round trip");
            json["event"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "deployment_started",
            "warning",
            "deployment_resumed",
            "step_started",
            "step_completed",
            "targets_started",
            "target_healthy",
            "target_unhealthy",
            "targets_registered",
            "traffic_shifted",
            "awaiting_propagation",
            "drain_started",
            "targets_drained",
            "targets_deregistered",
            "target_updated",
            "targets_stopped",
            "bake_started",
            "analysis_failed",
            "hook_finished",
            "retrying",
            "paused",
            "resumed",
            "promoted",
            "abort_requested",
            "rollback_started",
            "rollback_blocked",
            "steady_state",
            "deployment_finished",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_json_lines_and_channel_sinks_see_every_event_in_order() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (channel, mut rx) = ChannelSink::new();
    let lines = std::sync::Arc::new(JsonLinesSink::new(Vec::<u8>::new()));
    let exec = bluegreen_core::Executor::builder(sim.router(), sim.fleet(), sim.probe())
        .sink(channel)
        .shared_sink(lines.clone())
        .build();
    exec.deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();
    drop(exec);
    let mut received = Vec::new();
    while let Some(event) = rx.recv().await {
        received.push(event);
    }
    assert!(received.len() > 10);
    assert!(received.windows(2).all(|w| w[1].seq == w[0].seq + 1), "in order, none missing");
    let written = std::sync::Arc::try_unwrap(lines).unwrap().into_inner();
    let parsed: Vec<Event> =
        String::from_utf8(written).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parsed, received, "the JSON lines carry the same events");
    assert!(matches!(parsed.last().unwrap().kind, EventKind::DeploymentFinished { .. }));
}
