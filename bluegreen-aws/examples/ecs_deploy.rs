//! A custom deploy binary for one ECS service: what a platform team writes when `bluegreen`'s
//! deploy file is not enough (its own flags, its own checks, its own exit codes), in ~100 lines.
//!
//! Blue-green (or a canary, `--canary 10`) of an ECS service whose deployment controller is
//! `EXTERNAL`, behind an ALB listener (or one of its rules), gated by the ALB's health checks,
//! journaled in DynamoDB so that a crashed run can be resumed and a second run waits in line.
//!
//! ```text
//! export CLUSTER=prod SERVICE=sales-area-graphql CONTAINER=app \
//!        IMAGE='123456789012.dkr.ecr.eu-west-1.amazonaws.com/sales-area-graphql:{version}' \
//!        LISTENER_ARN=arn:aws:elasticloadbalancing:…:listener/app/… \
//!        BLUE_TG_ARN=arn:…:targetgroup/blue/… GREEN_TG_ARN=arn:…:targetgroup/green/… \
//!        STATE_TABLE=bluegreen-state
//! cargo run -p bluegreen-aws --example ecs_deploy -- v87 [--canary 10] [--rule RULE_ARN]
//! ```
//!
//! Exit codes: 0 deployed, 1 failed and rolled back, 2 bad input, 3 needs a human, 4 another
//! deploy holds the service. `AWS_REGION` / `AWS_PROFILE` / `AWS_ENDPOINT_URL` work as usual.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_aws::{AlbRouter, AwsConfig, DynamoDbStore, EcsFleet};
use bluegreen_core::{
    BlueGreen, Canary, ConcurrencyPolicy, Error, Executor, JsonLinesSink, ShiftStep, Spec, Status, Strategy,
};

/// What the command line and the environment say.
struct Args {
    version: String,
    canary: Option<u32>,
    rule: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args { version: String::new(), canary: None, rule: None };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--canary" => {
                let percent = args.next().ok_or("--canary needs a percent")?;
                parsed.canary = Some(percent.parse().map_err(|_| format!("--canary {percent}: not a percent"))?);
            }
            "--rule" => parsed.rule = Some(args.next().ok_or("--rule needs a listener rule ARN")?),
            version if parsed.version.is_empty() && !version.starts_with('-') => parsed.version = version.to_owned(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.version.is_empty() {
        return Err("usage: ecs_deploy VERSION [--canary PERCENT] [--rule RULE_ARN]".into());
    }
    Ok(parsed)
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run(args: Args) -> Result<Status, Box<dyn std::error::Error>> {
    let sdk = AwsConfig::new().load().await;
    let mut router =
        AlbRouter::new(&sdk, env("LISTENER_ARN")?, [("blue", env("BLUE_TG_ARN")?), ("green", env("GREEN_TG_ARN")?)])?;
    if let Some(rule) = &args.rule {
        router = router.on_rule(rule)?;
    }
    let fleet = EcsFleet::builder(&sdk, env("CLUSTER")?, env("SERVICE")?)
        .container(env("CONTAINER")?)
        .image(env("IMAGE")?)
        .build()?;
    let probe = router.health_probe();
    let store = DynamoDbStore::new(&sdk, env("STATE_TABLE")?);
    let owner = format!("ecs-deploy-{}", std::process::id());

    let strategy = match args.canary {
        Some(percent) => Strategy::Canary(Canary {
            steps: vec![ShiftStep { percent, bake: Duration::from_secs(300) }],
            ..Canary::default()
        }),
        None => Strategy::BlueGreen(BlueGreen::default()),
    };
    let mut spec = Spec::new(env("SERVICE")?, args.version.as_str(), strategy);
    spec.concurrency = ConcurrencyPolicy::Queue;

    let executor = Executor::builder(Arc::new(router), Arc::new(fleet), Arc::new(probe))
        .state_store(Arc::new(store), owner)
        .sink(JsonLinesSink::new(std::io::stdout()))
        .build();
    println!("{}", executor.plan(&spec).await?.timeline());
    Ok(executor.deploy(&spec).await?.status)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("ecs_deploy: {message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(Status::Succeeded) => ExitCode::SUCCESS,
        Ok(Status::RolledBack) => ExitCode::from(1),
        Ok(status) => {
            eprintln!("ecs_deploy: ended {status}: a human should look");
            ExitCode::from(3)
        }
        Err(err) => {
            eprintln!("ecs_deploy: {err}");
            match err.downcast_ref::<Error>() {
                Some(Error::Conflict { .. }) => ExitCode::from(4),
                Some(Error::Invalid { .. } | Error::NotFound { .. }) | None => ExitCode::from(2),
                Some(_) => ExitCode::from(3),
            }
        }
    }
}
