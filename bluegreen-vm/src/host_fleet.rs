//! Host fleets updated by a user-supplied updater (to be written).

/// Targets are hosts updated in place by an [`Updater`].
#[derive(Debug)]
pub struct HostFleet;

/// Updates one host to a version.
#[derive(Debug)]
pub struct Updater;
