//! A steady load generator that counts every failure (to be written).

/// Sends requests at a steady rate and counts what happened to each.
#[derive(Debug)]
pub struct LoadGenerator;
