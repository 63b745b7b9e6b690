//! Real knot DNS servers for the tests: each instance runs unprivileged on 127.0.0.1 with a
//! high port, a generated config, zone file and TSIG key in its own temp dir.
#![allow(dead_code, unreachable_pub)]

pub mod bind;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bluegreen_dns::{Rfc2136Router, Rfc2136RouterBuilder, TsigKey};

pub const ZONE: &str = "example.test.";
pub const NAME: &str = "www.example.test.";
pub const KEY_NAME: &str = "bluegreen-test-key.";
/// A test-only secret (32 bytes, base64), generated for these tests.
pub const KEY_SECRET: &str = "q7m2lVb2PzY9cG8iG3bE0yKpQf7bO1r5dJx8sH4tWaU=";
/// Another secret under the same key name: the server must refuse it.
pub const WRONG_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn key() -> TsigKey {
    TsigKey::hmac_sha256(KEY_NAME, KEY_SECRET).unwrap()
}

/// The TTL and resolver margin of the tests' records: drains wait 1.5 s.
pub const TTL: Duration = Duration::from_secs(1);
pub const MARGIN: Duration = Duration::from_millis(500);

/// The router the tests drive: `NAME` in `ZONE` at `server`, signed with `key()`, pools blue
/// and green, `TTL` and `MARGIN`.
pub fn router_builder(server: SocketAddr) -> Rfc2136RouterBuilder {
    Rfc2136Router::builder(server, ZONE, NAME).tsig(key()).ttl(TTL).resolver_margin(MARGIN).pool("blue").pool("green")
}

/// A knot binary: on the PATH, else where Debian installs it (`/usr/sbin` is not on every
/// user's PATH).
pub fn binary(name: &str) -> PathBuf {
    bluegreen_testkit::find_binary(name).unwrap_or_else(|| PathBuf::from(name))
}

/// Whether knotd is installed. Without it the tests fail in CI (`CI=true`) and are skipped
/// locally with a notice.
pub fn knot_or_skip(test: &str) -> bool {
    bluegreen_testkit::require_binary("knotd", "`apt-get install -y knot knot-dnsutils` (scripts/test does this)", test)
        .is_some()
}

/// A knotd process and its files. Stopped (by its own pid) when dropped.
pub struct Knot {
    pub addr: SocketAddr,
    pub label: String,
    dir: tempfile::TempDir,
    conf: PathBuf,
    child: Child,
    serial: u32,
}

fn free_port() -> u16 {
    bluegreen_testkit::free_dns_port()
}

/// The zone file: SOA, two NS names (both on 127.0.0.1) and the given A records at `www`.
pub fn zone_file(serial: u32, www: &[Ipv4Addr]) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL 60\n@ SOA ns1.{ZONE} hostmaster.{ZONE} {serial} 3600 600 86400 60\n\
         @ NS ns1.{ZONE}\n@ NS ns2.{ZONE}\nns1 A 127.0.0.1\nns2 A 127.0.0.1\n"
    );
    for ip in www {
        z.push_str(&format!("www 60 A {ip}\n"));
    }
    z
}

impl Knot {
    /// Starts knotd serving the zone with `www` records; `updates` lets the test key update it.
    pub fn start(label: &str, www: &[Ipv4Addr], updates: bool) -> Knot {
        let acl = if updates { "    acl: [update]\n" } else { "" };
        // A free port can be taken by another test's server before knotd binds it: try another.
        for _ in 0..5 {
            if let Some(knot) = Knot::launch(label, free_port(), Some(www), "", acl) {
                return knot;
            }
        }
        panic!("knotd found its port taken 5 times");
    }

    /// A primary that accepts updates and a secondary that follows it by NOTIFY + zone
    /// transfer, as in production.
    pub fn primary_and_secondary(www: &[Ipv4Addr]) -> (Knot, Knot) {
        for _ in 0..5 {
            if let Some(pair) = Knot::try_primary_and_secondary(www) {
                return pair;
            }
        }
        panic!("knotd found its port taken 5 times");
    }

    fn try_primary_and_secondary(www: &[Ipv4Addr]) -> Option<(Knot, Knot)> {
        let (p, s) = (free_port(), free_port());
        let primary = Knot::launch(
            "ns1.example.test.",
            p,
            Some(www),
            &format!("remote:\n  - id: secondary\n    address: 127.0.0.1@{s}\n"),
            "    acl: [update, transfer]\n    notify: secondary\n",
        )?;
        let secondary = Knot::launch(
            "ns2.example.test.",
            s,
            None,
            &format!("remote:\n  - id: primary\n    address: 127.0.0.1@{p}\n"),
            "    master: primary\n    acl: [notify]\n",
        )?;
        Some((primary, secondary))
    }

    /// Starts knotd on `port`; `www: None` starts without a zone file (a secondary). `None` when
    /// the port was taken meanwhile.
    fn launch(label: &str, port: u16, www: Option<&[Ipv4Addr]>, remotes: &str, zone_extra: &str) -> Option<Knot> {
        let dir = tempfile::Builder::new().prefix("bluegreen-knot-").tempdir().unwrap();
        let d = dir.path().display().to_string();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             control:\n    listen: \"{d}/knot.sock\"\n\
             database:\n    storage: \"{d}/db\"\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {KEY_SECRET}\n\
             {remotes}\
             acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n\
             \x20 - id: transfer\n    address: 127.0.0.1\n    action: transfer\n\
             \x20 - id: notify\n    address: 127.0.0.1\n    action: notify\n\
             log:\n  - target: stderr\n    any: warning\n\
             zone:\n  - domain: {ZONE}\n    storage: \"{d}\"\n    file: \"zone\"\n    zonefile-sync: -1\n{zone_extra}"
        );
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        if let Some(www) = www {
            std::fs::write(dir.path().join("zone"), zone_file(1, www)).unwrap();
        }
        let child = Command::new(binary("knotd"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("knotd.log")).unwrap())
            .spawn()
            .expect("start knotd");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut knot = Knot { addr, label: label.to_owned(), dir, conf: conf_path, child, serial: 1 };
        knot.await_ready().then_some(knot)
    }

    /// Waits until knotd serves the zone; `false` if it exited because its port was taken.
    fn await_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                if log.contains("address already in use") {
                    return false;
                }
                panic!("knotd exited with {status}: {log}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() && self.soa_ready() {
                return true;
            }
            assert!(Instant::now() < deadline, "knotd did not answer on {} within 15 s: {}", self.addr, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn soa_ready(&self) -> bool {
        let out = Command::new(binary("kdig"))
            .args([format!("@{}", self.addr.ip()), "-p".into(), self.addr.port().to_string(), "+tcp".into()])
            .args(["+short", "SOA", ZONE])
            .output();
        match out {
            Ok(o) => !String::from_utf8_lossy(&o.stdout).trim().is_empty(),
            // Without kdig, an open TCP port is the best readiness signal there is.
            Err(_) => true,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the zone file with `www` records (next serial) and reloads it: how the lagging
    /// server catches up.
    pub fn serve(&mut self, www: &[Ipv4Addr]) {
        self.serial += 1;
        std::fs::write(self.dir.path().join("zone"), zone_file(self.serial, www)).unwrap();
        let out = Command::new(binary("knotc"))
            .arg("-c")
            .arg(&self.conf)
            .args(["zone-reload", ZONE])
            .output()
            .expect("knotc");
        assert!(
            out.status.success(),
            "knotc zone-reload: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- knotd {} ({}) log ---\n{}", self.label, self.addr, self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}
