//! The deploy file (feature `deploy-file`): TOML whose top level is a [`Spec`], plus tables
//! for the program that reads it (the command's `[backend]` and `[state]`). Every error points
//! at `file:line:column` and names the field.
//!
//! String values may use `${env.NAME}` (an environment variable) and `${tf.NAME}` (an output
//! of `terraform output -json`, see [`Substitutions::with_tf_outputs`]). Every value from the
//! environment and every Terraform output marked sensitive is a secret
//! ([`DeployFile::secrets`]), except where the whole `service` or `version` is one reference:
//! those name the deployment everywhere and are not secret.
//!
//! [`DeployFile::parse`] checks the spec ([`Spec::validate`]) and keeps the other tables as
//! JSON for the configs that read them: [`DeployFile::section`] deserializes one table into one
//! type, [`DeployFile::parts`] one table into several (a router's, a fleet's and a probe's
//! settings side by side in `[backend]`), refusing a key none of them takes. Errors that come
//! later, from a builder or a backend, are pointed back at the file with [`DeployFile::locate`].
//!
//! ```
//! use bluegreen_core::deploy_file::{DeployFile, Substitutions};
//!
//! let text = "service = \"web\"\nversion = \"v2\"\n\n[strategy]\nkind = \"rolling\"\nbatch = \"two\"\n";
//! let error = DeployFile::parse("deploy.toml".as_ref(), text, &Substitutions::new(), None).unwrap_err();
//! assert!(error.to_string().starts_with("deploy.toml:6:9: invalid strategy.batch"), "{error}");
//! assert_eq!(error.field.as_deref(), Some("strategy.batch"));
//! ```

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use toml_edit::Document;

use crate::error::Error;
use crate::secrets::Secrets;
use crate::spec::Spec;
use source::{join, SourceMap};

/// A line and a column (both from 1; the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

/// A refusal of a deploy file, or a later error pointed at it: displays as
/// `file:line:column: message` (`file: message` when no place in the file is at fault).
#[derive(Debug)]
#[non_exhaustive]
pub struct DeployFileError {
    /// The file.
    pub file: PathBuf,
    /// Where in it, when one place is at fault.
    pub position: Option<Position>,
    /// The field at fault, as a path (`backend.hosts[0].address`), when one is.
    pub field: Option<String>,
    /// What is wrong (`invalid strategy.batch: …`).
    pub message: String,
    cause: Option<Box<Error>>,
}

impl DeployFileError {
    /// The library error this locates ([`DeployFile::locate`], [`DeployFile::invalid`]); `None`
    /// when the file itself is refused (syntax, types, unknown keys, references).
    pub fn cause(&self) -> Option<&Error> {
        self.cause.as_deref()
    }

    /// An error about the file as a whole (no position).
    fn whole(file: &Path, message: String, cause: Option<Error>) -> Self {
        Self { file: file.to_owned(), position: None, field: None, message, cause: cause.map(Box::new) }
    }
}

impl fmt::Display for DeployFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(Position { line, column }) => write!(f, "{}:{line}:{column}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for DeployFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Values substituted into `${…}` references: `${env.NAME}` reads the environment,
/// `${tf.NAME}` the terraform outputs given here. Debug output names the outputs, never their
/// values (they may be secrets).
#[derive(Default, Clone)]
pub struct Substitutions {
    tf: BTreeMap<String, TfOutput>,
    /// Leave a reference that cannot be resolved as it is written ([`Self::leave_unresolved`]).
    lenient: bool,
}

#[derive(Clone)]
struct TfOutput {
    value: String,
    sensitive: bool,
}

/// One reference in a value: `${env.NAME}` and what it stood for, and whether that is a
/// secret; `None` when it was left unresolved.
struct Resolved {
    reference: String,
    value: Option<String>,
    secret: bool,
}

impl fmt::Debug for Substitutions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Substitutions").field("tf", &self.tf.keys().collect::<Vec<_>>()).finish()
    }
}

impl Substitutions {
    /// No terraform outputs: `${env.NAME}` only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `terraform output -json` from `path`.
    pub fn with_tf_outputs(path: &Path) -> Result<Self, DeployFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeployFileError::whole(path, format!("cannot read terraform outputs: {e}"), None))?;
        let outputs: Map<String, Value> = serde_json::from_str(&text).map_err(|e| DeployFileError {
            file: path.to_owned(),
            position: Some(Position { line: e.line(), column: e.column() }),
            field: None,
            message: format!("not terraform output -json: {e}"),
            cause: None,
        })?;
        let mut subs = Self::new();
        for (name, output) in outputs {
            // `"sensitive": true` as Terraform writes it; anything else is not sensitive.
            let sensitive = output.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
            let value = output.get("value").cloned().unwrap_or(output);
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            subs.tf.insert(name, TfOutput { value: text, sensitive });
        }
        Ok(subs)
    }

    /// Leaves a reference that cannot be resolved (an unset variable, a missing output) as it
    /// is written instead of refusing the file, and skips the spec's checks: for reading a
    /// file's `service` and `[state]` only — `status` and `history` need no backend secret.
    /// [`DeployFile::require_resolved`] refuses what must be resolved after all.
    #[must_use]
    pub fn leave_unresolved(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Adds (or replaces) the terraform output `name`, not sensitive.
    pub fn tf_output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.tf.insert(name.into(), TfOutput { value: value.into(), sensitive: false });
        self
    }

    /// Adds (or replaces) the terraform output `name`, marked sensitive: a secret.
    pub fn sensitive_tf_output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.tf.insert(name.into(), TfOutput { value: value.into(), sensitive: true });
        self
    }

    /// Replaces every `${env.X}` / `${tf.X}` in `text`, with what each stood for; the error
    /// names the unresolved one.
    fn apply(&self, text: &str) -> Result<(String, Vec<Resolved>), String> {
        let mut out = String::new();
        let mut resolved = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed reference in {text:?}"))?;
            let reference = &after[..end];
            let found = match reference.split_once('.') {
                Some(("env", name)) => std::env::var(name)
                    .map(|value| (value, true))
                    .map_err(|_| format!("environment variable {name} is not set (${{{reference}}})")),
                Some(("tf", name)) => self.tf.get(name).map(|o| (o.value.clone(), o.sensitive)).ok_or_else(|| {
                    if self.tf.is_empty() {
                        format!("${{{reference}}} needs --tf-outputs FILE (terraform output -json)")
                    } else {
                        format!("terraform output {name} does not exist (${{{reference}}})")
                    }
                }),
                _ => return Err(format!("unknown reference ${{{reference}}}: use ${{env.NAME}} or ${{tf.NAME}}")),
            };
            let written = format!("${{{reference}}}");
            match found {
                Ok((value, secret)) => {
                    out.push_str(&value);
                    resolved.push(Resolved { reference: written, value: Some(value), secret });
                }
                Err(_) if self.lenient => {
                    out.push_str(&written);
                    resolved.push(Resolved { reference: written, value: None, secret: false });
                }
                Err(message) => return Err(message),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok((out, resolved))
    }
}

/// A read deploy file: its [`Spec`] (parsed and validated) and its other tables, with where
/// each value is in the file. Debug output shows the spec and the tables' keys, never their
/// values (`${env.X}` may have put a secret there).
#[derive(Clone)]
pub struct DeployFile {
    /// The spec: the file's top level without `[backend]` and `[state]`.
    pub spec: Spec,
    /// The `[backend]` table (`{}` when there is none), references resolved.
    pub backend: Value,
    /// The `[state]` table (`{}` when there is none), references resolved.
    pub state: Value,
    source: SourceMap,
}

impl fmt::Debug for DeployFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        f.debug_struct("DeployFile")
            .field("file", &self.source.file)
            .field("spec", &self.spec)
            .field("backend", &keys(&self.backend))
            .field("state", &keys(&self.state))
            .finish_non_exhaustive()
    }
}

impl DeployFile {
    /// Reads and checks the deploy file at `path`; `version`, if given, replaces its `version`.
    pub fn load(path: &Path, subs: &Substitutions, version: Option<&str>) -> Result<Self, DeployFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeployFileError::whole(path, format!("cannot read the deploy file: {e}"), None))?;
        Self::parse(path, &text, subs, version)
    }

    /// Parses and checks a deploy file's text (`path` names it in errors).
    pub fn parse(
        path: &Path,
        text: &str,
        subs: &Substitutions,
        version: Option<&str>,
    ) -> Result<Self, DeployFileError> {
        let mut source = SourceMap::new(path, text);
        let document = Document::parse(text).map_err(|e| DeployFileError {
            file: path.to_owned(),
            position: Some(source.at(e.span().map_or(0, |s| s.start))),
            field: None,
            message: format!("TOML syntax error: {}", e.message()),
            cause: None,
        })?;
        let mut root = source.table_to_json(document.as_table(), "", subs)?;
        let object = root.as_object_mut().expect("a document is a table");
        let backend = object.remove("backend").unwrap_or_else(|| Value::Object(Map::new()));
        let state = object.remove("state").unwrap_or_else(|| Value::Object(Map::new()));
        if let Some(v) = version {
            object.insert("version".into(), Value::String(v.to_owned()));
        }
        let spec = Spec::from_value(&root).map_err(|e| source.invalid(e))?;
        if !subs.lenient {
            spec.validate().map_err(|e| source.invalid(e))?;
        }
        Ok(Self { spec, backend, state, source })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.source.file
    }

    /// Refuses the first reference left unresolved ([`Substitutions::leave_unresolved`]) in a
    /// field at or under one of `paths` (`service`, `state`), at its line.
    pub fn require_resolved(&self, paths: &[&str]) -> Result<(), DeployFileError> {
        let under = |field: &str| {
            paths
                .iter()
                .any(|p| field == *p || field.starts_with(&format!("{p}.")) || field.starts_with(&format!("{p}[")))
        };
        match self.source.unresolved.iter().find(|(field, _)| under(field)) {
            Some((field, reference)) => {
                Err(self.error_at(field, format!("invalid {field}: {reference} cannot be resolved (not set)")))
            }
            None => Ok(()),
        }
    }

    /// The secrets its references brought: every `${env.X}` value and every sensitive
    /// `${tf.X}` (each stored as its reference), but a `service` or `version` that is one
    /// reference. Hand them to the executor
    /// ([`ExecutorBuilder::secrets`](crate::ExecutorBuilder::secrets)) and redact the
    /// program's own output with them; a backend's configuration adds its own (a TSIG key).
    pub fn secrets(&self) -> &Secrets {
        &self.source.secrets
    }

    /// An error about the value at `field` (a path such as `backend.hosts[0]`), at its line,
    /// or its closest parent's. A message of serde's naming an unknown key points at that key.
    pub fn error_at(&self, field: &str, message: impl fmt::Display) -> DeployFileError {
        self.source.error_at(field, message)
    }

    /// A refusal from the library (`Error::Invalid` naming a field as a path in this file) at
    /// that field's line; other errors are about the whole file.
    pub fn invalid(&self, error: Error) -> DeployFileError {
        self.source.invalid(error)
    }

    /// Points an error that came later (a plan refused for the backends' state, a resource the
    /// backend does not have) at the file: `Error::Invalid` at its field; `NotFound` and
    /// `Drift` at the value the message quotes (an ARN, a backend name), if it quotes one of
    /// the file's values. Any other error is given back unchanged.
    pub fn locate(&self, error: Error) -> Result<DeployFileError, Error> {
        match &error {
            Error::Invalid { .. } => Ok(self.invalid(error)),
            Error::NotFound { .. } | Error::Drift { .. } => {
                let message = error.to_string();
                let quoted = self
                    .source
                    .values
                    .iter()
                    .filter(|(_, value)| value.len() >= 8 && message.contains(value.as_str()))
                    .max_by_key(|(_, value)| value.len());
                match quoted {
                    Some((path, _)) => {
                        let mut located = self.error_at(path, format!("{path}: {message}"));
                        located.cause = Some(Box::new(error));
                        Ok(located)
                    }
                    None => Err(error),
                }
            }
            _ => Err(error),
        }
    }

    /// Deserializes the table `name` (`state`, `backend`) into one `T`, naming the field at
    /// fault (`invalid state.kind: unknown variant …`).
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, DeployFileError> {
        let value = self.table(name).clone();
        serde_path_to_error::deserialize(value).map_err(|e| self.serde_error(name, e))
    }

    /// The table `name` (`backend`, `state`) to be read as several parts side by side: its
    /// `kind` (the dispatch key, which no part sees), then [`Parts::take`] for each part and
    /// [`Parts::finish`] to refuse the keys no part took.
    pub fn parts(&self, name: &str) -> Result<Parts<'_>, DeployFileError> {
        match self.table(name) {
            Value::Object(table) => {
                let mut table = table.clone();
                let kind = table.remove("kind");
                Ok(Parts { file: self, name: name.to_owned(), kind, table, taken: BTreeSet::new(), fields: Vec::new() })
            }
            _ => Err(self.error_at(name, format!("invalid {name}: expected a table"))),
        }
    }

    fn table(&self, name: &str) -> &Value {
        match name {
            "backend" => &self.backend,
            "state" => &self.state,
            _ => &Value::Null,
        }
    }

    fn serde_error(&self, name: &str, e: serde_path_to_error::Error<serde_json::Error>) -> DeployFileError {
        let inner = e.path().to_string();
        let path = if inner == "." { name.to_owned() } else { format!("{name}.{inner}") };
        self.error_at(&path, format!("invalid {path}: {}", e.inner()))
    }
}

impl SourceMap {
    fn invalid(&self, error: Error) -> DeployFileError {
        match &error {
            Error::Invalid { field, reason } => {
                let mut located = self.error_at(field, format!("invalid {field}: {reason}"));
                located.cause = Some(Box::new(error));
                located
            }
            other => DeployFileError::whole(&self.file, other.to_string(), Some(error)),
        }
    }
}

/// One table of a deploy file read as several parts (see [`DeployFile::parts`]): each part
/// is a serde type without `deny_unknown_fields` that takes the keys it knows; a key that no
/// part takes is refused, at its line, with serde's own message (`unknown field `x`, expected
/// one of …`, listing every part's fields).
pub struct Parts<'a> {
    file: &'a DeployFile,
    name: String,
    kind: Option<Value>,
    table: Map<String, Value>,
    taken: BTreeSet<String>,
    fields: Vec<&'static str>,
}

impl Parts<'_> {
    /// The table's `kind`, as it is written (`None` when absent).
    pub fn kind(&self) -> Option<&Value> {
        self.kind.as_ref()
    }

    /// The table's `kind` as `T` (an enum of the kinds), naming `kind` in errors; `None` when
    /// absent.
    pub fn kind_as<T: DeserializeOwned>(&mut self) -> Result<Option<T>, DeployFileError> {
        self.fields.push("kind");
        let Some(kind) = self.kind.clone() else { return Ok(None) };
        let path = join(&self.name, "kind");
        serde_path_to_error::deserialize(kind).map(Some).map_err(|e| self.file.serde_error(&path, e))
    }

    /// Deserializes the whole table as `T`, which takes the keys it knows.
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<T, DeployFileError> {
        let mut ignored = BTreeSet::new();
        let mut track = serde_path_to_error::Track::new();
        let value = Value::Object(self.table.clone());
        let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
        let result = serde_ignored::deserialize(tracked, |path| {
            if let serde_ignored::Path::Map { parent: serde_ignored::Path::Root, key } = path {
                ignored.insert(key);
            }
        });
        let part: T =
            result.map_err(|e| self.file.serde_error(&self.name, serde_path_to_error::Error::new(track.path(), e)))?;
        self.taken.extend(self.table.keys().filter(|k| !ignored.contains(*k)).cloned());
        self.fields.extend(field_names::<T>());
        Ok(part)
    }

    /// Deserializes the value of `key` (a nested table such as `probe`) as `T`; `None` when
    /// the table has no such key.
    pub fn field<T: DeserializeOwned>(&mut self, key: &'static str) -> Result<Option<T>, DeployFileError> {
        self.fields.push(key);
        self.taken.insert(key.to_owned());
        let Some(value) = self.table.get(key) else { return Ok(None) };
        let path = join(&self.name, key);
        serde_path_to_error::deserialize(value.clone()).map(Some).map_err(|e| self.file.serde_error(&path, e))
    }

    /// Like [`Parts::field`], refusing a missing key as serde does (`missing field `probe``).
    pub fn required<T: DeserializeOwned>(&mut self, key: &'static str) -> Result<T, DeployFileError> {
        self.field(key)?.ok_or_else(|| {
            let name = &self.name;
            self.file.error_at(name, format!("invalid {name}: missing field `{key}`"))
        })
    }

    /// Refuses the first key (in the table's order) that no part took.
    pub fn finish(self) -> Result<(), DeployFileError> {
        let Some(key) = self.table.keys().find(|k| !self.taken.contains(*k)) else { return Ok(()) };
        let mut fields = self.fields;
        fields.dedup();
        let expected = match fields.as_slice() {
            [] => "there are no fields".to_owned(),
            [one] => format!("`{one}`"),
            [a, b] => format!("`{a}` or `{b}`"),
            many => format!("one of {}", many.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")),
        };
        let name = &self.name;
        Err(self.file.error_at(name, format!("invalid {name}: unknown field `{key}`, expected {expected}")))
    }
}

/// The field names serde gives a struct type (empty for other types).
fn field_names<T: DeserializeOwned>() -> Vec<&'static str> {
    use serde::de::{self, Visitor};

    struct Names(Vec<&'static str>);
    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(Vec::new());
    let _ = T::deserialize(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Router {
        address: String,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Fleet {
        #[serde(default)]
        hosts: Vec<String>,
    }

    const TEXT: &str = "service = \"web\"\nversion = \"v2\"\n\n[strategy]\nkind = \"blue_green\"\n\n[backend]\nkind = \"x\"\naddress = \"a\"\nhosts = [\"h\"]\n";

    fn file(extra: &str) -> DeployFile {
        let text = format!("{TEXT}{extra}");
        DeployFile::parse(Path::new("d.toml"), &text, &Substitutions::new(), None).unwrap()
    }

    #[test]
    fn parts_share_one_table_and_a_key_no_part_takes_is_refused_at_its_line() {
        let f = file("");
        let mut parts = f.parts("backend").unwrap();
        let router: Router = parts.take().unwrap();
        let fleet: Fleet = parts.take().unwrap();
        parts.finish().unwrap();
        assert_eq!((router.address.as_str(), fleet.hosts.len()), ("a", 1));

        let f = file("adress = \"b\"\n");
        let mut parts = f.parts("backend").unwrap();
        let _: Router = parts.take().unwrap();
        let _: Fleet = parts.take().unwrap();
        let error = parts.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            "d.toml:11:10: invalid backend: unknown field `adress`, expected `address` or `hosts`"
        );
        assert_eq!(error.field.as_deref(), Some("backend.adress"));
    }

    #[test]
    fn a_part_error_names_the_field_and_references_resolve() {
        let f = file("");
        let mut parts = f.parts("backend").unwrap();
        let error = parts.required::<Router>("probe").unwrap_err();
        assert_eq!(error.to_string(), "d.toml:7:2: invalid backend: missing field `probe`");
        let subs = Substitutions::new().tf_output("addr", "10.0.0.1");
        let text = TEXT.replace("\"a\"", "\"${tf.addr}\"");
        let f = DeployFile::parse(Path::new("d.toml"), &text, &subs, None).unwrap();
        assert_eq!(f.backend["address"], "10.0.0.1");
        assert!(!format!("{f:?} {subs:?}").contains("10.0.0.1"), "values stay out of Debug");
        assert!(f.secrets().is_empty(), "an output not marked sensitive is no secret");
    }

    #[test]
    fn read_for_its_records_a_file_may_leave_references_outside_what_is_required() {
        let text = TEXT.replace("\"a\"", "\"${env.BLUEGREEN_TEST_UNSET_SECRET}\"")
            + "\n[state]\npath = \"${env.BLUEGREEN_TEST_UNSET_DIR}\"\n";
        let subs = Substitutions::new();
        let refused = DeployFile::parse(Path::new("d.toml"), &text, &subs, None).unwrap_err();
        assert!(refused.to_string().contains("BLUEGREEN_TEST_UNSET_SECRET"), "{refused}");
        let lenient = subs.leave_unresolved();
        let f = DeployFile::parse(Path::new("d.toml"), &text, &lenient, None).unwrap();
        assert_eq!(f.backend["address"], "${env.BLUEGREEN_TEST_UNSET_SECRET}");
        f.require_resolved(&["service"]).unwrap();
        let error = f.require_resolved(&["service", "state"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "d.toml:13:8: invalid state.path: ${env.BLUEGREEN_TEST_UNSET_DIR} cannot be resolved (not set)"
        );
    }

    #[test]
    fn environment_values_and_sensitive_outputs_are_secrets_but_a_whole_service_or_version_is_not() {
        std::env::set_var("BLUEGREEN_TEST_SECRET_TOKEN", "env-token-value");
        std::env::set_var("BLUEGREEN_TEST_SECRET_VERSION", "v2-from-env");
        let subs = Substitutions::new().sensitive_tf_output("key", "tf-key-value").tf_output("plain", "plain-value");
        let text = TEXT
            .replace("\"v2\"", "\"${env.BLUEGREEN_TEST_SECRET_VERSION}\"")
            .replace("\"a\"", "\"${tf.plain}/${tf.key}?t=${env.BLUEGREEN_TEST_SECRET_TOKEN}\"");
        let f = DeployFile::parse(Path::new("d.toml"), &text, &subs, None).unwrap();
        assert_eq!(f.backend["address"], "plain-value/tf-key-value?t=env-token-value");
        assert_eq!(f.spec.version.to_string(), "v2-from-env");
        let address = f.backend["address"].as_str().unwrap();
        assert_eq!(f.secrets().redact(address), "plain-value/***?t=***");
        assert_eq!(f.secrets().to_stored(address), "plain-value/${tf.key}?t=${env.BLUEGREEN_TEST_SECRET_TOKEN}");
        assert_eq!(f.secrets().redact("v2-from-env"), "v2-from-env", "a version from the environment shows");
    }
}
