//! One target's server process: started with its arguments and ready once it prints
//! `listening on ADDR`, its output logged while it runs, stopped with SIGTERM then SIGKILL.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bluegreen_core::{Error, Result, TargetId, Version};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// The fleet's name, and the backend its errors name.
pub(super) const NAME: &str = "local-process";

/// How a fleet starts its processes.
#[derive(Debug)]
pub(super) struct Program {
    pub(super) binary: PathBuf,
    /// Arguments before `--version` (a subcommand, when the binary is not `bluegreen-target`).
    pub(super) leading_args: Vec<String>,
    pub(super) host: IpAddr,
    pub(super) ready_timeout: Duration,
}

impl Program {
    /// Starts one process and waits for its `listening on ADDR` line.
    pub(super) async fn spawn(
        &self,
        id: &TargetId,
        version: &Version,
        port: u16,
        args: Vec<String>,
    ) -> Result<(Child, SocketAddr)> {
        let listen = SocketAddr::new(self.host, port);
        let mut command = Command::new(&self.binary);
        command
            .args(&self.leading_args)
            .arg("--version")
            .arg(version.as_str())
            .arg("--listen")
            .arg(listen.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| Error::Backend {
            backend: NAME.to_owned(),
            message: format!("cannot start {} for target {id}", self.binary.display()),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(self.ready_timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("listening on ") {
                    return address.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(address)) => {
                forward_output(id.clone(), lines.into_inner(), stderr);
                Ok((child, address))
            }
            outcome => {
                let _ = child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await.ok().and_then(Result::ok);
                let stderr = read_tail(stderr).await;
                let why = match outcome {
                    Err(_) => format!("did not report listening within {:?}", self.ready_timeout),
                    _ => format!("exited ({}) before listening", describe(status)),
                };
                Err(Error::Backend {
                    backend: NAME.to_owned(),
                    message: format!("target {id} ({version}) on {listen} {why}: {}", stderr.trim()),
                    retryable: stderr.contains("in use"),
                    source: None,
                })
            }
        }
    }
}

/// The running process of one target; `None` after a restart failed.
pub(super) struct Process {
    pub(super) child: Option<Child>,
}

impl Process {
    pub(super) fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

/// SIGTERM, wait up to `timeout` for the process to finish its in-flight work and exit, then
/// SIGKILL.
pub(super) async fn stop(child: &mut Child, timeout: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Some(pid) = child.id().and_then(|pid| rustix::process::Pid::from_raw(pid as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        tracing::warn!(pid = ?child.id(), ?timeout, "local fleet: process did not exit after SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

/// Keeps reading a running process's output (so it never blocks on a full pipe) and logs it.
fn forward_output(id: TargetId, stdout: BufReader<tokio::process::ChildStdout>, stderr: ChildStderr) {
    async fn pump(id: TargetId, stream: &'static str, reader: impl AsyncRead + Unpin) {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target_id = %id, stream, "{line}");
        }
    }
    tokio::spawn(pump(id.clone(), "stdout", stdout));
    tokio::spawn(pump(id, "stderr", stderr));
}

/// The last KiB of what a dead process wrote to stderr.
async fn read_tail(mut stderr: ChildStderr) -> String {
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_end(&mut buffer)).await;
    let text = String::from_utf8_lossy(&buffer);
    let start = text.len().saturating_sub(1024);
    text.get(start..).unwrap_or(&text).to_owned()
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
}
