//! `Route53Router` with the real aws-sdk-route53 client against moto server (see `moto/mod.rs`):
//! the core router conformance suite, blue-green and a 10 → 50 → 100 canary through the core
//! `Executor` (one change batch per traffic step, weights read back from the zone, the TTL waits
//! in the event log), a failing canary whose rollback restores the exact record sets, and bad
//! input refused before any change batch.
//!
//! The executor tests use the simulator's fleet and probe (no real servers behind the records)
//! with IPv4 addresses, because what is under test is the record sets, not the targets.
//!
//! Moto answers every change `INSYNC` at once (the `PENDING` path is in `route53_mocks.rs`), does
//! not check weights (0–255), duplicate values or that a DELETE matches exactly, and deletes every
//! record set with the DELETE's `SetIdentifier` whatever its name: the router only ever deletes
//! sets it read, and keeps its bookkeeping in unweighted TXT sets, so none of this shows here.
//!
//! Built with the `route53` feature (`cargo test -p bluegreen-dns --features route53`; the
//! workspace build has it through bluegreen-cli).

#![cfg(feature = "route53")]

mod moto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Canary, DrainPolicy, Error, EventKind, Executor, FnAnalysis, HealthPolicy, MemorySink, PoolName,
    ProvisionRequest, Router, ShiftStep, Spec, Split, Status, Strategy, Target, Verdict,
};
use bluegreen_dns::{Route53RecordType, Route53Router, Route53RouterBuilder};
use bluegreen_testkit::moto::MotoServer;
use moto::{weights_at, zone_listing, Counting, Route53Moto, IPV4_FROM, NAME, ZONE};

const TTL: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(200);

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

async fn setup(moto: &MotoServer) -> (SdkConfig, aws_sdk_route53::Client, String) {
    let sdk = moto.config().load().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone = moto.create_zone(&client, ZONE).await;
    (sdk, client, zone)
}

fn builder(sdk: &SdkConfig, zone: &str) -> Route53RouterBuilder {
    Route53Router::builder(sdk, zone, NAME)
        .ttl(TTL)
        .resolver_margin(MARGIN)
        .poll_interval(Duration::from_millis(50))
        .pool("blue")
        .pool("green")
}

fn target(id: &str, ip: &str) -> Target {
    Target { id: id.into(), address: format!("{ip}:8080"), zone: None, version: "v1".into(), tag: None }
}

fn health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    }
}

/// A sim fleet with two v1 targets serving as pool blue at 100%.
async fn serving_blue(router: &Route53Router) -> (Sim, Arc<dyn bluegreen_core::Fleet>) {
    let sim = Sim::builder().ipv4_addresses(IPV4_FROM, 8080).build();
    let fleet = sim.fleet();
    let request = ProvisionRequest { version: "v1".into(), count: 2, zones: Vec::new(), tag: "web/v1/initial".into() };
    let initial = fleet.provision(&request).await.unwrap();
    router.add_targets(&blue(), &initial).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    (sim, fleet)
}

fn waits(sink: &MemorySink) -> Vec<Duration> {
    sink.events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AwaitingPropagation { wait } => Some(*wait),
            _ => None,
        })
        .collect()
}

fn print_log(sink: &MemorySink) {
    for event in sink.events() {
        println!("  {event}");
    }
}

#[tokio::test]
async fn route53_router_passes_the_router_suite() {
    let Some(moto) = MotoServer::start() else { return };
    let (sdk, _, zone) = setup(&moto).await;
    let router = builder(&sdk, &zone).build().unwrap();
    let targets = vec![target("c1", "10.0.0.31"), target("c2", "10.0.0.32")];
    router_suite(&router, &RouterFixture { pools: [blue(), green()], targets }).await;
}

#[tokio::test]
async fn a_split_is_one_batch_of_weighted_record_sets_read_back_from_the_zone() {
    let Some(moto) = MotoServer::start() else { return };
    let (sdk, client, zone) = setup(&moto).await;
    let router = builder(&sdk, &zone).build().unwrap();
    router.add_targets(&blue(), &[target("b1", "10.0.0.11"), target("b2", "10.0.0.12")]).await.unwrap();
    router.add_targets(&green(), &[target("g1", "10.0.1.11")]).await.unwrap();
    assert!(weights_at(&client, &zone, NAME).await.is_empty(), "membership alone serves nothing");
    assert_eq!(router.members(&blue()).await.unwrap().len(), 2, "ids read back from the TXT records");

    for percent in [0, 10, 50, 100, 0] {
        let split = Split::between(&blue(), &green(), percent);
        let before = router.change_batches_sent();
        router.set_split(&split).await.unwrap();
        let sent = router.change_batches_sent() - before;
        let weights = weights_at(&client, &zone, NAME).await;
        println!("{split}: {sent} batch(es), {weights:?}");
        assert_eq!(weights["blue"].0, i64::from(100 - percent), "{weights:?}");
        assert_eq!(weights["green"].0, i64::from(percent), "{weights:?}");
        assert_eq!(weights["blue"].1, ["10.0.0.11", "10.0.0.12"]);
        assert_eq!(weights["green"].1, ["10.0.1.11"]);
        assert!(router.split().await.unwrap().same_traffic(&split));
        assert!(sent <= 1, "one change batch per split, not {sent}");
        router.set_split(&split).await.unwrap();
        assert_eq!(router.change_batches_sent() - before, sent, "a split already served sends nothing");
    }
    // Another router (another process) reads the same split and members from the zone.
    let other = builder(&sdk, &zone).build().unwrap();
    assert!(other.split().await.unwrap().same_traffic(&Split::all_to(&blue())));
    assert_eq!(other.members(&green()).await.unwrap()[0].id.as_str(), "g1");
}

async fn deploy(
    moto: &MotoServer,
    strategy: Strategy,
    fail_at: Option<u32>,
) -> (Counting, MemorySink, bluegreen_core::Outcome, Vec<String>, Vec<String>, Duration) {
    let (sdk, client, zone) = setup(moto).await;
    let router = builder(&sdk, &zone).build().unwrap();
    let (sim, fleet) = serving_blue(&router).await;
    let before = zone_listing(&client, &zone).await;
    let counting = Counting::new(router.clone());
    let sink = MemorySink::new();
    let mut builder = Executor::builder(counting.recording.clone(), fleet, sim.probe()).sink(sink.clone());
    if let Some(limit) = fail_at {
        let watched = router.clone();
        builder = builder.analysis(FnAnalysis::new("error-rate", move |_| {
            let watched = watched.clone();
            async move {
                let green = watched.split().await.map(|s| s.weight(&"green".into())).unwrap_or(0);
                if green >= limit {
                    Verdict::Fail { reason: format!("error rate 7% at {green}%") }
                } else {
                    Verdict::Pass
                }
            }
        }));
    }
    let executor = builder.build();
    let spec = Spec::new("web", "v2", strategy)
        .with_health(health())
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) });
    println!("{}", executor.plan(&spec).await.unwrap().timeline());
    let started = Instant::now();
    let outcome = executor.deploy(&spec).await.unwrap();
    let took = started.elapsed();
    println!("== {} in {took:?} (reason: {:?})", outcome.status, outcome.reason);
    print_log(&sink);
    let after = zone_listing(&client, &zone).await;
    (counting, sink, outcome, before, after, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_blue_green_switches_in_one_batch_and_waits_the_ttl() {
    let Some(moto) = MotoServer::start() else { return };
    let strategy = Strategy::BlueGreen(BlueGreen::default());
    let (counting, sink, outcome, _, _, took) = deploy(&moto, strategy, None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let calls = counting.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].batches, 1, "the switch is one change batch: {calls:?}");
    assert!(counting.router.split().await.unwrap().same_traffic(&Split::all_to(&green())));
    assert!(counting.router.members(&blue()).await.unwrap().is_empty(), "the old pool was detached");

    let delay = TTL + MARGIN;
    assert_eq!(waits(&sink), [delay], "one traffic step, one TTL wait");
    let events = sink.events();
    let at = |matches: fn(&EventKind) -> bool| events.iter().find(|e| matches(&e.kind)).unwrap().at;
    let shifted = at(|k| matches!(k, EventKind::TrafficShifted { .. }));
    let drain_started = at(|k| matches!(k, EventKind::DrainStarted { .. }));
    let stopped = at(|k| matches!(k, EventKind::TargetsStopped { .. }));
    assert!(drain_started >= shifted + delay, "the drain began {:?} after the switch", drain_started - shifted);
    assert!(stopped >= drain_started + delay, "old targets stopped {:?} into the drain", stopped - drain_started);
    assert!(took >= delay * 2, "two TTL waits: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_canary_10_50_100_is_one_batch_per_step_with_a_ttl_wait_each() {
    let Some(moto) = MotoServer::start() else { return };
    let bake = Duration::from_millis(100);
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake }, ShiftStep { percent: 50, bake }, ShiftStep { percent: 100, bake }],
        ..Canary::default()
    };
    let (counting, sink, outcome, _, after, _) = deploy(&moto, Strategy::Canary(canary), None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let calls = counting.calls();
    let greens: Vec<u32> = calls.iter().map(|c| c.split.weight(&green())).collect();
    assert_eq!(greens, [10, 50, 100], "{calls:?}");
    assert!(calls.iter().all(|c| c.batches == 1), "one change batch per step: {calls:?}");
    // Each step was read back by the executor (TrafficShifted carries the split read back).
    let shifted: Vec<u32> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrafficShifted { to, .. } => Some(to.weight(&green())),
            _ => None,
        })
        .collect();
    assert_eq!(shifted, [10, 50, 100]);
    assert_eq!(waits(&sink), [TTL + MARGIN; 3], "a TTL wait after every step");
    // The zone serves green alone; blue's record set and members are gone.
    let lines = after.join("\n");
    assert!(lines.contains("set_identifier: Some(\"green\"), weight: Some(100)"), "{lines}");
    assert!(!lines.contains("set_identifier: Some(\"blue\")"), "{lines}");
    assert!(!lines.contains("pool-blue"), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_at_50_percent_rolls_back_to_the_exact_prior_record_sets() {
    let Some(moto) = MotoServer::start() else { return };
    let bake = Duration::from_millis(300);
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake }, ShiftStep { percent: 50, bake }, ShiftStep { percent: 100, bake }],
        ..Canary::default()
    };
    let (counting, sink, outcome, before, after, _) = deploy(&moto, Strategy::Canary(canary), Some(50)).await;
    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    assert!(outcome.reason.unwrap_or_default().contains("error rate 7% at 50%"));
    let greens: Vec<u32> = counting.calls().iter().map(|c| c.split.weight(&green())).collect();
    assert_eq!(greens, [10, 50, 0], "forward to 50%, then straight back");
    assert!(counting.calls().iter().all(|c| c.batches == 1), "{:?}", counting.calls());
    assert_eq!(after, before, "the record sets read back exactly as before the deploy (invariant 4)");
    assert!(waits(&sink).len() >= 3, "the rollback's step waits the TTL too: {:?}", waits(&sink));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_change_batch() {
    let Some(moto) = MotoServer::start() else { return };
    let (sdk, client, zone) = setup(&moto).await;
    let other_zone = moto.create_zone(&client, "other.test.").await;
    let router = builder(&sdk, &zone).build().unwrap();
    router.add_targets(&blue(), &[target("b1", "10.0.0.11")]).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    let listing = zone_listing(&client, &zone).await;

    // Settings refused by build(), before any call.
    let cases: Vec<(&str, Route53RouterBuilder)> = vec![
        ("ttl", builder(&sdk, &zone).ttl(Duration::ZERO)),
        ("ttl", builder(&sdk, &zone).ttl(Duration::from_secs(86_401))),
        ("ttl", builder(&sdk, &zone).ttl(Duration::from_millis(1500))),
        ("hosted_zone_id", builder(&sdk, "not a zone!")),
        ("record_name", Route53Router::builder(&sdk, &zone, "bad name.example.test").pool("blue")),
        ("pools", Route53Router::builder(&sdk, &zone, NAME)),
        ("pools[2]", builder(&sdk, &zone).pool("Bad Pool")),
        ("pools[2]", builder(&sdk, &zone).pool("blue")),
    ];
    for (field, b) in cases {
        let err = b.build().expect_err(field);
        println!("refused: {err}");
        assert_eq!(err.field(), Some(field), "{err}");
    }
    let long = builder(&sdk, &zone).ttl(Duration::from_secs(172_800)).allow_any_ttl().build().unwrap();
    assert_eq!(long.capabilities().propagation_delay, Duration::from_secs(172_800) + MARGIN);

    // An unknown hosted zone: NotFound naming it, for reads and writes.
    let ghost = Route53Router::builder(&sdk, "ZNOSUCHZONE0", NAME).pool("blue").build().unwrap();
    let err = ghost.set_split(&Split::all_to(&blue())).await.expect_err("unknown zone");
    println!("refused: {err}");
    assert!(matches!(&err, Error::NotFound { what } if what.contains("hosted zone ZNOSUCHZONE0")), "{err}");
    let err = ghost.add_targets(&blue(), &[target("b9", "10.0.0.99")]).await.expect_err("unknown zone");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(ghost.change_batches_sent(), 0);

    // A record name outside the zone (in another zone of the account).
    let misplaced = Route53Router::builder(&sdk, &other_zone, NAME).pool("blue").build().unwrap();
    let err = misplaced.set_split(&Split::all_to(&blue())).await.expect_err("outside the zone");
    println!("refused: {err}");
    assert_eq!(err.field(), Some("record_name"), "{err}");
    assert!(err.to_string().contains("other.test."), "{err}");
    assert_eq!(misplaced.change_batches_sent(), 0);

    // Splits the router cannot serve, on a router of the right zone.
    let fresh = builder(&sdk, &zone).build().unwrap();
    let out_of_range: Split = serde_json::from_value(serde_json::json!({ "blue": 1000, "green": 0 })).unwrap();
    let short: Split = serde_json::from_value(serde_json::json!({ "blue": 50, "green": 30 })).unwrap();
    for (what, split) in [("weight 1000", out_of_range), ("weights sum to 80", short)] {
        let err = fresh.set_split(&split).await.expect_err(what);
        println!("refused ({what}): {err}");
        assert!(matches!(err, Error::Invalid { .. }), "{what}: {err}");
    }
    let err = fresh.set_split(&Split::between(&blue(), &green(), 10)).await.expect_err("green has no records");
    println!("refused: {err}");
    assert!(matches!(&err, Error::Invalid { reason, .. } if reason.contains("pool green")), "{err}");
    let err = fresh.set_split(&Split::all_to(&"purple".into())).await.expect_err("unknown pool");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let sim_target = Target { id: "t".into(), address: "sim:t".into(), zone: None, version: "v1".into(), tag: None };
    let err = fresh.add_targets(&green(), &[sim_target]).await.expect_err("not an IPv4 address");
    assert_eq!(err.field(), Some("targets[0].address"), "{err}");
    let err = fresh.drain(&blue(), &["nobody".into()], Duration::from_secs(1)).await.expect_err("not a member");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(fresh.change_batches_sent(), 0, "no change batch was sent");
    assert_eq!(zone_listing(&client, &zone).await, listing, "the zone is unchanged");
}

#[tokio::test]
async fn aaaa_pools_take_ipv6_targets_and_refuse_ipv4() {
    let Some(moto) = MotoServer::start() else { return };
    let (sdk, client, zone) = setup(&moto).await;
    let router = builder(&sdk, &zone).record_type(Route53RecordType::Aaaa).build().unwrap();
    let v6 = |id: &str, ip: &str| Target {
        id: id.into(),
        address: format!("[{ip}]:8080"),
        zone: None,
        version: "v1".into(),
        tag: None,
    };
    router.add_targets(&blue(), &[v6("b1", "fd00::11")]).await.unwrap();
    router.add_targets(&green(), &[v6("g1", "fd00::21")]).await.unwrap();
    let err = router.add_targets(&green(), &[target("g2", "10.0.1.12")]).await.expect_err("IPv4 in AAAA");
    assert_eq!(err.field(), Some("targets[0].address"), "{err}");
    router.set_split(&Split::between(&blue(), &green(), 50)).await.unwrap();
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(&zone)
        .start_record_name(NAME)
        .start_record_type(aws_sdk_route53::types::RrType::Aaaa)
        .send()
        .await
        .unwrap();
    let sets: Vec<(String, i64, String)> = out
        .resource_record_sets()
        .iter()
        .filter(|s| s.name() == NAME && s.r#type().as_str() == "AAAA")
        .map(|s| {
            let value = s.resource_records()[0].value().to_owned();
            (s.set_identifier().unwrap_or("-").to_owned(), s.weight().unwrap_or(-1), value)
        })
        .collect();
    assert_eq!(sets, [("blue".into(), 50, "fd00::11".into()), ("green".into(), 50, "fd00::21".into())]);
    assert!(router.split().await.unwrap().same_traffic(&Split::between(&blue(), &green(), 50)));
}

/// Writes one record set at `NAME` directly (as an operator or another tool would).
async fn put(client: &aws_sdk_route53::Client, zone: &str, set_id: Option<&str>, weight: i64, ip: &str) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    let mut set = ResourceRecordSet::builder()
        .name(NAME)
        .r#type(RrType::A)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(ip).build().unwrap());
    if let Some(id) = set_id {
        set = set.set_identifier(id).weight(weight);
    }
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(set.build().unwrap());
    let batch = ChangeBatch::builder().changes(change.build().unwrap()).build().unwrap();
    client.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await.unwrap();
}

#[tokio::test]
async fn record_sets_bluegreen_does_not_own_are_kept_reported_or_refused() {
    let Some(moto) = MotoServer::start() else { return };
    let (sdk, client, zone) = setup(&moto).await;
    let router = builder(&sdk, &zone).build().unwrap();
    // A weighted set named like a pool, made before bluegreen, with an address no member has.
    put(&client, &zone, Some("blue"), 100, "10.0.0.99").await;
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&blue())));
    router.add_targets(&blue(), &[target("b1", "10.0.0.11")]).await.unwrap();
    assert_eq!(weights_at(&client, &zone, NAME).await["blue"], (100, vec!["10.0.0.11".into(), "10.0.0.99".into()]));

    // A weighted set of another owner: reported by its identifier, left alone at weight 0,
    // and a split change is refused while it gets traffic.
    put(&client, &zone, Some("legacy"), 0, "10.0.9.1").await;
    router.add_targets(&green(), &[target("g1", "10.0.1.11")]).await.unwrap();
    router.set_split(&Split::between(&blue(), &green(), 10)).await.unwrap();
    let split = router.split().await.unwrap();
    assert_eq!((split.weight(&"legacy".into()), split.weight(&green())), (0, 10), "{split}");
    put(&client, &zone, Some("legacy"), 100, "10.0.9.1").await;
    let split = router.split().await.unwrap();
    assert_eq!(split.weight(&"legacy".into()), 50, "Route53 sends it half the answers: {split}");
    let before = router.change_batches_sent();
    let err = router.set_split(&Split::all_to(&green())).await.expect_err("legacy gets traffic");
    println!("refused: {err}");
    assert!(matches!(&err, Error::Drift { what } if what.contains("legacy")), "{err}");
    assert_eq!(router.change_batches_sent(), before);

    // A simple record at the name (moto accepts it next to weighted ones; Route53 does not).
    put(&client, &zone, None, 0, "10.0.9.2").await;
    let err = router.split().await.expect_err("a simple record");
    assert!(matches!(&err, Error::Drift { what } if what.contains("simple")), "{err}");
}
