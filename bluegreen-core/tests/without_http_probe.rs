//! The engine without its `http-probe` feature: no HTTP client is compiled in, and a spec that
//! needs one is refused before anything runs, naming the feature.
#![cfg(not(feature = "http-probe"))]

use bluegreen_core::sim::Sim;
use bluegreen_core::{AnalysisSpec, BlueGreen, Error, Executor, HttpSuccessRateSpec, Spec, Strategy};

fn spec_with_http_analysis() -> Spec {
    Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))
        .with_analysis(AnalysisSpec::HttpSuccessRate(HttpSuccessRateSpec::new("http://127.0.0.1:9/", 99.0)))
}

#[test]
fn an_http_analysis_is_refused_naming_the_feature() {
    let error = spec_with_http_analysis().validate().unwrap_err();
    let Error::Invalid { field, reason } = &error else { panic!("expected Invalid, got {error:?}") };
    assert_eq!(field, "analyses[0]");
    assert!(reason.contains("`http-probe` feature"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_deploy_needing_http_changes_nothing() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
    let before = sim.split();
    let error = executor.deploy(&spec_with_http_analysis()).await.unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    assert_eq!(sim.split(), before);
    assert_eq!(sim.writes(), 0, "no backend change: {:?}", sim.calls());
}
