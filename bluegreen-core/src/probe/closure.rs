//! Probes from closures.

use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use super::{Health, HealthProbe};
use crate::model::Target;

type HealthFuture = Pin<Box<dyn Future<Output = Health> + Send>>;

/// A probe from an async closure.
///
/// ```
/// use bluegreen_core::{FnProbe, Health};
/// let always = FnProbe::new("always", |_target| async { Health::Healthy });
/// ```
pub struct FnProbe {
    name: String,
    check: Box<dyn Fn(crate::model::Target) -> HealthFuture + Send + Sync>,
}

impl FnProbe {
    /// A probe named `name` that runs `f` for each check.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Target) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Health> + Send + 'static,
    {
        Self { name: name.into(), check: Box::new(move |t| Box::pin(f(t))) }
    }
}

impl Debug for FnProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProbe").field("name", &self.name).finish_non_exhaustive()
    }
}

#[async_trait]
impl HealthProbe for FnProbe {
    async fn check(&self, target: &Target) -> Health {
        (self.check)(target.clone()).await
    }
}
