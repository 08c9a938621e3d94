//! What lands in the lake, as bytes and names: silver Parquet, the column writer, deterministic
//! names, run manifests and the streamed parts of file sources. Encodes only: no routing, no IO.

pub mod column_writer;
pub mod enriched;
pub mod files;
pub mod manifest;
pub mod naming;
pub mod plan;
pub mod silver;
