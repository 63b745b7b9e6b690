//! The runtime API client: one command per connection.
//!
//! HAProxy's CLI in its default (non-interactive) mode reads one line, runs it, writes the
//! answer and closes the connection, so the end of the answer is the end of the stream. That
//! keeps the client stateless: no prompt parsing, no session that a reload could break, and a
//! failed command cannot leave a half-read answer behind for the next one. A unix-socket
//! connection costs a few tens of microseconds, far below the drain poll interval.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::error::HaproxyError;

/// Where HAProxy's runtime API listens (`stats socket ... level admin` in its `global` section).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaproxyEndpoint {
    /// A unix socket (`stats socket /run/haproxy/admin.sock mode 600 level admin`).
    Unix(PathBuf),
    /// A TCP socket (`stats socket ipv4@127.0.0.1:9999 level admin`). Anyone who can connect
    /// is admin: bind it to loopback only.
    Tcp(SocketAddr),
}

impl HaproxyEndpoint {
    /// A unix-socket endpoint.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::Unix(path.into())
    }

    /// A TCP endpoint.
    pub fn tcp(address: SocketAddr) -> Self {
        Self::Tcp(address)
    }
}

impl fmt::Display for HaproxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(address) => write!(f, "tcp:{address}"),
        }
    }
}

/// Sends commands to one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Cli {
    pub(crate) endpoint: HaproxyEndpoint,
    pub(crate) timeout: Duration,
}

/// Largest answer read; `show stat` of a 1,000-server backend is about 400 KiB.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

impl Cli {
    /// Runs `command` and returns HAProxy's answer, without its trailing blank lines.
    /// Answers every command may give (permission denied, unknown command, no such
    /// backend / server) become typed errors; the caller judges the rest.
    pub(crate) async fn run(&self, command: &str) -> Result<String, HaproxyError> {
        one_command(command)?;
        let answer = match tokio::time::timeout(self.timeout, self.exchange(command)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(HaproxyError::Timeout {
                    endpoint: self.endpoint.to_string(),
                    command: command.to_owned(),
                    after: self.timeout,
                })
            }
        };
        let answer = answer.trim_end_matches(['\n', '\r', ' ']).to_owned();
        tracing::trace!(target: "bluegreen_vm::haproxy", command, answer = answer.as_str(), "runtime API");
        classify(&self.endpoint, command, answer)
    }

    async fn exchange(&self, command: &str) -> Result<String, HaproxyError> {
        let connect_error = |source| HaproxyError::Connect { endpoint: self.endpoint.to_string(), source };
        match &self.endpoint {
            HaproxyEndpoint::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(connect_error)?;
                self.talk(stream, command).await
            }
            HaproxyEndpoint::Tcp(address) => {
                let stream = TcpStream::connect(address).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                self.talk(stream, command).await
            }
        }
    }

    async fn talk(
        &self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        command: &str,
    ) -> Result<String, HaproxyError> {
        let io_error =
            |source| HaproxyError::Io { endpoint: self.endpoint.to_string(), command: command.to_owned(), source };
        let mut line = String::with_capacity(command.len() + 1);
        line.push_str(command);
        line.push('\n');
        stream.write_all(line.as_bytes()).await.map_err(io_error)?;
        let mut answer = Vec::new();
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut answer).await.map_err(io_error)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

/// Refuses a command line that would be more than one command: a `;` or a control character
/// (a line break) in it would end it and start another on HAProxy's CLI. Only a payload (`add
/// map … <<`, then lines, then the empty line that ends it) spans lines, and none of its lines
/// may be empty before the end. Every string the router sends passes here, whatever checked it
/// before (server names, options, map names, addresses).
fn one_command(command: &str) -> Result<(), HaproxyError> {
    let (line, payload) = match command.split_once('\n') {
        Some((line, payload)) if line.ends_with(" <<") => (line, Some(payload)),
        _ => (command, None),
    };
    let refused = |reason: &str| HaproxyError::Invalid {
        field: "command".to_owned(),
        reason: format!("{:?} {reason}: it would be another command on HAProxy's CLI", line),
    };
    if line.contains(';') {
        return Err(refused("contains `;`"));
    }
    if line.chars().any(char::is_control) {
        return Err(refused("contains a line break or control character"));
    }
    if let Some(payload) = payload {
        let body = payload.strip_suffix('\n').unwrap_or(payload);
        if body.split('\n').any(|l| l.is_empty() || l.contains(';') || l.chars().any(char::is_control)) {
            return Err(refused("has a payload line that is empty or holds `;` or a control character"));
        }
    }
    Ok(())
}

/// Turns the answers any command may get into typed errors.
fn classify(endpoint: &HaproxyEndpoint, command: &str, answer: String) -> Result<String, HaproxyError> {
    let first = answer.lines().next().unwrap_or("").trim();
    let (backend, server) = backend_server(command);
    if first.starts_with("Permission denied") {
        return Err(HaproxyError::PermissionDenied { endpoint: endpoint.to_string(), command: command.to_owned() });
    }
    if first.starts_with("Unknown command") {
        return Err(HaproxyError::Unsupported {
            version: "at this endpoint".to_owned(),
            command: command.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
            what_instead: "the command is unknown (too old a version, or a master CLI rather than a worker's)"
                .to_owned(),
        });
    }
    if matches!(first, "No such backend." | "Can't find backend." | "No such proxy.") {
        return Err(HaproxyError::UnknownBackend { backend });
    }
    if first == "No such server." {
        return Err(HaproxyError::UnknownServer { backend, server });
    }
    Ok(answer)
}

/// `(backend, server)` named by a command's `<backend>/<server>` or `<backend>` argument.
fn backend_server(command: &str) -> (String, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let arg = match words.as_slice() {
        ["show", "servers", "state", backend, ..] | ["show", "stat", backend, ..] => (*backend).to_owned(),
        [_, _, arg, ..] => (*arg).to_owned(),
        _ => String::new(),
    };
    match arg.split_once('/') {
        Some((b, s)) => (b.to_owned(), s.to_owned()),
        None => (arg, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> HaproxyEndpoint {
        HaproxyEndpoint::unix("/tmp/x.sock")
    }

    /// Nothing reaches the socket that HAProxy would read as a second command, whatever built
    /// it; nothing is sent at all (the endpoint does not exist).
    #[tokio::test]
    async fn a_string_that_would_be_a_second_command_is_never_sent() {
        let cli = Cli { endpoint: ep(), timeout: Duration::from_secs(1) };
        for command in [
            "add server web/blue.a 10.0.0.1:80 check; shutdown frontend web",
            "add server web/blue.a 10.0.0.1:80\nshutdown frontend web",
            "set server web/blue.a state drain\r",
            "add map @2 split.map <<\n0 web_blue\n\nshutdown frontend web\n",
            "add map @2 split.map <<\n0 web_blue; shutdown frontend web\n",
        ] {
            let error = cli.run(command).await.unwrap_err();
            assert!(
                matches!(&error, HaproxyError::Invalid { field, .. } if field == "command"),
                "{command:?}: {error}"
            );
        }
        assert_eq!(one_command("add map @2 split.map <<\n0 web_blue\n1 web_green\n").ok(), Some(()));
        assert_eq!(one_command("show servers state web").ok(), Some(()));
    }

    #[test]
    fn common_answers_are_typed() {
        let e = classify(&ep(), "set server web/blue.a state drain", "No such server.".into()).unwrap_err();
        assert!(
            matches!(e, HaproxyError::UnknownServer { ref backend, ref server } if backend == "web" && server == "blue.a")
        );
        let e = classify(&ep(), "show servers state nope", "Can't find backend.".into()).unwrap_err();
        assert!(matches!(e, HaproxyError::UnknownBackend { ref backend } if backend == "nope"));
        let e = classify(&ep(), "show stat nope 4 -1", "No such proxy.".into()).unwrap_err();
        assert!(matches!(e, HaproxyError::UnknownBackend { ref backend } if backend == "nope"));
        let e = classify(&ep(), "set weight web/a 3", "Permission denied".into()).unwrap_err();
        assert!(matches!(e, HaproxyError::PermissionDenied { .. }));
        let e = classify(&ep(), "add server web/a 1.2.3.4:5", "Unknown command, but maybe".into()).unwrap_err();
        assert!(matches!(e, HaproxyError::Unsupported { ref command, .. } if command == "add server"));
        assert_eq!(classify(&ep(), "set server web/a state ready", String::new()).unwrap(), "");
    }

    #[test]
    fn endpoints_display() {
        assert_eq!(ep().to_string(), "unix:/tmp/x.sock");
        assert_eq!(HaproxyEndpoint::tcp("127.0.0.1:9999".parse().unwrap()).to_string(), "tcp:127.0.0.1:9999");
    }
}
