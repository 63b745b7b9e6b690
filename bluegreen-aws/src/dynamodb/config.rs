//! [`DynamoDbStateConfig`]: the serde settings of a [`DynamoDbStore`] (a deploy file's
//! `[state]` with `kind = "dynamodb"`).

use bluegreen_core::{Error, Result};
use serde::Deserialize;

use super::DynamoDbStore;
use crate::AwsSettings;

/// A state store on one DynamoDB table. Read with serde (unknown keys are left to the caller,
/// which may share the table with other stores' settings).
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct DynamoDbStateConfig {
    /// The table (`pk` and `sk` string keys; see docs/aws.md).
    #[serde(default)]
    pub table: Option<String>,
    /// `[state.aws]`: where the client connects.
    #[serde(default)]
    pub aws: AwsSettings,
}

impl DynamoDbStateConfig {
    /// Refuses settings without a table (`Error::Invalid` on `table`).
    pub fn check(&self) -> Result<&str> {
        self.table.as_deref().ok_or_else(|| Error::invalid("table", "missing: the state table's name"))
    }

    /// The store (no call is made until it is used).
    pub async fn open(&self) -> Result<DynamoDbStore> {
        let table = self.check()?;
        Ok(DynamoDbStore::new(&self.aws.load().await, table))
    }
}
