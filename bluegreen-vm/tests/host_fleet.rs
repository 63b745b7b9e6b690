//! `HostFleet` runs the core fleet conformance suite: it claims in-place updates (run by a real
//! shell command here) and not provisioning, which it must refuse with `Invalid`, changing
//! nothing.

use bluegreen_core::conformance::{fleet_suite, FleetFixture};
use bluegreen_core::{Fleet, Target};
use bluegreen_vm::{HostFleet, Updater};

#[tokio::test]
async fn host_fleet_passes_the_fleet_conformance_suite() {
    let hosts = [Target::new("web-01", "127.0.0.1:8081", "v1"), Target::new("web-02", "127.0.0.1:8082", "v1")];
    // A real command, run by `sh -c` for each host: it fails unless given a host and a version.
    let updater = Updater::command("test -n '{host}' && test -n '{version}'");
    let fleet = HostFleet::new(hosts, updater).expect("inventory");
    assert!(!fleet.capabilities().provisions && fleet.capabilities().updates_in_place);
    let fixture = FleetFixture { version: "v1".into(), other_version: "v2".into(), tag: "conformance".into() };
    fleet_suite(&fleet, &fixture).await;
    let versions: Vec<String> = fleet.list().await.unwrap().iter().map(|t| t.version.to_string()).collect();
    assert_eq!(versions, ["v2", "v1"], "the suite updated the first listed host in place, and only it");
}
