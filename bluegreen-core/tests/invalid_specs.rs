//! The "bad input" contract (invariant 8): a spec that cannot work is refused with a typed
//! error that names the field at fault, before anything on a backend changes.
//!
//! - Pure spec errors are refused by `Spec::from_json` / `Spec::validate`, and `Executor::deploy`
//!   refuses them before its first backend call: the executor runs over mocks with no
//!   expectations, so any backend call panics (and the panic is caught and reported).
//! - Errors that need the observed state are refused by `Plan::compile` inside
//!   `Executor::plan` / `deploy`: reads are allowed, writes are not (`Sim::writes() == 0`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::{
    AnalysisSpec, BatchSize, BlueGreen, Canary, Capabilities, Error, Executor, HookPoint, HttpSuccessRateSpec, Linear,
    MockFleet, MockHealthProbe, MockRouter, Outcome, Preset, RollbackPace, RollbackPolicy, Rolling, RollingMode,
    ShiftStep, Spec, Split, Strategy,
};
use support::{mins, secs};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A spec that passes validation, to be broken one field at a time.
fn spec(strategy: Strategy) -> Spec {
    Spec::new("web", "v2", strategy)
}

fn blue_green() -> Spec {
    spec(Strategy::BlueGreen(BlueGreen::default()))
}

fn canary(steps: &[u32]) -> Spec {
    let steps = steps.iter().map(|&percent| ShiftStep { percent, bake: mins(5) }).collect();
    spec(Strategy::Canary(Canary { steps, ..Canary::default() }))
}

fn rolling(r: Rolling) -> Spec {
    let mut s = spec(Strategy::Rolling(r));
    s.pools = vec!["web".into()];
    s
}

fn replace(batch: usize, max_surge: Option<BatchSize>, max_unavailable: Option<BatchSize>) -> Rolling {
    Rolling { mode: RollingMode::Replace, max_surge, max_unavailable, ..Rolling::in_place(batch) }
}

fn http_analysis(url: &str, min_success_percent: f64) -> AnalysisSpec {
    AnalysisSpec::HttpSuccessRate(HttpSuccessRateSpec {
        window: mins(1),
        requests_per_check: 5,
        min_requests: 10,
        timeout: secs(2),
        ..HttpSuccessRateSpec::new(url, min_success_percent)
    })
}

/// `spec` changed by `f`.
fn with(mut spec: Spec, f: impl FnOnce(&mut Spec)) -> Spec {
    f(&mut spec);
    spec
}

/// Checks that `err` is an `Error::Invalid` naming `field`, and that its message is one
/// readable line that names the field and gives a reason.
fn check_invalid(err: &Error, field: &str) -> Result<(), String> {
    if !matches!(err, Error::Invalid { .. }) {
        return Err(format!("expected Error::Invalid for {field}, got {err:?}"));
    }
    if err.field() != Some(field) {
        return Err(format!("expected field {field:?}, got {:?} ({err})", err.field()));
    }
    check_readable(err, field)
}

/// The Display of `err` is one line, names `field`, gives a reason, and shows no Rust debug noise.
fn check_readable(err: &Error, field: &str) -> Result<(), String> {
    let message = err.to_string();
    let prefix = format!("invalid {field}: ");
    let reason = message.strip_prefix(&prefix).ok_or_else(|| format!("{message:?} does not start with {prefix:?}"))?;
    if reason.trim().len() < 5 {
        return Err(format!("{message:?} gives no reason"));
    }
    if message.contains('\n') || message.len() > 600 {
        return Err(format!("{message:?} is not one short line"));
    }
    for noise in ["Some(", "None", "Duration", "secs:", "nanos:", "Count(", "Percent("] {
        if message.contains(noise) {
            return Err(format!("{message:?} shows Rust debug output ({noise})"));
        }
    }
    Ok(())
}

/// What deploying on backends that must not be called did: the deploy's result, or the
/// message of the panic a backend call caused.
async fn deploy_on_untouchable_backends(spec: Spec) -> Result<bluegreen_core::Result<Outcome>, String> {
    // No expectations at all: mockall panics on any call, `name()` and `capabilities()` included.
    let executor =
        Executor::builder(Arc::new(MockRouter::new()), Arc::new(MockFleet::new()), Arc::new(MockHealthProbe::new()))
            .build();
    match tokio::spawn(async move { executor.deploy(&spec).await }).await {
        Ok(result) => Ok(result),
        Err(join) if join.is_panic() => {
            let panic = join.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("a backend was called: {message}"))
        }
        Err(join) => Err(format!("the deploy task was cancelled: {join}")),
    }
}

// ---------------------------------------------------------------------------------------------
// a. Pure spec errors: refused before any backend call
// ---------------------------------------------------------------------------------------------

/// Where a case must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// By `Spec::from_json` (the JSON cannot be a spec).
    Parse,
    /// By `Spec::validate`, and so by `Executor::deploy` before any backend call.
    Validate,
}

enum Input {
    Json(&'static str),
    Spec(Box<Spec>),
}

struct Case {
    name: &'static str,
    input: Input,
    stage: Stage,
    field: &'static str,
}

fn json(name: &'static str, text: &'static str, stage: Stage, field: &'static str) -> Case {
    Case { name, input: Input::Json(text), stage, field }
}

fn built(name: &'static str, spec: Spec, field: &'static str) -> Case {
    Case { name, input: Input::Spec(Box::new(spec)), stage: Stage::Validate, field }
}

fn pure_cases() -> Vec<Case> {
    use Stage::{Parse, Validate};
    let day = Duration::from_secs(24 * 3600);
    vec![
        // Traffic steps.
        built("canary steps decrease", canary(&[20, 10]), "strategy.steps[1].percent"),
        built("canary steps repeat", canary(&[10, 50, 50]), "strategy.steps[2].percent"),
        json(
            "canary step of 0%",
            r#"{"service":"web","version":"v2","strategy":{"kind":"canary","steps":[{"percent":0,"bake":"5m"}]}}"#,
            Validate,
            "strategy.steps[0].percent",
        ),
        built("canary step above 100%", canary(&[10, 101]), "strategy.steps[1].percent"),
        built("linear 0%", spec(Strategy::Linear(Linear { percent: 0, interval: mins(1) })), "strategy.percent"),
        built("linear 101%", spec(Strategy::Linear(Linear { percent: 101, interval: mins(1) })), "strategy.percent"),
        built(
            "canary with both steps and a preset",
            with(canary(&[10]), |s| {
                if let Strategy::Canary(c) = &mut s.strategy {
                    c.preset = Some(Preset::Canary10Percent5Minutes);
                }
            }),
            "strategy.steps",
        ),
        json(
            "canary with neither steps nor a preset",
            r#"{"service":"web","version":"v2","strategy":{"kind":"canary","bake":"5m"}}"#,
            Validate,
            "strategy.steps",
        ),
        built(
            "canary step bakes two days",
            spec(Strategy::Canary(Canary {
                steps: vec![ShiftStep { percent: 10, bake: 2 * day }],
                ..Canary::default()
            })),
            "strategy.steps[0].bake",
        ),
        built(
            "blue-green bakes two days",
            spec(Strategy::BlueGreen(BlueGreen { bake: 2 * day, ..BlueGreen::default() })),
            "strategy.bake",
        ),
        built(
            "blue-green keeps the old pool 25 hours",
            spec(Strategy::BlueGreen(BlueGreen {
                keep_old_for: Some(day + Duration::from_secs(3600)),
                ..BlueGreen::default()
            })),
            "strategy.keep_old_for",
        ),
        // Malformed JSON.
        json(
            "unknown top-level field",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},"servce":"x"}"#,
            Parse,
            "servce",
        ),
        json(
            "unknown field in a section",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},"health":{"intervall":"5s"}}"#,
            Parse,
            "health.intervall",
        ),
        json(
            "unknown strategy kind",
            r#"{"service":"web","version":"v2","strategy":{"kind":"teleport"}}"#,
            Parse,
            "strategy.kind",
        ),
        json(
            "negative duration",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},"health":{"interval":"-5s"}}"#,
            Parse,
            "health.interval",
        ),
        json(
            "negative hook timeout",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},
                "hooks":[{"point":"after_switch","command":"true","timeout":"-1s"}]}"#,
            Parse,
            "hooks[0].timeout",
        ),
        json(
            "negative rollback ramp",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},
                "rollback":{"pace":{"ramp":{"percent":-10,"interval":"1m"}}}}"#,
            Parse,
            "rollback.pace.ramp.percent",
        ),
        json(
            "unknown hook point",
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},
                "hooks":[{"point":"whenever","command":"true"}]}"#,
            Parse,
            "hooks[0].point",
        ),
        // Health.
        built(
            "healthy_threshold 0",
            with(blue_green(), |s| s.health.healthy_threshold = 0),
            "health.healthy_threshold",
        ),
        built(
            "unhealthy_threshold 0",
            with(blue_green(), |s| s.health.unhealthy_threshold = 0),
            "health.unhealthy_threshold",
        ),
        built("health interval 0", with(blue_green(), |s| s.health.interval = Duration::ZERO), "health.interval"),
        built(
            "health timeout longer than the interval",
            with(blue_green(), |s| {
                s.health.interval = secs(5);
                s.health.timeout = secs(10);
            }),
            "health.timeout",
        ),
        built(
            "deadline shorter than the fastest pass",
            // 3 passes 5 s apart and 10 s minimum healthy time: 10 s at best.
            with(blue_green(), |s| s.health.deadline = secs(5)),
            "health.deadline",
        ),
        built("health deadline of two days", with(blue_green(), |s| s.health.deadline = 2 * day), "health.deadline"),
        // Rolling.
        built("rolling batch 0", rolling(Rolling::in_place(0)), "strategy.batch"),
        json(
            "rolling batch 150%",
            r#"{"service":"web","version":"v2","pools":["web"],"strategy":{"kind":"rolling","batch":"150%"}}"#,
            Validate,
            "strategy.batch",
        ),
        json(
            "rolling batch 0%",
            r#"{"service":"web","version":"v2","pools":["web"],"strategy":{"kind":"rolling","batch":"0%"}}"#,
            Validate,
            "strategy.batch",
        ),
        built(
            "in-place with max_unavailable 0",
            rolling(Rolling { max_unavailable: Some(BatchSize::Count(0)), ..Rolling::in_place(2) }),
            "strategy.max_unavailable",
        ),
        built(
            "replace with max_surge 0 and max_unavailable 0",
            rolling(replace(2, Some(BatchSize::Count(0)), Some(BatchSize::Percent(0)))),
            "strategy.max_unavailable",
        ),
        built(
            "max_surge in in-place mode",
            rolling(Rolling { max_surge: Some(BatchSize::Count(1)), ..Rolling::in_place(2) }),
            "strategy.max_surge",
        ),
        built("max_surge above 100%", rolling(replace(2, Some(BatchSize::Percent(120)), None)), "strategy.max_surge"),
        built(
            "min_healthy_percent 120",
            rolling(Rolling { min_healthy_percent: Some(120), ..Rolling::in_place(2) }),
            "strategy.min_healthy_percent",
        ),
        built(
            "bake between batches of two days",
            rolling(Rolling { bake_between_batches: 2 * day, ..Rolling::in_place(2) }),
            "strategy.bake_between_batches",
        ),
        // Retry.
        built("retry max_attempts 0", with(blue_green(), |s| s.retry.max_attempts = 0), "retry.max_attempts"),
        built("retry multiplier 0.5", with(blue_green(), |s| s.retry.multiplier = 0.5), "retry.multiplier"),
        built("retry multiplier NaN", with(blue_green(), |s| s.retry.multiplier = f64::NAN), "retry.multiplier"),
        built(
            "retry initial backoff above the maximum",
            with(blue_green(), |s| {
                s.retry.initial_backoff = secs(20);
                s.retry.max_backoff = secs(10);
            }),
            "retry.initial_backoff",
        ),
        // Names and pools.
        built("empty service", with(blue_green(), |s| s.service = String::new()), "service"),
        built("blank service", with(blue_green(), |s| s.service = "  ".into()), "service"),
        built("empty version", Spec::new("web", "", Strategy::BlueGreen(BlueGreen::default())), "version"),
        built("two identical pools", blue_green().with_pools("blue", "blue"), "pools[1]"),
        built("one pool for a canary", with(canary(&[10]), |s| s.pools = vec!["blue".into()]), "pools"),
        built("three pools", with(blue_green(), |s| s.pools = vec!["a".into(), "b".into(), "c".into()]), "pools"),
        built("empty pool name", blue_green().with_pools("", "green"), "pools[0]"),
        built("zero replicas", blue_green().with_replicas(0), "replicas"),
        // Drain and rollback.
        built("drain timeout of two days", with(blue_green(), |s| s.drain.timeout = 2 * day), "drain.timeout"),
        built(
            "rollback ramp 0%",
            blue_green().with_rollback(RollbackPolicy {
                pace: RollbackPace::Ramp { percent: 0, interval: mins(1) },
                ..RollbackPolicy::default()
            }),
            "rollback.pace.ramp.percent",
        ),
        // Hooks and analyses.
        built(
            "hook with an empty command",
            blue_green().with_command_hook(HookPoint::AfterSwitch, " ", mins(1)),
            "hooks[0].command",
        ),
        built(
            "hook with a zero timeout",
            blue_green().with_command_hook(HookPoint::BeforeTraffic, "true", mins(1)).with_command_hook(
                HookPoint::AfterSwitch,
                "true",
                Duration::ZERO,
            ),
            "hooks[1].timeout",
        ),
        built(
            "analysis with a non-http URL",
            blue_green().with_analysis(http_analysis("ftp://example.com/health", 99.0)),
            "analyses[0].url",
        ),
        built(
            "analysis with min_success_percent 150",
            blue_green().with_analysis(http_analysis("https://example.com/", 150.0)),
            "analyses[0].min_success_percent",
        ),
        built(
            "analysis with a zero window",
            blue_green().with_analysis(AnalysisSpec::HttpSuccessRate(HttpSuccessRateSpec {
                window: Duration::ZERO,
                ..HttpSuccessRateSpec::new("http://example.com/", 99.0)
            })),
            "analyses[0].window",
        ),
    ]
}

/// Runs one case; returns what is wrong with how it was refused.
async fn run_pure_case(case: Case) -> Result<(), String> {
    let spec = match case.input {
        Input::Json(text) => match (Spec::from_json(text), case.stage) {
            (Err(err), Stage::Parse) => return check_invalid(&err, case.field),
            (Err(err), Stage::Validate) => return Err(format!("from_json refused it, validate should have: {err}")),
            (Ok(spec), Stage::Parse) => return Err(format!("from_json accepted it: {spec:?}")),
            (Ok(spec), Stage::Validate) => spec,
        },
        Input::Spec(spec) => *spec,
    };
    let err = spec.validate().err().ok_or("validate accepted it")?;
    check_invalid(&err, case.field).map_err(|e| format!("validate: {e}"))?;
    match deploy_on_untouchable_backends(spec).await? {
        Ok(outcome) => Err(format!("deploy ran: {outcome:?}")),
        Err(err) => check_invalid(&err, case.field).map_err(|e| format!("deploy: {e}")),
    }
}

#[tokio::test]
async fn every_invalid_spec_is_refused_with_its_field_and_no_backend_call() {
    let cases = pure_cases();
    assert!(cases.len() >= 20, "the contract covers at least 20 invalid specs, has {}", cases.len());
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        assert!(names.insert(case.name), "duplicate case name {:?}", case.name);
        let name = case.name;
        if let Err(problem) = run_pure_case(case).await {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The harness itself: a valid spec does reach the backends, so the panic of an unexpected
/// mock call is caught and reported (the test above would notice a call).
#[tokio::test]
async fn the_untouchable_backends_notice_a_call() {
    let result = deploy_on_untouchable_backends(blue_green()).await;
    let message = result.expect_err("a valid spec must call the router");
    assert!(message.contains("a backend was called"), "{message}");
    assert!(message.contains("MockRouter"), "the first call reads the router: {message}");
}

#[test]
fn a_valid_spec_of_each_kind_passes_validation() {
    // The cases above each break one field of these: they must be valid to begin with.
    for spec in [blue_green(), canary(&[10, 50]), rolling(Rolling::in_place(2)), rolling(replace(2, None, None))] {
        spec.validate().unwrap();
    }
    spec(Strategy::Canary(Canary { preset: Some(Preset::AllAtOnce), ..Canary::default() })).validate().unwrap();
}

/// Errors inside the strategy are refused, name at least the strategy, and quote the value at
/// fault so that a reader can find it.
#[test]
fn malformed_strategy_fields_are_refused_naming_the_strategy_and_the_value() {
    let cases = [
        (r#"{"service":"web","version":"v2","strategy":{"kind":"canary","preset":"Canary99"}}"#, "Canary99"),
        (
            r#"{"service":"web","version":"v2","strategy":{"kind":"canary","steps":[{"percent":10,"bake":"-5s"}]}}"#,
            "-5s",
        ),
        (r#"{"service":"web","version":"v2","strategy":{"kind":"canary","stepz":[]}}"#, "stepz"),
        (r#"{"service":"web","version":"v2","strategy":{"kind":"rolling","batch":"lots"}}"#, "a count"),
        (r#"{"service":"web","version":"v2","strategy":{"kind":"linear","percent":-10,"interval":"1m"}}"#, "-10"),
    ];
    for (text, quoted) in cases {
        let err = Spec::from_json(text).expect_err(text);
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
        let field = err.field().unwrap();
        assert!(field.starts_with("strategy"), "{text}: field {field:?}");
        assert!(err.to_string().contains(quoted), "{text}: {err} should quote {quoted:?}");
    }
}

#[test]
fn malformed_strategy_fields_name_the_exact_field() {
    let cases = [
        (r#"{"service":"web","version":"v2","strategy":{"kind":"canary","preset":"Canary99"}}"#, "strategy.preset"),
        (
            r#"{"service":"web","version":"v2","strategy":{"kind":"canary","steps":[{"percent":10,"bake":"-5s"}]}}"#,
            "strategy.steps[0].bake",
        ),
        (r#"{"service":"web","version":"v2","strategy":{"kind":"canary","stepz":[]}}"#, "strategy.stepz"),
        (r#"{"service":"web","version":"v2","strategy":{"kind":"rolling","batch":"lots"}}"#, "strategy.batch"),
        (
            r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"},
                "analyses":[{"kind":"http_success_rate","url":"http://x/","min_success_percent":"high"}]}"#,
            "analyses[0].min_success_percent",
        ),
    ];
    let mut failures = Vec::new();
    for (text, field) in cases {
        let err = Spec::from_json(text).expect_err(text);
        if let Err(problem) = check_invalid(&err, field) {
            failures.push(problem);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_required_field_is_refused_and_named_in_the_message() {
    let err = Spec::from_json(r#"{"service":"web","version":"v2"}"#).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("missing field `strategy`"), "{err}");
}

#[test]
fn a_syntax_error_names_the_spec_and_the_position() {
    let err = Spec::from_json(r#"{"service":"web","version":"v2","strategy":{"kind":"blue_green"}"#).unwrap_err();
    assert_eq!(err.field(), Some("spec"), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// b. Errors that need the observed state: refused by Plan::compile, reads only
// ---------------------------------------------------------------------------------------------

/// What a refusal must look like.
enum Expect {
    /// `Error::Invalid` naming this field, with these words in the message.
    Invalid(&'static str, &'static [&'static str]),
    /// `Error::Drift` with these words in the message.
    Drift(&'static [&'static str]),
}

struct StateCase {
    name: &'static str,
    sim: Sim,
    spec: Spec,
    expect: Expect,
}

fn state_cases() -> Vec<StateCase> {
    let two_pools = || Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1");
    let web = |n| Sim::builder().pool("web", n, "v1");
    vec![
        StateCase {
            name: "batch larger than the pool",
            sim: web(4).build(),
            spec: rolling(Rolling::in_place(5)),
            expect: Expect::Invalid("strategy.batch", &["5", "4 target"]),
        },
        StateCase {
            name: "an in-place batch as large as the pool",
            sim: web(4).build(),
            spec: rolling(Rolling { batch: BatchSize::Percent(100), ..Rolling::in_place(1) }),
            expect: Expect::Invalid("strategy.batch", &["all 4 target"]),
        },
        StateCase {
            name: "unknown pool",
            sim: two_pools().build(),
            spec: blue_green().with_pools("blue", "purple"),
            expect: Expect::Invalid("pools[1]", &["\"purple\"", "blue", "green"]),
        },
        StateCase {
            name: "unknown pool for a rolling deploy",
            sim: web(4).build(),
            spec: with(rolling(Rolling::in_place(1)), |s| s.pools = vec!["api".into()]),
            expect: Expect::Invalid("pools", &["\"api\"", "web 100%"]),
        },
        StateCase {
            name: "a split left half-way by an earlier deploy",
            sim: Sim::builder()
                .pool("blue", 4, "v1")
                .pool("green", 4, "v2")
                .split(Split::new([("blue", 50), ("green", 50)]).unwrap())
                .build(),
            spec: canary(&[10, 50]),
            expect: Expect::Drift(&["blue 50% / green 50%", "did not finish"]),
        },
        StateCase {
            name: "leftover targets in the idle pool",
            sim: Sim::builder().pool("blue", 4, "v1").pool("green", 2, "v2").build(),
            spec: blue_green(),
            expect: Expect::Drift(&["pool green", "2 target", "green-005", "green-006"]),
        },
        StateCase {
            name: "no pool of the spec carries the traffic",
            sim: Sim::builder().pool("red", 4, "v1").pool("blue", 0, "v1").pool("green", 0, "v1").build(),
            spec: blue_green(),
            expect: Expect::Invalid("pools", &["red 100%"]),
        },
        StateCase {
            name: "the live pool has no targets",
            sim: Sim::builder()
                .pool("blue", 0, "v1")
                .pool("green", 0, "v1")
                .split(Split::new([("blue", 100)]).unwrap())
                .build(),
            spec: blue_green(),
            expect: Expect::Invalid("pools", &["blue", "no targets"]),
        },
        StateCase {
            name: "a min_healthy_percent the batch size breaks",
            sim: web(10).build(),
            // Batches of 3 leave 7 of 10 serving; 80% asks for 8.
            spec: rolling(Rolling { min_healthy_percent: Some(80), ..Rolling::in_place(3) }),
            expect: Expect::Invalid("strategy.min_healthy_percent", &["7 of 10", "8"]),
        },
        StateCase {
            name: "a max_unavailable smaller than the in-place batch",
            sim: web(10).build(),
            spec: rolling(Rolling { max_unavailable: Some(BatchSize::Count(2)), ..Rolling::in_place(3) }),
            expect: Expect::Invalid("strategy.max_unavailable", &["3", "2"]),
        },
        StateCase {
            name: "replace with less surge than batch and no unavailability allowed",
            sim: web(10).build(),
            spec: rolling(replace(2, Some(BatchSize::Count(1)), None)),
            expect: Expect::Invalid("strategy.max_unavailable", &["1 target", "allows 0"]),
        },
        StateCase {
            name: "a weight the router cannot express",
            sim: two_pools().capabilities(Capabilities::load_balancer().with_weight_granularity(10)).build(),
            spec: canary(&[5, 50]),
            expect: Expect::Invalid("strategy.steps[0].percent", &["5%", "10%"]),
        },
        StateCase {
            name: "a canary on a router without weights",
            sim: two_pools().capabilities(Capabilities::load_balancer().with_weighted_split(false)).build(),
            spec: canary(&[10]),
            expect: Expect::Invalid("strategy.steps[0].percent", &["10%", "weight"]),
        },
    ]
}

/// Runs one case through `Executor::plan` and `Executor::deploy`; returns what is wrong.
async fn run_state_case(case: &StateCase) -> Result<(), String> {
    let sim = &case.sim;
    let before = sim.snapshot();
    let (builder, _log) = support::executor(sim);
    let executor = builder.build();
    // The spec itself is fine: only the observed state makes it impossible.
    case.spec.validate().map_err(|e| format!("the spec should be valid on its own: {e}"))?;
    let planned = executor.plan(&case.spec).await.err().ok_or("plan accepted it")?;
    let deployed = match executor.deploy(&case.spec).await {
        Ok(outcome) => return Err(format!("deploy ran: {outcome:?}")),
        Err(err) => err,
    };
    for (call, err) in [("plan", &planned), ("deploy", &deployed)] {
        let message = err.to_string();
        let words = match &case.expect {
            Expect::Invalid(field, words) => {
                check_invalid(err, field).map_err(|e| format!("{call}: {e}"))?;
                words
            }
            Expect::Drift(words) => {
                if !matches!(err, Error::Drift { .. }) {
                    return Err(format!("{call}: expected Error::Drift, got {err:?}"));
                }
                words
            }
        };
        for word in *words {
            if !message.contains(word) {
                return Err(format!("{call}: {message:?} should mention {word:?}"));
            }
        }
    }
    if sim.writes() != 0 {
        return Err(format!("{} backend writes: {:?}", sim.writes(), sim.calls()));
    }
    if sim.snapshot() != before {
        return Err("the backends changed".to_owned());
    }
    if sim.calls().is_empty() {
        return Err("the executor refused without reading the backends; the case tests nothing".to_owned());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn specs_impossible_on_the_observed_backends_are_refused_without_a_write() {
    let cases = state_cases();
    let total = cases.len();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(problem) = run_state_case(case).await {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn compile_refusals_on_a_hand_built_snapshot_match_the_executor() {
    // Plan::compile alone (no executor) refuses the same specs for the same reasons.
    for case in state_cases() {
        let err = bluegreen_core::Plan::compile(&case.spec, &case.sim.snapshot(), &capabilities_of(&case.sim))
            .expect_err(case.name);
        match case.expect {
            Expect::Invalid(field, _) => check_invalid(&err, field).unwrap_or_else(|e| panic!("{}: {e}", case.name)),
            Expect::Drift(_) => assert!(matches!(err, Error::Drift { .. }), "{}: {err:?}", case.name),
        }
        assert_eq!(case.sim.writes(), 0);
    }
}

fn capabilities_of(sim: &Sim) -> Capabilities {
    sim.router().capabilities()
}

#[tokio::test(start_paused = true)]
async fn a_linear_percent_the_router_cannot_express_names_strategy_percent() {
    let sim = Sim::builder()
        .pool("blue", 4, "v1")
        .pool("green", 0, "v1")
        .capabilities(Capabilities::load_balancer().with_weight_granularity(10))
        .build();
    let (builder, _log) = support::executor(&sim);
    let err =
        builder.build().deploy(&spec(Strategy::Linear(Linear { percent: 25, interval: mins(1) }))).await.unwrap_err();
    check_invalid(&err, "strategy.percent").unwrap();
    assert_eq!(sim.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_preset_the_router_cannot_express_names_strategy_preset() {
    let sim = Sim::builder()
        .pool("blue", 4, "v1")
        .pool("green", 0, "v1")
        .capabilities(Capabilities::load_balancer().with_weight_granularity(10))
        .build();
    let (builder, _log) = support::executor(&sim);
    let preset = Canary { preset: Some(Preset::EcsCanary5Percent10Minutes), ..Canary::default() };
    let err = builder.build().deploy(&spec(Strategy::Canary(preset))).await.unwrap_err();
    check_invalid(&err, "strategy.preset").unwrap();
    assert!(err.to_string().contains("5%"), "{err}");
    assert_eq!(sim.writes(), 0);
}
