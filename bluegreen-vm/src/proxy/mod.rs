//! The in-process reverse proxy (to be written).

/// An in-process HTTP reverse proxy with weighted pools.
#[derive(Debug)]
pub struct LocalProxyRouter;
