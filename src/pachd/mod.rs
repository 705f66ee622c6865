//! The pachd 1.x client: pachctl config contexts, addresses, the gRPC connection and typed
//! models. Free of rhai; `crate::bindings::pachd` exposes it to scripts.

pub mod address;
pub mod client;
pub mod codec;
pub mod config;
pub mod error;
pub mod model;

pub use address::{PachdAddress, Transport};
pub use client::{ChangeHook, ConnectOptions, ExtractFlags, PachdClient, StopStartOptions, Target};
pub use config::{ConfigEnv, ResolvedContext};
pub use error::PachdError;
pub use model::{
    Branch, ClusterInfo, Commit, FileInfo, Pipeline, PipelineWait, Repo, Version, WhoAmI,
};
