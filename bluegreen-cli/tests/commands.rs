//! The `bluegreen` command end to end on the simulator backend (its world in a file, so that
//! several invocations share it): JSON outputs, exit codes, control from a second process,
//! Ctrl-C and resume, history, rollback and the report.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

use bluegreen_core::sim::Sim;
use serde_json::Value;

mod common;

use common::{temp_dir, BLUEGREEN};

fn dir(name: &str, strategy: &str) -> TempDir {
    let dir = temp_dir(&format!("cmd-{name}"));
    let file = format!(
        r#"service = "checkout"
version = "v2"

[strategy]
{strategy}

[health]
interval = "50ms"
timeout = "40ms"
healthy_threshold = 1
min_healthy_time = "0s"
deadline = "5s"

[backend]
kind = "sim"
world = "world.json"
versions = {{ v9 = "never_healthy" }}

[state]
path = "state"
"#
    );
    std::fs::write(dir.path().join("deploy.toml"), file).unwrap();
    dir
}

const QUICK_CANARY: &str = "kind = \"canary\"\nsteps = [{ percent = 20, bake = \"200ms\" }]";
const SLOW_CANARY: &str = "kind = \"canary\"\nsteps = [{ percent = 20, bake = \"30s\" }]";

/// The `error` object a command printed on stdout under `--output json` (nothing on stderr).
fn json_error(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("bluegreen:"), "the error went to stderr too: {out:?}");
    value["error"].clone()
}

fn bluegreen(d: &TempDir, args: &[&str]) -> Output {
    Command::new(BLUEGREEN).current_dir(d.path()).args(args).output().unwrap()
}

fn spawn(d: &TempDir, args: &[&str]) -> Child {
    Command::new(BLUEGREEN)
        .current_dir(d.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn world(d: &TempDir) -> Sim {
    Sim::builder().shared_file(d.path().join("world.json")).build()
}

fn green_weight(d: &TempDir) -> u32 {
    // Opening a world that does not exist yet would create an empty one under the deploy.
    if !d.path().join("world.json").exists() {
        return 0;
    }
    world(d).split().weight(&"green".into())
}

/// Waits until `f` holds (a second process needs a moment to get going).
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running_id(d: &TempDir) -> Option<String> {
    running_id_in(d, "deploy.toml")
}

fn running_id_in(d: &TempDir, file: &str) -> Option<String> {
    let out = bluegreen(d, &["status", "-f", file, "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["deployment"]["id"].as_str()?.to_owned())
}

#[test]
fn plan_output_json_is_the_documented_shape() {
    let d = dir("plan-json", QUICK_CANARY);
    let out = bluegreen(&d, &["plan", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["plan"]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "provision");
    assert!(steps.iter().any(|s| s["step"] == "shift_traffic" && s["split"]["green"] == 20));
    assert_eq!(v["plan"]["spec"]["service"], "checkout");
    assert_eq!(v["plan"]["stable_pool"], "blue");
    let rows = v["timeline"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), steps.len());
    for key in ["index", "step", "expected", "at_most", "ends_at", "running", "serving"] {
        assert!(rows[0].get(key).is_some(), "timeline rows carry {key}");
    }
    assert_eq!(v["timeline"]["peak_running"], 8);
    assert_eq!(world(&d).writes(), 0, "plan changes nothing");
}

#[test]
fn deploy_output_json_is_events_then_the_outcome() {
    let d = dir("deploy-json", QUICK_CANARY);
    let out = bluegreen(&d, &["deploy", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (outcome, events) = lines.split_last().unwrap();
    assert_eq!(events[0]["event"], "deployment_started");
    assert!(events.iter().all(|e| e["deployment_id"].is_string() && e["seq"].is_u64() && e["at"].is_string()));
    for name in [
        "targets_started",
        "target_healthy",
        "targets_registered",
        "traffic_shifted",
        "targets_drained",
        "targets_stopped",
        "steady_state",
    ] {
        assert!(events.iter().any(|e| e["event"] == name), "no {name} event");
    }
    assert_eq!(outcome["outcome"]["status"], "succeeded");
    assert_eq!(outcome["outcome"]["serving_versions"], serde_json::json!(["v2"]));
    assert_eq!(green_weight(&d), 100);
}

#[test]
fn a_failed_deploy_exits_1_rolled_back_and_history_and_rollback_work() {
    let d = dir("history", QUICK_CANARY);
    assert_eq!(bluegreen(&d, &["deploy"]).status.code(), Some(0));
    assert_eq!(bluegreen(&d, &["deploy", "--version", "v3"]).status.code(), Some(0));
    let failed = bluegreen(&d, &["deploy", "--version", "v9"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(stdout(&failed).contains("rolled back"));
    let out = bluegreen(&d, &["history", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<(&str, &str)> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to_version"].as_str().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("v2", "succeeded"), ("v3", "succeeded"), ("v9", "rolled_back")]);
    let back = bluegreen(&d, &["rollback"]);
    assert_eq!(back.status.code(), Some(0), "{back:?}");
    assert!(world(&d).targets().iter().all(|t| t.version.as_str() == "v2"), "back on v2");
    // History marks the rollback, in JSON and in its table, whose columns fit the ids.
    let out = bluegreen(&d, &["history", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let marks: Vec<bool> = v["history"].as_array().unwrap().iter().map(|h| h["rollback"].as_bool().unwrap()).collect();
    assert_eq!(marks, [false, false, false, true]);
    let table = stdout(&bluegreen(&d, &["history"]));
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("deployment ") && rows[0].contains("kind"), "{table}");
    assert!(rows[4].contains(" rollback ") && rows[4].contains(" v3 ") && rows[4].contains(" v2 "), "{table}");
    assert!(rows[1..4].iter().all(|r| r.contains(" deploy ")), "{table}");
    let id_end = rows[0].find(" kind").unwrap();
    assert!(rows[1..].iter().all(|r| r.split_whitespace().next().unwrap().len() <= id_end), "ids fit: {table}");
    let to = bluegreen(&d, &["rollback", "--to", "v7"]);
    assert_eq!(to.status.code(), Some(2), "no good v7 in the history: {to:?}");
}

/// Terraform created the service at v86; bluegreen's first deploy took it to v87. `rollback`
/// goes back to v86 (known only as the deploy's `from`), and `--to` takes either version.
#[test]
fn rollback_after_the_first_deploy_goes_back_to_the_version_it_came_from() {
    let d = dir("rollback-first", QUICK_CANARY);
    let file = d.path().join("deploy.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("world = \"world.json\"", "world = \"world.json\"\ninitial_version = \"v86\"");
    std::fs::write(&file, text).unwrap();
    let versions = |d: &TempDir| -> Vec<String> {
        let mut v: Vec<String> = world(d).targets().iter().map(|t| t.version.to_string()).collect();
        v.dedup();
        v
    };
    assert_eq!(bluegreen(&d, &["deploy", "--version", "v87"]).status.code(), Some(0));
    assert_eq!(versions(&d), ["v87"]);
    let back = bluegreen(&d, &["rollback"]);
    assert_eq!(back.status.code(), Some(0), "{back:?}");
    assert_eq!(versions(&d), ["v86"], "back on the version the first deploy started from");
    assert_eq!(bluegreen(&d, &["rollback", "--to", "v87"]).status.code(), Some(0));
    assert_eq!(versions(&d), ["v87"]);
    assert_eq!(bluegreen(&d, &["rollback", "--to", "v86"]).status.code(), Some(0));
    assert_eq!(versions(&d), ["v86"]);
    let unknown = bluegreen(&d, &["rollback", "--to", "v85"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}

fn events_of(d: &TempDir, id: &str) -> Vec<Value> {
    let path = d.path().join("state/checkout/events").join(format!("{id}.jsonl"));
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn pause_promote_and_abort_from_a_second_process_change_a_running_deploy() {
    for command in ["pause", "promote", "abort"] {
        let d = dir(command, SLOW_CANARY);
        let deploy = spawn(&d, &["deploy"]);
        wait_until("the canary to bake", || green_weight(&d) == 20);
        let id = running_id(&d).unwrap();
        let status = bluegreen(&d, &["status"]);
        assert!(stdout(&status).contains("running") && stdout(&status).contains("bake"), "{}", stdout(&status));
        let sent = bluegreen(&d, &[command]);
        assert_eq!(sent.status.code(), Some(0), "{sent:?}");
        match command {
            "pause" => {
                wait_until("the deploy to pause", || events_of(&d, &id).iter().any(|e| e["event"] == "paused"));
                assert_eq!(bluegreen(&d, &["abort"]).status.code(), Some(0));
                assert_eq!(deploy.wait_with_output().unwrap().status.code(), Some(1));
            }
            "promote" => {
                let out = deploy.wait_with_output().unwrap();
                assert_eq!(out.status.code(), Some(0), "{out:?}");
                assert_eq!(green_weight(&d), 100);
            }
            _ => {
                let out = deploy.wait_with_output().unwrap();
                assert_eq!(out.status.code(), Some(1), "{out:?}");
                assert_eq!(green_weight(&d), 0);
            }
        }
        let done = bluegreen(&d, &[command]);
        assert_eq!(done.status.code(), Some(2), "nothing running any more: {done:?}");
    }
}

/// `status` and `wait` exit with where the deployment stands: 7 while it runs (and `wait` at
/// its timeout), 0 when `wait --until` is reached, then the outcome's code once it ended.
#[test]
fn status_and_wait_exit_with_where_the_deployment_stands() {
    let d = dir("wait", SLOW_CANARY);
    let deploy = spawn(&d, &["deploy"]);
    wait_until("the canary to bake", || green_weight(&d) == 20);
    let status = bluegreen(&d, &["status"]);
    assert_eq!(status.status.code(), Some(7), "running: {status:?}");
    let json: Value = serde_json::from_slice(&bluegreen(&d, &["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(json["standing"], "running", "{json}");

    let started = Instant::now();
    let timed_out = bluegreen(&d, &["wait", "--timeout", "1s"]);
    assert_eq!(timed_out.status.code(), Some(7), "{timed_out:?}");
    assert!(stdout(&timed_out).contains("still running at the timeout"), "{}", stdout(&timed_out));
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout ended the wait");
    let step = bluegreen(&d, &["wait", "--until", "step:3", "--timeout", "20s"]);
    assert_eq!(step.status.code(), Some(0), "three steps are done before the bake: {step:?}");

    // A watcher started now sees the pause, then the end.
    let watcher = spawn(&d, &["status", "--watch"]);
    assert_eq!(bluegreen(&d, &["pause"]).status.code(), Some(0));
    let paused = bluegreen(&d, &["wait", "--until", "paused", "--timeout", "20s", "--output", "json"]);
    assert_eq!(paused.status.code(), Some(0), "{paused:?}");
    let paused: Value = serde_json::from_slice(&paused.stdout).unwrap();
    assert_eq!((paused["reached"].as_bool(), paused["standing"].as_str()), (Some(true), Some("running")));
    assert!(stdout(&bluegreen(&d, &["status"])).contains("state:  paused"));

    assert_eq!(bluegreen(&d, &["abort"]).status.code(), Some(0));
    let waited = bluegreen(&d, &["wait", "--until", "finished", "--timeout", "30s"]);
    assert_eq!(waited.status.code(), Some(1), "rolled back: {waited:?}");
    assert_eq!(deploy.wait_with_output().unwrap().status.code(), Some(1));
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(watched.status.code(), Some(1), "the watch ends with the deployment: {watched:?}");
    let shown = stdout(&watched);
    assert!(shown.contains("state:  paused") && shown.contains("state:  rolled back"), "{shown}");
    assert_eq!(bluegreen(&d, &["status"]).status.code(), Some(1));
    // `--until paused` of a deployment that ended without reaching it: the outcome's code.
    let never = bluegreen(&d, &["wait", "--until", "rolling-back"]);
    assert_eq!(never.status.code(), Some(1), "{never:?}");

    let bad = bluegreen(&d, &["wait", "--until", "step:0"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    let quick = dir("wait-quick", QUICK_CANARY);
    assert_eq!(bluegreen(&quick, &["deploy"]).status.code(), Some(0));
    for args in [&["status"][..], &["status", "--watch"], &["wait"], &["wait", "--until", "step:1"]] {
        assert_eq!(bluegreen(&quick, args).status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn ctrl_c_stops_at_a_safe_point_and_resume_deploy_converges() {
    let d = dir("ctrl-c", SLOW_CANARY);
    // A file with another name than the default deploy.toml: the printed hint must name it.
    std::fs::rename(d.path().join("deploy.toml"), d.path().join("checkout release.toml")).unwrap();
    let file = ["-f", "checkout release.toml"];
    let deploy = spawn(&d, &[&["deploy"], &file[..]].concat());
    wait_until("the canary to bake", || green_weight(&d) == 20);
    let id = running_id_in(&d, "checkout release.toml").unwrap();
    let pid = deploy.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = deploy.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let printed = stdout(&out);
    let hint = printed.lines().find_map(|l| l.strip_prefix("resume with: ")).expect("a resume hint");
    assert_eq!(hint, format!("bluegreen resume-deploy -f 'checkout release.toml' {id}"));
    assert_eq!(green_weight(&d), 20, "left as it was, resumable");
    let status = bluegreen(&d, &[&["status"], &file[..]].concat());
    assert_eq!(status.status.code(), Some(5), "stopped unfinished: {status:?}");
    assert!(stdout(&status).contains("stopped unfinished (resumable)"), "{}", stdout(&status));

    // Promote ahead of the resume so the 30 s bake is skipped; the resumed run replays it.
    assert_eq!(bluegreen(&d, &[&["promote"], &file[..], &["--id", &id]].concat()).status.code(), Some(0));
    // The hint, run as printed (through a shell, as an operator pastes it).
    let resumed = Command::new("sh")
        .current_dir(d.path())
        .args(["-c", &hint.replacen("bluegreen", BLUEGREEN, 1)])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{resumed:?}");
    assert_eq!(green_weight(&d), 100);
    assert!(world(&d).violations().is_empty());
}

#[test]
fn report_writes_an_svg_of_the_deploy() {
    let d = dir("report", QUICK_CANARY);
    assert_eq!(bluegreen(&d, &["deploy"]).status.code(), Some(0));
    let out = bluegreen(&d, &["report", "--out", "report.svg"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let svg = std::fs::read_to_string(d.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "not an SVG");
    for text in ["traffic (%)", "serving targets", "blue", "green", "checkout v1 → v2"] {
        assert!(svg.contains(text), "the report lacks {text:?}");
    }
}

/// Every exit code docs/cli.md documents, provoked, and no other: the table and the command
/// cannot drift apart.
#[test]
fn every_documented_exit_code_is_provoked_and_means_what_the_table_says() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    let documented: std::collections::BTreeSet<i32> =
        docs.lines().filter_map(|l| l.strip_prefix("| ")?.split_once(" |")?.0.trim().parse().ok()).collect();
    let mut provoked = std::collections::BTreeMap::new();

    // 0: done.
    let d = dir("exit-0", QUICK_CANARY);
    provoked.insert(0, bluegreen(&d, &["plan"]).status.code());
    // 1: failed and rolled back.
    let d = dir("exit-1", QUICK_CANARY);
    provoked.insert(1, bluegreen(&d, &["deploy", "--version", "v9"]).status.code());
    // 2: bad input — a malformed file, an unknown deployment, a demo rate of 0 or 1e-30.
    let d = dir("exit-2", "kind = \"canary\"\nsteps = [{ percent = 0 }]");
    let codes: Vec<Option<i32>> = [
        bluegreen(&d, &["plan"]),
        bluegreen(&dir("exit-2b", QUICK_CANARY), &["status", "--id", "no-such-deployment"]),
        bluegreen(&d, &["demo", "--rate", "0"]),
        bluegreen(&d, &["demo", "--rate", "1e-30"]),
    ]
    .iter()
    .map(|o| o.status.code())
    .collect();
    assert_eq!(codes, [Some(2); 4], "bad input");
    // A corrupt simulator world is bad input too, refused before the lock is taken.
    let corrupt = dir("exit-2c", QUICK_CANARY);
    std::fs::write(corrupt.path().join("world.json"), "{ not a world").unwrap();
    let out = bluegreen(&corrupt, &["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("world.json"), "{out:?}");
    let status = bluegreen(&corrupt, &["status"]);
    assert_eq!(status.status.code(), Some(2), "no deployment was recorded: {status:?}");
    provoked.insert(2, codes[0]);
    // Under --output json an error is a JSON object on stdout, with the same code.
    let json = bluegreen(&d, &["plan", "--output", "json"]);
    assert_eq!(json.status.code(), Some(2));
    let error = json_error(&json);
    assert_eq!(error["kind"], "bad_input", "{error}");
    assert!(error["location"].as_str().is_some_and(|l| l.starts_with("deploy.toml:")), "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("percent")), "{error}");
    // 3: a backend that cannot be reached (an HAProxy socket that does not exist).
    let d = dir("exit-3", QUICK_CANARY);
    let haproxy = r#"[backend]
kind = "haproxy"
socket = "no-such-admin.sock"
haproxy_backend = "web"
updater = "true"
hosts = [{ id = "web-1", address = "127.0.0.1:18081", version = "v1" }]
probe = { kind = "tcp" }
"#;
    let text = std::fs::read_to_string(d.path().join("deploy.toml")).unwrap();
    let text = text
        .replace("[backend]\nkind = \"sim\"\nworld = \"world.json\"\nversions = { v9 = \"never_healthy\" }\n", haproxy)
        .replace(QUICK_CANARY, "kind = \"rolling\"\nbatch = 1");
    std::fs::write(d.path().join("deploy.toml"), text).unwrap();
    provoked.insert(3, bluegreen(&d, &["plan"]).status.code());
    let json = bluegreen(&d, &["plan", "--output", "json"]);
    assert_eq!((json.status.code(), json_error(&json)["kind"].as_str()), (Some(3), Some("needs_human")));
    // 4: another deployment holds the lock; 7: it is still running; 5: Ctrl-C.
    let d = dir("exit-4", SLOW_CANARY);
    let first = spawn(&d, &["deploy"]);
    wait_until("the canary to bake", || green_weight(&d) == 20);
    provoked.insert(4, bluegreen(&d, &["deploy", "--version", "v3"]).status.code());
    // 7: still running.
    provoked.insert(7, bluegreen(&d, &["status"]).status.code());
    let json = bluegreen(&d, &["deploy", "--version", "v3", "--output", "json"]);
    assert_eq!((json.status.code(), json_error(&json)["kind"].as_str()), (Some(4), Some("lock_held")));
    assert!(Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap().success());
    provoked.insert(5, first.wait_with_output().unwrap().status.code());
    // 6: the backend is not as the file describes: the router splits 50/50 (a deploy left
    // half-way by another tool), so no pool carries all traffic.
    let d = dir("exit-6", QUICK_CANARY);
    let half = bluegreen_core::Split::between(&"blue".into(), &"green".into(), 50);
    Sim::builder()
        .pool("blue", 2, "v1")
        .pool("green", 2, "v1")
        .split(half)
        .shared_file(d.path().join("world.json"))
        .build();
    let out = bluegreen(&d, &["deploy"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish"), "{out:?}");
    provoked.insert(6, out.status.code());
    assert_eq!(world(&d).writes(), 0, "exit 6 changed nothing");

    for (code, got) in &provoked {
        assert_eq!(*got, Some(*code), "exit code {code} was not what its case provoked");
    }
    let codes: std::collections::BTreeSet<i32> = provoked.keys().copied().collect();
    assert_eq!(codes, documented, "docs/cli.md documents other exit codes than the command has");
}

/// A job killed on this host and started again: the lock of the dead process is taken over at
/// once (and said), not waited out for its 30 s lease; the event log goes on in the store.
#[test]
fn a_runner_killed_on_this_host_is_resumed_at_once_and_its_log_goes_on() {
    let d = dir("sigkill", SLOW_CANARY);
    let deploy = spawn(&d, &["deploy"]);
    wait_until("the canary to bake", || green_weight(&d) == 20);
    let id = running_id(&d).unwrap();
    assert!(Command::new("kill").args(["-KILL", &deploy.id().to_string()]).status().unwrap().success());
    let _ = deploy.wait_with_output();
    let before = events_of(&d, &id);
    assert!(before.iter().any(|e| e["event"] == "traffic_shifted"), "the log was in the store before the kill");

    assert_eq!(bluegreen(&d, &["promote", "--id", &id]).status.code(), Some(0));
    let started = Instant::now();
    let resumed = bluegreen(&d, &["resume-deploy", &id]);
    assert_eq!(resumed.status.code(), Some(0), "{resumed:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "waited out the dead runner's lease: {:?}", started.elapsed());
    assert!(stdout(&resumed).contains("took over the lock of checkout from bluegreen-"), "{}", stdout(&resumed));
    assert_eq!(green_weight(&d), 100);

    let log = events_of(&d, &id);
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..log.len() as u64).collect::<Vec<_>>(), "one numbering across both runners");
    assert_eq!(log.iter().filter(|e| e["event"] == "deployment_started").count(), 1);
    assert_eq!(log.iter().filter(|e| e["event"] == "deployment_resumed").count(), 1);
    // `report` reads the log from the store.
    assert_eq!(bluegreen(&d, &["report", "--id", &id, "--out", "after-kill.svg"]).status.code(), Some(0));
}

/// Shell completions and the manual page; flags from `BLUEGREEN_*` variables; durations in JSON
/// in whole milliseconds.
#[test]
fn completions_man_page_environment_flags_and_millisecond_durations() {
    let d = dir("shell", QUICK_CANARY);
    for shell in ["bash", "zsh", "fish"] {
        let out = bluegreen(&d, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(stdout(&out).contains("resume-deploy"), "{shell}: {}", stdout(&out));
    }
    assert!(stdout(&bluegreen(&d, &["completions", "bash"])).contains("_bluegreen()"));
    let man = bluegreen(&d, &["man"]);
    assert_eq!(man.status.code(), Some(0), "{man:?}");
    assert!(stdout(&man).starts_with(".ie") || stdout(&man).contains(".TH bluegreen"), "{}", stdout(&man));

    // The file and the output format from the environment.
    std::fs::rename(d.path().join("deploy.toml"), d.path().join("other.toml")).unwrap();
    let out = Command::new(BLUEGREEN)
        .current_dir(d.path())
        .env("BLUEGREEN_FILE", "other.toml")
        .env("BLUEGREEN_OUTPUT", "json")
        .args(["deploy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 5, "events then the outcome");
    // Every measured duration is whole milliseconds: no `us` or `ns` part.
    for line in &lines {
        for key in ["at", "took", "after", "elapsed"] {
            let found = line.get(key).or_else(|| line.get("outcome").and_then(|o| o.get(key)));
            if let Some(text) = found.and_then(Value::as_str) {
                assert!(!text.contains("us") && !text.contains("ns"), "{key}: {text} in {line}");
            }
        }
    }
}
