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
        if let Ok(Some(_)) = moto.child.try_wait() {
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
