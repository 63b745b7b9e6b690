//! What the fleet knows of task definition revisions: what each runs, remembered by ARN
//! (revisions never change, so this never goes stale). Plain data below the fleet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use bluegreen_core::Version;

/// What one task definition revision runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Revision {
    /// `family:revision`.
    pub(super) name: String,
    /// Its `bluegreen:version` tag; else the version read from the image through the template;
    /// else `family:revision`.
    pub(super) version: Version,
    /// The fleet's container's first port mapping, if it has one.
    pub(super) port: Option<u16>,
    /// The fleet's container's image and environment, if the container exists.
    pub(super) container: Option<(String, Vec<(String, String)>)>,
}

/// Task definition ARN → what it runs, shared by the fleet's clones.
#[derive(Debug, Clone, Default)]
pub(super) struct KnownRevisions(Arc<Mutex<BTreeMap<String, Revision>>>);

impl KnownRevisions {
    pub(super) fn get(&self, arn: &str) -> Option<Revision> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(arn).cloned()
    }

    pub(super) fn insert(&self, arn: &str, revision: &Revision) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(arn.to_owned(), revision.clone());
    }
}
