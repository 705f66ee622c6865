//! The dump format of `pachctl extract` / `pachctl restore`: reading and writing records,
//! classifying and decoding ops of every pachd version 1.7–1.13, inventories, manifests,
//! verification, and filtering/rewriting for scripts.

pub mod edit;
pub mod error;
pub mod fuzz;
pub mod inventory;
pub mod location;
pub mod manifest;
pub mod op;
pub mod reader;
pub mod references;
pub mod relations;
pub mod sink;
pub mod transfer;
pub mod verify;
pub mod wire;
pub mod writer;

pub use error::BackupError;
pub use location::Location;
pub use op::Op;
