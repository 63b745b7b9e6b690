//! What a deployment does when another one of its service holds the lock.

use serde::{Deserialize, Serialize};

/// What happens when a deployment of a service starts while another one holds its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Refuse at once with [`Error::Conflict`](crate::Error::Conflict), naming the holder and its lease's expiry.
    #[default]
    Refuse,
    /// Wait in line (first come, first served) until the lock is free.
    Queue,
    /// Tell the running deployment to stop — by rolling back (`abort`) or by finishing at
    /// once (`promote`) — then take the lock when it is free.
    Supersede(SupersedeWith),
}

/// How a superseded deployment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupersedeWith {
    /// It rolls back.
    Abort,
    /// It skips its remaining bakes and pauses and finishes.
    Promote,
}
