//! The resource kinds the emulated API server knows, with the discovery facts kubectl and
//! kube-rs read (plural, kind, scope, short names, subresources).

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Singular name (`kubectl get service`).
    pub singular: &'static str,
    /// Object kind.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`svc`, `deploy`).
    pub short_names: &'static [&'static str],
    /// Whether the `scale` subresource is served.
    pub scale: bool,
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name used in error messages: `services`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether objects of this kind carry a `spec` whose changes bump `metadata.generation`.
    pub fn has_spec(&self) -> bool {
        !matches!(
            self.kind,
            "ConfigMap" | "Secret" | "Event" | "Endpoints" | "ServiceAccount"
        )
    }
}

const fn rt(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    scale: bool,
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        scale,
    }
}

/// Every served resource type, core group first.
pub static RESOURCES: &[ResourceType] = &[
    rt(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        false,
    ),
    rt("", "nodes", "node", "Node", false, &["no"], false),
    rt("", "services", "service", "Service", true, &["svc"], false),
    rt("", "pods", "pod", "Pod", true, &["po"], false),
    rt(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
    ),
    rt("", "secrets", "secret", "Secret", true, &[], false),
    rt("", "events", "event", "Event", true, &["ev"], false),
    rt(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
    ),
    rt(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    rt(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        false,
    ),
    rt(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        false,
    ),
    rt(
        "",
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        true,
        &["rc"],
        true,
    ),
    rt(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    rt(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    rt(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        true,
    ),
    rt(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        false,
    ),
    rt(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    rt(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        false,
    ),
];

/// The groups served under `/apis`, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for resource in RESOURCES {
        if !resource.group.is_empty() && !groups.contains(&resource.group) {
            groups.push(resource.group);
        }
    }
    groups
}

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|resource| {
        resource.group == group && resource.version == version && resource.plural == plural
    })
}

/// The resource type of an object with `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|resource| resource.api_version() == api_version && resource.kind == kind)
}

/// Looks a resource type up by its kind alone (first match).
pub fn by_kind_name(kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|resource| resource.kind == kind)
}
