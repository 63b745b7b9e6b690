//! Standing pools behind the DNS routers: a fixed inventory of two blue and two green hosts
//! (`HostFleet::with_standing_pools`), deployed through the core `Executor` with a state store,
//! against real servers — the RFC 2136 router on knot and on BIND 9, the Route53 router on moto.
//!
//! Each provider runs the same scenario, and every assertion is read back from what the server
//! answers for the name (a DNS query to knot / BIND; the weighted record sets for Route53):
//!
//! 1. blue-green v1 → v2: the green hosts are updated in place (the updater checks, each time,
//!    that the server does not answer with the host it updates), then the answer switches to
//!    green alone, after the TTL wait; blue stays warm on v1, not updated;
//! 2. blue-green back to v1: a pure switch — no updater runs, the answer is blue alone;
//! 3. a canary to v3 with one 50 % step: green is updated, and while the 50 % step bakes the
//!    server answers with both pools half and half (read by an analysis, which fails the deploy
//!    otherwise); at the end green alone;
//! 4. the same canary to v4, which falls ill at 50 %: blue (now the idle pool) was updated, and
//!    the rollback is a switch back to green alone that updates no host.
//!
//! Every traffic change, rollback included, waits TTL + margin before the deploy goes on, and
//! every call of the router goes through at its first attempt.
//!
//! Each run builds its router and fleet afresh from the same inventory (all hosts on v1), as a
//! new process of the command would: what the hosts run comes from the state store's records.
//!
//! The RFC 2136 tests need knotd (and kdig) or named; the Route53 test needs moto and the
//! `route53` feature (`cargo test -p bluegreen-dns --features route53 --test standing`).

#![cfg(any(feature = "rfc2136", feature = "route53"))]

#[cfg(feature = "rfc2136")]
mod common;
#[cfg(feature = "route53")]
mod moto;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluegreen_core::{
    BlueGreen, Canary, DrainPolicy, Event, EventKind, Executor, FnAnalysis, FnProbe, Health, HealthPolicy, MemorySink,
    MemoryStore, Outcome, PoolName, Router, ShiftStep, Spec, Split, Status, Strategy, Target, Verdict, Version,
};
use bluegreen_vm::{HostFleet, Updater};

const BLUE_HOSTS: [(&str, &str); 2] = [("b1", "127.0.0.11"), ("b2", "127.0.0.12")];
const GREEN_HOSTS: [(&str, &str); 2] = [("g1", "127.0.0.21"), ("g2", "127.0.0.22")];
/// The resolver margin added to the records' TTL (1 s, the shortest): every wait is 1.1 s.
const MARGIN: Duration = Duration::from_millis(100);

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

fn host(id: &str, ip: &str) -> Target {
    Target { id: id.into(), address: format!("{ip}:8080"), zone: None, version: "v1".into(), tag: None }
}

fn addresses(hosts: &[(&str, &str)]) -> BTreeSet<Ipv4Addr> {
    hosts.iter().map(|(_, ip)| ip.parse().unwrap()).collect()
}

/// What the server answers for the name: the addresses, by the inventory pool they belong to,
/// and green's share of the answers in percent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    blue: BTreeSet<Ipv4Addr>,
    green: BTreeSet<Ipv4Addr>,
    green_share: u32,
}

impl Served {
    /// From addresses answered with their weights (one weight per address for record
    /// multiplicity; the record set's weight for each of its addresses for Route53).
    fn from_answer(answer: &[(Ipv4Addr, u64)]) -> Self {
        let (blue_ips, green_ips) = (addresses(&BLUE_HOSTS), addresses(&GREEN_HOSTS));
        let mut served = Served { blue: BTreeSet::new(), green: BTreeSet::new(), green_share: 0 };
        let (mut blue_weight, mut green_weight) = (0, 0);
        for (ip, weight) in answer {
            if blue_ips.contains(ip) {
                served.blue.insert(*ip);
                blue_weight += weight;
            } else if green_ips.contains(ip) {
                served.green.insert(*ip);
                green_weight += weight;
            } else {
                panic!("the server answers {ip}, which is no host of the inventory: {answer:?}");
            }
        }
        let share = (green_weight * 100).checked_div(blue_weight + green_weight).unwrap_or(0);
        served.green_share = u32::try_from(share).unwrap();
        served
    }

    fn only_blue(&self) -> bool {
        self.blue == addresses(&BLUE_HOSTS) && self.green.is_empty() && self.green_share == 0
    }

    fn only_green(&self) -> bool {
        self.green == addresses(&GREEN_HOSTS) && self.blue.is_empty() && self.green_share == 100
    }

    fn half_and_half(&self) -> bool {
        self.blue == addresses(&BLUE_HOSTS) && self.green == addresses(&GREEN_HOSTS) && self.green_share == 50
    }

    fn answers(&self, address: &str) -> bool {
        let ip: Ipv4Addr = address.split(':').next().unwrap().parse().unwrap();
        self.blue.contains(&ip) || self.green.contains(&ip)
    }
}

/// Reads what the server answers; cheap to clone into the updater and the analysis.
#[derive(Clone)]
enum Reader {
    #[cfg(feature = "rfc2136")]
    Dns(std::net::SocketAddr),
    #[cfg(feature = "route53")]
    Route53 { client: aws_sdk_route53::Client, zone: String },
}

impl Reader {
    async fn served(&self) -> Served {
        match self {
            #[cfg(feature = "rfc2136")]
            Reader::Dns(server) => {
                // Asked directly, as a resolver would: the A records at the name.
                let check = bluegreen_dns::PropagationCheck::new(common::NAME).unwrap().server("primary", *server);
                let report = check.check(&BTreeSet::new()).await;
                let observed = report.answers[0].observed.clone().expect("the server answers");
                Served::from_answer(&observed.into_iter().map(|ip| (ip, 1)).collect::<Vec<_>>())
            }
            #[cfg(feature = "route53")]
            Reader::Route53 { client, zone } => {
                let sets = moto::weights_at(client, zone, moto::NAME).await;
                let answer: Vec<(Ipv4Addr, u64)> = sets
                    .values()
                    .filter(|(weight, _)| *weight > 0)
                    .flat_map(|(weight, values)| {
                        values.iter().map(move |v| (v.parse().unwrap(), u64::try_from(*weight).unwrap()))
                    })
                    .collect();
                // A weighted set's weight goes to the set, not to each of its addresses.
                let mut served = Served::from_answer(&answer);
                let by_set = |pool: &str| sets.get(pool).map_or(0, |(w, v)| if v.is_empty() { 0 } else { *w });
                let (b, g) = (by_set("blue"), by_set("green"));
                served.green_share = u32::try_from((g * 100).checked_div(b + g).unwrap_or(0)).unwrap();
                served
            }
        }
    }
}

/// One provider under test: a router as a new process would build it, and what its server
/// answers.
struct Provider {
    name: &'static str,
    router: Box<dyn Fn() -> Arc<dyn Router>>,
    reader: Reader,
    /// TTL + resolver margin of its records.
    delay: Duration,
}

/// The updates the updater ran, in order: (host, version).
type Updates = Arc<Mutex<Vec<(String, String)>>>;

/// The inventory (every host on v1, as the deploy file lists it) in its standing pools. The
/// updater records each run, and refuses to update a host the server still answers with
/// (invariant 3, read from the server itself).
fn inventory(reader: &Reader, updates: &Updates) -> Arc<HostFleet> {
    let (reader, updates) = (reader.clone(), updates.clone());
    let updater = Updater::from_fn(move |host: Target, version: Version| {
        let (reader, updates) = (reader.clone(), updates.clone());
        async move {
            let served = reader.served().await;
            if served.answers(&host.address) {
                return Err(format!("{} is updated while the server still answers with it: {served:?}", host.id));
            }
            updates.lock().unwrap().push((host.id.to_string(), version.to_string()));
            Ok(String::new())
        }
    });
    let hosts = BLUE_HOSTS.iter().chain(&GREEN_HOSTS).map(|(id, ip)| host(id, ip));
    let pools = BLUE_HOSTS
        .iter()
        .map(|(id, _)| ((*id).into(), blue()))
        .chain(GREEN_HOSTS.iter().map(|(id, _)| ((*id).into(), green())));
    Arc::new(HostFleet::new(hosts, updater).unwrap().with_standing_pools(pools).unwrap())
}

fn spec(version: &str, strategy: Strategy) -> Spec {
    let health = HealthPolicy {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    };
    Spec::new("www", version, strategy).with_health(health).with_drain(DrainPolicy { timeout: Duration::from_secs(10) })
}

/// The server's answers read while a step baked, with the split the executor observed then.
type Reads = Arc<Mutex<Vec<(u32, Served)>>>;

/// One deploy of `spec` as its own run of the command: a new router and fleet, the shared
/// store; an analysis reads the server's answers during every bake and fails the deploy when
/// they do not carry the split the executor set.
async fn deploy(
    p: &Provider,
    store: &Arc<MemoryStore>,
    updates: &Updates,
    spec: &Spec,
    ill_at: Option<u32>,
) -> (Outcome, Vec<Event>, Reads) {
    let sink = MemorySink::new();
    let reads: Reads = Arc::default();
    let (reader, seen) = (p.reader.clone(), reads.clone());
    let answers_match_the_split = FnAnalysis::new("answers carry the split", move |ctx| {
        let (reader, seen) = (reader.clone(), seen.clone());
        async move {
            let served = reader.served().await;
            let wanted = ctx.split.weight(&green());
            seen.lock().unwrap().push((wanted, served.clone()));
            if served.green_share != wanted {
                Verdict::Fail { reason: format!("the split is {} but the server answers {served:?}", ctx.split) }
            } else if ill_at.is_some_and(|at| 100 - wanted == at) {
                Verdict::Fail { reason: format!("the new version falls ill at {}", ctx.split) }
            } else {
                Verdict::Pass
            }
        }
    });
    let probe = FnProbe::new("always healthy", |_| async { Health::Healthy });
    let executor = Executor::builder((p.router)(), inventory(&p.reader, updates), Arc::new(probe))
        .state_store(store.clone(), "standing-test")
        .analysis(answers_match_the_split)
        .sink(sink.clone())
        .build();
    println!("{}", executor.plan(spec).await.unwrap().timeline());
    let started = Instant::now();
    let outcome = executor.deploy(spec).await.unwrap();
    println!(
        "== {}: {} (deploy of {}) in {:?} ({:?})",
        p.name,
        outcome.status,
        spec.version,
        started.elapsed(),
        outcome.reason
    );
    let events = sink.events();
    for event in &events {
        println!("  {event}");
    }
    // Nothing else writes the zone: every call went through at its first attempt (the
    // router's own concurrent calls — the hosts of a batch re-enabled together — take turns).
    let retried: Vec<String> =
        events.iter().filter(|e| matches!(e.kind, EventKind::Retrying { .. })).map(ToString::to_string).collect();
    assert!(retried.is_empty(), "{}: {retried:?}", p.name);
    (outcome, events, reads)
}

fn runs(updates: &Updates) -> Vec<(String, String)> {
    updates.lock().unwrap().clone()
}

/// The green share of every traffic change, and checks each waited TTL + margin before the
/// deploy went on.
fn paced_shifts(events: &[Event], delay: Duration) -> Vec<u32> {
    let waits: Vec<Duration> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AwaitingPropagation { wait } => Some(*wait),
            _ => None,
        })
        .collect();
    let mut shares = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let EventKind::TrafficShifted { to, .. } = &e.kind else { continue };
        shares.push(to.weight(&green()));
        // What came after the wait (the step completed, or the rollback reached its end).
        let next = events[i..]
            .iter()
            .skip_while(|later| !matches!(later.kind, EventKind::AwaitingPropagation { .. }))
            .nth(1)
            .expect("the deploy went on after the TTL wait");
        assert!(
            next.at >= e.at + delay,
            "the shift to {to} counted {:?} after it was written, before TTL + margin ({delay:?})",
            next.at - e.at
        );
    }
    assert_eq!(waits, vec![delay; shares.len()], "one TTL wait per traffic change");
    shares
}

/// Blue-green there and back, and a 50 % canary, between the standing pools of `p`.
async fn standing_pools_on(p: &Provider) {
    // Before: blue serves v1; green's hosts are in the inventory but not yet in DNS.
    let router = (p.router)();
    router.add_targets(&blue(), &BLUE_HOSTS.map(|(id, ip)| host(id, ip))).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    assert!(p.reader.served().await.only_blue(), "{}: {:?}", p.name, p.reader.served().await);

    let store = Arc::new(MemoryStore::new());
    let updates: Updates = Arc::default();

    // 1. Blue-green to v2: green updated in place, then the answer switches to green.
    let bg = || Strategy::BlueGreen(BlueGreen::default());
    let (outcome, events, _) = deploy(p, &store, &updates, &spec("v2", bg()), None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{}: {:?}", p.name, outcome.reason);
    let mut updated = runs(&updates);
    updated.sort();
    assert_eq!(updated, [("g1".into(), "v2".into()), ("g2".into(), "v2".into())], "{}", p.name);
    let served = p.reader.served().await;
    assert!(served.only_green(), "{}: after the switch the server answers {served:?}", p.name);
    assert_eq!(paced_shifts(&events, p.delay), [100], "{}", p.name);
    let router = (p.router)();
    let blue_members = router.members(&blue()).await.unwrap();
    assert_eq!(blue_members.len(), 2, "{}: blue stays a pool of two: {blue_members:?}", p.name);
    assert!(
        blue_members.iter().all(|m| m.state == bluegreen_core::MemberState::Serving),
        "{}: blue stays warm (not drained): {blue_members:?}",
        p.name
    );

    // 2. Back to v1: blue still runs it, so this is a switch and nothing else.
    let (outcome, events, _) = deploy(p, &store, &updates, &spec("v1", bg()), None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{}: {:?}", p.name, outcome.reason);
    assert_eq!(runs(&updates).len(), 2, "{}: going back updated no host: {:?}", p.name, runs(&updates));
    assert!(
        !events.iter().any(|e| matches!(e.kind, EventKind::TargetUpdated { .. } | EventKind::DrainStarted { .. })),
        "{}: a pure switch",
        p.name
    );
    let served = p.reader.served().await;
    assert!(served.only_blue(), "{}: after switching back the server answers {served:?}", p.name);
    assert_eq!(paced_shifts(&events, p.delay), [0], "{}", p.name);

    // 3. A canary to v3 with one 50 % step: green (idle, warm on v2) is updated, then takes
    //    half the answers while the step bakes, then all of them.
    let bake = Duration::from_millis(400);
    let steps = vec![ShiftStep { percent: 50, bake }, ShiftStep { percent: 100, bake: Duration::from_millis(200) }];
    let canary = Strategy::Canary(Canary { steps, ..Canary::default() });
    let (outcome, events, reads) = deploy(p, &store, &updates, &spec("v3", canary.clone()), None).await;
    assert_eq!(outcome.status, Status::Succeeded, "{}: {:?}", p.name, outcome.reason);
    let mut updated = runs(&updates)[2..].to_vec();
    updated.sort();
    assert_eq!(updated, [("g1".into(), "v3".into()), ("g2".into(), "v3".into())], "{}", p.name);
    assert_eq!(paced_shifts(&events, p.delay), [50, 100], "{}", p.name);
    let reads = reads.lock().unwrap().clone();
    let at_half: Vec<&Served> = reads.iter().filter(|(share, _)| *share == 50).map(|(_, s)| s).collect();
    assert!(!at_half.is_empty(), "{}: the 50 % bake read the server: {reads:?}", p.name);
    assert!(at_half.iter().all(|s| s.half_and_half()), "{}: at 50 % the server answers {at_half:?}", p.name);
    assert!(reads.iter().any(|(share, _)| *share == 100), "{}: {reads:?}", p.name);
    let served = p.reader.served().await;
    assert!(served.only_green(), "{}: after the canary the server answers {served:?}", p.name);
    let blue_members = (p.router)().members(&blue()).await.unwrap();
    assert!(
        blue_members.iter().all(|m| m.state == bluegreen_core::MemberState::Serving),
        "{}: blue stays warm on v1: {blue_members:?}",
        p.name
    );
    assert!(runs(&updates).iter().all(|(id, _)| id.starts_with('g')), "{}: blue was never updated", p.name);

    // 4. The same canary to v4 from green: blue (idle, warm on v1) is updated, takes half the
    //    answers, and v4 falls ill there. The rollback is a switch back: the answer is green
    //    alone again, and no host is updated back.
    let (outcome, events, _) = deploy(p, &store, &updates, &spec("v4", canary), Some(50)).await;
    assert_eq!(outcome.status, Status::RolledBack, "{}: {:?}", p.name, outcome.reason);
    assert!(outcome.reason.as_deref().unwrap_or_default().contains("falls ill"), "{}: {:?}", p.name, outcome.reason);
    let mut updated = runs(&updates)[4..].to_vec();
    updated.sort();
    assert_eq!(
        updated,
        [("b1".into(), "v4".into()), ("b2".into(), "v4".into())],
        "{}: the rollback updated no host",
        p.name
    );
    // Green's shares: blue (the new pool) takes 50 %, then green takes it all back.
    assert_eq!(paced_shifts(&events, p.delay), [50, 100], "{}", p.name);
    let served = p.reader.served().await;
    assert!(served.only_green(), "{}: after the rollback the server answers {served:?}", p.name);
}

#[cfg(feature = "rfc2136")]
fn rfc2136(name: &'static str, server: std::net::SocketAddr) -> Provider {
    Provider {
        name,
        router: Box::new(move || Arc::new(common::router_builder(server).resolver_margin(MARGIN).build().unwrap())),
        reader: Reader::Dns(server),
        delay: common::TTL + MARGIN,
    }
}

#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_pools_blue_green_and_a_50_50_canary_on_knot() {
    if !common::knot_or_skip("standing_pools_blue_green_and_a_50_50_canary_on_knot") {
        return;
    }
    let knot = common::Knot::start("ns1", &[], true);
    standing_pools_on(&rfc2136("knot", knot.addr)).await;
}

#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_pools_blue_green_and_a_50_50_canary_on_bind() {
    if !common::bind::bind_or_skip("standing_pools_blue_green_and_a_50_50_canary_on_bind") {
        return;
    }
    let bind = common::bind::Bind::start("ns1", &[]);
    standing_pools_on(&rfc2136("BIND 9", bind.addr)).await;
}

#[cfg(feature = "route53")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_pools_blue_green_and_a_50_50_canary_on_route53() {
    use moto::Route53Moto;
    let Some(moto) = bluegreen_testkit::moto::MotoServer::start() else { return };
    let sdk = moto.config().load().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone = moto.create_zone(&client, moto::ZONE).await;
    let (ttl, margin) = (Duration::from_secs(1), MARGIN);
    let router_zone = zone.clone();
    let provider = Provider {
        name: "Route53",
        router: Box::new(move || {
            let router = bluegreen_dns::Route53Router::builder(&sdk, &router_zone, moto::NAME)
                .ttl(ttl)
                .resolver_margin(margin)
                .poll_interval(Duration::from_millis(50))
                .pool("blue")
                .pool("green")
                .build()
                .unwrap();
            Arc::new(router)
        }),
        reader: Reader::Route53 { client, zone },
        delay: ttl + margin,
    };
    standing_pools_on(&provider).await;
}

/// A router with 25 % steps over two hosts a pool: 75/25 needs three addresses of one pool in
/// the answer, so a 25 % step is refused when planned, saying what it needs, before any message.
#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_hosts_cannot_express_by_record_multiplicity_is_refused_before_any_update() {
    if !common::knot_or_skip("a_step_the_hosts_cannot_express_by_record_multiplicity_is_refused_before_any_update") {
        return;
    }
    let knot = common::Knot::start("ns1", &[], true);
    let router = common::router_builder(knot.addr).weight_granularity(25).build().unwrap();
    router.add_targets(&blue(), &BLUE_HOSTS.map(|(id, ip)| host(id, ip))).await.unwrap();
    router.set_split(&Split::all_to(&blue())).await.unwrap();
    let reader = Reader::Dns(knot.addr);
    let updates: Updates = Arc::default();
    let probe = FnProbe::new("always healthy", |_| async { Health::Healthy });
    let executor = Executor::builder(Arc::new(router.clone()), inventory(&reader, &updates), Arc::new(probe)).build();
    let canary = |percents: &[u32]| {
        let steps = percents.iter().map(|&percent| ShiftStep { percent, bake: Duration::from_millis(100) }).collect();
        spec("v2", Strategy::Canary(Canary { steps, ..Canary::default() }))
    };
    let sent = router.updates_sent();

    let err = executor.deploy(&canary(&[25, 100])).await.expect_err("75/25 needs three blue addresses");
    println!("refused: {err}");
    assert_eq!(err.field(), Some("strategy.steps[0].percent"), "{err}");
    let message = err.to_string();
    assert!(message.contains("pool blue needs 3 distinct targets and has 2"), "{message}");
    assert!(!message.contains("pool green needs"), "green has the one host 25 % needs: {message}");
    assert!(message.contains("can express 50% on green"), "{message}");
    assert_eq!(router.updates_sent(), sent, "no UPDATE was sent");
    assert!(runs(&updates).is_empty(), "no host was updated");
    assert!(reader.served().await.only_blue());

    // 50/50 needs one address a pool: planned.
    assert!(executor.plan(&canary(&[50, 100])).await.is_ok());
}
