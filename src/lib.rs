//! ankus: back up, move and upgrade Pachyderm 1.x clusters with Rhai scripts.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants between these modules.

pub mod backup;
pub mod bindings;
pub mod cli;
pub mod fsutil;
pub mod holder;
pub mod host;
pub mod kind;
pub mod kube;
pub mod pachd;
pub mod proto;
pub mod redact;
pub mod repl;
pub mod sandbox;
pub mod store;
