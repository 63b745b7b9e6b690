//! Shell-command hooks.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::{Hook, HookContext, HookOutput};
use crate::error::{Error, Result};

/// Lines of output kept for [`HookOutput`] and error reasons.
const TAIL_LINES: usize = 20;
/// Bytes of output kept.
const TAIL_BYTES: usize = 4096;
/// Bytes kept of one line; the rest of a longer line is replaced by `[…]`.
const LINE_BYTES: usize = 1024;
/// How long output is still read after the shell exited, when a background process it
/// started keeps the output pipes open.
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// Runs `sh -c COMMAND` with the deploy's facts as `BLUEGREEN_*` environment variables
/// (see [`HookContext::env`]), killed after `timeout`. A non-zero exit fails the hook with
/// the tail of its output.
///
/// - The command inherits the deployer's environment plus the `BLUEGREEN_*` variables; its
///   stdin is `/dev/null`.
/// - Its stdout and stderr are captured together (in the order they arrive); the last 20
///   lines (at most 4 KiB) become [`HookOutput::output`], or the error's reason.
/// - On Unix the command runs in its own process group. When the timeout passes, the whole
///   group is killed (`SIGKILL`), so processes the command started do not live on; the
///   hook fails with `timed out after …`.
/// - Processes the command leaves running in the background after it exits are not waited
///   for (their output is read for a short grace period only).
///
/// # Caveats
/// - If the hook's future is dropped (the deployment task is cancelled), only the shell
///   itself is killed.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::CommandHook;
/// let migrate = CommandHook::new("./migrate.sh --to \"$BLUEGREEN_VERSION\"", Duration::from_secs(600));
/// ```
#[derive(Debug, Clone)]
pub struct CommandHook {
    command: String,
    timeout: Duration,
}

impl CommandHook {
    /// A hook running `command` with `timeout`.
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        Self { command: command.into(), timeout }
    }

    fn failure(&self, reason: String) -> Error {
        Error::Check { what: format!("hook {:?}", self.command), reason }
    }
}

#[async_trait]
impl Hook for CommandHook {
    fn name(&self) -> String {
        self.command.clone()
    }

    async fn run(&self, context: &HookContext) -> Result<HookOutput> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .envs(context.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|e| self.failure(format!("cannot start `sh`: {e}")))?;

        let tail = Mutex::new(Tail::default());
        let finished = tokio::time::timeout(self.timeout, wait_with_output(&mut child, &tail)).await;
        let output = tail.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).text();
        let with_output = |reason: String| {
            if output.is_empty() {
                reason
            } else {
                format!("{reason}: {output}")
            }
        };
        match finished {
            Err(_) => {
                kill(&mut child).await;
                Err(self.failure(with_output(format!("timed out after {}", humantime::format_duration(self.timeout)))))
            }
            Ok(Err(e)) => Err(self.failure(with_output(format!("cannot wait for `sh`: {e}")))),
            Ok(Ok(status)) if status.success() => Ok(HookOutput { output }),
            Ok(Ok(status)) => Err(self.failure(with_output(describe_exit(status)))),
        }
    }
}

/// Waits for `child` to exit while collecting its stdout and stderr into `tail`.
async fn wait_with_output(child: &mut Child, tail: &Mutex<Tail>) -> std::io::Result<ExitStatus> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let readers = futures::future::join(collect(stdout, tail), collect(stderr, tail));
    tokio::pin!(readers);
    let mut readers_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = &mut readers, if !readers_done => readers_done = true,
        }
    };
    if !readers_done {
        // A background process may hold the pipes open; take what it writes soon.
        let _ = tokio::time::timeout(OUTPUT_GRACE, readers).await;
    }
    Ok(status)
}

/// Kills the child's process group (on Unix) and the child, and reaps it.
async fn kill(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // The group id is the shell's pid (`process_group(0)`). `kill` is a shell builtin,
        // which saves an unsafe `killpg` call.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s KILL -- -{pid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

/// `exit status 3`, or `killed by signal 9`.
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.to_string()
}

/// Reads `stream` to its end, line by line, into `tail`.
async fn collect(stream: Option<impl AsyncRead + Unpin>, tail: &Mutex<Tail>) {
    let Some(mut stream) = stream else { return };
    let mut buffer = [0u8; 4096];
    let mut line = Line::default();
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buffer[..n] {
            if byte == b'\n' {
                lock(tail).push(&line);
                line = Line::default();
            } else {
                line.push(byte);
            }
        }
    }
    if !line.bytes.is_empty() || line.truncated {
        lock(tail).push(&line);
    }
}

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One line being read, capped at [`LINE_BYTES`].
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Line {
    fn push(&mut self, byte: u8) {
        if self.bytes.len() < LINE_BYTES {
            self.bytes.push(byte);
        } else {
            self.truncated = true;
        }
    }
}

/// The last lines of output: at most [`TAIL_LINES`] lines and about [`TAIL_BYTES`] bytes.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: &Line) {
        let mut text = String::from_utf8_lossy(&line.bytes).trim_end_matches('\r').to_owned();
        if line.truncated {
            text.push_str(" […]");
        }
        self.bytes += text.len() + 1;
        self.lines.push_back(text);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            if let Some(dropped) = self.lines.pop_front() {
                self.bytes -= dropped.len() + 1;
            }
        }
    }

    /// The lines, joined with newlines, without trailing blank lines.
    fn text(&self) -> String {
        let joined = self.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
        joined.trim_end().to_owned()
    }
}
