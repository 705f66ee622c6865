//! Typed views of the objects scripts care about (Service, Deployment/StatefulSet, Pod,
//! Namespace), wait conditions, server-managed fields and JSON diffs for dry-run plans.

use std::fmt;

use serde_json::{Map, Value, json};

use super::error::KubeError;

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_owned()
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    /// Port name (`api-grpc-port`).
    pub name: String,
    /// Service port (650).
    pub port: i64,
    /// Target port, as text (a number or a named port).
    pub target_port: String,
    /// NodePort, when the Service exposes one.
    pub node_port: Option<i64>,
    /// Protocol (`TCP`).
    pub protocol: String,
}

/// A Service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`.
    pub service_type: String,
    /// Cluster IP.
    pub cluster_ip: String,
    /// Ports in declaration order.
    pub ports: Vec<ServicePort>,
    /// resourceVersion.
    pub resource_version: String,
}

impl Service {
    /// Reads a Service object.
    pub fn from_json(object: &Value) -> Service {
        let ports = object["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|port| ServicePort {
                name: text(&port["name"]),
                port: port["port"].as_i64().unwrap_or(0),
                target_port: match &port["targetPort"] {
                    Value::String(name) => name.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                },
                node_port: port["nodePort"].as_i64(),
                protocol: port["protocol"].as_str().unwrap_or("TCP").to_owned(),
            })
            .collect();
        Service {
            name: text(&object["metadata"]["name"]),
            namespace: text(&object["metadata"]["namespace"]),
            service_type: object["spec"]["type"]
                .as_str()
                .unwrap_or("ClusterIP")
                .to_owned(),
            cluster_ip: text(&object["spec"]["clusterIP"]),
            ports,
            resource_version: text(&object["metadata"]["resourceVersion"]),
        }
    }

    /// The nodePorts in declaration order.
    pub fn node_ports(&self) -> Vec<i64> {
        self.ports
            .iter()
            .filter_map(|port| port.node_port)
            .collect()
    }
}

/// A Deployment, StatefulSet, ReplicaSet or ReplicationController.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Desired replicas.
    pub replicas: i64,
    /// Ready replicas.
    pub ready_replicas: i64,
    /// Images of the pod template's containers.
    pub images: Vec<String>,
}

impl Workload {
    /// Reads a workload object.
    pub fn from_json(object: &Value) -> Workload {
        Workload {
            kind: text(&object["kind"]),
            name: text(&object["metadata"]["name"]),
            namespace: text(&object["metadata"]["namespace"]),
            replicas: object["spec"]["replicas"].as_i64().unwrap_or(1),
            ready_replicas: object["status"]["readyReplicas"].as_i64().unwrap_or(0),
            images: object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|container| text(&container["image"]))
                .collect(),
        }
    }

    /// Whether every desired replica is ready and the controller saw the latest spec.
    pub fn is_ready(object: &Value) -> bool {
        let workload = Workload::from_json(object);
        let observed = object["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
        workload.ready_replicas == workload.replicas && observed >= generation
    }
}

/// A Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    pub phase: String,
    /// Whether the Ready condition is true.
    pub ready: bool,
    /// The controlling owner as `Kind/name`, or empty.
    pub owner: String,
    /// Total container restarts.
    pub restarts: i64,
    /// Pod IP.
    pub ip: String,
    /// Node name.
    pub node: String,
    /// Labels.
    pub labels: Map<String, Value>,
}

impl Pod {
    /// Reads a Pod object.
    pub fn from_json(object: &Value) -> Pod {
        let ready = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
        let owner = object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|owner| owner["controller"] == true)
            .or_else(|| object["metadata"]["ownerReferences"].get(0))
            .map(|owner| format!("{}/{}", text(&owner["kind"]), text(&owner["name"])))
            .unwrap_or_default();
        Pod {
            name: text(&object["metadata"]["name"]),
            namespace: text(&object["metadata"]["namespace"]),
            phase: object["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_owned(),
            ready,
            owner,
            restarts: object["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|status| status["restartCount"].as_i64().unwrap_or(0))
                .sum(),
            ip: text(&object["status"]["podIP"]),
            node: text(&object["spec"]["nodeName"]),
            labels: object["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// A Namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// `Active` or `Terminating`.
    pub phase: String,
}

impl Namespace {
    /// Reads a Namespace object.
    pub fn from_json(object: &Value) -> Namespace {
        Namespace {
            name: text(&object["metadata"]["name"]),
            phase: object["status"]["phase"]
                .as_str()
                .unwrap_or("Active")
                .to_owned(),
        }
    }
}

/// What `wait` waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The object exists.
    Exists,
    /// The object is gone.
    Deleted,
    /// Pods: Ready; workloads: all replicas ready; other kinds: exists.
    Ready,
    /// `status.conditions[type=X].status == "True"`.
    Named(String),
    /// `status.phase == X`.
    Phase(String),
}

impl Condition {
    /// Parses `exists`, `deleted`, `ready`, `phase=Running` or a condition type
    /// (`Available`, `condition=Available`).
    pub fn parse(text: &str) -> Result<Condition, KubeError> {
        let trimmed = text.trim();
        Ok(match trimmed.to_ascii_lowercase().as_str() {
            "" => {
                return Err(KubeError::Invalid(
                    "read the wait condition: it is empty".to_owned(),
                ));
            }
            "exists" | "created" => Condition::Exists,
            "deleted" | "delete" | "gone" => Condition::Deleted,
            "ready" => Condition::Ready,
            lower if lower.starts_with("phase=") => Condition::Phase(trimmed[6..].to_owned()),
            lower if lower.starts_with("condition=") => Condition::Named(trimmed[10..].to_owned()),
            _ => Condition::Named(trimmed.to_owned()),
        })
    }

    /// Whether it holds for `object` (`None` = absent).
    pub fn holds(&self, object: Option<&Value>) -> bool {
        match (self, object) {
            (Condition::Deleted, None) => true,
            (_, None) | (Condition::Deleted, Some(_)) => false,
            (Condition::Exists, Some(_)) => true,
            (Condition::Ready, Some(object)) => match object["kind"].as_str() {
                Some("Pod") => Pod::from_json(object).ready,
                Some("Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController") => {
                    Workload::is_ready(object)
                }
                _ => true,
            },
            (Condition::Named(name), Some(object)) => object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|condition| {
                    condition["type"]
                        .as_str()
                        .is_some_and(|kind| kind.eq_ignore_ascii_case(name))
                        && condition["status"] == "True"
                }),
            (Condition::Phase(phase), Some(object)) => object["status"]["phase"] == phase.as_str(),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Exists => f.write_str("exists"),
            Condition::Deleted => f.write_str("deleted"),
            Condition::Ready => f.write_str("ready"),
            Condition::Named(name) => write!(f, "condition {name}"),
            Condition::Phase(phase) => write!(f, "phase {phase}"),
        }
    }
}

/// Metadata fields the server owns; they differ between any two reads of an object.
pub const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// A copy of `object` without server-managed fields and without `status`, fit to save and
/// to restore.
pub fn strip_server_fields(object: &Value) -> Value {
    let mut stripped = object.clone();
    if let Some(metadata) = stripped["metadata"].as_object_mut() {
        for field in SERVER_METADATA {
            metadata.remove(*field);
        }
    }
    if let Some(map) = stripped.as_object_mut() {
        map.remove("status");
    }
    stripped
}

/// The fields that differ between `before` and `after` (server-managed fields ignored), as
/// `[{ path, before, after }]` with JSON-pointer paths. Lists of equal length are compared
/// element by element.
pub fn diff(before: &Value, after: &Value) -> Value {
    let mut changes = Vec::new();
    diff_into(
        &strip_server_fields(before),
        &strip_server_fields(after),
        String::new(),
        &mut changes,
    );
    Value::Array(changes)
}

fn diff_into(before: &Value, after: &Value, path: String, changes: &mut Vec<Value>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
            keys.dedup();
            let mut seen = std::collections::HashSet::new();
            for key in keys {
                if !seen.insert(key) {
                    continue;
                }
                let escaped = key.replace('~', "~0").replace('/', "~1");
                diff_into(
                    old.get(key).unwrap_or(&Value::Null),
                    new.get(key).unwrap_or(&Value::Null),
                    format!("{path}/{escaped}"),
                    changes,
                );
            }
        }
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (index, (old_item, new_item)) in old.iter().zip(new).enumerate() {
                diff_into(old_item, new_item, format!("{path}/{index}"), changes);
            }
        }
        _ => changes.push(json!({ "path": path, "before": before, "after": after })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_changed_leaves_and_ignores_server_fields() {
        let before = json!({"metadata": {"name": "pachd", "resourceVersion": "4"},
                            "spec": {"ports": [{"port": 650, "nodePort": 30650}, {"port": 651, "nodePort": 30651}]}});
        let after = json!({"metadata": {"name": "pachd", "resourceVersion": "5"},
                           "spec": {"ports": [{"port": 650, "nodePort": 30649}, {"port": 651, "nodePort": 30651}]}});
        assert_eq!(
            diff(&before, &after),
            json!([{"path": "/spec/ports/0/nodePort", "before": 30650, "after": 30649}])
        );
    }

    #[test]
    fn conditions_parse_and_evaluate() {
        let pod = json!({"kind": "Pod", "status": {"phase": "Running",
                         "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(Condition::parse("ready").expect("parses").holds(Some(&pod)));
        assert!(
            Condition::parse("phase=Running")
                .expect("parses")
                .holds(Some(&pod))
        );
        assert!(Condition::parse("Ready").expect("parses").holds(Some(&pod)));
        assert!(
            !Condition::parse("deleted")
                .expect("parses")
                .holds(Some(&pod))
        );
        assert!(Condition::parse("deleted").expect("parses").holds(None));
        assert!(Condition::parse(" ").is_err());
    }
}
