//! Table maintenance (compaction, checkpoints, log cleanup, VACUUM). Filled in by the maintain work.
