//! The sandbox: emulated peers (pachd, the Kubernetes API, and the clusters that group them)
//! that the real clients reach over real sockets, so every script can be rehearsed on a laptop.

pub mod cluster;
pub mod kube_api;
pub mod pachd;
pub mod sample;
