//! The table's keys: the partition (`pk`) and sort (`sk`) key of every kind of item (see the
//! layout on [`DynamoDbStore`](crate::DynamoDbStore)), and which strings can be keys.

use std::collections::HashMap;

use bluegreen_core::{Error, Result};

use super::item::{s, Item};

pub(super) fn service_pk(service: &str) -> String {
    format!("service#{service}")
}

pub(super) fn deployment_pk(id: &str) -> String {
    format!("deployment#{id}")
}

pub(super) fn record_sk(id: &str) -> String {
    format!("deployment#{id}")
}

pub(super) fn queue_sk(id: &str) -> String {
    format!("queue#{id}")
}

pub(super) fn command_sk(seq: u64) -> String {
    format!("command#{seq:020}")
}

pub(super) fn event_sk(seq: u64) -> String {
    format!("event#{seq:020}")
}

pub(super) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Keys must be non-empty (DynamoDB refuses empty key strings) and printable.
pub(super) fn check_key(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(char::is_control) || value.len() > 512 {
        return Err(Error::invalid(what, format!("{value:?} cannot be a key: use 1 to 512 printable characters")));
    }
    Ok(())
}
