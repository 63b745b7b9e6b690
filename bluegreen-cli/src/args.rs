//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Zero-downtime releases: blue-green, canary, linear and rolling, from a declarative spec.
#[derive(Debug, Parser)]
#[command(name = "bluegreen", version, about, long_about = None, after_help = "\
Examples:
  bluegreen demo                              a real local blue-green, rolling and failed canary under load
  bluegreen plan -f deploy.toml               validate and print the timeline (nothing changes)
  bluegreen deploy -f deploy.toml --version v88
  bluegreen status -f deploy.toml             from another terminal: where the deploy stands
  bluegreen wait -f deploy.toml --until paused --timeout 30m
  bluegreen promote -f deploy.toml            skip the remaining bakes
  bluegreen abort -f deploy.toml              roll back

Exit codes: 0 done, 1 failed and rolled back, 2 bad input (nothing changed),
3 the rollback failed (a human is needed), 4 another deploy holds the lock,
5 stopped by Ctrl-C (resume with `bluegreen resume-deploy -f FILE ID`),
6 the backend is not as the deploy file describes (nothing changed),
7 still running (`status`, or `wait` at its timeout).")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More of the library's log on stderr: -v info (a host updater's output), -vv debug. Warnings are always shown; `RUST_LOG` (`bluegreen_vm=debug`) overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// The log's lines: text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "BLUEGREEN_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
}

impl Command {
    /// The `--output` a command was given (text for those without one).
    pub(crate) fn output(&self) -> Output {
        match self {
            Self::Plan(file) | Self::History(file) => file.output,
            Self::Deploy { file, .. }
            | Self::Rollback { file, .. }
            | Self::ResumeDeploy { file, .. }
            | Self::Report { file, .. } => file.output,
            Self::Status { target: t, .. }
            | Self::Wait { target: t, .. }
            | Self::Pause(t)
            | Self::Resume(t)
            | Self::Promote(t)
            | Self::Abort(t) => t.file.output,
            Self::Demo(_) | Self::ServeTarget { .. } | Self::Completions { .. } | Self::Man => Output::Text,
        }
    }
}

/// How log lines are written (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For people: a live progress display on a terminal, plain lines otherwise.
    Text,
    /// For pipelines: JSON (one object; for `deploy`, one event per line then the outcome).
    Json,
}

/// The deploy file and what fills its `${…}` references.
#[derive(Debug, Clone, Args)]
pub(crate) struct FileArgs {
    /// The deploy file (TOML).
    #[arg(short = 'f', long = "file", default_value = "deploy.toml", env = "BLUEGREEN_FILE")]
    pub(crate) file: PathBuf,
    /// `terraform output -json` saved to a file, for `${tf.NAME}` references.
    #[arg(long = "tf-outputs", value_name = "FILE", env = "BLUEGREEN_TF_OUTPUTS")]
    pub(crate) tf_outputs: Option<PathBuf>,
    /// Overrides the file's `version`.
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Who this deployer is in the lock (default: the file's `state.owner`, else host and pid).
    #[arg(long, env = "BLUEGREEN_OWNER")]
    pub(crate) owner: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, env = "BLUEGREEN_OUTPUT")]
    pub(crate) output: Output,
}

/// A deployment to steer: the given one, or the service's running one.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub(crate) file: FileArgs,
    /// The deployment's id (default: the service's running deployment).
    #[arg(long)]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate the deploy file, read the backends and print the plan's timeline. Changes nothing.
    Plan(FileArgs),
    /// Run the deploy, with a live display; Ctrl-C stops at a safe point, a second Ctrl-C rolls back.
    Deploy {
        #[command(flatten)]
        file: FileArgs,
        /// Take over what the router serves that the file describes but bluegreen does not
        /// manage yet (HAProxy servers the inventory names with `server = "web-01"`);
        /// `bluegreen plan` shows it. Without it such a deploy exits 2 and changes nothing.
        #[arg(long)]
        adopt: bool,
    },
    /// Show where the service's latest deployment stands; the exit code says it too (0 succeeded,
    /// 1 rolled back, 3 a human is needed, 5 stopped unfinished, 7 still running).
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// Show it again whenever it changes, until it is no longer running.
        #[arg(long)]
        watch: bool,
    },
    /// Wait until the deployment gets somewhere: exit 0 when it reaches `--until`, its own code if
    /// it ends or stops first, 7 if it is still running at `--timeout`.
    Wait {
        #[command(flatten)]
        target: TargetArgs,
        /// finished, paused (a pause step or `bluegreen pause`), rolling-back, or step:N (N steps
        /// done).
        #[arg(long, default_value = "finished")]
        until: crate::watch::Until,
        /// How long to wait (`30m`); without it, as long as it takes.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// List the service's deployments.
    History(FileArgs),
    /// Pause the running deployment (no new step starts; bakes stop counting).
    Pause(TargetArgs),
    /// Resume a paused deployment, or approve one waiting for its approval.
    Resume(TargetArgs),
    /// Skip the running deployment's remaining bakes and pauses.
    Promote(TargetArgs),
    /// Abort the running deployment: it rolls back.
    Abort(TargetArgs),
    /// Deploy a past good version again (default: the one before the current).
    Rollback {
        #[command(flatten)]
        file: FileArgs,
        /// The version to go back to.
        #[arg(long = "to")]
        to: Option<String>,
    },
    /// Continue an interrupted deployment from its last recorded step.
    ResumeDeploy {
        #[command(flatten)]
        file: FileArgs,
        /// The deployment's id.
        id: String,
    },
    /// Write an SVG plot of a deployment: traffic per pool and healthy targets over time.
    Report {
        #[command(flatten)]
        file: FileArgs,
        /// The deployment's id (default: the latest).
        #[arg(long)]
        id: Option<String>,
        /// Where to write the SVG.
        #[arg(long = "out", default_value = "bluegreen-report.svg")]
        out: PathBuf,
    },
    /// A real local deploy under load: blue-green to v2, rolling to v3, a broken v4 caught.
    Demo(crate::demo::DemoArgs),
    /// Print a completion script for a shell (`bluegreen completions bash > /etc/bash_completion.d/bluegreen`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `bluegreen man > bluegreen.1; man ./bluegreen.1`).
    Man,
    /// Serve as the demo's stand-in application (used by `bluegreen demo` itself).
    #[command(hide = true)]
    ServeTarget {
        /// `--version V --listen ADDR [--startup-ms N] [--fail-health] [--error-rate R]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}
