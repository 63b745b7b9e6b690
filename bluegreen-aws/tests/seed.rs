//! The seed example (`examples/seed_ecs_alb.rs`) against moto server: its log must tell the
//! blue-green release in the seed's order — started, registered, switched, draining,
//! deregistered, stopped, steady state.

mod moto;

#[allow(dead_code, unreachable_pub)] // the example is a binary: `pub` is its API for this test, `main` unused here
#[path = "../examples/seed_ecs_alb.rs"]
mod seed;

/// Real moto (ECS, ELBv2 and EC2 emulated): the example's whole flow, its log lines in order.
#[tokio::test]
async fn the_seed_release_logs_each_phase_in_order() {
    let Some(moto) = moto::Moto::start() else { return };
    let lines = seed::run(&moto.endpoint).await.unwrap_or_else(|e| panic!("the seed example failed: {e}"));
    let text = lines.join("\n");
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    let phases = [
        "(service sales-area-graphql) has started 2 tasks: (task ",
        "(service sales-area-graphql) registered 2 targets in (target-group arn:aws:elasticloadbalancing:",
        "(service sales-area-graphql) switched /reporting* to (target-group ",
        "(service sales-area-graphql) has begun draining connections on 2 tasks.",
        "(service sales-area-graphql) deregistered 2 targets in (target-group ",
        "(service sales-area-graphql) has stopped 2 running tasks: (task ",
        "(service sales-area-graphql) has reached a steady state.",
    ];
    let positions: Vec<usize> = phases.iter().map(|p| at(p)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "phases out of order {positions:?}:\n{text}");
    assert!(lines[positions[1]].contains("-green/"), "registered in green:\n{text}");
    assert!(lines[positions[2]].contains("-green/") && lines[positions[2]].ends_with("100%"), "{text}");
    assert!(lines[positions[4]].contains("-blue/"), "deregistered from blue:\n{text}");
    assert!(!lines[positions[0]].contains(":4000"), "tasks are named by task id, not address:\n{text}");
}
