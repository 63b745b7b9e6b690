//! Running a shell command with a timeout and keeping the tail of its output.
//!
//! [`run`] is what [`CommandHook`](crate::CommandHook) (and backends that run user commands,
//! such as `bluegreen-vm`'s host updater) use to run `sh -c COMMAND`:
//!
//! - The command inherits this process's environment plus the variables given; its stdin is
//!   `/dev/null`.
//! - Its stdout and stderr are captured together (in the order they arrive); the last 20 lines,
//!   at most about 4 KiB, are kept. A line longer than 1 KiB is cut and ends with ` […]`.
//! - On Unix the command runs in its own process group. When the timeout passes, or when the
//!   future of [`run`] is dropped before the command ended, the whole group is killed
//!   (`SIGKILL`), so processes the command started do not live on.
//! - Processes the command leaves running in the background after it exits are not waited
//!   for: their output is read for a short grace period (250 ms) only.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use bluegreen_core::shell::{self, Failure};
//!
//! let done = shell::run("echo \"hello $NAME\"", [("NAME", "world")], Duration::from_secs(10)).await.unwrap();
//! assert_eq!((done.description.as_str(), done.output.as_str()), ("exit status 0", "hello world"));
//!
//! let failure = shell::run("echo 'disk full' >&2; exit 3", shell::NO_ENV, Duration::from_secs(10)).await.unwrap_err();
//! assert!(matches!(&failure, Failure::Exited { description, .. } if description == "exit status 3"));
//! assert_eq!((failure.to_string().as_str(), failure.output()), ("exit status 3", "disk full"));
//! # }
//! ```

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Lines of output kept.
const TAIL_LINES: usize = 20;
/// Bytes of output kept (about: at least the last line is always kept).
const TAIL_BYTES: usize = 4096;
/// Bytes kept of one line; the rest of a longer line is replaced by ` […]`.
const LINE_BYTES: usize = 1024;
/// How long output is still read after the shell exited, when a background process it
/// started keeps the output pipes open.
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// No extra environment variables, for [`run`]'s `env`.
pub const NO_ENV: [(&str, &str); 0] = [];

/// A command that exited with status 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The shell's exit status.
    pub status: ExitStatus,
    /// The exit status described: `exit status 0`.
    pub description: String,
    /// The tail of stdout and stderr (see the [module docs](self)), without trailing blank lines.
    pub output: String,
}

/// Why a command did not succeed.
///
/// Its `Display` is the reason without the output (``cannot start `sh`: …``,
/// `timed out after 5s`, `exit status 3`, `killed by signal 9`); [`Failure::output`] is the
/// output tail captured until then.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// `sh` could not be started; nothing ran.
    #[error("cannot start `sh`: {0}")]
    Start(std::io::Error),
    /// Waiting for the shell failed.
    #[error("cannot wait for `sh`: {error}")]
    Wait {
        /// The error.
        error: std::io::Error,
        /// The output tail so far.
        output: String,
    },
    /// The timeout passed; the command's process group was killed.
    #[error("timed out after {}", humantime::format_duration(*after))]
    TimedOut {
        /// The timeout.
        after: Duration,
        /// The output tail until it was killed.
        output: String,
    },
    /// The shell exited non-zero or was killed by a signal.
    #[error("{description}")]
    Exited {
        /// The shell's exit status.
        status: ExitStatus,
        /// The exit status described: `exit status 3`, or `killed by signal 9`.
        description: String,
        /// The output tail.
        output: String,
    },
}

impl Failure {
    /// The output tail captured before the failure (empty when the command did not start).
    pub fn output(&self) -> &str {
        match self {
            Failure::Start(_) => "",
            Failure::Wait { output, .. } | Failure::TimedOut { output, .. } | Failure::Exited { output, .. } => output,
        }
    }
}

/// Runs `sh -c command` with `env` added to the inherited environment, and kills its process
/// group after `timeout` (see the [module docs](self) for the output kept and the process
/// handling).
///
/// # Errors
/// See [`Failure`]: the shell could not start or be waited for, the timeout passed, or the
/// command exited non-zero or by a signal.
pub async fn run<K, V>(
    command: &str,
    env: impl IntoIterator<Item = (K, V)>,
    timeout: Duration,
) -> Result<Finished, Failure>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    shell.process_group(0);
    let mut child = shell.spawn().map_err(Failure::Start)?;
    // If this future is dropped (say, the deployment task was cancelled), the command's whole
    // process group goes with it, not only the shell.
    let mut group = GroupGuard(child.id());
    let tail = Mutex::new(Tail::default());
    let finished = tokio::time::timeout(timeout, wait_with_output(&mut child, &tail)).await;
    let output = lock(&tail).text();
    group.0 = None;
    match finished {
        Err(_) => {
            kill(&mut child).await;
            Err(Failure::TimedOut { after: timeout, output })
        }
        Ok(Err(error)) => Err(Failure::Wait { error, output }),
        Ok(Ok(status)) if status.success() => Ok(Finished { status, description: describe_exit(status), output }),
        Ok(Ok(status)) => Err(Failure::Exited { status, description: describe_exit(status), output }),
    }
}

/// The characters a value may have to be put into a command line as it is: letters, digits and
/// `. _ - : @ / + = , % [ ]`. Nothing else has a meaning to `sh` there (no space, quote, `$`,
/// backtick, `;`, `&`, `|`, `<`, `>`, `*`, `?`, `~`, `#`, line break), so such a value is one
/// word wherever it lands — also inside the quotes of a template or of a remote shell (`ssh
/// host 'deploy.sh {version}'`), where quoting it would not help.
pub const PLAIN_WORD_PUNCTUATION: &str = "._-:@/+=,%[]";

/// Why `value` cannot be put into a command line as it is (see [`PLAIN_WORD_PUNCTUATION`]), or
/// `None`: empty, a character outside the plain set, or a leading `-` (the command would read it
/// as an option: `ssh -oProxyCommand=…`).
///
/// ```
/// use bluegreen_core::shell::not_a_plain_word;
/// assert_eq!(not_a_plain_word("v88"), None);
/// assert!(not_a_plain_word("v1; rm -rf /").is_some());
/// assert!(not_a_plain_word("-oProxyCommand=x").unwrap().contains("option"));
/// ```
pub fn not_a_plain_word(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("it is empty")
    } else if !value.chars().all(|c| c.is_ascii_alphanumeric() || PLAIN_WORD_PUNCTUATION.contains(c)) {
        Some("it cannot go into a shell command: use letters, digits and . _ - : @ / + = , % only")
    } else if value.starts_with('-') {
        Some("it starts with '-': it would be read as an option of the command")
    } else {
        None
    }
}

/// The tail of `text` by the rules [`run`] applies to a command's output: the last 20 lines,
/// about 4 KiB, lines cut at 1 KiB, trailing blank lines dropped.
///
/// ```
/// let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
/// let tail = bluegreen_core::shell::tail(&text);
/// assert!(tail.starts_with("line 11\n") && tail.ends_with("line 30"));
/// ```
pub fn tail(text: &str) -> String {
    let mut tail = Tail::default();
    let mut line = Line::default();
    line.feed(text.as_bytes(), |l| tail.push(l));
    line.finish(|l| tail.push(l));
    tail.text()
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

/// Sends `SIGKILL` to process group `pid` (a command's shell runs with `process_group(0)`, so
/// its pid is its group's id): one `kill(2)` call, through rustix's safe wrapper.
#[cfg(unix)]
fn kill_group(pid: u32) {
    if let Some(group) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        // Already gone (ESRCH) is what was wanted.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

/// Kills a command's process group (`SIGKILL`) when dropped while still armed.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.take() {
            kill_group(pid);
        }
    }
}

/// Kills the child's process group (on Unix; the group id is the shell's pid, as it runs with
/// `process_group(0)`) and the child, and reaps it.
async fn kill(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        kill_group(pid);
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
        let mut tail = lock(tail);
        line.feed(&buffer[..n], |l| tail.push(l));
    }
    line.finish(|l| lock(tail).push(l));
}

fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line being read, capped at [`LINE_BYTES`].
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Line {
    /// Adds `bytes`, handing each line completed by a newline to `done`.
    fn feed(&mut self, bytes: &[u8], mut done: impl FnMut(&Line)) {
        for &byte in bytes {
            if byte == b'\n' {
                done(self);
                self.bytes.clear();
                self.truncated = false;
            } else if self.bytes.len() < LINE_BYTES {
                self.bytes.push(byte);
            } else {
                self.truncated = true;
            }
        }
    }

    /// Hands the last line, not ended by a newline, to `done` (if there is one).
    fn finish(self, done: impl FnOnce(&Line)) {
        if !self.bytes.is_empty() || self.truncated {
            done(&self);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_cuts_long_ones() {
        let long = "x".repeat(LINE_BYTES + 10);
        let text = format!("{}{long}\r\n", (1..=30).map(|i| format!("line {i}\r\n")).collect::<String>());
        let kept = tail(&text);
        let lines: Vec<&str> = kept.lines().collect();
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[0], "line 12");
        assert_eq!(lines[19], format!("{} […]", "x".repeat(LINE_BYTES)));
        assert_eq!(tail(""), "");
    }

    #[tokio::test]
    async fn a_signal_is_described() {
        let failure = run("kill -s KILL $$", NO_ENV, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(failure.to_string(), "killed by signal 9");
        assert!(matches!(failure, Failure::Exited { status, .. } if status.code().is_none()));
    }

    #[tokio::test]
    async fn a_dropped_run_kills_the_whole_group() {
        let marker = std::env::temp_dir().join(format!("bluegreen-shell-cancel-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // A child of the shell that would create the marker after 600 ms.
        let command = format!("(sleep 0.6; touch '{}') & wait", marker.display());
        let running = run(&command, NO_ENV, Duration::from_secs(10));
        assert!(tokio::time::timeout(Duration::from_millis(200), running).await.is_err());
        tokio::time::sleep(Duration::from_millis(900)).await;
        let exists = marker.exists();
        let _ = std::fs::remove_file(&marker);
        assert!(!exists, "the command's child outlived the dropped run");
    }
}
