//! Watch events, the Event Hub source: they arrive through `host` and go to the contract as they
//! are, so only their sample generator lives here. No parsing, no routing.

pub mod sample;
