//! The `kube` package: Kubernetes from scripts. Thin: arguments are converted, the
//! `crate::kube` client does the work, every change passes the dry-run gate with a diff of
//! what it would change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Map, TypeBuilder};
use serde_json::Value;

use crate::host::convert::from_json;
use crate::kube::{KubeClient, SavedObject};

/// A connection to a cluster (context + default namespace).
#[derive(Clone)]
pub struct Kube {
    client: KubeClient,
    /// Objects "saved" during a dry run, so a later `restore_saved` of the same path can be
    /// planned although nothing was written — through any connection of the run.
    planned_saves: Arc<Mutex<HashMap<PathBuf, SavedObject>>>,
}

/// The dry-run saves of this process, shared by every connection (a flow saves through one
/// connection and restores through another).
fn planned_saves() -> Arc<Mutex<HashMap<PathBuf, SavedObject>>> {
    static SAVES: std::sync::OnceLock<Arc<Mutex<HashMap<PathBuf, SavedObject>>>> =
        std::sync::OnceLock::new();
    SAVES.get_or_init(Default::default).clone()
}

impl Kube {
    fn summary(&self) -> Map {
        let mut map = Map::new();
        map.insert("context".into(), self.client.context().into());
        map.insert("namespace".into(), self.client.namespace().into());
        map.insert("server".into(), self.client.server().into());
        map
    }
}

impl CustomType for Kube {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("Kube")
            .with_get("context", |kube: &mut Self| {
                kube.client.context().to_owned()
            })
            .with_get("namespace", |kube: &mut Self| {
                kube.client.namespace().to_owned()
            })
            .with_get("server", |kube: &mut Self| kube.client.server().to_owned())
            .with_fn("to_map", |kube: &mut Self| kube.summary())
            .and_comments(&[
                "/// The connection as a map: context, namespace and API server.",
                "///",
                "/// ```rhai",
                "/// print(kube::connect(\"old\").to_map());",
                "/// ```",
            ])
            .with_fn("to_string", |kube: &mut Self| {
                format!(
                    "kube {} (namespace {}, {})",
                    kube.client.context(),
                    kube.client.namespace(),
                    kube.client.server()
                )
            })
            .with_fn("to_debug", |kube: &mut Self| {
                format!("Kube({})", kube.client.context())
            });
    }
}

/// A typed Kubernetes object: a summary with getters plus the raw object.
#[derive(Clone)]
pub struct KubeObject {
    kind: &'static str,
    fields: Map,
    raw: Value,
    text: String,
}

impl KubeObject {
    fn service(raw: Value) -> KubeObject {
        let service = crate::kube::Service::from_json(&raw);
        let ports: Array = service
            .ports
            .iter()
            .map(|port| {
                let mut map = Map::new();
                map.insert("name".into(), port.name.clone().into());
                map.insert("port".into(), port.port.into());
                map.insert("target_port".into(), port.target_port.clone().into());
                map.insert(
                    "node_port".into(),
                    port.node_port.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
                );
                map.insert("protocol".into(), port.protocol.clone().into());
                Dynamic::from_map(map)
            })
            .collect();
        let mut fields = Map::new();
        fields.insert("name".into(), service.name.clone().into());
        fields.insert("namespace".into(), service.namespace.clone().into());
        fields.insert("type".into(), service.service_type.clone().into());
        fields.insert("cluster_ip".into(), service.cluster_ip.clone().into());
        fields.insert("ports".into(), Dynamic::from_array(ports));
        fields.insert(
            "node_ports".into(),
            Dynamic::from_array(
                service
                    .node_ports()
                    .into_iter()
                    .map(Dynamic::from)
                    .collect(),
            ),
        );
        fields.insert(
            "resource_version".into(),
            service.resource_version.clone().into(),
        );
        let text = format!(
            "service {}/{} {} {}",
            service.namespace,
            service.name,
            service.service_type,
            service
                .ports
                .iter()
                .map(|port| match port.node_port {
                    Some(node_port) => format!("{}:{}", port.port, node_port),
                    None => port.port.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        );
        KubeObject {
            kind: "Service",
            fields,
            raw,
            text,
        }
    }

    fn workload(raw: Value) -> KubeObject {
        let workload = crate::kube::Workload::from_json(&raw);
        let ready = crate::kube::Workload::is_ready(&raw);
        let mut fields = Map::new();
        fields.insert("kind".into(), workload.kind.clone().into());
        fields.insert("name".into(), workload.name.clone().into());
        fields.insert("namespace".into(), workload.namespace.clone().into());
        fields.insert("replicas".into(), workload.replicas.into());
        fields.insert("ready_replicas".into(), workload.ready_replicas.into());
        fields.insert("ready".into(), ready.into());
        fields.insert(
            "images".into(),
            Dynamic::from_array(workload.images.iter().cloned().map(Dynamic::from).collect()),
        );
        let text = format!(
            "{} {}/{} {}/{} ready",
            workload.kind.to_lowercase(),
            workload.namespace,
            workload.name,
            workload.ready_replicas,
            workload.replicas
        );
        KubeObject {
            kind: "Workload",
            fields,
            raw,
            text,
        }
    }

    fn pod(raw: Value) -> KubeObject {
        let pod = crate::kube::Pod::from_json(&raw);
        let mut fields = Map::new();
        fields.insert("name".into(), pod.name.clone().into());
        fields.insert("namespace".into(), pod.namespace.clone().into());
        fields.insert("phase".into(), pod.phase.clone().into());
        fields.insert("ready".into(), pod.ready.into());
        fields.insert("owner".into(), pod.owner.clone().into());
        fields.insert("restarts".into(), pod.restarts.into());
        fields.insert("ip".into(), pod.ip.clone().into());
        fields.insert("node".into(), pod.node.clone().into());
        fields.insert(
            "labels".into(),
            from_json(&Value::Object(pod.labels.clone())),
        );
        let text = format!(
            "pod {}/{} {}{}",
            pod.namespace,
            pod.name,
            pod.phase,
            if pod.ready { " ready" } else { "" }
        );
        KubeObject {
            kind: "Pod",
            fields,
            raw,
            text,
        }
    }

    fn namespace(raw: Value) -> KubeObject {
        let namespace = crate::kube::Namespace::from_json(&raw);
        let mut fields = Map::new();
        fields.insert("name".into(), namespace.name.clone().into());
        fields.insert("phase".into(), namespace.phase.clone().into());
        let text = format!("namespace {} {}", namespace.name, namespace.phase);
        KubeObject {
            kind: "Namespace",
            fields,
            raw,
            text,
        }
    }

    fn field(&self, name: &str) -> Dynamic {
        self.fields.get(name).cloned().unwrap_or(Dynamic::UNIT)
    }
}

impl CustomType for KubeObject {
    fn build(mut builder: TypeBuilder<Self>) {
        builder.with_name("KubeObject");
        for name in [
            "name",
            "namespace",
            "type",
            "cluster_ip",
            "ports",
            "node_ports",
            "resource_version",
            "kind",
            "replicas",
            "ready_replicas",
            "ready",
            "images",
            "phase",
            "owner",
            "restarts",
            "ip",
            "node",
            "labels",
        ] {
            builder.with_get(name, move |object: &mut Self| object.field(name));
        }
        builder
            .with_get("object", |object: &mut Self| from_json(&object.raw))
            .with_fn("to_map", |object: &mut Self| object.fields.clone())
            .and_comments(&[
                "/// The typed view as a map (name, namespace, kind and the kind's fields).",
                "///",
                "/// ```rhai",
                "/// print(kube::connect(\"old\").service(\"pachd\").to_map());",
                "/// ```",
            ])
            .with_fn("to_string", |object: &mut Self| object.text.clone())
            .with_fn("to_debug", |object: &mut Self| {
                format!("{}({})", object.kind, object.text)
            });
    }
}

/// Registers the package's types.
pub fn register_types(engine: &mut rhai::Engine) {
    engine.build_type::<Kube>();
    engine.build_type::<KubeObject>();
}

mod support {
    //! Shared steps of the package's functions, outside the exported module.
    use std::path::PathBuf;
    use std::time::Duration;

    use rhai::{Array, Dynamic, Map, NativeCallContext, Position};
    use serde_json::{Value, json};

    use super::{Kube, KubeObject};
    use crate::host::context::HostCtx;
    use crate::host::convert::{from_json, to_json};
    use crate::host::error::{BindingResult, script_error, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;
    use crate::kube::{
        ConnectOptions, KubeClient, KubeError, ListOptions, PatchType, objects::diff,
    };

    pub(super) fn fail(error: KubeError, position: Position) -> Box<rhai::EvalAltResult> {
        script_error(error, position)
    }

    pub(super) fn option_text(options: &Map, key: &str) -> Option<String> {
        options
            .get(key)
            .filter(|value| !value.is_unit())
            .map(|value| value.to_string())
    }

    pub(super) fn connect_options(host: &HostCtx, options: &Map) -> ConnectOptions {
        ConnectOptions {
            context: option_text(options, "context"),
            namespace: option_text(options, "namespace"),
            kubeconfig: option_text(options, "kubeconfig").map(PathBuf::from),
            preset_kubeconfig: host.options().kubeconfig.clone(),
            timeout: None,
            ..ConnectOptions::default()
        }
    }

    /// The `timeout` option of `kube::connect`: seconds, more than zero, at most a day.
    pub(super) fn timeout_option(
        options: &Map,
        position: Position,
    ) -> BindingResult<Option<Duration>> {
        let Some(value) = options.get("timeout").filter(|value| !value.is_unit()) else {
            return Ok(None);
        };
        let seconds = if let Ok(int) = value.as_int() {
            int as f64
        } else if let Ok(float) = value.as_float() {
            float
        } else {
            return Err(script_fail(
                Kind::Invalid,
                format!(
                    "option 'timeout' must be a number of seconds, not {}",
                    value.type_name()
                ),
                position,
            ));
        };
        if !(seconds > 0.0 && seconds <= 86_400.0) {
            return Err(script_fail(
                Kind::Invalid,
                format!(
                    "option 'timeout' must be more than 0 and at most 86400 seconds, not {seconds}"
                ),
                position,
            ));
        }
        Ok(Some(Duration::from_secs_f64(seconds)))
    }

    /// Whether every nodePort named in `wanted` (old → new, at `indexes` of the ports list)
    /// has its new value in `service`.
    pub(super) fn ports_at(service: &Value, wanted: &[(i64, i64)], indexes: &[usize]) -> bool {
        wanted.iter().zip(indexes).all(|((_, to), index)| {
            service["spec"]["ports"][*index]["nodePort"].as_i64() == Some(*to)
        })
    }

    pub(super) fn target(client: &KubeClient, kind: &str, name: &str) -> String {
        format!(
            "{kind}/{name} ({}/{})",
            client.context(),
            client.namespace()
        )
    }

    pub(super) fn list_options(options: &Map) -> ListOptions {
        ListOptions {
            label_selector: option_text(options, "labels"),
            field_selector: option_text(options, "fields"),
            namespace: option_text(options, "namespace"),
            all_namespaces: options
                .get("all_namespaces")
                .and_then(|value| value.as_bool().ok())
                .unwrap_or(false),
        }
    }

    pub(super) fn run_patch(
        call: &NativeCallContext,
        kube: &Kube,
        kind: &str,
        name: &str,
        patch: Value,
        patch_type: PatchType,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(call)?;
        let position = call.call_position();
        let dry_run = host.is_dry_run();
        let (client, kind_owned, name_owned) =
            (kube.client.clone(), kind.to_owned(), name.to_owned());
        let patch_sent = patch.clone();
        // In a dry run the server computes the result (dryRun=All), so the plan shows the
        // real diff; otherwise the patch itself is what the plan would have shown.
        let preview = if dry_run {
            let client = client.clone();
            let (kind, name, patch) = (kind_owned.clone(), name_owned.clone(), patch.clone());
            Some(
                host.block_on(
                    async move {
                        client
                            .patch(&kind, &name, None, patch_type, &patch, true)
                            .await
                    },
                    position,
                )?
                .map_err(|error| fail(error, position))?,
            )
        } else {
            None
        };
        let details = match &preview {
            Some(change) => json!({
                "type": patch_type.as_str(),
                "diff": diff(change.before.as_ref().unwrap_or(&Value::Null), &change.after),
            }),
            None => json!({ "type": patch_type.as_str(), "patch": patch_sent }),
        };
        let entry =
            PlanEntry::new("kube", "patch", target(&client, kind, name)).with_details(details);
        if !host.may_change(entry) {
            return Ok(preview
                .map(|change| from_json(&change.after))
                .unwrap_or(Dynamic::UNIT));
        }
        let change = host
            .block_on(
                async move {
                    client
                        .patch(&kind_owned, &name_owned, None, patch_type, &patch, false)
                        .await
                },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        Ok(from_json(&change.after))
    }

    pub(super) fn apply_objects(
        call: &NativeCallContext,
        kube: &Kube,
        objects: Vec<Value>,
    ) -> BindingResult<Array> {
        let host = HostCtx::of(call)?;
        let position = call.call_position();
        let mut results = Array::new();
        for object in objects {
            let label = format!(
                "{}/{}",
                object["kind"].as_str().unwrap_or("?"),
                object["metadata"]["name"].as_str().unwrap_or("?")
            );
            let client = kube.client.clone();
            let preview_object = object.clone();
            let preview = host
                .block_on(
                    async move { client.apply(&preview_object, "ankus", true).await },
                    position,
                )?
                .map_err(|error| fail(error, position))?;
            let details = json!({
                "created": preview.before.is_none(),
                "diff": diff(preview.before.as_ref().unwrap_or(&Value::Null), &preview.after),
            });
            let entry = PlanEntry::new(
                "kube",
                "apply",
                format!(
                    "{label} ({}/{})",
                    kube.client.context(),
                    kube.client.namespace()
                ),
            )
            .with_details(details);
            if !host.may_change(entry) {
                results.push(from_json(&preview.after));
                continue;
            }
            let client = kube.client.clone();
            let change = host
                .block_on(
                    async move { client.apply(&object, "ankus", false).await },
                    position,
                )?
                .map_err(|error| fail(error, position))?;
            results.push(from_json(&change.after));
        }
        Ok(results)
    }

    pub(super) fn typed(
        call: &NativeCallContext,
        kube: &Kube,
        kind: &str,
        name: &str,
        wrap: fn(Value) -> KubeObject,
    ) -> BindingResult<KubeObject> {
        let host = HostCtx::of(call)?;
        let (client, kind, name) = (kube.client.clone(), kind.to_owned(), name.to_owned());
        let object = host
            .block_on(
                async move { client.get(&kind, &name, None).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(wrap(object))
    }

    pub(super) fn checked_path(
        host: &HostCtx,
        path: &str,
        position: Position,
    ) -> BindingResult<PathBuf> {
        crate::bindings::local_path(host, path, position)
    }

    /// `swap_node_ports`, optionally setting the quiesce mark in the same patch.
    pub(super) fn swap_node_ports_marked(
        call: &NativeCallContext,
        kube: &Kube,
        service: &str,
        mapping: Map,
        record: Option<&Value>,
    ) -> BindingResult<KubeObject> {
        let host = HostCtx::of(call)?;

        let position = call.call_position();
        let mut wanted = Vec::new();
        for (from, to) in &mapping {
            let from = from.parse::<i64>().map_err(|_| {
                script_fail(
                    Kind::Invalid,
                    format!("node port '{from}' is not a number"),
                    position,
                )
            })?;
            let to = to.as_int().map_err(|_| {
                script_fail(
                    Kind::Invalid,
                    format!("new node port for {from} is not a number"),
                    position,
                )
            })?;
            wanted.push((from, to));
        }
        let (client, name) = (kube.client.clone(), service.to_owned());
        let current = host
            .block_on(
                async move { client.get("services", &name, None).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let ports = current["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut operations = Vec::new();
        let mut indexes = Vec::new();
        for (from, to) in &wanted {
            let index = ports
                .iter()
                .position(|port| port["nodePort"].as_i64() == Some(*from))
                .ok_or_else(|| {
                    script_fail(
                        Kind::NotFound,
                        format!("service {service} has no nodePort {from}"),
                        position,
                    )
                })?;
            indexes.push(index);
            // `test` makes the patch fail rather than move the wrong port if the list changed.
            operations.push(json!({ "op": "test", "path": format!("/spec/ports/{index}/nodePort"), "value": from }));
            operations.push(json!({ "op": "replace", "path": format!("/spec/ports/{index}/nodePort"), "value": to }));
        }
        if let Some(record) = record {
            operations.push(crate::kube::quiesce::set_mark_operation(&current, record));
        }
        let patched = run_patch(
            call,
            kube,
            "services",
            service,
            Value::Array(operations),
            PatchType::Json,
        );
        let after = match patched {
            Ok(after) => after,
            Err(error) => {
                // A patch whose answer was lost (a timeout) may have landed; its resend then
                // fails on the `test` of the old port. Ports that are already where they were
                // to go mean the swap is done, whoever's request did it.
                let (client, name) = (kube.client.clone(), service.to_owned());
                let now = host.block_on(
                    async move { client.get("services", &name, None).await },
                    position,
                )?;
                match now {
                    Ok(now) if ports_at(&now, &wanted, &indexes) => {
                        host.warn(&format!(
                            "the nodePort change of service {service} reported a failure ({}) \
                             but is in place: an attempt whose answer was lost made it, or \
                             someone else did",
                            crate::host::error::HostError::find(&error)
                                .map(|error| error.message)
                                .unwrap_or_else(|| error.to_string())
                        ));
                        from_json(&now)
                    }
                    _ => return Err(error),
                }
            }
        };
        let raw = to_json(Some(call), &after);
        if raw.is_null() {
            return Ok(KubeObject::service(current));
        }
        Ok(KubeObject::service(raw))
    }
}

/// Kubernetes: connect through a kubeconfig context, read and change any resource kind, typed
/// views of Services, workloads, pods and namespaces, save and restore objects.
#[export_module]
pub mod kube_api {
    use std::time::Duration;

    use futures::StreamExt;
    use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};
    use serde_json::{Value, json};

    use super::support::{
        apply_objects, checked_path, connect_options, fail, list_options, option_text, run_patch,
        swap_node_ports_marked, target, timeout_option, typed,
    };
    use super::{Kube, KubeObject};
    use crate::host::context::HostCtx;
    use crate::host::convert::{from_json, to_json};
    use crate::host::error::{BindingResult, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;
    use crate::kube::{
        Condition, ConnectOptions, KubeClient, ListOptions, PatchType, SavedObject, objects::diff,
    };

    /// Connects to a cluster. Options: `context` (default: the kubeconfig's current one),
    /// `namespace` (default: the context's, else `default`), `kubeconfig` (a path; default:
    /// the sandbox's, then `KUBECONFIG`, then `~/.kube/config`, then in-cluster), `timeout`
    /// (seconds one request may take, default 30; reads and guarded writes that time out or
    /// meet 429/5xx are sent again a few times, creates are not).
    ///
    /// ```rhai
    /// let k = kube::connect(#{ context: "old", namespace: "default", timeout: 10 });
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn connect(call: NativeCallContext, options: Map) -> BindingResult<Kube> {
        let host = HostCtx::of(&call)?;
        let timeout = timeout_option(&options, call.call_position())?;
        if let Some(path) = option_text(&options, "kubeconfig") {
            checked_path(&host, &path, call.call_position())?;
        }
        let options = ConnectOptions {
            timeout,
            ..connect_options(&host, &options)
        };
        let client = host
            .block_on(
                async move { KubeClient::connect(&options).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(Kube {
            client,
            planned_saves: planned_saves(),
        })
    }

    /// Connects through a context by name.
    ///
    /// ```rhai
    /// let k = kube::connect("old");
    /// ```
    #[rhai_fn(return_raw, volatile, name = "connect")]
    pub fn connect_context(call: NativeCallContext, context: &str) -> BindingResult<Kube> {
        let mut options = Map::new();
        options.insert("context".into(), context.into());
        connect(call, options)
    }

    /// The kubeconfig's current context.
    ///
    /// ```rhai
    /// print(kube::current_context());
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn current_context(call: NativeCallContext) -> BindingResult<String> {
        let host = HostCtx::of(&call)?;
        let options = connect_options(&host, &Map::new());
        let (_, current) =
            KubeClient::contexts_of(&options).map_err(|error| fail(error, call.call_position()))?;
        current.ok_or_else(|| {
            script_fail(
                Kind::NotFound,
                "the kubeconfig sets no current-context",
                call.call_position(),
            )
        })
    }

    /// The kubeconfig's context names.
    ///
    /// ```rhai
    /// for c in kube::contexts() { print(c); }
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn contexts(call: NativeCallContext) -> BindingResult<Array> {
        let host = HostCtx::of(&call)?;
        let options = connect_options(&host, &Map::new());
        let (contexts, _) =
            KubeClient::contexts_of(&options).map_err(|error| fail(error, call.call_position()))?;
        Ok(contexts.into_iter().map(Dynamic::from).collect())
    }

    /// The same cluster with another default namespace.
    ///
    /// ```rhai
    /// let n = k.in_namespace("new");
    /// ```
    #[rhai_fn(global)]
    pub fn in_namespace(kube: &mut Kube, namespace: &str) -> Kube {
        Kube {
            client: kube.client.with_namespace(namespace),
            planned_saves: kube.planned_saves.clone(),
        }
    }

    /// The names of all namespaces.
    ///
    /// ```rhai
    /// let names = k.namespaces();
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn namespaces(call: NativeCallContext, kube: &mut Kube) -> BindingResult<Array> {
        let host = HostCtx::of(&call)?;
        let client = kube.client.clone();
        let names = host
            .block_on(
                async move { client.namespaces().await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(names.into_iter().map(Dynamic::from).collect())
    }

    /// One object of any kind (`service`, `svc`, `deployments.apps`, `apps/v1/Deployment`),
    /// as a map.
    ///
    /// ```rhai
    /// let svc = k.get("service", "pachd");
    /// print(svc.spec.ports[0].nodePort);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn get(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let (client, kind, name) = (kube.client.clone(), kind.to_owned(), name.to_owned());
        let object = host
            .block_on(
                async move { client.get(&kind, &name, None).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(from_json(&object))
    }

    /// Objects of a kind in the namespace, as maps.
    ///
    /// ```rhai
    /// let pods = k.list("pods");
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "list")]
    pub fn list_all(call: NativeCallContext, kube: &mut Kube, kind: &str) -> BindingResult<Array> {
        list(call, kube, kind, Map::new())
    }

    /// Objects of a kind filtered by options `labels` (a label selector), `fields` (a field
    /// selector), `namespace`, `all_namespaces`.
    ///
    /// ```rhai
    /// let pods = k.list("pods", #{ labels: "app=pachd", fields: "status.phase=Running" });
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn list(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        options: Map,
    ) -> BindingResult<Array> {
        let host = HostCtx::of(&call)?;
        let (client, kind) = (kube.client.clone(), kind.to_owned());
        let options = list_options(&options);
        let items = host
            .block_on(
                async move { client.list(&kind, &options).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(items.iter().map(from_json).collect())
    }

    /// Patches an object: a map is a strategic merge patch, an array a JSON patch. The patch
    /// carries the freshly read resourceVersion and is retried on 409 Conflict; a dry run
    /// records the diff it would make. Returns the object after the patch.
    ///
    /// ```rhai
    /// k.patch("service", "pachd", #{ spec: #{ ports: [#{ port: 650, nodePort: 30649 }] } });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn patch(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
        patch: Dynamic,
    ) -> BindingResult<Dynamic> {
        let patch_type = if patch.is_array() {
            PatchType::Json
        } else {
            PatchType::Strategic
        };
        let value = to_json(Some(&call), &patch);
        run_patch(&call, kube, kind, name, value, patch_type)
    }

    /// Patches an object with an explicit patch type: `"merge"`, `"strategic"` or `"json"`.
    ///
    /// ```rhai
    /// k.patch("deployment", "pachd", #{ metadata: #{ labels: #{ paused: "yes" } } }, "merge");
    /// ```
    #[rhai_fn(global, return_raw, name = "patch")]
    pub fn patch_typed(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
        patch: Dynamic,
        patch_type: &str,
    ) -> BindingResult<Dynamic> {
        let patch_type =
            PatchType::parse(patch_type).map_err(|error| fail(error, call.call_position()))?;
        let value = to_json(Some(&call), &patch);
        run_patch(&call, kube, kind, name, value, patch_type)
    }

    /// Server-side apply (field manager `ankus`) of one object given as a map; creates it
    /// when missing. Returns the object as stored.
    ///
    /// ```rhai
    /// k.apply(#{ apiVersion: "v1", kind: "ConfigMap", metadata: #{ name: "c" }, data: #{ a: "1" } });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn apply(call: NativeCallContext, kube: &mut Kube, object: Map) -> BindingResult<Dynamic> {
        let value = to_json(Some(&call), &Dynamic::from_map(object));
        let mut applied = apply_objects(&call, kube, vec![value])?;
        Ok(applied.pop().unwrap_or(Dynamic::UNIT))
    }

    /// Server-side apply of YAML or JSON manifest text (several `---` documents allowed).
    /// Returns the stored objects.
    ///
    /// ```rhai
    /// k.apply(fs::read_text("pachd.yaml"));
    /// ```
    #[rhai_fn(global, return_raw, name = "apply")]
    pub fn apply_text(
        call: NativeCallContext,
        kube: &mut Kube,
        manifests: &str,
    ) -> BindingResult<Array> {
        let mut objects = Vec::new();
        for (index, document) in serde_yaml::Deserializer::from_str(manifests).enumerate() {
            let value = serde_yaml::Value::deserialize(document).map_err(|error| {
                script_fail(
                    Kind::Invalid,
                    format!("failed to read manifest document {}: {error}", index + 1),
                    call.call_position(),
                )
            })?;
            let json_value: Value = serde_json::to_value(&value).map_err(|error| {
                script_fail(
                    Kind::Invalid,
                    format!("failed to read manifest document {}: {error}", index + 1),
                    call.call_position(),
                )
            })?;
            match json_value {
                Value::Null => {}
                Value::Object(_) if json_value["kind"] == "List" => {
                    objects.extend(json_value["items"].as_array().cloned().unwrap_or_default());
                }
                Value::Object(_) => objects.push(json_value),
                _ => {
                    return Err(script_fail(
                        Kind::Invalid,
                        format!(
                            "failed to read manifest document {}: not an object",
                            index + 1
                        ),
                        call.call_position(),
                    ));
                }
            }
        }
        // Every document is checked (by a server dry run) before any is applied, so a bad
        // one in the middle leaves nothing half-applied.
        let host = HostCtx::of(&call)?;
        for object in &objects {
            let client = kube.client.clone();
            let object = object.clone();
            host.block_on(
                async move { client.apply(&object, "ankus", true).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        }
        apply_objects(&call, kube, objects)
    }

    use serde::Deserialize;

    /// Creates an object from a map; fails with `already_exists` when it is there.
    ///
    /// ```rhai
    /// k.create(#{ apiVersion: "v1", kind: "Namespace", metadata: #{ name: "new" } });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn create(call: NativeCallContext, kube: &mut Kube, object: Map) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let value = to_json(Some(&call), &Dynamic::from_map(object));
        let client = kube.client.clone();
        let preview_value = value.clone();
        let preview = host
            .block_on(
                async move { client.create(&preview_value, true).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let entry = PlanEntry::new(
            "kube",
            "create",
            format!(
                "{}/{} ({})",
                value["kind"].as_str().unwrap_or("?"),
                value["metadata"]["name"].as_str().unwrap_or("?"),
                kube.client.context()
            ),
        )
        .with_details(json!({ "diff": diff(&Value::Null, &preview) }));
        if !host.may_change(entry) {
            return Ok(from_json(&preview));
        }
        let client = kube.client.clone();
        let created = host
            .block_on(async move { client.create(&value, false).await }, position)?
            .map_err(|error| fail(error, position))?;
        Ok(from_json(&created))
    }

    /// Deletes an object; returns it as it was.
    ///
    /// ```rhai
    /// k.delete("configmap", "scratch");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn delete(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let (client, kind_owned, name_owned) =
            (kube.client.clone(), kind.to_owned(), name.to_owned());
        let existing = host
            .block_on(
                async move { client.delete(&kind_owned, &name_owned, None, true).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let entry = PlanEntry::new("kube", "delete", target(&kube.client, kind, name));
        if !host.may_change(entry) {
            return Ok(from_json(&existing));
        }
        let (client, kind, name) = (kube.client.clone(), kind.to_owned(), name.to_owned());
        let deleted = host
            .block_on(
                async move { client.delete(&kind, &name, None, false).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        Ok(from_json(&deleted))
    }

    /// Sets the replicas of a Deployment, StatefulSet, ReplicaSet or ReplicationController
    /// (the `scale` subresource). Returns the object after scaling.
    ///
    /// ```rhai
    /// k.scale("deployment", "pachd", 0);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn scale(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
        replicas: rhai::INT,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let replicas = u32::try_from(replicas).map_err(|_| {
            script_fail(
                Kind::Invalid,
                format!("replicas must be 0 or more, not {replicas}"),
                position,
            )
        })?;
        let (client, kind_owned, name_owned) =
            (kube.client.clone(), kind.to_owned(), name.to_owned());
        let preview = host
            .block_on(
                async move {
                    client
                        .scale(&kind_owned, &name_owned, None, replicas, true)
                        .await
                },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let entry = PlanEntry::new("kube", "scale", target(&kube.client, kind, name)).with_details(
            json!({
                "replicas": [preview.before.as_ref().map(|before| before["spec"]["replicas"].clone()), replicas],
            }),
        );
        if !host.may_change(entry) {
            return Ok(from_json(&preview.after));
        }
        let (client, kind, name) = (kube.client.clone(), kind.to_owned(), name.to_owned());
        let change = host
            .block_on(
                async move { client.scale(&kind, &name, None, replicas, false).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        Ok(from_json(&change.after))
    }

    /// Waits until an object meets a condition: `"exists"`, `"deleted"`, `"ready"`,
    /// `"phase=Running"` or a status condition type such as `"Available"`. Fails with
    /// `timeout` after `seconds`. Returns the object (`()` once deleted).
    ///
    /// ```rhai
    /// k.wait("deployment", "pachd", "ready", 60);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn wait(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
        condition: &str,
        seconds: rhai::INT,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let condition = Condition::parse(condition).map_err(|error| fail(error, position))?;
        let timeout = Duration::from_secs(u64::try_from(seconds.max(1)).unwrap_or(1));
        let (client, kind, name) = (kube.client.clone(), kind.to_owned(), name.to_owned());
        let object = host
            .block_on_for(
                async move { client.wait(&kind, &name, None, &condition, timeout).await },
                None,
                position,
            )?
            .map_err(|error| fail(error, position))?;
        Ok(object
            .map(|object| from_json(&object))
            .unwrap_or(Dynamic::UNIT))
    }

    /// Watches a kind and calls `callback(event)` for each change, `event` being
    /// `#{ type: "ADDED"|"MODIFIED"|"DELETED", object }`; the callback returns `false` to stop.
    /// Options: `labels`, `fields`, `namespace`, `timeout` (seconds, default 60), `since`
    /// (a resourceVersion; default: start with the current objects as ADDED). Returns the
    /// number of events seen.
    ///
    /// ```rhai
    /// k.watch("pods", #{ labels: "app=pachd", timeout: 30 }, |e| e.type != "DELETED");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn watch(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        options: Map,
        callback: FnPtr,
    ) -> BindingResult<rhai::INT> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let seconds = options
            .get("timeout")
            .and_then(|value| value.as_int().ok())
            .unwrap_or(60)
            .max(1);
        let timeout = Duration::from_secs(u64::try_from(seconds).unwrap_or(60));
        let since = option_text(&options, "since");
        let list = list_options(&options);
        let (client, kind) = (kube.client.clone(), kind.to_owned());
        let mut events = host
            .block_on(
                async move {
                    client
                        .watch(&kind, &list, since.as_deref(), timeout)
                        .await
                        .map(Box::pin)
                },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let mut seen: rhai::INT = 0;
        loop {
            let next = host.block_on_for(async { events.next().await }, Some(timeout), position);
            let item = match next {
                Ok(Some(item)) => item.map_err(|error| fail(error, position))?,
                Ok(None) => break,
                Err(error) => match crate::host::error::HostError::find(&error) {
                    Some(found) if found.kind == Kind::Timeout => break,
                    _ => return Err(error),
                },
            };
            seen += 1;
            let mut event = Map::new();
            event.insert("type".into(), item.event_type.into());
            event.insert("object".into(), from_json(&item.object));
            let keep_going =
                callback.call_within_context::<Dynamic>(&call, (Dynamic::from_map(event),))?;
            if keep_going.as_bool().is_ok_and(|flag| !flag) {
                break;
            }
        }
        Ok(seen)
    }

    /// A pod's log (the first container's).
    ///
    /// ```rhai
    /// print(k.logs("etcd-0"));
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn logs(call: NativeCallContext, kube: &mut Kube, pod: &str) -> BindingResult<String> {
        logs_of(call, kube, pod, "")
    }

    /// One container's log of a pod.
    ///
    /// ```rhai
    /// print(k.logs("pachd-5d8f7-abcde", "pachd"));
    /// ```
    #[rhai_fn(global, return_raw, volatile, name = "logs")]
    pub fn logs_of(
        call: NativeCallContext,
        kube: &mut Kube,
        pod: &str,
        container: &str,
    ) -> BindingResult<String> {
        let host = HostCtx::of(&call)?;
        let (client, pod, container) = (kube.client.clone(), pod.to_owned(), container.to_owned());
        host.block_on(
            async move {
                let container = (!container.is_empty()).then_some(container.as_str());
                client.logs(&pod, None, container, None).await
            },
            call.call_position(),
        )?
        .map_err(|error| fail(error, call.call_position()))
    }

    /// A Service: `name`, `type`, `cluster_ip`, `ports` (maps with `name`, `port`,
    /// `target_port`, `node_port`, `protocol`), `node_ports`, and the raw `object`.
    ///
    /// ```rhai
    /// let svc = k.service("pachd");
    /// print(svc.node_ports);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn service(
        call: NativeCallContext,
        kube: &mut Kube,
        name: &str,
    ) -> BindingResult<KubeObject> {
        typed(&call, kube, "services", name, KubeObject::service)
    }

    /// A Deployment: `replicas`, `ready_replicas`, `ready`, `images`.
    ///
    /// ```rhai
    /// let d = k.deployment("pachd");
    /// if d.ready { print("up"); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn deployment(
        call: NativeCallContext,
        kube: &mut Kube,
        name: &str,
    ) -> BindingResult<KubeObject> {
        typed(&call, kube, "deployments.apps", name, KubeObject::workload)
    }

    /// A StatefulSet: `replicas`, `ready_replicas`, `ready`, `images`.
    ///
    /// ```rhai
    /// let etcd = k.statefulset("etcd");
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn statefulset(
        call: NativeCallContext,
        kube: &mut Kube,
        name: &str,
    ) -> BindingResult<KubeObject> {
        typed(&call, kube, "statefulsets.apps", name, KubeObject::workload)
    }

    /// A Pod: `phase`, `ready`, `owner` (`Kind/name`), `restarts`, `ip`, `node`, `labels`.
    ///
    /// ```rhai
    /// print(k.pod("etcd-0").phase);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn pod(call: NativeCallContext, kube: &mut Kube, name: &str) -> BindingResult<KubeObject> {
        typed(&call, kube, "pods", name, KubeObject::pod)
    }

    /// The pods matching a label selector (`""` for all), typed.
    ///
    /// ```rhai
    /// for p in k.pods("app=pachd") { print(p); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn pods(call: NativeCallContext, kube: &mut Kube, labels: &str) -> BindingResult<Array> {
        let host = HostCtx::of(&call)?;
        let client = kube.client.clone();
        let options = ListOptions {
            label_selector: (!labels.is_empty()).then(|| labels.to_owned()),
            ..ListOptions::default()
        };
        let items = host
            .block_on(
                async move { client.list("pods", &options).await },
                call.call_position(),
            )?
            .map_err(|error| fail(error, call.call_position()))?;
        Ok(items
            .into_iter()
            .map(|item| Dynamic::from(KubeObject::pod(item)))
            .collect())
    }

    /// A Namespace: `name`, `phase`.
    ///
    /// ```rhai
    /// print(k.namespace_info("old").phase);
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn namespace_info(
        call: NativeCallContext,
        kube: &mut Kube,
        name: &str,
    ) -> BindingResult<KubeObject> {
        typed(&call, kube, "namespaces", name, KubeObject::namespace)
    }

    /// Changes a Service's nodePorts by a map from old to new (`#{ "30650": 30649 }`), in one
    /// JSON patch under a resourceVersion precondition. Only the `nodePort` fields named
    /// change. Returns the Service after the change. When the patch fails but the ports are
    /// found at their new values (an attempt that timed out had landed), it warns and succeeds.
    ///
    /// ```rhai
    /// k.swap_node_ports("pachd", #{ "30650": 30649, "30651": 30648 });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn swap_node_ports(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
        mapping: Map,
    ) -> BindingResult<KubeObject> {
        swap_node_ports_marked(&call, kube, service, mapping, None)
    }

    /// `swap_node_ports` that also sets the Service's quiesce mark to `record` in the same
    /// patch (see `mark_quiesce`): the ports never move without the record of what moved them.
    ///
    /// ```rhai
    /// k.swap_node_ports("pachd", #{ "30650": 30649 }, #{ holder: run_holder(), state: "blocked" });
    /// ```
    #[rhai_fn(global, name = "swap_node_ports", return_raw)]
    pub fn swap_node_ports_with_mark(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
        mapping: Map,
        record: Map,
    ) -> BindingResult<KubeObject> {
        let record = to_json(Some(&call), &Dynamic::from_map(record));
        swap_node_ports_marked(&call, kube, service, mapping, Some(&record))
    }

    /// Reads the quiesce mark an ankus run left on Service `service` (the annotation
    /// `ankus.io/quiesce`): the record it wrote (`holder`, `state`, `pipelines`, `saved`,
    /// `ports`, ...) plus `swapped` (whether the nodePorts are where it moved them), or `()`.
    ///
    /// ```rhai
    /// let mark = k.quiesce_mark("pachd");
    /// if mark != () { print(`held by ${describe_holder(mark.holder)}`); }
    /// ```
    #[rhai_fn(global, return_raw, volatile)]
    pub fn quiesce_mark(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let (client, name) = (kube.client.clone(), service.to_owned());
        let mark = host
            .block_on(async move { client.quiesce_mark(&name).await }, position)?
            .map_err(|error| fail(error, position))?;
        Ok(match mark {
            None => Dynamic::UNIT,
            Some(mark) => {
                let mut record = mark.record;
                if record.is_object() {
                    record["swapped"] = mark.swapped.into();
                }
                from_json(&record)
            }
        })
    }

    /// Writes `record` as the quiesce mark of Service `service` (write-ahead: before the run
    /// pauses or blocks anything), under the resourceVersion read, never over the mark of
    /// another run (an error naming its holder, kind `conflict`). Dry run: planned, not done.
    ///
    /// ```rhai
    /// k.mark_quiesce("pachd", #{ holder: run_holder(), state: "pausing", pipelines: ["edges"] });
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn mark_quiesce(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
        record: Map,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let record = to_json(Some(&call), &Dynamic::from_map(record));
        let entry = PlanEntry::new("kube", "annotate", target(&kube.client, "service", service))
            .with_details(
                json!({ "annotation": crate::kube::MARK_ANNOTATION, "state": record["state"] }),
            );
        if !host.may_change(entry) {
            return Ok(());
        }
        let (client, name) = (kube.client.clone(), service.to_owned());
        host.block_on(
            async move { client.set_quiesce_mark(&name, &record).await },
            position,
        )?
        .map_err(|error| fail(error, position))
    }

    /// Removes the quiesce mark of Service `service` (nothing else changes). Returns whether
    /// there was one. Dry run: planned, not done.
    ///
    /// ```rhai
    /// k.clear_quiesce_mark("pachd");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn clear_quiesce_mark(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
    ) -> BindingResult<bool> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let entry = PlanEntry::new(
            "kube",
            "unannotate",
            target(&kube.client, "service", service),
        )
        .with_details(json!({ "annotation": crate::kube::MARK_ANNOTATION }));
        if !host.may_change(entry) {
            return Ok(false);
        }
        let (client, name) = (kube.client.clone(), service.to_owned());
        host.block_on(
            async move { client.clear_quiesce_mark(&name).await },
            position,
        )?
        .map_err(|error| fail(error, position))
    }

    /// Puts back the nodePorts the quiesce mark of Service `service` says were moved, and
    /// removes the mark, in one patch (the saved spec file is not needed). Returns the Service
    /// after, or `()` when it carried no mark. Dry run: planned, not done.
    ///
    /// ```rhai
    /// k.revert_quiesce("pachd");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn revert_quiesce(
        call: NativeCallContext,
        kube: &mut Kube,
        service: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let entry = PlanEntry::new(
            "kube",
            "revert_node_ports",
            target(&kube.client, "service", service),
        )
        .with_details(json!({ "annotation": crate::kube::MARK_ANNOTATION }));
        if !host.may_change(entry) {
            return Ok(Dynamic::UNIT);
        }
        let (client, name) = (kube.client.clone(), service.to_owned());
        let after = host
            .block_on(async move { client.revert_quiesce(&name).await }, position)?
            .map_err(|error| fail(error, position))?;
        Ok(after
            .map(|after| from_json(&after))
            .unwrap_or(Dynamic::UNIT))
    }

    /// Saves an object to a JSON file (atomically), without server-managed fields, so it can
    /// be put back with `restore_saved`. Returns `#{ kind, name, namespace, resource_version, path }`.
    ///
    /// ```rhai
    /// k.save("service", "pachd", "pachd-service.json");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn save(
        call: NativeCallContext,
        kube: &mut Kube,
        kind: &str,
        name: &str,
        path: &str,
    ) -> BindingResult<Map> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let resolved = checked_path(&host, path, position)?;
        let (client, kind_owned, name_owned) =
            (kube.client.clone(), kind.to_owned(), name.to_owned());
        let saved = host
            .block_on(
                async move { client.snapshot(&kind_owned, &name_owned, None).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let mut summary = Map::new();
        summary.insert("kind".into(), saved.kind.clone().into());
        summary.insert("name".into(), saved.name.clone().into());
        summary.insert("namespace".into(), saved.namespace.clone().into());
        summary.insert(
            "resource_version".into(),
            saved.resource_version.clone().into(),
        );
        summary.insert("path".into(), resolved.display().to_string().into());
        let entry = PlanEntry::new("kube", "save", target(&kube.client, kind, name))
            .with_details(json!({ "path": resolved.display().to_string() }));
        if !host.may_change(entry) {
            kube.planned_saves
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(resolved, saved);
            return Ok(summary);
        }
        KubeClient::write_saved(&saved, &resolved).map_err(|error| fail(error, position))?;
        Ok(summary)
    }

    /// Puts back an object saved with `save`: the live object is replaced by the saved one
    /// under its current resourceVersion (a concurrent change makes it re-read and retry,
    /// never overwrite blindly); recreated if it was deleted. Returns the object after.
    ///
    /// ```rhai
    /// k.restore_saved("pachd-service.json");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn restore_saved(
        call: NativeCallContext,
        kube: &mut Kube,
        path: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let resolved = checked_path(&host, path, position)?;
        let planned = kube
            .planned_saves
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&resolved)
            .cloned();
        let saved = match planned {
            Some(saved) if host.is_dry_run() => saved,
            _ => SavedObject::read(&resolved).map_err(|error| fail(error, position))?,
        };
        let client = kube.client.clone();
        let preview_saved = saved.clone();
        let preview = host
            .block_on(
                async move { client.restore(&preview_saved, true).await },
                position,
            )?
            .map_err(|error| fail(error, position))?;
        let entry = PlanEntry::new(
            "kube",
            "restore_saved",
            format!("{}/{} ({})", saved.kind, saved.name, kube.client.context()),
        )
        .with_details(json!({
            "path": resolved.display().to_string(),
            "diff": diff(preview.before.as_ref().unwrap_or(&Value::Null), &preview.after),
        }));
        if !host.may_change(entry) {
            return Ok(from_json(&preview.after));
        }
        let client = kube.client.clone();
        let change = host
            .block_on(async move { client.restore(&saved, false).await }, position)?
            .map_err(|error| fail(error, position))?;
        Ok(from_json(&change.after))
    }

    /// The connection as a map: `context`, `namespace`, `server`.
    ///
    /// ```rhai
    /// print(k.info());
    /// ```
    #[rhai_fn(global, name = "info")]
    pub fn info(kube: &mut Kube) -> Map {
        kube.summary()
    }
}
