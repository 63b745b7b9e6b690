//! Command hooks: environment, output capture, exit status and timeouts, with real `sh`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bluegreen_core::{CommandHook, Error, Hook, HookContext, HookPoint};

fn context() -> HookContext {
    HookContext {
        point: HookPoint::BeforeTraffic,
        deployment_id: "d-42".to_owned(),
        service: "web".to_owned(),
        version: "v2".to_owned(),
        previous_version: Some("v1".to_owned()),
        stable_pool: "blue".to_owned(),
        candidate_pool: "green".to_owned(),
        candidate_addresses: vec!["127.0.0.1:8081".to_owned(), "127.0.0.1:8082".to_owned()],
        rollback: None,
    }
}

/// The `what` and `reason` of an [`Error::Check`].
fn check_error(error: Error) -> (String, String) {
    match error {
        Error::Check { what, reason } => (what, reason),
        other => panic!("expected Error::Check, got {other:?}"),
    }
}

/// A path in the temp dir no other test uses.
fn scratch_path(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("bluegreen-hooks-{}-{nanos}-{name}", std::process::id()))
}

#[tokio::test]
async fn command_sees_bluegreen_environment() {
    let hook = CommandHook::new(
        "echo \"$BLUEGREEN_HOOK $BLUEGREEN_SERVICE $BLUEGREEN_VERSION $BLUEGREEN_PREVIOUS_VERSION\"; \
         echo \"$BLUEGREEN_DEPLOYMENT_ID $BLUEGREEN_STABLE_POOL->$BLUEGREEN_CANDIDATE_POOL\"; \
         echo \"$BLUEGREEN_CANDIDATE_ADDRESSES\"",
        Duration::from_secs(10),
    );
    let output = hook.run(&context()).await.unwrap();
    assert_eq!(output.output, "before_traffic web v2 v1\nd-42 blue->green\n127.0.0.1:8081,127.0.0.1:8082");
}

#[tokio::test]
async fn command_inherits_the_deployers_environment() {
    // PATH comes from the parent; without it `env` could not be found.
    let hook = CommandHook::new("env | grep -c '^PATH='", Duration::from_secs(10));
    assert_eq!(hook.run(&context()).await.unwrap().output, "1");
}

#[tokio::test]
async fn nonzero_exit_fails_with_status_and_output() {
    let hook = CommandHook::new("echo migrating; echo 'relation users missing' >&2; exit 3", Duration::from_secs(10));
    let (what, reason) = check_error(hook.run(&context()).await.unwrap_err());
    assert_eq!(what, "hook \"echo migrating; echo 'relation users missing' >&2; exit 3\"");
    assert!(reason.starts_with("exit status 3: "), "{reason}");
    assert!(reason.contains("migrating"), "{reason}");
    assert!(reason.contains("relation users missing"), "{reason}");
}

#[tokio::test]
async fn nonzero_exit_without_output() {
    let hook = CommandHook::new("exit 7", Duration::from_secs(10));
    let (_, reason) = check_error(hook.run(&context()).await.unwrap_err());
    assert_eq!(reason, "exit status 7");
}

#[tokio::test]
async fn timeout_kills_the_command() {
    let hook = CommandHook::new("echo started; sleep 5", Duration::from_millis(200));
    let started = Instant::now();
    let (what, reason) = check_error(hook.run(&context()).await.unwrap_err());
    let elapsed = started.elapsed();
    assert_eq!(what, "hook \"echo started; sleep 5\"");
    assert_eq!(reason, "timed out after 200ms: started");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test]
async fn timeout_kills_processes_the_command_started() {
    let marker = scratch_path("marker");
    // A subshell in the background would create the marker after 1 s unless it is killed too.
    let hook = CommandHook::new(format!("(sleep 1; touch '{}') & wait", marker.display()), Duration::from_millis(200));
    let error = hook.run(&context()).await.unwrap_err();
    assert!(check_error(error).1.starts_with("timed out after 200ms"));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let exists = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(!exists, "a process started by the hook outlived its timeout");
}

#[tokio::test]
async fn success_output_is_captured() {
    let hook = CommandHook::new("echo to stdout; echo to stderr >&2", Duration::from_secs(10));
    let output = hook.run(&context()).await.unwrap().output;
    let mut lines: Vec<&str> = output.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["to stderr", "to stdout"]);
}

#[tokio::test]
async fn output_keeps_only_the_last_lines() {
    let hook = CommandHook::new("i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done", Duration::from_secs(10));
    let output = hook.run(&context()).await.unwrap().output;
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 20, "{output}");
    assert_eq!(lines.first(), Some(&"line11"));
    assert_eq!(lines.last(), Some(&"line30"));
}

#[tokio::test]
async fn output_is_bounded_in_bytes() {
    // 30 lines of 500 bytes and one line of 100 kB without a newline.
    let hook = CommandHook::new(
        "i=0; while [ $i -lt 30 ]; do printf '%0500d\\n' $i; i=$((i+1)); done; head -c 100000 /dev/zero | tr '\\0' x",
        Duration::from_secs(10),
    );
    let output = hook.run(&context()).await.unwrap().output;
    assert!(output.len() <= 4096 + 16, "{} bytes kept", output.len());
    assert!(output.ends_with("x […]"), "a long line is cut: ...{}", &output[output.len().saturating_sub(20)..]);
}

#[tokio::test]
async fn background_process_does_not_hold_the_hook() {
    let hook = CommandHook::new("sleep 3 & echo started", Duration::from_secs(10));
    let started = Instant::now();
    let output = hook.run(&context()).await.unwrap();
    assert_eq!(output.output, "started");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn hook_name_is_the_command() {
    let hook = CommandHook::new("./migrate.sh", Duration::from_secs(1));
    assert_eq!(hook.name(), "./migrate.sh");
}

/// `on_rollback`: a canary whose new version never gets healthy rolls back, then the hook runs
/// once with the reason and the end in its environment (a spec command hook, through `sh`); a
/// failing `on_rollback` hook is reported and changes nothing of the outcome; a deploy that
/// succeeds runs none. (Real time: a command hook waits on a real process.)
#[tokio::test]
async fn on_rollback_hooks_run_after_a_rollback_with_its_reason() {
    use bluegreen_core::sim::{Sim, VersionBehaviour};
    use bluegreen_core::{
        Canary, CommandHookSpec, EventKind, Executor, FnHook, MemorySink, ShiftStep, Spec, Status, Strategy,
    };

    let seen = scratch_path("on-rollback");
    let canary =
        Canary { steps: vec![ShiftStep { percent: 20, bake: Duration::from_millis(100) }], ..Canary::default() };
    let mut spec = Spec::new("web", "v2", Strategy::Canary(canary)).with_health(bluegreen_core::HealthPolicy {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(10),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_millis(200),
    });
    spec.hooks = vec![CommandHookSpec {
        point: HookPoint::OnRollback,
        command: format!(
            "echo \"$BLUEGREEN_HOOK|$BLUEGREEN_ROLLBACK_STATUS|$BLUEGREEN_ROLLBACK_REASON\" >> {}",
            seen.display()
        ),
        timeout: Duration::from_secs(10),
    }];
    let run = |version: VersionBehaviour, spec: Spec| async move {
        let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").version("v2", version).build();
        let log = MemorySink::new();
        let failing =
            FnHook::new("notify", |_| async { Err(Error::Check { what: "notify".into(), reason: "down".into() }) });
        let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe())
            .sink(log.clone())
            .hook(HookPoint::OnRollback, failing)
            .build();
        (exec.deploy(&spec).await.unwrap(), log)
    };

    let (outcome, log) = run(VersionBehaviour::never_healthy(), spec.clone()).await;
    assert_eq!(outcome.status, Status::RolledBack, "a failing on_rollback hook changes nothing");
    let lines = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<&str> = lines[0].splitn(3, '|').collect();
    assert_eq!(&fields[..2], ["on_rollback", "rolled back"], "{lines:?}");
    assert!(fields[2].contains("not healthy"), "the reason: {lines:?}");
    let hooks: Vec<(String, bool)> = log
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HookFinished { point, hook, ok, .. } if point == "on_rollback" => Some((hook.clone(), *ok)),
            _ => None,
        })
        .collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(hooks.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(), [true, false], "{hooks:?}");

    let (outcome, log) = run(VersionBehaviour::healthy(), spec).await;
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(!log
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::HookFinished { point, .. } if point == "on_rollback")));
    assert_eq!(std::fs::read_to_string(&seen).unwrap().lines().count(), 1, "no rollback, no hook");
    let _ = std::fs::remove_file(&seen);
}
