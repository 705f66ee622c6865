//! Generated Pachyderm 1.x protobuf and gRPC code (from `proto/`), one module per proto package,
//! plus the compiled descriptor set for dynamic (reflection) access.

// Generated code: rustfmt, clippy and the docs lint do not apply to it.
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod admin {
    include!(concat!(env!("OUT_DIR"), "/admin.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod auth {
    include!(concat!(env!("OUT_DIR"), "/auth.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod enterprise {
    include!(concat!(env!("OUT_DIR"), "/enterprise.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod health {
    include!(concat!(env!("OUT_DIR"), "/health.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs {
    include!(concat!(env!("OUT_DIR"), "/pfs.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps {
    include!(concat!(env!("OUT_DIR"), "/pps.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod transaction {
    include!(concat!(env!("OUT_DIR"), "/transaction.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod versionpb {
    include!(concat!(env!("OUT_DIR"), "/versionpb.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_7 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_7.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_7 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_7.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod hashtree_1_7 {
    include!(concat!(env!("OUT_DIR"), "/hashtree_1_7.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_8 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_8.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_8 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_8.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_9 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_9.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_9 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_9.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_10 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_10.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_10 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_10.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_11 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_11.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_11 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_11.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod auth_1_11 {
    include!(concat!(env!("OUT_DIR"), "/auth_1_11.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod enterprise_1_11 {
    include!(concat!(env!("OUT_DIR"), "/enterprise_1_11.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pfs_1_12 {
    include!(concat!(env!("OUT_DIR"), "/pfs_1_12.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pps_1_12 {
    include!(concat!(env!("OUT_DIR"), "/pps_1_12.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod auth_1_12 {
    include!(concat!(env!("OUT_DIR"), "/auth_1_12.rs"));
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod enterprise_1_12 {
    include!(concat!(env!("OUT_DIR"), "/enterprise_1_12.rs"));
}

/// The compiled `FileDescriptorSet` of every file under `proto/`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ankus_descriptor.bin"));

/// The descriptor pool of our protos, decoded once.
pub fn pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set is produced by build.rs from proto/ and always decodes")
    })
}
