//! The simulated probe: answers with the ground truth.

use async_trait::async_trait;
use tokio::time::Instant;

use super::Sim;
use crate::model::Target;
use crate::probe::{Health, HealthProbe};

#[derive(Debug)]
pub(super) struct SimProbe(pub(super) Sim);

#[async_trait]
impl HealthProbe for SimProbe {
    async fn check(&self, target: &Target) -> Health {
        let mut w = self.0.lock();
        w.work.probes += 1;
        let healthy = w.healthy(&target.id);
        let Some(t) = w.targets.get_mut(&target.id) else {
            return Health::unhealthy("no such target");
        };
        t.passed_probe_at = healthy.then(Instant::now);
        if healthy {
            Health::Healthy
        } else {
            Health::unhealthy("simulated: unhealthy")
        }
    }
}
