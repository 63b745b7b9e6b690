//! Secrets are never written down: a value from `${env.X}`, a Terraform output marked
//! sensitive, and what a hook prints of them reach no output of any command (text, JSON, logs,
//! errors, the report) and no byte of the state store — file or DynamoDB (moto) — while the
//! hooks themselves get the real values, also when a later command runs a recorded spec again.
//!
//! Without moto the DynamoDB test fails when `CI=true` and is skipped with a notice otherwise.

#[path = "../../bluegreen-aws/tests/moto/mod.rs"]
mod moto;

use std::path::Path;
use std::process::{Command, Output};

use moto::Moto;

mod common;

use common::{temp_dir, BLUEGREEN};

/// In the environment as `DEPLOY_TOKEN`.
const ENV_SECRET: &str = "s3ntinel-env-4f1c9a7e";
/// A Terraform output marked sensitive.
const TF_SECRET: &str = "s3ntinel-tf-b82d6c05";
/// A Terraform output that is not sensitive: it may show.
const TF_PLAIN: &str = "eu-central-1";

/// The deploy file: a simulated backend, hooks that use both secrets in their command and
/// print them (and fail for v4, so that a deploy rolls back), and `state`.
fn deploy_file(state: &str) -> String {
    format!(
        r#"service = "checkout"
version = "v2"

[strategy]
kind = "canary"
steps = [{{ percent = 50, bake = "100ms" }}]

{checks}
[[hooks]]
point = "before_traffic"
command = "echo \"token=${{env.DEPLOY_TOKEN}} key=${{tf.api_key}} region=${{tf.region}}\"; echo \"$BLUEGREEN_VERSION ${{env.DEPLOY_TOKEN}} ${{tf.api_key}}\" >> hook-saw.txt; test \"$BLUEGREEN_VERSION\" != v4"

[[hooks]]
point = "on_rollback"
command = "echo \"rolled back with ${{env.DEPLOY_TOKEN}}\" >&2; echo \"$BLUEGREEN_ROLLBACK_REASON\""

[backend]
kind = "sim"
world = "world.json"

{state}
"#,
        checks = bluegreen_testkit::QUICK_CHECKS
    )
}

fn write_files(dir: &Path, state: &str) {
    std::fs::write(dir.join("deploy.toml"), deploy_file(state)).unwrap();
    let tf = serde_json::json!({
        "api_key": { "value": TF_SECRET, "type": "string", "sensitive": true },
        "region": { "value": TF_PLAIN, "type": "string", "sensitive": false },
    });
    std::fs::write(dir.join("tf.json"), tf.to_string()).unwrap();
}

fn bluegreen(dir: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["-f", "deploy.toml", "--tf-outputs", "tf.json"]);
    Command::new(BLUEGREEN)
        .current_dir(dir)
        .env("DEPLOY_TOKEN", ENV_SECRET)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .args(all)
        .output()
        .expect("run bluegreen")
}

/// Runs every command that reads the file or the state, in text and JSON and with debug logs,
/// through a deploy that succeeds, one that rolls back and a rollback to a recorded spec; checks
/// each exit code; returns every byte they printed, labelled.
fn exercise(dir: &Path) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    let mut run = |args: &[&str], code: i32| {
        let out = bluegreen(dir, args);
        let text = format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "bluegreen {args:?}:\n{text}");
        outputs.push((format!("{args:?}"), text));
    };
    run(&["plan"], 0);
    run(&["plan", "--output", "json"], 0);
    run(&["deploy", "-vv"], 0);
    run(&["deploy", "--version", "v3", "--output", "json", "-vv", "--log-format", "json"], 0);
    // Its hook fails (printing the secrets first): rolled back, exit 1.
    run(&["deploy", "--version", "v4", "-vv"], 1);
    run(&["deploy", "--version", "v4", "--output", "json"], 1);
    run(&["status"], 1);
    run(&["status", "--output", "json"], 1);
    run(&["history"], 0);
    run(&["history", "--output", "json"], 0);
    run(&["report", "--out", "report.svg"], 0);
    // Back to v2 with the spec recorded for it: its hook runs again with the real values.
    run(&["rollback", "--to", "v2", "-vv"], 0);
    run(&["status", "--output", "json"], 0);
    outputs.push(("report.svg".to_owned(), std::fs::read_to_string(dir.join("report.svg")).expect("the report")));
    outputs
}

/// Every file under `dir`, as text, by path.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                found.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    found
}

/// Fails naming each place a secret is found in.
fn assert_no_secret(places: &[(String, String)]) {
    let leaks: Vec<String> = places
        .iter()
        .filter(|(_, text)| text.contains(ENV_SECRET) || text.contains(TF_SECRET))
        .map(|(label, text)| format!("{label}:\n{text}"))
        .collect();
    assert!(leaks.is_empty(), "a secret was written down in {} place(s):\n{}", leaks.len(), leaks.join("\n\n"));
}

/// The hooks saw the real values: v2, v3, v4 and v2 again (the rollback's recorded spec).
fn assert_hooks_saw_the_secrets(dir: &Path) {
    let saw = std::fs::read_to_string(dir.join("hook-saw.txt")).expect("the hook's file");
    let lines: Vec<&str> = saw.lines().collect();
    let expected: Vec<String> =
        ["v2", "v3", "v4", "v4", "v2"].iter().map(|v| format!("{v} {ENV_SECRET} {TF_SECRET}")).collect();
    assert_eq!(lines, expected, "what the hooks saw");
}

#[test]
fn a_secret_is_in_no_output_and_no_byte_of_the_file_state_store() {
    let dir = temp_dir("secrets-file");
    write_files(dir.path(), "[state]\npath = \"state\"\n");
    let outputs = exercise(dir.path());
    // The outputs say where a secret was, and the non-sensitive output shows.
    let all: String = outputs.iter().map(|(_, text)| text.as_str()).collect();
    assert!(all.contains("token=*** key=*** region=eu-central-1"), "the hook's output, redacted");
    assert!(all.contains(TF_PLAIN));
    assert_no_secret(&outputs);
    assert_no_secret(&files_under(&dir.path().join("state")));
    assert_hooks_saw_the_secrets(dir.path());

    // A recorded spec whose reference is unset now is refused (exit 2), naming it, with
    // nothing changed: the file itself refers to it too, so the whole file is refused first.
    let out = Command::new(BLUEGREEN)
        .current_dir(dir.path())
        .env_remove("DEPLOY_TOKEN")
        .args(["rollback", "--to", "v3", "-f", "deploy.toml", "--tf-outputs", "tf.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEPLOY_TOKEN"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_in_no_output_and_no_byte_of_the_dynamodb_state_store() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.config().load().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    moto.create_state_table(&client, "bluegreen-state").await;
    let dir = temp_dir("secrets-dynamodb");
    let state = format!(
        "[state]\nkind = \"dynamodb\"\ntable = \"bluegreen-state\"\n\n[state.aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        moto.endpoint
    );
    write_files(dir.path(), &state);
    let outputs = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || exercise(&path)
    })
    .await
    .unwrap();
    assert_no_secret(&outputs);
    assert_hooks_saw_the_secrets(dir.path());

    // Every item of the table, every attribute.
    let items = client.scan().table_name("bluegreen-state").send().await.expect("scan").items.unwrap_or_default();
    assert!(items.len() > 10, "the deploys were recorded in the table: {} items", items.len());
    let stored: Vec<(String, String)> = items.iter().map(|item| ("item".to_owned(), format!("{item:?}"))).collect();
    assert!(stored.iter().any(|(_, text)| text.contains("***")), "the table holds the redacted hook output");
    assert_no_secret(&stored);
}
