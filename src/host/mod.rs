//! The scripting host: engine assembly, script and module resolution, the async seam, the
//! dry-run plan, the run journal, cancellation and error conversion.

pub mod context;
pub mod convert;
pub mod docs;
pub mod engine;
pub mod error;
pub mod journal;
pub mod plan;
pub mod render;
pub mod resolver;
pub mod run;
pub mod runtime;
pub mod sources;
