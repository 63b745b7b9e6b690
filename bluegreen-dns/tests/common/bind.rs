//! Real BIND 9 (`named`, Debian's `bind9`) servers for the tests: each instance runs in the
//! foreground on 127.0.0.1 with a high port, its own config, zone file, journal and TSIG key in
//! a temp dir, and no control channel.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{binary, zone_file, KEY_NAME, KEY_SECRET, ZONE};

/// Whether named is installed. Without it the tests fail in CI (`CI=true`) and are skipped
/// locally with a notice.
pub fn bind_or_skip(test: &str) -> bool {
    bluegreen_testkit::require_binary("named", "`apt-get install -y bind9` (scripts/test does this)", test).is_some()
}

/// A named process and its files. Stopped when dropped.
pub struct Bind {
    pub addr: SocketAddr,
    pub label: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Bind {
    /// Starts named serving the zone with `www` records; the test key may update the zone.
    pub fn start(label: &str, www: &[Ipv4Addr]) -> Bind {
        // A free port can be taken by another test's server before named binds it: try another.
        for _ in 0..5 {
            if let Some(bind) = Bind::launch(label, bluegreen_testkit::free_dns_port(), www) {
                return bind;
            }
        }
        panic!("named found its port taken 5 times");
    }

    fn launch(label: &str, port: u16, www: &[Ipv4Addr]) -> Option<Bind> {
        let dir = tempfile::Builder::new().prefix("bluegreen-named-").tempdir().unwrap();
        let d = dir.path().display().to_string();
        let zone = ZONE.trim_end_matches('.');
        let conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  \
             managed-keys-directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
             recursion no;\n  dnssec-validation no;\n  notify no;\n}};\n\
             controls {{ }};\n\
             key \"{KEY_NAME}\" {{ algorithm hmac-sha256; secret \"{KEY_SECRET}\"; }};\n\
             zone \"{zone}\" {{\n  type primary;\n  file \"{d}/zone\";\n  \
             update-policy {{ grant {KEY_NAME} zonesub ANY; }};\n}};\n"
        );
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).unwrap();
        std::fs::write(dir.path().join("zone"), zone_file(1, www)).unwrap();
        let log = dir.path().join("named.log");
        let child = Command::new(binary("named"))
            .arg("-g") // foreground, logging to stderr
            .arg("-c")
            .arg(&conf_path)
            .args(["-n", "1"]) // one worker thread
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start named");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut bind = Bind { addr, label: label.to_owned(), dir, child };
        bind.await_ready().then_some(bind)
    }

    /// Waits until named serves the zone; `false` if it exited because its port was taken.
    fn await_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                if log.contains("address in use") || log.contains("address already in use") {
                    return false;
                }
                panic!("named exited with {status}: {log}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && self.log().contains("running")
            {
                return true;
            }
            assert!(Instant::now() < deadline, "named did not answer on {} within 20 s: {}", self.addr, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
