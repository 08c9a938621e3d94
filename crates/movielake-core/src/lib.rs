//! movielake's sans-IO core: no tokio, no network, no clock, no environment: every input is an
//! argument. A record travels host → sources → contract → routing → output; pipelines tie the
//! stages into a plan of writes that the app applies.

pub mod contract;
pub mod enrich;
pub mod host;
pub mod output;
pub mod pipelines;
pub mod routing;
pub mod sources;

pub use contract::validate::{Reason, Stage, Verdict};
pub use contract::value::{ColumnType, Value};
pub use contract::{Contract, ContractError, ContractSet};
pub use routing::route::{RunContext, SourceRecord, route};
