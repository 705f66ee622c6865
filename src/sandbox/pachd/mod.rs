//! An emulated pachd (1.9 – 1.13): a tonic gRPC server that real clients (pachctl,
//! python-pachyderm, ankus) cannot tell apart from the real thing for the RPCs they use.
//!
//! Layout: [`version`] (which pachd it impersonates), [`error`] (pachd's error texts),
//! [`bucket`] (the cluster's object storage: blocks, objects, tags in a local directory),
//! [`tree`] (commit trees), [`state`] (repos, commits, branches, pipelines, jobs, auth: the
//! etcd part of pachd, with its state transitions), [`convert`] (older `Op1_x` dump records to
//! the current types), [`restore`] and [`extract`], [`dumpfile`] (the pachctl dump framing, for
//! URL mode and seeding), [`server`] (the [`Cluster`] and its gRPC services) and [`loader`]
//! (an external client that commits data on a timer).

pub mod bucket;
pub mod convert;
pub mod dumpfile;
pub mod error;
pub mod extract;
pub mod hashtree;
pub mod loader;
pub mod restore;
pub mod server;
mod services;
pub mod state;
pub mod tree;
pub mod version;

pub use server::{Cluster, ClusterConfig, PipelineObserver};
pub use version::PachdVersion;
