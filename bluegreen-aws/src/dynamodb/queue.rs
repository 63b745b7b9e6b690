//! The queue of deployments waiting for a service's lock: entries numbered by a counter item,
//! refreshed in place while alive, dropped once expired.

use std::time::Duration;

use aws_sdk_dynamodb::types::ReturnValue;
use bluegreen_core::state::lease::millis as ms;
use bluegreen_core::state::FORMAT_VERSION;
use bluegreen_core::Result;

use super::item::{check_version, n, num, s, string};
use super::keys::{check_key, key, queue_sk, service_pk};
use super::DynamoDbStore;
use crate::error::AwsError;

const QUEUE_SEQ_SK: &str = "queue-seq";

impl DynamoDbStore {
    /// Puts deployment `id` in `service`'s queue (or refreshes its entry) for `ttl`, and lists
    /// the live entries in order of arrival.
    pub(super) async fn join_queue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        check_key("service", service)?;
        check_key("deployment id", id)?;
        let pk = service_pk(service);
        let sk = queue_sk(id);
        let name = self.item_name(&pk, &sk);
        let now = self.now();
        let expires = now + ms(ttl);
        // A live entry is refreshed in place and keeps its place in line.
        let refresh = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, &sk)))
            .update_expression("SET #exp = :exp")
            .condition_expression("attribute_exists(pk) AND #exp > :now AND #fv <= :fv")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#fv", "format_version")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        if Self::conditional("dynamodb:UpdateItem", &name, refresh.send()).await?.is_none() {
            // A new entry (or an expired one, which goes to the back): take the next number.
            let counter = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(&pk, QUEUE_SEQ_SK)))
                .update_expression("ADD #n :one")
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", &self.item_name(&pk, QUEUE_SEQ_SK), e))?;
            let counter_name = self.item_name(&pk, QUEUE_SEQ_SK);
            let seq = num(&counter.attributes.unwrap_or_default(), "n", &counter_name)?;
            let mut item = key(&pk, &sk);
            item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
            item.insert("id".into(), s(id));
            item.insert("seq".into(), n(seq));
            item.insert("expires_at".into(), n(expires));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR (#exp <= :now AND #fv <= :fv)")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_names("#fv", "format_version")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
            // Refused only if the same id was enqueued concurrently (or the entry is of a newer
            // format, which the listing below reports): either way the entry is there.
            Self::conditional("dynamodb:PutItem", &name, put.send()).await?;
        }
        let mut waiting = Vec::new();
        for item in self.query(&pk, "queue#", "queue#\u{10FFFF}", false, None).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let name = self.item_name(&pk, &sk);
            check_version(&item, &name)?;
            let entry_expires = num(&item, "expires_at", &name)?;
            if entry_expires <= now {
                self.drop_expired(&pk, &sk, now).await?;
                continue;
            }
            waiting.push((num(&item, "seq", &name)?, string(&item, "id", &name)?));
        }
        waiting.sort();
        Ok(waiting.into_iter().map(|(_, id)| id).collect())
    }

    /// Takes deployment `id` out of `service`'s queue.
    pub(super) async fn leave_queue(&self, service: &str, id: &str) -> Result<()> {
        check_key("service", service)?;
        check_key("deployment id", id)?;
        let pk = service_pk(service);
        let sk = queue_sk(id);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, &sk)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", &self.item_name(&pk, &sk), e))?;
        Ok(())
    }

    /// Deletes queue entries that expired (conditioned on their still being expired).
    async fn drop_expired(&self, pk: &str, sk: &str, now: u64) -> Result<()> {
        let name = self.item_name(pk, sk);
        Self::conditional(
            "dynamodb:DeleteItem",
            &name,
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, sk)))
                .condition_expression("#exp <= :now")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_values(":now", n(now))
                .send(),
        )
        .await?;
        Ok(())
    }
}
