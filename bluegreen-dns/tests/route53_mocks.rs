//! `Route53Router` against scripted mocks (aws-smithy-mocks): the real aws-sdk-route53 client
//! and its standard retry mode, with a small in-memory Route53 answering in place of the
//! network. It covers what moto cannot do: throttling and `PriorRequestNotComplete` (retried by
//! the SDK), and changes that stay `PENDING` for a while or for ever. Everything here runs on
//! tokio's paused clock, so minutes of TTL, change and retry waits take no real time; no
//! network is used at all.
//!
//! Built with the `route53` feature (`cargo test -p bluegreen-dns --features route53`; the
//! workspace build has it through bluegreen-cli).

#![cfg(feature = "route53")]

mod moto;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::error::ErrorMetadata;
use aws_sdk_route53::operation::change_resource_record_sets::{
    ChangeResourceRecordSetsError, ChangeResourceRecordSetsInput, ChangeResourceRecordSetsOutput,
};
use aws_sdk_route53::operation::get_change::GetChangeOutput;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
use aws_sdk_route53::primitives::DateTime;
use aws_sdk_route53::types::error::{InvalidChangeBatch, PriorRequestNotComplete};
use aws_sdk_route53::types::{ChangeAction, ChangeInfo, ChangeStatus, HostedZone, ResourceRecordSet};
use aws_sdk_route53::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use bluegreen_core::sim::Sim;
use bluegreen_core::state::Clock;
use bluegreen_core::{
    Canary, DrainPolicy, Error, Event, EventKind, Executor, HealthPolicy, MemberState, MemorySink, PoolName,
    ProvisionRequest, Router, ShiftStep, Spec, Split, Status, Strategy, Target,
};
use bluegreen_dns::Route53Router;
use moto::{IPV4_FROM, NAME, ZONE};
use tokio::time::Instant;

const ZONE_ID: &str = "ZFAKE0000001";

/// How long a change stays `PENDING`, decided per batch: `None` for ever.
type Pending = Box<dyn Fn(&ChangeResourceRecordSetsInput) -> Option<Duration> + Send + Sync>;

/// One change batch the fake received.
#[derive(Debug, Clone)]
struct Submitted {
    id: String,
    at: Instant,
    pending: Option<Duration>,
    /// When `GetChange` first answered `INSYNC`.
    insync_at: Option<Instant>,
}

/// The in-memory Route53: one hosted zone's record sets, and the changes sent to it.
struct FakeState {
    sets: Vec<ResourceRecordSet>,
    changes: Vec<Submitted>,
    pending: Pending,
    get_change_calls: usize,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<FakeState>>);

fn reversed(name: &str) -> String {
    name.trim_end_matches('.').split('.').rev().collect::<Vec<_>>().join(".")
}

impl Fake {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(FakeState {
            sets: Vec::new(),
            changes: Vec::new(),
            pending: Box::new(|_| Some(Duration::ZERO)),
            get_change_calls: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_pending(
        &self,
        pending: impl Fn(&ChangeResourceRecordSetsInput) -> Option<Duration> + Send + Sync + 'static,
    ) {
        self.state().pending = Box::new(pending);
    }

    /// Applies a batch (all or nothing, like Route53) and answers with its change info.
    fn apply(&self, input: &ChangeResourceRecordSetsInput) -> ChangeResourceRecordSetsOutput {
        let mut state = self.state();
        let mut sets = state.sets.clone();
        for change in input.change_batch().map(|b| b.changes()).unwrap_or_default() {
            let set = change.resource_record_set().expect("a record set").clone();
            let same = |s: &ResourceRecordSet| {
                s.name() == set.name() && s.r#type() == set.r#type() && s.set_identifier() == set.set_identifier()
            };
            match change.action() {
                ChangeAction::Upsert => match sets.iter_mut().find(|s| same(s)) {
                    Some(s) => *s = set,
                    None => sets.push(set),
                },
                ChangeAction::Delete => {
                    let at = sets.iter().position(|s| *s == set);
                    sets.remove(at.unwrap_or_else(|| panic!("DELETE of a set that does not match exactly: {set:?}")));
                }
                other => panic!("unexpected action {other:?}"),
            }
        }
        state.sets = sets;
        let pending = (state.pending)(input);
        let id = format!("C{}", state.changes.len() + 1);
        let now = Instant::now();
        let status = if pending == Some(Duration::ZERO) { ChangeStatus::Insync } else { ChangeStatus::Pending };
        let insync_at = (status == ChangeStatus::Insync).then_some(now);
        state.changes.push(Submitted { id: id.clone(), at: now, pending, insync_at });
        ChangeResourceRecordSetsOutput::builder().change_info(info(&format!("/change/{id}"), status)).build()
    }

    fn get_change(&self, id: &str) -> GetChangeOutput {
        let mut state = self.state();
        state.get_change_calls += 1;
        let change = state.changes.iter_mut().find(|c| c.id == id).expect("a known change id");
        let now = Instant::now();
        let synced = change.pending.is_some_and(|p| now >= change.at + p);
        if synced && change.insync_at.is_none() {
            change.insync_at = Some(now);
        }
        let status = if synced { ChangeStatus::Insync } else { ChangeStatus::Pending };
        GetChangeOutput::builder().change_info(info(&format!("/change/{id}"), status)).build()
    }

    fn list(&self, name: Option<&str>, rtype: Option<&str>) -> ListResourceRecordSetsOutput {
        let mut sets = self.state().sets.clone();
        sets.sort_by_key(|s| (reversed(s.name()), s.r#type().as_str().to_owned()));
        if let Some(name) = name {
            let start = (reversed(name), rtype.unwrap_or_default().to_owned());
            sets.retain(|s| (reversed(s.name()), s.r#type().as_str().to_owned()) >= start);
        }
        ListResourceRecordSetsOutput::builder()
            .set_resource_record_sets(Some(sets))
            .is_truncated(false)
            .max_items(300)
            .build()
            .expect("list output")
    }

    /// The weight of each pool's A set.
    fn weights(&self) -> BTreeMap<String, i64> {
        let state = self.state();
        let sets = state.sets.iter().filter(|s| s.name() == NAME && s.r#type().as_str() == "A");
        sets.map(|s| (s.set_identifier().unwrap_or("-").to_owned(), s.weight().unwrap_or(-1))).collect()
    }

    fn changes(&self) -> Vec<Submitted> {
        self.state().changes.clone()
    }

    /// The rules answering every call the router makes, from this fake.
    fn rules(&self) -> Vec<Rule> {
        let zone = mock!(Client::get_hosted_zone).then_output(|| {
            let zone = HostedZone::builder().id(format!("/hostedzone/{ZONE_ID}")).name(ZONE).caller_reference("t");
            GetHostedZoneOutput::builder().hosted_zone(zone.build().expect("zone")).build()
        });
        let fake = self.clone();
        let list = mock!(Client::list_resource_record_sets).then_compute_output(move |input| {
            fake.list(input.start_record_name(), input.start_record_type().map(|t| t.as_str()))
        });
        let fake = self.clone();
        let change = mock!(Client::change_resource_record_sets).then_compute_output(move |input| fake.apply(input));
        let fake = self.clone();
        let get_change =
            mock!(Client::get_change).then_compute_output(move |input| fake.get_change(input.id().unwrap_or_default()));
        vec![zone, list, change, get_change]
    }
}

fn info(id: &str, status: ChangeStatus) -> ChangeInfo {
    ChangeInfo::builder().id(id).status(status).submitted_at(DateTime::from_secs(0)).build().expect("change info")
}

/// A client whose calls the rules answer (first matching rule first), with the SDK's standard
/// retry mode as `AwsConfig` sets it (3 attempts, exponential backoff with jitter).
fn client(rules: &[Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let conf = aws_sdk_route53::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build();
    Client::from_conf(conf)
}

/// A rule answering the next `ChangeResourceRecordSets` with `error`, then (on the SDK's retry)
/// applying the same batch. The matcher keeps the batch: a retry does not show the rule its input.
fn fails_once_then_applies(fake: &Fake, error: fn() -> ChangeResourceRecordSetsError) -> Rule {
    let kept: Arc<Mutex<Option<ChangeResourceRecordSetsInput>>> = Arc::default();
    let keep = kept.clone();
    let fake = fake.clone();
    mock!(Client::change_resource_record_sets)
        .match_requests(move |input| {
            *keep.lock().unwrap() = Some(input.clone());
            true
        })
        .sequence()
        .error(error)
        .output(move || fake.apply(kept.lock().unwrap().as_ref().expect("the failed batch")))
        .build()
}

fn router(client: Client, ttl: Duration) -> Route53Router {
    Route53Router::builder_from_client(client, ZONE_ID, NAME)
        .ttl(ttl)
        .resolver_margin(Duration::from_secs(5))
        .change_timeout(Duration::from_secs(120))
        .poll_interval(Duration::from_secs(2))
        .pool("blue")
        .pool("green")
        .build()
        .unwrap()
}

fn target(id: &str, ip: &str) -> Target {
    Target { id: id.into(), address: format!("{ip}:8080"), zone: None, version: "v1".into(), tag: None }
}

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

async fn blue_and_green(router: &Route53Router) {
    router.add_targets(&blue(), &[target("b1", "10.0.0.11")]).await.unwrap();
    router.add_targets(&green(), &[target("g1", "10.0.1.11")]).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
}

fn throttling() -> ChangeResourceRecordSetsError {
    ChangeResourceRecordSetsError::generic(ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build())
}

fn prior_request_not_complete() -> ChangeResourceRecordSetsError {
    let message = "The request was rejected because Route 53 was still processing a prior request.";
    ChangeResourceRecordSetsError::PriorRequestNotComplete(
        PriorRequestNotComplete::builder()
            .message(message)
            .meta(ErrorMetadata::builder().code("PriorRequestNotComplete").message(message).build())
            .build(),
    )
}

async fn retried_and_applied(error: fn() -> ChangeResourceRecordSetsError) {
    let fake = Fake::new();
    let failing = fails_once_then_applies(&fake, error);
    let mut rules = vec![failing.clone()];
    rules.extend(fake.rules());
    let router = router(client(&rules), Duration::from_secs(60));
    // The first change (adding blue's member) meets the error, is retried and applied.
    blue_and_green(&router).await;
    assert_eq!(failing.num_calls(), 2, "one failed attempt, one retry");
    let before = router.change_batches_sent();
    router.set_split(&Split::between(&blue(), &green(), 10)).await.expect("the split after the retried batch");
    assert_eq!(router.change_batches_sent() - before, 1);
    assert_eq!(fake.weights(), BTreeMap::from([("blue".into(), 90), ("green".into(), 10)]));
}

/// Throttling on the change batch: the SDK's standard retry mode classifies `Throttling` as a
/// throttling error, backs off and repeats the call; the router sees one successful call.
#[tokio::test(start_paused = true)]
async fn throttling_on_a_change_batch_is_retried_and_the_write_succeeds() {
    retried_and_applied(throttling).await;
}

/// `PriorRequestNotComplete` (another change to the zone is still being applied) is retried the
/// same way.
#[tokio::test(start_paused = true)]
async fn prior_request_not_complete_is_retried_and_the_write_succeeds() {
    retried_and_applied(prior_request_not_complete).await;
}

/// Without the SDK's retries left, the error reaches the caller as a retryable backend error
/// naming the IAM action, so the executor's own retry policy can take over.
#[tokio::test(start_paused = true)]
async fn throttling_past_the_sdk_attempts_is_a_retryable_error() {
    let fake = Fake::new();
    let always = mock!(Client::change_resource_record_sets).then_error(throttling);
    let mut rules = vec![always.clone()];
    rules.extend(fake.rules());
    let router = router(client(&rules), Duration::from_secs(60));
    let err = router.add_targets(&blue(), &[target("b1", "10.0.0.11")]).await.expect_err("throttled");
    println!("{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("route53:ChangeResourceRecordSets"), "{err}");
    assert_eq!(always.num_calls(), 3, "the SDK made its 3 attempts");
}

/// A change that stays `PENDING` past the change timeout fails the write with a timeout naming
/// the change (not retryable: the step fails and the executor rolls back). The wait backs off,
/// so two minutes cost a handful of `GetChange` calls. Asked again once the change is in sync,
/// the write succeeds without a new batch, after seeing it `INSYNC`.
#[tokio::test(start_paused = true)]
async fn a_change_pending_past_the_deadline_fails_the_write() {
    let fake = Fake::new();
    let router = router(client(&fake.rules()), Duration::from_secs(60));
    blue_and_green(&router).await;
    fake.set_pending(|_| None);
    let started = Instant::now();
    let err = router.set_split(&Split::between(&blue(), &green(), 10)).await.expect_err("stuck PENDING");
    let waited = started.elapsed();
    println!("{err} (after {waited:?}, {} GetChange calls)", fake.state().get_change_calls);
    let id = fake.changes().last().unwrap().id.clone();
    let Error::Timeout { what, after } = &err else { panic!("expected a timeout, got {err}") };
    assert!(what.contains(&id) && what.contains("PENDING"), "{err}");
    assert!(*after >= Duration::from_secs(120), "{err}");
    assert!(!err.is_retryable());
    assert!((Duration::from_secs(120)..Duration::from_secs(125)).contains(&waited), "{waited:?}");
    let polls = fake.state().get_change_calls;
    // Every 2 s would be 60 calls; doubling up to 8 s makes it about 18.
    assert!((4..=20).contains(&polls), "{polls} GetChange calls in 2 minutes: the polling must back off");

    // Route53 applies it later; a re-run of the step then finds nothing to write, and
    // succeeds only after the outstanding change is seen in sync.
    fake.state().changes.last_mut().unwrap().pending = Some(Duration::from_secs(150));
    let batches = router.change_batches_sent();
    let rerun = Instant::now();
    router.set_split(&Split::between(&blue(), &green(), 10)).await.expect("the re-run");
    assert_eq!(router.change_batches_sent(), batches, "nothing left to write");
    assert!(rerun.elapsed() >= Duration::from_secs(25), "the re-run returned before the change was in sync");
}

fn health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(60),
    }
}

/// Blue serving two sim targets (with IPv4 addresses) at 100%, and an executor on `router`.
async fn executor(router: &Route53Router) -> (Executor, MemorySink) {
    let sim = Sim::builder().ipv4_addresses(IPV4_FROM, 8080).build();
    let fleet = sim.fleet();
    let request = ProvisionRequest { version: "v1".into(), count: 2, zones: Vec::new(), tag: "web/v1/initial".into() };
    let initial = fleet.provision(&request).await.unwrap();
    router.add_targets(&blue(), &initial).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    let sink = MemorySink::new();
    let executor = Executor::builder(Arc::new(router.clone()), fleet, sim.probe()).sink(sink.clone()).build();
    (executor, sink)
}

fn spec(steps: Vec<ShiftStep>) -> Spec {
    Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() }))
        .with_health(health())
        .with_drain(DrainPolicy { timeout: Duration::from_secs(300) })
}

fn print_log(events: &[Event]) {
    for event in events {
        println!("  {event}");
    }
}

/// The canary's first step is stuck `PENDING`: the step fails after the change timeout and the
/// deploy rolls back to blue 100% (whose change syncs).
#[tokio::test(start_paused = true)]
async fn a_deploy_whose_change_stays_pending_rolls_back() {
    let fake = Fake::new();
    let router = router(client(&fake.rules()), Duration::from_secs(60));
    let (executor, sink) = executor(&router).await;
    // Changes that give green traffic never sync; the others after 10 s.
    fake.set_pending(|input| {
        let changes = input.change_batch().map(|b| b.changes()).unwrap_or_default();
        let green_live = changes
            .iter()
            .filter_map(|c| c.resource_record_set())
            .any(|s| s.set_identifier() == Some("green") && s.r#type().as_str() == "A" && s.weight().unwrap_or(0) > 0);
        (!green_live).then_some(Duration::from_secs(10))
    });
    let step = ShiftStep { percent: 10, bake: Duration::from_secs(600) };
    let outcome = executor.deploy(&spec(vec![step])).await.unwrap();
    print_log(&sink.events());
    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("PENDING"), "{reason}");
    assert_eq!(fake.weights(), BTreeMap::from([("blue".into(), 100)]), "green's record set is gone again");
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&blue())));
    assert!(router.members(&green()).await.unwrap().is_empty());
}

/// TTL pacing with a 60 s TTL and changes that take 20 s to sync: every canary step's bake
/// starts no earlier than TTL + margin after its change was `INSYNC`, and the old pool counts
/// as drained, and is stopped, no earlier than TTL + margin after the change that withdrew its
/// values was in sync. Fails if the router's propagation delay or its drain wait is removed
/// (both checked by removing them).
#[tokio::test(start_paused = true)]
async fn canary_steps_bake_and_the_old_pool_retires_only_ttl_and_margin_after_insync() {
    let fake = Fake::new();
    let ttl = Duration::from_secs(60);
    let delay = ttl + Duration::from_secs(5);
    let router = router(client(&fake.rules()), ttl);
    let (executor, sink) = executor(&router).await;
    fake.set_pending(|_| Some(Duration::from_secs(20)));
    let first_change = fake.changes().len();
    let steps = vec![
        ShiftStep { percent: 10, bake: Duration::from_secs(300) },
        ShiftStep { percent: 50, bake: Duration::from_secs(300) },
    ];
    let t0 = Instant::now();
    let outcome = executor.deploy(&spec(steps)).await.unwrap();
    let events = sink.events();
    print_log(&events);
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);

    // The change batches of the deploy, in order, with when each was seen in sync.
    let changes: Vec<Submitted> = fake.changes().split_off(first_change);
    let synced: Vec<Duration> = changes.iter().map(|c| c.insync_at.expect("every change synced") - t0).collect();
    println!("changes in sync at {synced:?}");
    let at = |index: usize, matches: fn(&EventKind) -> bool| {
        events.iter().filter(|e| matches(&e.kind)).nth(index).unwrap_or_else(|| panic!("event #{index}")).at
    };
    // Batches: register green, 10%, 50%, 100%, drain blue, record when the drain was in sync,
    // deregister blue.
    assert_eq!(changes.len(), 7, "{changes:?}");
    for (step, change) in [(0, 1), (1, 2), (2, 3)] {
        let shifted = at(step, |k| matches!(k, EventKind::TrafficShifted { .. }));
        assert!(shifted >= synced[change], "step {step} counted as shifted before its change was INSYNC");
    }
    for (bake, change) in [(0, 1), (1, 2)] {
        let started = at(bake, |k| matches!(k, EventKind::BakeStarted { .. }));
        assert!(
            started >= synced[change] + delay,
            "bake {bake} started {:?} after its change was in sync, before TTL + margin ({delay:?})",
            started.saturating_sub(synced[change])
        );
    }
    // The drain (batch 4 withdraws blue's values) ends no earlier than TTL + margin after it
    // was in sync: a resolver may hand out blue's addresses until then.
    let drained = at(0, |k| matches!(k, EventKind::TargetsDrained { .. }));
    assert!(drained >= synced[4] + delay, "blue counted as drained {:?} after its change synced", drained - synced[4]);
    let stopped = at(0, |k| matches!(k, EventKind::TargetsStopped { .. }));
    assert!(stopped >= synced[3] + delay, "old targets stopped {:?} after the last shift", stopped - synced[3]);
    assert!(stopped >= synced[4] + delay, "old targets stopped {:?} after their drain", stopped - synced[4]);
    let waits = events.iter().filter(|e| matches!(e.kind, EventKind::AwaitingPropagation { wait } if wait == delay));
    assert_eq!(waits.count(), 3, "a TTL wait after each of the three traffic steps");
}

/// A configured Route53 health check goes onto its pool's record set with every write; one an
/// operator put on a set is kept; a health check for a pool that is not listed is refused.
#[tokio::test(start_paused = true)]
async fn health_checks_are_attached_and_kept() {
    let fake = Fake::new();
    let router = Route53Router::builder_from_client(client(&fake.rules()), ZONE_ID, NAME)
        .pool("blue")
        .pool("green")
        .health_check("green", "hc-green")
        .build()
        .unwrap();
    blue_and_green(&router).await;
    // An operator attaches a health check to blue's set by hand.
    {
        let mut state = fake.state();
        let blue_set = state.sets.iter_mut().find(|s| s.set_identifier() == Some("blue")).unwrap();
        blue_set.health_check_id = Some("hc-operator".into());
    }
    router.set_split(&Split::between(&blue(), &green(), 10)).await.unwrap();
    let health: BTreeMap<String, Option<String>> = fake
        .state()
        .sets
        .iter()
        .filter(|s| s.name() == NAME)
        .map(|s| (s.set_identifier().unwrap_or("-").to_owned(), s.health_check_id().map(str::to_owned)))
        .collect();
    assert_eq!(health["green"].as_deref(), Some("hc-green"));
    assert_eq!(health["blue"].as_deref(), Some("hc-operator"));

    let err = Route53Router::builder_from_client(client(&fake.rules()), ZONE_ID, NAME)
        .pool("blue")
        .health_check("green", "hc-green")
        .build()
        .expect_err("green is no pool");
    assert_eq!(err.field(), Some("health_checks.green"), "{err}");
}

/// A wall clock on tokio's (paused) clock, shared by the routers of one test as the system time
/// is by two processes; it starts on a whole second, so recorded times are exact.
fn shared_clock() -> Clock {
    let (base, start) = (std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000), Instant::now());
    Arc::new(move || base + start.elapsed())
}

fn router_with_clock(client: Client, clock: &Clock) -> Route53Router {
    Route53Router::builder_from_client(client, ZONE_ID, NAME)
        .ttl(Duration::from_secs(60))
        .resolver_margin(Duration::from_secs(5))
        .change_timeout(Duration::from_secs(120))
        .poll_interval(Duration::from_secs(2))
        .clock(clock.clone())
        .pool("blue")
        .pool("green")
        .build()
        .unwrap()
}

async fn state_of(router: &Route53Router, pool: &PoolName, id: &str) -> Option<MemberState> {
    router.members(pool).await.unwrap().into_iter().find(|m| m.id.as_str() == id).map(|m| m.state)
}

/// A drain cut off in its TTL wait (the process dies): the member is recorded disabled with the
/// time its change was seen `INSYNC` (here 22 s after it was sent: the record is corrected after
/// the batch was `PENDING`), so another router (the resumed process) reports it `Draining`
/// until that time + TTL + margin, and its drain, with nothing left to write, waits exactly the
/// rest. Fails without the recorded time (the member reads `Disabled` and the drain returns at
/// once) and without the correction (the wait ends 22 s early).
#[tokio::test(start_paused = true)]
async fn a_drain_cut_off_in_its_ttl_wait_is_finished_by_the_resumed_drain() {
    let fake = Fake::new();
    let clock = shared_clock();
    let first = router_with_clock(client(&fake.rules()), &clock);
    blue_and_green(&first).await;
    first.add_targets(&blue(), &[target("b2", "10.0.0.12")]).await.unwrap();
    fake.set_pending(|_| Some(Duration::from_secs(20)));
    let before = fake.changes().len();
    let t0 = Instant::now();
    let (pool, ids) = (blue(), ["b1".into()]);
    let cut = tokio::time::timeout(Duration::from_secs(50), first.drain(&pool, &ids, Duration::from_secs(600)));
    assert!(cut.await.is_err(), "the drain must still be in its TTL wait at 50 s");
    let changes = fake.changes().split_off(before);
    let insync = changes[0].insync_at.expect("the drain's batch synced") - t0;
    println!("drain batch in sync at {insync:?}; {} batches", changes.len());
    assert_eq!(insync, Duration::from_secs(22), "polled at 0, 2, 6, 14, 22 s");
    let ends = t0 + insync + Duration::from_secs(65);

    // The resumed process: a new router, nothing in memory.
    let resumed = router_with_clock(client(&fake.rules()), &clock);
    assert_eq!(state_of(&resumed, &blue(), "b1").await, Some(MemberState::Draining));
    assert_eq!(state_of(&resumed, &blue(), "b2").await, Some(MemberState::Serving));
    let report = resumed.drain(&blue(), &["b1".into()], Duration::from_secs(600)).await.unwrap();
    let done = Instant::now();
    println!("resumed drain returned {:?} after t0 ({report:?})", done - t0);
    assert_eq!(resumed.change_batches_sent(), 0, "nothing left to write");
    assert!(!report.timed_out);
    assert!(done >= ends, "the resumed drain returned {:?} before the TTL wait ended", ends - done);
    assert!(done <= ends + Duration::from_secs(1), "{:?} late", done - ends);
    assert_eq!(state_of(&resumed, &blue(), "b1").await, Some(MemberState::Disabled));

    // members() alone: a drain cut off at once reads Draining until its time + TTL + margin.
    fake.set_pending(|_| Some(Duration::ZERO));
    let t1 = Instant::now();
    let (pool, ids) = (blue(), ["b2".into()]);
    let cut = tokio::time::timeout(Duration::from_secs(1), first.drain(&pool, &ids, Duration::from_secs(600)));
    assert!(cut.await.is_err());
    tokio::time::sleep_until(t1 + Duration::from_secs(64)).await;
    assert_eq!(state_of(&resumed, &blue(), "b2").await, Some(MemberState::Draining));
    tokio::time::sleep_until(t1 + Duration::from_secs(65)).await;
    assert_eq!(state_of(&resumed, &blue(), "b2").await, Some(MemberState::Disabled));
}

/// Record sets taken over with a TTL (300 s) above the configured one (60 s): resolvers keep
/// the answers from before the change that long, so the split change and the drain each wait
/// 300 s + margin after `INSYNC` (the split change on its own, as the executor waits only the
/// configured TTL + margin after it). Fails when the configured TTL is used instead.
#[tokio::test(start_paused = true)]
async fn a_longer_ttl_on_the_sets_before_a_change_is_waited_out() {
    let fake = Fake::new();
    let router = router(client(&fake.rules()), Duration::from_secs(60));
    blue_and_green(&router).await;
    let ttl_300 = |fake: &Fake| {
        for set in fake.state().sets.iter_mut().filter(|s| s.name() == NAME) {
            set.ttl = Some(300);
        }
    };
    ttl_300(&fake);
    let t0 = Instant::now();
    router.set_split(&Split::between(&blue(), &green(), 10)).await.unwrap();
    let waited = t0.elapsed();
    assert!((Duration::from_secs(305)..Duration::from_secs(306)).contains(&waited), "split change: {waited:?}");
    let ttls: Vec<Option<i64>> = fake.state().sets.iter().filter(|s| s.name() == NAME).map(|s| s.ttl).collect();
    assert_eq!(ttls, vec![Some(60), Some(60)], "the sets now have the configured TTL");

    // With the configured TTL on the sets, a split change leaves the wait to the caller.
    let t1 = Instant::now();
    router.set_split(&Split::between(&blue(), &green(), 20)).await.unwrap();
    assert!(t1.elapsed() < Duration::from_secs(1), "{:?}", t1.elapsed());

    ttl_300(&fake);
    let t2 = Instant::now();
    let report = router.drain(&blue(), &["b1".into()], Duration::from_secs(600)).await.unwrap();
    let waited = t2.elapsed();
    assert!(!report.timed_out);
    assert!((Duration::from_secs(305)..Duration::from_secs(307)).contains(&waited), "drain: {waited:?}");
}

fn delete_not_found() -> ChangeResourceRecordSetsError {
    let message = "Tried to delete resource record set [name='www.example.test.', type='A', set-identifier='green'] \
                   but it was not found";
    ChangeResourceRecordSetsError::InvalidChangeBatch(
        InvalidChangeBatch::builder()
            .messages(message)
            .meta(ErrorMetadata::builder().code("InvalidChangeBatch").build())
            .build(),
    )
}

/// A batch whose answer is lost after Route53 applied it (here: applied, then answered as a
/// retry of it would be: its DELETE finds nothing). That is a retryable error, and the re-run
/// finds nothing left to write. Fails when `InvalidChangeBatch` is mapped as permanent.
#[tokio::test(start_paused = true)]
async fn a_delete_already_applied_by_an_earlier_attempt_is_a_retryable_error() {
    let fake = Fake::new();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let applied_then_lost = {
        let (fake, fired) = (fake.clone(), fired.clone());
        mock!(Client::change_resource_record_sets)
            .match_requests(move |input| {
                let changes = input.change_batch().map(|b| b.changes()).unwrap_or_default();
                if fired.load(std::sync::atomic::Ordering::SeqCst)
                    || !changes.iter().any(|c| *c.action() == ChangeAction::Delete)
                {
                    return false;
                }
                fired.store(true, std::sync::atomic::Ordering::SeqCst);
                fake.apply(input);
                true
            })
            .then_error(delete_not_found)
    };
    let mut rules = vec![applied_then_lost.clone()];
    rules.extend(fake.rules());
    let router = router(client(&rules), Duration::from_secs(60));
    blue_and_green(&router).await;
    let err = router.remove_targets(&green(), &["g1".into()]).await.expect_err("the lost answer");
    println!("{err}");
    assert_eq!(applied_then_lost.num_calls(), 1);
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("InvalidChangeBatch") && err.to_string().contains("not found"), "{err}");
    let batches = router.change_batches_sent();
    router.remove_targets(&green(), &["g1".into()]).await.expect("the re-run");
    assert_eq!(router.change_batches_sent(), batches, "nothing left to write");
    assert!(router.members(&green()).await.unwrap().is_empty());
    assert_eq!(fake.weights(), BTreeMap::from([("blue".into(), 100)]));
}
