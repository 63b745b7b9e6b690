//! Real local server processes as targets (to be written).

/// Targets are local processes of a version.
#[derive(Debug)]
pub struct LocalProcessFleet;
