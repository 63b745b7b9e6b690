//! `[state]`: which store keeps the deploy's record, and who the deployer is.

use std::sync::Arc;

use bluegreen_core::config::StateConfig;
use bluegreen_core::deploy_file::{DeployFile, DeployFileError};
use bluegreen_core::{Error, MemoryStore, StateStore};
use serde::Deserialize;

/// The kinds of `[state]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateKind {
    /// A directory of JSON files (default).
    #[default]
    File,
    /// Memory: nothing survives the process.
    Memory,
    /// A DynamoDB table, for deploys run from many machines (feature `dynamodb`).
    Dynamodb,
}

/// `[state]`, read and checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StateSection {
    /// Which store.
    pub kind: StateKind,
    /// The file store's directory and the owner's name.
    pub local: StateConfig,
    /// The DynamoDB store's table and client.
    #[cfg(feature = "dynamodb")]
    pub dynamodb: bluegreen_aws::DynamoDbStateConfig,
}

impl StateSection {
    pub(super) fn read(file: &DeployFile) -> Result<Self, DeployFileError> {
        let mut parts = file.parts("state")?;
        let kind: StateKind = parts.kind_as()?.unwrap_or_default();
        let local: StateConfig = parts.take()?;
        #[cfg(feature = "dynamodb")]
        let dynamodb: bluegreen_aws::DynamoDbStateConfig = parts.take()?;
        parts.finish()?;
        if kind == StateKind::Dynamodb {
            #[cfg(feature = "dynamodb")]
            if dynamodb.check().is_err() {
                return Err(
                    file.error_at("state.kind", "invalid state: kind = \"dynamodb\" needs `table` (the state table)")
                );
            }
            #[cfg(not(feature = "dynamodb"))]
            return Err(file.error_at(
                "state.kind",
                "invalid state.kind: kind = \"dynamodb\" needs the feature(s) dynamodb of bluegreen",
            ));
        }
        Ok(Self {
            kind,
            local,
            #[cfg(feature = "dynamodb")]
            dynamodb,
        })
    }

    /// Opens the store.
    pub async fn open(&self) -> Result<Arc<dyn StateStore>, Error> {
        Ok(match self.kind {
            StateKind::Memory => Arc::new(MemoryStore::new()),
            StateKind::File => Arc::new(self.local.open_file()?),
            #[cfg(feature = "dynamodb")]
            StateKind::Dynamodb => Arc::new(self.dynamodb.open().await.map_err(|e| e.within("state"))?),
            #[cfg(not(feature = "dynamodb"))]
            StateKind::Dynamodb => return Err(Error::invalid("state.kind", "needs the feature `dynamodb`")),
        })
    }
}
