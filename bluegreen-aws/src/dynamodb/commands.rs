//! The command log of a deployment: commands numbered without gaps by a put conditioned on the
//! next number being free.

use bluegreen_core::state::{Command, CommandRecord, FORMAT_VERSION};
use bluegreen_core::{Error, Result};

use super::access::MAX_RACES;
use super::item::{corrupt, n, num, s, string};
use super::keys::{check_key, command_sk, deployment_pk, key};
use super::DynamoDbStore;

impl DynamoDbStore {
    /// Appends `command` to deployment `id`'s log under the next number, which it returns.
    pub(super) async fn send_command(&self, id: &str, command: Command) -> Result<u64> {
        if self.service_of(id).await?.is_none() {
            return Err(Error::not_found(format!("deployment {id}")));
        }
        let pk = deployment_pk(id);
        let text = serde_json::to_value(command).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        for _ in 0..MAX_RACES {
            let last = self.query(&pk, &command_sk(0), &command_sk(u64::MAX), true, Some(1)).await?;
            let last_seq = match last.first() {
                Some(item) => num(item, "seq", &self.item_name(&pk, "command#…"))?,
                None => 0,
            };
            let seq = last_seq + 1;
            let mut item = key(&pk, &command_sk(seq));
            item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
            item.insert("seq".into(), n(seq));
            item.insert("command".into(), s(&text));
            item.insert("sent_at".into(), n(self.now()));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)");
            if Self::conditional("dynamodb:PutItem", &self.item_name(&pk, &command_sk(seq)), put.send())
                .await?
                .is_some()
            {
                return Ok(seq);
            }
            // Another sender took this number: read the log's end again.
        }
        Err(Error::transient(
            "aws",
            format!("the command log of deployment {id} kept changing under {MAX_RACES} attempts"),
        ))
    }

    /// The commands of deployment `id` numbered after `after`, in order.
    pub(super) async fn read_commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let items = self.query(&pk, &command_sk(from), &command_sk(u64::MAX), false, None).await?;
        items
            .iter()
            .map(|item| {
                let name = self.readable(&pk, item)?;
                let text = string(item, "command", &name)?;
                let command: Command = serde_json::from_value(serde_json::Value::String(text.clone()))
                    .map_err(|_| corrupt(&name, format!("unknown command {text:?}")))?;
                Ok(CommandRecord { seq: num(item, "seq", &name)?, command, sent_at: num(item, "sent_at", &name)? })
            })
            .collect()
    }
}
