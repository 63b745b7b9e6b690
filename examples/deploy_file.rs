//! A deploy file read and run through the library alone: the same file the `bluegreen`
//! command takes, with the backends this program was compiled with.
//!
//! ```text
//! cargo run -p bluegreen --example deploy_file --features deploy-file,haproxy,hosts -- deploy.toml
//! cargo run -p bluegreen --example deploy_file --features deploy-file,haproxy,hosts -- deploy.toml --deploy
//! ```
//!
//! Without `--deploy` it prints the plan (the dry run: each step, its expected and longest
//! duration, the running and serving target counts); with it, it runs the deploy. A refused
//! file prints where and why (`deploy.toml:12:11: invalid backend.separator: …`).

use std::path::PathBuf;
use std::process::ExitCode;

use bluegreen::deploy::{self, OpenError};
use bluegreen::deploy_file::Substitutions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = args.iter().any(|a| a == "--deploy");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")).map(PathBuf::from) else {
        eprintln!("usage: deploy_file DEPLOY.toml [--deploy]");
        return ExitCode::from(2);
    };
    match plan_or_deploy(&path, run).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Plans the deploy file at `path` or, with `run`, deploys it: what the program prints.
/// (`tests/deploy_file_example.rs` runs it against a real HAProxy and moto.)
pub(crate) async fn plan_or_deploy(path: &std::path::Path, run: bool) -> Result<String, OpenError> {
    let opened = deploy::open(path, &Substitutions::new(), None).await?;
    let owner = opened.owner.unwrap_or_else(|| "deploy-file-example".to_owned());
    let executor = opened.backends.executor().state_store(opened.store, owner).build();
    if run {
        let outcome = executor.deploy(&opened.spec).await.map_err(OpenError::Backend)?;
        let versions: Vec<String> = outcome.serving_versions.iter().map(ToString::to_string).collect();
        Ok(format!("{} {}: {} serving {}", outcome.deployment_id, outcome.status, outcome.split, versions.join(", ")))
    } else {
        let plan = executor.plan(&opened.spec).await.map_err(OpenError::Backend)?;
        Ok(format!(
            "{} → {} ({}), {} steps\n\n{}",
            plan.spec.service,
            plan.spec.version,
            plan.spec.strategy.name(),
            plan.steps.len(),
            plan.timeline()
        ))
    }
}
