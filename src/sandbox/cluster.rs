//! The sandbox orchestrator: an `old` and a `new` emulated pachd on loopback ports, each with
//! its own bucket and data directory under one directory, plus the files clients use to reach
//! them (`pachctl-config.json` in pachctl's v2 format with a v1 block for pachctl 1.9.0,
//! `sandbox.json`).
//!
//! ```text
//! DIR/pachctl-config.json   v2: contexts old and new (pachd_address, cluster_deployment_id);
//!                           v1: old's address as HOST:PORT
//! DIR/sandbox.json          addresses, bucket URLs (file://), versions, data dirs
//! DIR/<name>/bucket/        the cluster's object storage
//! DIR/<name>/data/          the cluster's metadata (state.json), so it survives restarts
//! ```
//! Seeding (`--seed DUMP`) restores a dump into `old` over a real gRPC connection, with a fresh
//! token as `authn-token` (so a dump with auth makes it `pach:root`'s token, as pachctl's
//! restore does); the token is then stored as `old`'s `session_token`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::kube_api::{
    DeploymentHooks, KubeState, NodePortForwarder, SeedSpec, ServerIdentity, allocate_node_addr,
};
use super::pachd::dumpfile::DumpReader;
use super::pachd::error::SandboxError;
use super::pachd::{Cluster, ClusterConfig, PachdVersion, PipelineObserver};
use crate::proto::admin;

/// What to start.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Where the clusters keep their buckets, data and the client files.
    pub dir: PathBuf,
    /// The old cluster's version (default 1.11).
    pub old_version: PachdVersion,
    /// The new cluster's version (default 1.13).
    pub new_version: PachdVersion,
    /// A dump to restore into `old`.
    pub seed: Option<PathBuf>,
    /// Fill `old` with generated sample data (repos, files, two pipelines) instead of a dump.
    pub sample: bool,
    /// Whether `new` runs from the start; when false its namespace is empty until a pachd
    /// Deployment is applied there (as the migration's "deploy the new cluster" step does).
    pub deploy_new: bool,
}

impl SandboxConfig {
    /// The defaults: 1.11 and 1.13, both running, no seed.
    pub fn new(dir: &Path) -> SandboxConfig {
        SandboxConfig {
            dir: dir.to_path_buf(),
            old_version: PachdVersion::v1_11(),
            new_version: PachdVersion::v1_13(),
            seed: None,
            sample: false,
            deploy_new: true,
        }
    }
}

/// The container port of pachd's gRPC API (`api-grpc-port`), where a port-forward to a pachd
/// pod lands.
const PACHD_CONTAINER_PORT: u16 = 650;

/// One running cluster of the sandbox.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    /// `old`, `new`, …
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// The cluster itself.
    pub cluster: Cluster,
    /// Its bucket directory.
    pub bucket_dir: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The session token clients should use (set after a seed activated auth).
    pub session_token: Option<String>,
}

impl ClusterHandle {
    /// `grpc://127.0.0.1:PORT`, the cluster's own listener.
    pub fn pachd_address(&self) -> String {
        format!("grpc://{}", self.address)
    }

    /// `http://127.0.0.1:PORT`, for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

struct Running {
    handle: ClusterHandle,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), SandboxError>>>,
}

/// The emulated Kubernetes side of a sandbox: its API server and one namespace per cluster,
/// each with a loopback node address whose NodePorts forward to that namespace's pachd.
struct KubeSide {
    state: Arc<KubeState>,
    address: SocketAddr,
    identity: Arc<ServerIdentity>,
    server: String,
    forwarders: Mutex<BTreeMap<String, Arc<NodePortForwarder>>>,
    shutdown: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

struct Shared {
    dir: PathBuf,
    new_version: PachdVersion,
    clusters: Mutex<Vec<Running>>,
    kube: KubeSide,
}

/// A running sandbox.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Scales a namespace's pipeline worker pods with the emulated pachd's pipeline states.
struct WorkerPods {
    state: Arc<KubeState>,
    namespace: String,
}

impl PipelineObserver for WorkerPods {
    fn pipeline_state_changed(&self, _cluster: &str, pipeline: &str, running: bool) {
        let state = self.state.clone();
        let namespace = self.namespace.clone();
        let pipeline = pipeline.to_owned();
        tokio::spawn(async move {
            let replicas = u32::from(running);
            if let Err(error) = state
                .set_pipeline_workers(&namespace, &pipeline, replicas, "ubuntu:18.04")
                .await
            {
                tracing::warn!("sandbox: cannot scale workers of {pipeline}: {error}");
            }
        });
    }
}

/// Starts (or stops) an emulated pachd when a pachd Deployment appears in (or leaves) a
/// namespace, reading its version from the image tag and its bucket from `PACH_ROOT`.
struct DeployHooks {
    shared: std::sync::Weak<Shared>,
}

fn deployment_env(deployment: &serde_json::Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|container| container["env"].as_array().into_iter().flatten())
        .find(|entry| entry["name"] == name)
        .and_then(|entry| entry["value"].as_str().map(str::to_owned))
}

impl DeploymentHooks for DeployHooks {
    fn pachd_deployed(&self, namespace: &str, deployment: &serde_json::Value) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let version = image
            .rsplit_once(':')
            .and_then(|(_, tag)| tag.parse::<PachdVersion>().ok())
            .unwrap_or_else(|| shared.new_version);
        // A real pachd on local storage keeps its objects under PACH_ROOT; the sandbox uses
        // that directory as the cluster's bucket when it is an absolute path on this machine.
        let bucket = deployment_env(deployment, "PACH_ROOT")
            .map(PathBuf::from)
            .filter(|root| root.is_absolute() && root != Path::new("/pach"))
            .unwrap_or_else(|| shared.dir.join(namespace).join("bucket"));
        let namespace = namespace.to_owned();
        tokio::spawn(async move {
            let sandbox = Sandbox { shared };
            if let Err(error) = sandbox.start_cluster(&namespace, version, &bucket).await {
                tracing::warn!("sandbox: cannot start pachd in {namespace}: {error}");
            }
        });
    }

    fn pachd_stopped(&self, namespace: &str) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let namespace = namespace.to_owned();
        tokio::spawn(async move {
            Sandbox { shared }.stop_cluster(&namespace).await;
        });
    }
}

/// Starts one cluster on `127.0.0.1:0` and serves it until `shutdown`.
pub async fn spawn_cluster(
    config: ClusterConfig,
) -> Result<
    (
        Cluster,
        SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<Result<(), SandboxError>>,
    ),
    SandboxError,
> {
    let cluster = Cluster::open(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| SandboxError::io("listen on", Path::new("127.0.0.1:0"), err))?;
    let address = listener
        .local_addr()
        .map_err(|err| SandboxError::io("listen on", Path::new("127.0.0.1:0"), err))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let serving = cluster.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(listener, async move { stop.cancelled().await })
            .await
    });
    Ok((cluster, address, shutdown, task))
}

/// Restores the dump at `path` into the pachd at `endpoint` over gRPC, sending `token` as
/// `authn-token`. Returns the number of ops sent.
pub async fn restore_dump(endpoint: &str, path: &Path, token: &str) -> Result<u64, SandboxError> {
    let mut reader =
        DumpReader::open(path).map_err(|err| SandboxError::io("read dump", path, err))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<admin::RestoreRequest>(8);
    let path_owned = path.to_path_buf();
    let producer = tokio::task::spawn_blocking(move || -> Result<u64, SandboxError> {
        let mut count = 0;
        while let Some(op) = reader
            .next_op()
            .map_err(|err| SandboxError::io("read dump", &path_owned, err))?
        {
            count += 1;
            if tx
                .blocking_send(admin::RestoreRequest {
                    op: Some(op),
                    url: String::new(),
                })
                .is_err()
            {
                break;
            }
        }
        Ok(count)
    });
    let mut client = admin::api_client::ApiClient::connect(endpoint.to_owned())
        .await
        .map_err(|err| SandboxError::Wire(format!("connect to {endpoint}: {err}")))?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Ok(value) = token.parse() {
        request.metadata_mut().insert("authn-token", value);
    }
    let restored = client.restore(request).await;
    let count = producer
        .await
        .map_err(|err| SandboxError::Wire(format!("read dump: {err}")))??;
    restored.map_err(|status| {
        SandboxError::Wire(format!("restore {}: {}", path.display(), status.message()))
    })?;
    Ok(count)
}

impl Sandbox {
    /// Starts the emulated Kubernetes API, `old` (and `new` unless `deploy_new` is false),
    /// seeds `old` if asked, and writes the client files.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|err| SandboxError::io("create sandbox directory", &config.dir, err))?;
        let dir = std::fs::canonicalize(&config.dir)
            .map_err(|err| SandboxError::io("resolve", &config.dir, err))?;

        let state = Arc::new(KubeState::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| SandboxError::io("listen on", Path::new("127.0.0.1:0"), err))?;
        let kube_address = listener
            .local_addr()
            .map_err(|err| SandboxError::io("listen on", Path::new("127.0.0.1:0"), err))?;
        let identity = Arc::new(
            ServerIdentity::generate()
                .map_err(|err| SandboxError::Wire(format!("start the Kubernetes API: {err}")))?,
        );
        let kube_shutdown = CancellationToken::new();
        let stop = kube_shutdown.clone();
        let serving_state = state.clone();
        let serving_identity = identity.clone();
        let kube_task = tokio::spawn(async move {
            super::kube_api::serve(listener, serving_state, &serving_identity, async move {
                stop.cancelled().await
            })
            .await
        });
        let sandbox = Sandbox {
            shared: Arc::new(Shared {
                dir: dir.clone(),
                new_version: config.new_version,
                clusters: Mutex::new(Vec::new()),
                kube: KubeSide {
                    state: state.clone(),
                    address: kube_address,
                    identity,
                    server: format!("http://{kube_address}"),
                    forwarders: Mutex::new(BTreeMap::new()),
                    shutdown: kube_shutdown,
                    task: Mutex::new(Some(kube_task)),
                },
            }),
        };

        let kube_error = |error: super::kube_api::ApiError| {
            SandboxError::Wire(format!("seed the Kubernetes API: {error}"))
        };
        // The nodes come first, so the seeded pods are scheduled onto them.
        let node_addrs: Vec<(&str, std::net::Ipv4Addr)> = ["old", "new"]
            .into_iter()
            .map(|namespace| (namespace, allocate_node_addr()))
            .collect();
        for (namespace, node_addr) in &node_addrs {
            state
                .add_node(namespace, *node_addr)
                .await
                .map_err(kube_error)?;
        }
        state
            .seed_pachyderm(
                "old",
                &SeedSpec {
                    pachd_version: config.old_version.to_string(),
                    pipelines: Vec::new(),
                    dash: true,
                },
            )
            .await
            .map_err(kube_error)?;
        if config.deploy_new {
            state
                .seed_pachyderm(
                    "new",
                    &SeedSpec {
                        pachd_version: config.new_version.to_string(),
                        pipelines: Vec::new(),
                        dash: true,
                    },
                )
                .await
                .map_err(kube_error)?;
        } else {
            state
                .create_object(serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "new" }
                }))
                .await
                .map_err(kube_error)?;
        }
        for (namespace, node_addr) in node_addrs {
            let forwarder = NodePortForwarder::start(&state, namespace, "pachd", node_addr).await;
            lock(&sandbox.shared.kube.forwarders).insert(namespace.to_owned(), forwarder);
        }

        sandbox
            .start_cluster("old", config.old_version, &dir.join("old").join("bucket"))
            .await?;
        if config.deploy_new {
            sandbox
                .start_cluster("new", config.new_version, &dir.join("new").join("bucket"))
                .await?;
        } else {
            std::fs::create_dir_all(dir.join("new").join("bucket"))
                .map_err(|err| SandboxError::io("create", &dir.join("new"), err))?;
        }
        let old = sandbox.cluster("old").expect("old was just started");
        if let Some(seed) = &config.seed {
            let token = uuid::Uuid::new_v4().simple().to_string();
            restore_dump(&old.endpoint(), seed, &token).await?;
            if old.cluster.lock().auth.active {
                sandbox.set_session_token("old", &token);
            }
        } else if config.sample {
            super::sample::fill(&old.endpoint()).await?;
        }
        // Worker pods for the pipelines the seed created, then follow their states.
        let pipelines: Vec<(String, bool)> = old
            .cluster
            .lock()
            .pipelines
            .iter()
            .map(|(name, record)| (name.clone(), !record.info.stopped))
            .collect();
        for (pipeline, running) in pipelines {
            state
                .set_pipeline_workers("old", &pipeline, u32::from(running), "ubuntu:18.04")
                .await
                .map_err(kube_error)?;
        }
        // Hooks are registered after seeding so the seeded pachd Deployments do not fire them.
        state.add_hooks(Arc::new(DeployHooks {
            shared: Arc::downgrade(&sandbox.shared),
        }));
        if !config.deploy_new {
            sandbox.write_new_manifest(&config.new_version)?;
        }
        sandbox.write_files()?;
        Ok(sandbox)
    }

    /// Starts (or replaces) cluster `name` on `bucket_dir`, e.g. a `new` cluster "deployed"
    /// on a cloned bucket. Its data directory is `DIR/<name>/data`; the namespace's NodePorts
    /// forward to it.
    pub async fn start_cluster(
        &self,
        name: &str,
        version: PachdVersion,
        bucket_dir: &Path,
    ) -> Result<ClusterHandle, SandboxError> {
        self.stop_cluster(name).await;
        let data_dir = self.shared.dir.join(name).join("data");
        let mut config = ClusterConfig::new(name, version, bucket_dir);
        config.data_dir = Some(data_dir.clone());
        config.observer = Arc::new(WorkerPods {
            state: self.shared.kube.state.clone(),
            namespace: name.to_owned(),
        });
        let (cluster, address, shutdown, task) = spawn_cluster(config).await?;
        let handle = ClusterHandle {
            name: name.to_owned(),
            address,
            cluster,
            bucket_dir: bucket_dir.to_path_buf(),
            data_dir,
            session_token: None,
        };
        lock(&self.shared.clusters).push(Running {
            handle: handle.clone(),
            shutdown,
            task: Some(task),
        });
        if let Some(forwarder) = lock(&self.shared.kube.forwarders).get(name) {
            forwarder.set_backend("api-grpc-port", address);
        }
        self.shared
            .kube
            .state
            .pod_ports()
            .set(name, "pachd", PACHD_CONTAINER_PORT, address);
        self.write_files()?;
        Ok(handle)
    }

    /// Stops cluster `name` if it runs (its NodePorts then accept and close connections).
    pub async fn stop_cluster(&self, name: &str) {
        let running = {
            let mut clusters = lock(&self.shared.clusters);
            clusters
                .iter()
                .position(|running| running.handle.name == name)
                .map(|position| clusters.remove(position))
        };
        if let Some(mut running) = running {
            if let Some(forwarder) = lock(&self.shared.kube.forwarders).get(name) {
                forwarder.clear_backend("api-grpc-port");
            }
            self.shared
                .kube
                .state
                .pod_ports()
                .clear(name, "pachd", PACHD_CONTAINER_PORT);
            running.shutdown.cancel();
            if let Some(task) = running.task.take() {
                let _ = task.await;
            }
            let _ = running.handle.cluster.persist();
            let _ = self.write_files();
        }
    }

    fn set_session_token(&self, name: &str, token: &str) {
        for running in lock(&self.shared.clusters).iter_mut() {
            if running.handle.name == name {
                running.handle.session_token = Some(token.to_owned());
            }
        }
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<ClusterHandle> {
        lock(&self.shared.clusters)
            .iter()
            .find(|running| running.handle.name == name)
            .map(|running| running.handle.clone())
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// `DIR/pachctl-config.json`.
    pub fn pach_config_path(&self) -> PathBuf {
        self.shared.dir.join("pachctl-config.json")
    }

    /// `DIR/kubeconfig`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.shared.dir.join("kubeconfig")
    }

    /// `DIR/new-pachd.yaml`: the manifests that deploy `new` on its bucket (written when
    /// `new` does not run from the start).
    pub fn new_manifest_path(&self) -> PathBuf {
        self.shared.dir.join("new-pachd.yaml")
    }

    /// The loopback node address of a namespace, where its Service's NodePorts listen.
    pub fn node_address(&self, namespace: &str) -> Option<std::net::Ipv4Addr> {
        lock(&self.shared.kube.forwarders)
            .get(namespace)
            .map(|forwarder| forwarder.node_addr())
    }

    /// The emulated Kubernetes API's URL.
    pub fn kube_server(&self) -> &str {
        &self.shared.kube.server
    }

    /// The emulated Kubernetes API's state (for tests and the loader).
    pub fn kube_state(&self) -> Arc<KubeState> {
        self.shared.kube.state.clone()
    }

    fn node_pachd_address(&self, namespace: &str) -> String {
        match self.node_address(namespace) {
            Some(node) => format!("grpc://{node}:30650"),
            None => String::new(),
        }
    }

    fn write_new_manifest(&self, version: &PachdVersion) -> Result<(), SandboxError> {
        let bucket = self.shared.dir.join("new").join("bucket");
        let mut deployment = super::kube_api::seed::pachd_deployment("new", &version.to_string());
        if let Some(env) =
            deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut()
        {
            for entry in env.iter_mut() {
                if entry["name"] == "PACH_ROOT" {
                    entry["value"] = json!(bucket.display().to_string());
                }
            }
        }
        // Two YAML documents (JSON is YAML), as `kubectl apply -f` takes them.
        let text = format!(
            "{}\n---\n{}\n",
            serde_json::to_string_pretty(&super::kube_api::seed::pachd_service("new"))
                .expect("JSON values always serialize"),
            serde_json::to_string_pretty(&deployment).expect("JSON values always serialize")
        );
        crate::fsutil::write_atomic(&self.new_manifest_path(), text.as_bytes())
            .map_err(|err| SandboxError::io("write", &self.new_manifest_path(), err))
    }

    /// What `sandbox.json` holds.
    pub fn info(&self) -> serde_json::Value {
        let mut clusters = serde_json::Map::new();
        for running in lock(&self.shared.clusters).iter() {
            let handle = &running.handle;
            clusters.insert(
                handle.name.clone(),
                json!({
                    "address": self.node_pachd_address(&handle.name),
                    "direct_address": handle.pachd_address(),
                    "version": handle.cluster.version().to_string(),
                    "bucket": file_url(&handle.bucket_dir),
                    "data": handle.data_dir.display().to_string(),
                    "deployment_id": handle.cluster.deployment_id(),
                }),
            );
        }
        let nodes: serde_json::Map<String, serde_json::Value> = lock(&self.shared.kube.forwarders)
            .iter()
            .map(|(namespace, forwarder)| {
                (namespace.clone(), json!(forwarder.node_addr().to_string()))
            })
            .collect();
        json!({
            "dir": self.shared.dir.display().to_string(),
            "pachctl_config": self.pach_config_path().display().to_string(),
            "kubeconfig": self.kubeconfig_path().display().to_string(),
            "kube_server": self.shared.kube.server,
            "nodes": nodes,
            "buckets": {
                "old": file_url(&self.shared.dir.join("old").join("bucket")),
                "new": file_url(&self.shared.dir.join("new").join("bucket")),
            },
            "new_manifest": self.new_manifest_path().display().to_string(),
            "clusters": clusters,
        })
    }

    /// Writes `pachctl-config.json`, `kubeconfig` and `sandbox.json`. Contexts `old` and `new`
    /// reach pachd through their namespace's NodePort, as external clients do.
    pub fn write_files(&self) -> Result<(), SandboxError> {
        let mut contexts = serde_json::Map::new();
        let clusters: Vec<ClusterHandle> = lock(&self.shared.clusters)
            .iter()
            .map(|running| running.handle.clone())
            .collect();
        for namespace in ["old", "new"] {
            let mut context = json!({ "pachd_address": self.node_pachd_address(namespace) });
            if let Some(handle) = clusters.iter().find(|handle| handle.name == namespace) {
                // pachd reports a deployment id from 1.10 on; 1.9 contexts have none.
                if handle.cluster.version().minor >= 10 {
                    context["cluster_deployment_id"] = json!(handle.cluster.deployment_id());
                }
                if let Some(token) = &handle.session_token {
                    context["session_token"] = json!(token);
                }
            }
            contexts.insert(namespace.to_owned(), context);
        }
        // pachctl 1.9.0 reads only a v1 block, with a plain HOST:PORT; pachctl 1.9.1+ and
        // ankus read v2 and ignore v1 when both are there. v1 names `old`, the active context.
        let mut v1 = json!({
            "pachd_address": self.node_pachd_address("old").trim_start_matches("grpc://"),
        });
        if let Some(token) = clusters
            .iter()
            .find(|handle| handle.name == "old")
            .and_then(|handle| handle.session_token.as_ref())
        {
            v1["session_token"] = json!(token);
        }
        let config = json!({
            "user_id": uuid::Uuid::new_v4().simple().to_string(),
            "v1": v1,
            "v2": { "active_context": "old", "contexts": contexts, "metrics": false }
        });
        write_json(&self.pach_config_path(), &config)?;
        super::kube_api::write_sandbox_kubeconfig(
            &self.kubeconfig_path(),
            self.shared.kube.address,
            self.shared.kube.identity.ca_pem(),
            &["old", "new"],
            "old",
        )
        .map_err(|err| SandboxError::io("write", &self.kubeconfig_path(), err))?;
        write_json(&self.shared.dir.join("sandbox.json"), &self.info())
    }

    /// Stops every cluster and the Kubernetes API, and waits for them.
    pub async fn shutdown(self) {
        let names: Vec<String> = lock(&self.shared.clusters)
            .iter()
            .map(|running| running.handle.name.clone())
            .collect();
        for name in names {
            self.stop_cluster(&name).await;
        }
        let forwarders: Vec<Arc<NodePortForwarder>> = lock(&self.shared.kube.forwarders)
            .values()
            .cloned()
            .collect();
        for forwarder in forwarders {
            forwarder.stop().await;
        }
        self.shared.kube.shutdown.cancel();
        let task = lock(&self.shared.kube.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), SandboxError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    crate::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|err| SandboxError::io("write", path, err))
}
