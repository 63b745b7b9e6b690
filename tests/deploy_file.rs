//! The library's deploy file reader (`bluegreen::deploy`) on an HAProxy file and an ECS file:
//! the parts each builds, and a bad field's `file:line:column`. Nothing connects: building
//! the configs makes no call, and nothing is deployed.

use std::path::Path;

use bluegreen::deploy::{self, BackendConfig, Deployment, FleetConfig, RouterConfig, StateKind};
use bluegreen::deploy_file::{DeployFile, Substitutions};

const HAPROXY: &str = r#"service = "web"
version = "v2"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
haproxy_backend = "web"
separator = "-"
updater = "ssh {host} deploy.sh {version}"

[[backend.hosts]]
id = "web-1"
address = "10.0.0.1:8080"
version = "v1"

[[backend.hosts]]
id = "web-2"
address = "10.0.0.2:8080"
version = "v1"

[backend.probe]
path = "/healthz"

[state]
kind = "memory"
owner = "ci-42"
"#;

const ECS: &str = r#"service = "web"
version = "v2"
pools = ["blue", "green"]

[strategy]
kind = "blue_green"

[backend]
kind = "ecs"
cluster = "prod"
service = "web"
container = "app"
image = "registry.example/web:{version}"

[backend.aws]
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:9"

[backend.alb]
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/1", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2" }

[state]
kind = "memory"
"#;

fn parse(text: &str) -> Result<Deployment, String> {
    DeployFile::parse(Path::new("deploy.toml"), text, &Substitutions::new(), None)
        .and_then(Deployment::read)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_haproxy_file_gives_its_router_fleet_and_probe_and_a_bad_field_its_line() {
    let deployment = parse(HAPROXY).unwrap();
    assert_eq!(deployment.spec().service, "web");
    let BackendConfig::Parts(parts) = &deployment.backend else { panic!("not parts: {:?}", deployment.backend) };
    assert_eq!(parts.kind, "haproxy");
    let RouterConfig::Haproxy(router) = &parts.router else { panic!("{:?}", parts.router) };
    assert_eq!((router.haproxy_backend.as_str(), router.separator), ("web", '-'));
    let FleetConfig::Hosts(hosts) = &parts.fleet else { panic!("{:?}", parts.fleet) };
    assert_eq!(hosts.hosts.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["web-1", "web-2"]);
    assert_eq!(parts.probe.as_ref().and_then(|p| p.path.as_deref()), Some("/healthz"));
    assert_eq!((deployment.state.kind, deployment.state.local.owner.as_deref()), (StateKind::Memory, Some("ci-42")));
    // Built, not connected: HAProxy is asked nothing until the executor runs.
    let backends = deployment.backends().await.unwrap();
    assert_eq!(backends.router.name(), "haproxy");
    assert_eq!(backends.fleet.list().await.unwrap().len(), 2);

    let bad = HAPROXY.replace("separator = \"-\"", "separator = \"/\"");
    let error = parse(&bad).unwrap_err();
    assert!(error.starts_with("deploy.toml:12:13: invalid backend.separator: "), "{error}");

    let typo = HAPROXY.replace("haproxy_backend = \"web\"", "haproxy_backend = \"web\"\nsokcet = \"x\"");
    let error = parse(&typo).unwrap_err();
    assert!(
        error.starts_with("deploy.toml:12:10: invalid backend: unknown field `sokcet`, expected one of `socket`"),
        "{error}"
    );

    let blue_green = HAPROXY.replace("kind = \"rolling\"\nbatch = 1", "kind = \"blue_green\"");
    let error = parse(&blue_green).unwrap_err();
    assert!(
        error.starts_with("deploy.toml:5:8: invalid strategy.kind: kind = \"haproxy\" has a fixed inventory of hosts"),
        "{error}"
    );
}

#[tokio::test]
async fn an_ecs_file_read_from_disk_gives_the_alb_and_the_task_sets_and_a_bad_field_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, ECS).unwrap();
    let deployment = Deployment::load(&path, &Substitutions::new(), Some("v3")).unwrap();
    assert_eq!(deployment.spec().version.as_str(), "v3");
    let BackendConfig::Parts(parts) = &deployment.backend else { panic!("not parts: {:?}", deployment.backend) };
    let RouterConfig::Alb(alb) = &parts.router else { panic!("{:?}", parts.router) };
    assert_eq!(alb.target_groups.len(), 2);
    let FleetConfig::Ecs(ecs) = &parts.fleet else { panic!("{:?}", parts.fleet) };
    assert_eq!((ecs.cluster.as_str(), ecs.container.as_str()), ("prod", "app"));
    assert!(parts.probe.is_none(), "the ALB's own health checks by default");
    assert_eq!(parts.aws.region.as_deref(), Some("eu-west-1"));

    // One call: spec, backends and store (the AWS clients are made, nothing is sent).
    let opened = deploy::open(&path, &Substitutions::new(), None).await.unwrap();
    assert_eq!(opened.backends.router.name(), "alb");
    assert!(opened.store.history("web").await.unwrap().is_empty());

    std::fs::write(&path, ECS.replace("container = \"app\"", "container = \"app\"\nclustr = \"x\"")).unwrap();
    let error = Deployment::load(&path, &Substitutions::new(), None).unwrap_err();
    assert_eq!(error.position.map(|p| p.line), Some(13));
    assert_eq!(error.field.as_deref(), Some("backend.clustr"));
    assert!(error.to_string().contains(":13:10: invalid backend: unknown field `clustr`"), "{error}");

    let rolling = ECS.replace("kind = \"blue_green\"", "kind = \"rolling\"\nbatch = 1");
    let error = parse(&rolling).unwrap_err();
    assert!(error.starts_with("deploy.toml:6:8: invalid strategy.kind: on kind = \"ecs\""), "{error}");
}

/// Standing pools behind an ALB: hosts of a fixed inventory in two target groups, `pool` on
/// each host (the example of docs/aws.md, with a memory store and a local endpoint).
const ALB_STANDING: &str = r#"service = "web"
version = "v87"
pools = ["blue", "green"]

[strategy]
kind = "canary"
steps = [{ percent = 10, bake = "5m" }, { percent = 50, bake = "5m" }, { percent = 100 }]

[drain]
timeout = "60s"

[backend]
kind = "alb"
updater = "ssh deploy@{host} 'sudo /opt/web/deploy.sh {version}'"
update_timeout = "10m"

[[backend.hosts]]
id = "10.0.1.10:8080"
address = "10.0.1.10:8080"
version = "v86"
pool = "blue"

[[backend.hosts]]
id = "10.0.1.11:8080"
address = "10.0.1.11:8080"
version = "v86"
pool = "blue"

[[backend.hosts]]
id = "10.0.2.10:8080"
address = "10.0.2.10:8080"
version = "v86"
pool = "green"

[[backend.hosts]]
id = "10.0.2.11:8080"
address = "10.0.2.11:8080"
version = "v86"
pool = "green"

[backend.alb]
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/1", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/2" }

[backend.aws]
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:9"

[state]
kind = "memory"
"#;

#[tokio::test]
async fn an_alb_file_with_hosts_in_standing_pools_gives_the_alb_and_a_fleet_of_two_pools() {
    use bluegreen::{PoolName, TargetId};
    let deployment = parse(ALB_STANDING).unwrap();
    let BackendConfig::Parts(parts) = &deployment.backend else { panic!("not parts: {:?}", deployment.backend) };
    assert_eq!(parts.kind, "alb");
    let FleetConfig::Hosts(hosts) = &parts.fleet else { panic!("{:?}", parts.fleet) };
    assert!(hosts.has_pools());
    assert!(parts.probe.is_none(), "the ALB's own health checks by default");
    // Built, not connected.
    let backends = deployment.backends().await.unwrap();
    assert_eq!(backends.router.name(), "alb");
    let pools = backends.fleet.standing_pools();
    assert_eq!(pools.get(&TargetId::from("10.0.2.11:8080")), Some(&PoolName::from("green")));
    assert_eq!(pools.values().filter(|p| p.as_str() == "blue").count(), 2);

    // An ip target's id must be its address; a host without a pool when others have one.
    let misnamed = ALB_STANDING.replacen("id = \"10.0.2.11:8080\"", "id = \"web-4\"", 1);
    let error = parse(&misnamed).unwrap_err();
    assert!(error.contains("backend.hosts[3].id") && error.contains("named by its address"), "{error}");
    let poolless = ALB_STANDING.replacen("version = \"v86\"\npool = \"green\"", "version = \"v86\"", 1);
    let error = parse(&poolless).unwrap_err();
    assert!(error.contains("backend.hosts[2]") && error.contains("has no `pool`"), "{error}");
}

const HAPROXY_BACKENDS: &str = r#"service = "web"
version = "v2"
pools = ["blue", "green"]

[strategy]
kind = "canary"
steps = [{ percent = 10, bake = "5m" }, { percent = 100 }]

[backend]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
haproxy_backend = "web"
layout = "backend-per-pool"
split_map = "/etc/haproxy/bluegreen-split.map"
pool_backends = { green = "web_next" }
updater = "ssh deploy@{host} 'sudo /opt/web/deploy.sh {version}'"

[[backend.hosts]]
id = "web-01"
address = "10.0.1.1:8080"
version = "v1"
pool = "blue"

[[backend.hosts]]
id = "web-02"
address = "10.0.2.1:8080"
version = "v1"
pool = "green"

[backend.probe]
path = "/healthz"

[state]
kind = "memory"
"#;

#[tokio::test]
async fn an_haproxy_file_with_a_backend_per_pool_gives_that_layout_and_bad_combinations_their_key() {
    use bluegreen::vm::HaproxyLayout;
    let deployment = parse(HAPROXY_BACKENDS).unwrap();
    let BackendConfig::Parts(parts) = &deployment.backend else { panic!("not parts: {:?}", deployment.backend) };
    let RouterConfig::Haproxy(router) = &parts.router else { panic!("{:?}", parts.router) };
    assert_eq!(router.layout, HaproxyLayout::BackendPerPool);
    assert_eq!(router.split_map.as_deref(), Some("/etc/haproxy/bluegreen-split.map"));
    let built = router.build(&["blue".into(), "green".into()]).unwrap();
    assert_eq!(built.pool_backend(&"blue".into()), Some("web_blue"));
    assert_eq!(built.pool_backend(&"green".into()), Some("web_next"));
    assert_eq!(built.server_name(&"blue".into(), &"web-01".into()), "web-01");
    // Built, not connected.
    let backends = deployment.backends().await.unwrap();
    assert_eq!(backends.router.name(), "haproxy");
    assert!(backends.router.capabilities().atomic_swap);

    let cases = [
        // A split map without the layout, and the layout without its map.
        (HAPROXY_BACKENDS.replace("layout = \"backend-per-pool\"\n", ""), "invalid backend.split_map: "),
        (HAPROXY_BACKENDS.replace("split_map = \"/etc/haproxy/bluegreen-split.map\"\n", ""), "backend.split_map"),
        // Pool backends without the layout.
        (
            HAPROXY_BACKENDS
                .replace("layout = \"backend-per-pool\"\n", "")
                .replace("split_map = \"/etc/haproxy/bluegreen-split.map\"\n", ""),
            "invalid backend.pool_backends: ",
        ),
        // A backend for a pool the deploy does not have; two pools on one backend.
        (HAPROXY_BACKENDS.replace("{ green = \"web_next\" }", "{ red = \"web_red\" }"), "backend.pool_backends.red"),
        (HAPROXY_BACKENDS.replace("{ green = \"web_next\" }", "{ green = \"web_blue\" }"), "backend.pool_backends"),
        // Nothing to save in the default layout.
        (
            HAPROXY_BACKENDS
                .replace("layout = \"backend-per-pool\"\n", "save_split_map = true\n")
                .replace("split_map = \"/etc/haproxy/bluegreen-split.map\"\n", "")
                .replace("pool_backends = { green = \"web_next\" }\n", ""),
            "invalid backend.save_split_map: ",
        ),
        // A separator means nothing when servers are named by host id.
        (HAPROXY_BACKENDS.replace("layout =", "separator = \"-\"\nlayout ="), "invalid backend.separator: "),
        (HAPROXY_BACKENDS.replace("\"backend-per-pool\"", "\"two-backends\""), "backend.layout"),
    ];
    for (text, wanted) in cases {
        let error = parse(&text).unwrap_err();
        assert!(error.contains(wanted), "wanted {wanted:?} in: {error}");
    }
}

/// Text that would reach past its place in a command is refused when the file is read, at its
/// line: a host id starting with `-` (an option of `ssh {host}`), `server_options` with `;` (a
/// second command on HAProxy's runtime API), a version with `;` given by `--version`.
#[test]
fn values_that_would_escape_their_command_are_refused_at_their_line() {
    let dashed = HAPROXY.replace("id = \"web-1\"", "id = \"-oProxyCommand=touch/tmp/pwned\"");
    let error = parse(&dashed).unwrap_err();
    assert!(
        error.starts_with("deploy.toml:16:6: invalid backend.hosts[0].id") && error.contains("read as an option"),
        "{error}"
    );
    let chained =
        HAPROXY.replace("separator = \"-\"", "separator = \"-\"\nserver_options = \"check; shutdown frontend web\"");
    let error = parse(&chained).unwrap_err();
    assert!(error.starts_with("deploy.toml:13:") && error.contains("server_options"), "{error}");
    let subs = Substitutions::new();
    let error = DeployFile::parse(Path::new("deploy.toml"), HAPROXY, &subs, Some("v2; rm -rf /"))
        .and_then(Deployment::read)
        .unwrap_err();
    assert!(error.to_string().contains("cannot go into a shell command"), "{error}");

    // A value a reference puts into a command line (the updater, a hook) must stay one word:
    // quotes, spaces, `$()`, backticks, `;`, a line break or a leading `-` are refused at the
    // command's line, naming the reference and not the value (it may be a secret).
    let hooked = HAPROXY.replace(
        "[state]",
        "[[hooks]]\npoint = \"after_deploy\"\ncommand = \"notify.sh ${env.BLUEGREEN_TEST_ESCAPE}\"\n\n[state]",
    );
    let updater = HAPROXY.replace("deploy.sh {version}", "deploy.sh --token ${env.BLUEGREEN_TEST_ESCAPE} {version}");
    for value in
        ["a'b", "a\"b", "two words", "$(touch /tmp/pwned)", "`id`", "x;reboot", "line\nbreak", "-oProxyCommand=x"]
    {
        std::env::set_var("BLUEGREEN_TEST_ESCAPE", value);
        let error = parse(&hooked).unwrap_err();
        assert!(error.starts_with("deploy.toml:30:11: invalid hooks[0].command"), "{value:?}: {error}");
        assert!(error.contains("${env.BLUEGREEN_TEST_ESCAPE}") && !error.contains(value), "{value:?}: {error}");
        let error = parse(&updater).unwrap_err();
        assert!(error.starts_with("deploy.toml:13:11: invalid backend.updater"), "{value:?}: {error}");
    }
    std::env::set_var("BLUEGREEN_TEST_ESCAPE", "tok3n/+=x");
    assert!(parse(&hooked).is_ok() && parse(&updater).is_ok(), "a plain token goes in as it is");
}
