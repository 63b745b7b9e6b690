//! A table of malformed or impossible deploy files: each one exits with code 2, says where
//! (`deploy.toml:LINE:COLUMN`) and what, and makes no backend write.

use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

use bluegreen_core::sim::Sim;

mod common;

use common::{temp_dir, BLUEGREEN};

fn dir(name: &str) -> TempDir {
    temp_dir(&format!("specs-{name}"))
}

/// A valid canary file with the sim backend; `{X}` lines are replaced per case.
const BASE: &str = r#"service = "checkout"
version = "v2"
{TOP}

[strategy]
kind = "canary"
steps = [{ percent = 10, bake = "1s" }]
{STRATEGY}

[health]
interval = "100ms"
timeout = "50ms"
healthy_threshold = 1
min_healthy_time = "0s"
{HEALTH}

[backend]
kind = "sim"
world = "world.json"
{BACKEND}

[state]
path = "state"
{STATE}
"#;

/// A case: name, replacements of the placeholders, the line the error must point at (the
/// line holding `# <-`), and words the message must hold.
struct Case {
    name: &'static str,
    text: String,
    words: &'static [&'static str],
}

fn case(name: &'static str, slots: &[(&str, &str)], words: &'static [&'static str]) -> Case {
    let mut text = BASE.to_owned();
    for (slot, value) in slots {
        text = text.replace(&format!("{{{slot}}}"), value);
    }
    for slot in ["TOP", "STRATEGY", "HEALTH", "BACKEND", "STATE"] {
        text = text.replace(&format!("{{{slot}}}"), "");
    }
    Case { name, text, words }
}

/// A valid `[backend]` of kind `haproxy` (its HAProxy need not run: these files are refused
/// while being read, before any connection).
const HAPROXY: &str = r#"[backend]{HEADER}
kind = "haproxy"
socket = "admin.sock"
haproxy_backend = "web"
updater = "deploy.sh {host} {version}"
{BACKEND}

[[backend.hosts]]
id = "web-1"
address = "127.0.0.1:18081"
version = "v1"

[backend.probe]
path = "/healthz"
{PROBE}
"#;

/// A valid `[backend]` of kind `rfc2136`.
const RFC2136: &str = r#"[backend]{HEADER}
kind = "rfc2136"
server = "127.0.0.1:15353"
zone = "example.test."
name = "www.example.test."
tsig_key = "bluegreen-key."
tsig_secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
updater = "deploy.sh {host} {version}"
{BACKEND}

[[backend.hosts]]
id = "web-1"
address = "127.0.0.1:18081"
version = "v1"

[backend.probe]
kind = "tcp"
{PROBE}
"#;

/// A valid `[backend]` of kind `alb` (no AWS call is made while a file is read).
const ALB: &str = r#"[backend]{HEADER}
kind = "alb"
updater = "deploy.sh {host} {version}"
{BACKEND}

[[backend.hosts]]
id = "10.0.0.1:8080"
address = "10.0.0.1:8080"
version = "v1"

[backend.alb]
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/1", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2" }
{PROBE}
"#;

/// A valid `[backend]` of kind `ecs`.
const ECS: &str = r#"[backend]{HEADER}
kind = "ecs"
cluster = "prod"
service = "web"
container = "app"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:{version}"
{BACKEND}

[backend.alb]
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/1", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2" }
{PROBE}
"#;

/// A valid `[backend]` of kind `route53`.
const ROUTE53: &str = r#"[backend]{HEADER}
kind = "route53"
hosted_zone_id = "Z0123456789ABCDEFGHIJ"
name = "www.example.com."
updater = "deploy.sh {host} {version}"
{BACKEND}

[[backend.hosts]]
id = "web-1"
address = "10.0.0.1:8080"
version = "v1"

[backend.probe]
kind = "tcp"
{PROBE}
"#;

/// The base file with its sim backend replaced by `backend` (`HAPROXY` or `RFC2136`), whose
/// slots are filled from `slots` (`HEADER` marks the `[backend]` line, `BACKEND` adds to the
/// table, `PROBE` to the probe); `from` → `to` then edits a line of it.
fn kind_case(
    name: &'static str,
    backend: &str,
    slots: &[(&str, &str)],
    edit: Option<(&str, &str)>,
    words: &'static [&'static str],
) -> Case {
    let mut table = backend.to_owned();
    for (slot, value) in slots {
        table = table.replace(&format!("{{{slot}}}"), value);
    }
    for slot in ["HEADER", "BACKEND", "PROBE"] {
        table = table.replace(&format!("{{{slot}}}"), "");
    }
    if let Some((from, to)) = edit {
        assert!(table.contains(from), "{name}: {from:?} not in the backend");
        table = table.replacen(from, to, 1);
    }
    let mut c = case(name, &[], words);
    c.text = c.text.replace("[backend]\nkind = \"sim\"\nworld = \"world.json\"\n", &table);
    assert!(c.text.contains(&table), "{name}: the sim backend was not replaced");
    c
}

fn whole(name: &'static str, text: &str, words: &'static [&'static str]) -> Case {
    Case { name, text: text.to_owned(), words }
}

fn cases() -> Vec<Case> {
    let strategy = |body: &'static str| -> String { format!("[strategy]\n{body}\n") };
    let rolling = |extra: &str| {
        BASE.replace(
            "[strategy]\nkind = \"canary\"\nsteps = [{ percent = 10, bake = \"1s\" }]\n{STRATEGY}",
            &format!("[strategy]\nkind = \"rolling\"\n{extra}"),
        )
    };
    let with_rolling = |name: &'static str, extra: &str, words: &'static [&'static str]| {
        let mut c = case(name, &[], words);
        c.text = rolling(extra);
        for slot in ["TOP", "HEALTH", "BACKEND", "STATE"] {
            c.text = c.text.replace(&format!("{{{slot}}}"), "");
        }
        c
    };
    let _ = strategy;
    vec![
        whole("syntax: unterminated string", "service = \"checkout  # <-\nversion = \"v2\"\n", &["TOML syntax error"]),
        whole("syntax: missing value", "service = \"checkout\"\nversion =   # <-\n", &["TOML syntax error"]),
        whole("syntax: duplicate key", "service = \"a\"\nservice = \"b\"  # <-\n", &["TOML syntax error"]),
        case("unknown top-level key", &[("TOP", "servce = \"x\"  # <-")], &["unknown field", "servce"]),
        case("wrong type for version", &[("TOP", "replicas = \"three\"  # <-")], &["replicas"]),
        case("empty service", &[], &[]).with_replace(
            "service = \"checkout\"",
            "service = \"\"  # <-",
            &["service", "must not be empty"],
        ),
        case("unknown strategy kind", &[], &[]).with_replace(
            "kind = \"canary\"",
            "kind = \"bluegreen\"  # <-",
            &["unknown variant", "bluegreen"],
        ),
        case("canary percent 0", &[], &[]).with_replace(
            "percent = 10",
            "percent = 0",
            &["strategy.steps[0].percent", "1–100"],
        ),
        case("steps not increasing", &[], &[]).with_replace(
            "steps = [{ percent = 10, bake = \"1s\" }]",
            "steps = [{ percent = 50, bake = \"1s\" }, { percent = 20, bake = \"1s\" }]  # <-",
            &["strategy.steps[1].percent", "increase"],
        ),
        case(
            "preset and steps",
            &[("STRATEGY", "preset = \"Canary10Percent5Minutes\"")],
            &["strategy.steps", "not both"],
        ),
        case("unknown preset", &[], &[]).with_replace(
            "steps = [{ percent = 10, bake = \"1s\" }]",
            "preset = \"Canary99Percent\"  # <-",
            &["strategy.preset", "unknown variant"],
        ),
        case("negative duration", &[], &[]).with_replace(
            "bake = \"1s\"",
            "bake = \"-5s\"",
            &["strategy.steps[0].bake"],
        ),
        case("duration without a unit", &[], &[]).with_replace(
            "bake = \"1s\"",
            "bake = \"5\"",
            &["strategy.steps[0].bake"],
        ),
        case("unknown strategy field", &[("STRATEGY", "bake_time = \"1m\"  # <-")], &["unknown field", "bake_time"]),
        case("zero healthy threshold", &[], &[]).with_replace(
            "healthy_threshold = 1",
            "healthy_threshold = 0  # <-",
            &["health.healthy_threshold"],
        ),
        case("timeout longer than interval", &[], &[]).with_replace(
            "timeout = \"50ms\"",
            "timeout = \"5s\"  # <-",
            &["health.timeout", "longer than the interval"],
        ),
        case("unknown health field", &[("HEALTH", "retries = 3  # <-")], &["unknown field", "retries"]),
        case("health threshold of the wrong type", &[], &[]).with_replace(
            "healthy_threshold = 1",
            "healthy_threshold = \"two\"  # <-",
            &["health.healthy_threshold"],
        ),
        with_rolling("rolling batch 0", "batch = 0  # <-", &["strategy.batch", "at least 1"]),
        with_rolling("rolling batch 150%", "batch = \"150%\"  # <-", &["strategy.batch", "100%"]),
        with_rolling("rolling batch not a size", "batch = \"two\"  # <-", &["strategy.batch"]),
        with_rolling(
            "in-place with max_unavailable 0",
            "batch = 1\nmax_unavailable = 0  # <-",
            &["strategy.max_unavailable"],
        ),
        with_rolling(
            "replace with no surge and no unavailability",
            "batch = 1\nmode = \"replace\"\nmax_surge = 0\nmax_unavailable = 0  # <-",
            &["strategy.max_unavailable", "both 0"],
        ),
        with_rolling(
            "min healthy 120%",
            "batch = 1\nmin_healthy_percent = 120  # <-",
            &["strategy.min_healthy_percent"],
        ),
        with_rolling("batch larger than the pool", "batch = 9  # <-", &["strategy.batch", "larger than pool"]),
        case("retry attempts 0", &[("TOP", "[retry]\nmax_attempts = 0  # <-")], &["retry.max_attempts"]),
        case(
            "hook with an empty command",
            &[("TOP", "[[hooks]]\npoint = \"before_traffic\"\ncommand = \"\"  # <-")],
            &["hooks[0].command"],
        ),
        case(
            "hook at an unknown point",
            &[("TOP", "[[hooks]]\npoint = \"before_lunch\"  # <-\ncommand = \"true\"")],
            &["hooks[0].point", "unknown variant"],
        ),
        case(
            "analysis with a bad url",
            &[(
                "TOP",
                "[[analyses]]\nkind = \"http_success_rate\"\nurl = \"ftp://x\"  # <-\nmin_success_percent = 99.0",
            )],
            &["analyses[0].url"],
        ),
        case("two identical pools", &[("TOP", "pools = [\"blue\", \"blue\"]  # <-")], &["pools[1]", "must differ"]),
        case("unknown pool", &[("TOP", "pools = [\"blue\", \"teal\"]  # <-")], &["pools[1]", "no pool \"teal\""]),
        case("zero replicas", &[("TOP", "replicas = 0  # <-")], &["replicas", "at least 1"]),
        case("linear percent 0", &[], &[]).with_replace(
            "kind = \"canary\"\nsteps = [{ percent = 10, bake = \"1s\" }]",
            "kind = \"linear\"\npercent = 0  # <-\ninterval = \"1s\"",
            &["strategy.percent"],
        ),
        case(
            "rollback ramp of 0%",
            &[("TOP", "[rollback]\npace = { ramp = { percent = 0, interval = \"1s\" } }  # <-")],
            &["rollback.pace.ramp.percent"],
        ),
        case("unknown backend kind", &[], &[]).with_replace(
            "kind = \"sim\"",
            "kind = \"ec2\"  # <-",
            &["backend", "unknown variant"],
        ),
        case(
            "unknown backend field",
            &[("BACKEND", "regoin = \"eu-west-1\"  # <-")],
            &["backend", "unknown field", "regoin"],
        ),
        case("backend pools of the wrong type", &[("BACKEND", "pools = [\"blue\"]  # <-")], &["backend.pools"]),
        case("unknown state kind", &[("STATE", "kind = \"s3\"  # <-")], &["state.kind", "unknown variant"]),
        case("dynamodb state without a table", &[("STATE", "kind = \"dynamodb\"  # <-")], &["state", "table"]),
        case(
            "unresolved terraform output",
            &[("BACKEND", "initial_version = \"${tf.app_version}\"  # <-")],
            &["${tf.app_version}", "--tf-outputs"],
        ),
        case(
            "unset environment variable",
            &[("STATE", "owner = \"${env.BLUEGREEN_TEST_NOT_SET}\"  # <-")],
            &["BLUEGREEN_TEST_NOT_SET", "not set"],
        ),
        case("unknown reference", &[("STATE", "owner = \"${vault.token}\"  # <-")], &["unknown reference"]),
        case("a day-long bake", &[], &[]).with_replace(
            "bake = \"1s\"",
            "bake = \"2days\"",
            &["strategy.steps[0].bake", "longer than a day"],
        ),
        // kind = "haproxy"
        kind_case(
            "haproxy: unknown field",
            HAPROXY,
            &[("BACKEND", "sokcet = \"admin.sock\"  # <-")],
            None,
            &["backend", "unknown field", "sokcet"],
        ),
        kind_case(
            "haproxy: host version of the wrong type",
            HAPROXY,
            &[],
            Some(("version = \"v1\"", "version = 1  # <-")),
            &["backend.hosts[0].version"],
        ),
        kind_case(
            "haproxy: update timeout of the wrong type",
            HAPROXY,
            &[("BACKEND", "update_timeout = 30  # <-")],
            None,
            &["backend.update_timeout"],
        ),
        kind_case(
            "haproxy: no socket and no address",
            HAPROXY,
            &[("HEADER", "  # <-")],
            Some(("socket = \"admin.sock\"\n", "")),
            &["backend", "missing `socket`"],
        ),
        kind_case(
            "haproxy: socket and address",
            HAPROXY,
            &[("BACKEND", "address = \"127.0.0.1:19999\"  # <-")],
            None,
            &["backend.address", "not both"],
        ),
        kind_case(
            "haproxy: missing HAProxy backend name",
            HAPROXY,
            &[("HEADER", "  # <-")],
            Some(("haproxy_backend = \"web\"\n", "")),
            &["backend", "missing field", "haproxy_backend"],
        ),
        kind_case(
            "haproxy: bad separator",
            HAPROXY,
            &[("BACKEND", "separator = \"/\"  # <-")],
            None,
            &["backend.separator"],
        ),
        kind_case(
            "haproxy: unknown updater placeholder",
            HAPROXY,
            &[],
            Some(("updater = \"deploy.sh {host} {version}\"", "updater = \"deploy.sh {host} {verison}\"  # <-")),
            &["backend.updater", "{verison}"],
        ),
        kind_case(
            "haproxy: host id unsafe for the updater",
            HAPROXY,
            &[],
            Some(("id = \"web-1\"", "id = \"web-1;reboot\"  # <-")),
            &["backend.hosts[0].id", "shell command"],
        ),
        kind_case(
            "haproxy: two hosts with one id",
            HAPROXY,
            &[],
            Some(("[backend.probe]", "[[backend.hosts]]\nid = \"web-1\"  # <-\naddress = \"127.0.0.1:18082\"\nversion = \"v1\"\n\n[backend.probe]")),
            &["backend.hosts[1].id", "twice"],
        ),
        kind_case(
            "haproxy: unknown host field",
            HAPROXY,
            &[],
            Some(("version = \"v1\"", "version = \"v1\"\nport = 8081  # <-")),
            &["backend.hosts[0]", "unknown field", "port"],
        ),
        kind_case(
            "haproxy: probe without a path",
            HAPROXY,
            &[],
            Some(("[backend.probe]\npath = \"/healthz\"", "[backend.probe]  # <-\ntimeout = \"1s\"")),
            &["backend.probe", "missing `path`"],
        ),
        kind_case(
            "haproxy: unknown probe field",
            HAPROXY,
            &[("PROBE", "retries = 3  # <-")],
            None,
            &["backend.probe", "unknown field", "retries"],
        ),
        kind_case(
            "haproxy: probe status out of range",
            HAPROXY,
            &[("PROBE", "expect_status = [200, 700]  # <-")],
            None,
            &["backend.probe.expect_status"],
        ),
        // kind = "rfc2136"
        kind_case(
            "rfc2136: unknown field",
            RFC2136,
            &[("BACKEND", "key_secret = \"x\"  # <-")],
            None,
            &["backend", "unknown field", "key_secret"],
        ),
        kind_case(
            "rfc2136: ttl of the wrong type",
            RFC2136,
            &[("BACKEND", "ttl = 60  # <-")],
            None,
            &["backend.ttl"],
        ),
        kind_case(
            "rfc2136: missing server",
            RFC2136,
            &[("HEADER", "  # <-")],
            Some(("server = \"127.0.0.1:15353\"\n", "")),
            &["backend", "missing field", "server"],
        ),
        kind_case(
            "rfc2136: server that is not ip:port",
            RFC2136,
            &[],
            Some(("server = \"127.0.0.1:15353\"", "server = \"ns1.example.test\"  # <-")),
            &["backend.server"],
        ),
        kind_case(
            "rfc2136: secret that is not base64",
            RFC2136,
            &[],
            Some(("tsig_secret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"", "tsig_secret = \"not base64!\"  # <-")),
            &["backend.tsig_secret", "base64"],
        ),
        kind_case(
            "rfc2136: unset secret variable",
            RFC2136,
            &[],
            Some((
                "tsig_secret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"",
                "tsig_secret = \"${env.BLUEGREEN_TEST_NO_SECRET}\"  # <-",
            )),
            &["BLUEGREEN_TEST_NO_SECRET", "not set"],
        ),
        kind_case(
            "rfc2136: name outside the zone",
            RFC2136,
            &[],
            Some(("name = \"www.example.test.\"", "name = \"www.other.test.\"  # <-")),
            &["backend.name", "outside the zone"],
        ),
        kind_case(
            "rfc2136: granularity not dividing 100",
            RFC2136,
            &[("BACKEND", "granularity = 30  # <-")],
            None,
            &["backend.granularity", "divide 100"],
        ),
        kind_case(
            "rfc2136: unknown probe kind",
            RFC2136,
            &[],
            Some(("kind = \"tcp\"", "kind = \"icmp\"  # <-")),
            &["backend.probe.kind", "unknown variant"],
        ),
        kind_case(
            "rfc2136: tcp probe with a path",
            RFC2136,
            &[("PROBE", "path = \"/healthz\"  # <-")],
            None,
            &["backend.probe.path", "only an http probe"],
        ),
        kind_case(
            "rfc2136: host address that is not IPv4",
            RFC2136,
            &[],
            Some(("address = \"127.0.0.1:18081\"", "address = \"web-1.internal:8080\"  # <-")),
            &["backend.hosts[0].address", "IPv4"],
        ),
        // kind = "alb"
        kind_case(
            "alb: missing listener",
            ALB,
            &[],
            Some(("listener_arn = \"arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2\"\n", "")),
            &["backend.alb", "missing field", "listener_arn"],
        ),
        kind_case(
            "alb: a target group ARN as the listener",
            ALB,
            &[],
            Some((
                "listener/app/web/1/2\"",
                "targetgroup/web/1\"  # <-",
            )),
            &["backend.alb.listener_arn", "listener ARN"],
        ),
        kind_case(
            "alb: a target group ARN as the test listener",
            ALB,
            &[(
                "PROBE",
                "test_listener_arn = \"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/t/3\"  # <-",
            )],
            None,
            &["backend.alb.test_listener_arn", "listener ARN"],
        ),
        kind_case(
            "alb: a pool without a target group",
            ALB,
            &[],
            Some((", green = \"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2\" }", " }  # <-")),
            &["backend.alb.target_groups", "green", "no target group"],
        ),
        kind_case(
            "alb: a host id that is not its address",
            ALB,
            &[],
            Some(("id = \"10.0.0.1:8080\"", "id = \"web-1\"  # <-")),
            &["backend.hosts[0].id", "address"],
        ),
        kind_case(
            "alb: unset terraform output",
            ALB,
            &[],
            Some(("listener_arn = \"arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2\"", "listener_arn = \"${tf.listener_arn}\"  # <-")),
            &["tf.listener_arn"],
        ),
        kind_case(
            "alb: unknown aws setting",
            ALB,
            &[("PROBE", "\n[backend.aws]\nregoin = \"eu-west-1\"  # <-")],
            None,
            &["backend.aws", "unknown field", "regoin"],
        ),
        // kind = "ecs"
        kind_case(
            "ecs: missing container",
            ECS,
            &[("HEADER", "  # <-")],
            Some(("container = \"app\"\n", "")),
            &["backend", "missing field", "container"],
        ),
        kind_case(
            "ecs: an alb probe path",
            ECS,
            &[("PROBE", "\n[backend.probe]\nkind = \"alb\"\npath = 5  # <-")],
            None,
            &["backend.probe.path"],
        ),
        kind_case(
            "ecs: a rolling deploy",
            ECS,
            &[],
            None,
            &["strategy.kind", "whole task sets"],
        )
        .with_replace(
            "kind = \"canary\"\nsteps = [{ percent = 10, bake = \"1s\" }]",
            "kind = \"rolling\"  # <-\nbatch = 1",
            &["strategy.kind", "whole task sets"],
        ),
        kind_case(
            "ecs: hosts are not an ecs setting",
            ECS,
            &[("BACKEND", "updater = \"true\"  # <-")],
            None,
            &["backend", "unknown field", "updater"],
        ),
        // kind = "route53"
        kind_case(
            "route53: ttl of a week",
            ROUTE53,
            &[("BACKEND", "ttl = \"7d\"  # <-")],
            None,
            &["backend.ttl"],
        ),
        kind_case(
            "route53: unknown record type",
            ROUTE53,
            &[("BACKEND", "record_type = \"MX\"  # <-")],
            None,
            &["backend.record_type", "unknown variant"],
        ),
        kind_case(
            "route53: an alb probe without an alb",
            ROUTE53,
            &[],
            Some(("kind = \"tcp\"", "kind = \"alb\"  # <-")),
            &["backend.probe.kind", "alb"],
        ),
        // What a fixed inventory of hosts cannot run, and hosts it cannot reach.
        kind_case("haproxy: blue-green on a fixed inventory", HAPROXY, &[], None, &[]).with_replace(
            "kind = \"canary\"\nsteps = [{ percent = 10, bake = \"1s\" }]",
            "kind = \"blue_green\"  # <-",
            &["strategy.kind", "fixed inventory", "rolling"],
        ),
        kind_case("rfc2136: canary on a fixed inventory", RFC2136, &[], None, &[]).with_replace(
            "kind = \"canary\"\n",
            "kind = \"canary\"  # <-\n",
            &["strategy.kind", "fixed inventory", "canary"],
        ),
        kind_case(
            "haproxy: rolling replace on a fixed inventory",
            HAPROXY,
            &[],
            None,
            &["strategy.mode", "fixed inventory", "in_place"],
        )
        .rolling("batch = 1\nmode = \"replace\"  # <-"),
        // Standing pools: every host in one of the spec's pools, every pool with a host.
        kind_case(
            "haproxy: a host in a pool the deploy does not name",
            HAPROXY,
            &[],
            Some(("version = \"v1\"\n", "version = \"v1\"\npool = \"purple\"  # <-\n")),
            &["backend.hosts[0].pool", "purple", "not one of the deploy's pools (blue, green)"],
        ),
        kind_case(
            "haproxy: a pool with no host",
            HAPROXY,
            &[],
            Some(("version = \"v1\"\n", "version = \"v1\"\npool = \"blue\"\n")),
            &["pools", "pool green has no host in the inventory"],
        )
        .with_replace(
            "version = \"v2\"\n",
            "version = \"v2\"\npools = [\"blue\", \"green\"]  # <-\n",
            &["pools", "pool green has no host"],
        ),
        kind_case(
            "haproxy: one host with a pool and one without",
            HAPROXY,
            &[],
            Some((
                "version = \"v1\"\n",
                "version = \"v1\"\npool = \"blue\"\n\n[[backend.hosts]]  # <-\nid = \"web-2\"\naddress = \"127.0.0.1:18082\"\nversion = \"v1\"\n",
            )),
            &["backend.hosts[1]", "host web-2 has no `pool`"],
        ),
        kind_case(
            "haproxy: a named server of a host in no pool",
            HAPROXY,
            &[],
            Some(("version = \"v1\"\n", "version = \"v1\"\nserver = \"web-01\"  # <-\n")),
            &["backend.hosts[0].server", "has no `pool`"],
        )
        .rolling("batch = 1"),
        kind_case(
            "rfc2136: a named server",
            RFC2136,
            &[],
            Some(("version = \"v1\"\n", "version = \"v1\"\nserver = \"web-01\"  # <-\n")),
            &["backend.hosts[0].server", "only kind = \"haproxy\""],
        )
        .rolling("batch = 1"),
        kind_case(
            "haproxy: host address without a port",
            HAPROXY,
            &[],
            Some(("address = \"127.0.0.1:18081\"", "address = \"127.0.0.1\"  # <-")),
            &["backend.hosts[0].address", "no port"],
        )
        .rolling("batch = 1"),
        kind_case(
            "rfc2136: host address with a port above 65535",
            RFC2136,
            &[],
            Some(("address = \"127.0.0.1:18081\"", "address = \"127.0.0.1:70000\"  # <-")),
            &["backend.hosts[0].address", "65535"],
        )
        .rolling("batch = 1"),
        kind_case(
            "alb: host address with port 0",
            ALB,
            &[],
            Some((
                "id = \"10.0.0.1:8080\"\naddress = \"10.0.0.1:8080\"",
                "id = \"10.0.0.1:0\"\naddress = \"10.0.0.1:0\"  # <-",
            )),
            &["backend.hosts[0].address", "65535"],
        )
        .rolling("batch = 1"),
        kind_case("haproxy: a version the updater cannot take", HAPROXY, &[], None, &[])
            .rolling("batch = 1")
            .with_replace("version = \"v2\"", "version = \"v2;reboot\"  # <-", &["version", "shell command"]),
        kind_case(
            "rfc2136: unknown updater placeholder",
            RFC2136,
            &[],
            Some(("updater = \"deploy.sh {host} {version}\"", "updater = \"deploy.sh {hostname}\"  # <-")),
            &["backend.updater", "{hostname}"],
        ),
    ]
}

trait Replace {
    fn with_replace(self, from: &str, to: &str, words: &'static [&'static str]) -> Case;
    /// The base's canary as an in-place rolling update (what a fixed inventory can run),
    /// unmarked; `strategy` replaces the lines after `kind`.
    fn rolling(self, strategy: &str) -> Case;
}

impl Replace for Case {
    fn rolling(mut self, strategy: &str) -> Case {
        let canary = "kind = \"canary\"\nsteps = [{ percent = 10, bake = \"1s\" }]";
        assert!(self.text.contains(canary), "{}: no canary to replace", self.name);
        self.text = self.text.replacen(canary, &format!("kind = \"rolling\"\n{strategy}"), 1);
        self
    }

    fn with_replace(mut self, from: &str, to: &str, words: &'static [&'static str]) -> Case {
        assert!(self.text.contains(from), "{}: {from:?} not in the base", self.name);
        let marked = to.contains("# <-");
        self.text = self.text.replacen(from, to, 1);
        if !marked {
            // Mark the end of the line the replacement landed on (a comment cannot sit inside
            // an inline table).
            let at = self.text.find(to).expect("just replaced");
            let end = self.text[at..].find('\n').map_or(self.text.len(), |i| at + i);
            self.text.insert_str(end, "  # <-");
        }
        self.words = words;
        self
    }
}

fn expected_line(text: &str) -> Option<usize> {
    text.lines().position(|l| l.contains("# <-")).map(|i| i + 1)
}

fn world_writes(path: &Path) -> u64 {
    if !path.exists() {
        return 0;
    }
    Sim::builder().shared_file(path).build().writes()
}

#[test]
fn every_malformed_or_impossible_spec_exits_2_naming_where_and_what_and_changes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    println!("{} cases", cases.len());
    for case in cases {
        let d = dir("malformed");
        let file = d.path().join("deploy.toml");
        std::fs::write(&file, &case.text).unwrap();
        for command in ["plan", "deploy"] {
            let out =
                Command::new(BLUEGREEN).current_dir(d.path()).args([command, "-f", "deploy.toml"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{} ({command}): {stderr}\n{}", case.name, case.text);
            if let Some(line) = expected_line(&case.text) {
                let at = format!("deploy.toml:{line}:");
                assert!(stderr.contains(&at), "{} ({command}): expected {at} in: {stderr}", case.name);
            } else {
                assert!(stderr.contains("deploy.toml:"), "{}: no location in: {stderr}", case.name);
            }
            for word in case.words {
                assert!(stderr.contains(word), "{} ({command}): expected {word:?} in: {stderr}", case.name);
            }
            assert_eq!(
                world_writes(&d.path().join("world.json")),
                0,
                "{} ({command}): a backend was changed",
                case.name
            );
        }
    }
}
