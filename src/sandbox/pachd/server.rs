//! One emulated pachd cluster: its configuration, bucket and state, and [`Cluster::serve`],
//! which serves every pachd gRPC service on a listener until a shutdown signal. Many clusters
//! can live in one process; nothing is global.

use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::bucket::Bucket;
use super::error::{PachdError, PachdResult, SandboxError};
use super::services;
use super::state::{Caller, State, Transition};
use super::version::PachdVersion;

/// How long a change may wait before `state.json` is rewritten. Writes are coalesced: the
/// whole state is serialized on each write, so writing after every call made a burst of N
/// calls on a large cluster cost O(N × state) (1,000 pipeline stops rewrote megabytes
/// thousands of times).
pub const PERSIST_DELAY: Duration = Duration::from_millis(100);

/// pachd's message size limit is 20 MiB; accept a little more so clients at the limit pass.
pub const MAX_MESSAGE: usize = 32 << 20;

/// The gRPC metadata key carrying the session token.
pub const TOKEN_KEY: &str = "authn-token";

/// The gRPC metadata key that selects the restore mode: `strict` (validate the whole stream,
/// apply only if nothing would fail), `check` (validate only, never apply) or `lenient`
/// (pachd's behaviour: apply op by op). Without it, [`ClusterConfig::strict_restore`] decides.
pub const RESTORE_MODE_KEY: &str = "ankus-restore-mode";

/// Told when a pipeline's workers should run or stop (the kube emulation scales pods with it).
pub trait PipelineObserver: Send + Sync {
    /// `running` is true after a start (RUNNING), false after a stop (PAUSED).
    fn pipeline_state_changed(&self, cluster: &str, pipeline: &str, running: bool);
}

/// The default observer: does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl PipelineObserver for NoObserver {
    fn pipeline_state_changed(&self, _cluster: &str, _pipeline: &str, _running: bool) {}
}

/// How a cluster is set up.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The cluster's name (`old`, `new`, …), for logs and the observer.
    pub name: String,
    /// The pachd version it impersonates.
    pub version: PachdVersion,
    /// Its object storage directory.
    pub bucket_dir: PathBuf,
    /// Where its metadata is persisted (`state.json`); in memory only when `None`.
    pub data_dir: Option<PathBuf>,
    /// How long the pipeline controller takes to notice a stop/start or a new pipeline.
    pub transition_delay: Duration,
    /// Told about pipeline state changes.
    pub observer: Arc<dyn PipelineObserver>,
    /// Whether restores without an `ankus-restore-mode` header run in strict mode.
    pub strict_restore: bool,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("bucket_dir", &self.bucket_dir)
            .field("data_dir", &self.data_dir)
            .field("transition_delay", &self.transition_delay)
            .field("strict_restore", &self.strict_restore)
            .finish()
    }
}

impl ClusterConfig {
    /// A cluster with the defaults: in memory, 50 ms transitions, no observer, lenient
    /// restores for clients that do not ask otherwise.
    pub fn new(name: &str, version: PachdVersion, bucket_dir: &Path) -> ClusterConfig {
        ClusterConfig {
            name: name.to_owned(),
            version,
            bucket_dir: bucket_dir.to_path_buf(),
            data_dir: None,
            // Measured on a real pachd 1.9.0 (no load): RUNNING within 10 ms of
            // CreatePipeline returning, PAUSED 20-30 ms after StopPipeline returns.
            transition_delay: Duration::from_millis(20),
            observer: Arc::new(NoObserver),
            strict_restore: false,
        }
    }
}

struct Inner {
    config: ClusterConfig,
    bucket: Bucket,
    state: Mutex<State>,
    /// Ops received by Restore since the cluster opened, applied or not.
    restore_ops: std::sync::atomic::AtomicU64,
    /// A coalesced write of `state.json` is scheduled and has not started yet.
    persist_scheduled: AtomicBool,
}

/// A running (or ready to serve) emulated pachd. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// A handle on an in-process loader; stops it when dropped or on [`LoaderHandle::stop`].
#[derive(Debug)]
pub struct LoaderHandle {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl LoaderHandle {
    /// Stops the loader and returns how many commits it made.
    pub async fn stop(mut self) -> u64 {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for LoaderHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Cluster {
    /// Opens a cluster: its bucket, and its state from `<data>/state.json` when present.
    pub fn open(config: ClusterConfig) -> Result<Cluster, SandboxError> {
        let bucket = Bucket::open(&config.bucket_dir)
            .map_err(|err| SandboxError::io("open bucket", &config.bucket_dir, err))?;
        let state = match &config.data_dir {
            Some(dir) => {
                private_data_dir(dir)?;
                let path = dir.join("state.json");
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        serde_json::from_slice(&bytes).map_err(|err| SandboxError::State {
                            path: path.clone(),
                            message: err.to_string(),
                        })?
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => State::new(),
                    Err(err) => return Err(SandboxError::io("read", &path, err)),
                }
            }
            None => State::new(),
        };
        let mut state = state;
        state.describe_output_repos = config.version.describes_output_repos();
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                bucket,
                state: Mutex::new(state),
                restore_ops: std::sync::atomic::AtomicU64::new(0),
                persist_scheduled: AtomicBool::new(false),
            }),
        };
        cluster
            .persist()
            .map_err(|err| SandboxError::Wire(err.message))?;
        Ok(cluster)
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The impersonated version.
    pub fn version(&self) -> PachdVersion {
        self.inner.config.version
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    /// The stable deployment id InspectCluster reports.
    pub fn deployment_id(&self) -> String {
        self.lock().deployment_id.clone()
    }

    /// Ops received by Restore since the cluster opened (applied or not), so tests can tell
    /// that a client sent nothing.
    pub fn restore_ops_received(&self) -> u64 {
        self.inner
            .restore_ops
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn count_restore_op(&self) {
        self.inner
            .restore_ops
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Locks the state. A panic elsewhere never poisons the cluster for other clients.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a state transition and persists the state (within [`PERSIST_DELAY`]) when it
    /// succeeds.
    pub fn mutate<R>(
        &self,
        change: impl FnOnce(&mut State, &Bucket) -> PachdResult<R>,
    ) -> PachdResult<R> {
        let result = {
            let mut state = self.lock();
            change(&mut state, &self.inner.bucket)
        };
        if result.is_ok() {
            self.persist_soon()?;
        }
        result
    }

    /// Writes `state.json` within [`PERSIST_DELAY`], once for all the changes made meanwhile;
    /// at once when there is no runtime to wait on. [`Cluster::serve`] writes the last state
    /// when it stops, so nothing is lost on shutdown.
    pub fn persist_soon(&self) -> PachdResult<()> {
        if self.inner.config.data_dir.is_none() {
            return Ok(());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.persist();
        };
        if !self.inner.persist_scheduled.swap(true, Ordering::SeqCst) {
            let cluster = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(PERSIST_DELAY).await;
                // Cleared before the state is read, so a change made from here on schedules
                // another write.
                cluster
                    .inner
                    .persist_scheduled
                    .store(false, Ordering::SeqCst);
                if let Err(err) = cluster.persist() {
                    tracing::warn!("sandbox {}: {}", cluster.name(), err.message);
                }
            });
        }
        Ok(())
    }

    /// Writes `<data>/state.json` now (no-op without a data directory).
    pub fn persist(&self) -> PachdResult<()> {
        let Some(dir) = &self.inner.config.data_dir else {
            return Ok(());
        };
        let bytes = {
            let state = self.lock();
            serde_json::to_vec(&*state)
                .map_err(|err| PachdError::unknown(format!("serialize state: {err}")))?
        };
        let temp = dir.join(format!(".state.json.{}", uuid::Uuid::new_v4().simple()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(STATE_MODE)
            .open(&temp)
            .and_then(|mut file| file.write_all(&bytes))
            .map_err(|err| PachdError::io("write state", &err))?;
        std::fs::rename(&temp, dir.join("state.json"))
            .map_err(|err| PachdError::io("write state", &err))
    }

    /// Checks the token of a request.
    pub fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> PachdResult<Caller> {
        let token = token_of(metadata);
        self.lock().caller(token.as_deref())
    }

    /// Schedules the asynchronous part of a pipeline change (the controller noticing it).
    pub fn schedule(&self, transition: Transition) {
        let cluster = self.clone();
        let delay = self.inner.config.transition_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let settled = cluster.lock().settle_pipeline(&transition);
            if let Some(running) = settled {
                let _ = cluster.persist_soon();
                cluster.inner.config.observer.pipeline_state_changed(
                    &cluster.inner.config.name,
                    &transition.pipeline,
                    running,
                );
            }
        });
    }

    /// Writes `content` to `path` in a new commit on `repo@branch` through the same code path
    /// as PutFile on a branch.
    pub fn put_file_on_branch(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        content: &[u8],
    ) -> PachdResult<String> {
        services::put_file_on_branch(self, repo, branch, path, content)
    }

    /// Starts committing a small file to `repo@master` every `interval` (in-process; see
    /// [`super::loader`] for the over-the-wire loader tests use).
    pub fn start_loader(&self, repo: &str, interval: Duration) -> LoaderHandle {
        let cancel = CancellationToken::new();
        let cluster = self.clone();
        let repo = repo.to_owned();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            let mut made = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {
                        let content = format!("{}\n", jiff::Timestamp::now());
                        let path = format!("/load-{made:08}");
                        if cluster.put_file_on_branch(&repo, "master", &path, content.as_bytes()).is_ok() {
                            made += 1;
                        }
                    }
                }
            }
            made
        });
        LoaderHandle {
            cancel,
            task: Some(task),
        }
    }

    /// Serves every pachd service on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SandboxError> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let served = services::router(&self)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(SandboxError::Serve);
        // Changes still waiting for a coalesced write.
        self.persist()
            .map_err(|err| SandboxError::Wire(err.message))?;
        served
    }
}

impl Cluster {
    /// Serves every pachd service over TLS (`grpcs://`) with the PEM certificate chain and
    /// key given, until `shutdown` completes.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        cert_pem: &[u8],
        key_pem: &[u8],
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SandboxError> {
        // Several rustls providers are linked in (ring, and aws-lc-rs through other crates),
        // so rustls cannot pick one itself; the host runtime installs ring, but a sandbox
        // served from another process (tests, benches) must too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        let server = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(SandboxError::Serve)?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        services::router_on(&self, server)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(SandboxError::Serve)
    }
}

/// `state.json` holds activation codes and tokens: only its owner may read it, in a directory
/// only its owner may list.
const STATE_MODE: u32 = 0o600;
const DATA_DIR_MODE: u32 = 0o700;

/// Creates the data directory owner-only, and takes group and other access away from one
/// (and its `state.json`) that an older sandbox left readable.
fn private_data_dir(dir: &Path) -> Result<(), SandboxError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(|err| SandboxError::io("create data directory", dir, err))?;
    let tighten = |path: &Path, mode: u32| -> Result<(), SandboxError> {
        let current = match std::fs::metadata(path) {
            Ok(metadata) => metadata.permissions().mode() & 0o777,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(SandboxError::io("inspect", path, err)),
        };
        if current & !mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
                .map_err(|err| SandboxError::io("restrict access to", path, err))?;
        }
        Ok(())
    };
    tighten(dir, DATA_DIR_MODE)?;
    tighten(&dir.join("state.json"), STATE_MODE)
}

/// The `authn-token` of a request, if any.
pub fn token_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(TOKEN_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persisted_repos(dir: &Path) -> Vec<String> {
        let bytes = std::fs::read(dir.join("data").join("state.json")).expect("state.json");
        let state: State = serde_json::from_slice(&bytes).expect("state decodes");
        state
            .repos
            .keys()
            .filter(|name| !name.starts_with("__"))
            .cloned()
            .collect()
    }

    fn config(dir: &Path) -> ClusterConfig {
        let mut config = ClusterConfig::new("p", PachdVersion::v1_13(), &dir.join("bucket"));
        config.data_dir = Some(dir.join("data"));
        config
    }

    #[test]
    fn a_change_outside_a_runtime_is_written_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = Cluster::open(config(dir.path())).expect("cluster opens");
        cluster
            .mutate(|state, _| state.create_repo("kept", "", false))
            .expect("create repo");
        assert_eq!(persisted_repos(dir.path()), ["kept"]);
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn the_state_file_holding_activation_codes_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let cluster = Cluster::open(config(dir.path())).expect("cluster opens");
        cluster
            .mutate(|state, _| state.create_repo("kept", "", false))
            .expect("create repo");
        assert_eq!(
            (mode(&data), mode(&data.join("state.json"))),
            (0o700, 0o600)
        );
        drop(cluster);

        // A sandbox directory from before: world-readable. Reopening it takes that away.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(
            data.join("state.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let reopened = Cluster::open(config(dir.path())).expect("cluster reopens");
        assert_eq!(
            (mode(&data), mode(&data.join("state.json"))),
            (0o700, 0o600)
        );
        assert_eq!(persisted_repos(dir.path()), ["kept"]);
        drop(reopened);
    }

    #[tokio::test]
    async fn a_burst_of_changes_is_written_once_served_and_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = Cluster::open(config(dir.path())).expect("cluster opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let stop = CancellationToken::new();
        let serving = {
            let stop = stop.clone();
            tokio::spawn(
                cluster
                    .clone()
                    .serve(listener, async move { stop.cancelled().await }),
            )
        };
        for index in 0..100 {
            cluster
                .mutate(|state, _| state.create_repo(&format!("r{index:03}"), "", false))
                .expect("create repo");
        }
        stop.cancel();
        serving.await.expect("joins").expect("serves and stops");
        assert_eq!(persisted_repos(dir.path()).len(), 100);
    }
}
