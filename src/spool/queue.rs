//! Queue listing (placeholder module, filled in with the runner).
