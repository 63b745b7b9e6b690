//! `[backend] kind = "rfc2136"` end to end: a real `knotd` (generated config, zone and TSIG key
//! in a temporary directory, 127.0.0.1 on a high port) holds `www.example.test.`, whose A
//! records point at two `bluegreen serve-target` processes on 127.0.0.11 and 127.0.0.12;
//! `bluegreen plan` and `bluegreen deploy` of a rolling update one host at a time, the TSIG
//! secret coming from the environment (`${env.…}`).
//!
//! Without `knotd` the test fails when `CI=true` and is skipped with a notice otherwise;
//! `scripts/test` installs it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bluegreen_core::{MemberState, PoolName, Router, Split, Target};
use bluegreen_dns::{PropagationCheck, Rfc2136Router, TsigKey};

mod common;

use common::{temp_dir, Hosts, BLUEGREEN};
const ZONE: &str = "example.test.";
const NAME: &str = "www.example.test.";
const KEY_NAME: &str = "bluegreen-cli-test-key.";
/// A test-only secret (32 random bytes, base64).
use bluegreen_testkit::{free_dns_port, free_port_on};

const KEY_SECRET: &str = "0u8p58dX9OJ2n5xd9A/AmyvLv8RUbKffZB9xnoNUQjE=";
const SECRET_VAR: &str = "BLUEGREEN_CLI_TEST_TSIG_SECRET";

fn binary(name: &str) -> PathBuf {
    bluegreen_testkit::find_binary(name).unwrap_or_else(|| PathBuf::from(name))
}

fn knot_or_skip(test: &str) -> bool {
    bluegreen_testkit::require_binary("knotd", "`apt-get install -y knot knot-dnsutils` (scripts/test does this)", test)
        .is_some()
}

/// The test's directory, knotd and the target processes; all stopped and removed when dropped.
struct World {
    dir: tempfile::TempDir,
    knot: Option<Child>,
    hosts: Option<Hosts>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut knot) = self.knot.take() {
            if std::thread::panicking() {
                eprintln!(
                    "--- knotd log ---\n{}",
                    std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
                );
            }
            let _ = knot.kill();
            let _ = knot.wait();
        }
        // Before the directory goes: the hosts' pid files are in it.
        drop(self.hosts.take());
    }
}

impl World {
    /// Starts knotd with an empty `www` and the two hosts on v1.
    fn start() -> (Self, SocketAddr, Vec<(String, String)>) {
        Self::start_with(&[("b1", "127.0.0.11"), ("b2", "127.0.0.12")], &[])
    }

    /// Starts knotd with plain A records at `www` for `www` (no bookkeeping) and `hosts`
    /// (id, IP) on v1.
    fn start_with(hosts: &[(&str, &str)], www: &[&str]) -> (Self, SocketAddr, Vec<(String, String)>) {
        let tmp = temp_dir("cli-rfc2136");
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("db")).expect("temp dir");
        let hosts: Vec<(String, String)> =
            hosts.iter().map(|(id, ip)| ((*id).to_owned(), format!("{ip}:{}", free_port_on(ip)))).collect();
        let started = Hosts::start(dir, &hosts);

        let mut zone = format!(
            "$ORIGIN {ZONE}\n$TTL 60\n@ SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 60\n\
             @ NS ns1.{ZONE}\nns1 A 127.0.0.1\n"
        );
        for ip in www {
            zone.push_str(&format!("www 1 A {ip}\n"));
        }
        std::fs::write(dir.join("zone"), zone).expect("zone");
        // A free port can be taken by another test's server before knotd binds it: try another.
        let (child, addr) = (0..5)
            .find_map(|_| start_knotd(dir, free_dns_port()))
            .unwrap_or_else(|| panic!("knotd found its port taken 5 times"));
        (Self { dir: tmp, knot: Some(child), hosts: Some(started) }, addr, hosts)
    }

    fn bluegreen(&self, args: &[&str]) -> Output {
        Command::new(BLUEGREEN)
            .current_dir(self.dir.path())
            .env(SECRET_VAR, KEY_SECRET)
            .args(args)
            .output()
            .expect("run bluegreen")
    }
}

/// Starts knotd on `port` with the config for `dir`; `None` if the port was taken meanwhile.
fn start_knotd(dir: &Path, port: u16) -> Option<(Child, SocketAddr)> {
    let d = dir.display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         database:\n    storage: \"{d}/db\"\n\
         key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {KEY_SECRET}\n\
         acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n\
         log:\n  - target: stderr\n    any: warning\n\
         zone:\n  - domain: {ZONE}\n    storage: \"{d}\"\n    file: \"zone\"\n    zonefile-sync: -1\n    acl: [update]\n"
    );
    std::fs::write(dir.join("knot.conf"), conf).expect("knot.conf");
    let mut child = Command::new(binary("knotd"))
        .arg("-c")
        .arg(dir.join("knot.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("knotd.log")).expect("log"))
        .spawn()
        .expect("start knotd");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("knotd.log")).unwrap_or_default();
            if log.contains("address already in use") {
                return None;
            }
            panic!("knotd exited ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "knotd did not listen on {addr} within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, addr))
}

fn router(server: SocketAddr) -> Rfc2136Router {
    Rfc2136Router::builder(server, ZONE, NAME)
        .tsig(TsigKey::hmac_sha256(KEY_NAME, KEY_SECRET).unwrap())
        .ttl(Duration::from_secs(1))
        .resolver_margin(Duration::from_millis(200))
        .pool("blue")
        .pool("green")
        .build()
        .expect("router")
}

async fn served(server: SocketAddr) -> BTreeSet<Ipv4Addr> {
    let report = PropagationCheck::new(NAME).unwrap().server("ns1", server).check(&BTreeSet::new()).await;
    report.answers[0].observed.clone().expect("an answer from knotd")
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// One `GET /` (closed after the answer): the `x-version` header.
fn version_at(address: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("{address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: www\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let head = answer.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-version")).map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{address}: no x-version in {head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_backend_plans_and_deploys_a_rolling_update_with_the_secret_from_the_environment() {
    if !knot_or_skip("rfc2136_backend_plans_and_deploys_a_rolling_update_with_the_secret_from_the_environment") {
        return;
    }
    let (world, server, hosts) = World::start();
    // Before: both hosts are blue's members and all of the traffic.
    let dns = Arc::new(router(server));
    let blue = PoolName::from("blue");
    let targets: Vec<Target> = hosts
        .iter()
        .map(|(id, address)| Target {
            id: id.as_str().into(),
            address: address.clone(),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect();
    dns.add_targets(&blue, &targets).await.expect("register the hosts");
    dns.set_split(&Split::all_to(&blue)).await.expect("all to blue");
    let addresses: BTreeSet<Ipv4Addr> = ["127.0.0.11", "127.0.0.12"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(served(server).await, addresses);

    write_deploy_file(&world, server, "kind = \"rolling\"\nbatch = 1", &hosts, |_| None);

    let plan = world.bluegreen(&["plan", "-f", "deploy.toml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "plan: {text}\n{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("www v1 → v2 (rolling)"), "plan: {text}");
    assert!(text.contains("batch 2/2"), "plan: {text}");
    assert_eq!(dns.updates_sent(), 2, "plan sent nothing (the test's own two updates only)");

    let deploy = world.bluegreen(&["deploy", "-f", "deploy.toml", "--output", "json", "-vv"]);
    let stdout = String::from_utf8_lossy(&deploy.stdout);
    assert_eq!(deploy.status.code(), Some(0), "deploy: {stdout}\n{}", String::from_utf8_lossy(&deploy.stderr));
    // The TSIG secret is in no output (debug log included) and no state file.
    let status = world.bluegreen(&["status", "-f", "deploy.toml", "--output", "json"]);
    for out in [&plan, &deploy, &status] {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(KEY_SECRET), "the TSIG secret in an output: {all}");
    }
    for entry in walk(&world.dir.path().join("state")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(KEY_SECRET), "the TSIG secret in {}", entry.display());
    }
    let outcome = stdout.lines().last().unwrap_or_default();
    assert!(outcome.contains("\"status\":\"succeeded\""), "{outcome}");
    assert!(outcome.contains("\"serving_versions\":[\"v2\"]"), "{outcome}");
    assert_eq!(stdout.lines().filter(|l| l.contains("\"event\":\"target_updated\"")).count(), 2, "{stdout}");

    // After: both hosts run v2, serve, and are the served record set again.
    for (id, address) in &hosts {
        assert_eq!(version_at(address), "v2", "{id}");
    }
    assert_eq!(served(server).await, addresses);
    let members = dns.members(&blue).await.expect("members");
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.state == MemberState::Serving), "{members:?}");

    // Without the secret in the environment, the file is refused before anything is sent.
    let without_secret = |args: &[&str]| {
        Command::new(BLUEGREEN)
            .current_dir(world.dir.path())
            .env_remove(SECRET_VAR)
            .args(args)
            .output()
            .expect("run bluegreen")
    };
    let out = without_secret(&["plan", "-f", "deploy.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("deploy.toml:") && stderr.contains(SECRET_VAR), "{stderr}");
    // Reading the records needs no backend secret: status (the deploy succeeded: 0), history.
    let status = without_secret(&["status", "-f", "deploy.toml", "--output", "json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&status.stderr));
    assert!(text.contains("\"standing\""), "{text}");
    let history = without_secret(&["history", "-f", "deploy.toml"]);
    assert_eq!(history.status.code(), Some(0), "{}", String::from_utf8_lossy(&history.stderr));
    assert!(String::from_utf8_lossy(&history.stdout).contains("succeeded"), "{history:?}");
}

/// A name that predates bluegreen: knot serves plain A records for the two blue hosts, no
/// bookkeeping; the deploy file's inventory has two blue and two green hosts. `plan` shows the
/// adoption; `deploy` exits 2 naming the records and `--adopt`, sending nothing; `deploy
/// --adopt` adopts and switches to green; the next deploy needs no `--adopt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_a_name_with_plain_a_records_is_adopted_only_with_adopt() {
    if !knot_or_skip("rfc2136_a_name_with_plain_a_records_is_adopted_only_with_adopt") {
        return;
    }
    let inventory = [("b1", "127.0.0.11"), ("b2", "127.0.0.12"), ("g1", "127.0.0.21"), ("g2", "127.0.0.22")];
    let (world, server, hosts) = World::start_with(&inventory, &["127.0.0.11", "127.0.0.12"]);
    let ips = |list: &[&str]| -> BTreeSet<Ipv4Addr> { list.iter().map(|s| s.parse().unwrap()).collect() };
    let (blue_ips, green_ips) = (ips(&["127.0.0.11", "127.0.0.12"]), ips(&["127.0.0.21", "127.0.0.22"]));
    assert_eq!(served(server).await, blue_ips);

    let pool = |id: &str| Some(if id.starts_with('b') { "blue" } else { "green" });
    write_deploy_file(&world, server, "kind = \"blue_green\"", &hosts, pool);

    let plan = world.bluegreen(&["plan", "-f", "deploy.toml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "plan: {text}\n{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("adopt 2 members (A 127.0.0.11 (www.example.test.)"), "plan: {text}");

    // Without --adopt: exit 2, saying how, and nothing sent (no bookkeeping, same answers).
    let refused = world.bluegreen(&["deploy", "-f", "deploy.toml"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--adopt"), "{stderr}");
    assert!(stderr.contains("A 127.0.0.11 (www.example.test.) as b1 in pool blue"), "{stderr}");
    assert!(stderr.contains("A 127.0.0.12 (www.example.test.) as b2 in pool blue"), "{stderr}");
    assert_eq!(served(server).await, blue_ips);
    let dns = router(server);
    assert!(dns.members(&PoolName::from("blue")).await.unwrap().is_empty(), "no bookkeeping was written");
    for (id, address) in &hosts {
        assert_eq!(version_at(address), "v1", "{id} was not updated");
    }

    // With --adopt: adopted, green updated in place, then the answer is green's.
    let adopted = world.bluegreen(&["deploy", "-f", "deploy.toml", "--adopt", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&adopted.stdout);
    assert_eq!(adopted.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&adopted.stderr));
    assert!(stdout.contains("\"event\":\"adopted\""), "{stdout}");
    assert_eq!(served(server).await, green_ips);
    let members = dns.members(&PoolName::from("blue")).await.unwrap();
    assert_eq!(members.len(), 2, "blue's bookkeeping is written: {members:?}");
    let versions: Vec<String> = hosts.iter().map(|(_, a)| version_at(a)).collect();
    assert_eq!(versions, ["v1", "v1", "v2", "v2"]);

    // The next deploy needs no --adopt: back to blue, on v3.
    let next = world.bluegreen(&["deploy", "-f", "deploy.toml", "--version", "v3", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&next.stdout);
    assert_eq!(next.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&next.stderr));
    assert!(!stdout.contains("\"event\":\"adopted\""), "{stdout}");
    assert_eq!(served(server).await, blue_ips);
    let versions: Vec<String> = hosts.iter().map(|(_, a)| version_at(a)).collect();
    assert_eq!(versions, ["v3", "v3", "v2", "v2"]);
}

/// Writes `deploy.toml` in `world`'s directory: an RFC 2136 backend on `server` with `strategy`
/// (the lines of `[strategy]`) over `hosts`, each in `pool(id)` when it names one.
fn write_deploy_file(
    world: &World,
    server: SocketAddr,
    strategy: &str,
    hosts: &[(String, String)],
    pool: impl Fn(&str) -> Option<&'static str>,
) {
    let mut file = format!(
        r#"service = "www"
version = "v2"

[strategy]
{strategy}

{checks}
[backend]
kind = "rfc2136"
server = "{server}"
zone = "{ZONE}"
name = "{NAME}"
ttl = "1s"
margin = "200ms"
tsig_key = "{KEY_NAME}"
tsig_secret = "${{env.{SECRET_VAR}}}"
updater = "sh {dir}/update.sh {{id}} {{address}} {{version}}"
update_timeout = "30s"
"#,
        dir = world.dir.path().display(),
        checks = bluegreen_testkit::QUICK_CHECKS
    );
    for (id, address) in hosts {
        file.push_str(&format!("\n[[backend.hosts]]\nid = \"{id}\"\naddress = \"{address}\"\nversion = \"v1\"\n"));
        if let Some(pool) = pool(id) {
            file.push_str(&format!("pool = \"{pool}\"\n"));
        }
    }
    file.push_str("\n[backend.probe]\nkind = \"http\"\npath = \"/healthz\"\n\n[state]\npath = \"state\"\n");
    std::fs::write(world.dir.path().join("deploy.toml"), &file).expect("deploy.toml");
}
