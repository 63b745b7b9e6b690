//! Standing pools on an ALB (moto): two `ip` target groups, blue and green, each with hosts of
//! a fixed inventory (`bluegreen_vm::HostFleet` with standing pools). Blue-green and canary
//! update the idle group's hosts in place (an updater that counts its runs), move the
//! listener's weights to it, and keep the old group's hosts registered and on the old version;
//! going back is a pure switch. The listener and the target groups are read back from moto with
//! the SDK; the gate is the ALB's own target health (moto: `healthy` once registered).
//!
//! The targets are addresses in moto's default VPC (172.31.0.0/16), as in `alb.rs`: moto only
//! stores them, nothing contacts them.

mod moto;

use std::collections::BTreeMap;
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
use bluegreen_core::{
    BlueGreen, Canary, Error, EventKind, Executor, Fleet, FnAnalysis, HealthPolicy, MemorySink, MemoryStore, PoolName,
    Router, ShiftStep, Spec, Split, Status, Strategy, Target, TargetId, Verdict,
};
use bluegreen_vm::{HostFleet, Updater};
use moto::{Alb, Moto};

const BLUE: [&str; 2] = ["172.31.1.10:8080", "172.31.1.11:8080"];
const GREEN: [&str; 2] = ["172.31.1.20:8080", "172.31.1.21:8080"];

fn host(address: &str) -> Target {
    Target { id: address.into(), address: address.into(), zone: None, version: "v1".into(), tag: None }
}

/// Every updater run, in order: (host id, version).
type Runs = Arc<Mutex<Vec<(String, String)>>>;

struct Setup {
    _moto: Moto,
    alb: Alb,
    client: Client,
    calls: CallLog,
    router: AlbRouter,
    fleet: Arc<HostFleet>,
    runs: Runs,
    sink: MemorySink,
    store: Arc<MemoryStore>,
}

/// Where the inventory puts each host, and what is registered in moto before the first deploy.
struct World {
    /// host → pool, for the inventory.
    inventory: Vec<(&'static str, &'static str)>,
    /// Registered in the blue target group (the listener forwards all to blue).
    blue_registered: Vec<&'static str>,
    /// Registered in the green target group (at weight 0).
    green_registered: Vec<&'static str>,
}

impl World {
    /// Two blue hosts serving v1, two green hosts registered at weight 0, all on v1.
    fn standing() -> Self {
        let inventory = BLUE.iter().map(|h| (*h, "blue")).chain(GREEN.iter().map(|h| (*h, "green"))).collect();
        Self { inventory, blue_registered: BLUE.to_vec(), green_registered: GREEN.to_vec() }
    }
}

async fn setup(world: World) -> Option<Setup> {
    setup_scripted(world, None).await
}

/// [`setup`], with the router's (and its probe's) ELB client answering through `script`'s
/// interceptor when given.
async fn setup_scripted(world: World, script: Option<Arc<Mutex<NotInUse>>>) -> Option<Setup> {
    let moto = Moto::start()?;
    let calls = CallLog::new();
    let sdk = moto.config().call_log(&calls).load().await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let mut conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk);
    if let Some(script) = script {
        conf = conf.interceptor(UnusedUntilAttached { green_arn: alb.green_arn.clone(), script });
    }
    let pools = [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())];
    let router = AlbRouter::from_client(Client::from_conf(conf.build()), &alb.listener_arn, pools)
        .expect("router")
        .drain_poll_interval(Duration::from_millis(50));
    // The starting point, written with the SDK alone: blue's (and maybe green's) hosts
    // registered, the listener forwarding everything to blue (moto's set-up).
    for (arn, hosts) in [(&alb.blue_arn, &world.blue_registered), (&alb.green_arn, &world.green_registered)] {
        if hosts.is_empty() {
            continue;
        }
        let targets = hosts.iter().map(|h| {
            let (ip, port) = h.split_once(':').expect("ip:port");
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(ip)
                .port(port.parse().expect("port"))
                .build()
        });
        client
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets.collect()))
            .send()
            .await
            .expect("register_targets");
    }
    let runs: Runs = Arc::default();
    let counted = runs.clone();
    let updater = Updater::from_fn(move |host: Target, version| {
        counted.lock().unwrap().push((host.id.to_string(), version.to_string()));
        async move { Ok(format!("{} now runs {version}", host.id)) }
    });
    let hosts = world.inventory.iter().map(|(h, _)| host(h));
    let pools = world.inventory.iter().map(|(h, p)| (TargetId::from(*h), PoolName::from(*p)));
    let fleet =
        Arc::new(HostFleet::new(hosts, updater).expect("fleet").with_standing_pools(pools).expect("standing pools"));
    calls.reset();
    Some(Setup {
        _moto: moto,
        alb,
        client,
        calls,
        router,
        fleet,
        runs,
        sink: MemorySink::new(),
        store: Arc::new(MemoryStore::new()),
    })
}

impl Setup {
    /// An executor over the router, the fleet, the ALB's health view and the memory store.
    fn executor(&self, analysis: Option<FnAnalysis>) -> Executor {
        let mut builder =
            Executor::builder(Arc::new(self.router.clone()), self.fleet.clone(), Arc::new(self.router.health_probe()))
                .sink(self.sink.clone())
                .state_store(self.store.clone(), "alb-standing-test")
                .poll_interval(Duration::from_millis(100));
        if let Some(analysis) = analysis {
            builder = builder.analysis(analysis);
        }
        builder.build()
    }

    /// The listener's forward weights as moto serves them: (blue, green).
    async fn weights(&self) -> (i32, i32) {
        listener_weights(&self.client, &self.alb).await
    }

    /// The `ip:port` targets registered in a target group, as moto lists them.
    async fn registered(&self, arn: &str) -> Vec<String> {
        registered(&self.client, arn).await
    }

    /// The hosts the updater ran on, with the version.
    fn runs(&self) -> Vec<(String, String)> {
        self.runs.lock().unwrap().clone()
    }

    /// Each host's version as the fleet knows it.
    async fn versions(&self) -> BTreeMap<String, String> {
        self.fleet.list().await.expect("list").into_iter().map(|t| (t.id.to_string(), t.version.to_string())).collect()
    }
}

/// The listener's forward weights by target group: (blue, green); a plain forward counts 100.
async fn listener_weights(client: &Client, alb: &Alb) -> (i32, i32) {
    let out = client.describe_listeners().listener_arns(&alb.listener_arn).send().await.expect("listeners");
    let action = &out.listeners()[0].default_actions()[0];
    let weight = |arn: &str| -> i32 {
        match action.forward_config().map(|c| c.target_groups()).filter(|t| !t.is_empty()) {
            Some(tuples) => {
                tuples.iter().filter(|t| t.target_group_arn() == Some(arn)).filter_map(|t| t.weight()).sum()
            }
            None if action.target_group_arn() == Some(arn) => 100,
            None => 0,
        }
    };
    (weight(&alb.blue_arn), weight(&alb.green_arn))
}

async fn registered(client: &Client, arn: &str) -> Vec<String> {
    let out = client.describe_target_health().target_group_arn(arn).send().await.expect("describe_target_health");
    let mut ids: Vec<String> = out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target())
        .map(|t| format!("{}:{}", t.id().unwrap_or_default(), t.port().unwrap_or_default()))
        .collect();
    ids.sort();
    ids
}

fn health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    }
}

fn blue_green(version: &str) -> Spec {
    Spec::new("web", version, Strategy::BlueGreen(BlueGreen::default())).with_health(health())
}

fn canary(version: &str, bake: Duration) -> Spec {
    let steps = [10, 50, 100].map(|percent| ShiftStep { percent, bake }).to_vec();
    Spec::new("web", version, Strategy::Canary(Canary { steps, ..Canary::default() })).with_health(health())
}

fn sorted(hosts: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    v.sort();
    v
}

fn updated(runs: &[(String, String)]) -> Vec<String> {
    let mut hosts: Vec<String> = runs.iter().map(|(h, _)| h.clone()).collect();
    hosts.sort();
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_updates_the_green_hosts_in_place_and_keeps_blue_registered() {
    let Some(s) = setup(World::standing()).await else { return };
    let executor = s.executor(None);
    let plan = executor.plan(&blue_green("v2")).await.expect("plan");
    assert!(plan.standing, "a fixed inventory in two pools plans standing pools");
    assert_eq!(s.calls.writes(), 0, "planning wrote: {:?}", s.calls.counts());

    let outcome = executor.deploy(&blue_green("v2")).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let runs = s.runs();
    assert_eq!(updated(&runs), sorted(&GREEN), "the updater ran once on each green host only: {runs:?}");
    assert!(runs.iter().all(|(_, v)| v == "v2"), "{runs:?}");
    assert_eq!(s.weights().await, (0, 100), "the listener forwards everything to green");
    assert!(s.router.split().await.expect("split").same_traffic(&Split::all_to(&PoolName::from("green"))));
    assert_eq!(s.registered(&s.alb.blue_arn).await, sorted(&BLUE), "blue stays registered (warm)");
    assert_eq!(s.registered(&s.alb.green_arn).await, sorted(&GREEN), "green is registered");
    let versions = s.versions().await;
    assert!(BLUE.iter().all(|h| versions[*h] == "v1"), "blue keeps v1: {versions:?}");
    assert!(GREEN.iter().all(|h| versions[*h] == "v2"), "green runs v2: {versions:?}");
    // Each green host: out of service, updated, registered, healthy; then the traffic moved.
    // Blue was never drained nor touched.
    let events: Vec<EventKind> = s.sink.events().into_iter().map(|e| e.kind).collect();
    let at = |what: &str, found: &dyn Fn(&EventKind) -> bool| {
        events.iter().position(found).unwrap_or_else(|| panic!("no {what} in {events:#?}"))
    };
    let switch =
        at("switch", &|e| matches!(e, EventKind::TrafficShifted { to, .. } if to.weight(&"green".into()) == 100));
    for host in GREEN {
        let id = TargetId::from(host);
        let drained = at("drain", &|e| matches!(e, EventKind::TargetsDrained { targets, .. } if targets.contains(&id)));
        let updated = at("update", &|e| matches!(e, EventKind::TargetUpdated { target, .. } if *target == id));
        let registered =
            at("register", &|e| matches!(e, EventKind::TargetsRegistered { targets, .. } if targets.contains(&id)));
        let healthy = at("healthy", &|e| matches!(e, EventKind::TargetHealthy { target, .. } if *target == id));
        assert!(drained < updated && updated < registered && registered < healthy && healthy < switch, "{host}");
    }
    let touched_blue = events.iter().any(|e| match e {
        EventKind::DrainStarted { pool, .. } | EventKind::TargetsRegistered { pool, .. } => pool.as_str() == "blue",
        EventKind::TargetUpdated { target, .. } => BLUE.contains(&target.as_str()),
        _ => false,
    });
    assert!(!touched_blue, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_back_to_the_warm_pool_is_a_pure_switch() {
    let Some(s) = setup(World::standing()).await else { return };
    let executor = s.executor(None);
    let outcome = executor.deploy(&blue_green("v2")).await.expect("deploy v2");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert_eq!(s.weights().await, (0, 100));
    let runs_before = s.runs();
    s.calls.reset();

    let back = executor.deploy(&blue_green("v1")).await.expect("deploy v1");
    assert_eq!(back.status, Status::Succeeded, "{:?}", back.reason);
    assert_eq!(s.runs(), runs_before, "going back to the warm pool ran no update");
    assert_eq!(s.weights().await, (100, 0), "the listener forwards everything to blue again");
    assert_eq!(s.registered(&s.alb.blue_arn).await, sorted(&BLUE));
    assert_eq!(s.registered(&s.alb.green_arn).await, sorted(&GREEN), "green stays registered (warm on v2)");
    let counts = s.calls.counts();
    assert_eq!(counts.get("elasticloadbalancing:DeregisterTargets"), None, "no host left its group: {counts:?}");
    let versions = s.versions().await;
    assert!(GREEN.iter().all(|h| versions[*h] == "v2"), "green stays on v2: {versions:?}");
    assert!(BLUE.iter().all(|h| versions[*h] == "v1"), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_moves_the_listener_10_50_100_between_standing_groups() {
    let Some(s) = setup(World::standing()).await else { return };
    // The analysis runs during every bake and records the listener's weights as moto serves
    // them.
    let seen: Arc<Mutex<Vec<(i32, i32)>>> = Arc::default();
    let (client, alb) = (s.client.clone(), s.alb.clone());
    let record = seen.clone();
    let analysis = FnAnalysis::new("listener weights", move |_| {
        let (client, alb, record) = (client.clone(), alb.clone(), record.clone());
        async move {
            let weights = listener_weights(&client, &alb).await;
            let mut seen = record.lock().unwrap();
            if seen.last() != Some(&weights) {
                seen.push(weights);
            }
            Verdict::Pass
        }
    });
    let executor = s.executor(Some(analysis));
    let outcome = executor.deploy(&canary("v2", Duration::from_millis(600))).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&(50, 50)), "the 50 % bake saw 50/50 on the listener: {seen:?}");
    assert!(seen.contains(&(90, 10)), "the 10 % bake saw 90/10: {seen:?}");
    let order: Vec<i32> = seen.iter().map(|(_, g)| *g).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "green's share only grew: {seen:?}");
    assert_eq!(s.weights().await, (0, 100), "green serves everything at the end");
    assert_eq!(updated(&s.runs()), sorted(&GREEN), "{:?}", s.runs());
    assert_eq!(s.registered(&s.alb.blue_arn).await, sorted(&BLUE), "blue stays registered (warm)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_the_inventory_puts_in_an_empty_group_are_registered_by_the_first_deploy() {
    let Some(s) = setup(World { green_registered: Vec::new(), ..World::standing() }).await else { return };
    assert!(s.registered(&s.alb.green_arn).await.is_empty());
    let executor = s.executor(None);
    let outcome = executor.deploy(&blue_green("v2")).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert_eq!(s.registered(&s.alb.green_arn).await, sorted(&GREEN), "the deploy registered green's hosts");
    assert_eq!(s.weights().await, (0, 100));
    assert_eq!(updated(&s.runs()), sorted(&GREEN), "{:?}", s.runs());
    assert_eq!(s.registered(&s.alb.blue_arn).await, sorted(&BLUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_registered_in_the_other_pools_group_is_drift_before_any_write() {
    // The inventory puts GREEN[0] in green, but it is registered in the blue target group
    // (and BLUE[1] in no group): counted by the router's groups, each pool would have two
    // hosts, a plan that would go ahead: only the inventory's pools show the drift.
    let world =
        World { blue_registered: vec![BLUE[0], GREEN[0]], green_registered: vec![GREEN[1]], ..World::standing() };
    let Some(s) = setup(world).await else { return };
    let groups = [s.alb.blue_arn.as_str(), s.alb.green_arn.as_str()];
    let before = s.alb.state(&s.client, &groups).await;
    s.calls.reset();
    let executor = s.executor(None);
    let err = executor.deploy(&blue_green("v2")).await.expect_err("drift");
    assert!(matches!(err, Error::Drift { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(GREEN[0]) && text.contains("green") && text.contains("blue"), "{text}");
    assert_eq!(s.calls.writes(), 0, "{:?}", s.calls.counts());
    assert!(s.runs().is_empty(), "{:?}", s.runs());
    assert_eq!(s.alb.state(&s.client, &groups).await, before, "a refused deploy changed the load balancer");
}

// ---- A real ALB's `unused` targets (scripted over moto) ---------------------------------------

/// How a real ALB answers for the targets of a target group no listener uses: `unused`
/// (`Target.NotInUse`), and for a while after a listener starts using it (the ALB applies the
/// change asynchronously). Moto answers `healthy` at once; this interceptor rewrites the green
/// hosts' answers.
#[derive(Debug, Default)]
struct NotInUse {
    /// Whether a listener write put the green group into the forward action.
    attached: bool,
    /// `DescribeTargetHealth` answers (of green's group) still to say `unused` after the attach.
    lag: usize,
    /// Green hosts' answers rewritten to `unused`.
    rewritten: usize,
    /// Green hosts' answers after the attach (left as moto's, or `unused` during the lag).
    log: Vec<String>,
}

#[derive(Debug, Clone)]
struct UnusedUntilAttached {
    green_arn: String,
    script: Arc<Mutex<NotInUse>>,
}

impl Intercept for UnusedUntilAttached {
    fn name(&self) -> &'static str {
        "bluegreen-test-unused-until-attached"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<ModifyListenerInput>() {
            let attached = input
                .default_actions()
                .iter()
                .filter_map(|a| a.forward_config())
                .flat_map(|c| c.target_groups())
                .any(|t| t.target_group_arn() == Some(self.green_arn.as_str()));
            self.script.lock().unwrap().attached |= attached;
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
        let mut lagged = false;
        for description in output.target_health_descriptions.iter_mut().flatten() {
            let target =
                description.target().map(|t| format!("{}:{}", t.id().unwrap_or_default(), t.port().unwrap_or(0)));
            if !target.as_deref().is_some_and(|t| GREEN.contains(&t)) {
                continue;
            }
            let unused = !script.attached || script.lag > 0;
            if script.attached {
                lagged |= script.lag > 0;
                let state = if unused { "unused".to_owned() } else { format!("{:?}", description.target_health()) };
                script.log.push(state);
            }
            if unused {
                script.rewritten += 1;
                description.target_health = Some(
                    TargetHealth::builder()
                        .state(TargetHealthStateEnum::Unused)
                        .reason(TargetHealthReasonEnum::NotInUse)
                        .description("Target group is not configured to receive traffic from the load balancer")
                        .build(),
                );
            }
        }
        if lagged {
            script.lag -= 1;
        }
        Ok(())
    }
}

/// The usual starting point of standing pools on a real ALB: both groups registered, the
/// listener forwarding to blue only, so green's hosts read `unused` (no drain needed: they get
/// no traffic). The first deploy attaches green at weight 0, updates, gates and switches; the
/// ALB still answering `unused` for a moment after the attach (`lag`) must not fail it.
async fn unused_green_is_deployed_to(lag: usize) {
    let script = Arc::new(Mutex::new(NotInUse { lag, ..NotInUse::default() }));
    let Some(s) = setup_scripted(World::standing(), Some(script.clone())).await else { return };
    let executor = s.executor(None);
    let before = executor.observe().await.expect("observe");
    for host in GREEN {
        assert!(before.disabled.contains(&TargetId::from(host)), "an unused host is out of service: {before:?}");
    }
    let outcome = executor.deploy(&blue_green("v2")).await.expect("deploy");
    {
        let script = script.lock().unwrap();
        assert_eq!(
            outcome.status,
            Status::Succeeded,
            "{:?} (green's answers after the attach: {:?})",
            outcome.reason,
            script.log
        );
        assert!(script.attached && script.rewritten >= 2, "{script:?}");
        assert_eq!(script.lag, 0, "every lagging answer was read: {script:?}");
    }
    assert_eq!(s.weights().await, (0, 100));
    assert_eq!(updated(&s.runs()), sorted(&GREEN), "{:?}", s.runs());
    let events: Vec<EventKind> = s.sink.events().into_iter().map(|e| e.kind).collect();
    assert!(!events.iter().any(|e| matches!(e, EventKind::DrainStarted { .. })), "unused hosts need no drain");
    assert_eq!(s.registered(&s.alb.blue_arn).await, sorted(&BLUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_green_hosts_of_a_group_no_listener_uses_are_attached_updated_and_switched_to() {
    unused_green_is_deployed_to(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alb_still_reporting_unused_right_after_the_attach_does_not_fail_the_deploy() {
    unused_green_is_deployed_to(3).await;
}
