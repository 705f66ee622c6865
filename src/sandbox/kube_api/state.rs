//! The emulated cluster's object store: objects as JSON keyed by (group/version/resource,
//! namespace, name), one monotonically increasing resourceVersion, the event history watches
//! replay, validation, and the small controllers that turn Deployments, StatefulSets,
//! ReplicaSets and ReplicationControllers into pods.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::patch;
use super::resources::{self, ResourceType};
use super::selector::Selectors;
use super::status::ApiError;

/// How many events watches can replay; older resourceVersions get `410 Gone`.
const HISTORY: usize = 50_000;

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `group/version/resource`, e.g. `/v1/services` or `apps/v1/deployments`.
    pub resource: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ObjectKey {
    fn new(resource: &ResourceType, namespace: &str, name: &str) -> Self {
        ObjectKey {
            resource: format!(
                "{}/{}/{}",
                resource.group, resource.version, resource.plural
            ),
            namespace: if resource.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }
}

/// One change, as watches stream it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The resourceVersion the change produced.
    pub revision: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: &'static str,
    /// The kind of object.
    pub resource: &'static ResourceType,
    /// The object after the change (before it, for deletions).
    pub object: Value,
}

impl WatchEvent {
    /// The object's namespace ("" for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"].as_str().unwrap_or("")
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// Callbacks the sandbox registers to start and stop an emulated pachd when a `pachd`
/// Deployment appears in, or leaves, a namespace.
pub trait DeploymentHooks: Send + Sync {
    /// A Deployment named `pachd` was created (or scaled up from zero) in `namespace`.
    fn pachd_deployed(&self, namespace: &str, deployment: &Value);
    /// The `pachd` Deployment in `namespace` was scaled to zero or deleted.
    fn pachd_stopped(&self, namespace: &str);
}

/// Something in the sandbox that follows object changes and must finish reacting before the
/// request that caused them is answered (NodePort listeners).
pub trait StateObserver: Send + Sync {
    /// Called after every committed change.
    fn changed<'a>(&'a self, event: &'a WatchEvent) -> BoxFuture<'a, ()>;
}

/// How a PATCH body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 6902 JSON patch.
    Json,
    /// RFC 7386 merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

impl PatchKind {
    /// The patch kind of a request's `Content-Type`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Who is writing: the `fieldManager` query parameter and whether conflicts are forced.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `fieldManager`; empty means a default derived from the operation.
    pub field_manager: String,
    /// `force` for server-side apply.
    pub force: bool,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

#[derive(Default)]
struct Store {
    revision: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<WatchEvent>,
    history_floor: u64,
    applied: HashMap<(ObjectKey, String), Value>,
    pachd_running: BTreeMap<String, bool>,
    serial: u64,
}

/// Hook calls collected under the lock and made after it is released.
enum HookCall {
    Deployed(String, Value),
    Stopped(String),
}

/// The whole emulated cluster.
pub struct KubeState {
    store: Mutex<Store>,
    events: broadcast::Sender<WatchEvent>,
    hooks: Mutex<Vec<Arc<dyn DeploymentHooks>>>,
    observers: Mutex<Vec<Arc<dyn StateObserver>>>,
    pod_ports: Arc<super::portforward::PodPorts>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The store is plain data; a panic elsewhere must not make the cluster unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn random_suffix(length: usize) -> String {
    use rand::Rng;
    // The alphabet Kubernetes uses for generated names: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hash_suffix(value: &Value) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = sha2::Sha256::digest(value.to_string().as_bytes());
    digest
        .iter()
        .take(10)
        .map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char)
        .collect()
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn replicas_of(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn owned_by(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
}

/// The uids of ReplicaSets and ReplicationControllers in `namespace` whose pods or status the
/// changes in `events` may have unsettled, or `None` when every owner must be checked (the
/// namespace itself changed, or a write made no change there).
fn touched_owners(namespace: &str, events: &[WatchEvent]) -> Option<HashSet<String>> {
    let mut touched = HashSet::new();
    let mut any = false;
    for event in events {
        if event.resource.kind == "Namespace" && event.name() == namespace {
            return None;
        }
        if !event.resource.namespaced || event.namespace() != namespace {
            continue;
        }
        any = true;
        match event.resource.plural {
            "replicasets" | "replicationcontrollers" => {
                if let Some(uid) = event.object["metadata"]["uid"].as_str() {
                    touched.insert(uid.to_owned());
                }
            }
            "pods" => {
                for owner in event.object["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(uid) = owner["uid"].as_str() {
                        touched.insert(uid.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    any.then_some(touched)
}

/// The status a ReplicaSet or ReplicationController reports once its pods match it.
fn replica_status(owner: &Value) -> Value {
    let replicas = replicas_of(owner);
    if replicas == 0 {
        return json!({ "replicas": 0, "observedGeneration": owner["metadata"]["generation"] });
    }
    json!({
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "observedGeneration": owner["metadata"]["generation"],
    })
}

fn res(plural: &str, group: &str) -> &'static ResourceType {
    resources::RESOURCES
        .iter()
        .find(|resource| resource.plural == plural && resource.group == group)
        .expect("the controllers only name resources listed in RESOURCES")
}

impl Store {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn uid(&mut self) -> String {
        let serial = self.next_serial();
        let random = uuid::Uuid::new_v4().to_string();
        format!("{}{:012x}", &random[..24], serial)
    }

    fn get(&self, resource: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&ObjectKey::new(resource, namespace, name))
    }

    fn list_in(&self, resource: &ResourceType, namespace: &str) -> Vec<Value> {
        self.iter_in(resource, namespace).cloned().collect()
    }

    /// The objects of one type in one namespace, borrowed: controllers pick a few out of
    /// thousands (a pipeline's pods among every worker pod) without copying the rest.
    fn iter_in<'a>(
        &'a self,
        resource: &ResourceType,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let prefix = ObjectKey::new(resource, namespace, "");
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(key, _)| {
                key.resource == prefix.resource && key.namespace == prefix.namespace
            })
            .map(|(_, object)| object)
    }

    /// Stores `object` with a fresh resourceVersion and records the event.
    fn put(
        &mut self,
        resource: &'static ResourceType,
        mut object: Value,
        events: &mut Vec<WatchEvent>,
    ) -> Value {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = self.revision.to_string().into();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let key = ObjectKey::new(resource, &namespace, name_of(&object));
        let event_type = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key, object.clone());
        self.record(
            WatchEvent {
                revision: self.revision,
                event_type,
                resource,
                object: object.clone(),
            },
            events,
        );
        object
    }

    fn remove(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        events: &mut Vec<WatchEvent>,
    ) -> Option<Value> {
        let key = ObjectKey::new(resource, namespace, name);
        let mut object = self.objects.remove(&key)?;
        self.applied
            .retain(|(applied_key, _), _| *applied_key != key);
        self.revision += 1;
        object["metadata"]["resourceVersion"] = self.revision.to_string().into();
        self.record(
            WatchEvent {
                revision: self.revision,
                event_type: "DELETED",
                resource,
                object: object.clone(),
            },
            events,
        );
        // Dependents go with their owner, as the garbage collector does in the background.
        // Nothing here is owned by a pod or an event, and those are what a thousand worker
        // pods following their pipelines remove: skip the scan of every object for them.
        let owns_nothing = matches!(resource.plural, "pods" | "events");
        if !owns_nothing && let Some(uid) = object["metadata"]["uid"].as_str().map(str::to_owned) {
            let dependents: Vec<(ObjectKey, &'static ResourceType)> = self
                .objects
                .iter()
                .filter(|(_, candidate)| owned_by(candidate, &uid))
                .filter_map(|(key, candidate)| {
                    resources::by_kind(
                        candidate["apiVersion"].as_str().unwrap_or(""),
                        candidate["kind"].as_str().unwrap_or(""),
                    )
                    .map(|resource| (key.clone(), resource))
                })
                .collect();
            for (key, resource) in dependents {
                self.remove(resource, &key.namespace, &key.name, events);
            }
        }
        if resource.kind == "Namespace" {
            let contained: Vec<(ObjectKey, Value)> = self
                .objects
                .iter()
                .filter(|(key, _)| key.namespace == name)
                .map(|(key, candidate)| (key.clone(), candidate.clone()))
                .collect();
            for (key, candidate) in contained {
                if let Some(resource) = resources::by_kind(
                    candidate["apiVersion"].as_str().unwrap_or(""),
                    candidate["kind"].as_str().unwrap_or(""),
                ) {
                    self.remove(resource, &key.namespace, &key.name, events);
                }
            }
        }
        Some(object)
    }

    fn record(&mut self, event: WatchEvent, events: &mut Vec<WatchEvent>) {
        if self.history.len() >= HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.history_floor = dropped.revision;
        }
        self.history.push_back(event.clone());
        events.push(event);
    }

    /// Fills in what the server owns on a new object and validates it.
    fn admit_new(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        mut object: Value,
        manager: &str,
        operation: &str,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object",
            ));
        }
        check_type(resource, &object)?;
        object["apiVersion"] = resource.api_version().into();
        object["kind"] = resource.kind.into();
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let metadata = &mut object["metadata"];
        if metadata["name"].as_str().unwrap_or("").is_empty()
            && let Some(prefix) = metadata["generateName"].as_str()
        {
            metadata["name"] = format!("{prefix}{}", random_suffix(5)).into();
        }
        let name = metadata["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty() {
            return Err(ApiError::invalid(
                resource,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        if !is_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                resource,
                &name,
                "metadata.name",
                &format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        if resource.namespaced {
            match metadata["namespace"].as_str() {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => metadata["namespace"] = namespace.into(),
            }
            if self.get(res("namespaces", ""), "", namespace).is_none() {
                return Err(ApiError::not_found(res("namespaces", ""), namespace));
            }
        } else if let Some(map) = metadata.as_object_mut() {
            map.remove("namespace");
        }
        if self.get(resource, namespace, &name).is_some() {
            return Err(ApiError::already_exists(resource, &name));
        }
        let uid = self.uid();
        let metadata = &mut object["metadata"];
        metadata["uid"] = uid.into();
        metadata["creationTimestamp"] = now().into();
        if resource.scale || resource.kind == "DaemonSet" {
            metadata["generation"] = 1.into();
        }
        set_managed(metadata, manager, operation, &resource.api_version());
        self.default_and_validate(resource, namespace, &name, &mut object, None)?;
        Ok(object)
    }

    /// Carries server-owned fields over from `old` and validates the result of an update.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one update, passed once"
    )]
    fn admit_update(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        old: &Value,
        mut object: Value,
        manager: &str,
        operation: &str,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object",
            ));
        }
        check_type(resource, &object)?;
        object["apiVersion"] = resource.api_version().into();
        object["kind"] = resource.kind.into();
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let given_name = object["metadata"]["name"]
            .as_str()
            .unwrap_or(name)
            .to_owned();
        if given_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(given) = object["metadata"]["resourceVersion"].as_str()
            && !given.is_empty()
            && Some(given) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(resource, name));
        }
        let metadata = &mut object["metadata"];
        metadata["name"] = name.into();
        if resource.namespaced {
            metadata["namespace"] = namespace.into();
        }
        for field in ["uid", "creationTimestamp", "managedFields"] {
            metadata[field] = old["metadata"][field].clone();
        }
        if let Some(generation) = old["metadata"]["generation"].as_i64() {
            let spec_changed = old.get("spec") != object.get("spec");
            object["metadata"]["generation"] = (generation + i64::from(spec_changed)).into();
        }
        // Status belongs to the controllers here, as it does behind the status subresource.
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        let api_version = resource.api_version();
        set_managed(&mut object["metadata"], manager, operation, &api_version);
        self.default_and_validate(resource, namespace, name, &mut object, Some(old))?;
        Ok(object)
    }

    fn default_and_validate(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match resource.kind {
            "Service" => self.default_service(resource, namespace, name, object, old),
            "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController" => {
                if let Some(replicas) = object["spec"].get("replicas") {
                    match replicas.as_i64() {
                        Some(count) if count >= 0 => {}
                        _ => {
                            return Err(ApiError::invalid(
                                resource,
                                name,
                                "spec.replicas",
                                &format!(
                                    "Invalid value: {replicas}: must be greater than or equal to 0"
                                ),
                            ));
                        }
                    }
                } else if object["spec"].is_object() {
                    object["spec"]["replicas"] = 1.into();
                }
                if resource.kind != "ReplicationController" {
                    let selector = &object["spec"]["selector"]["matchLabels"];
                    let labels = &object["spec"]["template"]["metadata"]["labels"];
                    let matches = selector.as_object().is_some_and(|wanted| {
                        !wanted.is_empty()
                            && wanted
                                .iter()
                                .all(|(key, value)| labels.get(key) == Some(value))
                    });
                    if !matches {
                        return Err(ApiError::invalid(
                            resource,
                            name,
                            "spec.template.metadata.labels",
                            &format!(
                                "Invalid value: {labels}: `selector` does not match template `labels`"
                            ),
                        ));
                    }
                }
                Ok(())
            }
            "Namespace" => {
                if object["status"].is_null() {
                    object["status"] = json!({ "phase": "Active" });
                }
                if object["spec"].is_null() {
                    object["spec"] = json!({ "finalizers": ["kubernetes"] });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn default_service(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if !object["spec"].is_object() {
            object["spec"] = json!({});
        }
        let service_type = object["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_owned();
        object["spec"]["type"] = service_type.clone().into();
        let exposes_node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
        let ports = object["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let old_ports = old
            .and_then(|old| old["spec"]["ports"].as_array().cloned())
            .unwrap_or_default();
        let used_elsewhere: Vec<i64> = self
            .list_in(resource, namespace)
            .iter()
            .filter(|other| name_of(other) != name)
            .flat_map(|other| {
                other["spec"]["ports"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|port| port["nodePort"].as_i64())
            })
            .collect();
        let mut seen_node_ports = Vec::new();
        let mut seen_names = Vec::new();
        let mut defaulted = Vec::new();
        for (index, port) in ports.into_iter().enumerate() {
            let mut port = port;
            let field = format!("spec.ports[{index}]");
            let number = port["port"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&number) {
                return Err(ApiError::invalid(
                    resource,
                    name,
                    &format!("{field}.port"),
                    &format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        port["port"]
                    ),
                ));
            }
            if port["protocol"].is_null() {
                port["protocol"] = "TCP".into();
            }
            if port["targetPort"].is_null() {
                port["targetPort"] = number.into();
            }
            let port_name = port["name"].as_str().unwrap_or("").to_owned();
            if seen_names.contains(&port_name) {
                return Err(ApiError::invalid(
                    resource,
                    name,
                    &format!("{field}.name"),
                    &format!("Duplicate value: \"{port_name}\""),
                ));
            }
            seen_names.push(port_name);
            // An API server decodes into an int32 field; a string or a fraction never
            // reaches the defaulting below, which would otherwise replace it silently.
            let given_node_port = match port.get("nodePort") {
                None | Some(Value::Null) => None,
                Some(value) => Some(value.as_i64().ok_or_else(|| {
                    ApiError::invalid(
                        resource,
                        name,
                        &format!("{field}.nodePort"),
                        &format!("Invalid value: {value}: must be an integer"),
                    )
                })?),
            };
            match (given_node_port, exposes_node_ports) {
                (Some(node_port), true) => {
                    if !(30000..=32767).contains(&node_port) {
                        return Err(ApiError::invalid(
                            resource,
                            name,
                            &format!("{field}.nodePort"),
                            &format!(
                                "Invalid value: {node_port}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                    if seen_node_ports.contains(&node_port) {
                        return Err(ApiError::invalid(
                            resource,
                            name,
                            &format!("{field}.nodePort"),
                            &format!("Duplicate value: {node_port}"),
                        ));
                    }
                    if used_elsewhere.contains(&node_port) {
                        return Err(ApiError::invalid(
                            resource,
                            name,
                            &format!("{field}.nodePort"),
                            &format!(
                                "Invalid value: {node_port}: provided port is already allocated"
                            ),
                        ));
                    }
                    seen_node_ports.push(node_port);
                }
                (Some(node_port), false) if node_port != 0 => {
                    return Err(ApiError::invalid(
                        resource,
                        name,
                        &format!("{field}.nodePort"),
                        &format!("Forbidden: may not be used when `type` is '{service_type}'"),
                    ));
                }
                (_, true) => {
                    let kept = old_ports
                        .iter()
                        .find(|old_port| {
                            old_port["port"] == port["port"]
                                && old_port["protocol"] == port["protocol"]
                        })
                        .and_then(|old_port| old_port["nodePort"].as_i64());
                    let node_port = kept
                        .filter(|kept| !seen_node_ports.contains(kept))
                        .or_else(|| {
                            (30000..=32767).find(|candidate| {
                                !seen_node_ports.contains(candidate)
                                    && !used_elsewhere.contains(candidate)
                            })
                        })
                        .ok_or_else(|| {
                            ApiError::invalid(
                                resource,
                                name,
                                &format!("{field}.nodePort"),
                                "Internal error: range is full",
                            )
                        })?;
                    port["nodePort"] = node_port.into();
                    seen_node_ports.push(node_port);
                }
                (_, false) => {}
            }
            defaulted.push(port);
        }
        if !defaulted.is_empty() {
            object["spec"]["ports"] = Value::Array(defaulted);
        }
        if object["spec"]["clusterIP"].is_null() {
            let kept = old.and_then(|old| old["spec"]["clusterIP"].as_str().map(str::to_owned));
            let cluster_ip = match kept {
                Some(ip) => ip,
                None => {
                    let serial = self.next_serial();
                    format!("10.96.{}.{}", (serial / 250) % 250, serial % 250 + 2)
                }
            };
            object["spec"]["clusterIP"] = cluster_ip.clone().into();
            object["spec"]["clusterIPs"] = json!([cluster_ip]);
        }
        for (field, default) in [
            ("sessionAffinity", json!("None")),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
            ("internalTrafficPolicy", json!("Cluster")),
        ] {
            if object["spec"][field].is_null() {
                object["spec"][field] = default;
            }
        }
        if exposes_node_ports && object["spec"]["externalTrafficPolicy"].is_null() {
            object["spec"]["externalTrafficPolicy"] = "Cluster".into();
        }
        if object["status"].is_null() {
            object["status"] = json!({ "loadBalancer": {} });
        }
        Ok(())
    }

    /// Runs the controllers of one namespace until pods match their owners.
    fn reconcile(
        &mut self,
        namespace: &str,
        events: &mut Vec<WatchEvent>,
        hooks: &mut Vec<HookCall>,
    ) {
        let deployments = res("deployments", "apps");
        let replica_sets = res("replicasets", "apps");
        for deployment in self.list_in(deployments, namespace) {
            self.reconcile_deployment(deployment, events);
        }
        // Only owners whose pods or status are off are reconciled, from an index of pods by
        // owner built once per pass: with a pipeline's worth of controllers (a thousand),
        // copying or scanning every pod and controller on every write made each write
        // quadratic, and pausing a thousand pipelines took minutes.
        let mut by_owner: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for pod in self.iter_in(res("pods", ""), namespace) {
            for owner in pod["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(uid) = owner["uid"].as_str() {
                    by_owner.entry(uid.to_owned()).or_default().push((
                        pod["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        name_of(pod).to_owned(),
                    ));
                }
            }
        }
        let controllers = res("replicationcontrollers", "");
        // The owners this write can have unsettled: those it changed and those of the pods
        // it changed. Everything else was settled by the pass after the previous write.
        let touched = touched_owners(namespace, events);
        let mut stale = Vec::new();
        for resource in [replica_sets, controllers] {
            for owner in self.iter_in(resource, namespace) {
                let uid = owner["metadata"]["uid"].as_str().unwrap_or("");
                if touched
                    .as_ref()
                    .is_some_and(|touched| !touched.contains(uid))
                {
                    continue;
                }
                let count = by_owner.get(uid).map_or(0, Vec::len);
                let settled = i64::try_from(count).is_ok_and(|count| count == replicas_of(owner))
                    && owner.get("status") == Some(&replica_status(owner));
                if !settled {
                    stale.push((resource, owner.clone()));
                }
            }
        }
        for (resource, owner) in stale {
            let current = owner["metadata"]["uid"]
                .as_str()
                .and_then(|uid| by_owner.remove(uid))
                .unwrap_or_default();
            self.reconcile_pods(resource, owner, current, events);
        }
        let stateful_sets = res("statefulsets", "apps");
        for stateful_set in self.list_in(stateful_sets, namespace) {
            self.reconcile_stateful_set(stateful_set, events);
        }
        let pachd = self.get(deployments, namespace, "pachd").cloned();
        let running = pachd
            .as_ref()
            .is_some_and(|deployment| replicas_of(deployment) > 0);
        let was_running = self.pachd_running.get(namespace).copied().unwrap_or(false);
        if running != was_running {
            self.pachd_running.insert(namespace.to_owned(), running);
            hooks.push(match pachd {
                Some(deployment) if running => HookCall::Deployed(namespace.to_owned(), deployment),
                _ => HookCall::Stopped(namespace.to_owned()),
            });
        }
    }

    fn reconcile_deployment(&mut self, deployment: Value, events: &mut Vec<WatchEvent>) {
        let replica_sets = res("replicasets", "apps");
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = name_of(&deployment).to_owned();
        let uid = deployment["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let template = deployment["spec"]["template"].clone();
        let hash = hash_suffix(&template);
        let rs_name = format!("{name}-{hash}");
        let replicas = replicas_of(&deployment);
        for stale in self.list_in(replica_sets, &namespace) {
            if owned_by(&stale, &uid) && name_of(&stale) != rs_name {
                self.remove(replica_sets, &namespace, name_of(&stale), events);
            }
        }
        match self.get(replica_sets, &namespace, &rs_name).cloned() {
            Some(mut existing) => {
                if existing["spec"]["replicas"].as_i64() != Some(replicas) {
                    existing["spec"]["replicas"] = replicas.into();
                    if let Some(generation) = existing["metadata"]["generation"].as_i64() {
                        existing["metadata"]["generation"] = (generation + 1).into();
                    }
                    self.put(replica_sets, existing, events);
                }
            }
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                labels["pod-template-hash"] = hash.clone().into();
                let mut selector = deployment["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = hash.clone().into();
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = labels.clone();
                let rs_uid = self.uid();
                let replica_set = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace,
                        "uid": rs_uid,
                        "creationTimestamp": now(),
                        "generation": 1,
                        "labels": labels,
                        "annotations": { "deployment.kubernetes.io/revision": "1" },
                        "ownerReferences": [owner_ref(&deployment)],
                    },
                    "spec": { "replicas": replicas, "selector": selector, "template": rs_template },
                    "status": { "replicas": 0 },
                });
                self.put(replica_sets, replica_set, events);
                self.event(
                    &deployment,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                    events,
                );
            }
        }
        let mut status = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                  "message": "Deployment has minimum availability." },
                { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                  "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed.") },
            ],
        });
        if replicas == 0 {
            for field in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ] {
                if let Some(map) = status.as_object_mut() {
                    map.remove(field);
                }
            }
        }
        self.set_status(res("deployments", "apps"), &deployment, status, events);
    }

    fn set_status(
        &mut self,
        resource: &'static ResourceType,
        object: &Value,
        status: Value,
        events: &mut Vec<WatchEvent>,
    ) {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
        let Some(current) = self.get(resource, namespace, name_of(object)) else {
            return;
        };
        // Timestamps in conditions would make every pass a change; compare without them.
        if current.get("status") != Some(&status) {
            let mut updated = current.clone();
            updated["status"] = status;
            self.put(resource, updated, events);
        }
    }

    /// Brings one ReplicaSet's or ReplicationController's pods (creation time and name of
    /// each) to its replica count, then its status.
    fn reconcile_pods(
        &mut self,
        resource: &'static ResourceType,
        owner: Value,
        mut current: Vec<(String, String)>,
        events: &mut Vec<WatchEvent>,
    ) {
        let pods = res("pods", "");
        let namespace = owner["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let replicas = replicas_of(&owner);
        current.sort();
        let count = i64::try_from(current.len()).unwrap_or(i64::MAX);
        if count > replicas {
            let extra = usize::try_from(count - replicas).unwrap_or(0);
            for (_, pod) in current.iter().rev().take(extra) {
                self.remove(pods, &namespace, pod, events);
            }
        }
        for _ in count..replicas {
            let pod_name = format!("{}-{}", name_of(&owner), random_suffix(5));
            let pod = self.make_pod(&namespace, &pod_name, &owner);
            self.put(pods, pod.clone(), events);
            self.scheduled(&pod, events);
        }
        self.set_status(resource, &owner, replica_status(&owner), events);
    }

    fn reconcile_stateful_set(&mut self, stateful_set: Value, events: &mut Vec<WatchEvent>) {
        let pods = res("pods", "");
        let namespace = stateful_set["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = name_of(&stateful_set).to_owned();
        let uid = stateful_set["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let replicas = replicas_of(&stateful_set);
        let prefix = format!("{name}-");
        let extra: Vec<String> = self
            .iter_in(pods, &namespace)
            .filter(|pod| owned_by(pod, &uid))
            .map(name_of)
            .filter(|pod| {
                pod.strip_prefix(&prefix)
                    .and_then(|rest| rest.parse::<i64>().ok())
                    .is_none_or(|ordinal| ordinal >= replicas)
            })
            .map(str::to_owned)
            .collect();
        for pod in extra {
            self.remove(pods, &namespace, &pod, events);
        }
        for ordinal in 0..replicas {
            let pod_name = format!("{name}-{ordinal}");
            if self.get(pods, &namespace, &pod_name).is_none() {
                let pod = self.make_pod(&namespace, &pod_name, &stateful_set);
                self.put(pods, pod.clone(), events);
                self.scheduled(&pod, events);
            }
        }
        let revision = format!("{name}-{}", hash_suffix(&stateful_set["spec"]["template"]));
        let status = json!({
            "observedGeneration": stateful_set["metadata"]["generation"],
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        });
        self.set_status(res("statefulsets", "apps"), &stateful_set, status, events);
    }

    fn make_pod(&mut self, namespace: &str, name: &str, owner: &Value) -> Value {
        let template = &owner["spec"]["template"];
        let mut spec = template["spec"].clone();
        if !spec.is_object() {
            spec = json!({});
        }
        // A cluster without nodes (an API server started without the sandbox) still runs
        // its pods somewhere.
        let (node, host_ip) = super::node::node_for(self.iter_in(res("nodes", ""), ""), namespace)
            .unwrap_or_else(|| ("sandbox-node".to_owned(), "127.0.0.1".to_owned()));
        spec["nodeName"] = node.into();
        if spec["restartPolicy"].is_null() {
            spec["restartPolicy"] = "Always".into();
        }
        let serial = self.next_serial();
        let pod_ip = format!("10.244.{}.{}", (serial / 250) % 250, serial % 250 + 2);
        let started = now();
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        let container_statuses: Vec<Value> = containers
            .iter()
            .map(|container| {
                json!({
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "state": { "running": { "startedAt": started } },
                })
            })
            .collect();
        let mut labels = template["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        if owner["kind"] == "StatefulSet" {
            labels["statefulset.kubernetes.io/pod-name"] = name.into();
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self.uid(),
                "creationTimestamp": started,
                "labels": labels,
                "annotations": template["metadata"]["annotations"].clone(),
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": spec,
            "status": {
                "phase": "Running",
                "conditions": [
                    { "type": "Initialized", "status": "True", "lastTransitionTime": started },
                    { "type": "Ready", "status": "True", "lastTransitionTime": started },
                    { "type": "ContainersReady", "status": "True", "lastTransitionTime": started },
                    { "type": "PodScheduled", "status": "True", "lastTransitionTime": started },
                ],
                "hostIP": host_ip,
                "hostIPs": [{ "ip": host_ip }],
                "podIP": pod_ip,
                "podIPs": [{ "ip": pod_ip }],
                "startTime": started,
                "containerStatuses": container_statuses,
                "qosClass": "BestEffort",
            },
        })
    }

    /// The scheduler's event for a new pod.
    fn scheduled(&mut self, pod: &Value, events: &mut Vec<WatchEvent>) {
        let message = format!(
            "Successfully assigned {}/{} to {}",
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
            name_of(pod),
            pod["spec"]["nodeName"].as_str().unwrap_or("")
        );
        self.event(pod, "Scheduled", &message, events);
    }

    fn event(&mut self, object: &Value, reason: &str, message: &str, events: &mut Vec<WatchEvent>) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let serial = self.next_serial();
        let name = format!("{}.{:016x}", name_of(object), serial);
        let timestamp = now();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": name, "namespace": namespace, "uid": self.uid(), "creationTimestamp": timestamp },
            "involvedObject": {
                "apiVersion": object["apiVersion"],
                "kind": object["kind"],
                "name": object["metadata"]["name"],
                "namespace": namespace,
                "uid": object["metadata"]["uid"],
            },
            "reason": reason,
            "message": message,
            "type": "Normal",
            "count": 1,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "source": { "component": "ankus-sandbox" },
            "reportingComponent": "ankus-sandbox",
        });
        self.put(res("events", ""), event, events);
    }
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn check_type(resource: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    if (!api_version.is_empty() && api_version != resource.api_version())
        || (!kind.is_empty() && kind != resource.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) and kind ({kind}) do not match the resource {} ({})",
            resource.qualified(),
            resource.kind
        )));
    }
    Ok(())
}

fn set_managed(metadata: &mut Value, manager: &str, operation: &str, api_version: &str) {
    let mut entries: Vec<Value> = metadata["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.retain(|entry| !(entry["manager"] == manager && entry["operation"] == operation));
    entries.push(json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    }));
    metadata["managedFields"] = Value::Array(entries);
}

/// The replica count of an `autoscaling/v1` Scale built from `object`.
fn scale_of(resource: &ResourceType, object: &Value) -> Value {
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| object["spec"]["selector"].as_object())
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| value.as_str().map(|value| format!("{key}={value}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let _ = resource;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
            "creationTimestamp": object["metadata"]["creationTimestamp"],
        },
        "spec": { "replicas": replicas_of(object) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

fn apply_patch(
    resource: &ResourceType,
    name: &str,
    kind: PatchKind,
    current: &Value,
    body: &[u8],
    previous_apply: Option<&Value>,
) -> Result<(Value, Option<Value>), ApiError> {
    let bad_body = |error: &dyn std::fmt::Display| {
        ApiError::bad_request(format!("error decoding patch: {error}"))
    };
    match kind {
        PatchKind::Json => {
            let operations: json_patch::Patch =
                serde_json::from_slice(body).map_err(|error| bad_body(&error))?;
            let mut patched = current.clone();
            json_patch::patch(&mut patched, &operations).map_err(|error| {
                ApiError::unprocessable_patch(resource, name, &error.to_string())
            })?;
            Ok((patched, None))
        }
        PatchKind::Merge => {
            let patch: Value = serde_json::from_slice(body).map_err(|error| bad_body(&error))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut patched = current.clone();
            json_patch::merge(&mut patched, &patch);
            Ok((patched, None))
        }
        PatchKind::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(|error| bad_body(&error))?;
            let patched = patch::strategic_merge(current, &patch)
                .map_err(|problem| ApiError::unprocessable_patch(resource, name, &problem))?;
            Ok((patched, None))
        }
        PatchKind::Apply => {
            let applied = parse_apply_body(body)?;
            let patched = patch::server_side_apply(current, previous_apply, &applied)
                .map_err(|problem| ApiError::unprocessable_patch(resource, name, &problem))?;
            Ok((patched, Some(applied)))
        }
    }
}

/// Reads an apply body: YAML or JSON, one object.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("error decoding YAML: {error}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "an apply configuration must be an object",
        ));
    }
    Ok(value)
}

impl Default for KubeState {
    fn default() -> Self {
        KubeState::new()
    }
}

impl KubeState {
    /// An empty cluster with the `default` and `kube-system` namespaces.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(8192);
        let state = KubeState {
            store: Mutex::new(Store::default()),
            events,
            hooks: Mutex::new(Vec::new()),
            observers: Mutex::new(Vec::new()),
            pod_ports: Arc::default(),
        };
        {
            let mut store = lock(&state.store);
            let mut events = Vec::new();
            for namespace in ["default", "kube-system", "kube-public"] {
                let object = store
                    .admit_new(
                        res("namespaces", ""),
                        "",
                        json!({ "metadata": { "name": namespace } }),
                        "ankus-sandbox",
                        "Update",
                    )
                    .expect("the built-in namespaces are valid");
                store.put(res("namespaces", ""), object, &mut events);
            }
        }
        state
    }

    /// Registers callbacks for pachd Deployments appearing and going away.
    pub fn add_hooks(&self, hooks: Arc<dyn DeploymentHooks>) {
        lock(&self.hooks).push(hooks);
    }

    /// Where the pods' ports lead, for port-forwards.
    pub fn pod_ports(&self) -> &Arc<super::portforward::PodPorts> {
        &self.pod_ports
    }

    /// Registers an observer of every change.
    pub fn add_observer(&self, observer: Arc<dyn StateObserver>) {
        lock(&self.observers).push(observer);
    }

    /// The current resourceVersion.
    pub fn revision(&self) -> u64 {
        lock(&self.store).revision
    }

    /// One object.
    pub fn get(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        lock(&self.store)
            .get(resource, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Objects of a kind in a namespace (or everywhere with `None`) matching `selectors`, and
    /// the resourceVersion of the list.
    pub fn list(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        selectors: &Selectors,
    ) -> (Vec<Value>, u64) {
        let store = lock(&self.store);
        let prefix = format!(
            "{}/{}/{}",
            resource.group, resource.version, resource.plural
        );
        let items = store
            .objects
            .iter()
            .filter(|(key, _)| key.resource == prefix)
            .filter(|(key, _)| {
                namespace.is_none_or(|namespace| !resource.namespaced || key.namespace == namespace)
            })
            .map(|(_, object)| object)
            .filter(|object| selectors.matches(object))
            .cloned()
            .collect();
        (items, store.revision)
    }

    /// Starts a watch: the events to send first (the current objects as `ADDED` when `since`
    /// is absent or 0, otherwise the history after `since`) and a receiver of later changes.
    pub fn watch(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), ApiError> {
        let store = lock(&self.store);
        let receiver = self.events.subscribe();
        let in_scope = |event: &WatchEvent| {
            std::ptr::eq(event.resource, resource)
                && namespace
                    .is_none_or(|namespace| !resource.namespaced || event.namespace() == namespace)
        };
        let backlog = match since {
            None | Some(0) => {
                let prefix = format!(
                    "{}/{}/{}",
                    resource.group, resource.version, resource.plural
                );
                store
                    .objects
                    .iter()
                    .filter(|(key, _)| key.resource == prefix)
                    .map(|(_, object)| WatchEvent {
                        revision: object["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|rv| rv.parse().ok())
                            .unwrap_or(0),
                        event_type: "ADDED",
                        resource,
                        object: object.clone(),
                    })
                    .filter(|event| in_scope(event))
                    .collect()
            }
            Some(since) if since < store.history_floor => return Err(ApiError::gone(since)),
            Some(since) => store
                .history
                .iter()
                .filter(|event| event.revision > since && in_scope(event))
                .cloned()
                .collect(),
        };
        Ok((backlog, receiver))
    }

    /// Runs `operation` under the lock, then publishes its events, lets observers react and
    /// calls hooks, in that order.
    async fn write<T>(
        &self,
        namespace_hint: Option<&str>,
        operation: impl FnOnce(&mut Store, &mut Vec<WatchEvent>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let (result, events, hook_calls) = {
            let mut store = lock(&self.store);
            let mut events = Vec::new();
            let mut hook_calls = Vec::new();
            let result = operation(&mut store, &mut events)?;
            let mut namespaces: Vec<String> = events
                .iter()
                .filter(|event| event.resource.namespaced)
                .map(|event| event.namespace().to_owned())
                .collect();
            if let Some(namespace) = namespace_hint {
                namespaces.push(namespace.to_owned());
            }
            namespaces.extend(
                events
                    .iter()
                    .filter(|event| event.resource.kind == "Namespace")
                    .map(|event| event.name().to_owned()),
            );
            namespaces.sort();
            namespaces.dedup();
            for namespace in namespaces {
                store.reconcile(&namespace, &mut events, &mut hook_calls);
            }
            for event in &events {
                // No receivers is fine: nobody is watching.
                let _ = self.events.send(event.clone());
            }
            (result, events, hook_calls)
        };
        let observers: Vec<Arc<dyn StateObserver>> = lock(&self.observers).clone();
        for event in &events {
            for observer in &observers {
                observer.changed(event).await;
            }
        }
        let hooks: Vec<Arc<dyn DeploymentHooks>> = lock(&self.hooks).clone();
        for call in hook_calls {
            for hook in &hooks {
                match &call {
                    HookCall::Deployed(namespace, deployment) => {
                        hook.pachd_deployed(namespace, deployment)
                    }
                    HookCall::Stopped(namespace) => hook.pachd_stopped(namespace),
                }
            }
        }
        Ok(result)
    }

    /// Creates an object (POST).
    pub async fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let manager = if options.field_manager.is_empty() {
            "unknown"
        } else {
            options.field_manager.as_str()
        };
        let dry_run = options.dry_run;
        self.write(Some(namespace), |store, events| {
            let admitted = store.admit_new(resource, namespace, object, manager, "Update")?;
            if dry_run {
                return Ok(admitted);
            }
            Ok(store.put(resource, admitted, events))
        })
        .await
    }

    /// Replaces an object (PUT), with a resourceVersion precondition when the body has one.
    pub async fn update(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let manager = if options.field_manager.is_empty() {
            "unknown"
        } else {
            options.field_manager.as_str()
        };
        let dry_run = options.dry_run;
        self.write(Some(namespace), |store, events| {
            let old = store
                .get(resource, namespace, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            let admitted =
                store.admit_update(resource, namespace, name, &old, object, manager, "Update")?;
            if dry_run || admitted == old {
                return Ok(admitted);
            }
            Ok(store.put(resource, admitted, events))
        })
        .await
    }

    /// Patches an object; server-side apply creates it when it does not exist.
    pub async fn patch(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let manager = if options.field_manager.is_empty() {
            match kind {
                PatchKind::Apply => {
                    return Err(ApiError::bad_request(
                        "fieldManager is required for apply requests",
                    ));
                }
                _ => "unknown",
            }
        } else {
            options.field_manager.as_str()
        };
        let dry_run = options.dry_run;
        self.write(Some(namespace), |store, events| {
            let key = ObjectKey::new(resource, namespace, name);
            let Some(old) = store.get(resource, namespace, name).cloned() else {
                if kind != PatchKind::Apply {
                    return Err(ApiError::not_found(resource, name));
                }
                let mut applied = parse_apply_body(body)?;
                if applied["metadata"]["name"]
                    .as_str()
                    .is_some_and(|given| given != name)
                {
                    return Err(ApiError::bad_request(
                        "the name of the object does not match the name on the URL",
                    ));
                }
                applied["metadata"]["name"] = name.into();
                let admitted =
                    store.admit_new(resource, namespace, applied.clone(), manager, "Apply")?;
                if dry_run {
                    return Ok(admitted);
                }
                store.applied.insert((key, manager.to_owned()), applied);
                return Ok(store.put(resource, admitted, events));
            };
            let previous_apply = store
                .applied
                .get(&(key.clone(), manager.to_owned()))
                .cloned();
            let (patched, applied) =
                apply_patch(resource, name, kind, &old, body, previous_apply.as_ref())?;
            let operation = if kind == PatchKind::Apply {
                "Apply"
            } else {
                "Update"
            };
            let admitted =
                store.admit_update(resource, namespace, name, &old, patched, manager, operation)?;
            if dry_run {
                return Ok(admitted);
            }
            if let Some(applied) = applied {
                store.applied.insert((key, manager.to_owned()), applied);
            }
            if admitted == old {
                return Ok(old);
            }
            Ok(store.put(resource, admitted, events))
        })
        .await
    }

    /// Deletes an object (and its dependents); returns it as it was.
    pub async fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let dry_run = options.dry_run;
        self.write(Some(namespace), |store, events| {
            if dry_run {
                return store
                    .get(resource, namespace, name)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(resource, name));
            }
            store
                .remove(resource, namespace, name, events)
                .ok_or_else(|| ApiError::not_found(resource, name))
        })
        .await
    }

    /// The `scale` subresource of a Deployment, StatefulSet, ReplicaSet or controller.
    pub fn get_scale(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let object = self.get(resource, namespace, name)?;
        Ok(scale_of(resource, &object))
    }

    /// Changes the `scale` subresource with a patch (`kind` = Some) or a replacement Scale.
    pub async fn write_scale(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        kind: Option<PatchKind>,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let manager = if options.field_manager.is_empty() {
            "unknown"
        } else {
            options.field_manager.as_str()
        };
        let dry_run = options.dry_run;
        self.write(Some(namespace), |store, events| {
            let old = store
                .get(resource, namespace, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            let scale = scale_of(resource, &old);
            let new_scale = match kind {
                Some(kind) => apply_patch(resource, name, kind, &scale, body, None)?.0,
                None => serde_json::from_slice(body).map_err(|error| {
                    ApiError::bad_request(format!("error decoding Scale: {error}"))
                })?,
            };
            if let Some(given) = new_scale["metadata"]["resourceVersion"].as_str()
                && !given.is_empty()
                && Some(given) != old["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::conflict(resource, name));
            }
            let replicas = new_scale["spec"]["replicas"].clone();
            let mut updated = old.clone();
            updated["spec"]["replicas"] = replicas;
            let admitted =
                store.admit_update(resource, namespace, name, &old, updated, manager, "Update")?;
            if dry_run {
                return Ok(scale_of(resource, &admitted));
            }
            let stored = if admitted == old {
                old
            } else {
                store.put(resource, admitted, events)
            };
            Ok(scale_of(resource, &stored))
        })
        .await
    }

    /// Creates an object from inside the sandbox (seeding); errors are the API server's.
    pub async fn create_object(&self, object: Value) -> Result<Value, ApiError> {
        let resource = resources::by_kind(
            object["apiVersion"].as_str().unwrap_or(""),
            object["kind"].as_str().unwrap_or(""),
        )
        .ok_or_else(ApiError::no_such_resource)?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let options = WriteOptions {
            field_manager: "ankus-sandbox".to_owned(),
            ..WriteOptions::default()
        };
        self.create(resource, &namespace, object, &options).await
    }

    /// Sets a pipeline's worker count: the `pipeline-<name>-v1` ReplicationController is
    /// created when missing and its pods follow the count (0 removes them).
    pub async fn set_pipeline_workers(
        &self,
        namespace: &str,
        pipeline: &str,
        replicas: u32,
        image: &str,
    ) -> Result<(), ApiError> {
        let controllers = res("replicationcontrollers", "");
        let name = format!("pipeline-{pipeline}-v1");
        if self.get(controllers, namespace, &name).is_err() {
            match self
                .create_object(super::seed::worker_controller(
                    namespace, pipeline, replicas, image,
                ))
                .await
            {
                Ok(_) => return Ok(()),
                // Another state change of the same pipeline created it meanwhile: scale it.
                Err(error) if error.reason == "AlreadyExists" => {}
                Err(error) => return Err(error),
            }
        }
        let body = json!({ "spec": { "replicas": replicas } }).to_string();
        let options = WriteOptions {
            field_manager: "pachd".to_owned(),
            ..WriteOptions::default()
        };
        self.patch(
            controllers,
            namespace,
            &name,
            PatchKind::Merge,
            body.as_bytes(),
            &options,
        )
        .await?;
        Ok(())
    }

    /// The names of a namespace's pods, sorted (a convenience for tests and the sandbox).
    pub fn pod_names(&self, namespace: &str) -> Vec<String> {
        let (pods, _) = self.list(res("pods", ""), Some(namespace), &Selectors::default());
        let mut names: Vec<String> = pods.iter().map(|pod| name_of(pod).to_owned()).collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::super::seed::SeedSpec;
    use super::*;

    async fn patch_pachd_ports(ports: &str) -> Result<Value, ApiError> {
        let state = KubeState::new();
        state
            .seed_pachyderm("old", &SeedSpec::default())
            .await
            .expect("seed");
        let body = format!(r#"{{"spec":{{"ports":{ports}}}}}"#);
        state
            .patch(
                res("services", ""),
                "old",
                "pachd",
                PatchKind::Merge,
                body.as_bytes(),
                &WriteOptions::default(),
            )
            .await
    }

    #[tokio::test]
    async fn a_merge_patch_with_a_string_node_port_is_invalid_instead_of_reallocated() {
        let error = patch_pachd_ports(r#"[{"port":650,"nodePort":"abc"}]"#)
            .await
            .expect_err("a string nodePort is refused");
        assert_eq!((error.code, error.reason), (422, "Invalid"));
        assert_eq!(
            error.message,
            r#"Service "pachd" is invalid: spec.ports[0].nodePort: Invalid value: "abc": must be an integer"#
        );
        let fraction = patch_pachd_ports(r#"[{"port":650,"nodePort":30650.5}]"#)
            .await
            .expect_err("a fractional nodePort is refused");
        assert_eq!(fraction.code, 422, "{}", fraction.message);
        assert!(
            fraction.message.contains("spec.ports[0].nodePort"),
            "{}",
            fraction.message
        );
    }

    #[tokio::test]
    async fn a_node_port_out_of_range_or_taken_by_another_service_is_invalid() {
        let out_of_range = patch_pachd_ports(r#"[{"port":650,"nodePort":29999}]"#)
            .await
            .expect_err("below the range");
        assert_eq!(out_of_range.code, 422);
        assert!(
            out_of_range
                .message
                .contains("spec.ports[0].nodePort: Invalid value: 29999"),
            "{}",
            out_of_range.message
        );
        let duplicate = patch_pachd_ports(
            r#"[{"name":"a","port":650,"nodePort":30650},{"name":"b","port":651,"nodePort":30650}]"#,
        )
        .await
        .expect_err("the same nodePort twice");
        assert_eq!(
            duplicate.message,
            r#"Service "pachd" is invalid: spec.ports[1].nodePort: Duplicate value: 30650"#
        );
        // etcd's Service holds 32379.
        let taken = patch_pachd_ports(r#"[{"port":650,"nodePort":32379}]"#)
            .await
            .expect_err("another Service's nodePort");
        assert_eq!(
            taken.message,
            r#"Service "pachd" is invalid: spec.ports[0].nodePort: Invalid value: 32379: provided port is already allocated"#
        );
    }
}
