//! The emulated Kubernetes API server: the API subset kubectl and the `kube` bindings use,
//! the Pachyderm 1.x objects each sandbox namespace starts with, one node per namespace,
//! NodePorts that really listen, and hooks that start an emulated pachd when a pachd
//! Deployment is created.

pub mod kubeconfig;
pub mod node;
pub mod nodeport;
pub mod patch;
pub mod portforward;
pub mod resources;
pub mod seed;
pub mod selector;
pub mod server;
pub mod spdy;
pub mod state;
pub mod status;
pub mod table;
pub mod tls;

pub use kubeconfig::{
    KubeconfigContext, SANDBOX_TOKEN, kubeconfig_yaml, sandbox_kubeconfig_yaml, write_kubeconfig,
    write_sandbox_kubeconfig,
};
pub use nodeport::{NodePortForwarder, allocate_node_addr};
pub use portforward::PodPorts;
pub use seed::{PACHD_PORTS, SeedSpec};
pub use server::serve;
pub use state::{DeploymentHooks, KubeState, StateObserver, WatchEvent};
pub use status::ApiError;
pub use tls::{ServerIdentity, TlsError};
