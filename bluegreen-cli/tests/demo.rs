//! `bluegreen demo` from the built binary: three real local deploys under load, zero failed
//! requests, the per-version counts and the SVG.

use std::process::Command;

#[test]
fn the_demo_deploys_under_load_without_a_failed_request_and_writes_the_report() {
    let dir = std::env::temp_dir().join(format!("bluegreen-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bluegreen"))
        .current_dir(&dir)
        .args(["demo", "--targets", "4", "--bake", "1s", "--report", "demo.svg"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("requests failed: 0"), "{stdout}");
    let served = stdout.lines().find(|l| l.contains("served per version:")).unwrap_or_default();
    for version in ["v1 ", "v2 ", "v3 "] {
        assert!(served.contains(version), "{version} served nothing: {served}");
    }
    assert!(!served.contains("v4"), "the broken v4 must never get traffic: {served}");
    for phase in ["blue-green switch to v2", "rolling update to v3", "canary of v4"] {
        assert!(stdout.contains(phase), "{phase} missing");
    }
    let summary = &stdout[stdout.find("== summary ==").unwrap()..];
    assert_eq!(summary.matches("succeeded").count(), 2, "{summary}");
    assert!(summary.contains("rolled back"), "{summary}");
    let svg = std::fs::read_to_string(dir.join("demo.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("0 failed"), "the report names the run");
    let _ = std::fs::remove_dir_all(&dir);
}
