//! The simulated probe: answers with the ground truth.

use async_trait::async_trait;

use super::Sim;
use crate::model::Target;
use crate::probe::{Health, HealthProbe};

#[derive(Debug)]
pub(super) struct SimProbe(pub(super) Sim);

#[async_trait]
impl HealthProbe for SimProbe {
    async fn check(&self, target: &Target) -> Health {
        let w = self.0.lock();
        if !w.targets.contains_key(&target.id) {
            return Health::unhealthy("no such target");
        }
        if w.healthy(&target.id) {
            Health::Healthy
        } else {
            Health::unhealthy("simulated: unhealthy")
        }
    }
}
