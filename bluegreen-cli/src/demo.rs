//! `bluegreen demo` (written once the local backends land).

use clap::Args;

use crate::exit::{CliError, Code};

/// Options of `bluegreen demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Targets per version.
    #[arg(long, default_value_t = 6)]
    pub(crate) targets: usize,
}

/// Runs the demo.
pub(crate) async fn run(_args: &DemoArgs) -> Result<Code, CliError> {
    Err(CliError::needs_human("the demo arrives with the local backends"))
}
