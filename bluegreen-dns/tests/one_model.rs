//! One DNS model, two providers: the same drain and bookkeeping assertions run against the RFC
//! 2136 router on a real knot server and the Route53 router on moto, and both must write the
//! same member strings for the same members.
//!
//! [`drains_are_recorded_and_waited_out`] takes any [`Router`] (and a way to read the member
//! TXT records it keeps), with a wall clock the test sets:
//!
//! - a drain withdraws a served member, records the time (`"disabled" "<unix secs>"`) and lasts
//!   TTL + margin;
//! - the member reads `Draining` until TTL + margin after its recorded time, then `Disabled`;
//! - a re-drain of it by another router (a resumed run, another process) waits only what is
//!   left of that, and a timeout shorter than what is left cuts the wait and says so.
//!
//! Needs both providers (`cargo test -p bluegreen-dns --features route53`; the workspace build
//! has `route53` through bluegreen-cli), knotd and kdig, and moto.

#![cfg(all(feature = "rfc2136", feature = "route53"))]

mod common;
mod moto;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_route53::types::RrType;
use bluegreen_core::state::Clock;
use bluegreen_core::{MemberState, PoolName, Router, Split, Target};
use bluegreen_dns::Route53Router;
use bluegreen_testkit::moto::MotoServer;
use common::{knot_or_skip, Knot, MARGIN, NAME, TTL, ZONE};
use moto::Route53Moto;

/// Where the test's wall clock stands when the first drain is recorded (Unix seconds).
const T0: u64 = 1_700_000_000;
/// The members' TXT records, where both providers keep them.
const BLUE_MEMBERS: &str = "pool-blue._bluegreen.www.example.test.";

/// A wall clock that stands where the test sets it.
#[derive(Clone)]
struct Wall(Arc<Mutex<Duration>>);

impl Wall {
    fn at(since_epoch: Duration) -> Self {
        Self(Arc::new(Mutex::new(since_epoch)))
    }

    fn set(&self, since_epoch: Duration) {
        *self.0.lock().unwrap() = since_epoch;
    }

    fn clock(&self) -> Clock {
        let at = self.0.clone();
        Arc::new(move || -> SystemTime { UNIX_EPOCH + *at.lock().unwrap() })
    }
}

/// Reads the TXT strings a provider keeps for the members of pool blue, as the server serves
/// them (one list of strings per member, sorted).
#[async_trait]
trait MemberStrings: Sync {
    async fn blue(&self) -> Vec<Vec<String>>;
}

/// The strings of TXT values in presentation form (`"bg1" "b1" …`), one value per line or item.
fn unquoted<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Vec<String>> {
    let mut members: Vec<Vec<String>> = values
        .into_iter()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let inner = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or_else(|| panic!("{v}"));
            inner.split("\" \"").map(str::to_owned).collect()
        })
        .collect();
    members.sort();
    members
}

/// knot, asked directly with kdig over TCP.
struct KnotStrings<'a>(&'a Knot);

#[async_trait]
impl MemberStrings for KnotStrings<'_> {
    async fn blue(&self) -> Vec<Vec<String>> {
        let addr = self.0.addr;
        let out = tokio::process::Command::new(common::binary("kdig"))
            .args([format!("@{}", addr.ip()), "-p".into(), addr.port().to_string(), "+tcp".into(), "+short".into()])
            .args(["TXT", BLUE_MEMBERS])
            .output()
            .await
            .expect("kdig");
        assert!(out.status.success(), "kdig: {}", String::from_utf8_lossy(&out.stderr));
        unquoted(String::from_utf8(out.stdout).unwrap().lines())
    }
}

/// Route53 (moto), listed with the SDK.
struct Route53Strings {
    client: aws_sdk_route53::Client,
    zone: String,
}

#[async_trait]
impl MemberStrings for Route53Strings {
    async fn blue(&self) -> Vec<Vec<String>> {
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone)
            .start_record_name(BLUE_MEMBERS)
            .start_record_type(RrType::Txt)
            .send()
            .await
            .expect("list_resource_record_sets");
        let sets = out.resource_record_sets().iter().filter(|s| s.name() == BLUE_MEMBERS && *s.r#type() == RrType::Txt);
        unquoted(sets.flat_map(|s| s.resource_records()).map(|r| r.value()))
    }
}

fn target(id: &str, ip: &str) -> Target {
    Target { id: id.into(), address: format!("{ip}:8080"), zone: None, version: "v1".into(), tag: None }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The state `router` reports for member `id` of pool blue.
async fn state_of(router: &dyn Router, id: &str) -> MemberState {
    let members = router.members(&"blue".into()).await.unwrap();
    members.iter().find(|m| m.id.as_str() == id).unwrap_or_else(|| panic!("{id} in {members:?}")).state
}

/// The drain and bookkeeping assertions every DNS provider must pass. `first` and `resumed`
/// are two routers (two processes) on the same name, with TTL 1 s, margin 0.5 s, pools blue
/// and green, and the wall clock `wall`; `read` reads the members' strings from the server.
/// Returns what was read, for the providers to be compared.
async fn drains_are_recorded_and_waited_out(
    first: &dyn Router,
    resumed: &dyn Router,
    wall: &Wall,
    read: &dyn MemberStrings,
) -> Vec<Vec<String>> {
    let (blue, green) = (PoolName::from("blue"), PoolName::from("green"));
    let delay = TTL + MARGIN;
    assert_eq!(first.capabilities().propagation_delay, delay, "{}", first.name());
    first.add_targets(&blue, &[target("b1", "127.0.0.11"), target("b2", "127.0.0.12")]).await.unwrap();
    first.add_targets(&green, &[target("g1", "127.0.0.21")]).await.unwrap();
    first.set_split(&Split::all_to(&blue)).await.unwrap();
    assert_eq!(
        read.blue().await,
        [strings(&["bg1", "b1", "127.0.0.11:8080", "serving"]), strings(&["bg1", "b2", "127.0.0.12:8080", "serving"])]
    );

    // A drain withdraws b1's served address: it records the time and lasts TTL + margin.
    wall.set(Duration::from_secs(T0));
    let report = first.drain(&blue, &["b1".into()], Duration::from_secs(10)).await.unwrap();
    assert!(!report.timed_out && report.elapsed >= delay, "{}: {report:?}", first.name());
    let written = read.blue().await;
    assert_eq!(
        written,
        [
            strings(&["bg1", "b1", "127.0.0.11:8080", "disabled", &T0.to_string()]),
            strings(&["bg1", "b2", "127.0.0.12:8080", "serving"])
        ],
        "{}",
        first.name()
    );

    // Draining until TTL + margin from the recorded time, for any reader.
    for router in [first, resumed] {
        wall.set(Duration::from_secs(T0) + delay - secs(0.1));
        assert_eq!(state_of(router, "b1").await, MemberState::Draining, "{}", router.name());
        wall.set(Duration::from_secs(T0) + delay);
        assert_eq!(state_of(router, "b1").await, MemberState::Disabled, "{}", router.name());
        assert_eq!(state_of(router, "b2").await, MemberState::Serving, "{}", router.name());
    }

    // Resumed 1 s into the drain: the re-drain waits only the 0.5 s left, and writes nothing.
    wall.set(Duration::from_secs(T0 + 1));
    let report = resumed.drain(&blue, &["b1".into()], Duration::from_secs(10)).await.unwrap();
    assert!(!report.timed_out, "{}: {report:?}", resumed.name());
    assert!(
        report.elapsed >= delay - Duration::from_secs(1) && report.elapsed < delay,
        "{}: the rest of the wait, not all of it: {report:?}",
        resumed.name()
    );
    assert_eq!(read.blue().await, written, "{}: the recorded time stands", resumed.name());

    // Resumed at once with a shorter timeout: the wait is cut and said to be.
    wall.set(Duration::from_secs(T0));
    let report = resumed.drain(&blue, &["b1".into()], secs(0.2)).await.unwrap();
    assert!(
        report.timed_out && report.elapsed >= secs(0.2) && report.elapsed < delay,
        "{}: {report:?}",
        resumed.name()
    );
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_providers_drain_alike_and_write_the_same_member_strings() {
    if !knot_or_skip("both_providers_drain_alike_and_write_the_same_member_strings")
        || bluegreen_testkit::require_binary("kdig", "`apt-get install -y knot-dnsutils`", "one_model").is_none()
    {
        return;
    }
    let Some(moto) = MotoServer::start() else { return };

    let knot = Knot::start("ns1", &[], true);
    let wall = Wall::at(Duration::from_secs(T0));
    let rfc2136 = || common::router_builder(knot.addr).clock(wall.clock()).build().unwrap();
    let (first, resumed) = (rfc2136(), rfc2136());
    let by_rfc2136 = drains_are_recorded_and_waited_out(&first, &resumed, &wall, &KnotStrings(&knot)).await;

    let sdk = moto.config().load().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone = moto.create_zone(&client, ZONE).await;
    let wall = Wall::at(Duration::from_secs(T0));
    let route53 = || {
        Route53Router::builder(&sdk, &zone, NAME)
            .ttl(TTL)
            .resolver_margin(MARGIN)
            .poll_interval(Duration::from_millis(50))
            .pool("blue")
            .pool("green")
            .clock(wall.clock())
            .build()
            .unwrap()
    };
    let (first, resumed) = (route53(), route53());
    let by_route53 =
        drains_are_recorded_and_waited_out(&first, &resumed, &wall, &Route53Strings { client, zone }).await;

    assert_eq!(by_rfc2136, by_route53, "both providers keep the same bookkeeping for the same members");
}
