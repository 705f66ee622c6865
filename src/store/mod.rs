//! Object storage: store URLs and options, the `Bucket` client, streaming backup I/O, the
//! bucket clone (`sync`) and its verification. No rhai here; `bindings/store.rs` wraps it.

pub mod aws_chain;
pub mod bucket;
pub mod error;
pub mod http;
pub mod location;
pub mod progress;
pub mod s3;
pub mod stream;
pub mod sync;
pub mod verify;

pub use bucket::{Bucket, Entry};
pub use error::StoreError;
pub use location::{StoreOptions, StoreUrl};
pub use stream::{ObjectReader, ObjectWriter, open_reader, open_writer};
pub use sync::{SyncOptions, SyncReport, sync};
pub use verify::{
    Reference, ReferenceKind, VerifyOptions, VerifyReport, referenced_keys_from_backup,
    verify_clone,
};
