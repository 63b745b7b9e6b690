//! Blue-green deploys through the core `Executor` on an `AlbRouter`, gated by `AlbTargetHealth`
//! (the ALB's own health checks), against moto with an interceptor that scripts the new targets'
//! health: moto reports every registered target `healthy` at once, so `initial` → `healthy` and
//! a target that never passes can only be produced by rewriting its answers. The listener and
//! the target groups are moto's, read back for real; a `CallLog` counts the calls.

mod moto;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_sdk_elasticloadbalancingv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_elasticloadbalancingv2::error::BoxError;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::operation::modify_listener::ModifyListenerInput;
use aws_sdk_elasticloadbalancingv2::types::{TargetHealth, TargetHealthReasonEnum, TargetHealthStateEnum};
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_aws::{AlbRouter, CallLog};
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, EventKind, Executor, HealthPolicy, MemorySink, PoolName, ProvisionRequest, Router, Spec, Split, Status,
    Strategy,
};
use moto::{Alb, Moto};

/// How the new (green) targets answer: `initial` this many times, then `healthy` — or never.
#[derive(Debug, Default)]
struct Script {
    initial_answers: Option<usize>,
    /// When set: once green got traffic, this many more answers are `healthy`, then `unhealthy`.
    fail_after_traffic: Option<usize>,
    /// Whether a listener write gave green traffic.
    green_has_traffic: bool,
    /// The IPs of the old (blue) targets, left as moto answers (`healthy`).
    blue: BTreeSet<String>,
    /// What happened, in order: "green healthy", "green unhealthy", "weights blue/green".
    log: Vec<String>,
}

#[derive(Debug, Clone)]
struct GreenHealth {
    green_arn: String,
    script: Arc<Mutex<Script>>,
}

impl Intercept for GreenHealth {
    fn name(&self) -> &'static str {
        "bluegreen-test-green-health"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        // Every listener write, with the weight it gives the green target group.
        if let Some(input) = context.input().downcast_ref::<ModifyListenerInput>() {
            let green: i32 = input
                .default_actions()
                .iter()
                .filter_map(|a| a.forward_config())
                .flat_map(|c| c.target_groups())
                .filter(|t| t.target_group_arn() == Some(self.green_arn.as_str()))
                .filter_map(|t| t.weight())
                .sum();
            let mut script = self.script.lock().unwrap();
            script.log.push(format!("green weight {green}"));
            script.green_has_traffic |= green > 0;
        }
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else { return Ok(()) };
        let Some(output) = output.downcast_mut::<DescribeTargetHealthOutput>() else { return Ok(()) };
        let mut script = self.script.lock().unwrap();
        let mut healthy_now = false;
        for description in output.target_health_descriptions.iter_mut().flatten() {
            // Only the new targets are scripted (the blue ones stay moto's `healthy`).
            let ip = description.target().and_then(|t| t.id()).unwrap_or_default();
            if script.blue.contains(ip) {
                continue;
            }
            let after_traffic = script.green_has_traffic;
            let turned_bad = match (&mut script.fail_after_traffic, after_traffic) {
                (Some(0), true) => true,
                (Some(n), true) => {
                    *n -= 1;
                    false
                }
                _ => false,
            };
            let health = match &mut script.initial_answers {
                Some(0) if turned_bad => TargetHealth::builder()
                    .state(TargetHealthStateEnum::Unhealthy)
                    .reason(TargetHealthReasonEnum::ResponseCodeMismatch)
                    .description("Health checks failed with these codes: [500]")
                    .build(),
                Some(0) => {
                    healthy_now = true;
                    TargetHealth::builder().state(TargetHealthStateEnum::Healthy).build()
                }
                Some(n) => {
                    *n -= 1;
                    TargetHealth::builder()
                        .state(TargetHealthStateEnum::Initial)
                        .reason(TargetHealthReasonEnum::RegistrationInProgress)
                        .description("Target registration is in progress")
                        .build()
                }
                None => TargetHealth::builder()
                    .state(TargetHealthStateEnum::Unhealthy)
                    .reason(TargetHealthReasonEnum::ResponseCodeMismatch)
                    .description("Health checks failed with these codes: [502]")
                    .build(),
            };
            description.target_health = Some(health);
        }
        if healthy_now && script.log.last().map(String::as_str) != Some("green healthy") {
            script.log.push("green healthy".into());
        }
        Ok(())
    }
}

struct Setup {
    _moto: Moto,
    alb: Alb,
    client: Client,
    router: AlbRouter,
    script: Arc<Mutex<Script>>,
    calls: CallLog,
    executor: Executor,
    sink: MemorySink,
}

async fn setup(initial_answers: Option<usize>) -> Option<Setup> {
    setup_with(Script { initial_answers, ..Script::default() }).await
}

async fn setup_with(script: Script) -> Option<Setup> {
    let moto = Moto::start()?;
    let calls = CallLog::new();
    let sdk = moto.config().call_log(&calls).load().await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let script = Arc::new(Mutex::new(script));
    let interceptor = GreenHealth { green_arn: alb.green_arn.clone(), script: script.clone() };
    let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk).interceptor(interceptor).build();
    let router = AlbRouter::from_client(
        Client::from_conf(conf),
        &alb.listener_arn,
        [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
    )
    .expect("router")
    .drain_poll_interval(Duration::from_millis(50));
    // Two blue targets serve v1 (moto: healthy at once).
    // The simulator's fleet with ALB-style targets: the id is the address `172.31.9.N:8080`.
    let sim = Sim::builder().ipv4_addresses([172, 31, 9, 1].into(), 8080).named_by_address().build();
    let fleet = sim.fleet();
    let request = ProvisionRequest { version: "v1".into(), count: 2, zones: Vec::new(), tag: "web/v1/initial".into() };
    let blue = fleet.provision(&request).await.expect("blue targets");
    script.lock().unwrap().blue =
        blue.iter().map(|t| t.address.split(':').next().unwrap_or_default().to_owned()).collect();
    router.add_targets(&"blue".into(), &blue).await.expect("blue targets");
    router.set_split(&Split::all_to(&"blue".into())).await.expect("all to blue");
    let sink = MemorySink::new();
    let executor =
        Executor::builder(Arc::new(router.clone()), fleet, Arc::new(router.health_probe())).sink(sink.clone()).build();
    script.lock().unwrap().log.clear();
    calls.reset();
    Some(Setup { _moto: moto, alb, client, router, script, calls, executor, sink })
}

fn spec() -> Spec {
    let health = HealthPolicy {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(3),
    };
    let mut spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())).with_health(health);
    spec.replicas = Some(2);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_moves_only_after_the_alb_reports_the_new_targets_healthy() {
    let Some(s) = setup(Some(6)).await else { return };
    let outcome = s.executor.deploy(&spec()).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let log = s.script.lock().unwrap().log.clone();
    let healthy_at = log.iter().position(|l| l == "green healthy").expect("the ALB said healthy");
    let first_traffic = log.iter().position(|l| l.starts_with("green weight") && l != "green weight 0");
    assert!(first_traffic.is_some_and(|i| i > healthy_at), "green got traffic before it was healthy: {log:?}");
    assert_eq!(s.script.lock().unwrap().initial_answers, Some(0), "every `initial` answer was read");
    assert!(s.router.split().await.expect("split").same_traffic(&Split::all_to(&PoolName::from("green"))));
    // The gate passed each new target only after the `initial` answers: not at once.
    let passed: Vec<Duration> = s
        .sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TargetHealthy { after, .. } => Some(*after),
            _ => None,
        })
        .collect();
    assert_eq!(passed.len(), 2, "{passed:?}");
    assert!(passed.iter().all(|after| *after >= Duration::from_millis(200)), "{passed:?}");
    // One DescribeTargetHealth per group per gate round, shared by both targets' checks.
    let counts = s.calls.counts();
    println!("calls: {counts:?}");
    assert!(counts.get("elasticloadbalancing:ModifyListener").copied().unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_the_alb_never_finds_healthy_roll_back_without_moving_traffic() {
    let Some(s) = setup(None).await else { return };
    let before = s.client.describe_listeners().listener_arns(&s.alb.listener_arn).send().await.expect("listener");
    let outcome = s.executor.deploy(&spec()).await.expect("deploy");
    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    let reason = outcome.reason.clone().unwrap_or_default();
    let unhealthy = s.sink.events().iter().any(|e| {
        matches!(&e.kind, EventKind::TargetUnhealthy { reason, .. } if reason.contains("Target.ResponseCodeMismatch"))
    });
    assert!(unhealthy, "the ALB's reason is not in the events (outcome: {reason})");
    let log = s.script.lock().unwrap().log.clone();
    assert!(log.iter().all(|l| !l.starts_with("green weight") || l == "green weight 0"), "green got traffic: {log:?}");
    let after = s.client.describe_listeners().listener_arns(&s.alb.listener_arn).send().await.expect("listener");
    let weights = |out: &aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput| {
        let split: BTreeSet<(String, i32)> = out.listeners()[0].default_actions()[0]
            .forward_config()
            .map(|c| {
                c.target_groups()
                    .iter()
                    .map(|t| (t.target_group_arn().unwrap_or_default().to_owned(), t.weight().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        split.into_iter().filter(|(_, w)| *w > 0).collect::<Vec<_>>()
    };
    assert_eq!(weights(&after), weights(&before), "the traffic is where it was");
    assert!(s.router.members(&"green".into()).await.expect("members").is_empty(), "the new targets were removed");
}

/// The 10 % → 100 % canary used below.
fn canary() -> Spec {
    use bluegreen_core::{Canary, ShiftStep};
    let steps =
        vec![ShiftStep { percent: 10, bake: Duration::from_secs(1) }, ShiftStep { percent: 100, bake: Duration::ZERO }];
    let mut spec = spec();
    spec.strategy = Strategy::Canary(Canary { steps, ..Canary::default() });
    spec
}

/// A canary 10 % → 100 % whose new targets stay healthy: the listener is written at 10 %, then
/// 100 %, each read back, and green serves everything in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_moves_the_listener_to_10_then_100_percent() {
    let Some(s) = setup(Some(0)).await else { return };
    let outcome = s.executor.deploy(&canary()).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let log = s.script.lock().unwrap().log.clone();
    let weights: Vec<&str> = log.iter().filter_map(|l| l.strip_prefix("green weight ")).collect();
    assert_eq!(weights, ["10", "100"], "{log:?}");
    assert!(s.router.split().await.expect("split").same_traffic(&Split::all_to(&PoolName::from("green"))));
}

/// A canary 10 % → 100 % whose new targets turn unhealthy during the 10 % bake: the rollback
/// puts the listener's actions back exactly as they were (their full description compared),
/// and green never had more than 10 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_in_its_bake_restores_the_listener_actions_exactly() {
    let Some(s) =
        setup_with(Script { initial_answers: Some(0), fail_after_traffic: Some(4), ..Script::default() }).await
    else {
        return;
    };
    let listener = || async {
        let out = s.client.describe_listeners().listener_arns(&s.alb.listener_arn).send().await.expect("listener");
        format!("{:?}", out.listeners()[0].default_actions())
    };
    let before = listener().await;
    let mut spec = canary();
    if let Strategy::Canary(canary) = &mut spec.strategy {
        canary.steps[0].bake = Duration::from_secs(5);
    }
    let outcome = s.executor.deploy(&spec).await.expect("deploy");
    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    let log = s.script.lock().unwrap().log.clone();
    let weights: Vec<&str> = log.iter().filter_map(|l| l.strip_prefix("green weight ")).collect();
    assert_eq!(weights, ["10", "0"], "{log:?}");
    assert_eq!(listener().await, before, "the listener's actions after the rollback");
    assert!(s.router.members(&"green".into()).await.expect("members").is_empty(), "the new targets were removed");
}
