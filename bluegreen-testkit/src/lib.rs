//! Helpers shared by bluegreen's integration tests (HAProxy, knot, moto): finding the real
//! servers the tests start, the rule that a missing one fails in CI and is skipped locally,
//! free loopback ports, a real HAProxy in front of the test's servers
//! ([`haproxy::HaproxyProcess`]) and a moto server ([`moto::MotoServer`]).

pub mod haproxy;
pub mod moto;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;

/// The `[health]` and `[drain]` tables of the tests' deploy files: checks every 100 ms, a
/// target healthy after two passes with no stability window, drains of at most 5 s.
pub const QUICK_CHECKS: &str = r#"[health]
interval = "100ms"
timeout = "80ms"
healthy_threshold = 2
min_healthy_time = "0s"
deadline = "10s"

[drain]
timeout = "5s"
"#;

/// Whether this is a CI run (`CI` set, and not `false` or `0`): there every real server the
/// tests need must be installed, and a missing one fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A program on the `PATH`, else where Debian installs servers (`/usr/sbin` is not on every
/// user's `PATH`).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The program `name`, or `None` after a `SKIPPED` notice when it is missing outside CI.
///
/// # Panics
/// When it is missing in CI ([`in_ci`]): the test must run there; `install` says how to get it.
pub fn require_binary(name: &str, install: &str, test: &str) -> Option<PathBuf> {
    if let Some(binary) = find_binary(name) {
        return Some(binary);
    }
    let message = format!("{name} is not installed (not on PATH, not in /usr/sbin): {install}");
    assert!(!in_ci(), "{test}: {message}");
    eprintln!("SKIPPED {test}: {message}");
    None
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A TCP port free on `ip` (a loopback address) now.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind a free port").local_addr().expect("address").port()
}

/// A port free for both TCP and UDP on 127.0.0.1 now (for a DNS server).
pub fn free_dns_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
