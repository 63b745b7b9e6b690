//! The strategies compile to the right plans: `Plan::compile` over hand-built snapshots, no
//! executor and no backend. Also the dry run (`Plan::timeline`) and the serde forms.

use std::collections::BTreeSet;
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::{
    AnalysisSpec, BatchSize, BlueGreen, Canary, Capabilities, HookPoint, HttpSuccessRateSpec, Linear,
    OldUnhealthyPolicy, Plan, PoolName, Preset, RollbackPace, Rolling, RollingMode, ShiftStep, Snapshot, Spec, Split,
    Step, Strategy, Target, TargetId, TargetSet, Timeline,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn pool(name: &str) -> PoolName {
    PoolName::from(name)
}

fn target(id: &str, zone: &str, version: &str) -> Target {
    Target {
        id: TargetId::from(id),
        address: format!("10.0.0.{}:8080", id.len()),
        zone: Some(zone.to_owned()),
        version: version.into(),
        tag: None,
    }
}

/// `count` targets of `version` named `{prefix}-1…`, zones taken round-robin from `zones`.
fn targets(prefix: &str, count: usize, zones: &[&str], version: &str) -> Vec<Target> {
    (0..count).map(|i| target(&format!("{prefix}-{}", i + 1), zones[i % zones.len()], version)).collect()
}

/// A snapshot with these pools, all traffic on `live`.
fn snapshot(live: &str, pools: Vec<(&str, Vec<Target>)>) -> Snapshot {
    Snapshot {
        split: Split::all_to(&pool(live)),
        pools: pools.into_iter().map(|(p, t)| (pool(p), t)).collect(),
        ..Snapshot::default()
    }
}

/// Blue serves ten targets of v1 over zones a and b; green is empty.
fn blue_green_snapshot() -> Snapshot {
    snapshot("blue", vec![("blue", targets("blue", 10, &["a", "b"], "v1")), ("green", Vec::new())])
}

/// One pool `web` of `count` targets of v1 over zones a, b, c.
fn web(count: usize) -> Snapshot {
    snapshot("web", vec![("web", targets("web", count, &["a", "b", "c"], "v1"))])
}

fn rolling_spec(rolling: Rolling) -> Spec {
    let mut spec = Spec::new("web", "v2", Strategy::Rolling(rolling));
    spec.pools = vec![pool("web")];
    spec
}

fn replace(batch: usize, max_surge: Option<usize>, max_unavailable: Option<usize>) -> Rolling {
    Rolling {
        mode: RollingMode::Replace,
        max_surge: max_surge.map(BatchSize::Count),
        max_unavailable: max_unavailable.map(BatchSize::Count),
        ..Rolling::in_place(batch)
    }
}

fn compile(spec: &Spec, before: &Snapshot) -> Plan {
    Plan::compile(spec, before, &Capabilities::load_balancer()).unwrap_or_else(|e| panic!("{e}"))
}

fn ids(set: &TargetSet) -> String {
    match set {
        TargetSet::Ids(ids) => ids.iter().map(TargetId::as_str).collect::<Vec<_>>().join(","),
        TargetSet::Tagged(tag) => format!("#{tag}"),
        TargetSet::TagPrefix(prefix) => format!("#{prefix}*"),
        other => panic!("unexpected target set {other:?}"),
    }
}

fn d(duration: &Duration) -> String {
    humantime::format_duration(*duration).to_string()
}

/// A step in a compact form that the tests compare as text.
fn short(step: &Step) -> String {
    match step {
        Step::Hook { point } => format!("hook {point}"),
        Step::Provision { pool, version, count, zones, tag } => {
            format!("provision {count} {version} in {pool} #{tag} zones [{}]", zones.join(","))
        }
        Step::AwaitHealthy { targets } => format!("healthy {}", ids(targets)),
        Step::Attach { pool, targets } => format!("attach {} to {pool}", ids(targets)),
        Step::TestTraffic { duration, targets } => format!("test {} for {}", ids(targets), d(duration)),
        Step::ShiftTraffic { split } => format!("shift {split}"),
        Step::Bake { duration, watch } => format!("bake {} watching {}", d(duration), ids(watch)),
        Step::Pause { duration: Some(t), .. } => format!("pause {}", d(t)),
        Step::Pause { duration: None, .. } => "pause until resumed".to_owned(),
        Step::Drain { pool, targets, timeout } => format!("drain {} from {pool} within {}", ids(targets), d(timeout)),
        Step::Detach { pool, targets } => format!("detach {} from {pool}", ids(targets)),
        Step::Retire { targets } => format!("retire {}", ids(targets)),
        Step::UpdateBatch { pool, batch, of, targets, version, drain_timeout } => format!(
            "update {batch}/{of} in {pool} to {version} within {}: {}",
            d(drain_timeout),
            targets.iter().map(TargetId::as_str).collect::<Vec<_>>().join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn shorts(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(short).collect()
}

/// The traffic a shifting plan moves: `(percent on the candidate, bake after it)` per shift.
fn traffic(plan: &Plan) -> Vec<(u32, Duration)> {
    let mut out: Vec<(u32, Duration)> = Vec::new();
    for step in &plan.steps {
        match step {
            Step::ShiftTraffic { split } => out.push((split.weight(&plan.candidate_pool), Duration::ZERO)),
            Step::Bake { duration, .. } => out.last_mut().expect("a bake follows a shift").1 = *duration,
            _ => {}
        }
    }
    out
}

fn update_batches(plan: &Plan) -> Vec<Vec<TargetId>> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::UpdateBatch { targets, .. } => Some(targets.clone()),
            _ => None,
        })
        .collect()
}

fn zone_of<'a>(before: &'a Snapshot, id: &TargetId) -> &'a str {
    before.pools.values().flatten().find(|t| t.id == *id).and_then(|t| t.zone.as_deref()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Blue-green
// ---------------------------------------------------------------------------------------------

#[test]
fn blue_green_provisions_tests_switches_bakes_keeps_then_retires_the_old_pool() {
    let bg = BlueGreen { test_for: mins(2), bake: mins(10), keep_old_for: Some(mins(30)), approve: None };
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(bg));
    let plan = compile(&spec, &blue_green_snapshot());

    let old = (1..=10).map(|i| format!("blue-{i}")).collect::<Vec<_>>().join(",");
    let expected = vec![
        "hook before_provision".to_owned(),
        "provision 10 v2 in green #web/v2/green zones [a,b]".to_owned(),
        "healthy #web/v2/green".to_owned(),
        "attach #web/v2/green to green".to_owned(),
        "test #web/v2/green for 2m".to_owned(),
        "hook after_test_traffic".to_owned(),
        "hook before_traffic".to_owned(),
        "shift blue 0% / green 100%".to_owned(),
        "hook after_switch".to_owned(),
        "bake 10m watching #web/v2/green".to_owned(),
        "pause 30m".to_owned(),
        format!("drain {old} from blue within 30s"),
        format!("detach {old} from blue"),
        format!("retire {old}"),
        "hook after_deploy".to_owned(),
    ];
    assert_eq!(shorts(&plan), expected);
    let Some(Step::Pause { reason, .. }) = plan.steps.iter().find(|s| matches!(s, Step::Pause { .. })) else {
        unreachable!()
    };
    assert!(reason.contains("blue"), "the pause says which pool it keeps: {reason}");

    assert_eq!(plan.stable_pool, pool("blue"));
    assert_eq!(plan.candidate_pool, pool("green"));
    assert!(plan.shifts_traffic());
    assert_eq!(plan.from_version, Some("v1".into()));
    assert_eq!(plan.to_version().as_str(), "v2");
    assert_eq!(plan.capacity_floor, 10);
    assert_eq!(plan.before, blue_green_snapshot());
}

#[test]
fn blue_green_without_test_bake_or_keep_has_no_such_steps() {
    let plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())), &blue_green_snapshot());
    assert!(
        !plan.steps.iter().any(|s| matches!(s, Step::TestTraffic { .. } | Step::Bake { .. } | Step::Pause { .. })),
        "{:#?}",
        shorts(&plan)
    );
    assert_eq!(traffic(&plan), vec![(100, Duration::ZERO)]);
    // The old targets are drained only after traffic left them (invariant 3's plan side).
    let shift = plan.steps.iter().position(|s| matches!(s, Step::ShiftTraffic { .. })).unwrap();
    let drain = plan.steps.iter().position(|s| matches!(s, Step::Drain { .. })).unwrap();
    let retire = plan.steps.iter().position(|s| matches!(s, Step::Retire { .. })).unwrap();
    assert!(shift < drain && drain < retire);
}

#[test]
fn blue_green_replicas_and_zones_override_the_live_pool() {
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))
        .with_replicas(4)
        .with_zones(["eu-1a", "eu-1b", "eu-1c"]);
    let plan = compile(&spec, &blue_green_snapshot());
    let provision = plan.steps.iter().find(|s| matches!(s, Step::Provision { .. })).unwrap();
    assert_eq!(short(provision), "provision 4 v2 in green #web/v2/green zones [eu-1a,eu-1b,eu-1c]");
    assert_eq!(plan.capacity_floor, 4, "never more than the new pool can serve");
}

#[test]
fn the_pools_may_be_given_in_either_order_and_the_live_one_is_found_by_the_split() {
    let before = snapshot("green", vec![("blue", Vec::new()), ("green", targets("green", 3, &["a"], "v1"))]);
    let plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())), &before);
    assert_eq!(plan.stable_pool, pool("green"));
    assert_eq!(plan.candidate_pool, pool("blue"));
    assert_eq!(traffic(&plan), vec![(100, Duration::ZERO)]);
    assert!(shorts(&plan).contains(&"shift blue 100% / green 0%".to_owned()), "{:#?}", shorts(&plan));
}

#[test]
fn blue_green_compiles_for_a_router_without_weights_and_canary_does_not() {
    let unweighted = Capabilities::load_balancer().with_weighted_split(false);
    let bg = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    Plan::compile(&bg, &blue_green_snapshot(), &unweighted).unwrap();
    let canary =
        Spec::new("web", "v2", Strategy::Canary(Canary { preset: Some(Preset::AllAtOnce), ..Canary::default() }));
    Plan::compile(&canary, &blue_green_snapshot(), &unweighted).unwrap();
    let canary = Spec::new(
        "web",
        "v2",
        Strategy::Canary(Canary { preset: Some(Preset::Canary10Percent5Minutes), ..Canary::default() }),
    );
    let err = Plan::compile(&canary, &blue_green_snapshot(), &unweighted).unwrap_err();
    assert!(err.field().is_some_and(|f| f.starts_with("strategy")), "{err}");
}

#[test]
fn hook_points_come_in_the_documented_order() {
    let bg = BlueGreen { test_for: mins(1), ..BlueGreen::default() };
    let plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(bg)), &blue_green_snapshot());
    let points: Vec<HookPoint> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Hook { point } => Some(*point),
            _ => None,
        })
        .collect();
    assert_eq!(points, HookPoint::ALL.to_vec());
}

// ---------------------------------------------------------------------------------------------
// Canary, linear and the presets
// ---------------------------------------------------------------------------------------------

/// `(percent, bake in minutes)` pairs as steps.
fn steps_of(pairs: &[(u32, u64)]) -> Vec<(u32, Duration)> {
    pairs.iter().map(|&(p, m)| (p, mins(m))).collect()
}

fn linear_every(minutes: u64) -> Vec<(u32, Duration)> {
    let mut steps: Vec<(u32, Duration)> = (1..=9).map(|i| (i * 10, mins(minutes))).collect();
    steps.push((100, Duration::ZERO));
    steps
}

/// A preset, its name in a spec file, and its `(percent, bake)` steps.
type DocumentedPreset = (Preset, &'static str, Vec<(u32, Duration)>);

/// Every preset, with the traffic steps AWS CodeDeploy / ECS document for it.
fn documented_presets() -> Vec<DocumentedPreset> {
    vec![
        (Preset::AllAtOnce, "AllAtOnce", steps_of(&[(100, 0)])),
        (Preset::Canary10Percent5Minutes, "Canary10Percent5Minutes", steps_of(&[(10, 5), (100, 0)])),
        (Preset::Canary10Percent15Minutes, "Canary10Percent15Minutes", steps_of(&[(10, 15), (100, 0)])),
        (Preset::Canary10Percent30Minutes, "Canary10Percent30Minutes", steps_of(&[(10, 30), (100, 0)])),
        (Preset::Linear10PercentEvery1Minute, "Linear10PercentEvery1Minute", linear_every(1)),
        (Preset::Linear10PercentEvery3Minutes, "Linear10PercentEvery3Minutes", linear_every(3)),
        (Preset::EcsLinear10PercentEvery6Minutes, "EcsLinear10PercentEvery6Minutes", linear_every(6)),
        (Preset::EcsCanary5Percent10Minutes, "EcsCanary5Percent10Minutes", steps_of(&[(5, 10), (100, 0)])),
    ]
}

fn preset_spec(preset: Preset, bake: Duration) -> Spec {
    Spec::new("web", "v2", Strategy::Canary(Canary { preset: Some(preset), bake, ..Canary::default() }))
}

#[test]
fn every_preset_expands_to_its_documented_steps() {
    for (preset, name, expected) in documented_presets() {
        let steps: Vec<(u32, Duration)> = preset.steps().iter().map(|s| (s.percent, s.bake)).collect();
        assert_eq!(steps, expected, "{name}: Preset::steps");

        // The name in a spec file is the variant's name.
        let text = format!(r#"{{"service":"web","version":"v2","strategy":{{"kind":"canary","preset":"{name}"}}}}"#);
        let spec = Spec::from_json(&text).unwrap();
        assert_eq!(spec, preset_spec(preset, Duration::ZERO), "{name}: from_json");

        // The compiled plan shifts and bakes exactly so, and watches the new pool while baking.
        let plan = compile(&spec, &blue_green_snapshot());
        assert_eq!(traffic(&plan), expected, "{name}: compiled");
        for step in &plan.steps {
            if let Step::Bake { watch, .. } = step {
                assert_eq!(*watch, TargetSet::Tagged("web/v2/green".into()), "{name}");
            }
        }
        let bakes: Duration = expected.iter().map(|(_, bake)| *bake).sum();
        let fastest_pass = spec.health.fastest_pass();
        assert_eq!(plan.timeline().expected, fastest_pass + bakes, "{name}: expected duration");
    }
}

#[test]
fn the_codedeploy_spelling_of_the_one_minute_linear_preset_is_accepted() {
    let text =
        r#"{"service":"web","version":"v2","strategy":{"kind":"canary","preset":"Linear10PercentEvery1Minutes"}}"#;
    let spec = Spec::from_json(text).unwrap();
    assert_eq!(spec, preset_spec(Preset::Linear10PercentEvery1Minute, Duration::ZERO));
}

#[test]
fn a_preset_with_a_final_bake_bakes_after_the_last_shift() {
    let plan = compile(&preset_spec(Preset::Canary10Percent5Minutes, mins(15)), &blue_green_snapshot());
    assert_eq!(traffic(&plan), steps_of(&[(10, 5), (100, 15)]));
}

#[test]
fn a_canary_whose_last_step_is_not_100_gets_a_final_step_with_the_canary_bake() {
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake: mins(5) }, ShiftStep { percent: 50, bake: mins(10) }],
        bake: mins(15),
        ..Canary::default()
    };
    let plan = compile(&Spec::new("web", "v2", Strategy::Canary(canary)), &blue_green_snapshot());
    assert_eq!(traffic(&plan), steps_of(&[(10, 5), (50, 10), (100, 15)]));
    let tail: Vec<String> = shorts(&plan).into_iter().skip_while(|s| !s.starts_with("shift")).collect();
    assert_eq!(
        tail[..7],
        [
            "shift blue 90% / green 10%",
            "bake 5m watching #web/v2/green",
            "shift blue 50% / green 50%",
            "bake 10m watching #web/v2/green",
            "shift blue 0% / green 100%",
            "hook after_switch",
            "bake 15m watching #web/v2/green",
        ]
    );
}

#[test]
fn a_canary_ending_at_100_gets_no_extra_step_and_keeps_the_longer_bake() {
    let steps = |last_bake| vec![ShiftStep { percent: 20, bake: mins(5) }, ShiftStep { percent: 100, bake: last_bake }];
    for (last_bake, canary_bake, expected) in [(mins(2), mins(15), mins(15)), (mins(20), mins(15), mins(20))] {
        let canary = Canary { steps: steps(last_bake), bake: canary_bake, ..Canary::default() };
        let plan = compile(&Spec::new("web", "v2", Strategy::Canary(canary)), &blue_green_snapshot());
        assert_eq!(traffic(&plan), vec![(20, mins(5)), (100, expected)]);
    }
}

#[test]
fn linear_30_percent_moves_30_60_90_then_100() {
    let linear = Linear { percent: 30, interval: mins(2) };
    let plan = compile(&Spec::new("web", "v2", Strategy::Linear(linear)), &blue_green_snapshot());
    assert_eq!(traffic(&plan), steps_of(&[(30, 2), (60, 2), (90, 2), (100, 0)]));
}

#[test]
fn linear_steps_that_do_not_divide_100_still_end_at_100_and_never_exceed_it() {
    for percent in [1, 7, 33, 50, 99, 100] {
        let plan = compile(
            &Spec::new("web", "v2", Strategy::Linear(Linear { percent, interval: mins(1) })),
            &blue_green_snapshot(),
        );
        let shifts: Vec<u32> = traffic(&plan).iter().map(|(p, _)| *p).collect();
        assert_eq!(shifts.last(), Some(&100), "{percent}%");
        assert!(shifts.windows(2).all(|w| w[0] < w[1]), "{percent}%: {shifts:?}");
        assert_eq!(shifts.len(), 100_usize.div_ceil(percent as usize), "{percent}%");
    }
}

#[test]
fn a_coarse_router_accepts_steps_on_its_grid() {
    let coarse = Capabilities::load_balancer().with_weight_granularity(10);
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake: mins(1) }, ShiftStep { percent: 50, bake: mins(1) }],
        ..Canary::default()
    };
    let plan =
        Plan::compile(&Spec::new("web", "v2", Strategy::Canary(canary)), &blue_green_snapshot(), &coarse).unwrap();
    assert_eq!(traffic(&plan), steps_of(&[(10, 1), (50, 1), (100, 0)]));
    let err = Plan::compile(
        &preset_spec(Preset::EcsCanary5Percent10Minutes, Duration::ZERO),
        &blue_green_snapshot(),
        &coarse,
    )
    .unwrap_err();
    assert!(err.to_string().contains("5%"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Rolling
// ---------------------------------------------------------------------------------------------

#[test]
fn rolling_ten_targets_two_at_a_time_is_five_batches_of_two() {
    let before = web(10);
    let plan = compile(&rolling_spec(Rolling::in_place(2)), &before);
    assert_eq!(plan.stable_pool, pool("web"));
    assert_eq!(plan.candidate_pool, pool("web"));
    assert!(!plan.shifts_traffic());
    assert_eq!(plan.batch_size, 2);
    assert_eq!(plan.capacity_floor, 8);

    let kinds = shorts(&plan);
    assert_eq!(kinds[..2], ["hook before_provision", "hook before_traffic"]);
    assert_eq!(kinds[kinds.len() - 2..], ["hook after_switch", "hook after_deploy"]);
    assert_eq!(plan.steps.len(), 9);

    let mut seen = BTreeSet::new();
    for (i, step) in plan.steps[2..7].iter().enumerate() {
        let Step::UpdateBatch { pool, batch, of, targets, version, drain_timeout } = step else {
            panic!("step {} is {step:?}", i + 2)
        };
        assert_eq!((pool.as_str(), *batch, *of, version.as_str()), ("web", i + 1, 5, "v2"));
        assert_eq!(targets.len(), 2);
        assert_eq!(*drain_timeout, secs(30));
        seen.extend(targets.iter().cloned());
    }
    let all: BTreeSet<TargetId> = before.targets(&pool("web")).iter().map(|t| t.id.clone()).collect();
    assert_eq!(seen, all, "every target updated exactly once");
}

#[test]
fn zone_balanced_batches_take_from_every_zone_in_turn() {
    // Listed zone by zone: a a a b b b c c c.
    let grouped: Vec<Target> =
        ["a", "b", "c"].iter().flat_map(|z| (1..=3).map(move |i| target(&format!("{z}{i}"), z, "v1"))).collect();
    let before = snapshot("web", vec![("web", grouped)]);

    let plan = compile(&rolling_spec(Rolling::in_place(3)), &before);
    let batches = update_batches(&plan);
    assert_eq!(batches.len(), 3);
    for batch in &batches {
        let zones: BTreeSet<&str> = batch.iter().map(|id| zone_of(&before, id)).collect();
        assert_eq!(zones, BTreeSet::from(["a", "b", "c"]), "batch {batch:?} takes one target from each zone");
    }
    let order: Vec<&str> = batches.iter().flatten().map(|id| zone_of(&before, id)).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);

    // Batches of two alternate zones too.
    let plan = compile(&rolling_spec(Rolling::in_place(2)), &before);
    for batch in update_batches(&plan) {
        let zones: BTreeSet<&str> = batch.iter().map(|id| zone_of(&before, id)).collect();
        assert_eq!(zones.len(), batch.len(), "batch {batch:?} mixes zones");
    }

    // Unbalanced: the listed order, one zone at a time.
    let plan = compile(&rolling_spec(Rolling { zone_balanced: false, ..Rolling::in_place(3) }), &before);
    let batches = update_batches(&plan);
    let first: Vec<&str> = batches[0].iter().map(TargetId::as_str).collect();
    assert_eq!(first, ["a1", "a2", "a3"]);
}

#[test]
fn zone_balancing_handles_uneven_zones() {
    let mut uneven = targets("a", 4, &["a"], "v1");
    uneven.push(target("b-1", "b", "v1"));
    let before = snapshot("web", vec![("web", uneven)]);
    let plan = compile(&rolling_spec(Rolling::in_place(2)), &before);
    let batches = update_batches(&plan);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(batches[0].iter().map(|id| zone_of(&before, id)).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(batches.iter().flatten().collect::<BTreeSet<_>>().len(), 5);
}

#[test]
fn percentage_batches_round_up() {
    for (batch, sizes) in [("20%", vec![2, 2, 2, 2, 2]), ("25%", vec![3, 3, 3, 1]), ("50%", vec![5, 5])] {
        let text = format!(
            r#"{{"service":"web","version":"v2","pools":["web"],"strategy":{{"kind":"rolling","batch":"{batch}"}}}}"#
        );
        let spec = Spec::from_json(&text).unwrap();
        let plan = compile(&spec, &web(10));
        assert_eq!(update_batches(&plan).iter().map(Vec::len).collect::<Vec<_>>(), sizes, "{batch}");
        assert_eq!(plan.batch_size, sizes[0], "{batch}");
    }
}

#[test]
fn in_place_bakes_between_batches_watch_every_updated_target() {
    let rolling = Rolling { bake_between_batches: mins(2), ..Rolling::in_place(2) };
    let before = snapshot("web", vec![("web", targets("w", 6, &["a"], "v1"))]);
    let plan = compile(&rolling_spec(rolling), &before);
    let kinds = shorts(&plan);
    assert_eq!(
        kinds[2..7],
        [
            "update 1/3 in web to v2 within 30s: w-1,w-2",
            "bake 2m watching w-1,w-2",
            "update 2/3 in web to v2 within 30s: w-3,w-4",
            "bake 2m watching w-1,w-2,w-3,w-4",
            "update 3/3 in web to v2 within 30s: w-5,w-6",
        ]
    );
    assert_eq!(kinds[7], "hook after_switch", "no bake after the last batch");
}

#[test]
fn replace_mode_surges_one_then_replaces_the_rest_of_each_batch() {
    let before = snapshot("web", vec![("web", targets("w", 4, &["a", "b"], "v1"))]);
    let plan = compile(&rolling_spec(replace(2, Some(1), Some(1))), &before);
    let batch = |n: usize, old: &str| {
        vec![
            format!("provision 1 v2 in web #web/v2/batch-{n}-surge zones [a]"),
            format!("healthy #web/v2/batch-{n}-surge"),
            format!("attach #web/v2/batch-{n}-surge to web"),
            format!("drain {old} from web within 30s"),
            format!("detach {old} from web"),
            format!("retire {old}"),
            format!("provision 1 v2 in web #web/v2/batch-{n} zones [b]"),
            format!("healthy #web/v2/batch-{n}"),
            format!("attach #web/v2/batch-{n} to web"),
        ]
    };
    let mut expected = vec!["hook before_provision".to_owned(), "hook before_traffic".to_owned()];
    expected.extend(batch(1, "w-1,w-2"));
    expected.extend(batch(2, "w-3,w-4"));
    expected.extend(["hook after_switch".to_owned(), "hook after_deploy".to_owned()]);
    assert_eq!(shorts(&plan), expected);
    assert_eq!(plan.capacity_floor, 3);
    assert_eq!(plan.batch_size, 2);
}

#[test]
fn replace_mode_by_default_starts_the_whole_batch_before_stopping_any_old_target() {
    let before = snapshot("web", vec![("web", targets("w", 4, &["a", "b"], "v1"))]);
    let plan = compile(&rolling_spec(replace(2, None, None)), &before);
    assert_eq!(
        shorts(&plan)[2..8],
        [
            "provision 2 v2 in web #web/v2/batch-1-surge zones [a,b]",
            "healthy #web/v2/batch-1-surge",
            "attach #web/v2/batch-1-surge to web",
            "drain w-1,w-2 from web within 30s",
            "detach w-1,w-2 from web",
            "retire w-1,w-2",
        ]
    );
    assert_eq!(plan.steps.iter().filter(|s| matches!(s, Step::Provision { .. })).count(), 2, "one per batch");
    assert_eq!(plan.capacity_floor, 4, "nothing goes out of service");
}

#[test]
fn replace_mode_bakes_watch_the_targets_the_batch_started() {
    let rolling = Rolling { bake_between_batches: mins(5), ..replace(2, None, None) };
    let plan = compile(&rolling_spec(rolling), &web(6));
    let mut provisioned = BTreeSet::new();
    let mut bakes = 0;
    for step in &plan.steps {
        match step {
            Step::Provision { tag, .. } => {
                provisioned.insert(tag.clone());
            }
            Step::Bake { watch, .. } => {
                bakes += 1;
                // Every target started so far is watched (as in place watches every updated one).
                assert!(!provisioned.is_empty());
                for tag in &provisioned {
                    assert!(watch.matches_tag(Some(tag)), "the bake {watch:?} misses {tag}");
                }
            }
            _ => {}
        }
    }
    assert_eq!(bakes, 2);
}

#[test]
fn capacity_floor_per_strategy() {
    let bg = || Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    let cases: Vec<(&str, Spec, Snapshot, usize)> = vec![
        ("blue-green 10 → 10", bg(), blue_green_snapshot(), 10),
        ("blue-green 10 → 4", bg().with_replicas(4), blue_green_snapshot(), 4),
        ("blue-green 10 → 12", bg().with_replicas(12), blue_green_snapshot(), 10),
        ("in place 2 of 10", rolling_spec(Rolling::in_place(2)), web(10), 8),
        (
            "in place 30% of 10",
            rolling_spec(Rolling { batch: BatchSize::Percent(30), ..Rolling::in_place(1) }),
            web(10),
            7,
        ),
        (
            "in place 2 of 10, min healthy 50%",
            rolling_spec(Rolling { min_healthy_percent: Some(50), ..Rolling::in_place(2) }),
            web(10),
            5,
        ),
        (
            "in place 2 of 10, min healthy 75%",
            rolling_spec(Rolling { min_healthy_percent: Some(75), ..Rolling::in_place(2) }),
            web(10),
            8,
        ),
        ("replace 2 of 10, surge 1, unavailable 1", rolling_spec(replace(2, Some(1), Some(1))), web(10), 9),
        ("replace 2 of 10, surge 0, unavailable 2", rolling_spec(replace(2, Some(0), Some(2))), web(10), 8),
        ("replace 2 of 10, default surge", rolling_spec(replace(2, None, None)), web(10), 10),
    ];
    for (name, spec, before, floor) in cases {
        assert_eq!(compile(&spec, &before).capacity_floor, floor, "{name}");
    }
}

#[test]
fn compiling_against_the_simulators_snapshot_uses_its_targets() {
    let sim = Sim::builder().pool("web", 6, "v1").zones(["a", "b"]).build();
    let plan = compile(&rolling_spec(Rolling::in_place(3)), &sim.snapshot());
    let batches = update_batches(&plan);
    assert_eq!(batches.len(), 2);
    let sim_ids: BTreeSet<TargetId> = sim.targets().into_iter().map(|t| t.id).collect();
    assert_eq!(batches.into_iter().flatten().collect::<BTreeSet<_>>(), sim_ids);
    assert_eq!(plan.from_version, Some("v1".into()));
    assert_eq!(sim.writes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Timeline (the dry run)
// ---------------------------------------------------------------------------------------------

#[test]
fn blue_green_timeline_sums_the_waits_and_peaks_at_both_pools() {
    let bg = BlueGreen { test_for: mins(2), bake: mins(10), keep_old_for: Some(mins(30)), approve: None };
    let plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(bg)), &blue_green_snapshot());
    let timeline = plan.timeline();
    // Default health: 3 passes 5 s apart, at least 10 s healthy: 10 s at best.
    let expected = secs(10) + mins(2) + mins(10) + mins(30);
    assert_eq!(timeline.expected, expected);
    assert_eq!(timeline.peak_running, 20);
    assert_eq!(timeline.lowest_serving, 10);
    assert_eq!(timeline.serving_before, 10);

    assert_eq!(timeline.rows.len(), plan.steps.len());
    for (i, (row, step)) in timeline.rows.iter().zip(&plan.steps).enumerate() {
        assert_eq!(row.index, i + 1);
        assert_eq!(row.step, step.to_string());
        assert!(row.at_most.is_some_and(|at_most| at_most >= row.expected), "{row:?}");
    }
    let ends: Vec<Duration> = timeline.rows.iter().map(|r| r.ends_at).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "{ends:?}");
    assert_eq!(*ends.last().unwrap(), expected);
    let sum: Duration = timeline.rows.iter().map(|r| r.expected).sum();
    assert_eq!(sum, expected);

    let row = |prefix: &str| timeline.rows.iter().find(|r| r.step.starts_with(prefix)).unwrap();
    assert_eq!(row("start 10 targets").running, 20);
    assert_eq!(row("wait until").expected, secs(10));
    assert_eq!(row("wait until").at_most, Some(mins(5)), "the health deadline");
    assert_eq!(row("stop").running, 10, "the old pool is gone at the end");
    assert_eq!(row("drain").at_most, Some(secs(30)), "the drain timeout");
}

#[test]
fn rolling_timeline_dips_by_one_batch() {
    let plan = compile(&rolling_spec(Rolling::in_place(2)), &web(10));
    let timeline = plan.timeline();
    assert_eq!(timeline.peak_running, 10);
    assert_eq!(timeline.lowest_serving, 8);
    assert_eq!(timeline.serving_before, 10);
    // Each target serves at its first pass; the 10 s of its gate beyond it run beside the next
    // batches, so only the last batch's is waited for. Blocking: one whole gate per batch.
    assert_eq!(timeline.expected, secs(10));
    let blocking = Rolling { stability: bluegreen_core::Stability::Blocking, ..Rolling::in_place(2) };
    assert_eq!(compile(&rolling_spec(blocking), &web(10)).timeline().expected, 5 * secs(10));
    let updates: Vec<usize> = timeline.rows.iter().filter(|r| r.step.starts_with("batch")).map(|r| r.serving).collect();
    assert_eq!(updates, [8, 8, 8, 8, 8]);
}

#[test]
fn replace_timeline_surges_by_one_and_dips_by_one() {
    let plan = compile(&rolling_spec(replace(2, Some(1), Some(1))), &web(10));
    let timeline = plan.timeline();
    assert_eq!(timeline.peak_running, 11);
    assert_eq!(timeline.lowest_serving, 9);
    assert_eq!(timeline.lowest_serving, plan.capacity_floor, "the dry run stays on the floor");
    // Two health passes per batch: the surge and the rest.
    assert_eq!(timeline.expected, 10 * secs(10));
    assert_eq!(timeline.rows.last().unwrap().running, 10);
}

#[test]
fn canary_timeline_serves_from_both_pools_while_split() {
    let plan = compile(&preset_spec(Preset::Canary10Percent5Minutes, Duration::ZERO), &blue_green_snapshot());
    let timeline = plan.timeline();
    // While 10% goes to green, both pools serve: ten targets each.
    let bake_row = timeline.rows.iter().find(|r| r.step == "bake for 5m").unwrap();
    assert_eq!(bake_row.serving, 20);
    assert_eq!(timeline.lowest_serving, 10);
    assert_eq!(timeline.expected, secs(10) + mins(5));
}

#[test]
fn propagation_delay_is_added_to_every_shift_and_every_drain_of_a_pool_with_traffic() {
    let dns = Capabilities::load_balancer().with_propagation_delay(secs(60));
    let canary = preset_spec(Preset::Canary10Percent5Minutes, Duration::ZERO);
    let plan = Plan::compile(&canary, &blue_green_snapshot(), &dns).unwrap();
    assert_eq!(plan.propagation_delay, secs(60));
    // Two shifts; the old pool is drained once it carries no traffic (the last shift waited).
    let timeline = plan.timeline();
    assert_eq!(timeline.expected, secs(10) + mins(5) + 2 * secs(60));
    let drain = timeline.rows.iter().find(|r| r.step.starts_with("drain")).unwrap();
    assert_eq!(drain.propagation_wait, Duration::ZERO, "{timeline}");
    // A rolling update drains targets of the live pool: each batch waits.
    let mut rolling = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(5)));
    rolling.pools = vec!["blue".into()];
    let plan = Plan::compile(&rolling, &blue_green_snapshot(), &dns).unwrap();
    let waits: Vec<Duration> =
        plan.timeline().rows.iter().map(|r| r.propagation_wait).filter(|w| !w.is_zero()).collect();
    assert_eq!(waits, [secs(60), secs(60)]);
}

#[test]
fn timeline_prints_one_row_per_step_and_a_summary() {
    let bg = BlueGreen { test_for: mins(2), bake: mins(10), keep_old_for: Some(mins(30)), approve: None };
    let plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(bg)), &blue_green_snapshot());
    let timeline = plan.timeline();
    let text = timeline.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + plan.steps.len() + 2, "header, rows, summary, pools:\n{text}");
    assert!(lines[0].contains("step") && lines[0].contains("expected") && lines[0].contains("serving"), "{}", lines[0]);
    for (line, row) in lines[1..=plan.steps.len()].iter().zip(&timeline.rows) {
        assert!(line.starts_with(&format!("{:>3}  ", row.index)), "{line}");
        assert!(line.contains(&row.step), "{line} should show {} whole", row.step);
        assert!(line.trim_end().ends_with(&format!("{:>7} {:>7}", row.running, row.serving)), "{line}");
    }
    assert_eq!(
        lines[plan.steps.len() + 1],
        "expected duration 42m 10s; peak 20 targets running; lowest 10 of 10 serving"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "pools before: blue 10 target(s), 10 serving, 100% of traffic; green 0 target(s), 0 serving, 0% of traffic"
    );
    assert!(text.contains("pause 30m (keep pool blue warm"), "{text}");
}

#[test]
fn a_manual_pause_has_no_upper_bound_in_the_timeline() {
    let mut plan = compile(&Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())), &blue_green_snapshot());
    plan.steps.insert(1, Step::Pause { duration: None, reason: "wait for sign-off".into() });
    let timeline = plan.timeline();
    assert_eq!(timeline.rows[1].at_most, None);
    assert_eq!(timeline.rows[1].expected, Duration::ZERO);
    assert!(timeline.to_string().lines().nth(2).unwrap().contains("manual"), "{timeline}");
}

// ---------------------------------------------------------------------------------------------
// Serde
// ---------------------------------------------------------------------------------------------

#[test]
fn plans_round_trip_through_json() {
    let bg = BlueGreen { test_for: mins(2), bake: mins(10), keep_old_for: Some(mins(30)), approve: None };
    let mut manual = compile(&Spec::new("web", "v2", Strategy::BlueGreen(bg.clone())), &blue_green_snapshot());
    manual.steps.push(Step::Pause { duration: None, reason: "sign-off".into() });
    let plans = [
        compile(&Spec::new("web", "v2", Strategy::BlueGreen(bg)), &blue_green_snapshot()),
        manual,
        compile(&preset_spec(Preset::Linear10PercentEvery3Minutes, mins(1)), &blue_green_snapshot()),
        compile(&rolling_spec(Rolling { bake_between_batches: secs(90), ..Rolling::in_place(2) }), &web(10)),
        compile(&rolling_spec(replace(2, Some(1), Some(1))), &web(10)),
        Plan::compile(
            &preset_spec(Preset::Canary10Percent5Minutes, Duration::ZERO),
            &blue_green_snapshot(),
            &Capabilities::load_balancer().with_propagation_delay(Duration::from_millis(1500)),
        )
        .unwrap(),
    ];
    for plan in plans {
        let json = serde_json::to_string_pretty(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, plan, "{json}");
        // The timeline is data too.
        let timeline = plan.timeline();
        let back: Timeline = serde_json::from_str(&serde_json::to_string(&timeline).unwrap()).unwrap();
        assert_eq!(back, timeline);
    }
}

#[test]
fn plan_json_is_readable() {
    let plan = compile(&preset_spec(Preset::Canary10Percent5Minutes, Duration::ZERO), &blue_green_snapshot());
    let json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    let steps = json["steps"].as_array().unwrap();
    let bake = steps.iter().find(|s| s["step"] == "bake").unwrap();
    assert_eq!(bake["duration"], "5m");
    assert_eq!(bake["watch"], serde_json::json!({ "tagged": "web/v2/green" }));
    let shift = steps.iter().find(|s| s["step"] == "shift_traffic").unwrap();
    assert_eq!(shift["split"], serde_json::json!({ "blue": 90, "green": 10 }));
}

const FULL_SPEC: &str = r#"{
    "service": "checkout",
    "version": "v87",
    "strategy": {
        "kind": "canary",
        "steps": [ { "percent": 5, "bake": "2m" }, { "percent": 25, "bake": "10m" } ],
        "bake": "15m"
    },
    "pools": ["tg-blue", "tg-green"],
    "replicas": 6,
    "zones": ["eu-west-1a", "eu-west-1b"],
    "health": {
        "interval": "2s", "timeout": "1s", "healthy_threshold": 2, "unhealthy_threshold": 3,
        "min_healthy_time": "5s", "deadline": "3m"
    },
    "drain": { "timeout": "45s" },
    "rollback": {
        "pace": { "ramp": { "percent": 25, "interval": "30s" } },
        "if_old_unhealthy": "roll_forward"
    },
    "retry": { "max_attempts": 7, "initial_backoff": "250ms", "max_backoff": "20s", "multiplier": 1.5 },
    "hooks": [
        { "point": "before_traffic", "command": "./migrate.sh", "timeout": "10m" },
        { "point": "after_switch", "command": "./notify.sh" }
    ],
    "analyses": [
        {
            "kind": "http_success_rate", "url": "https://checkout.example.com/health",
            "min_success_percent": 99.5, "window": "2m", "requests_per_check": 10,
            "min_requests": 20, "timeout": "3s"
        }
    ]
}"#;

#[test]
fn a_full_spec_parses_every_section_and_round_trips() {
    let spec = Spec::from_json(FULL_SPEC).unwrap();
    spec.validate().unwrap();

    assert_eq!((spec.service.as_str(), spec.version.as_str()), ("checkout", "v87"));
    let Strategy::Canary(canary) = &spec.strategy else { panic!("{:?}", spec.strategy) };
    assert_eq!(canary.steps, [ShiftStep { percent: 5, bake: mins(2) }, ShiftStep { percent: 25, bake: mins(10) }]);
    assert_eq!((canary.preset, canary.bake), (None, mins(15)));
    assert_eq!(spec.pools, [pool("tg-blue"), pool("tg-green")]);
    assert_eq!(spec.replicas, Some(6));
    assert_eq!(spec.zones, ["eu-west-1a", "eu-west-1b"]);
    let h = &spec.health;
    assert_eq!(
        (h.interval, h.timeout, h.healthy_threshold, h.unhealthy_threshold, h.min_healthy_time, h.deadline),
        (secs(2), secs(1), 2, 3, secs(5), mins(3))
    );
    assert_eq!(spec.drain.timeout, secs(45));
    assert_eq!(spec.rollback.pace, RollbackPace::Ramp { percent: 25, interval: secs(30) });
    assert_eq!(spec.rollback.if_old_unhealthy, OldUnhealthyPolicy::RollForward);
    assert_eq!(spec.retry.max_attempts, 7);
    assert_eq!(spec.retry.initial_backoff, Duration::from_millis(250));
    assert_eq!(spec.retry.max_backoff, secs(20));
    assert!((spec.retry.multiplier - 1.5).abs() < f64::EPSILON);
    assert_eq!(spec.hooks.len(), 2);
    assert_eq!(
        (spec.hooks[0].point, spec.hooks[0].command.as_str(), spec.hooks[0].timeout),
        (HookPoint::BeforeTraffic, "./migrate.sh", mins(10))
    );
    assert_eq!(spec.hooks[1].timeout, mins(5), "the default hook timeout");
    assert_eq!(
        spec.analyses,
        [AnalysisSpec::HttpSuccessRate(HttpSuccessRateSpec {
            url: "https://checkout.example.com/health".into(),
            min_success_percent: 99.5,
            window: mins(2),
            requests_per_check: 10,
            min_requests: 20,
            timeout: secs(3),
        })]
    );

    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(Spec::from_json(&json).unwrap(), spec, "{json}");
    // And it compiles: the spec is usable as written.
    let before =
        snapshot("tg-blue", vec![("tg-blue", targets("b", 6, &["eu-west-1a"], "v86")), ("tg-green", Vec::new())]);
    let plan = compile(&spec, &before);
    assert_eq!(traffic(&plan), steps_of(&[(5, 2), (25, 10), (100, 15)]));
}

#[test]
fn a_spec_of_each_strategy_round_trips_through_json() {
    let specs = [
        Spec::new(
            "web",
            "v2",
            Strategy::BlueGreen(BlueGreen {
                test_for: secs(30),
                bake: mins(5),
                keep_old_for: Some(mins(1)),
                approve: None,
            }),
        ),
        preset_spec(Preset::EcsLinear10PercentEvery6Minutes, Duration::ZERO),
        Spec::new("web", "v2", Strategy::Linear(Linear { percent: 20, interval: Duration::from_millis(1500) })),
        rolling_spec(Rolling {
            batch: BatchSize::Percent(25),
            min_healthy_percent: Some(70),
            zone_balanced: false,
            bake_between_batches: mins(1),
            ..Rolling::in_place(1)
        }),
        rolling_spec(replace(3, Some(2), Some(1))),
    ];
    for spec in specs {
        spec.validate().unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(Spec::from_json(&json).unwrap(), spec, "{json}");
    }
}

#[test]
fn defaults_fill_every_optional_section() {
    let spec = Spec::from_json(r#"{"service":"web","version":"v2","strategy":{"kind":"rolling","batch":2}}"#).unwrap();
    assert_eq!(spec, Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))));
    assert_eq!(spec.pools, [pool("blue"), pool("green")]);
    assert_eq!(spec.health.fastest_pass(), secs(10));
}

// ---------------------------------------------------------------------------------------------
// Bakes shorter than a DNS router's propagation delay
// ---------------------------------------------------------------------------------------------

fn dns(delay: Duration) -> Capabilities {
    Capabilities::load_balancer().with_propagation_delay(delay)
}

#[test]
fn a_bake_shorter_than_the_propagation_delay_is_a_warning_in_the_plan_and_timeline() {
    // 10 % for 30 s, then 50 % for 5 min: only the first bake is shorter than 60 s + 10 s.
    let steps = vec![ShiftStep { percent: 10, bake: secs(30) }, ShiftStep { percent: 50, bake: mins(5) }];
    // (The drains last longer than the delay: no warning about them.)
    let spec = Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() }))
        .with_drain(bluegreen_core::DrainPolicy { timeout: mins(2) });
    let plan = Plan::compile(&spec, &blue_green_snapshot(), &dns(secs(70))).unwrap();
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].contains("bake (30s) is shorter than the router's propagation delay (1m 10s"),
        "{:?}",
        plan.warnings
    );
    let timeline = plan.timeline();
    assert_eq!(timeline.warnings, plan.warnings);
    assert!(timeline.to_string().contains("\nwarning: step "), "{timeline}");

    // A load balancer (no delay) has nothing to warn about.
    let plan = Plan::compile(&spec, &blue_green_snapshot(), &Capabilities::load_balancer()).unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn short_bakes_refuse_makes_the_same_plan_invalid() {
    let steps = vec![ShiftStep { percent: 10, bake: secs(30) }];
    let mut spec = Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() }));
    spec.short_bakes = bluegreen_core::ShortBakePolicy::Refuse;
    let err = Plan::compile(&spec, &blue_green_snapshot(), &dns(secs(70))).unwrap_err();
    assert_eq!(err.field(), Some("short_bakes"), "{err}");
    assert!(err.to_string().contains("shorter than the router's propagation delay"), "{err}");
    // From a spec file too.
    let text = r#"{"service":"web","version":"v2","short_bakes":"refuse",
        "strategy":{"kind":"canary","steps":[{"percent":10,"bake":"30s"}]}}"#;
    assert_eq!(Spec::from_json(text).unwrap().short_bakes, bluegreen_core::ShortBakePolicy::Refuse);
}

#[test]
fn a_router_that_checks_its_members_gets_new_targets_registered_before_the_health_gate() {
    let order = |caps: &Capabilities, spec: &Spec, before: &Snapshot| -> Vec<&'static str> {
        Plan::compile(spec, before, caps)
            .unwrap()
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::AwaitHealthy { .. } => Some("gate"),
                Step::Attach { .. } => Some("attach"),
                _ => None,
            })
            .collect()
    };
    let blue_green = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    let alb = Capabilities::load_balancer().with_checks_members(true);
    assert_eq!(order(&Capabilities::load_balancer(), &blue_green, &blue_green_snapshot()), ["gate", "attach"]);
    assert_eq!(order(&alb, &blue_green, &blue_green_snapshot()), ["attach", "gate"]);
    let rolling = rolling_spec(replace(2, None, None));
    assert!(order(&alb, &rolling, &web(4)).chunks(2).all(|pair| pair == ["attach", "gate"]));
}

/// A rolling spec that leaves `pools` at its default rolls the router's one live pool, whatever
/// its name (the README's simulator test, pool `web`, failed with "none of the pools
/// [blue, green] carries all traffic"); a spec that names its pools still gets only those.
#[test]
fn a_rolling_deploy_with_default_pools_rolls_the_one_live_pool() {
    let spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)));
    let plan = compile(&spec, &web(6));
    assert_eq!(plan.stable_pool, pool("web"));
    assert_eq!(plan.candidate_pool, pool("web"));

    let named = spec.with_pools("api", "api-next");
    let error = Plan::compile(&named, &web(6), &Capabilities::load_balancer()).unwrap_err();
    assert!(error.to_string().contains("none of the pools"), "{error}");
}
