//! Where each value of a deploy file came from, and the TOML → JSON conversion that records it
//! (resolving `${…}` references on the way).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use toml_edit::{Item, Table};

use super::{DeployFileError, Position, Substitutions};
use crate::secrets::Secrets;

/// A deploy file's text and, by JSON path (`strategy.steps[0].bake`), the byte range of each
/// key and value in it.
#[derive(Clone, Default)]
pub(super) struct SourceMap {
    pub(super) file: PathBuf,
    pub(super) text: String,
    pub(super) spans: BTreeMap<String, Range<usize>>,
    /// Every string value as resolved (`${…}` replaced), by its path.
    pub(super) values: Vec<(String, String)>,
    /// The secrets the references brought.
    pub(super) secrets: Secrets,
    /// References left unresolved (lenient reading), by the path of their value.
    pub(super) unresolved: Vec<(String, String)>,
}

/// Fields whose value, when it is one reference as a whole, is not a secret: they name the
/// deployment in every record, event and table.
const NAMES: [&str; 2] = ["service", "version"];

impl SourceMap {
    pub(super) fn new(file: &Path, text: &str) -> Self {
        Self { file: file.to_owned(), text: text.to_owned(), ..Self::default() }
    }

    /// The line and column of a byte offset.
    pub(super) fn at(&self, offset: usize) -> Position {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }

    /// The position of `path`, or of its closest known parent (else the file's start).
    pub(super) fn locate(&self, path: &str) -> Position {
        let mut probe = path.to_owned();
        loop {
            if let Some(span) = self.spans.get(&probe) {
                return self.at(span.start);
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe.truncate(i),
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// An error about the value at `path` (serde's unknown keys: at the key itself).
    pub(super) fn error_at(&self, path: &str, message: impl std::fmt::Display) -> DeployFileError {
        let message = message.to_string();
        let path = match message.split_once("unknown field `").and_then(|(_, rest)| rest.split_once('`')) {
            Some((key, _)) if self.spans.contains_key(&join(path, key)) => join(path, key),
            _ => path.to_owned(),
        };
        DeployFileError {
            file: self.file.clone(),
            position: Some(self.locate(&path)),
            field: Some(path),
            message,
            cause: None,
        }
    }

    pub(super) fn table_to_json(
        &mut self,
        table: &Table,
        path: &str,
        subs: &Substitutions,
    ) -> Result<Value, DeployFileError> {
        let mut object = Map::new();
        for (key, item) in table.iter() {
            let child = join(path, key);
            self.key_span(table.get_key_value(key).map(|(k, _)| k), &child);
            object.insert(key.to_owned(), self.item_to_json(item, &child, subs)?);
        }
        Ok(Value::Object(object))
    }

    fn key_span(&mut self, key: Option<&toml_edit::Key>, path: &str) {
        if let Some(span) = key.and_then(toml_edit::Key::span) {
            self.spans.insert(path.to_owned(), span);
        }
    }

    fn item_to_json(&mut self, item: &Item, path: &str, subs: &Substitutions) -> Result<Value, DeployFileError> {
        match item {
            Item::None => Ok(Value::Null),
            Item::Value(value) => self.value_to_json(value, path, subs),
            Item::Table(table) => self.table_to_json(table, path, subs),
            Item::ArrayOfTables(array) => {
                let mut out = Vec::new();
                for (i, table) in array.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    if let Some(span) = table.span() {
                        self.spans.insert(child.clone(), span);
                    }
                    out.push(self.table_to_json(table, &child, subs)?);
                }
                Ok(Value::Array(out))
            }
        }
    }

    fn value_to_json(
        &mut self,
        value: &toml_edit::Value,
        path: &str,
        subs: &Substitutions,
    ) -> Result<Value, DeployFileError> {
        use toml_edit::Value as V;
        if let Some(span) = value.span() {
            // The value's own position wins over its key's: errors are about values.
            self.spans.insert(path.to_owned(), span);
        }
        Ok(match value {
            V::String(s) => {
                let (text, references) = subs.apply(s.value()).map_err(|message| self.error_at(path, message))?;
                for r in references.iter().filter(|r| r.value.is_none()) {
                    self.unresolved.push((path.to_owned(), r.reference.clone()));
                }
                if is_command(path) {
                    // A reference's value lands in `sh -c` as it is: it must stay one word.
                    let unsafe_value = references
                        .iter()
                        .find_map(|r| r.value.as_deref().and_then(crate::shell::not_a_plain_word).map(|why| (r, why)));
                    if let Some((r, why)) = unsafe_value {
                        return Err(self.error_at(
                            path,
                            format!(
                                "invalid {path}: the value of {}: {why} (a command can read other values from \
                                 its environment, which it inherits)",
                                r.reference
                            ),
                        ));
                    }
                }
                let a_name =
                    NAMES.contains(&path) && references.len() == 1 && references[0].value.as_deref() == Some(&text);
                for r in references.iter().filter(|r| r.secret && !a_name) {
                    if let Some(value) = &r.value {
                        self.secrets.add_reference(value, &r.reference);
                    }
                }
                self.values.push((path.to_owned(), text.clone()));
                Value::String(text)
            }
            V::Integer(i) => Value::from(*i.value()),
            V::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(Value::Null, Value::Number),
            V::Boolean(b) => Value::Bool(*b.value()),
            V::Datetime(d) => Value::String(d.value().to_string()),
            V::Array(array) => {
                let mut out = Vec::new();
                for (i, v) in array.iter().enumerate() {
                    out.push(self.value_to_json(v, &format!("{path}[{i}]"), subs)?);
                }
                Value::Array(out)
            }
            V::InlineTable(table) => {
                let mut object = Map::new();
                for (key, v) in table.iter() {
                    let child = join(path, key);
                    self.key_span(table.get_key_value(key).map(|(k, _)| k), &child);
                    object.insert(key.to_owned(), self.value_to_json(v, &child, subs)?);
                }
                Value::Object(object)
            }
        })
    }
}

/// Whether the value at `path` is a shell command line (a hook's command, a host updater).
fn is_command(path: &str) -> bool {
    path == "backend.updater" || (path.starts_with("hooks[") && path.ends_with("].command"))
}

/// `prefix.key`, or `key` at the top.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}
