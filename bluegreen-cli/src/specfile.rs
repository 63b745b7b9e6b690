//! The deploy file: TOML whose top level is the library's `Spec`, plus `[backend]` and
//! `[state]` tables for the command. Every error points at `file:line:column`.
//!
//! String values may use `${env.NAME}` (an environment variable) and `${tf.NAME}` (an output
//! of `terraform output -json`, given with `--tf-outputs FILE`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use bluegreen_core::{Error, RollingMode, Spec, Strategy};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use toml_edit::{Document, Item, Table};

use crate::backend::BackendConfig;
use crate::exit::CliError;

/// A loaded deploy file.
#[derive(Debug, Clone)]
pub(crate) struct DeployFile {
    pub(crate) spec: Spec,
    pub(crate) backend: BackendConfig,
    pub(crate) state: crate::backend::StateConfig,
    locations: Locations,
}

impl DeployFile {
    /// An error from the library, pointed at the spec field it names (for refusals that need
    /// the backends' state, such as a batch larger than the pool).
    pub(crate) fn locate(&self, error: Error) -> CliError {
        let map = SourceMap {
            file: &self.locations.file,
            text: &self.locations.text,
            spans: self.locations.spans.clone(),
            values: Vec::new(),
        };
        match &error {
            Error::Invalid { .. } => spec_error(&map, error),
            Error::NotFound { .. } | Error::Drift { .. } => {
                // Point at the value the backend names (an ARN, a backend name), when the
                // message quotes one of the file's values.
                let message = error.to_string();
                let quoted = self
                    .locations
                    .values
                    .iter()
                    .filter(|(_, value)| value.len() >= 8 && message.contains(value.as_str()))
                    .max_by_key(|(_, value)| value.len());
                let mut located = CliError::from(error);
                if let Some((path, _)) = quoted {
                    located.message = format!("{}: {path}: {message}", map.locate(path));
                }
                located
            }
            _ => error.into(),
        }
    }
}

/// What [`DeployFile::locate`] needs: the file, its text and where each value is.
#[derive(Debug, Clone)]
struct Locations {
    file: std::path::PathBuf,
    text: String,
    spans: BTreeMap<String, Range<usize>>,
    /// Every string value as resolved (`${…}` replaced), by its path.
    values: Vec<(String, String)>,
}

/// Where each value came from: JSON path → byte range in the file.
struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    spans: BTreeMap<String, Range<usize>>,
    values: Vec<(String, String)>,
}

impl SourceMap<'_> {
    /// `file:line:column` of a byte offset.
    fn at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", self.file.display())
    }

    /// The location of `path`, or of its closest known parent.
    fn locate(&self, path: &str) -> String {
        let mut probe = path.to_owned();
        loop {
            if let Some(span) = self.spans.get(&probe) {
                return self.at(span.start);
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe.truncate(i),
                None => return format!("{}:1:1", self.file.display()),
            }
        }
    }

    fn bad_input(&self, path: &str, message: impl std::fmt::Display) -> CliError {
        let message = message.to_string();
        // serde names an unknown key only in its message; point at the key itself.
        let path = match message.split_once("unknown field `").and_then(|(_, rest)| rest.split_once('`')) {
            Some((key, _)) if self.spans.contains_key(&join(path, key)) => join(path, key),
            _ => path.to_owned(),
        };
        CliError::bad_input(format!("{}: {message}", self.locate(&path)))
    }
}

/// Values substituted into `${…}` references.
#[derive(Debug, Default, Clone)]
pub(crate) struct Substitutions {
    pub(crate) tf: BTreeMap<String, String>,
}

impl Substitutions {
    /// Reads `terraform output -json` from `path`.
    pub(crate) fn with_tf_outputs(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::bad_input(format!("{}: cannot read terraform outputs: {e}", path.display())))?;
        let outputs: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
            CliError::bad_input(format!(
                "{}:{}:{}: not terraform output -json: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        let mut tf = BTreeMap::new();
        for (name, output) in outputs {
            let value = output.get("value").cloned().unwrap_or(output);
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            tf.insert(name, text);
        }
        Ok(Self { tf })
    }

    /// Replaces every `${env.X}` / `${tf.X}` in `text`; the error names the unresolved one.
    fn apply(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed reference in {text:?}"))?;
            let reference = &after[..end];
            let value = match reference.split_once('.') {
                Some(("env", name)) => std::env::var(name)
                    .map_err(|_| format!("environment variable {name} is not set (${{{reference}}})"))?,
                Some(("tf", name)) => self.tf.get(name).cloned().ok_or_else(|| {
                    if self.tf.is_empty() {
                        format!("${{{reference}}} needs --tf-outputs FILE (terraform output -json)")
                    } else {
                        format!("terraform output {name} does not exist (${{{reference}}})")
                    }
                })?,
                _ => return Err(format!("unknown reference ${{{reference}}}: use ${{env.NAME}} or ${{tf.NAME}}")),
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Loads and checks a deploy file.
pub(crate) fn load(path: &Path, subs: &Substitutions, version: Option<&str>) -> Result<DeployFile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::bad_input(format!("{}: cannot read the deploy file: {e}", path.display())))?;
    parse(path, &text, subs, version)
}

/// Parses a deploy file's text.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    subs: &Substitutions,
    version: Option<&str>,
) -> Result<DeployFile, CliError> {
    let document = Document::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let map = SourceMap { file: path, text, spans: BTreeMap::new(), values: Vec::new() };
        CliError::bad_input(format!("{}: TOML syntax error: {}", map.at(at), e.message()))
    })?;
    let mut map = SourceMap { file: path, text, spans: BTreeMap::new(), values: Vec::new() };
    let mut root = table_to_json(document.as_table(), "", &mut map, subs)?;
    let object = root.as_object_mut().expect("a document is a table");
    let backend = object.remove("backend").unwrap_or_else(|| Value::Object(Map::new()));
    let state = object.remove("state").unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(v) = version {
        object.insert("version".into(), Value::String(v.to_owned()));
    }
    let spec = Spec::from_value(&root).map_err(|e| spec_error(&map, e))?;
    spec.validate().map_err(|e| spec_error(&map, e))?;
    let backend = backend_section(&map, backend, &spec.pools)?;
    if let Some(kind) = backend.fixed_inventory() {
        let in_place = matches!(&spec.strategy, Strategy::Rolling(r) if r.mode == RollingMode::InPlace);
        if !in_place {
            // Blue-green, canary and linear start the new version's targets, and a rolling
            // replace starts new ones: a fixed inventory of hosts can do neither.
            let what = match &spec.strategy {
                Strategy::Rolling(_) => "strategy.mode",
                _ => "strategy.kind",
            };
            return Err(map.bad_input(
                what,
                format!(
                    "invalid {what}: kind = \"{kind}\" updates a fixed inventory of hosts in place: use kind = \"rolling\" \
                     with mode = \"in_place\" (the default); {} would need to start new hosts",
                    spec.strategy.name()
                ),
            ));
        }
    }
    if let Some(hosts) = backend.hosts() {
        hosts.check_version(&spec.version).map_err(|e| spec_error(&map, e))?;
    }
    if matches!(backend, BackendConfig::Ecs(..)) && matches!(spec.strategy, Strategy::Rolling(_)) {
        // A rolling deploy retires part of a task set, and ECS picks which task a lower scale
        // stops (maybe a serving one): refused before anything runs.
        return Err(map.bad_input(
            "strategy.kind",
            "invalid strategy.kind: on kind = \"ecs\" versions are whole task sets: use blue_green, canary or linear",
        ));
    }
    let state: crate::backend::StateConfig = section(&map, "state", state)?;
    if state.kind == crate::backend::StateKind::Dynamodb && state.table.is_none() {
        return Err(map.bad_input("state.kind", "invalid state: kind = \"dynamodb\" needs `table` (the state table)"));
    }
    let locations = Locations { file: path.to_owned(), text: text.to_owned(), spans: map.spans, values: map.values };
    Ok(DeployFile { spec, backend, state, locations })
}

fn spec_error(map: &SourceMap<'_>, error: Error) -> CliError {
    match &error {
        Error::Invalid { field, reason } => map.bad_input(field, format!("invalid {field}: {reason}")),
        other => CliError::bad_input(format!("{}: {other}", map.file.display())),
    }
}

/// `[backend]`: its `kind` picks the settings' type, so that errors inside name their field.
/// The `haproxy` and `rfc2136` kinds are also built (no connection is made), so that settings
/// their builders refuse are pointed at in the file before anything runs.
fn backend_section(
    map: &SourceMap<'_>,
    value: Value,
    pools: &[bluegreen_core::PoolName],
) -> Result<BackendConfig, CliError> {
    let mut fields = match value {
        Value::Object(fields) => fields,
        _ => return Err(map.bad_input("backend", "invalid backend: expected a table")),
    };
    let kinds = crate::backend::KINDS.join(", ");
    let kind = match fields.remove("kind") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(map.bad_input("backend.kind", format!("invalid backend.kind: expected one of {kinds}"))),
        None => return Err(map.bad_input("backend", format!("invalid backend: missing `kind` (one of {kinds})"))),
    };
    match kind.as_str() {
        "sim" => Ok(BackendConfig::Sim(section(map, "backend", Value::Object(fields))?)),
        "haproxy" | "rfc2136" => {
            let config = if kind == "haproxy" {
                BackendConfig::Haproxy(section(map, "backend", Value::Object(fields))?, pools.to_vec())
            } else {
                BackendConfig::Rfc2136(section(map, "backend", Value::Object(fields))?, pools.to_vec())
            };
            config.check().map_err(|e| spec_error(map, e))?;
            Ok(config)
        }
        "alb" | "ecs" | "route53" => {
            let fields = Value::Object(fields);
            let config = match kind.as_str() {
                "alb" => BackendConfig::Alb(section(map, "backend", fields)?, pools.to_vec()),
                "ecs" => BackendConfig::Ecs(section(map, "backend", fields)?, pools.to_vec()),
                _ => BackendConfig::Route53(section(map, "backend", fields)?, pools.to_vec()),
            };
            config.check().map_err(|e| spec_error(map, e))?;
            Ok(config)
        }
        other => Err(map.bad_input(
            "backend.kind",
            format!("invalid backend.kind: unknown variant `{other}`, expected one of {kinds}"),
        )),
    }
}

/// Deserializes a command section (`backend`, `state`), naming the field at fault.
fn section<T: DeserializeOwned>(map: &SourceMap<'_>, name: &str, value: Value) -> Result<T, CliError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." { name.to_owned() } else { format!("{name}.{inner}") };
        map.bad_input(&path, format!("invalid {path}: {}", e.inner()))
    })
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn table_to_json(table: &Table, path: &str, map: &mut SourceMap<'_>, subs: &Substitutions) -> Result<Value, CliError> {
    let mut object = Map::new();
    for (key, item) in table.iter() {
        let child = join(path, key);
        if let Some((k, _)) = table.get_key_value(key) {
            if let Some(span) = k.span() {
                map.spans.insert(child.clone(), span);
            }
        }
        object.insert(key.to_owned(), item_to_json(item, &child, map, subs)?);
    }
    Ok(Value::Object(object))
}

fn item_to_json(item: &Item, path: &str, map: &mut SourceMap<'_>, subs: &Substitutions) -> Result<Value, CliError> {
    match item {
        Item::None => Ok(Value::Null),
        Item::Value(value) => value_to_json(value, path, map, subs),
        Item::Table(table) => table_to_json(table, path, map, subs),
        Item::ArrayOfTables(array) => {
            let mut out = Vec::new();
            for (i, table) in array.iter().enumerate() {
                let child = format!("{path}[{i}]");
                if let Some(span) = table.span() {
                    map.spans.insert(child.clone(), span);
                }
                out.push(table_to_json(table, &child, map, subs)?);
            }
            Ok(Value::Array(out))
        }
    }
}

fn value_to_json(
    value: &toml_edit::Value,
    path: &str,
    map: &mut SourceMap<'_>,
    subs: &Substitutions,
) -> Result<Value, CliError> {
    use toml_edit::Value as V;
    if let Some(span) = value.span() {
        // The value's own position wins over its key's: errors are about values.
        map.spans.insert(path.to_owned(), span);
    }
    Ok(match value {
        V::String(s) => {
            let resolved = subs.apply(s.value()).map_err(|message| map.bad_input(path, message))?;
            map.values.push((path.to_owned(), resolved.clone()));
            Value::String(resolved)
        }
        V::Integer(i) => Value::from(*i.value()),
        V::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(Value::Null, Value::Number),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(d) => Value::String(d.value().to_string()),
        V::Array(array) => {
            let mut out = Vec::new();
            for (i, v) in array.iter().enumerate() {
                out.push(value_to_json(v, &format!("{path}[{i}]"), map, subs)?);
            }
            Value::Array(out)
        }
        V::InlineTable(table) => {
            let mut object = Map::new();
            for (key, v) in table.iter() {
                let child = join(path, key);
                if let Some((k, _)) = table.get_key_value(key) {
                    if let Some(span) = k.span() {
                        map.spans.insert(child.clone(), span);
                    }
                }
                object.insert(key.to_owned(), value_to_json(v, &child, map, subs)?);
            }
            Value::Object(object)
        }
    })
}
