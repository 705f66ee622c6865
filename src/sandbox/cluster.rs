//! The sandbox orchestrator: an `old` and a `new` emulated pachd on loopback ports, each with
//! its own bucket and data directory under one directory, plus the files clients use to reach
//! them (`pachctl-config.json` in pachctl's v2 format, `sandbox.json`).
//!
//! ```text
//! DIR/pachctl-config.json   contexts old and new (pachd_address, cluster_deployment_id)
//! DIR/sandbox.json          addresses, bucket URLs (file://), versions, data dirs
//! DIR/<name>/bucket/        the cluster's object storage
//! DIR/<name>/data/          the cluster's metadata (state.json), so it survives restarts
//! ```
//! Seeding (`--seed DUMP`) restores a dump into `old` over a real gRPC connection, with a fresh
//! token as `authn-token` (so a dump with auth makes it `pach:root`'s token, as pachctl's
//! restore does); the token is then stored as `old`'s `session_token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::pachd::dumpfile::DumpReader;
use super::pachd::error::SandboxError;
use super::pachd::{Cluster, ClusterConfig, PachdVersion};
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
}

impl SandboxConfig {
    /// The defaults: 1.11 and 1.13, no seed.
    pub fn new(dir: &Path) -> SandboxConfig {
        SandboxConfig {
            dir: dir.to_path_buf(),
            old_version: PachdVersion::v1_11(),
            new_version: PachdVersion::v1_13(),
            seed: None,
        }
    }
}

/// One running cluster of the sandbox.
#[derive(Debug)]
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
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SandboxError>>,
}

impl ClusterHandle {
    /// `grpc://127.0.0.1:PORT`, as pachctl configs spell it.
    pub fn pachd_address(&self) -> String {
        format!("grpc://{}", self.address)
    }

    /// `http://127.0.0.1:PORT`, for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    clusters: Vec<ClusterHandle>,
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
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
    /// Starts `old` and `new`, seeds `old` if asked, and writes the client files.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|err| SandboxError::io("create sandbox directory", &config.dir, err))?;
        let dir = std::fs::canonicalize(&config.dir)
            .map_err(|err| SandboxError::io("resolve", &config.dir, err))?;
        let mut sandbox = Sandbox {
            dir: dir.clone(),
            clusters: Vec::new(),
        };
        sandbox
            .start_cluster("old", config.old_version, &dir.join("old").join("bucket"))
            .await?;
        sandbox
            .start_cluster("new", config.new_version, &dir.join("new").join("bucket"))
            .await?;
        if let Some(seed) = &config.seed {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let endpoint = sandbox.clusters[0].endpoint();
            restore_dump(&endpoint, seed, &token).await?;
            let active = sandbox.clusters[0].cluster.lock().auth.active;
            if active {
                sandbox.clusters[0].session_token = Some(token);
            }
        }
        sandbox.write_files()?;
        Ok(sandbox)
    }

    /// Starts (or replaces) cluster `name` on `bucket_dir`, e.g. a `new` cluster "deployed"
    /// on a cloned bucket. Its data directory is `DIR/<name>/data`.
    pub async fn start_cluster(
        &mut self,
        name: &str,
        version: PachdVersion,
        bucket_dir: &Path,
    ) -> Result<&ClusterHandle, SandboxError> {
        if let Some(pos) = self.clusters.iter().position(|c| c.name == name) {
            let old = self.clusters.remove(pos);
            old.shutdown.cancel();
            let _ = old.task.await;
        }
        let data_dir = self.dir.join(name).join("data");
        let mut config = ClusterConfig::new(name, version, bucket_dir);
        config.data_dir = Some(data_dir.clone());
        let (cluster, address, shutdown, task) = spawn_cluster(config).await?;
        self.clusters.push(ClusterHandle {
            name: name.to_owned(),
            address,
            cluster,
            bucket_dir: bucket_dir.to_path_buf(),
            data_dir,
            session_token: None,
            shutdown,
            task,
        });
        self.write_files()?;
        Ok(self.clusters.last().expect("just pushed"))
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterHandle> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/pachctl-config.json`.
    pub fn pach_config_path(&self) -> PathBuf {
        self.dir.join("pachctl-config.json")
    }

    /// What `sandbox.json` holds.
    pub fn info(&self) -> serde_json::Value {
        let mut clusters = serde_json::Map::new();
        for handle in &self.clusters {
            clusters.insert(
                handle.name.clone(),
                json!({
                    "address": handle.pachd_address(),
                    "version": handle.cluster.version().to_string(),
                    "bucket": file_url(&handle.bucket_dir),
                    "data": handle.data_dir.display().to_string(),
                    "deployment_id": handle.cluster.deployment_id(),
                }),
            );
        }
        json!({
            "dir": self.dir.display().to_string(),
            "pachctl_config": self.pach_config_path().display().to_string(),
            "clusters": clusters,
        })
    }

    /// Writes `pachctl-config.json` and `sandbox.json`.
    pub fn write_files(&self) -> Result<(), SandboxError> {
        let mut contexts = serde_json::Map::new();
        for handle in &self.clusters {
            let mut context = json!({
                "pachd_address": handle.pachd_address(),
                "cluster_deployment_id": handle.cluster.deployment_id(),
            });
            if let Some(token) = &handle.session_token {
                context["session_token"] = json!(token);
            }
            contexts.insert(handle.name.clone(), context);
        }
        let config = json!({
            "user_id": uuid::Uuid::new_v4().simple().to_string(),
            "v2": {
                "active_context": if self.cluster("old").is_some() { "old" } else { "new" },
                "contexts": contexts,
                "metrics": false,
            }
        });
        write_json(&self.pach_config_path(), &config)?;
        write_json(&self.dir.join("sandbox.json"), &self.info())
    }

    /// Stops every cluster and waits for them.
    pub async fn shutdown(self) {
        for handle in self.clusters {
            handle.shutdown.cancel();
            let _ = handle.task.await;
            let _ = handle.cluster.persist();
        }
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), SandboxError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).map_err(|err| SandboxError::io("write", &temp, err))?;
    std::fs::rename(&temp, path).map_err(|err| SandboxError::io("write", path, err))
}
