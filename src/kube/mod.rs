//! The Kubernetes client ankus scripts use, over kube-rs: connect through a kubeconfig
//! context, resolve kinds by discovery, read and change objects with resourceVersion
//! preconditions, save and restore objects. No rhai here; `bindings::kube` wraps it.

pub mod client;
pub mod config;
pub mod error;
pub mod objects;
pub mod portforward;
pub mod quiesce;
pub mod saved;

pub use client::{
    Change, ConnectOptions, KubeClient, ListOptions, PatchType, ResourceInfo, WatchItem,
};
pub use error::KubeError;
pub use objects::{Condition, Namespace, Pod, Service, ServicePort, Workload};
pub use portforward::{ForwardedStream, PodReport};
pub use quiesce::{MARK_ANNOTATION, QuiesceMark};
pub use saved::SavedObject;
