//! Where each checked record goes: silver, quarantine with its reasons, or dropped as a counted
//! duplicate (the de-duplication ledger). Decides only: no encoding, no writes.

pub mod ledger;
pub mod quarantine;
pub mod route;
