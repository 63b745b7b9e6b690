//! The calls to DynamoDB: a consistent get, a paged query, and conditional writes and
//! transactions that report a failed condition as an answer, not an error.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use bluegreen_core::state::FORMAT_VERSION;
use bluegreen_core::{Error, Result};

use super::item::{n, s, Item};
use super::keys::key;
use super::DynamoDbStore;
use crate::error::AwsError;

/// How often a conditional write lost to a concurrent writer is tried again before giving up
/// with a retryable error.
pub(super) const MAX_RACES: usize = 16;

impl DynamoDbStore {
    /// How errors name the table (`table NAME`).
    fn table_name(&self) -> String {
        format!("table {}", self.table)
    }

    /// Item (`pk`, `sk`), read consistently; `None` if there is none.
    pub(super) async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", &self.item_name(pk, sk), e))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key lies in `[from, to]`, in sort-key order.
    pub(super) async fn query(
        &self,
        pk: &str,
        from: &str,
        to: &str,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk("dynamodb:Query", &format!("{} partition {pk}", self.table_name()), e)
                })?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if limit.is_none_or(|l| items.len() < l as usize) => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// Runs a transaction: `Ok(false)` if one of its conditions did not hold.
    pub(super) async fn transact(
        &self,
        action: &'static str,
        resource: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<bool> {
        let call = self.client.transact_write_items().set_transact_items(Some(items)).send();
        Ok(Self::conditional(action, resource, call).await?.is_some())
    }

    /// Runs a conditional write: `Ok(false)` if its condition did not hold.
    pub(super) async fn conditional<T, E>(
        action: &'static str,
        resource: &str,
        call: impl std::future::Future<Output = std::result::Result<T, aws_sdk_dynamodb::error::SdkError<E>>>,
    ) -> Result<Option<T>>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match call.await {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                let err = AwsError::from_sdk(action, resource, e);
                if err.is_condition_failed() {
                    Ok(None)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// A transaction's put under `condition`, which may compare `#fv` with `:fv` (this build's
    /// format version).
    pub(super) fn put(&self, item: Item, condition: &str) -> Result<Put> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        if condition.contains(":fv") {
            put = put
                .expression_attribute_names("#fv", "format_version")
                .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        }
        put.build().map_err(|e| Error::permanent("aws", format!("cannot build a DynamoDB put: {e}")))
    }
}
