//! Per-message delivery state (placeholder module, filled in with the runner).
