//! `[backend] kind = "haproxy"` end to end: a real `haproxy` (generated config, frontend on a
//! 127.0.0.1 high port, admin socket in a temporary directory) in front of four
//! `bluegreen serve-target` processes, whose updater is a shell script that restarts a host's
//! process on the same port with the new version: `bluegreen plan` and `bluegreen deploy` of a
//! rolling update two at a time; and blue-green between two standing pools of two hosts each,
//! run again unchanged, then `bluegreen rollback`.
//!
//! Without `haproxy` on PATH (or in /usr/sbin) the test fails when `CI` is set and is skipped
//! with a notice otherwise; `scripts/test` installs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bluegreen_testkit::free_port;
use bluegreen_testkit::haproxy::{self, HaproxyProcess, Server};

mod common;

use common::{temp_dir, Hosts, BLUEGREEN};

/// The test's directory, HAProxy and the target processes; all stopped and removed when dropped.
struct World {
    dir: tempfile::TempDir,
    haproxy: Option<HaproxyProcess>,
    hosts: Option<Hosts>,
}

impl Drop for World {
    fn drop(&mut self) {
        drop(self.haproxy.take());
        // Before the directory goes: the hosts' pid files are in it.
        drop(self.hosts.take());
    }
}

const HOSTS: usize = 4;

impl World {
    /// Starts the hosts on v1 and HAProxy in front of them: backend `web`, server
    /// `<pool>.web-N` (or, not `by_pool`, `web-N` as an operator names it) for host N in
    /// `pools[N - 1]`, weight 1 in blue and 0 in any other pool.
    fn start(binary: &Path, pools: [&str; HOSTS], by_pool: bool) -> (Self, u16, Vec<(String, String)>) {
        Self::start_in(binary, pools, if by_pool { Layout::ByPool } else { Layout::Named })
    }

    fn start_in(binary: &Path, pools: [&str; HOSTS], layout: Layout) -> (Self, u16, Vec<(String, String)>) {
        let dir = temp_dir("cli-haproxy");
        let hosts: Vec<(String, String)> =
            (1..=HOSTS).map(|i| (format!("web-{i}"), format!("127.0.0.1:{}", free_port()))).collect();
        let started = Hosts::start(dir.path(), &hosts);
        let server = |id: &String, address: &String, pool: &str| match layout {
            Layout::ByPool => Server::new(format!("{pool}.{id}"), address, u32::from(pool == "blue")),
            Layout::Named => Server::new(id, address, u32::from(pool == "blue")),
            // Each pool's backend (web_<pool>), every server at weight 1.
            Layout::BackendPerPool => Server::new(id, address, 1),
        };
        let haproxy = if layout == Layout::BackendPerPool {
            let in_pool = |wanted: &str| -> Vec<Server> {
                hosts
                    .iter()
                    .zip(pools)
                    .filter(|(_, pool)| *pool == wanted)
                    .map(|((id, a), p)| server(id, a, p))
                    .collect()
            };
            HaproxyProcess::start_per_pool(
                binary,
                Some(dir.path()),
                &[("blue", in_pool("blue")), ("green", in_pool("green"))],
            )
        } else {
            let servers: Vec<Server> = hosts.iter().zip(pools).map(|((id, a), p)| server(id, a, p)).collect();
            HaproxyProcess::start(binary, Some(dir.path()), &servers, "")
        };
        let frontend = haproxy.frontend();
        (Self { dir, haproxy: Some(haproxy), hosts: Some(started) }, frontend, hosts)
    }

    fn bluegreen(&self, args: &[&str]) -> Output {
        Command::new(BLUEGREEN).current_dir(self.dir.path()).args(args).output().expect("run bluegreen")
    }
}

/// How HAProxy's config has the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Backend `web`, servers `<pool>.web-N`.
    ByPool,
    /// Backend `web`, servers `web-N` (as an operator names them).
    Named,
    /// Backends `web_blue` and `web_green`, servers `web-N`, chosen by the split map
    /// `<dir>/bluegreen-split.map` (every entry on web_blue at first).
    BackendPerPool,
}

/// One `GET /` (HTTP/1.1, closed after the answer): the `x-version` and `x-server` headers.
fn get(address: &str) -> Result<(String, Option<String>), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{address}: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("{address}: {e}"))?;
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{address}: {}", head.lines().next().unwrap_or("no answer")));
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let version = header("x-version").ok_or_else(|| format!("{address}: no x-version in {head}"))?;
    Ok((version, header("x-server")))
}

#[test]
fn haproxy_backend_plans_and_deploys_a_rolling_update_two_at_a_time() {
    let Some(binary) = haproxy::require("haproxy_backend_plans_and_deploys_a_rolling_update_two_at_a_time") else {
        return;
    };
    let (world, frontend, hosts) = World::start(&binary, ["blue"; HOSTS], true);
    let through_haproxy = format!("127.0.0.1:{frontend}");

    let mut file = format!(
        r#"service = "web"
version = "v2"

[strategy]
kind = "rolling"
batch = 2

{}
[backend]
kind = "haproxy"
socket = "admin.sock"
haproxy_backend = "web"
"#,
        bluegreen_testkit::QUICK_CHECKS
    );
    file.push_str(&format!(
        "updater = \"sh {}/update.sh {{id}} {{address}} {{version}}\"\nupdate_timeout = \"30s\"\n",
        world.dir.path().display()
    ));
    for (id, address) in &hosts {
        file.push_str(&format!(
            "\n[[backend.hosts]]\nid = \"{id}\"\naddress = \"{address}\"\nzone = \"zone-a\"\nversion = \"v1\"\n"
        ));
    }
    file.push_str("\n[backend.probe]\npath = \"/healthz\"\nexpect_status = 200\ntimeout = \"500ms\"\n\n[state]\npath = \"state\"\n");
    std::fs::write(world.dir.path().join("deploy.toml"), &file).expect("deploy.toml");

    // Before: everything serves v1 through HAProxy.
    for _ in 0..8 {
        let (version, _) = get(&through_haproxy).expect("a request through haproxy");
        assert_eq!(version, "v1");
    }

    let plan = world.bluegreen(&["plan", "-f", "deploy.toml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "plan: {text}\n{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("web v1 → v2 (rolling)"), "plan: {text}");
    // Four hosts, two at a time: two batches of two, two of four always serving.
    assert!(text.contains("batch 1/2: update 2 targets in pool blue to v2"), "plan: {text}");
    assert!(text.contains("batch 2/2: update 2 targets in pool blue to v2"), "plan: {text}");
    assert!(text.contains("lowest 2 of 4 serving"), "plan: {text}");
    // plan changes nothing.
    for (_, address) in &hosts {
        assert_eq!(get(address).expect("direct request").0, "v1");
    }

    let started = Instant::now();
    let deploy = world.bluegreen(&["deploy", "-f", "deploy.toml", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&deploy.stdout);
    assert_eq!(deploy.status.code(), Some(0), "deploy: {stdout}\n{}", String::from_utf8_lossy(&deploy.stderr));
    eprintln!("deploy took {:?}", started.elapsed());
    let log = String::from_utf8_lossy(&deploy.stderr);
    assert!(!log.contains("updater output"), "the updaters' output is logged only with -v: {log}");
    let outcome = stdout.lines().last().unwrap_or_default();
    assert!(outcome.contains("\"status\":\"succeeded\""), "{outcome}");
    assert!(outcome.contains("\"serving_versions\":[\"v2\"]"), "{outcome}");
    // Two at a time: the updates come in two batches of two.
    let updated: Vec<&str> = stdout.lines().filter(|l| l.contains("\"event\":\"target_updated\"")).collect();
    assert_eq!(updated.len(), HOSTS, "{stdout}");
    assert!(stdout.contains("\"event\":\"targets_drained\""), "{stdout}");

    // Every host runs v2 and HAProxy sends every request to v2, over every server.
    for (id, address) in &hosts {
        assert_eq!(get(address).expect("direct request").0, "v2", "{id}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut servers = std::collections::BTreeSet::new();
    loop {
        let answers: Vec<_> = (0..2 * HOSTS).map(|_| get(&through_haproxy)).collect();
        let all_v2 = answers.iter().all(|a| matches!(a, Ok((v, _)) if v == "v2"));
        if all_v2 {
            servers.extend(answers.iter().filter_map(|a| a.as_ref().ok().and_then(|(_, s)| s.clone())));
            if servers.len() == HOSTS {
                break;
            }
        }
        assert!(Instant::now() < deadline, "through haproxy after the deploy: {answers:?} (servers seen {servers:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let expected: std::collections::BTreeSet<String> = hosts.iter().map(|(id, _)| format!("blue.{id}")).collect();
    assert_eq!(servers, expected);

    // The deploy is recorded like any other.
    let history = world.bluegreen(&["history", "-f", "deploy.toml"]);
    assert_eq!(history.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&history.stdout).contains("succeeded"));
}

/// The `[[backend.hosts]]` tables of `hosts`, each in `pools[i]` if given.
fn hosts_toml(hosts: &[(String, String)], pools: Option<[&str; HOSTS]>) -> String {
    let mut text = String::new();
    for (i, (id, address)) in hosts.iter().enumerate() {
        text.push_str(&format!("\n[[backend.hosts]]\nid = \"{id}\"\naddress = \"{address}\"\nversion = \"v1\"\n"));
        if let Some(pools) = pools {
            text.push_str(&format!("pool = \"{}\"\n", pools[i]));
        }
    }
    text
}

/// A blue-green deploy file over standing pools `pools` of `hosts`, naming each host's server
/// after it (`server = "web-1"`) when `named`.
fn standing_file(world: &World, hosts: &[(String, String)], pools: [&str; HOSTS], named: bool) -> String {
    let mut file = format!(
        r#"service = "web"
version = "v2"

[strategy]
kind = "blue_green"
bake = "500ms"

[health]
interval = "100ms"
timeout = "80ms"
healthy_threshold = 2
min_healthy_time = "0s"
deadline = "10s"

[backend]
kind = "haproxy"
socket = "admin.sock"
haproxy_backend = "web"
updater = "sh {}/update.sh {{id}} {{address}} {{version}}"
"#,
        world.dir.path().display()
    );
    let mut hosts_part = hosts_toml(hosts, Some(pools));
    if named {
        for (id, _) in hosts {
            hosts_part =
                hosts_part.replace(&format!("id = \"{id}\"\n"), &format!("id = \"{id}\"\nserver = \"{id}\"\n"));
        }
    }
    file.push_str(&hosts_part);
    file.push_str("\n[backend.probe]\npath = \"/healthz\"\ntimeout = \"500ms\"\n\n[state]\npath = \"state\"\n");
    file
}

/// The versions HAProxy answers with over a few requests, once they are all the same.
fn settled_version(through_haproxy: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answers: Vec<_> = (0..2 * HOSTS).map(|_| get(through_haproxy)).collect();
        if let Ok((first, _)) = &answers[0] {
            if answers.iter().all(|a| matches!(a, Ok((v, _)) if v == first)) {
                return first.clone();
            }
        }
        assert!(Instant::now() < deadline, "through haproxy: {answers:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hosts 1–2 in blue (serving), 3–4 in green (idle), and `deploy.toml` over them; with
/// `operator_names`, HAProxy's servers are named `web-N` and the file names them (`server`).
/// Returns the world, HAProxy's frontend address and the hosts.
fn standing_world(binary: &Path, operator_names: bool) -> (World, String, Vec<(String, String)>) {
    let pools = ["blue", "blue", "green", "green"];
    let (world, frontend, hosts) = World::start(binary, pools, !operator_names);
    let file = standing_file(&world, &hosts, pools, operator_names);
    std::fs::write(world.dir.path().join("deploy.toml"), file).expect("deploy.toml");
    (world, format!("127.0.0.1:{frontend}"), hosts)
}

fn updates(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.contains("\"event\":\"target_updated\"")).count()
}

#[test]
fn haproxy_backend_switches_between_standing_pools_and_rolls_back_without_updating() {
    let test = "haproxy_backend_switches_between_standing_pools_and_rolls_back_without_updating";
    let Some(binary) = haproxy::require(test) else { return };
    let (world, through_haproxy, hosts) = standing_world(&binary, false);
    let run = |args: &[&str]| {
        let out = world.bluegreen(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };

    let plan = run(&["plan", "-f", "deploy.toml"]);
    assert!(plan.contains("batch 1/1: update 2 targets in pool green to v2"), "{plan}");
    assert!(plan.contains("standing pools: green's hosts are updated in place to v2"), "{plan}");
    assert!(!plan.contains("start "), "nothing is started on a fixed inventory: {plan}");

    // v1 → v2: the green hosts are updated and take the traffic; blue stays on v1, warm. With
    // -v the updater's output is in the log (stderr), here as JSON lines.
    let logged = world.bluegreen(&["deploy", "-f", "deploy.toml", "--output", "json", "-v", "--log-format", "json"]);
    let log = String::from_utf8_lossy(&logged.stderr);
    let deploy = String::from_utf8_lossy(&logged.stdout).into_owned();
    assert_eq!(logged.status.code(), Some(0), "{deploy}\n{log}");
    let output =
        log.lines().find(|l| l.contains("updater output")).unwrap_or_else(|| panic!("no updater output: {log}"));
    let line: serde_json::Value = serde_json::from_str(output).expect("a JSON log line");
    assert!(line["fields"]["output"].as_str().is_some_and(|o| o.contains("now runs v2")), "{line}");
    assert!(deploy.lines().last().unwrap_or_default().contains("\"status\":\"succeeded\""), "{deploy}");
    assert_eq!(updates(&deploy), 2, "{deploy}");
    let direct: Vec<String> = hosts.iter().map(|(_, a)| get(a).expect("direct").0).collect();
    assert_eq!(direct, ["v1", "v1", "v2", "v2"]);
    assert_eq!(settled_version(&through_haproxy), "v2");

    // The same file again, from a new process whose file still says v1 everywhere: the state
    // store knows green runs v2, so nothing is updated and nothing moves.
    let again = run(&["deploy", "-f", "deploy.toml", "--output", "json"]);
    assert_eq!(updates(&again), 0, "{again}");
    assert!(!again.contains("\"event\":\"traffic_shifted\""), "{again}");
    assert_eq!(settled_version(&through_haproxy), "v2");

    // `bluegreen rollback`: blue still runs v1, so it is a switch, no update.
    let back = run(&["rollback", "-f", "deploy.toml", "--output", "json"]);
    assert_eq!(updates(&back), 0, "{back}");
    assert!(back.contains("\"event\":\"traffic_shifted\""), "{back}");
    assert_eq!(settled_version(&through_haproxy), "v1");
    let direct: Vec<String> = hosts.iter().map(|(_, a)| get(a).expect("direct").0).collect();
    assert_eq!(direct, ["v1", "v1", "v2", "v2"], "green stays warm on v2");
}

#[test]
fn haproxy_servers_an_operator_named_are_adopted_only_with_adopt() {
    let test = "haproxy_servers_an_operator_named_are_adopted_only_with_adopt";
    let Some(binary) = haproxy::require(test) else { return };
    let (world, through_haproxy, hosts) = standing_world(&binary, true);

    let plan = world.bluegreen(&["plan", "-f", "deploy.toml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("adopt 4 members (server web/web-1, server web/web-2"), "{text}");

    // Without --adopt: exit 2, saying how, and nothing changed.
    let refused = world.bluegreen(&["deploy", "-f", "deploy.toml"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--adopt") && stderr.contains("server web/web-1 as web-1 in pool blue"), "{stderr}");
    let direct: Vec<String> = hosts.iter().map(|(_, a)| get(a).expect("direct").0).collect();
    assert_eq!(direct, ["v1"; HOSTS]);
    let history = world.bluegreen(&["history", "-f", "deploy.toml", "--output", "json"]);
    assert!(!String::from_utf8_lossy(&history.stdout).contains("web-v2"), "a deployment was recorded");

    // With --adopt: adopted, then deployed; green's servers (web-3, web-4) take the traffic.
    let adopted = world.bluegreen(&["deploy", "-f", "deploy.toml", "--adopt", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&adopted.stdout);
    assert_eq!(adopted.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&adopted.stderr));
    assert!(stdout.contains("\"event\":\"adopted\""), "{stdout}");
    assert_eq!(updates(&stdout), 2, "{stdout}");
    assert_eq!(settled_version(&through_haproxy), "v2");

    // Recorded: the next deploy needs no --adopt.
    let next = world.bluegreen(&["deploy", "-f", "deploy.toml", "--version", "v3", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&next.stdout);
    assert_eq!(next.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&next.stderr));
    assert!(!stdout.contains("\"event\":\"adopted\""), "{stdout}");
    assert_eq!(settled_version(&through_haproxy), "v3");
    let direct: Vec<String> = hosts.iter().map(|(_, a)| get(a).expect("direct").0).collect();
    assert_eq!(direct, ["v3", "v3", "v2", "v2"]);
}

#[test]
fn haproxy_backend_per_pool_switches_by_the_split_map_and_rolls_back_without_updating() {
    let test = "haproxy_backend_per_pool_switches_by_the_split_map_and_rolls_back_without_updating";
    let Some(binary) = haproxy::require(test) else { return };
    let pools = ["blue", "blue", "green", "green"];
    let (world, frontend, hosts) = World::start_in(&binary, pools, Layout::BackendPerPool);
    let through_haproxy = format!("127.0.0.1:{frontend}");
    let map = world.dir.path().join("bluegreen-split.map");
    let file = standing_file(&world, &hosts, pools, false).replace(
        "haproxy_backend = \"web\"\n",
        &format!("haproxy_backend = \"web\"\nlayout = \"backend-per-pool\"\nsplit_map = \"{}\"\n", map.display()),
    );
    std::fs::write(world.dir.path().join("deploy.toml"), file).expect("file");
    let run = |args: &[&str]| {
        let out = world.bluegreen(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };

    let plan = run(&["plan", "-f", "deploy.toml"]);
    assert!(plan.contains("batch 1/1: update 2 targets in pool green to v2"), "{plan}");

    // v1 -> v2: green's hosts (servers web-3, web-4 of web_green) are updated and the map
    // sends everything to web_green; blue stays on v1, warm.
    let deploy = run(&["deploy", "-f", "deploy.toml", "--output", "json"]);
    assert!(deploy.lines().last().unwrap_or_default().contains("\"status\":\"succeeded\""), "{deploy}");
    assert_eq!(updates(&deploy), 2, "{deploy}");
    assert_eq!(settled_version(&through_haproxy), "v2");
    let (_, server) = get(&through_haproxy).expect("through haproxy");
    assert!(server.as_deref().is_some_and(|s| s.starts_with("web_green/web-")), "{server:?}");

    // `bluegreen rollback`: a switch of the map back to web_blue, no update.
    let back = run(&["rollback", "-f", "deploy.toml", "--output", "json"]);
    assert_eq!(updates(&back), 0, "{back}");
    assert_eq!(settled_version(&through_haproxy), "v1");
    let direct: Vec<String> = hosts.iter().map(|(_, a)| get(a).expect("direct").0).collect();
    assert_eq!(direct, ["v1", "v1", "v2", "v2"], "green stays warm on v2");
}
