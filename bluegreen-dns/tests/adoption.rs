//! Adopting a DNS name that predates bluegreen: the name serves plain A records for the two
//! blue hosts, with no bookkeeping; the inventory has two blue and two green hosts, and the
//! router is told of them (`.host(id, pool, address)`). On knot, BIND 9 (RFC 2136) and Route53
//! in moto (a simple record set made with a raw `ChangeResourceRecordSets`):
//!
//! 1. the router reads the records as the blue hosts serving (split blue 100, members b1 and b2)
//!    and reports both unmanaged; `plan` shows the adoption as its first step;
//! 2. a deploy not told to adopt is refused (`Error::Invalid` on `adopt`, naming the records and
//!    `--adopt`) before any UPDATE / change batch: the answers are unchanged;
//! 3. a deploy told to adopt writes the bookkeeping first — when the green hosts are updated the
//!    A records are still exactly the ones from before and nothing is unmanaged any more — then
//!    switches to green (the server answers green only);
//! 4. a later deploy needs no adoption (a new router reports nothing unmanaged, and the plan has
//!    no adopt step): it goes back to blue.
//!
//! `cargo test -p bluegreen-dns --features route53 --test adoption` (knotd, named, moto).

#![cfg(any(feature = "rfc2136", feature = "route53"))]

#[cfg(feature = "rfc2136")]
mod common;
#[cfg(feature = "route53")]
mod moto;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bluegreen_core::{
    BlueGreen, DrainPolicy, Error, EventKind, Executor, FnProbe, Health, HealthPolicy, MemberState, MemorySink,
    PoolName, Router, Spec, Status, Step, Strategy, Target, Version,
};
use bluegreen_vm::{HostFleet, Updater};

const BLUE_HOSTS: [(&str, &str); 2] = [("b1", "127.0.0.11"), ("b2", "127.0.0.12")];
const GREEN_HOSTS: [(&str, &str); 2] = [("g1", "127.0.0.21"), ("g2", "127.0.0.22")];

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

fn ips(hosts: &[(&str, &str)]) -> BTreeSet<String> {
    hosts.iter().map(|(_, ip)| (*ip).to_owned()).collect()
}

/// Every host of the inventory as `(id, pool, address)`.
fn described() -> Vec<(String, String, String)> {
    BLUE_HOSTS
        .iter()
        .map(|h| (h, "blue"))
        .chain(GREEN_HOSTS.iter().map(|h| (h, "green")))
        .map(|((id, ip), pool)| ((*id).to_owned(), pool.to_owned(), format!("{ip}:8080")))
        .collect()
}

/// What the server has at the name, to compare: the served addresses, and the A record sets
/// exactly (for DNS the same addresses; for Route53 each set as listed).
#[derive(Clone)]
enum Reader {
    #[cfg(feature = "rfc2136")]
    Dns(std::net::SocketAddr),
    #[cfg(feature = "route53")]
    Route53 { client: aws_sdk_route53::Client, zone: String },
}

impl Reader {
    /// The addresses answered.
    async fn served(&self) -> BTreeSet<String> {
        match self {
            #[cfg(feature = "rfc2136")]
            Reader::Dns(server) => {
                let check = bluegreen_dns::PropagationCheck::new(common::NAME).unwrap().server("primary", *server);
                let report = check.check(&BTreeSet::new()).await;
                report.answers[0]
                    .observed
                    .clone()
                    .expect("the server answers")
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            }
            #[cfg(feature = "route53")]
            Reader::Route53 { client, zone } => a_sets(client, zone)
                .await
                .into_iter()
                .filter(|s| s.weight().is_none_or(|w| w > 0))
                .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_owned()).collect::<Vec<_>>())
                .collect(),
        }
    }

    /// The A records at the name, exactly.
    async fn a_records(&self) -> Vec<String> {
        match self {
            #[cfg(feature = "rfc2136")]
            Reader::Dns(_) => self.served().await.into_iter().collect(),
            #[cfg(feature = "route53")]
            Reader::Route53 { client, zone } => a_sets(client, zone).await.iter().map(|s| format!("{s:?}")).collect(),
        }
    }
}

#[cfg(feature = "route53")]
async fn a_sets(client: &aws_sdk_route53::Client, zone: &str) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
    use aws_sdk_route53::types::RrType;
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(moto::NAME)
        .start_record_type(RrType::A)
        .send()
        .await
        .expect("list_resource_record_sets");
    out.resource_record_sets().iter().filter(|s| s.name() == moto::NAME && *s.r#type() == RrType::A).cloned().collect()
}

/// How many writes (UPDATE messages, change batches) a router sent.
type Sent = Box<dyn Fn() -> u64 + Send + Sync>;

/// One provider: a router as a new process builds it (told of the inventory's hosts), how many
/// writes it sent, and what its server has.
struct Provider {
    name: &'static str,
    router: Box<dyn Fn() -> (Arc<dyn Router>, Sent)>,
    reader: Reader,
}

/// What the updater saw when it ran first: the A records and how many members were unmanaged.
type Seen = Arc<Mutex<Vec<(Vec<String>, usize)>>>;

fn inventory(p: &Provider, seen: &Seen) -> Arc<HostFleet> {
    let (reader, seen) = (p.reader.clone(), seen.clone());
    let (router, _) = (p.router)();
    let updater = Updater::from_fn(move |host: Target, _version: Version| {
        let (reader, seen, router) = (reader.clone(), seen.clone(), router.clone());
        async move {
            let served = reader.served().await;
            if served.contains(host.address.split(':').next().unwrap()) {
                return Err(format!("{} is updated while the server answers with it: {served:?}", host.id));
            }
            let unmanaged = router.unmanaged().await.map_err(|e| e.to_string())?.len();
            let records = reader.a_records().await;
            seen.lock().unwrap().push((records, unmanaged));
            Ok(String::new())
        }
    });
    let hosts = described().into_iter().map(|(id, _, address)| Target {
        id: id.as_str().into(),
        address,
        zone: None,
        version: "v1".into(),
        tag: None,
    });
    let pools = described().into_iter().map(|(id, pool, _)| (id.as_str().into(), PoolName::from(pool.as_str())));
    Arc::new(HostFleet::new(hosts, updater).unwrap().with_standing_pools(pools).unwrap())
}

fn spec(version: &str) -> Spec {
    let health = HealthPolicy {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    };
    Spec::new("www", version, Strategy::BlueGreen(BlueGreen::default()))
        .with_health(health)
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) })
}

async fn adopts_a_name_that_predates_bluegreen(p: &Provider) {
    let before = p.reader.a_records().await;
    assert_eq!(p.reader.served().await, ips(&BLUE_HOSTS), "{}: the name serves the blue hosts", p.name);
    let probe = || Arc::new(FnProbe::new("always healthy", |_| async { Health::Healthy }));
    let seen: Seen = Arc::default();
    let fleet = inventory(p, &seen);

    // 1. Read as the blue hosts serving, unmanaged; the plan adopts them first.
    let (router, sent) = (p.router)();
    assert!(router.capabilities().adopts, "{}", p.name);
    assert_eq!(router.split().await.unwrap().weight(&blue()), 100, "{}", p.name);
    let members = router.members(&blue()).await.unwrap();
    let ids: BTreeSet<String> = members.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(ids, ["b1".to_owned(), "b2".to_owned()].into(), "{}", p.name);
    assert!(members.iter().all(|m| m.state == MemberState::Serving), "{}: {members:?}", p.name);
    let unmanaged = router.unmanaged().await.unwrap();
    let what: BTreeSet<String> = unmanaged.iter().map(|a| a.what.clone()).collect();
    assert_eq!(
        what,
        ["A 127.0.0.11 (www.example.test.)".to_owned(), "A 127.0.0.12 (www.example.test.)".to_owned()].into(),
        "{}",
        p.name
    );
    assert!(unmanaged.iter().all(|a| a.pool == blue()), "{}: {unmanaged:?}", p.name);
    let executor = Executor::builder(router.clone(), fleet.clone(), probe()).build();
    let plan = executor.plan(&spec("v2")).await.unwrap();
    println!("{}: {}", p.name, plan.timeline());
    match &plan.steps[0] {
        Step::Adopt { adoptions } => assert_eq!(adoptions.len(), 2, "{}: {adoptions:?}", p.name),
        other => panic!("{}: the first step is {other:?}, not the adoption", p.name),
    }

    // 2. Not told to adopt: refused before any write.
    let err = executor.deploy(&spec("v2")).await.expect_err("a deploy that adopts needs adopt(true)");
    println!("{}: refused: {err}", p.name);
    assert!(matches!(err, Error::Invalid { .. }) && err.field() == Some("adopt"), "{}: {err}", p.name);
    let message = err.to_string();
    assert!(message.contains("A 127.0.0.11 (www.example.test.) as b1 in pool blue"), "{message}");
    assert!(message.contains("--adopt"), "{message}");
    assert_eq!(sent(), 0, "{}: nothing was sent", p.name);
    assert_eq!(p.reader.a_records().await, before, "{}: the answers are unchanged", p.name);
    assert!(seen.lock().unwrap().is_empty(), "{}: no host was updated", p.name);

    // 3. Told to adopt: bookkeeping first (A records unchanged), then the switch to green.
    let (router, _) = (p.router)();
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), fleet.clone(), probe()).adopt(true).sink(sink.clone()).build();
    let outcome = executor.deploy(&spec("v2")).await.unwrap();
    for e in sink.events() {
        println!("  {}: {e}", p.name);
    }
    assert_eq!(outcome.status, Status::Succeeded, "{}: {:?}", p.name, outcome.reason);
    assert!(sink.events().iter().any(|e| matches!(&e.kind, EventKind::Adopted { members } if members.len() == 2)));
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 2, "{}: both green hosts updated: {seen_now:?}", p.name);
    let (records, unmanaged) = &seen_now[0];
    assert_eq!(records, &before, "{}: adopting changed no A record", p.name);
    assert_eq!(*unmanaged, 0, "{}: after the adoption step nothing is unmanaged", p.name);
    assert_eq!(p.reader.served().await, ips(&GREEN_HOSTS), "{}: green only", p.name);
    let blue_members = router.members(&blue()).await.unwrap();
    assert_eq!(blue_members.len(), 2, "{}: blue stays warm, recorded: {blue_members:?}", p.name);

    // 4. A later deploy: nothing to adopt, back to blue.
    let (router, _) = (p.router)();
    assert!(router.unmanaged().await.unwrap().is_empty(), "{}", p.name);
    let executor = Executor::builder(router.clone(), fleet, probe()).build();
    let plan = executor.plan(&spec("v3")).await.unwrap();
    assert!(!plan.steps.iter().any(|s| matches!(s, Step::Adopt { .. })), "{}: {plan:?}", p.name);
    let outcome = executor.deploy(&spec("v3")).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}: {:?}", p.name, outcome.reason);
    assert_eq!(p.reader.served().await, ips(&BLUE_HOSTS), "{}: blue only", p.name);
    assert_eq!(router.split().await.unwrap().weight(&blue()), 100, "{}", p.name);
    assert!(router.members(&green()).await.unwrap().len() == 2, "{}", p.name);
}

#[cfg(feature = "rfc2136")]
fn rfc2136(name: &'static str, server: std::net::SocketAddr) -> Provider {
    Provider {
        name,
        router: Box::new(move || {
            let mut builder = common::router_builder(server).resolver_margin(Duration::from_millis(100));
            for (id, pool, address) in described() {
                builder = builder.host(id, pool, address);
            }
            let router = builder.build().unwrap();
            let counted = router.clone();
            (Arc::new(router), Box::new(move || counted.updates_sent()))
        }),
        reader: Reader::Dns(server),
    }
}

#[cfg(feature = "rfc2136")]
fn blue_ips() -> Vec<std::net::Ipv4Addr> {
    BLUE_HOSTS.iter().map(|(_, ip)| ip.parse().unwrap()).collect()
}

#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_plain_a_records_is_adopted_only_when_asked_on_knot() {
    if !common::knot_or_skip("a_name_with_plain_a_records_is_adopted_only_when_asked_on_knot") {
        return;
    }
    let knot = common::Knot::start("ns1", &blue_ips(), true);
    adopts_a_name_that_predates_bluegreen(&rfc2136("knot", knot.addr)).await;
}

#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_plain_a_records_is_adopted_only_when_asked_on_bind() {
    if !common::bind::bind_or_skip("a_name_with_plain_a_records_is_adopted_only_when_asked_on_bind") {
        return;
    }
    let bind = common::bind::Bind::start("ns1", &blue_ips());
    adopts_a_name_that_predates_bluegreen(&rfc2136("BIND 9", bind.addr)).await;
}

/// An address served that no host of the inventory has stays drift, saying how to fix it.
#[cfg(feature = "rfc2136")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_no_host_has_is_drift_saying_how_to_fix_it() {
    if !common::knot_or_skip("an_address_no_host_has_is_drift_saying_how_to_fix_it") {
        return;
    }
    let mut served = blue_ips();
    served.push("127.0.0.99".parse().unwrap());
    let knot = common::Knot::start("ns1", &served, true);
    let (router, sent) = (rfc2136("knot", knot.addr).router)();
    let err = router.split().await.expect_err("127.0.0.99 is nobody's");
    println!("{err}");
    assert!(matches!(err, Error::Drift { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.99") && message.contains("add the host to the inventory"), "{message}");
    assert!(router.unmanaged().await.unwrap().len() == 2, "the two blue hosts' records are adoptable");
    assert_eq!(sent(), 0);
}

#[cfg(feature = "route53")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_plain_a_records_is_adopted_only_when_asked_on_route53() {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    use moto::Route53Moto;
    let Some(moto) = bluegreen_testkit::moto::MotoServer::start() else { return };
    let sdk = moto.config().load().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone = moto.create_zone(&client, moto::ZONE).await;
    // The name as an operator made it: one simple A record set, no bookkeeping.
    let records = BLUE_HOSTS.iter().map(|(_, ip)| ResourceRecord::builder().value(*ip).build().unwrap()).collect();
    let set = ResourceRecordSet::builder()
        .name(moto::NAME)
        .r#type(RrType::A)
        .ttl(1)
        .set_resource_records(Some(records))
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Create).resource_record_set(set).build().unwrap();
    client
        .change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
    let router_zone = zone.clone();
    let provider = Provider {
        name: "Route53",
        router: Box::new(move || {
            let mut builder = bluegreen_dns::Route53Router::builder(&sdk, &router_zone, moto::NAME)
                .ttl(Duration::from_secs(1))
                .resolver_margin(Duration::from_millis(100))
                .poll_interval(Duration::from_millis(50))
                .pool("blue")
                .pool("green");
            for (id, pool, address) in described() {
                builder = builder.host(id, pool, address);
            }
            let router = builder.build().unwrap();
            let counted = router.clone();
            (Arc::new(router), Box::new(move || counted.change_batches_sent()))
        }),
        reader: Reader::Route53 { client, zone },
    };
    adopts_a_name_that_predates_bluegreen(&provider).await;
}
