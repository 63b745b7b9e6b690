//! Mutated deploy files never panic the reader: each one is read (`DeployFile::parse`, then
//! `Deployment::read`, which checks `[backend]` and `[state]` with no call to any backend) and
//! either succeeds or is refused with an error naming the file, and a line and column or a
//! field. Mutations: bytes replaced, removed or inserted; lines removed, doubled or swapped;
//! values swapped for values of other types and edge values; tables nested deep.
//!
//! 2,000 cases by default; `BLUEGREEN_FUZZ_CASES=200000` for the longer run (docs/security.md).

use std::path::Path;

use bluegreen::deploy::Deployment;
use bluegreen::deploy_file::{DeployFile, DeployFileError, Substitutions};
use proptest::prelude::*;

const SEEDS: [&str; 6] = [
    r#"service = "web"
version = "v2"

[strategy]
kind = "rolling"
batch = 1
bake_between_batches = "10s"

[health]
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
deadline = "1m"

[drain]
timeout = "5s"

[backend]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
haproxy_backend = "web"
separator = "-"
updater = "ssh {host} deploy.sh {version}"
hosts = [
  { id = "web-1", address = "10.0.0.1:8080", version = "v1" },
  { id = "web-2", address = "10.0.0.2:8080", version = "v1" },
]

[backend.probe]
path = "/healthz"

[state]
kind = "memory"
owner = "ci-42"
"#,
    r#"service = "web"
version = "v2"
pools = ["blue", "green"]

[strategy]
kind = "canary"
steps = [{ percent = 10, bake = "1m" }, { percent = 50, bake = "2m" }]

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
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/73e2d6bc24d8a067", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/73e2d6bc24d8a068" }
"#,
    r#"service = "www"
version = "v2"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "rfc2136"
server = "127.0.0.1:5353"
zone = "example.test."
name = "www.example.test."
ttl = "1s"
margin = "200ms"
tsig_key = "deploy-key."
tsig_secret = "0u8p58dX9OJ2n5xd9A/AmyvLv8RUbKffZB9xnoNUQjE="
updater = "sh update.sh {id} {address} {version}"
update_timeout = "30s"

[[backend.hosts]]
id = "web-1"
address = "127.0.0.11:8080"
version = "v1"

[[backend.hosts]]
id = "web-2"
address = "127.0.0.12:8080"
version = "v1"

[backend.probe]
kind = "tcp"
"#,
    r#"service = "www"
version = "v42"

[strategy]
kind = "blue_green"
bake = "5m"

[backend]
kind = "route53"
hosted_zone_id = "Z0123456789ABCDEFGHIJ"
name = "www.example.com."
record_type = "A"
ttl = "60s"
margin = "5s"
updater = "deploy {host} {version}"
hosts = [
  { id = "web-1", address = "10.0.0.11:8080", version = "v41", pool = "blue" },
  { id = "web-2", address = "10.0.0.12:8080", version = "v41", pool = "green" },
]

[backend.aws]
region = "us-east-1"

[backend.probe]
kind = "tcp"
"#,
    r#"service = "web"
version = "v87"

[strategy]
kind = "linear"
percent = 20
interval = "1m"

[backend]
kind = "alb"
updater = "ssh deploy@{host} 'sudo /opt/web/deploy.sh {version}'"
hosts = [
  { id = "10.0.1.10:8080", address = "10.0.1.10:8080", version = "v86", pool = "blue" },
  { id = "10.0.2.10:8080", address = "10.0.2.10:8080", version = "v86", pool = "green" },
]

[backend.alb]
listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
target_groups = { blue = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/73e2d6bc24d8a067", green = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/73e2d6bc24d8a068" }

[state]
kind = "dynamodb"
table = "bluegreen"
"#,
    r#"service = "web"
version = "v2"

[strategy]
kind = "blue_green"

[backend]
kind = "sim"
world = ".bluegreen/world.json"
pools = { blue = 4, green = 0 }
initial_version = "v1"
versions = { v9 = "never_healthy", v3 = "20s" }

[state]
kind = "file"
path = ".bluegreen/state"
"#,
];

/// Values of every type and the edges of each, to put where another value was.
const VALUES: [&str; 24] = [
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "nan",
    "-inf",
    "true",
    "\"\"",
    "\"-x\"",
    "\"0s\"",
    "\"-5s\"",
    "\"99999999999999999999h\"",
    "\"1 fortnight\"",
    "\"${env.BLUEGREEN_FUZZ_UNSET}\"",
    "\"${tf.missing}\"",
    "\"${\"",
    "\"a\\nb;c\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ x = { y = [] } }",
    "1979-05-27T07:32:00Z",
    "\"\u{202e}\u{0}\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    ReplaceByte { at: usize, byte: u8 },
    RemoveBytes { at: usize, len: usize },
    InsertBytes { at: usize, bytes: Vec<u8> },
    RemoveLine(usize),
    DoubleLine(usize),
    SwapLines(usize, usize),
    ReplaceValue { line: usize, value: usize },
    NestTable { line: usize, depth: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>().prop_map(|i| i.index(usize::MAX));
    prop_oneof![
        1 => (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::ReplaceByte { at, byte }),
        1 => (at.clone(), 1usize..40).prop_map(|(at, len)| Mutation::RemoveBytes { at, len }),
        1 => (at.clone(), proptest::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::InsertBytes { at, bytes }),
        1 => at.clone().prop_map(Mutation::RemoveLine),
        1 => at.clone().prop_map(Mutation::DoubleLine),
        1 => (at.clone(), at.clone()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (at.clone(), 0..VALUES.len()).prop_map(|(line, value)| Mutation::ReplaceValue { line, value }),
        1 => (at, 1usize..200).prop_map(|(line, depth)| Mutation::NestTable { line, depth }),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let pick = |n: usize| n % lines.len();
    match mutation {
        Mutation::ReplaceByte { at, byte } => {
            let at = at % bytes.len();
            bytes[at] = *byte;
            return bytes;
        }
        Mutation::RemoveBytes { at, len } => {
            let at = at % bytes.len();
            bytes.drain(at..(at + len).min(bytes.len()));
            return bytes;
        }
        Mutation::InsertBytes { at, bytes: new } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, new.iter().copied());
            return bytes;
        }
        Mutation::RemoveLine(n) => {
            lines.remove(pick(*n));
        }
        Mutation::DoubleLine(n) => {
            let i = pick(*n);
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (pick(*a), pick(*b));
            lines.swap(a, b);
        }
        Mutation::ReplaceValue { line, value } => {
            // The value of the first `key = value` line at or after `line`.
            let start = pick(*line);
            if let Some(i) = (start..lines.len()).chain(0..start).find(|&i| lines[i].contains(" = ")) {
                let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
                lines[i] = format!("{key} = {}", VALUES[*value]);
            }
        }
        Mutation::NestTable { line, depth } => {
            let header = format!("[{}]", vec!["a"; *depth].join("."));
            lines.insert(pick(*line), header);
        }
    }
    lines.join("\n").into_bytes()
}

/// Reads `text` as the reader would; an error must name the file, and a place or a field.
fn read(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("fuzzed/deploy.toml");
    let subs = Substitutions::new().tf_output("listener_arn", "arn:aws:elasticloadbalancing:eu-west-1:1:listener/x");
    let result = DeployFile::parse(path, text, &subs, None).and_then(Deployment::read);
    if let Err(error) = result {
        check_located(&error)?;
    }
    Ok(())
}

fn check_located(error: &DeployFileError) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    prop_assert!(shown.starts_with("fuzzed/deploy.toml"), "{shown}");
    prop_assert!(!error.message.trim().is_empty(), "{shown}");
    prop_assert!(
        error.position.is_some() || error.field.is_some(),
        "an error with neither a place nor a field: {shown}"
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("BLUEGREEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

#[test]
fn every_seed_is_read() {
    for (i, seed) in SEEDS.iter().enumerate() {
        let name = format!("seed-{i}.toml");
        let path = Path::new(&name);
        let file = DeployFile::parse(path, seed, &Substitutions::new(), None).unwrap_or_else(|e| panic!("{e}"));
        Deployment::read(file).unwrap_or_else(|e| panic!("{e}\n{seed}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 500, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_deploy_file_is_read_or_refused_with_its_place(
        seed in 0..SEEDS.len(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut text = SEEDS[seed].to_owned();
        for m in &mutations {
            let bytes = apply(&text, m);
            // A file that is not UTF-8 is refused by the loader before the reader sees it.
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        read(&text)?;
    }
}

/// `terraform output -json` as Terraform writes it, one sensitive output among them.
const TF_OUTPUTS: &str = r#"{
  "listener_arn": { "sensitive": false, "type": "string", "value": "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/web/1/2" },
  "blue_tg_arn": { "sensitive": false, "type": "string", "value": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/blue/1" },
  "token": { "sensitive": true, "type": "string", "value": "s3cr3t" },
  "ports": { "sensitive": false, "type": ["list", "number"], "value": [80, 443] }
}
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 500, ..ProptestConfig::default() })]

    /// Mutated terraform outputs are read, or refused naming the file and the place.
    #[test]
    fn mutated_terraform_outputs_are_read_or_refused_with_their_place(
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = TF_OUTPUTS.as_bytes().to_vec();
        for m in &mutations {
            bytes = apply(&String::from_utf8_lossy(&bytes), m);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outputs.json");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(error) = Substitutions::with_tf_outputs(&path) {
            let shown = error.to_string();
            prop_assert!(shown.starts_with(&path.display().to_string()), "{shown}");
            prop_assert!(
                error.position.is_some() || std::str::from_utf8(&bytes).is_err(),
                "a refusal with no place: {shown}"
            );
        }
    }
}
