//! The deploy file, read by the library (`bluegreen::deploy`): this adapter takes the
//! command's flags (`--tf-outputs`, `--version`, `--owner`) to it and its errors to exit codes.

use bluegreen::deploy::{Deployment, Recorded};
use bluegreen::deploy_file::Substitutions;
use bluegreen_core::Error;

use crate::args::FileArgs;
use crate::exit::CliError;

/// Loads the deploy file named by `args`.
pub(crate) fn load(args: &FileArgs) -> Result<Deployment, CliError> {
    let file = Deployment::load(&args.file, &substitutions(args)?, args.version.as_deref())?;
    crate::redact::SECRETS.extend(file.secrets());
    Ok(file)
}

/// Loads the deploy file named by `args` for its recorded deployments only (`status`,
/// `history`, `report`, `wait`, `pause` …): references outside `service` and `[state]` need not
/// resolve, so these commands need no backend secret.
pub(crate) fn load_records(args: &FileArgs) -> Result<Recorded, CliError> {
    let file = Recorded::load(&args.file, &substitutions(args)?)?;
    crate::redact::SECRETS.extend(file.file.secrets());
    Ok(file)
}

fn substitutions(args: &FileArgs) -> Result<Substitutions, CliError> {
    Ok(match &args.tf_outputs {
        Some(path) => Substitutions::with_tf_outputs(path)?,
        None => Substitutions::new(),
    })
}

/// An error from the library, pointed at the field or value of the file it names, when it
/// names one (a batch larger than the pool, an ARN the backend does not have).
pub(crate) fn locate(file: &Deployment, error: Error) -> CliError {
    file.file.locate(error).map_or_else(CliError::from, CliError::from)
}

/// The owner name this process uses: the flag, the file's `state.owner`, else
/// `bluegreen-<host>-<pid>` (see [`crate::owner`]).
pub(crate) fn owner(file: &Deployment, flag: Option<&str>) -> String {
    flag.map(str::to_owned).or_else(|| file.state.local.owner.clone()).unwrap_or_else(crate::owner::this_process)
}
