//! The local backends piece by piece, with real processes and real HTTP on loopback:
//! the proxy's drain, routing, counters, retries and shutdown; the process fleet's restarts,
//! stops and arguments; the load generator; and a negative control showing that the load
//! tests can fail.

use std::time::{Duration, Instant};

use bluegreen_core::{Error, Fleet, MemberState, PoolName, ProvisionRequest, Router, Split, Target, Version};
use bluegreen_vm::{LoadGenerator, LocalProcessFleet, LocalProxyRouter};

const TARGET_BIN: &str = env!("CARGO_BIN_EXE_bluegreen-target");

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

fn fleet() -> LocalProcessFleet {
    LocalProcessFleet::builder().binary(TARGET_BIN).build().unwrap()
}

async fn proxy() -> LocalProxyRouter {
    LocalProxyRouter::builder().pool("blue").pool("green").build().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// GET `url`: status and `x-version`.
async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let version = response.headers().get("x-version").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    (status, version)
}

/// Whether a process is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- proxy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_the_request_in_flight_and_refuses_new_ones() {
    let fleet = fleet();
    let targets = fleet.launch(&"v1".into(), 1).await.unwrap();
    let proxy = proxy().await;
    proxy.add_targets(&blue(), &targets).await.unwrap();
    let id = targets[0].id.clone();

    let long = tokio::spawn(get_owned(format!("{}/sleep/800", proxy.url())));
    wait_for("the long request to be in flight", || proxy.stats().total.in_flight == 1).await;
    let drain = {
        let proxy = proxy.clone();
        let id = id.clone();
        tokio::spawn(async move { proxy.drain(&blue(), &[id], Duration::from_secs(5)).await })
    };
    wait_for("the drain to start", || {
        proxy.stats().member(&blue(), &id).map(|m| m.state) == Some(MemberState::Draining)
    })
    .await;
    // The only member is draining: a new request finds no serving member.
    assert_eq!(get(&format!("{}/", proxy.url())).await.0, 503);
    let members = proxy.members(&blue()).await.unwrap();
    assert_eq!((members[0].state, members[0].in_flight), (MemberState::Draining, Some(1)));

    let report = drain.await.unwrap().unwrap();
    assert_eq!((report.in_flight_at_start, report.in_flight_at_end, report.timed_out), (Some(1), Some(0), false));
    assert!(report.elapsed >= Duration::from_millis(500), "the drain did not wait: {report:?}");
    assert!(report.elapsed < Duration::from_millis(1500), "the drain did not end with the request: {report:?}");
    assert_eq!(long.await.unwrap(), (200, "v1".to_owned()), "the drained request was answered");
    assert_eq!(proxy.members(&blue()).await.unwrap()[0].state, MemberState::Disabled);

    let stats = proxy.stats();
    let member = stats.member(&blue(), &id).unwrap();
    assert_eq!((member.counts.served, member.counts.failed, member.counts.in_flight), (1, 0, 0));
    assert_eq!((stats.pools[&blue()].counts.served, stats.pools[&blue()].counts.failed), (1, 1), "the 503 counts");

    // Re-enabled, it serves again.
    proxy.add_targets(&blue(), &targets).await.unwrap();
    assert_eq!(get(&format!("{}/", proxy.url())).await, (200, "v1".to_owned()));
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_reports_what_is_left_and_lets_it_finish() {
    let fleet = fleet();
    let targets = fleet.launch(&"v1".into(), 1).await.unwrap();
    let proxy = proxy().await;
    proxy.add_targets(&blue(), &targets).await.unwrap();
    let long = tokio::spawn(get_owned(format!("{}/sleep/1200", proxy.url())));
    wait_for("the long request to be in flight", || proxy.stats().total.in_flight == 1).await;

    let report = proxy.drain(&blue(), &[targets[0].id.clone()], Duration::from_millis(200)).await.unwrap();
    assert!(report.timed_out, "{report:?}");
    assert_eq!((report.in_flight_at_start, report.in_flight_at_end), (Some(1), Some(1)));
    assert!(report.elapsed >= Duration::from_millis(200) && report.elapsed < Duration::from_millis(800), "{report:?}");
    assert_eq!(proxy.members(&blue()).await.unwrap()[0].state, MemberState::Disabled);
    // The proxy does not cut the request: it finishes on its own.
    assert_eq!(long.await.unwrap().0, 200);
    assert_eq!(proxy.stats().total.served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_real_requests_exactly() {
    let fleet = fleet();
    let v1 = fleet.launch(&"v1".into(), 2).await.unwrap();
    let v2 = fleet.launch(&"v2".into(), 1).await.unwrap();
    let proxy = proxy().await;
    proxy.add_targets(&blue(), &v1).await.unwrap();
    proxy.add_targets(&green(), &v2).await.unwrap();
    proxy.set_split(&Split::between(&blue(), &green(), 25)).await.unwrap();

    let mut v2_answers = 0;
    for _ in 0..100 {
        let (status, version) = get(&format!("{}/", proxy.url())).await;
        assert_eq!(status, 200);
        v2_answers += usize::from(version == "v2");
    }
    assert_eq!(v2_answers, 25);
    let stats = proxy.stats();
    assert_eq!(stats.pools[&green()].counts.served, 25);
    // Round-robin inside blue: 75 requests over 2 members.
    let blue_members: Vec<u64> = stats.pools[&blue()].members.values().map(|m| m.counts.served).collect();
    assert!(blue_members.iter().all(|&n| n == 37 || n == 38), "{blue_members:?}");
    let response = client().get(format!("{}/", proxy.url())).send().await.unwrap();
    assert!(
        response.headers().contains_key("x-bluegreen-target") && response.headers().contains_key("x-bluegreen-pool")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_fails_requests_unless_retries_are_on() {
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = Target { id: "dead".into(), address: closed.to_string(), zone: None, version: "v1".into(), tag: None };
    let fleet = fleet();
    let live = fleet.launch(&"v1".into(), 1).await.unwrap();

    let proxy = proxy().await;
    proxy.add_targets(&blue(), std::slice::from_ref(&dead)).await.unwrap();
    assert_eq!(get(&format!("{}/", proxy.url())).await.0, 502);
    let stats = proxy.stats();
    assert_eq!(stats.member(&blue(), &dead.id).unwrap().counts.failed, 1);
    assert_eq!(stats.total.failed, 1);

    let retrying = LocalProxyRouter::builder().pool("blue").retry_connect_failures(true).build().await.unwrap();
    retrying.add_targets(&blue(), &[dead.clone(), live[0].clone()]).await.unwrap();
    for _ in 0..4 {
        assert_eq!(get(&format!("{}/", retrying.url())).await.0, 200, "GETs are retried on the live member");
    }
    let stats = retrying.stats();
    assert_eq!((stats.total.served, stats.total.failed, stats.total.retried), (4, 0, 2), "{stats:?}");
    assert_eq!(stats.member(&blue(), &dead.id).unwrap().counts.failed, 2);
    // A POST is not retried.
    let response = client().post(format!("{}/", retrying.url())).body("x").send().await.unwrap();
    let second = client().post(format!("{}/", retrying.url())).body("x").send().await.unwrap();
    let statuses = [response.status().as_u16(), second.status().as_u16()];
    assert!(statuses.contains(&502) && statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_state_and_shutdown_stops_listening() {
    let proxy = proxy().await;
    let clone = proxy.clone();
    let target = Target { id: "t".into(), address: "127.0.0.1:9".into(), zone: None, version: "v1".into(), tag: None };
    clone.add_targets(&green(), &[target]).await.unwrap();
    clone.set_split(&Split::all_to(&green())).await.unwrap();
    assert_eq!(proxy.members(&green()).await.unwrap().len(), 1);
    assert!(proxy.split().await.unwrap().same_traffic(&Split::all_to(&green())));

    let address = proxy.address();
    assert!(tokio::net::TcpStream::connect(address).await.is_ok());
    clone.shutdown().await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "still listening after shutdown");
    proxy.shutdown().await; // again: returns at once

    // Dropping the last handle stops a proxy too.
    let dropped = LocalProxyRouter::builder().pool("blue").build().await.unwrap();
    let address = dropped.address();
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(Instant::now() < deadline, "a dropped proxy still listens");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_builder_input_is_refused() {
    let no_pool = LocalProxyRouter::builder().build().await.unwrap_err();
    assert!(matches!(no_pool, Error::Invalid { ref field, .. } if field == "pools"), "{no_pool}");
    let bad_listen = LocalProxyRouter::builder().pool("blue").listen("localhost").build().await.unwrap_err();
    assert!(matches!(bad_listen, Error::Invalid { ref field, .. } if field == "listen"), "{bad_listen}");
    let split = Split::all_to(&green());
    let bad_split = LocalProxyRouter::builder().pool("blue").split(split).build().await.unwrap_err();
    assert!(matches!(bad_split, Error::Invalid { ref field, .. } if field == "split"), "{bad_split}");
    let taken = proxy().await;
    let busy = LocalProxyRouter::builder().pool("blue").listen(taken.address().to_string()).build().await.unwrap_err();
    assert!(matches!(busy, Error::Backend { retryable: false, .. }), "{busy}");
    let bad_address = Target { id: "x".into(), address: "nowhere".into(), zone: None, version: "v1".into(), tag: None };
    let err = taken.add_targets(&blue(), &[bad_address]).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    let err = taken.drain(&blue(), &["nobody".into()], Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

// ---------------------------------------------------------------- fleet

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_restarts_on_the_same_port_with_the_new_version() {
    let (fleet, targets) =
        LocalProcessFleet::builder().binary(TARGET_BIN).zones(["a", "b"]).start("v1", 3).await.unwrap();
    let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["web-01", "web-02", "web-03"]);
    let zones: Vec<Option<&str>> = targets.iter().map(|t| t.zone.as_deref()).collect();
    assert_eq!(zones, [Some("a"), Some("b"), Some("a")]);

    let target = &targets[1];
    let old_pid = fleet.pid(&target.id).await.unwrap();
    assert_eq!(get(&format!("http://{}/", target.address)).await, (200, "v1".to_owned()));
    let updated = fleet.update(&target.id, &"v2".into()).await.unwrap();
    assert_eq!((updated.address.as_str(), updated.version.as_str()), (target.address.as_str(), "v2"));
    assert_eq!(get(&format!("http://{}/", target.address)).await, (200, "v2".to_owned()));
    let new_pid = fleet.pid(&target.id).await.unwrap();
    assert_ne!(old_pid, new_pid);
    wait_for("the old process to exit", || !alive(old_pid)).await;
    // Same version again: no restart.
    fleet.update(&target.id, &"v2".into()).await.unwrap();
    assert_eq!(fleet.pid(&target.id).await, Some(new_pid));

    // A crashed target stays listed; updating it to its own version starts it again.
    fleet.kill(&target.id).await.unwrap();
    assert_eq!(fleet.pid(&target.id).await, None);
    assert!(fleet.list().await.unwrap().iter().any(|t| t.id == target.id));
    fleet.update(&target.id, &"v2".into()).await.unwrap();
    assert_eq!(get(&format!("http://{}/", target.address)).await, (200, "v2".to_owned()));

    let err = fleet.update(&"web-99".into(), &"v2".into()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = fleet.update(&target.id, &"--fail-health".into()).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_lets_the_old_process_finish_its_requests() {
    let fleet = fleet();
    let target = fleet.launch(&"v1".into(), 1).await.unwrap().remove(0);
    let long = tokio::spawn(get_owned(format!("http://{}/sleep/600", target.address)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    fleet.update(&target.id, &"v2".into()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "the update did not wait for the old process");
    assert_eq!(long.await.unwrap(), (200, "v1".to_owned()), "SIGTERM cut the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_stops_processes_and_dropping_the_fleet_kills_them() {
    let fleet = fleet();
    let request = ProvisionRequest { version: "v1".into(), count: 2, zones: vec!["z".into()], tag: "t1".into() };
    let targets = fleet.provision(&request).await.unwrap();
    assert!(targets.iter().all(|t| t.tag.as_deref() == Some("t1") && t.zone.as_deref() == Some("z")));
    let pids = [fleet.pid(&targets[0].id).await.unwrap(), fleet.pid(&targets[1].id).await.unwrap()];
    fleet.retire(&[targets[0].id.clone(), "never-existed".into()]).await.unwrap();
    assert!(!alive(pids[0]), "a retired process still runs");
    assert!(alive(pids[1]));
    assert_eq!(fleet.list().await.unwrap().len(), 1);

    drop(fleet);
    wait_for("the dropped fleet's process to die", || !alive(pids[1])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_arguments_make_broken_releases() {
    let fleet = LocalProcessFleet::builder().binary(TARGET_BIN).version_args("v2", ["--fail-health"]).build().unwrap();
    fleet.set_version_args("v3", ["--error-rate", "1.0"]);
    let v1 = fleet.launch(&"v1".into(), 1).await.unwrap().remove(0);
    let v2 = fleet.launch(&"v2".into(), 1).await.unwrap().remove(0);
    let v3 = fleet.launch(&"v3".into(), 1).await.unwrap().remove(0);
    assert_eq!(get(&format!("http://{}/healthz", v1.address)).await.0, 200);
    assert_eq!(get(&format!("http://{}/healthz", v2.address)).await.0, 503);
    assert_eq!(get(&format!("http://{}/", v3.address)).await.0, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_start_is_a_backend_error_with_its_output() {
    let script = std::env::temp_dir().join(format!("bluegreen-failing-server-{}", std::process::id()));
    std::fs::write(&script, "#!/bin/sh\necho 'cannot open the database' >&2\nexit 3\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let fleet = LocalProcessFleet::builder().binary(&script).build().unwrap();
    let err = fleet.launch(&Version::from("v1"), 1).await.unwrap_err();
    let _ = std::fs::remove_file(&script);
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { retryable: false, .. }), "{text}");
    assert!(text.contains("cannot open the database") && text.contains("exit status: 3"), "{text}");

    let missing = LocalProcessFleet::builder().binary("/nonexistent/bluegreen-target").build().unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
}

#[test]
fn the_target_binary_is_found_next_to_the_test_executable() {
    // cargo puts integration-test executables in target/<profile>/deps and binaries one up.
    let found = LocalProcessFleet::find_target_binary().unwrap();
    assert_eq!(found.canonicalize().unwrap(), std::path::Path::new(TARGET_BIN).canonicalize().unwrap());
}

// ---------------------------------------------------------------- load generator

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_counts_connection_errors_and_refuses_bad_input() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let load = LoadGenerator::builder(format!("http://{closed}")).rate(200.0).max_requests(20).start().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    assert_eq!((report.sent, report.failed, report.succeeded), (20, 20, 0), "{report}");
    assert_eq!(report.failures.get("connect"), Some(&20), "{report}");

    for bad in [
        LoadGenerator::builder("https://127.0.0.1:1").start(),
        LoadGenerator::builder("not a url").start(),
        LoadGenerator::builder("http://127.0.0.1:1").rate(0.0).start(),
        LoadGenerator::builder("http://127.0.0.1:1").long_requests(1.5, Duration::ZERO..=Duration::ZERO).start(),
    ] {
        assert!(matches!(bad, Err(Error::Invalid { .. })), "{bad:?}");
    }
}

// ---------------------------------------------------------------- negative control

/// What the zero-failure tests guard against: a target stopped while the proxy still sends
/// it requests loses them, and the load generator and the proxy both count the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_target_without_draining_it_loses_requests() {
    let (fleet, targets) = LocalProcessFleet::builder().binary(TARGET_BIN).start("v1", 2).await.unwrap();
    let proxy = proxy().await;
    proxy.add_targets(&blue(), &targets).await.unwrap();
    let load = LoadGenerator::builder(proxy.url()).rate(300.0).concurrency(32).start().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No drain: the process goes while the proxy still routes to it.
    fleet.retire(std::slice::from_ref(&targets[0].id)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    let stats = proxy.stats();
    println!("without drain: {report}; proxy {:?}", stats.total);
    assert!(report.failed > 10, "stopping an undrained target lost nothing?! {report}");
    assert_eq!(report.failures.keys().collect::<Vec<_>>(), ["status 502"], "{report}");
    assert_eq!(report.failed, stats.total.failed, "the proxy counts the same failures");
    assert_eq!(stats.member(&blue(), &targets[0].id).unwrap().counts.failed, report.failed);
}
