//! A `moto_server` (the AWS API emulator) on a free loopback port, for one test.
//!
//! The binary is `$MOTO_SERVER` if set (scripts/test sets it to its venv's), else the
//! workspace's `.venv-moto`, else `moto_server` on `PATH`. Without any, a test fails when
//! `CI=true` and is skipped with a notice otherwise. The server counts as started once it
//! answers an HTTP request (a bare TCP connect to a port in the ephemeral range can connect to
//! itself) and its process is still alive (moto exits when another process took the port first;
//! then another port is tried).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The region every test client of moto uses.
pub const REGION: &str = "us-east-1";
/// The fake access key id and secret of the tests (moto checks no signature).
pub const CREDENTIALS: (&str, &str) = ("testing", "testing");

/// A running `moto_server` on 127.0.0.1, killed (by its own pid) on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    // The workspace's own venv (scripts/test makes it) before PATH: an older moto on PATH
    // (5.2.1) answers DescribeTasks in a shape the SDK refuses.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-moto/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    crate::find_binary("moto_server")
}

impl MotoServer {
    /// Starts moto, or returns `None` (with a notice) when it is not installed outside CI.
    ///
    /// # Panics
    /// When moto is missing and `CI=true`, or when it does not answer within 60 s.
    pub fn start() -> Option<Self> {
        let Some(binary) = moto_binary() else {
            let hint = "moto_server not found: run scripts/test, or set MOTO_SERVER, or pip install 'moto[server]'";
            assert!(!crate::in_ci(), "{hint} (CI=true: the moto tests must run)");
            eprintln!("SKIPPED: {hint}");
            return None;
        };
        // A free port can be taken by someone else between our probe and moto's bind: moto then
        // exits, and we try another port.
        for _ in 0..5 {
            if let Some(moto) = Self::spawn(&binary) {
                return Some(moto);
            }
        }
        panic!("{} did not start on 5 different ports", binary.display());
    }

    fn spawn(binary: &Path) -> Option<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("free port").port();
        Self::spawn_on(binary, port)
    }

    /// Moto on `port`, or `None` when the port turns out to be someone else's.
    fn spawn_on(binary: &Path, port: u16) -> Option<Self> {
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut moto = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        // Ready once it answers HTTP (not merely accepts connections), and it is our process.
        while !answers_http(addr) {
            if let Ok(Some(_)) = moto.child.try_wait() {
                return None;
            }
            assert!(Instant::now() < deadline, "{} did not answer on {addr} within 60 s", binary.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        // What answered may be another test's moto that took the port between our probe and our
        // moto's bind (ours exits when it finds the port taken, but Python starts slowly, so the
        // answer can come first): two tests would then share one moto (seen: a duplicate target
        // group name). Only a listening socket our process holds counts.
        if matches!(moto.child.try_wait(), Ok(Some(_))) || !holds_listener(moto.child.id(), port) {
            return None;
        }
        Some(moto)
    }

    /// Calls an AWS query API (`ec2`, ...) with a raw, unsigned request (moto does not check
    /// signatures), so a test needs no SDK crate for that service; returns the XML answer.
    ///
    /// # Panics
    /// When moto cannot be reached.
    pub fn raw_query(&self, service: &str, body: &str) -> String {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to moto");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("write to moto");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read from moto");
        answer
    }
}

/// Whether process `pid` holds the socket listening on loopback `port` (from `/proc`: the
/// listener's inode among the process's open files). Without `/proc` it cannot tell and says so.
fn holds_listener(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return true };
    let local = format!("0100007F:{port:04X}");
    // Columns: sl, local_address, rem_address, st (0A = LISTEN), …, inode (the 10th).
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
        .filter_map(|f| f.get(9).map(|inode| format!("socket:[{inode}]")))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|link| {
        let link = link.to_string_lossy();
        inodes.iter().any(|inode| *inode == link)
    })
}

/// Whether an HTTP server answers a request on `addr`.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /moto-api/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another server answering HTTP on the port moto was given (another test's moto, in the
    /// race this guards against) is not taken for ours.
    #[test]
    fn a_port_another_server_answers_on_is_not_taken_for_ours() {
        let Some(binary) = moto_binary() else {
            assert!(!crate::in_ci(), "moto_server not found (CI=true: the moto tests must run)");
            return;
        };
        let other = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = other.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in other.incoming().flatten() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        assert!(MotoServer::spawn_on(&binary, port).is_none(), "the other server's answer was taken for moto's");
        // And a moto that did bind its port is recognised as ours.
        let moto = MotoServer::start().expect("moto");
        let port = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        assert!(holds_listener(moto.child.id(), port));
    }
}
