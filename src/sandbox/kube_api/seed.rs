//! What a Pachyderm 1.x deployment looks like to Kubernetes: the objects `pachctl deploy`
//! creates, used to seed each sandbox namespace.

use serde_json::{Value, json};

use super::state::KubeState;
use super::status::ApiError;

/// The pachd Service ports of Pachyderm 1.x: (name, port, nodePort), in the order
/// `pachctl deploy` writes them.
pub const PACHD_PORTS: &[(&str, u16, u16)] = &[
    ("s3gateway-port", 600, 30600),
    ("api-grpc-port", 650, 30650),
    ("trace-port", 651, 30651),
    ("api-http-port", 652, 30652),
    ("saml-port", 654, 30654),
    ("api-git-port", 999, 30999),
];

/// What to seed a namespace with.
#[derive(Clone, Debug)]
pub struct SeedSpec {
    /// pachd's version, used in image tags (`pachyderm/pachd:1.11.9`).
    pub pachd_version: String,
    /// Pipelines that have one worker pod each.
    pub pipelines: Vec<String>,
    /// Whether to deploy the dashboard too.
    pub dash: bool,
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec {
            pachd_version: "1.11.9".to_owned(),
            pipelines: Vec::new(),
            dash: true,
        }
    }
}

fn labels(app: &str) -> Value {
    json!({ "app": app, "suite": "pachyderm" })
}

/// The pachd Service manifest (type NodePort) for `namespace`.
pub fn pachd_service(namespace: &str) -> Value {
    let ports: Vec<Value> = PACHD_PORTS
        .iter()
        .map(|(name, port, node_port)| {
            json!({ "name": name, "port": port, "protocol": "TCP", "targetPort": port, "nodePort": node_port })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "pachd",
            "namespace": namespace,
            "labels": labels("pachd"),
            "annotations": { "prometheus.io/port": "9091", "prometheus.io/scrape": "true" },
        },
        "spec": { "type": "NodePort", "selector": { "app": "pachd" }, "ports": ports },
    })
}

/// The pachd Deployment manifest for `namespace`.
pub fn pachd_deployment(namespace: &str, version: &str) -> Value {
    let ports: Vec<Value> = PACHD_PORTS
        .iter()
        .map(|(name, port, _)| json!({ "name": name, "containerPort": port, "protocol": "TCP" }))
        .chain(std::iter::once(
            json!({ "name": "prom-metrics", "containerPort": 656, "protocol": "TCP" }),
        ))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "pachd", "namespace": namespace, "labels": labels("pachd") },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels("pachd") },
            "strategy": { "type": "RollingUpdate" },
            "template": {
                "metadata": {
                    "name": "pachd",
                    "namespace": namespace,
                    "labels": labels("pachd"),
                    "annotations": { "iam.amazonaws.com/role": "" },
                },
                "spec": {
                    "serviceAccountName": "pachyderm",
                    "containers": [{
                        "name": "pachd",
                        "image": format!("pachyderm/pachd:{version}"),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": ports,
                        "env": [
                            { "name": "PACH_ROOT", "value": "/pach" },
                            { "name": "ETCD_PREFIX", "value": "" },
                            { "name": "NUM_SHARDS", "value": "16" },
                            { "name": "STORAGE_BACKEND", "value": "MINIO" },
                            { "name": "PACHD_POD_NAMESPACE", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } } },
                            { "name": "WORKER_IMAGE", "value": format!("pachyderm/worker:{version}") },
                            { "name": "PACHD_VERSION", "value": version },
                        ],
                        "volumeMounts": [
                            { "name": "pach-disk", "mountPath": "/pach" },
                            { "name": "pachyderm-storage-secret", "mountPath": "/pachyderm-storage-secret" },
                        ],
                        "readinessProbe": { "exec": { "command": ["/pachd", "--readiness"] } },
                    }],
                    "volumes": [
                        { "name": "pach-disk" },
                        { "name": "pachyderm-storage-secret", "secret": { "secretName": "pachyderm-storage-secret" } },
                    ],
                },
            },
        },
    })
}

fn etcd_objects(namespace: &str) -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "etcd", "namespace": namespace, "labels": labels("etcd") },
            "spec": { "type": "NodePort", "selector": { "app": "etcd" },
                      "ports": [{ "name": "client-port", "port": 2379, "nodePort": 32379 }] },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "etcd-headless", "namespace": namespace, "labels": labels("etcd-headless") },
            "spec": { "clusterIP": "None", "selector": { "app": "etcd" },
                      "ports": [{ "name": "peer-port", "port": 2380 }] },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "etcd", "namespace": namespace, "labels": labels("etcd") },
            "spec": {
                "replicas": 1,
                "serviceName": "etcd-headless",
                "selector": { "matchLabels": labels("etcd") },
                "template": {
                    "metadata": { "name": "etcd", "namespace": namespace, "labels": labels("etcd") },
                    "spec": { "containers": [{
                        "name": "etcd",
                        "image": "pachyderm/etcd:v3.3.5",
                        "command": ["/bin/sh", "-c", "etcd --listen-client-urls=http://0.0.0.0:2379 --advertise-client-urls=http://0.0.0.0:2379 --data-dir=/var/data/etcd"],
                        "ports": [
                            { "name": "client-port", "containerPort": 2379 },
                            { "name": "peer-port", "containerPort": 2380 },
                        ],
                        "volumeMounts": [{ "name": "etcd-storage", "mountPath": "/var/data/etcd" }],
                    }] },
                },
                "volumeClaimTemplates": [{
                    "metadata": { "name": "etcd-storage", "labels": labels("etcd") },
                    "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Gi" } } },
                }],
            },
        }),
    ]
}

fn dash_objects(namespace: &str) -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "dash", "namespace": namespace, "labels": labels("dash") },
            "spec": { "type": "NodePort", "selector": labels("dash"), "ports": [
                { "name": "dash-http", "port": 8080, "nodePort": 30080 },
                { "name": "grpc-proxy-http", "port": 8081, "nodePort": 30081 },
            ] },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "dash", "namespace": namespace, "labels": labels("dash") },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels("dash") },
                "template": {
                    "metadata": { "name": "dash", "namespace": namespace, "labels": labels("dash") },
                    "spec": { "containers": [
                        { "name": "dash", "image": "pachyderm/dash:0.5.48",
                          "ports": [{ "name": "dash-http", "containerPort": 8080 }] },
                        { "name": "grpc-proxy", "image": "pachyderm/grpc-proxy:0.4.10",
                          "ports": [{ "name": "grpc-proxy-http", "containerPort": 8081 }] },
                    ] },
                },
            },
        }),
    ]
}

/// The ReplicationController Pachyderm 1.x runs a pipeline's workers with.
pub fn worker_controller(namespace: &str, pipeline: &str, replicas: u32, image: &str) -> Value {
    let app = format!("pipeline-{pipeline}-v1");
    let selector = json!({ "app": app, "suite": "pachyderm", "component": "worker", "pipelineName": pipeline });
    json!({
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": { "name": app, "namespace": namespace, "labels": selector },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": { "name": app, "labels": selector },
                "spec": { "containers": [
                    { "name": "user", "image": image, "command": ["/pach-bin/worker"] },
                    { "name": "storage", "image": "pachyderm/pachd:worker", "command": ["/pachd", "--mode", "sidecar"] },
                ] },
            },
        },
    })
}

impl KubeState {
    /// Seeds `namespace` (created when missing) with a Pachyderm 1.x deployment: pachd, etcd
    /// and dash with their Services, the storage secret and service account, and one worker
    /// pod per pipeline. The pachd Deployment goes through the normal create path, so
    /// registered [`super::state::DeploymentHooks`] see it.
    pub async fn seed_pachyderm(&self, namespace: &str, spec: &SeedSpec) -> Result<(), ApiError> {
        let namespaces =
            super::resources::find("", "v1", "namespaces").expect("namespaces are served");
        if self.get(namespaces, "", namespace).is_err() {
            self.create_object(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } })).await?;
        }
        let mut objects = vec![
            json!({ "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": { "name": "pachyderm", "namespace": namespace, "labels": labels("") } }),
            json!({ "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": "pachyderm-storage-secret", "namespace": namespace, "labels": labels("") },
                    "type": "Opaque",
                    "data": { "minio-bucket": "cGFjaHlkZXJt", "minio-endpoint": "bWluaW86OTAwMA==" } }),
        ];
        objects.extend(etcd_objects(namespace));
        objects.push(pachd_service(namespace));
        objects.push(pachd_deployment(namespace, &spec.pachd_version));
        if spec.dash {
            objects.extend(dash_objects(namespace));
        }
        for object in objects {
            self.create_object(object).await?;
        }
        for pipeline in &spec.pipelines {
            self.set_pipeline_workers(namespace, pipeline, 1, "ubuntu:18.04")
                .await?;
        }
        Ok(())
    }
}
