//! The library's log on stderr (stdout carries the command's output): warnings always,
//! more with `-v`, errors only with `-q`; `RUST_LOG` overrides the level. Secrets show as `***`.

use tracing_subscriber::EnvFilter;

use crate::args::{Cli, LogFormat};

/// Installs the log for the flags of `cli`.
pub(crate) fn init(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::redact::Stderr);
    // Another subscriber already installed (a test harness) is left in place.
    let _ = match cli.log_format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
