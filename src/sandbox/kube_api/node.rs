//! The sandbox's nodes: one Node per sandbox namespace, on that namespace's loopback node
//! address (where its NodePorts listen), reported as a healthy kubelet reports itself. Pods
//! of the namespace are scheduled onto it.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::server::SERVER_VERSION;
use super::state::KubeState;
use super::status::ApiError;

/// The label naming the sandbox namespace a node serves (how pods find their node).
pub const NAMESPACE_LABEL: &str = "sandbox.ankus.io/namespace";

/// The name of the node of `namespace`.
pub fn node_name(namespace: &str) -> String {
    format!("sandbox-{namespace}")
}

/// A modest machine, the same on every run, so listings do not depend on the host. The
/// allocatable amounts are what a kubelet leaves after its default reservations (100 MiB of
/// memory and 10 % of the disk held back for eviction).
const CAPACITY: [(&str, &str); 4] = [
    ("cpu", "4"),
    ("ephemeral-storage", "102687672Ki"),
    ("memory", "16393872Ki"),
    ("pods", "110"),
];
const ALLOCATABLE: [(&str, &str); 4] = [
    ("cpu", "4"),
    ("ephemeral-storage", "94635550134"),
    ("memory", "16291472Ki"),
    ("pods", "110"),
];

fn amounts(list: &[(&str, &str)]) -> Value {
    list.iter()
        .map(|(name, amount)| ((*name).to_owned(), json!(amount)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The Node object of `namespace`'s node at `address`, as a kubelet registers it (the API
/// server adds uid, creationTimestamp and resourceVersion). `started` is when the kubelet
/// reported itself ready.
pub fn node_manifest(namespace: &str, address: Ipv4Addr, started: &str) -> Value {
    let name = node_name(namespace);
    let (major, minor) = SERVER_VERSION;
    let version = format!("v{major}.{minor}.0");
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": status,
            "lastHeartbeatTime": started,
            "lastTransitionTime": started,
            "reason": reason,
            "message": message,
        })
    };
    // Machine ids derived from the name: stable across restarts, as a real node's are.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Uuid::from_bytes(id_bytes).to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                NAMESPACE_LABEL: namespace,
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        // No podCIDR: pod IPs come from one cluster-wide range, as with a CNI that does its
        // own IP management.
        "spec": {},
        "status": {
            "capacity": amounts(&CAPACITY),
            "allocatable": amounts(&ALLOCATABLE),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                { "type": "InternalIP", "address": address.to_string() },
                { "type": "Hostname", "address": name },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": {
                "machineID": uuid.replace('-', ""),
                "systemUUID": uuid,
                "bootID": uuid,
                "kernelVersion": "6.1.0-ankus-sandbox",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.0",
                "kubeletVersion": version,
                "kubeProxyVersion": version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

/// Where a pod of `namespace` runs: the node serving that namespace, else the first node,
/// as (node name, node address). `None` when the cluster has no nodes.
pub fn node_for<'a>(
    nodes: impl Iterator<Item = &'a Value>,
    namespace: &str,
) -> Option<(String, String)> {
    let mut first = None;
    for node in nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let address = node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| entry["type"] == "InternalIP")
            .and_then(|entry| entry["address"].as_str())
            .unwrap_or("127.0.0.1")
            .to_owned();
        if node["metadata"]["labels"][NAMESPACE_LABEL] == namespace {
            return Some((name, address));
        }
        first.get_or_insert((name, address));
    }
    first
}

impl KubeState {
    /// Registers the node of `namespace` at `address` (a sandbox namespace's loopback node
    /// address).
    pub async fn add_node(&self, namespace: &str, address: Ipv4Addr) -> Result<Value, ApiError> {
        let started = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        self.create_object(node_manifest(namespace, address, &started))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_go_to_their_namespaces_node_else_the_first() {
        let nodes = [
            node_manifest("new", Ipv4Addr::new(127, 1, 2, 3), "2024-01-01T00:00:00Z"),
            node_manifest("old", Ipv4Addr::new(127, 1, 2, 4), "2024-01-01T00:00:00Z"),
        ];
        assert_eq!(
            node_for(nodes.iter(), "old"),
            Some(("sandbox-old".to_owned(), "127.1.2.4".to_owned()))
        );
        assert_eq!(
            node_for(nodes.iter(), "default"),
            Some(("sandbox-new".to_owned(), "127.1.2.3".to_owned()))
        );
        assert_eq!(node_for([].iter(), "old"), None);
    }
}
