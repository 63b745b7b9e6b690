//! Analyses: checks evaluated while a step bakes; a failing one rolls the deploy back.

use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{Split, Target};

#[cfg(feature = "http-probe")]
mod http;

#[cfg(feature = "http-probe")]
pub use http::HttpSuccessRate;

/// What an analysis is evaluated against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisContext {
    /// The deployment's id.
    pub deployment_id: String,
    /// The service.
    pub service: String,
    /// The version being deployed.
    pub version: String,
    /// The split in effect (the observed one).
    pub split: Split,
    /// The new version's targets.
    pub candidates: Vec<Target>,
}

/// One evaluation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Good so far.
    Pass,
    /// Not enough data yet; the bake goes on.
    Inconclusive,
    /// Bad: the step fails and the deploy rolls back.
    Fail {
        /// What was seen (`success rate 82.0% < 99.0% over 60s (41/50)`).
        reason: String,
    },
}

/// A check evaluated repeatedly while a step bakes (and during a blue-green test phase).
///
/// # Guarantees (what the executor provides)
/// - `evaluate` is called once per health interval while a bake lasts, never concurrently
///   with itself for one deployment.
///
/// # Assumptions
/// - An evaluation returns within one health interval; it may keep state between calls
///   (a sliding window).
///
/// # Errors
/// - None: trouble evaluating is a [`Verdict::Fail`] or [`Verdict::Inconclusive`], by the
///   analysis's own judgement.
#[async_trait]
pub trait Analysis: Send + Sync + Debug {
    /// A name for events.
    fn name(&self) -> String;

    /// Evaluates once.
    async fn evaluate(&self, context: &AnalysisContext) -> Verdict;
}

type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// An analysis from an async closure.
///
/// ```
/// use bluegreen_core::{FnAnalysis, Verdict};
/// let no_alarms = FnAnalysis::new("no-alarms", |_ctx| async { Verdict::Pass });
/// ```
pub struct FnAnalysis {
    name: String,
    evaluate: Box<dyn Fn(AnalysisContext) -> VerdictFuture + Send + Sync>,
}

impl FnAnalysis {
    /// An analysis named `name` that runs `f`.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(AnalysisContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        Self { name: name.into(), evaluate: Box::new(move |ctx| Box::pin(f(ctx))) }
    }
}

impl Debug for FnAnalysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAnalysis").field("name", &self.name).finish_non_exhaustive()
    }
}

#[async_trait]
impl Analysis for FnAnalysis {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn evaluate(&self, context: &AnalysisContext) -> Verdict {
        (self.evaluate)(context.clone()).await
    }
}
