//! Attribute values: writing them, and reading them back from an item (a format this build
//! reads, attributes of the right type), with [`Error::Corrupt`] naming the item otherwise.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use bluegreen_core::state::FORMAT_VERSION;
use bluegreen_core::{Error, Result};

/// An item, attributes by name.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// A number attribute.
pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The error for item `name`, which cannot be read for `reason`.
pub(super) fn corrupt(name: &str, reason: impl Into<String>) -> Error {
    Error::Corrupt { path: name.to_owned(), reason: reason.into() }
}

/// Attribute `attr` of item `name`, a whole number.
pub(super) fn num(item: &Item, attr: &str, name: &str) -> Result<u64> {
    let value = item.get(attr).ok_or_else(|| corrupt(name, format!("no {attr} attribute")))?;
    value
        .as_n()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(name, format!("{attr} is not a whole number: {value:?}")))
}

/// Attribute `attr` of item `name`, a string.
pub(super) fn string(item: &Item, attr: &str, name: &str) -> Result<String> {
    let value = item.get(attr).ok_or_else(|| corrupt(name, format!("no {attr} attribute")))?;
    value.as_s().cloned().map_err(|_| corrupt(name, format!("{attr} is not a string: {value:?}")))
}

/// Item `name` is of a format this build reads.
pub(super) fn check_version(item: &Item, name: &str) -> Result<()> {
    let version = num(item, "format_version", name)?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(corrupt(
            name,
            format!("written by a newer bluegreen (format {version}; this build reads up to {FORMAT_VERSION})"),
        ));
    }
    Ok(())
}
