//! `bluegreen`: plan, deploy, steer and report zero-downtime releases from a declarative spec.

mod args;
mod commands;
mod demo;
mod exit;
mod logs;
mod owner;
mod progress;
mod redact;
mod report;
mod specfile;
mod watch;

use std::process::ExitCode;

use bluegreen_core::Command as Remote;
use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, Output};
use crate::commands::Run;
use crate::exit::Code;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bluegreen: cannot start: {e}");
            return Code::NeedsHuman.into();
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Plan(args) => commands::plan(args).await,
            Command::Deploy { file, adopt } => commands::deploy(file, Run::Deploy { adopt: *adopt }).await,
            Command::ResumeDeploy { file, id } => commands::deploy(file, Run::Resume(id)).await,
            Command::Status { target, watch } => watch::status(target, *watch).await,
            Command::Wait { target, until, timeout } => watch::wait(target, *until, *timeout).await,
            Command::History(args) => commands::history(args).await,
            Command::Pause(args) => commands::send(args, Remote::Pause).await,
            Command::Resume(args) => commands::send(args, Remote::Resume).await,
            Command::Promote(args) => commands::send(args, Remote::Promote).await,
            Command::Abort(args) => commands::send(args, Remote::Abort).await,
            Command::Rollback { file, to } => commands::deploy(file, Run::Rollback(to.as_deref())).await,
            Command::Report { file, id, out } => commands::report(file, id.as_deref(), out).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Completions { shell } => {
                clap_complete::generate(*shell, &mut Cli::command(), "bluegreen", &mut std::io::stdout());
                Ok(Code::Done)
            }
            Command::Man => {
                let mut page = Vec::new();
                match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                    Ok(()) => {
                        use std::io::Write as _;
                        let _ = std::io::stdout().write_all(&page);
                        Ok(Code::Done)
                    }
                    Err(e) => Err(exit::CliError::bad_input(format!("cannot render the manual page: {e}"))),
                }
            }
            Command::ServeTarget { args } => {
                let code = bluegreen_vm::target::serve(args).await;
                std::process::exit(code);
            }
        }
    });
    match result {
        Ok(code) => code.into(),
        Err(error) => {
            match cli.command.output() {
                Output::Json => {
                    let mut json = error.to_json();
                    redact::SECRETS.redact_json(&mut json);
                    println!("{json}");
                }
                Output::Text => eprintln!("bluegreen: {}", redact::redact(&error.to_string())),
            }
            error.code.into()
        }
    }
}
