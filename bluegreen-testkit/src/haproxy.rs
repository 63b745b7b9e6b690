//! A real HAProxy for the tests: a generated config (an admin and a user stats socket in the
//! process's directory, HTTP mode, no retries) in front of the test's own servers, started in
//! the foreground on a free 127.0.0.1 port and killed when dropped.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The health checks every generated server has.
pub const CHECKS: &str = "check inter 200ms fall 2 rise 2";

/// `Some(haproxy)`, or `None` (skip) outside CI when it is not installed; fails in CI.
pub fn require(test: &str) -> Option<PathBuf> {
    crate::require_binary("haproxy", "install it with `apt-get install -y haproxy` (scripts/test does this)", test)
}

/// A server line of a generated backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The server's name in its backend.
    pub name: String,
    /// `ip:port`.
    pub address: String,
    /// Its weight (0: out of traffic).
    pub weight: u32,
}

impl Server {
    /// Server `name` at `address` with `weight`.
    pub fn new(name: impl Into<String>, address: impl Into<String>, weight: u32) -> Self {
        Self { name: name.into(), address: address.into(), weight }
    }
}

/// A running HAProxy; killed (and its directory removed, when it made it) on drop.
#[derive(Debug)]
pub struct HaproxyProcess {
    child: Child,
    dir: PathBuf,
    owns_dir: bool,
    frontend: u16,
}

impl HaproxyProcess {
    /// Starts `binary` with frontend `fe` on a free port and backend `web` holding `servers`,
    /// in `dir` (or a directory of its own); `extra` is appended to the config.
    pub fn start(binary: &Path, dir: Option<&Path>, servers: &[Server], extra: &str) -> Self {
        Self::start_with(binary, dir, |_, frontend| one_backend(frontend, servers, extra))
    }

    /// Starts `binary` in the backend-per-pool layout: backends `web_<pool>` for each of
    /// `pools`, and frontend `fe` choosing one by the split map `<dir>/bluegreen-split.map`
    /// ([`Self::split_map`]), whose 100 entries all name the first pool's backend at first.
    pub fn start_per_pool(binary: &Path, dir: Option<&Path>, pools: &[(&str, Vec<Server>)]) -> Self {
        Self::start_with(binary, dir, |dir, frontend| per_pool(dir, frontend, pools))
    }

    /// Starts `binary` with the generated global and defaults sections and `body(dir,
    /// frontend port)`, in `dir` (or a directory of its own), trying another port when the
    /// free one was taken meanwhile (by another test's server).
    ///
    /// # Panics
    /// When HAProxy refuses the config (the panic shows it and HAProxy's message), does not open
    /// its sockets within 10 s, or finds its port taken 5 times.
    pub fn start_with(binary: &Path, dir: Option<&Path>, body: impl Fn(&Path, u16) -> String) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let (dir, owns_dir) = match dir {
            Some(dir) => (dir.to_owned(), false),
            None => {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let dir = std::env::temp_dir().join(format!("bluegreen-haproxy-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("a directory for haproxy");
                (dir, true)
            }
        };
        for _ in 0..5 {
            let frontend = crate::free_port();
            if let Some(child) = run(binary, &dir, &body(&dir, frontend), frontend) {
                return Self { child, dir, owns_dir, frontend };
            }
        }
        panic!("haproxy found its frontend port taken 5 times");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin stats socket (`level admin`).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The user stats socket (`level user`: reads only).
    pub fn user_socket(&self) -> PathBuf {
        self.dir.join("user.sock")
    }

    /// The frontend's port.
    pub fn frontend(&self) -> u16 {
        self.frontend
    }

    /// `http://127.0.0.1:<frontend>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.frontend)
    }

    /// The directory of its config and sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The split map of [`Self::start_per_pool`], as the config names it.
    pub fn split_map(&self) -> String {
        self.dir.join("bluegreen-split.map").display().to_string()
    }
}

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Frontend `fe` on `frontend` and backend `web` holding `servers`, then `extra`.
fn one_backend(frontend: u16, servers: &[Server], extra: &str) -> String {
    let mut config = format!(
        "frontend fe\n\
         \x20   bind 127.0.0.1:{frontend}\n\
         \x20   default_backend web\n\
         backend web\n{}",
        backend_body("%[srv_name]")
    );
    push_servers(&mut config, servers);
    config.push_str(extra);
    config
}

/// The backend-per-pool layout of [`HaproxyProcess::start_per_pool`].
fn per_pool(dir: &Path, frontend: u16, pools: &[(&str, Vec<Server>)]) -> String {
    let first = pools.first().map_or("blue", |(pool, _)| pool);
    let map = dir.join("bluegreen-split.map");
    let entries: String = (0..100).map(|key| format!("{key} web_{first}\n")).collect();
    std::fs::write(&map, entries).expect("write the split map");
    let mut config = format!(
        "frontend fe\n\
         \x20   bind 127.0.0.1:{frontend}\n\
         \x20   use_backend %[rand(100),map_int({map})]\n\
         \x20   default_backend web_{first}\n",
        map = map.display()
    );
    for (pool, servers) in pools {
        config.push_str(&format!("backend web_{pool}\n{}", backend_body("%[be_name]/%[srv_name]")));
        push_servers(&mut config, servers);
    }
    config
}

fn push_servers(config: &mut String, servers: &[Server]) {
    for s in servers {
        config.push_str(&format!("    server {} {} weight {}\n", s.name, s.address, s.weight));
    }
}

/// A backend's settings before its servers; the `x-server` response header says
/// `server_header` (which server answered, for the tests' bookkeeping).
fn backend_body(server_header: &str) -> String {
    format!(
        "\x20   balance roundrobin\n\
         \x20   option httpchk GET /healthz\n\
         \x20   http-response set-header x-server {server_header}\n\
         \x20   # tests pin long requests to one server, to have them in flight when it drains\n\
         \x20   use-server %[req.hdr(x-pin)] if {{ req.hdr(x-pin) -m found }}\n\
         \x20   default-server {CHECKS}\n"
    )
}

/// Runs HAProxy with the global and defaults sections and `body` until its admin socket and
/// its frontend answer; `None` if it exited because its frontend port was taken.
fn run(binary: &Path, dir: &Path, body: &str, frontend: u16) -> Option<Child> {
    let config = format!(
        "global\n\
         \x20   stats socket {dir}/admin.sock mode 600 level admin\n\
         \x20   stats socket {dir}/user.sock mode 600 level user\n\
         \x20   stats timeout 30s\n\
         \x20   maxconn 4096\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \x20   # no retries: a request sent to a server that cannot take it must show as a failure\n\
         \x20   retries 0\n\
         {body}",
        dir = dir.display()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, &config).expect("write haproxy.cfg");
    let _ = std::fs::remove_file(dir.join("admin.sock"));
    let mut child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start haproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(dir.join("admin.sock")).is_err() || TcpStream::connect(("127.0.0.1", frontend)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            if stderr.contains("cannot bind socket") {
                return None;
            }
            panic!("haproxy exited ({status}) with this config:\n{config}\n{stderr}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("haproxy did not open its sockets within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its warnings are not interesting once it runs (and a full pipe would block it).
    drop(child.stderr.take());
    Some(child)
}
