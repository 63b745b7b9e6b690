//! The HAProxy runtime-API router (to be written).

/// Drives a real HAProxy through its runtime API.
#[derive(Debug)]
pub struct HaproxyRouter;
