//! Approvals: a canary waits for a human before all traffic moves, a blue-green before its
//! switch. `resume` approves, so does `promote`; a timeout rolls back or goes on, as the spec
//! says. While it waits the deployment is paused and traffic stays where it is.

mod support;

use bluegreen_core::sim::Sim;
use bluegreen_core::{
    Approval, BlueGreen, Canary, EventKind, OnTimeout, PoolName, ShiftStep, Spec, Status, Step, Strategy,
};
use support::*;

fn green(sim: &Sim) -> u32 {
    sim.split().weight(&PoolName::from("green"))
}

fn canary(on_timeout: OnTimeout) -> Spec {
    let canary = Canary {
        steps: vec![ShiftStep { percent: 20, bake: mins(1) }],
        approve: Some(Approval { timeout: mins(30), on_timeout }),
        ..Canary::default()
    };
    quick(Spec::new("web", "v2", Strategy::Canary(canary)))
}

fn sim() -> Sim {
    Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build()
}

#[tokio::test(start_paused = true)]
async fn the_approval_is_a_step_before_all_traffic_moves_bounded_by_its_timeout() {
    let sim = sim();
    let (builder, _) = executor(&sim);
    let plan = builder.build().plan(&canary(OnTimeout::RollBack)).await.unwrap();
    let approve = plan.steps.iter().position(|s| matches!(s, Step::Approve { .. })).expect("an approval step");
    assert!(
        matches!(&plan.steps[approve + 1], Step::ShiftTraffic { split } if split.weight(&"green".into()) == 100),
        "{:#?}",
        plan.steps
    );
    let row = &plan.timeline().rows[approve];
    assert_eq!(row.at_most, Some(mins(30)), "{row:?}");
    assert!(plan.steps[approve].to_string().contains("then roll back"), "{}", plan.steps[approve]);
}

#[tokio::test(start_paused = true)]
async fn nobody_approves_and_the_timeout_rolls_back() {
    let sim = sim();
    let (builder, log) = executor(&sim);
    let outcome = builder.build().deploy(&canary(OnTimeout::RollBack)).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack);
    assert!(outcome.reason.as_deref().unwrap_or_default().contains("not approved within 30m"), "{outcome:?}");
    assert!(outcome.elapsed >= mins(31), "waited the whole timeout: {:?}", outcome.elapsed);
    assert!(sim.split_history().iter().all(|(_, s)| s.weight(&"green".into()) <= 20), "never past 20% unapproved");
    assert!(log
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Paused { reason } if reason.contains("approval"))));
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn nobody_approves_and_the_timeout_goes_on_with_a_warning() {
    let sim = sim();
    let (builder, log) = executor(&sim);
    let outcome = builder.build().deploy(&canary(OnTimeout::Proceed)).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(green(&sim), 100);
    assert!(log
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Warning { message } if message.contains("not approved"))));
}

#[tokio::test(start_paused = true)]
async fn resume_approves_and_traffic_waits_until_then() {
    let sim = sim();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let control = executor.control();
    let spec = canary(OnTimeout::RollBack);
    let deploy = tokio::spawn(async move { executor.deploy(&spec).await.unwrap() });
    tokio::time::sleep(mins(10)).await;
    assert_eq!(green(&sim), 20, "waiting for the approval");
    control.resume();
    let outcome = deploy.await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(outcome.elapsed < mins(11), "approved after 10 minutes: {:?}", outcome.elapsed);
    assert_eq!(green(&sim), 100);
    let lines = log.lines();
    let paused = lines.iter().position(|l| l.starts_with("paused: awaiting approval")).expect("paused");
    assert!(lines[paused..].iter().any(|l| l == "resumed"), "{lines:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_blue_green_waits_for_its_approval_before_the_switch_and_promote_approves() {
    let sim = sim();
    let (builder, _) = executor(&sim);
    let executor = builder.build();
    let control = executor.control();
    let bg = BlueGreen {
        approve: Some(Approval { timeout: mins(60), on_timeout: OnTimeout::RollBack }),
        ..BlueGreen::default()
    };
    let spec = quick(Spec::new("web", "v2", Strategy::BlueGreen(bg)));
    let deploy = tokio::spawn(async move { executor.deploy(&spec).await.unwrap() });
    tokio::time::sleep(mins(5)).await;
    assert_eq!(green(&sim), 0, "no traffic before the approval");
    assert_eq!(sim.targets().iter().filter(|t| t.version.as_str() == "v2").count(), 2, "green is up, waiting");
    control.promote();
    let outcome = deploy.await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(green(&sim), 100);
}

/// In a spec (and so in a deploy file): `approve = { timeout = "1h", on_timeout = "proceed" }`;
/// an unknown `on_timeout` is refused naming the field.
#[test]
fn approvals_are_read_from_a_spec_and_a_bad_one_is_refused() {
    let spec: Spec = serde_json::from_value(serde_json::json!({
        "service": "web", "version": "v2",
        "strategy": { "kind": "canary", "steps": [{ "percent": 10, "bake": "5m" }],
                      "approve": { "timeout": "1h", "on_timeout": "proceed" } }
    }))
    .unwrap();
    let Strategy::Canary(canary) = &spec.strategy else { panic!("{spec:?}") };
    assert_eq!(canary.approve, Some(Approval { timeout: mins(60), on_timeout: OnTimeout::Proceed }));
    let bad = serde_json::from_value::<Spec>(serde_json::json!({
        "service": "web", "version": "v2",
        "strategy": { "kind": "blue_green", "approve": { "timeout": "1h", "on_timeout": "ask_again" } }
    }))
    .unwrap_err();
    assert!(bad.to_string().contains("ask_again"), "{bad}");
}
