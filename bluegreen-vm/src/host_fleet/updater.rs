//! [`Updater`]: how one host is brought to a version, by a shell command template (its
//! placeholders checked against a safe set) or an async closure, within a timeout.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::shell::{self, Failure};
use bluegreen_core::{Error, Result, Target, Version};

type UpdateFuture = Pin<Box<dyn Future<Output = std::result::Result<String, String>> + Send>>;
type UpdateFn = dyn Fn(Target, Version) -> UpdateFuture + Send + Sync;

#[derive(Clone)]
enum How {
    Command(String),
    Closure(Arc<UpdateFn>),
}

/// Updates one host to a version: a shell command template or an async closure.
///
/// **Command templates** run with `sh -c` after these placeholders are replaced:
///
/// | placeholder | value | example |
/// |---|---|---|
/// | `{id}` | the host's id | `web-3` |
/// | `{host}` | its address without the port | `10.0.1.3` |
/// | `{address}` | its address as in the inventory | `10.0.1.3:8080` |
/// | `{version}` | the version to install | `v88` |
/// | `{from_version}` | the version it runs now | `v87` |
///
/// Values are inserted as they are, so each must consist of letters, digits and
/// `. _ - : @ / + = , %` only; anything else (a space, a quote, `;`, `$`) is refused with
/// [`Error::Invalid`] before the command runs — a version string cannot inject shell code.
/// The same values are in the environment as `BLUEGREEN_HOST_ID`, `BLUEGREEN_HOST`,
/// `BLUEGREEN_ADDRESS`, `BLUEGREEN_VERSION`, `BLUEGREEN_FROM_VERSION`. Other braces
/// (`${HOME}`) are left alone.
///
/// The command runs with [`bluegreen_core::shell::run`]: its stdout and stderr are captured
/// together; the last 20 lines (4 KiB, each cut at 1 KiB) are the
/// output returned, kept in [`HostFleet::last_output`], and put into the error of a failed
/// update. A non-zero exit fails the update; after the timeout (default 10 minutes) the
/// command's whole process group is killed and the update fails.
///
/// **Closures** get the host and the version and return `Ok(output)` or `Err(output or
/// reason)`; the timeout applies to them as well.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_vm::Updater;
/// let ssh = Updater::command("ssh deploy@{host} 'sudo /opt/app/deploy.sh {version}'")
///     .with_timeout(Duration::from_secs(300));
/// let closure = Updater::from_fn(|host, version| async move {
///     Ok(format!("{} now runs {version}", host.id))
/// });
/// ```
///
/// [`HostFleet::last_output`]: super::HostFleet::last_output
#[derive(Clone)]
pub struct Updater {
    how: How,
    timeout: Duration,
}

impl fmt::Debug for Updater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Updater");
        match &self.how {
            How::Command(template) => d.field("command", template),
            How::Closure(_) => d.field("closure", &"<fn>"),
        };
        d.field("timeout", &self.timeout).finish()
    }
}

impl Updater {
    /// An updater running the shell command `template` (see the type's docs for placeholders).
    pub fn command(template: impl Into<String>) -> Self {
        Self { how: How::Command(template.into()), timeout: Duration::from_secs(600) }
    }

    /// An updater running `f(host, version)`: `Ok(output)` when the host runs `version`,
    /// `Err(output or reason)` when it failed.
    pub fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn(Target, Version) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<String, String>> + Send + 'static,
    {
        Self { how: How::Closure(Arc::new(move |t, v| Box::pin(f(t, v)))), timeout: Duration::from_secs(600) }
    }

    /// Fails an update that takes longer (default 10 minutes).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line a command updater runs for `host` and `version` (`None` for a closure).
    ///
    /// # Errors
    /// [`Error::Invalid`] when a value put into the template has characters outside the safe set.
    pub fn render(&self, host: &Target, version: &Version) -> Result<Option<String>> {
        let How::Command(template) = &self.how else { return Ok(None) };
        Ok(Some(fill(template, &placeholders(host, version)?)))
    }

    /// Runs the update of `host` to `version` and returns its output.
    ///
    /// # Errors
    /// - [`Error::Invalid`]: an unsafe value for a command template (nothing ran).
    /// - [`Error::Backend`] (not retryable): the command exited non-zero, could not start, or
    ///   the closure returned `Err`; the message names the host and ends with the output tail.
    /// - [`Error::Timeout`]: the timeout passed (the command's process group was killed); the
    ///   output so far is in the message.
    pub async fn run(&self, host: &Target, version: &Version) -> Result<String> {
        let what = format!("updating host {} ({}) from {} to {version}", host.id, host.address, host.version);
        let failed = |reason: String, output: &str| {
            let message = if output.is_empty() {
                format!("{what} failed: {reason}")
            } else {
                format!("{what} failed: {reason}; output:\n{output}")
            };
            Error::permanent("hosts", message)
        };
        match &self.how {
            How::Closure(f) => match tokio::time::timeout(self.timeout, f(host.clone(), version.clone())).await {
                Ok(Ok(output)) => Ok(shell::tail(&output)),
                Ok(Err(output)) => Err(failed("the updater returned an error".to_owned(), &shell::tail(&output))),
                Err(_) => Err(Error::Timeout { what, after: self.timeout }),
            },
            How::Command(template) => {
                let values = placeholders(host, version)?;
                let line = fill(template, &values);
                let env = values.into_iter().map(|(k, v)| (env_name(k), v));
                match shell::run(&line, env, self.timeout).await {
                    Ok(finished) => Ok(finished.output),
                    Err(Failure::TimedOut { output, .. }) => {
                        let what =
                            if output.is_empty() { what } else { format!("{what} (output so far:\n{output}\n)") };
                        Err(Error::Timeout { what, after: self.timeout })
                    }
                    Err(Failure::Exited { description, output, .. }) => {
                        // `ended with exit status 3`, or `ended with signal 9`.
                        let ended = description.strip_prefix("killed by ").unwrap_or(&description);
                        Err(failed(format!("`{line}` ended with {ended}"), &output))
                    }
                    Err(failure) => Err(failed(failure.to_string(), failure.output())),
                }
            }
        }
    }
}

/// `template` with each `{name}` of `values` replaced by its value.
fn fill(template: &str, values: &[(&'static str, String)]) -> String {
    let mut line = template.to_owned();
    for (name, value) in values {
        line = line.replace(&format!("{{{name}}}"), value);
    }
    line
}

fn env_name(placeholder: &str) -> String {
    match placeholder {
        "id" => "BLUEGREEN_HOST_ID".to_owned(),
        other => format!("BLUEGREEN_{}", other.to_ascii_uppercase()),
    }
}

/// The placeholder values for `host` and `version`, each checked against the safe set.
fn placeholders(host: &Target, version: &Version) -> Result<Vec<(&'static str, String)>> {
    let bare_host = host_part(&host.address);
    let values = [
        ("id", host.id.to_string()),
        ("host", bare_host),
        ("address", host.address.clone()),
        ("version", version.to_string()),
        ("from_version", host.version.to_string()),
    ];
    for (name, value) in &values {
        // `ssh {id}` with the id `-oProxyCommand=…` would run what the id says.
        if let Some(why) = shell::not_a_plain_word(value) {
            return Err(Error::invalid(format!("updater.{{{name}}}"), format!("{value:?} (host {}): {why}", host.id)));
        }
    }
    Ok(values.into_iter().collect())
}

/// `10.0.1.3:8080` → `10.0.1.3`; `[::1]:80` → `::1`; `web-3` → `web-3`.
fn host_part(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, address: &str) -> Target {
        Target { id: id.into(), address: address.into(), zone: None, version: "v1".into(), tag: None }
    }

    #[test]
    fn placeholders_are_replaced_and_checked() {
        let updater = Updater::command("ssh {host} 'deploy.sh {version}' # {id} {address} {from_version} ${HOME}");
        let line = updater.render(&host("web-3", "10.0.1.3:8080"), &"v2".into()).unwrap().unwrap();
        assert_eq!(line, "ssh 10.0.1.3 'deploy.sh v2' # web-3 10.0.1.3:8080 v1 ${HOME}");
        let err = updater.render(&host("web-3", "10.0.1.3:8080"), &"v2; rm -rf /".into()).unwrap_err();
        assert_eq!(err.field(), Some("updater.{version}"), "{err}");
        assert_eq!(host_part("[::1]:80"), "::1");
        assert_eq!(host_part("web-3"), "web-3");
    }

    /// A value starting with `-` would be an option of the command it lands in: `ssh {id}`
    /// with the id `-oProxyCommand=…` runs what the id says.
    #[test]
    fn a_value_that_would_be_an_option_is_refused() {
        let updater = Updater::command("ssh {id} deploy.sh {version}");
        let err = updater.render(&host("-oProxyCommand=touch/tmp/pwned", "10.0.1.3:8080"), &"v2".into()).unwrap_err();
        assert_eq!(err.field(), Some("updater.{id}"), "{err}");
        assert!(err.to_string().contains("would be read as an option"), "{err}");
        let err = updater.render(&host("web-3", "10.0.1.3:8080"), &"--help".into()).unwrap_err();
        assert_eq!(err.field(), Some("updater.{version}"), "{err}");
        assert!(updater.render(&host("web-3", "10.0.1.3:8080"), &"v2-rc-1".into()).is_ok(), "a dash inside is fine");
    }
}
