//! Secrets: values that must never be written down or shown — a token from `${env.X}`, a
//! Terraform output marked sensitive, a TSIG key — and what keeps them out.
//!
//! A [`Secrets`] set is filled by whoever learns a secret (the deploy file reader, a backend's
//! configuration) and handed to everything that writes: the executor
//! ([`ExecutorBuilder::secrets`](crate::ExecutorBuilder::secrets)) redacts every event before a
//! sink sees it, the outcome's reason, and every record and event before the state store keeps
//! it; a program redacts its own output and log with [`Secrets::redact`]. What a hook prints is
//! scanned the same way, so `set -x` in a hook shows `***`.
//!
//! Shown, a secret is `***`. Stored, a secret that came from a reference is kept as that
//! reference (`${env.DEPLOY_TOKEN}`), so a resumed deployment or a rollback to a recorded spec
//! resolves it again ([`Secrets::restore`]) — and is refused when it no longer can.
//!
//! ```
//! use bluegreen_core::secrets::Secrets;
//!
//! let secrets = Secrets::new();
//! secrets.add_reference("hunter2-token", "${env.DEPLOY_TOKEN}");
//! assert_eq!(secrets.redact("curl -H 'token: hunter2-token'"), "curl -H 'token: ***'");
//! assert_eq!(secrets.to_stored("--token hunter2-token"), "--token ${env.DEPLOY_TOKEN}");
//! assert_eq!(secrets.restore("--token ${env.DEPLOY_TOKEN}").unwrap(), "--token hunter2-token");
//! assert!(!format!("{secrets:?}").contains("hunter2"));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// What a secret is shown as.
pub const REDACTED: &str = "***";

/// The shortest value kept out of outputs. A shorter one (`80`, `v2`, `yes`) would be found in
/// ordinary text everywhere and is no credential; it is not treated as a secret.
pub const MIN_SECRET_LEN: usize = 4;

/// A set of secrets, shared: clones see the same set, so a log writer made before the deploy
/// file is read redacts what the file brings.
///
/// # Guarantees
/// - [`redact`](Self::redact) replaces every occurrence of every secret of at least
///   [`MIN_SECRET_LEN`] characters, the longest first (a secret that contains another is
///   replaced whole).
/// - Debug output says how many secrets there are, never what they are; values are zeroed when
///   the last clone drops.
///
/// # Assumptions
/// A secret is only recognised as written: an encoding of it (base64, URL-escaped) is not.
#[derive(Clone, Default)]
pub struct Secrets {
    known: Arc<RwLock<Vec<Known>>>,
}

struct Known {
    value: SecretString,
    /// `${env.NAME}` / `${tf.NAME}`: where it came from, what a store keeps in its place.
    reference: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("count", &self.read().len()).finish()
    }
}

impl Secrets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Known>> {
        self.known.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `value`, shown and stored as `***` (a TSIG secret, a password from a config).
    pub fn add(&self, value: &str) {
        self.insert(value, None);
    }

    /// Adds `value`, which came from `reference` (`${env.DEPLOY_TOKEN}`): shown as `***`, stored
    /// as the reference.
    pub fn add_reference(&self, value: &str, reference: &str) {
        self.insert(value, Some(reference.to_owned()));
    }

    fn insert(&self, value: &str, reference: Option<String>) {
        if value.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = known.iter_mut().find(|k| k.value.expose_secret() == value) {
            existing.reference = existing.reference.take().or(reference);
            return;
        }
        known.push(Known { value: SecretString::from(value.to_owned()), reference });
        // Longest first: a secret that contains another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.value.expose_secret().len()));
    }

    /// Adds every secret of `other`.
    pub fn extend(&self, other: &Secrets) {
        if Arc::ptr_eq(&self.known, &other.known) {
            return;
        }
        for k in other.read().iter() {
            self.insert(k.value.expose_secret(), k.reference.clone());
        }
    }

    /// Whether the set is empty (then nothing needs redacting).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// `text` with every secret shown as `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.replace(text, |_| REDACTED)
    }

    /// `text` as a store keeps it: each secret as its reference, or `***` when it has none.
    pub fn to_stored<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.replace(text, |k| k.reference.as_deref().unwrap_or(REDACTED))
    }

    fn replace<'a>(&self, text: &'a str, with: impl Fn(&Known) -> &str) -> Cow<'a, str> {
        let known = self.read();
        let mut out = Cow::Borrowed(text);
        for k in known.iter() {
            let value = k.value.expose_secret();
            if out.contains(value) {
                out = Cow::Owned(out.replace(value, with(k)));
            }
        }
        out
    }

    /// `value` with every string in it (and every object key) redacted as [`redact`](Self::redact) does.
    pub fn redact_json(&self, value: &mut Value) {
        walk(value, &mut |text| self.redact(text).into_owned());
    }

    /// A copy of `item` (an event, a record, an outcome) with every secret in it shown as
    /// `***`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the redacted copy is no longer an `item` (a secret was the whole
    /// of a value that must parse, such as a duration): it must not be written at all.
    pub fn redacted<T: Serialize + DeserializeOwned + Clone>(&self, item: &T) -> Result<T> {
        self.rewritten(item, &mut |text| self.redact(text).into_owned())
    }

    /// A copy of `item` as a store keeps it ([`to_stored`](Self::to_stored) on every string).
    ///
    /// # Errors
    /// As [`redacted`](Self::redacted).
    pub fn stored<T: Serialize + DeserializeOwned + Clone>(&self, item: &T) -> Result<T> {
        self.rewritten(item, &mut |text| self.to_stored(text).into_owned())
    }

    fn rewritten<T: Serialize + DeserializeOwned + Clone>(
        &self,
        item: &T,
        change: &mut dyn FnMut(&str) -> String,
    ) -> Result<T> {
        if self.is_empty() {
            return Ok(item.clone());
        }
        let mut value = serde_json::to_value(item).map_err(|e| Error::invalid("secrets", e.to_string()))?;
        walk(&mut value, change);
        serde_json::from_value(value).map_err(|e| {
            Error::invalid("secrets", format!("a value that must be kept secret is the whole of a field: {e}"))
        })
    }

    /// `text` with its references (`${env.NAME}`, `${tf.NAME}`) resolved again: to the value
    /// this set knows for the reference, else (for `env`) the environment's.
    ///
    /// # Errors
    /// A message naming the reference that cannot be resolved now.
    pub fn restore<'a>(&self, text: &'a str) -> std::result::Result<Cow<'a, str>, String> {
        if !text.contains("${") {
            return Ok(Cow::Borrowed(text));
        }
        let known = self.read();
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start..];
            let Some(end) = after.find('}') else { break };
            let reference = &after[..=end];
            match known.iter().find(|k| k.reference.as_deref() == Some(reference)) {
                Some(k) => out.push_str(k.value.expose_secret()),
                None => match reference[2..end].split_once('.') {
                    Some(("env", name)) => {
                        let value = std::env::var(name)
                            .map_err(|_| format!("{reference} is not set (the environment variable {name})"))?;
                        out.push_str(&value);
                    }
                    Some(("tf", name)) => {
                        return Err(format!("{reference} is unknown: give the terraform output {name} (--tf-outputs)"))
                    }
                    _ => out.push_str(reference),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Cow::Owned(out))
    }

    /// A copy of `item` (a recorded plan or spec) with every reference resolved again.
    ///
    /// # Errors
    /// [`Error::Invalid`] on `field`, naming the first reference that cannot be resolved now.
    pub fn restored<T: Serialize + DeserializeOwned>(&self, item: &T, field: &str) -> Result<T> {
        let mut value = serde_json::to_value(item).map_err(|e| Error::invalid(field, e.to_string()))?;
        let mut failure = None;
        walk(&mut value, &mut |text| match self.restore(text) {
            Ok(restored) => restored.into_owned(),
            Err(message) => {
                failure.get_or_insert(message);
                text.to_owned()
            }
        });
        if let Some(message) = failure {
            return Err(Error::invalid(field, message));
        }
        serde_json::from_value(value).map_err(|e| Error::invalid(field, e.to_string()))
    }
}

/// Changes every string in `value`, object keys included.
fn walk(value: &mut Value, change: &mut dyn FnMut(&str) -> String) {
    match value {
        Value::String(s) => *s = change(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, change)),
        Value::Object(map) => {
            for (key, mut v) in std::mem::take(map) {
                walk(&mut v, change);
                map.insert(change(&key), v);
            }
        }
        _ => {}
    }
}
