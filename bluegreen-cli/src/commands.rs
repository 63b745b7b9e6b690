//! What each subcommand does.

use std::sync::Arc;

use bluegreen::deploy::{Deployment, Recorded};
use bluegreen_core::{Command as Remote, DeploymentRecord, ExecutorBuilder, Outcome, Phase, StateStore, Version};
use serde_json::json;

use crate::args::{FileArgs, Output, TargetArgs};
use crate::exit::{CliError, Code};
use crate::progress;
use crate::specfile::{load, load_records, locate, owner};

/// An executor over the file's backends; with `store`, recording there and writing the
/// deployment's event log.
async fn executor(
    file: &Deployment,
    args: &FileArgs,
    store: Option<Arc<dyn StateStore>>,
) -> Result<ExecutorBuilder, CliError> {
    let mut builder = file.backends().await.map_err(|e| locate(file, e))?.executor();
    if let Some(store) = store {
        builder = builder.state_store(store, owner(file, args.owner.as_deref())).holder_gone(crate::owner::is_gone);
    }
    Ok(builder)
}

/// Prints `value` as pretty JSON, secrets shown as `***`.
pub(crate) fn print_json(value: &serde_json::Value) {
    let mut value = value.clone();
    crate::redact::SECRETS.redact_json(&mut value);
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// `bluegreen plan`.
pub(crate) async fn plan(args: &FileArgs) -> Result<Code, CliError> {
    let file = load(args)?;
    // With the store: a fixed inventory's versions are what the recorded deploys left.
    let store = file.state_store().await?;
    let plan =
        executor(&file, args, Some(store)).await?.build().plan(file.spec()).await.map_err(|e| locate(&file, e))?;
    let timeline = plan.timeline();
    match args.output {
        Output::Json => print_json(&json!({ "plan": plan, "timeline": timeline })),
        Output::Text => {
            println!(
                "{} {} → {} ({}), {} steps\n",
                plan.spec.service,
                plan.from_version.as_ref().map_or("nothing".to_owned(), ToString::to_string),
                plan.spec.version,
                plan.spec.strategy.name(),
                plan.steps.len()
            );
            println!("{}", crate::redact::redact(&timeline.to_string()));
        }
    }
    Ok(Code::Done)
}

/// What [`deploy`] runs.
pub(crate) enum Run<'a> {
    /// Deploy the file's spec, adopting what the router serves unmanaged when `adopt`.
    Deploy {
        /// `--adopt`.
        adopt: bool,
    },
    /// Resume deployment `id`.
    Resume(&'a str),
    /// Deploy back to a version from the history (`None`: the one before the current).
    Rollback(Option<&'a str>),
}

/// `bluegreen deploy`, `bluegreen resume-deploy` and `bluegreen rollback`.
pub(crate) async fn deploy(args: &FileArgs, run: Run<'_>) -> Result<Code, CliError> {
    let file = load(args)?;
    let store = file.state_store().await?;
    if let Run::Resume(id) = run {
        // An unknown id is bad input, found before the backends are opened.
        store.load(id).await.map_err(CliError::unknown)?;
    }
    watched(&file, args, store, run).await
}

/// Runs `run` with its progress shown, Ctrl-C stopping at a safe point (twice: rolling back),
/// and the outcome printed.
async fn watched(
    file: &Deployment,
    args: &FileArgs,
    store: Arc<dyn StateStore>,
    run: Run<'_>,
) -> Result<Code, CliError> {
    let (sink, receiver) = bluegreen_core::ChannelSink::new();
    let adopt = matches!(run, Run::Deploy { adopt: true });
    let exec = executor(file, args, Some(store)).await?.sink(sink).adopt(adopt).build();
    let display = progress::start(receiver, args.output);
    let control = exec.control();
    let interrupts = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping at the next safe point (the deploy stays resumable); Ctrl-C again to roll back");
            control.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\naborting: rolling back");
                control.abort();
            }
        }
    });
    // A rollback's bad input is the version asked for, not a line of the file.
    let from_the_file = !matches!(run, Run::Rollback(_));
    let result = match run {
        Run::Deploy { .. } => exec.deploy(file.spec()).await,
        Run::Resume(id) => exec.resume_deployment(id).await,
        Run::Rollback(to) => exec.rollback_to(&file.spec().service, to.map(Version::from).as_ref()).await,
    };
    interrupts.abort();
    drop(exec);
    display.finish().await;
    let outcome = result.map_err(|e| if from_the_file { locate(file, e) } else { e.into() })?;
    print_outcome(&outcome, args);
    Ok(Code::of(outcome.status))
}

/// The command that resumes deployment `id` of the file `args` names, as the user can paste it.
fn resume_command(args: &FileArgs, id: &str) -> String {
    let mut words =
        vec!["bluegreen".to_owned(), "resume-deploy".to_owned(), "-f".to_owned(), shell_word(&args.file.display())];
    if let Some(tf) = &args.tf_outputs {
        words.extend(["--tf-outputs".to_owned(), shell_word(&tf.display())]);
    }
    if let Some(owner) = &args.owner {
        words.extend(["--owner".to_owned(), shell_word(owner)]);
    }
    words.push(id.to_owned());
    words.join(" ")
}

/// `text` as one shell word: as it is when it is plain, else single-quoted.
fn shell_word(text: &impl std::fmt::Display) -> String {
    let text = text.to_string();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c)) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn print_outcome(outcome: &Outcome, args: &FileArgs) {
    match args.output {
        Output::Json => println!("{}", json!({ "outcome": outcome })),
        Output::Text => {
            let versions: Vec<String> = outcome.serving_versions.iter().map(ToString::to_string).collect();
            println!(
                "\ndeployment {} {} in {}: {} serving {}",
                outcome.deployment_id,
                outcome.status,
                humantime::format_duration(std::time::Duration::from_secs(outcome.elapsed.as_secs())),
                outcome.split,
                versions.join(", ")
            );
            if let Some(reason) = &outcome.reason {
                println!("reason: {reason}");
            }
            if outcome.status == bluegreen_core::Status::Interrupted {
                println!("resume with: {}", resume_command(args, &outcome.deployment_id));
            }
        }
    }
}

/// The deployment `args` names, or the service's newest one (running first).
pub(crate) async fn target(
    store: &dyn StateStore,
    file: &Recorded,
    id: Option<&str>,
) -> Result<DeploymentRecord, CliError> {
    if let Some(id) = id {
        return store.load(id).await.map_err(CliError::unknown);
    }
    let history = store.history(file.service()).await?;
    history.iter().rev().find(|r| r.phase != Phase::Finished).or_else(|| history.last()).cloned().ok_or_else(|| {
        CliError::bad_input(format!(
            "no deployment of {} recorded in {}",
            file.service(),
            file.state.local.path.display()
        ))
    })
}

/// `bluegreen history`.
pub(crate) async fn history(args: &FileArgs) -> Result<Code, CliError> {
    let file = load_records(args)?;
    let store = file.state_store().await?;
    let records = store.history(file.service()).await?;
    let summaries: Vec<_> = records.iter().map(DeploymentRecord::summary).collect();
    let rollbacks = going_back(&summaries);
    match args.output {
        Output::Json => {
            let entries: Vec<serde_json::Value> = summaries
                .iter()
                .zip(&rollbacks)
                .map(|(s, back)| {
                    let mut entry = serde_json::to_value(s).unwrap_or_default();
                    entry["rollback"] = json!(back);
                    entry
                })
                .collect();
            print_json(&json!({ "history": entries }));
        }
        Output::Text => {
            let id_width = summaries.iter().map(|s| s.id.len()).max().unwrap_or(0).max("deployment".len());
            let version_width = summaries
                .iter()
                .flat_map(|s| [s.to_version.len(), s.from_version.as_ref().map_or(1, String::len)])
                .max()
                .unwrap_or(0)
                .max("from".len());
            let (w, v) = (id_width, version_width);
            println!(
                "{:<w$}  {:<8}  {:<10}  {:<v$}  {:<v$}  {:<16}  {:>8}",
                "deployment", "kind", "strategy", "from", "to", "outcome", "duration"
            );
            for (s, back) in summaries.iter().zip(rollbacks) {
                let outcome = s.status.map_or_else(|| format!("{:?}", s.phase).to_lowercase(), |st| st.to_string());
                println!(
                    "{:<w$}  {:<8}  {:<10}  {:<v$}  {:<v$}  {:<16}  {:>8}",
                    s.id,
                    if back { "rollback" } else { "deploy" },
                    s.strategy,
                    s.from_version.as_deref().unwrap_or("-"),
                    s.to_version,
                    outcome,
                    humantime::format_duration(std::time::Duration::from_secs(s.duration.as_secs())).to_string()
                );
            }
        }
    }
    Ok(Code::Done)
}

/// For each deployment (oldest first), whether it went back: its version had served before it
/// (an earlier deployment succeeded with it, or started from it) and it replaced another one —
/// what `bluegreen rollback` runs, or a redeploy of an old version by hand.
fn going_back(summaries: &[bluegreen_core::DeploymentSummary]) -> Vec<bool> {
    let mut served: Vec<&str> = Vec::new();
    summaries
        .iter()
        .map(|s| {
            let back = served.contains(&s.to_version.as_str()) && s.from_version.as_deref() != Some(&s.to_version);
            served.extend(s.from_version.as_deref());
            if s.status == Some(bluegreen_core::Status::Succeeded) {
                served.push(&s.to_version);
            }
            back
        })
        .collect()
}

/// `bluegreen pause|resume|promote|abort`.
pub(crate) async fn send(args: &TargetArgs, command: Remote) -> Result<Code, CliError> {
    let file = load_records(&args.file)?;
    let store = file.state_store().await?;
    let record = target(store.as_ref(), &file, args.id.as_deref()).await?;
    if record.phase == Phase::Finished {
        return Err(CliError::bad_input(
            format!("deployment {} has already ended; nothing to {command:?}", record.id).to_lowercase(),
        ));
    }
    let seq = store.send(&record.id, command).await?;
    match args.file.output {
        Output::Json => print_json(&json!({ "deployment": record.id, "command": command, "seq": seq })),
        Output::Text => {
            println!("sent {} to {} (it reacts within a second)", format!("{command:?}").to_lowercase(), record.id)
        }
    }
    Ok(Code::Done)
}

/// `bluegreen report`.
pub(crate) async fn report(args: &FileArgs, id: Option<&str>, out: &std::path::Path) -> Result<Code, CliError> {
    let file = load_records(args)?;
    let store = file.state_store().await?;
    let record = target(store.as_ref(), &file, id).await?;
    // The log lives in the state store, so any runner that reads the store can plot it.
    let events = store.events(&record.id).await?;
    crate::report::write_svg(&record, &events, out)?;
    println!("wrote {}", out.display());
    Ok(Code::Done)
}
