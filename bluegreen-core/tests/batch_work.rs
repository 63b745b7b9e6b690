//! The work one rolling batch does on the simulated backends — probes, member reads, fleet
//! reads — counted, not timed: a batch's cost must grow with the batch by what the batch is,
//! never by the pool size per target of the batch (issue 14: per-target reads of the whole
//! pool made a 10,000-target deploy quadratic).

mod support;

use std::sync::{Arc, Mutex};

use bluegreen_core::sim::{Sim, Work};
use bluegreen_core::{Event, EventKind, EventSink, PoolName, Rolling, Spec, Status, Strategy};
use support::{executor, quick};

/// Records the simulator's work counters at the start and end of every step.
#[derive(Debug)]
struct StepWork {
    sim: Sim,
    /// (step index, work at its start, work at its end)
    steps: Mutex<Vec<(usize, Work, Option<Work>)>>,
}

impl EventSink for StepWork {
    fn emit(&self, event: &Event) {
        let mut steps = self.steps.lock().unwrap();
        match &event.kind {
            EventKind::StepStarted { index, .. } => steps.push((*index, self.sim.work(), None)),
            EventKind::StepCompleted { index, .. } => {
                if let Some(step) = steps.iter_mut().rev().find(|(i, _, end)| i == index && end.is_none()) {
                    step.2 = Some(self.sim.work());
                }
            }
            _ => {}
        }
    }
}

/// The work of each in-place update batch of a rolling deploy of `pool` targets in batches
/// of `batch`.
async fn work_per_batch(pool: usize, batch: usize) -> Vec<Work> {
    let sim = Sim::builder().pool("web", pool, "v1").zones(["a", "b", "c"]).build();
    let recorder = Arc::new(StepWork { sim: sim.clone(), steps: Mutex::default() });
    let (builder, log) = executor(&sim);
    let exec = builder.shared_sink(recorder.clone()).build();
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(batch))));
    spec.pools = vec![PoolName::from("web")];
    let plan = exec.plan(&spec).await.unwrap();
    let outcome = exec.run(&plan, "counted").await;
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    let batches: Vec<usize> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, bluegreen_core::Step::UpdateBatch { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(batches.len(), pool.div_ceil(batch));
    let steps = recorder.steps.lock().unwrap();
    batches
        .iter()
        .map(|i| {
            let (_, start, end) = steps.iter().find(|(index, _, _)| index == i).expect("every batch ran");
            end.expect("every batch completed") - *start
        })
        .collect()
}

fn max(works: &[Work]) -> Work {
    works.iter().fold(Work::default(), |m, w| Work {
        probes: m.probes.max(w.probes),
        members_read: m.members_read.max(w.members_read),
        fleet_read: m.fleet_read.max(w.fleet_read),
    })
}

/// Four times the batch on the same 2,000-target pool adds work in proportion to the 30 more
/// targets, a handful of reads and probes each — not 30 reads of the 2,000-member pool
/// (60,000 member entries, which is what a per-target read of the pool costs).
#[tokio::test(start_paused = true)]
async fn a_bigger_batch_costs_its_targets_not_the_pool_per_target() {
    let small = max(&work_per_batch(2_000, 10).await);
    let big = max(&work_per_batch(2_000, 40).await);
    let per_extra_target = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 30.0;
    let members = per_extra_target(small.members_read, big.members_read);
    let fleet = per_extra_target(small.fleet_read, big.fleet_read);
    let probes = per_extra_target(small.probes, big.probes);
    assert!(members <= 8.0, "each extra target of a batch costs {members} member reads ({small:?} → {big:?})");
    assert!(fleet <= 4.0, "each extra target of a batch costs {fleet} fleet reads ({small:?} → {big:?})");
    assert!(probes <= 8.0, "each extra target of a batch costs {probes} probes ({small:?} → {big:?})");
}
