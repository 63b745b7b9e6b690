//! The RFC 2136 router and the propagation check against real knot servers on 127.0.0.1
//! (feature `rfc2136`, on by default).

#![cfg(feature = "rfc2136")]

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, DrainPolicy, Error, EventKind, Executor, HealthPolicy, MemorySink, PoolName, ProvisionRequest, Router,
    Spec, Split, Status, Strategy, Target,
};
use bluegreen_dns::{PropagationCheck, Rfc2136Router, Rfc2136RouterBuilder, TsigKey};
use common::{ips, key, knot_or_skip, Knot, KEY_NAME, MARGIN, NAME, TTL, WRONG_SECRET, ZONE};

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

fn router_for(knot: &Knot) -> Rfc2136RouterBuilder {
    common::router_builder(knot.addr)
}

fn target(id: &str, ip: &str) -> Target {
    Target { id: id.into(), address: format!("{ip}:8080"), zone: None, version: "v1".into(), tag: None }
}

/// What `knot` serves at the name, asked directly.
async fn served_by(knot: &Knot) -> BTreeSet<Ipv4Addr> {
    let report = PropagationCheck::new(NAME).unwrap().server(&knot.label, knot.addr).check(&BTreeSet::new()).await;
    report.answers[0].observed.clone().unwrap()
}

fn set(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    ips(list).into_iter().collect()
}

#[tokio::test]
async fn blue_green_switch_by_rfc2136_with_tsig_reads_back() {
    if !knot_or_skip("blue_green_switch_by_rfc2136_with_tsig_reads_back") {
        return;
    }
    let primary = Knot::start("ns1", &[], true);
    let router = router_for(&primary).build().unwrap();
    router.add_targets(&blue(), &[target("b1", "127.0.0.11"), target("b2", "127.0.0.12")]).await.unwrap();
    router.add_targets(&green(), &[target("g1", "127.0.0.21"), target("g2", "127.0.0.22")]).await.unwrap();
    assert!(served_by(&primary).await.is_empty(), "membership alone serves nothing");

    router.set_split(&Split::all_to(&blue())).await.unwrap();
    assert_eq!(served_by(&primary).await, set(&["127.0.0.11", "127.0.0.12"]));
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&blue())));

    // The switch: one UPDATE message, read back from the server.
    let before = router.updates_sent();
    router.set_split(&Split::all_to(&green())).await.unwrap();
    assert_eq!(router.updates_sent(), before + 1, "a blue-green switch is one UPDATE message");
    assert_eq!(served_by(&primary).await, set(&["127.0.0.21", "127.0.0.22"]));
    let read = router.split().await.unwrap();
    assert!(read.same_traffic(&Split::all_to(&green())), "read back {read}");

    // Idempotent: asking again sends nothing.
    router.set_split(&Split::all_to(&green())).await.unwrap();
    assert_eq!(router.updates_sent(), before + 1, "a split already served sends no message");

    // 50/50 by multiplicity: two records of each pool.
    router.set_split(&Split::between(&blue(), &green(), 50)).await.unwrap();
    assert_eq!(served_by(&primary).await.len(), 4);
    assert!(router.split().await.unwrap().same_traffic(&Split::between(&blue(), &green(), 50)));

    // A router that did not write the records reads the same split (state lives in the zone).
    let other = router_for(&primary).build().unwrap();
    assert!(other.split().await.unwrap().same_traffic(&Split::between(&blue(), &green(), 50)));
}

#[tokio::test]
async fn wrong_tsig_key_is_refused_with_a_clear_error_and_nothing_changes() {
    if !knot_or_skip("wrong_tsig_key_is_refused_with_a_clear_error_and_nothing_changes") {
        return;
    }
    let primary = Knot::start("ns1", &[], true);
    let router = router_for(&primary).build().unwrap();
    router.add_targets(&blue(), &[target("b1", "127.0.0.11")]).await.unwrap();
    router.add_targets(&green(), &[target("g1", "127.0.0.21")]).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();

    for (what, key) in [
        ("wrong secret", TsigKey::hmac_sha256(KEY_NAME, WRONG_SECRET).unwrap()),
        ("unknown key name", TsigKey::hmac_sha256("no-such-key.", common::KEY_SECRET).unwrap()),
    ] {
        let bad = router_for(&primary).tsig(key).build().unwrap();
        let err = bad.set_split(&Split::all_to(&green())).await.expect_err("a wrong key must be refused");
        println!("{what}: {err}");
        match &err {
            Error::Backend { message, retryable, .. } => {
                assert!(!retryable, "{what}: a refused key is permanent: {err}");
                assert!(message.contains(&primary.addr.to_string()), "{what}: the error names the server: {err}");
                assert!(message.contains("NOTAUTH"), "{what}: the error names the rcode: {err}");
            }
            other => panic!("{what}: expected a backend error, got {other}"),
        }
        assert!(!err.is_retryable());
    }
    assert_eq!(served_by(&primary).await, set(&["127.0.0.11"]), "nothing changed");
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&blue())));

    // A server that knows the key but has no ACL letting it update the zone.
    let no_acl = Knot::start("ns2", &[], false);
    let err = router_for(&no_acl).build().unwrap().add_targets(&blue(), &[target("b1", "127.0.0.11")]).await;
    let err = err.expect_err("no update ACL");
    println!("no ACL: {err}");
    match &err {
        Error::Backend { message, retryable: false, .. } => {
            assert!(message.contains(&no_acl.addr.to_string()), "{err}");
            assert!(message.contains("REFUSED") || message.contains("NOTAUTH"), "{err}");
        }
        other => panic!("no ACL: expected a permanent backend error, got {other}"),
    }
    assert!(served_by(&no_acl).await.is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_before_any_message() {
    // No server listens on the discard port: any message sent would fail differently.
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let builder = || Rfc2136Router::builder(nowhere, ZONE, NAME).tsig(key()).pool("blue").pool("green");
    let cases: Vec<(&str, Rfc2136RouterBuilder)> = vec![
        ("name", Rfc2136Router::builder(nowhere, ZONE, "www.example.org.").tsig(key()).pool("blue")),
        ("ttl", builder().ttl(Duration::ZERO)),
        ("ttl", builder().ttl(Duration::from_secs(86_401))),
        ("ttl", builder().ttl(Duration::from_millis(1500))),
        ("tsig", Rfc2136Router::builder(nowhere, ZONE, NAME).pool("blue")),
        ("weight_granularity", builder().weight_granularity(30)),
        ("pools[2]", builder().pool("Bad Pool")),
    ];
    for (field, b) in cases {
        let err = b.build().expect_err(field);
        assert_eq!(err.field(), Some(field), "{err}");
        println!("refused: {err}");
    }
    assert!(matches!(TsigKey::hmac_sha256(KEY_NAME, "not base64!"), Err(Error::Invalid { .. })));

    let router = builder().ttl(Duration::from_secs(86_400)).build().unwrap();
    let err = router.set_split(&Split::between(&blue(), &green(), 30)).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    let err = router.set_split(&Split::all_to(&"red".into())).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let sim_target = Target { id: "t".into(), address: "sim:t".into(), zone: None, version: "v1".into(), tag: None };
    let err = router.add_targets(&blue(), &[sim_target]).await.unwrap_err();
    assert_eq!(err.field(), Some("targets[0].address"), "{err}");
    assert_eq!(router.updates_sent(), 0, "no message was sent");
    assert_eq!(router.capabilities().propagation_delay, Duration::from_secs(86_405));
    assert_eq!(router.capabilities().weight_granularity, 50);
}

#[tokio::test]
async fn propagation_check_waits_for_the_lagging_server_and_names_it() {
    if !knot_or_skip("propagation_check_waits_for_the_lagging_server_and_names_it") {
        return;
    }
    let primary = Knot::start("ns1.example.test.", &[], true);
    let mut lagging = Knot::start("ns2.example.test.", &[], false);
    let servers = [(primary.label.clone(), primary.addr), (lagging.label.clone(), lagging.addr)];
    let router = router_for(&primary).authoritatives(servers.clone(), Duration::from_secs(1)).build().unwrap();
    let blue_targets = [target("b1", "127.0.0.11"), target("b2", "127.0.0.12")];
    router.add_targets(&blue(), &blue_targets).await.unwrap();

    // The primary takes the update; the second server never gets it: the write is not in
    // sync, and the error names the laggard and what it serves.
    let err = router.set_split(&Split::all_to(&blue())).await.expect_err("ns2 lags");
    println!("{err}");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("ns2.example.test.") && message.contains(&lagging.addr.to_string()), "{message}");
    assert!(!message.contains(&format!("ns1.example.test. ({})", primary.addr)), "ns1 is in sync: {message}");

    let expected = set(&["127.0.0.11", "127.0.0.12"]);
    let mut check = PropagationCheck::new(NAME).unwrap().interval(Duration::from_millis(100));
    for (label, addr) in &servers {
        check = check.server(label.clone(), *addr);
    }
    let report = check.check(&expected).await;
    let laggards: Vec<&str> = report.laggards().iter().map(|a| a.server.as_str()).collect();
    assert_eq!(laggards, ["ns2.example.test."]);

    // ns2 catches up 1.5 s later; the check waits for it.
    let started = Instant::now();
    let catch_up = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        lagging.serve(&ips(&["127.0.0.11", "127.0.0.12"]));
        lagging
    });
    let report = check.wait(&expected, Duration::from_secs(15)).await.unwrap();
    let waited = started.elapsed();
    let _lagging = catch_up.await.unwrap();
    assert!(report.all_agree());
    assert!(waited >= Duration::from_millis(1400), "the check returned before ns2 caught up ({waited:?})");
    println!("all authoritative servers agreed after {waited:?}");

    // Now every write is in sync everywhere it is read, so the router's own wait succeeds.
    router.set_split(&Split::all_to(&blue())).await.unwrap();

    // NS discovery: both NS names of the zone are found (both point at 127.0.0.1; tests
    // give the port).
    let found = PropagationCheck::new(NAME).unwrap().discover(ZONE, primary.addr, primary.addr.port()).await.unwrap();
    let labels: Vec<&str> = found.servers().iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["ns1.example.test.", "ns2.example.test."]);
}

#[tokio::test]
async fn the_rfc2136_router_conforms() {
    if !knot_or_skip("the_rfc2136_router_conforms") {
        return;
    }
    let primary = Knot::start("ns1", &[], true);
    let router = router_for(&primary).build().unwrap();
    let targets = vec![target("c1", "127.0.0.31"), target("c2", "127.0.0.32")];
    router_suite(&router, &RouterFixture { pools: [blue(), green()], targets }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_blue_green_between_two_record_sets_waits_the_ttl() {
    if !knot_or_skip("executor_blue_green_between_two_record_sets_waits_the_ttl") {
        return;
    }
    // A primary and a secondary that follows it by NOTIFY + IXFR: every write waits until
    // both serve it, then the TTL.
    let (primary, secondary) = Knot::primary_and_secondary(&[]);
    let servers = [(primary.label.clone(), primary.addr), (secondary.label.clone(), secondary.addr)];
    let router = router_for(&primary).authoritatives(servers, Duration::from_secs(10)).build().unwrap();
    // The simulator's fleet with loopback addresses (127.0.1.x), so its targets can be A records.
    let sim = Sim::builder().ipv4_addresses(Ipv4Addr::new(127, 0, 1, 1), 8080).build();
    let fleet = sim.fleet();
    let request = ProvisionRequest { version: "v1".into(), count: 2, zones: Vec::new(), tag: "web/v1/initial".into() };
    let initial = fleet.provision(&request).await.unwrap();
    router.add_targets(&blue(), &initial).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    let old: BTreeSet<Ipv4Addr> = served_by(&primary).await;
    assert_eq!(old.len(), 2);

    let sink = MemorySink::new();
    let executor = Executor::builder(Arc::new(router.clone()), fleet.clone(), sim.probe()).sink(sink.clone()).build();
    let health = HealthPolicy {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    };
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))
        .with_health(health)
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) });
    let plan = executor.plan(&spec).await.unwrap();
    println!("{}", plan.timeline());
    let started = Instant::now();
    let outcome = executor.deploy(&spec).await.unwrap();
    let took = started.elapsed();
    println!("== {} in {took:?} (reason: {:?})", outcome.status, outcome.reason);
    for event in sink.events() {
        println!("  {event}");
    }
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);

    let new = served_by(&primary).await;
    assert_eq!(new.len(), 2);
    assert_eq!(served_by(&secondary).await, new, "the secondary serves the new set too");
    assert!(new.is_disjoint(&old), "the new record set replaced the old one: {old:?} → {new:?}");
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&green())));
    assert!(router.members(&blue()).await.unwrap().is_empty(), "the old pool was detached");

    // TTL pacing: the switch waited TTL + margin before it counted, and the old pool was
    // drained for at least as long before it was retired.
    let delay = TTL + MARGIN;
    let events = sink.events();
    let waits: Vec<Duration> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AwaitingPropagation { wait } => Some(*wait),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [delay], "one traffic step, one TTL wait");
    // The old records left the answer at the switch; the old targets are stopped only after
    // the switch's TTL wait (the drain after it withdraws nothing, so it waits nothing more).
    let at = |matches: fn(&EventKind) -> bool| events.iter().find(|e| matches(&e.kind)).unwrap().at;
    let shifted = at(|k| matches!(k, EventKind::TrafficShifted { .. }));
    let drain_started = at(|k| matches!(k, EventKind::DrainStarted { .. }));
    let stopped = at(|k| matches!(k, EventKind::TargetsStopped { .. }));
    assert!(drain_started >= shifted + delay, "the drain began {:?} after the switch", drain_started - shifted);
    assert!(stopped >= shifted + delay, "the old targets were stopped {:?} after the switch", stopped - shifted);
    assert!(took >= delay && took < delay * 2, "one TTL wait: {took:?}");
}

/// A TCP relay in front of the primary that, before relaying the first UPDATE message, runs
/// `interleave` (another writer's change): a deterministic race.
async fn relay_with_interleaved_writer(
    primary: std::net::SocketAddr,
    interleave: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut interleave = Some(Box::pin(interleave));
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let mut prefix = [0u8; 2];
            if client.read_exact(&mut prefix).await.is_err() {
                continue;
            }
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            if client.read_exact(&mut request).await.is_err() {
                continue;
            }
            let is_update = request.len() > 2 && (request[2] >> 3) & 0x0f == 5;
            if is_update {
                if let Some(writer) = interleave.take() {
                    writer.await;
                }
            }
            let mut upstream = tokio::net::TcpStream::connect(primary).await.unwrap();
            upstream.write_all(&prefix).await.unwrap();
            upstream.write_all(&request).await.unwrap();
            let mut answer_prefix = [0u8; 2];
            upstream.read_exact(&mut answer_prefix).await.unwrap();
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(answer_prefix))];
            upstream.read_exact(&mut answer).await.unwrap();
            let _ = client.write_all(&answer_prefix).await;
            let _ = client.write_all(&answer).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_concurrent_change_fails_the_prerequisite_and_is_not_overwritten() {
    if !knot_or_skip("a_concurrent_change_fails_the_prerequisite_and_is_not_overwritten") {
        return;
    }
    let primary = Knot::start("ns1", &[], true);
    let direct = router_for(&primary).build().unwrap();
    direct.add_targets(&blue(), &[target("b1", "127.0.0.11")]).await.unwrap();
    direct.add_targets(&green(), &[target("g1", "127.0.0.21")]).await.unwrap();
    direct.set_split(&Split::all_to(&blue())).await.unwrap();

    // Between our read and our UPDATE, another writer switches to green.
    let other = direct.clone();
    let relay = relay_with_interleaved_writer(primary.addr, async move {
        other.set_split(&Split::all_to(&green())).await.unwrap();
    })
    .await;
    let racing = Rfc2136Router::builder(relay, ZONE, NAME).tsig(key()).ttl(TTL).pool("blue").pool("green").build();
    let racing = racing.unwrap();
    let err = racing.set_split(&Split::between(&blue(), &green(), 50)).await.expect_err("the prerequisite must fail");
    println!("{err}");
    // Nothing was changed, and a new attempt (which reads the zone again) may go ahead.
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("NXRRSET"), "{err}");
    // The other writer's change stands.
    assert_eq!(served_by(&primary).await, set(&["127.0.0.21"]));
    assert!(direct.split().await.unwrap().same_traffic(&Split::all_to(&green())));
}

#[tokio::test]
async fn records_that_predate_bluegreen_are_adopted_by_the_pool_that_lists_them() {
    if !knot_or_skip("records_that_predate_bluegreen_are_adopted_by_the_pool_that_lists_them") {
        return;
    }
    let primary = Knot::start("ns1", &ips(&["127.0.0.11", "127.0.0.12"]), true);
    let router = router_for(&primary).build().unwrap();
    let err = router.split().await.expect_err("addresses in no pool");
    assert!(matches!(err, Error::Drift { .. }) && err.to_string().contains("127.0.0.11"), "{err}");
    router.add_targets(&blue(), &[target("b1", "127.0.0.11"), target("b2", "127.0.0.12")]).await.unwrap();
    assert!(router.split().await.unwrap().same_traffic(&Split::all_to(&blue())));
    router.add_targets(&green(), &[target("g1", "127.0.0.21")]).await.unwrap();
    router.set_split(&Split::all_to(&green())).await.unwrap();
    assert_eq!(served_by(&primary).await, set(&["127.0.0.21"]));
}
