//! Simulated request traffic through the simulated router.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::world::{Request, World};
use super::Traffic;
use crate::model::{MemberState, PoolName, TargetId};

/// Requests are sent and completed in ticks of this length.
const TICK: Duration = Duration::from_millis(10);

/// Spawns the traffic task; it ends when the simulation is dropped.
pub(super) fn start(world: Weak<Mutex<World>>, traffic: Traffic) {
    tokio::spawn(async move {
        let per_tick = f64::from(traffic.per_second) * TICK.as_secs_f64();
        let mut credit = 0.0;
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            let Some(world) = world.upgrade() else { break };
            let mut w = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            complete(&mut w);
            credit += per_tick;
            while credit >= 1.0 {
                credit -= 1.0;
                send(&mut w, traffic.latency);
            }
        }
    });
}

fn complete(w: &mut World) {
    let now = Instant::now();
    while w.in_flight.front().is_some_and(|r| r.done_at <= now) {
        let request = w.in_flight.pop_front().expect("checked above");
        if let Some(t) = w.targets.get_mut(&request.target) {
            if t.generation == request.generation {
                t.in_flight -= 1;
                let version = t.target.version.clone();
                *w.stats.served.entry(version).or_default() += 1;
            }
        }
    }
}

fn send(w: &mut World, latency: Duration) {
    w.stats.sent += 1;
    let Some(pool) = pick_pool(w) else {
        w.stats.failed += 1;
        return;
    };
    let Some(id) = pick_member(w, &pool) else {
        w.stats.failed += 1;
        return;
    };
    if !w.healthy(&id) {
        w.stats.failed += 1;
        return;
    }
    let t = w.targets.get_mut(&id).expect("picked from members");
    t.in_flight += 1;
    let generation = t.generation;
    w.in_flight.push_back(Request { done_at: Instant::now() + latency, target: id, generation });
}

/// Smooth weighted round-robin over the live pools.
fn pick_pool(w: &mut World) -> Option<PoolName> {
    let live: Vec<(PoolName, i64)> =
        w.split.iter().filter(|(_, wt)| *wt > 0).map(|(p, wt)| (p.clone(), i64::from(wt))).collect();
    for (pool, weight) in &live {
        *w.pool_credit.entry(pool.clone()).or_default() += weight;
    }
    let best = live.iter().max_by_key(|(p, _)| w.pool_credit.get(p).copied().unwrap_or(0)).map(|(p, _)| p.clone())?;
    *w.pool_credit.get_mut(&best).expect("credited above") -= 100;
    Some(best)
}

/// Round-robin over the pool's serving members.
fn pick_member(w: &mut World, pool: &PoolName) -> Option<TargetId> {
    let members = w.pools.get(pool)?;
    let serving: Vec<&TargetId> =
        members.iter().filter(|(_, m)| m.state == MemberState::Serving).map(|(id, _)| id).collect();
    if serving.is_empty() {
        return None;
    }
    let cursor = w.cursors.entry(pool.clone()).or_default();
    *cursor = (*cursor + 1) % serving.len();
    Some(serving[*cursor].clone())
}
