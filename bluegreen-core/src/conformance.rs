//! The conformance suite: public async test functions every backend runs.
