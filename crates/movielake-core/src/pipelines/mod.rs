//! Pure pipelines: each turns its input into a [`Plan`] of writes plus counts, calling sources,
//! contract, routing and output; nothing below calls them. The app applies the plan through the
//! lake port (bronze first, manifest last).
//!
//! [`Plan`]: crate::output::plan::Plan

pub mod watch_events;
