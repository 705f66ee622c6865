//! The pachd connection: resolves a context or address, connects with a bounded timeout,
//! checks the server is pachd 1.x and the cluster is the one the context names, and offers
//! typed operations. Every unary call has a deadline; idempotent reads are retried with
//! backoff on UNAVAILABLE, writes never are. Extract and restore stream raw `admin.Op` bytes
//! with no deadline; dropping their futures or streams cancels them.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt as _, Stream, StreamExt};
use prost::Message as _;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::address::{PachdAddress, Transport};
use super::codec::{AbortableCodec, RawCodec};
pub use super::config::Target;
use super::config::{self, ConfigEnv, ResolvedContext};
use super::error::PachdError;
use super::model::{
    AclEntry, Branch, ClusterInfo, Commit, FileInfo, Pipeline, PipelineWait, Repo, Version, WhoAmI,
    cluster_role_name,
};
use crate::kind::{Kind, Kinded};
use crate::proto::{admin, auth, pfs, pps, versionpb};

/// Largest message accepted or sent. pachd's own limit is 20 MiB; accept more so a peer at
/// that limit is never refused by us.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Largest `value` chunk put_file sends in one PutFileRequest.
pub const PUT_FILE_CHUNK: usize = 2 << 20;

/// The metadata key of the session token.
pub const TOKEN_KEY: &str = "authn-token";

/// The metadata key of the active transaction.
pub const TRANSACTION_KEY: &str = "pach-transaction";

/// How to reach pachd and how patient to be.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// A context, an address or the active context.
    pub target: Target,
    /// A session token that replaces the context's.
    pub token: Option<String>,
    /// The pachctl config to read instead of the one the environment names.
    pub config_path: Option<PathBuf>,
    /// The environment (`PACH_CONFIG`, `PACH_CONTEXT`, `PACHD_ADDRESS`, ...).
    pub env: ConfigEnv,
    /// The kubeconfig a port-forward to a pachd pod reads before `KUBECONFIG` and
    /// `~/.kube/config` (the host's preset, e.g. the sandbox's).
    pub kubeconfig: Option<PathBuf>,
    /// Limit for establishing the connection.
    pub connect_timeout: Duration,
    /// Deadline of each unary call.
    pub call_timeout: Duration,
    /// Retries of an idempotent read that failed with UNAVAILABLE.
    pub retries: u32,
    /// First backoff delay; doubled per retry up to 5 s.
    pub retry_delay: Duration,
}

impl ConnectOptions {
    /// Defaults for `target`, reading the process environment: 10 s to connect, 60 s per
    /// call, 4 retries from 200 ms.
    pub fn new(target: Target) -> Self {
        ConnectOptions {
            target,
            token: None,
            config_path: None,
            env: ConfigEnv::from_process(),
            kubeconfig: None,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
            retries: 4,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// `admin.ExtractRequest` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractFlags {
    /// Omit object, block and tag ops.
    pub no_objects: bool,
    /// Omit repo, commit and branch ops (and ACLs, 1.11.9+).
    pub no_repos: bool,
    /// Omit pipeline and job ops.
    pub no_pipelines: bool,
    /// Omit enterprise activation (1.11.9+).
    pub no_enterprise: bool,
    /// Omit auth ops (1.11.9+).
    pub no_auth: bool,
}

/// Settings of `stop_all` / `start_all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopStartOptions {
    /// Only these pipelines (all when `None`), e.g. to restart exactly those a pause stopped.
    pub names: Option<Vec<String>>,
    /// Pipelines handled at the same time.
    pub width: usize,
    /// How long to wait for each pipeline to reach the target state.
    pub timeout: Duration,
    /// Delay between two InspectPipeline calls while waiting.
    pub poll: Duration,
    /// Awaited just before and just after each stop or start call is sent, with the point's
    /// name (`stop:NAME:before`, `stop:NAME:after`, `start:...`): rehearsal holds, progress.
    pub hook: Option<ChangeHook>,
}

/// A callback awaited at the points of a `stop_all`/`start_all` (see [`StopStartOptions::hook`]).
#[derive(Clone)]
pub struct ChangeHook(
    pub Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
);

impl std::fmt::Debug for ChangeHook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ChangeHook")
    }
}

impl PartialEq for ChangeHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ChangeHook {}

impl StopStartOptions {
    /// The pipelines these options apply to.
    pub fn select(&self, pipelines: Vec<Pipeline>) -> Vec<Pipeline> {
        match &self.names {
            None => pipelines,
            Some(names) => pipelines
                .into_iter()
                .filter(|pipeline| names.contains(&pipeline.name))
                .collect(),
        }
    }
}

impl Default for StopStartOptions {
    fn default() -> Self {
        StopStartOptions {
            names: None,
            width: 16,
            timeout: Duration::from_secs(300),
            poll: Duration::from_millis(500),
            hook: None,
        }
    }
}

/// A server-streamed sequence of serialized `admin.Op` messages, exactly as pachd sent them.
pub type OpStream = Pin<Box<dyn Stream<Item = Result<Bytes, PachdError>> + Send>>;

/// How a call may be retried and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    /// Idempotent: retried on UNAVAILABLE, with a deadline.
    Read,
    /// Not idempotent: tried once, with a deadline.
    Write,
    /// Idempotent stream open: retried, no deadline.
    StreamRead,
    /// Stream that changes things: tried once, no deadline.
    StreamWrite,
}

/// A stop/start result for a pipeline whose call or wait failed.
fn failed_wait(pipeline: &Pipeline, state: String, error: &PachdError) -> PipelineWait {
    PipelineWait {
        name: pipeline.name.clone(),
        state,
        skipped: false,
        error: Some(crate::kind::chain_text(error)),
        error_kind: Some(error.kind()),
    }
}

impl CallKind {
    fn retries(self) -> bool {
        matches!(self, CallKind::Read | CallKind::StreamRead)
    }

    fn bounded(self) -> bool {
        matches!(self, CallKind::Read | CallKind::Write)
    }
}

/// Which way `stop_all` / `start_all` go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Stop,
    Start,
}

impl Direction {
    fn wanted(self) -> &'static [&'static str] {
        match self {
            Direction::Stop => &["paused"],
            Direction::Start => &["running", "standby"],
        }
    }
}

struct Inner {
    channel: Channel,
    address: PachdAddress,
    context: Option<String>,
    token: Option<AsciiMetadataValue>,
    /// The context's `active_transaction`, sent only with the calls pachctl runs inside it
    /// ([`PachdClient::transactional_request`]).
    transaction: Option<(String, AsciiMetadataValue)>,
    call_timeout: Duration,
    retries: u32,
    retry_delay: Duration,
    version: Version,
    cluster: ClusterInfo,
}

/// A connection to one pachd. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct PachdClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PachdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PachdClient")
            .field("address", &self.inner.address.qualified())
            .field("context", &self.inner.context)
            .field("version", &self.inner.version.to_string())
            .finish_non_exhaustive()
    }
}

fn metadata_value(what: &str, text: &str) -> Result<AsciiMetadataValue, PachdError> {
    MetadataValue::try_from(text)
        .map_err(|_| PachdError::Invalid(format!("use the {what}: it is not printable ASCII")))
}

/// A connector that opens every connection of the channel as a port-forward to the pachd
/// pod pachctl would pick (see [`config::PortForward`]): one pod, chosen once, and one
/// WebSocket per connection, closed with it.
async fn pod_connector(
    resolved: &ResolvedContext,
    forward: &config::PortForward,
    options: &ConnectOptions,
) -> Result<
    (
        impl tower::Service<
            http::Uri,
            Response = hyper_util::rt::TokioIo<crate::kube::ForwardedStream>,
            Error = crate::kube::KubeError,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
        String,
        crate::kube::PodReport,
    ),
    PachdError,
> {
    let failed = |cause| PachdError::PortForward {
        context: resolved.context.clone().unwrap_or_default(),
        cause: Box::new(cause),
    };
    let kube = crate::kube::KubeClient::connect(&crate::kube::ConnectOptions {
        preset_kubeconfig: options.kubeconfig.clone(),
        cluster: forward.cluster_name.clone(),
        user: forward.auth_info.clone(),
        ..crate::kube::ConnectOptions::default()
    })
    .await
    .map_err(failed)?;
    let pod = kube
        .pick_pod(&forward.namespace, "suite=pachyderm,app=pachd")
        .await
        .map_err(failed)?;
    tracing::debug!(
        pod,
        namespace = forward.namespace,
        "port-forwarding to pachd"
    );
    let target: Arc<(crate::kube::KubeClient, String, String, u16)> =
        Arc::new((kube, forward.namespace.clone(), pod.clone(), forward.port));
    let report = crate::kube::PodReport::default();
    let reports = report.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let target = target.clone();
        let report = reports.clone();
        async move {
            let (kube, namespace, pod, port) = &*target;
            let stream = kube.forward_port(namespace, pod, *port).await?;
            Ok(hyper_util::rt::TokioIo::new(stream.report_to(report)))
        }
    });
    Ok((connector, pod, report))
}

impl PachdClient {
    /// Resolves `options.target` and connects.
    pub async fn connect(options: ConnectOptions) -> Result<PachdClient, PachdError> {
        let resolved = config::resolve(
            &options.env,
            options.config_path.as_deref(),
            &options.target,
        )?;
        PachdClient::connect_resolved(resolved, &options).await
    }

    /// Connects to an already resolved context: opens the channel, asks GetVersion (refusing
    /// anything but pachd 1.x) and InspectCluster (refusing another cluster than the
    /// context's `cluster_deployment_id`, like pachctl).
    pub async fn connect_resolved(
        resolved: ResolvedContext,
        options: &ConnectOptions,
    ) -> Result<PachdClient, PachdError> {
        let address = resolved.address.clone();
        let mut qualified = address.qualified();
        let mut endpoint =
            Endpoint::from_shared(address.endpoint_uri()).map_err(|error| PachdError::Address {
                address: qualified.clone(),
                reason: error.to_string(),
            })?;
        endpoint = endpoint
            .connect_timeout(options.connect_timeout)
            // Fixed receive windows (not adaptive ones, measured): an extract's writer is
            // slower than loopback, so growing windows only parked ~34 MiB more of the stream
            // in HTTP/2 buffers (peak RSS 52 → 86 MiB) without making it faster.
            .tcp_nodelay(true);
        if address.transport == Transport::Tls {
            let mut tls = ClientTlsConfig::new().domain_name(address.host.clone());
            if resolved.ca_pems.is_empty() {
                tls = tls.with_native_roots();
            } else {
                // Only the configured CAs, as pachctl: the system roots are not added.
                for pem in &resolved.ca_pems {
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
            }
            endpoint = endpoint.tls_config(tls).map_err(|error| PachdError::Tls {
                address: qualified.clone(),
                reason: crate::kind::chain_text(&error),
            })?;
        }
        let mut pod_report = None;
        let connecting = match &resolved.port_forward {
            None => endpoint.connect().boxed(),
            Some(forward) => {
                let (connector, pod, report) = pod_connector(&resolved, forward, options).await?;
                pod_report = Some(report);
                qualified = format!(
                    "port {} of pod {pod} in namespace {} (a port-forward)",
                    forward.port, forward.namespace
                );
                endpoint.connect_with_connector(connector).boxed()
            }
        };
        let channel = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Err(_) => {
                return Err(PachdError::Unreachable {
                    address: qualified,
                    reason: format!(
                        "no connection within {}s",
                        options.connect_timeout.as_secs_f64()
                    ),
                });
            }
            Ok(Err(error)) => {
                return Err(PachdError::Unreachable {
                    address: qualified,
                    reason: crate::kind::chain_text(&error),
                });
            }
            Ok(Ok(channel)) => channel,
        };
        let token = options
            .token
            .clone()
            .filter(|token| !token.is_empty())
            .or(resolved.session_token.clone())
            .inspect(|token| crate::redact::register(token))
            .map(|token| metadata_value("session token", &token))
            .transpose()?;
        let transaction = resolved
            .active_transaction
            .as_deref()
            .map(|id| metadata_value("active transaction", id).map(|value| (id.to_owned(), value)))
            .transpose()?;
        let mut client = PachdClient {
            inner: Arc::new(Inner {
                channel,
                address: address.clone(),
                context: resolved.context.clone(),
                token,
                transaction,
                call_timeout: options.call_timeout,
                retries: options.retries,
                retry_delay: options.retry_delay,
                version: Version {
                    major: 0,
                    minor: 0,
                    micro: 0,
                    additional: String::new(),
                },
                cluster: ClusterInfo {
                    id: String::new(),
                    deployment_id: String::new(),
                },
            }),
        };
        let version = match client.get_version().await {
            Ok(version) => version,
            // The pod side refused the port (pachd not listening): say so, not "closed".
            Err(PachdError::Rpc { .. })
                if let Some(reason) = pod_report.as_ref().and_then(|report| {
                    report
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clone()
                }) =>
            {
                return Err(PachdError::Unreachable {
                    address: qualified,
                    reason,
                });
            }
            Err(PachdError::Rpc {
                code: tonic::Code::Unimplemented,
                ..
            }) => {
                return Err(PachdError::Unsupported {
                    address: qualified,
                    reason: "it does not implement /versionpb.API/GetVersion, so it is not \
                             pachd 1.x (pachd 2.x has a different API; ankus supports 1.7-1.13)"
                        .to_owned(),
                });
            }
            Err(error) => return Err(error),
        };
        if version.major != 1 {
            return Err(PachdError::Unsupported {
                address: qualified,
                reason: format!(
                    "pachd {version} is not supported: ankus speaks the pachd 1.x API \
                     (1.7-1.13); pachd {}.x has a different API",
                    version.major
                ),
            });
        }
        let cluster = client.inspect_cluster().await?;
        if let Some(expected) = &resolved.cluster_deployment_id
            && *expected != cluster.deployment_id
        {
            return Err(PachdError::WrongCluster {
                address: qualified,
                expected: expected.clone(),
                reported: cluster.deployment_id,
            });
        }
        let inner = Arc::get_mut(&mut client.inner)
            .expect("the client has not been shared before connect returns");
        inner.version = version;
        inner.cluster = cluster;
        Ok(client)
    }

    /// The address connected to, qualified (`grpc://host:port`).
    pub fn address(&self) -> String {
        self.inner.address.qualified()
    }

    /// The parsed address.
    pub fn pachd_address(&self) -> &PachdAddress {
        &self.inner.address
    }

    /// The pachctl context used, if any.
    pub fn context(&self) -> Option<&str> {
        self.inner.context.as_deref()
    }

    /// The server version seen when connecting.
    pub fn version(&self) -> &Version {
        &self.inner.version
    }

    /// The cluster seen when connecting.
    pub fn cluster_info(&self) -> &ClusterInfo {
        &self.inner.cluster
    }

    /// True when the connection is plaintext to another machine (callers warn).
    pub fn is_plaintext_remote(&self) -> bool {
        self.inner.address.is_plaintext_remote()
    }

    /// True when a session token is sent.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// The same connection sending `token` as `authn-token` instead of the context's (a
    /// restore sends the root token it generated).
    pub fn with_token(&self, token: &str) -> Result<PachdClient, PachdError> {
        crate::redact::register(token);
        let token = Some(metadata_value("session token", token)?);
        Ok(self.derived(token, self.inner.transaction.clone()))
    }

    /// The same connection with no active transaction: for procedures of ankus's own (the
    /// cleanup of a failed restore) that must never join one, whatever the context says.
    pub fn outside_transaction(&self) -> PachdClient {
        self.derived(self.inner.token.clone(), None)
    }

    fn derived(
        &self,
        token: Option<AsciiMetadataValue>,
        transaction: Option<(String, AsciiMetadataValue)>,
    ) -> PachdClient {
        let inner = &self.inner;
        PachdClient {
            inner: Arc::new(Inner {
                channel: inner.channel.clone(),
                address: inner.address.clone(),
                context: inner.context.clone(),
                token,
                transaction,
                call_timeout: inner.call_timeout,
                retries: inner.retries,
                retry_delay: inner.retry_delay,
                version: inner.version.clone(),
                cluster: inner.cluster.clone(),
            }),
        }
    }

    /// The context's active transaction (as `pachctl start transaction` left it), if any.
    pub fn active_transaction(&self) -> Option<&str> {
        self.inner.transaction.as_ref().map(|(id, _)| id.as_str())
    }

    fn decorate<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = &self.inner.token {
            request.metadata_mut().insert(TOKEN_KEY, token.clone());
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.decorate(&mut request);
        request.set_timeout(self.inner.call_timeout);
        request
    }

    /// A request for a call pachctl runs inside the active transaction (`create repo`,
    /// `update repo`, `delete repo`, `start`/`finish`/`delete commit`, `create`/`delete
    /// branch`): only these carry `pach-transaction`. Every other call (pipelines, extract,
    /// restore, reads) runs outside it, as with pachctl.
    fn transactional_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.request(message);
        if let Some((_, transaction)) = &self.inner.transaction {
            request
                .metadata_mut()
                .insert(TRANSACTION_KEY, transaction.clone());
        }
        request
    }

    fn stream_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.decorate(&mut request);
        request
    }

    fn pps(&self) -> pps::api_client::ApiClient<Channel> {
        pps::api_client::ApiClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn pfs(&self) -> pfs::api_client::ApiClient<Channel> {
        pfs::api_client::ApiClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn admin(&self) -> admin::api_client::ApiClient<Channel> {
        admin::api_client::ApiClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn auth(&self) -> auth::api_client::ApiClient<Channel> {
        auth::api_client::ApiClient::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn raw(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.inner.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Runs one RPC attempt factory under `kind`'s deadline and retry rules.
    async fn call<T, F, Fut>(
        &self,
        operation: &str,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<T, PachdError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut delay = self.inner.retry_delay;
        let mut retried = 0;
        tracing::debug!(operation, address = %self.inner.address.qualified(), "pachd call");
        loop {
            let outcome = if kind.bounded() {
                match tokio::time::timeout(self.inner.call_timeout, attempt()).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        return Err(PachdError::Timeout {
                            operation: operation.to_owned(),
                            after: self.inner.call_timeout,
                        });
                    }
                }
            } else {
                attempt().await
            };
            match outcome {
                Ok(response) => return Ok(response.into_inner()),
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && kind.retries()
                        && retried < self.inner.retries =>
                {
                    retried += 1;
                    tracing::debug!(
                        operation,
                        attempt = retried,
                        message = status.message(),
                        "pachd unavailable; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(status) => return Err(PachdError::from_status(operation, &status)),
            }
        }
    }

    /// Asks the server for its version now.
    pub async fn get_version(&self) -> Result<Version, PachdError> {
        self.call("get the pachd version", CallKind::Read, || {
            let mut api = versionpb::api_client::ApiClient::new(self.inner.channel.clone());
            let request = self.request(());
            async move { api.get_version(request).await }
        })
        .await
        .map(Version::from)
    }

    /// `admin.API/InspectCluster`.
    pub async fn inspect_cluster(&self) -> Result<ClusterInfo, PachdError> {
        self.call("inspect the cluster", CallKind::Read, || {
            let mut api = self.admin();
            let request = self.request(());
            async move { api.inspect_cluster(request).await }
        })
        .await
        .map(ClusterInfo::from)
    }

    /// Every pipeline (current versions), paused ones included.
    pub async fn list_pipelines(&self) -> Result<Vec<Pipeline>, PachdError> {
        let infos = self
            .call("list pipelines", CallKind::Read, || {
                let mut api = self.pps();
                let request = self.request(pps::ListPipelineRequest::default());
                async move { api.list_pipeline(request).await }
            })
            .await?;
        Ok(infos
            .pipeline_info
            .into_iter()
            .map(Pipeline::from)
            .collect())
    }

    /// One pipeline.
    pub async fn inspect_pipeline(&self, name: &str) -> Result<Pipeline, PachdError> {
        self.call(
            &format!("inspect pipeline {name:?}"),
            CallKind::Read,
            || {
                let mut api = self.pps();
                let request = self.request(pps::InspectPipelineRequest {
                    pipeline: Some(pps::Pipeline { name: name.into() }),
                });
                async move { api.inspect_pipeline(request).await }
            },
        )
        .await
        .map(Pipeline::from)
    }

    /// `StopPipeline`: sets `stopped` at once; the state becomes `paused` asynchronously.
    pub async fn stop_pipeline(&self, name: &str) -> Result<(), PachdError> {
        self.call(&format!("stop pipeline {name:?}"), CallKind::Write, || {
            let mut api = self.pps();
            let request = self.request(pps::StopPipelineRequest {
                pipeline: Some(pps::Pipeline { name: name.into() }),
            });
            async move { api.stop_pipeline(request).await }
        })
        .await
    }

    /// `StartPipeline`: clears `stopped`; the state returns to `running` asynchronously.
    pub async fn start_pipeline(&self, name: &str) -> Result<(), PachdError> {
        self.call(&format!("start pipeline {name:?}"), CallKind::Write, || {
            let mut api = self.pps();
            let request = self.request(pps::StartPipelineRequest {
                pipeline: Some(pps::Pipeline { name: name.into() }),
            });
            async move { api.start_pipeline(request).await }
        })
        .await
    }

    /// Polls InspectPipeline until the state is one of `wanted` or `timeout` passes, first
    /// at `poll / 8` (at least 10 ms), doubling up to `poll`.
    pub async fn wait_for_state(
        &self,
        name: &str,
        wanted: &[&str],
        timeout: Duration,
        poll: Duration,
    ) -> Result<Pipeline, PachdError> {
        let started = Instant::now();
        // A state flip usually lands within tens of milliseconds: look again soon, then back
        // off to `poll`, so a short flip does not cost a whole `poll` interval.
        let mut delay = (poll / 8).max(Duration::from_millis(10)).min(poll);
        loop {
            let pipeline = self.inspect_pipeline(name).await?;
            if wanted.contains(&pipeline.state.as_str()) {
                return Ok(pipeline);
            }
            if started.elapsed() >= timeout {
                return Err(PachdError::WaitTimeout {
                    pipeline: name.to_owned(),
                    wanted: wanted.join(" or "),
                    state: pipeline.state,
                    after: timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(poll);
        }
    }

    /// Stops every pipeline, `options.width` at a time, and waits until each reports
    /// `paused` (pipelines already stopped are not stopped again, only waited for). The
    /// result has one entry per pipeline in ListPipeline order; failures are in the entries.
    pub async fn stop_all(
        &self,
        options: &StopStartOptions,
    ) -> Result<Vec<PipelineWait>, PachdError> {
        let pipelines = options.select(self.list_pipelines().await?);
        Ok(self.change_all(pipelines, Direction::Stop, options).await)
    }

    /// Starts every stopped pipeline, `options.width` at a time, and waits until each reports
    /// `running` or `standby`. Pipelines that are not stopped are left alone (`skipped`).
    pub async fn start_all(
        &self,
        options: &StopStartOptions,
    ) -> Result<Vec<PipelineWait>, PachdError> {
        let pipelines = options.select(self.list_pipelines().await?);
        Ok(self.change_all(pipelines, Direction::Start, options).await)
    }

    async fn change_all(
        &self,
        pipelines: Vec<Pipeline>,
        direction: Direction,
        options: &StopStartOptions,
    ) -> Vec<PipelineWait> {
        // Every call goes out first, then the waits: a slot held by a pipeline whose state
        // has not flipped yet would otherwise keep the next calls from being sent.
        let width = options.width.max(1);
        let issued: Vec<Result<(Pipeline, bool), PipelineWait>> = futures::stream::iter(pipelines)
            .map(|pipeline| self.issue_change(pipeline, direction, options.hook.as_ref()))
            .buffered(width)
            .collect()
            .await;
        // One ListPipeline settles every pipeline that has already flipped (by then most
        // have): only the others are polled one by one.
        let settled: std::collections::HashMap<String, Pipeline> = if issued
            .iter()
            .any(Result::is_ok)
        {
            self.list_pipelines()
                .await
                .map(|listed| {
                    listed
                        .into_iter()
                        .filter(|pipeline| direction.wanted().contains(&pipeline.state.as_str()))
                        .map(|pipeline| (pipeline.name.clone(), pipeline))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let settled = &settled;
        futures::stream::iter(issued)
            .map(|issued| async move {
                match issued {
                    Ok((pipeline, already)) => match settled.get(&pipeline.name) {
                        Some(done) => PipelineWait {
                            name: done.name.clone(),
                            state: done.state.clone(),
                            skipped: already,
                            error: None,
                            error_kind: None,
                        },
                        None => {
                            self.await_change(pipeline, already, direction, options)
                                .await
                        }
                    },
                    Err(done) => done,
                }
            })
            .buffered(width)
            .collect()
            .await
    }

    /// Sends one stop or start unless the pipeline already is as wanted. `Ok` carries the
    /// pipeline to wait for and whether it already was stopped/started; `Err` is a final
    /// result (skipped, or the call failed).
    async fn issue_change(
        &self,
        pipeline: Pipeline,
        direction: Direction,
        hook: Option<&ChangeHook>,
    ) -> Result<(Pipeline, bool), PipelineWait> {
        let already = match direction {
            Direction::Stop => pipeline.stopped,
            Direction::Start => !pipeline.stopped,
        };
        if already
            && (direction == Direction::Start
                || direction.wanted().contains(&pipeline.state.as_str()))
        {
            return Err(PipelineWait {
                name: pipeline.name,
                state: pipeline.state,
                skipped: true,
                error: None,
                error_kind: None,
            });
        }
        let verb = match direction {
            Direction::Stop => "stop",
            Direction::Start => "start",
        };
        if !already && let Some(hook) = hook {
            (hook.0)(format!("{verb}:{}:before", pipeline.name)).await;
        }
        let outcome = self
            .issue_once_more_if_lost(&pipeline, direction, already)
            .await;
        if !already
            && outcome.is_ok()
            && let Some(hook) = hook
        {
            (hook.0)(format!("{verb}:{}:after", pipeline.name)).await;
        }
        outcome.map(|()| (pipeline, already))
    }

    /// Sends the stop or start (unless `already`), once more when pachd failed it transiently
    /// and it did not take effect.
    async fn issue_once_more_if_lost(
        &self,
        pipeline: &Pipeline,
        direction: Direction,
        already: bool,
    ) -> Result<(), PipelineWait> {
        if !already && let Err(error) = self.change_once(&pipeline.name, direction).await {
            // pachd 1.9.0 now and then fails a stop with an internal error ("database not
            // open": its hashtree cache closed a tree another request held). Stop and start
            // are idempotent: when the call did not take effect, it is made once more.
            if !matches!(
                error.kind(),
                Kind::Failed | Kind::Unavailable | Kind::Timeout
            ) {
                return Err(failed_wait(pipeline, pipeline.state.clone(), &error));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let took_effect = self
                .inspect_pipeline(&pipeline.name)
                .await
                .is_ok_and(|now| now.stopped == (direction == Direction::Stop));
            if !took_effect && let Err(error) = self.change_once(&pipeline.name, direction).await {
                return Err(failed_wait(pipeline, pipeline.state.clone(), &error));
            }
        }
        Ok(())
    }

    async fn change_once(&self, name: &str, direction: Direction) -> Result<(), PachdError> {
        match direction {
            Direction::Stop => self.stop_pipeline(name).await,
            Direction::Start => self.start_pipeline(name).await,
        }
    }

    async fn await_change(
        &self,
        pipeline: Pipeline,
        already: bool,
        direction: Direction,
        options: &StopStartOptions,
    ) -> PipelineWait {
        match self
            .wait_for_state(
                &pipeline.name,
                direction.wanted(),
                options.timeout,
                options.poll,
            )
            .await
        {
            Ok(done) => PipelineWait {
                name: done.name,
                state: done.state,
                skipped: already,
                error: None,
                error_kind: None,
            },
            Err(error) => {
                let state = match &error {
                    PachdError::WaitTimeout { state, .. } => state.clone(),
                    _ => pipeline.state.clone(),
                };
                failed_wait(&pipeline, state, &error)
            }
        }
    }

    /// Every repo (pachd hides `__spec__`).
    pub async fn list_repos(&self) -> Result<Vec<Repo>, PachdError> {
        let response = self
            .call("list repos", CallKind::Read, || {
                let mut api = self.pfs();
                let request = self.request(pfs::ListRepoRequest::default());
                async move { api.list_repo(request).await }
            })
            .await?;
        Ok(response.repo_info.into_iter().map(Repo::from).collect())
    }

    /// One repo.
    pub async fn inspect_repo(&self, name: &str) -> Result<Repo, PachdError> {
        self.call(&format!("inspect repo {name:?}"), CallKind::Read, || {
            let mut api = self.pfs();
            let request = self.request(pfs::InspectRepoRequest {
                repo: Some(repo(name)),
            });
            async move { api.inspect_repo(request).await }
        })
        .await
        .map(Repo::from)
    }

    /// A repo's branches.
    pub async fn list_branches(&self, repo_name: &str) -> Result<Vec<Branch>, PachdError> {
        let response = self
            .call(
                &format!("list branches of repo {repo_name:?}"),
                CallKind::Read,
                || {
                    let mut api = self.pfs();
                    let request = self.request(pfs::ListBranchRequest {
                        repo: Some(repo(repo_name)),
                        reverse: false,
                    });
                    async move { api.list_branch(request).await }
                },
            )
            .await?;
        Ok(response.branch_info.into_iter().map(Branch::from).collect())
    }

    /// A repo's commits, newest first: all of them, or those reachable from `branch`;
    /// at most `number` (0 = no limit).
    pub async fn list_commits(
        &self,
        repo_name: &str,
        branch: Option<&str>,
        number: u64,
    ) -> Result<Vec<Commit>, PachdError> {
        let response = self
            .call(
                &format!("list commits of repo {repo_name:?}"),
                CallKind::Read,
                || {
                    let mut api = self.pfs();
                    let request = self.request(pfs::ListCommitRequest {
                        repo: Some(repo(repo_name)),
                        from: None,
                        to: branch.map(|branch| commit(repo_name, branch)),
                        number,
                        reverse: false,
                    });
                    async move { api.list_commit(request).await }
                },
            )
            .await?;
        Ok(response.commit_info.into_iter().map(Commit::from).collect())
    }

    /// One commit, by ID, branch or ancestry expression (`master^`).
    pub async fn inspect_commit(&self, repo_name: &str, id: &str) -> Result<Commit, PachdError> {
        self.call(
            &format!("inspect commit {repo_name}@{id}"),
            CallKind::Read,
            || {
                let mut api = self.pfs();
                let request = self.request(pfs::InspectCommitRequest {
                    commit: Some(commit(repo_name, id)),
                    block_state: 0,
                });
                async move { api.inspect_commit(request).await }
            },
        )
        .await
        .map(Commit::from)
    }

    /// The head commit of every branch of every repo, keyed `repo@branch` (branches without
    /// a head are left out).
    pub async fn heads(&self) -> Result<BTreeMap<String, String>, PachdError> {
        let repos = self.list_repos().await?;
        let branch_lists: Vec<Result<Vec<Branch>, PachdError>> = futures::stream::iter(&repos)
            .map(|repo| self.list_branches(&repo.name))
            .buffered(8)
            .collect()
            .await;
        let mut heads = BTreeMap::new();
        for branches in branch_lists {
            for branch in branches? {
                if let Some(head) = branch.head {
                    heads.insert(format!("{}@{}", branch.repo, branch.name), head);
                }
            }
        }
        Ok(heads)
    }

    /// `CreateRepo` (fails with already_exists when it does), inside the active transaction
    /// when there is one: then it returns that transaction's ID, and the repo appears only
    /// when the transaction is finished.
    pub async fn create_repo(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Option<String>, PachdError> {
        self.call(&format!("create repo {name:?}"), CallKind::Write, || {
            let mut api = self.pfs();
            let request = self.transactional_request(pfs::CreateRepoRequest {
                repo: Some(repo(name)),
                description: description.into(),
                update: false,
            });
            async move { api.create_repo(request).await }
        })
        .await?;
        Ok(self.active_transaction().map(str::to_owned))
    }

    /// `DeleteRepo`; `force` deletes even when other repos depend on it. Inside the active
    /// transaction when there is one (its ID is returned), as [`PachdClient::create_repo`].
    pub async fn delete_repo(&self, name: &str, force: bool) -> Result<Option<String>, PachdError> {
        self.call(&format!("delete repo {name:?}"), CallKind::Write, || {
            let mut api = self.pfs();
            let request = self.transactional_request(pfs::DeleteRepoRequest {
                repo: Some(repo(name)),
                force,
                all: false,
                split_transaction: false,
            });
            async move { api.delete_repo(request).await }
        })
        .await?;
        Ok(self.active_transaction().map(str::to_owned))
    }

    /// `DeletePipeline` (its output repo goes too, as pachctl's default); `force` deletes it
    /// even when pachd would refuse.
    pub async fn delete_pipeline(&self, name: &str, force: bool) -> Result<(), PachdError> {
        self.call(
            &format!("delete pipeline {name:?}"),
            CallKind::Write,
            || {
                let mut api = self.pps();
                let request = self.request(pps::DeletePipelineRequest {
                    pipeline: Some(pps::Pipeline { name: name.into() }),
                    force,
                    ..Default::default()
                });
                async move { api.delete_pipeline(request).await }
            },
        )
        .await
    }

    /// Writes `data` to `path` on `branch`, replacing the file (pachd commits it), through
    /// the client-streaming PutFile in chunks of at most 2 MiB.
    pub async fn put_file(
        &self,
        repo_name: &str,
        branch: &str,
        path: &str,
        data: Bytes,
    ) -> Result<(), PachdError> {
        let operation = format!("put file {repo_name}@{branch}:{path}");
        let mut messages = Vec::with_capacity(data.len() / PUT_FILE_CHUNK + 1);
        let mut offset = 0;
        loop {
            let end = (offset + PUT_FILE_CHUNK).min(data.len());
            let value = data.slice(offset..end).to_vec();
            if offset == 0 {
                messages.push(pfs::PutFileRequest {
                    file: Some(pfs::File {
                        commit: Some(commit(repo_name, branch)),
                        path: path.into(),
                    }),
                    value,
                    overwrite_index: Some(pfs::OverwriteIndex { index: 0 }),
                    ..pfs::PutFileRequest::default()
                });
            } else {
                messages.push(pfs::PutFileRequest {
                    value,
                    ..pfs::PutFileRequest::default()
                });
            }
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        self.call(&operation, CallKind::Write, || {
            let mut api = self.pfs();
            let request = self.request(tokio_stream::iter(messages.clone()));
            async move { api.put_file(request).await }
        })
        .await
    }

    /// Reads a whole file (by commit ID or branch), failing when it exceeds `limit` bytes.
    pub async fn get_file(
        &self,
        repo_name: &str,
        commit_id: &str,
        path: &str,
        limit: u64,
    ) -> Result<Bytes, PachdError> {
        let operation = format!("get file {repo_name}@{commit_id}:{path}");
        let collect = async {
            let mut stream = self
                .call(&operation, CallKind::Read, || {
                    let mut api = self.pfs();
                    let request = self.request(pfs::GetFileRequest {
                        file: Some(pfs::File {
                            commit: Some(commit(repo_name, commit_id)),
                            path: path.into(),
                        }),
                        offset_bytes: 0,
                        size_bytes: 0,
                    });
                    async move { api.get_file(request).await }
                })
                .await?;
            let mut content = bytes::BytesMut::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|status| PachdError::from_status(&operation, &status))?;
                if (content.len() + chunk.len()) as u64 > limit {
                    return Err(PachdError::TooLarge {
                        path: format!("{repo_name}@{commit_id}:{path}"),
                        limit,
                    });
                }
                content.extend_from_slice(&chunk);
            }
            Ok(content.freeze())
        };
        match tokio::time::timeout(self.inner.call_timeout, collect).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PachdError::Timeout {
                operation,
                after: self.inner.call_timeout,
            }),
        }
    }

    /// The entries of a directory (or the file itself) at `path` in a commit or branch.
    pub async fn list_file(
        &self,
        repo_name: &str,
        commit_id: &str,
        path: &str,
    ) -> Result<Vec<FileInfo>, PachdError> {
        let response = self
            .call(
                &format!("list files {repo_name}@{commit_id}:{path}"),
                CallKind::Read,
                || {
                    let mut api = self.pfs();
                    let request = self.request(pfs::ListFileRequest {
                        file: Some(pfs::File {
                            commit: Some(commit(repo_name, commit_id)),
                            path: path.into(),
                        }),
                        full: false,
                        history: 0,
                    });
                    async move { api.list_file(request).await }
                },
            )
            .await?;
        Ok(response.file_info.into_iter().map(FileInfo::from).collect())
    }

    /// `auth.API/WhoAmI` (fails with "the auth service is not activated" when auth is off).
    pub async fn whoami(&self) -> Result<WhoAmI, PachdError> {
        self.call("ask who am I", CallKind::Read, || {
            let mut api = self.auth();
            let request = self.request(auth::WhoAmIRequest {});
            async move { api.who_am_i(request).await }
        })
        .await
        .map(WhoAmI::from)
    }

    /// Whether auth is active, decided as pachctl does: GetAdmins *without* a token; "not
    /// signed in" means active, "not activated" means inactive.
    pub async fn is_auth_active(&self) -> Result<bool, PachdError> {
        let outcome = self
            .call("check whether auth is active", CallKind::Read, || {
                let mut api = self.auth();
                let mut request = tonic::Request::new(auth::GetAdminsRequest {});
                request.set_timeout(self.inner.call_timeout);
                async move { api.get_admins(request).await }
            })
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(error) if error.is_auth_not_activated() => Ok(false),
            Err(error) if error.is_not_signed_in() => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// A repo's ACL (entries and robot entries together).
    pub async fn get_acl(&self, repo_name: &str) -> Result<Vec<AclEntry>, PachdError> {
        let response = self
            .call(
                &format!("get the ACL of repo {repo_name:?}"),
                CallKind::Read,
                || {
                    let mut api = self.auth();
                    let request = self.request(auth::GetAclRequest {
                        repo: repo_name.into(),
                    });
                    async move { api.get_acl(request).await }
                },
            )
            .await?;
        Ok(response
            .entries
            .into_iter()
            .chain(response.robot_entries)
            .map(AclEntry::from)
            .collect())
    }

    /// Cluster role bindings (1.11+): principal → lowercase roles.
    pub async fn cluster_role_bindings(&self) -> Result<BTreeMap<String, Vec<String>>, PachdError> {
        let response = self
            .call("get cluster role bindings", CallKind::Read, || {
                let mut api = self.auth();
                let request = self.request(auth::GetClusterRoleBindingsRequest {});
                async move { api.get_cluster_role_bindings(request).await }
            })
            .await?;
        Ok(response
            .bindings
            .into_iter()
            .map(|(principal, roles)| {
                (
                    principal,
                    roles.roles.into_iter().map(cluster_role_name).collect(),
                )
            })
            .collect())
    }

    /// `admin.API/Extract`: the serialized `admin.Op` of every message, byte for byte, with
    /// no deadline. Dropping the stream cancels the RPC. Errors opening the stream (e.g. "not
    /// authorized") are returned here; later ones arrive as stream items.
    pub async fn extract(&self, flags: &ExtractFlags) -> Result<OpStream, PachdError> {
        self.extract_request(admin::ExtractRequest {
            url: String::new(),
            no_objects: flags.no_objects,
            no_repos: flags.no_repos,
            no_pipelines: flags.no_pipelines,
            no_enterprise: flags.no_enterprise,
            no_auth: flags.no_auth,
        })
        .await
    }

    async fn extract_request(
        &self,
        message: admin::ExtractRequest,
    ) -> Result<OpStream, PachdError> {
        let body = Bytes::from(message.encode_to_vec());
        let streaming = self
            .call("extract", CallKind::StreamRead, || {
                let mut grpc = self.raw();
                let request = self.stream_request(body.clone());
                async move {
                    grpc.ready().await.map_err(|error| {
                        tonic::Status::unavailable(format!("pachd is not ready: {error}"))
                    })?;
                    grpc.server_streaming(
                        request,
                        http::uri::PathAndQuery::from_static("/admin.API/Extract"),
                        RawCodec,
                    )
                    .await
                }
            })
            .await?;
        Ok(Box::pin(streaming.map(|item| {
            item.map_err(|status| PachdError::from_status("extract", &status))
        })))
    }

    /// Extract with `ExtractRequest.URL` set: pachd writes the dump to object storage itself
    /// and streams nothing back; any message is an error, as in pachctl.
    pub async fn extract_to_url(&self, url: &str, flags: &ExtractFlags) -> Result<(), PachdError> {
        let mut stream = self
            .extract_request(admin::ExtractRequest {
                url: url.into(),
                no_objects: flags.no_objects,
                no_repos: flags.no_repos,
                no_pipelines: flags.no_pipelines,
                no_enterprise: flags.no_enterprise,
                no_auth: flags.no_auth,
            })
            .await?;
        match stream.next().await {
            None => Ok(()),
            Some(Err(error)) => Err(error),
            Some(Ok(_)) => Err(PachdError::Protocol {
                operation: format!("extract to {url}"),
                reason: "unexpected response from extract".to_owned(),
            }),
        }
    }

    /// `admin.API/ExtractPipeline`: the serialized `admin.Op` (of the server's own version).
    pub async fn extract_pipeline(&self, name: &str) -> Result<Bytes, PachdError> {
        let body = Bytes::from(
            admin::ExtractPipelineRequest {
                pipeline: Some(pps::Pipeline { name: name.into() }),
            }
            .encode_to_vec(),
        );
        self.call(
            &format!("extract pipeline {name:?}"),
            CallKind::Read,
            || {
                let mut grpc = self.raw();
                let request = self.request(body.clone());
                async move {
                    grpc.ready().await.map_err(|error| {
                        tonic::Status::unavailable(format!("pachd is not ready: {error}"))
                    })?;
                    grpc.unary(
                        request,
                        http::uri::PathAndQuery::from_static("/admin.API/ExtractPipeline"),
                        RawCodec,
                    )
                    .await
                }
            },
        )
        .await
    }

    /// `admin.API/Restore`: sends one `RestoreRequest{op}` per item, the op bytes unchanged,
    /// with no deadline; dropping the future cancels it. If `ops` yields an error, the request
    /// stream is reset (pachd sees a broken stream, never a finished restore) and that error
    /// is returned.
    pub async fn restore<S, E>(&self, ops: S) -> Result<(), PachdError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.restore_in_mode(ops, None).await
    }

    /// [`PachdClient::restore`], asking for a restore mode with the `ankus-restore-mode`
    /// header (`strict`: the sandbox validates the whole stream before applying anything).
    /// A real pachd ignores the header.
    pub async fn restore_in_mode<S, E>(&self, ops: S, mode: Option<&str>) -> Result<(), PachdError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let seen = failure.clone();
        let outgoing = ops.map(move |item| match item {
            Ok(op) => Ok(op),
            Err(error) => {
                let reason = error.to_string();
                if let Ok(mut slot) = seen.lock() {
                    slot.get_or_insert(reason.clone());
                }
                Err(reason)
            }
        });
        let mut grpc = self.raw();
        let mut request = self.stream_request(outgoing);
        if let Some(mode) = mode {
            request
                .metadata_mut()
                .insert("ankus-restore-mode", metadata_value("restore mode", mode)?);
        }
        let outcome = async move {
            grpc.ready().await.map_err(|error| {
                tonic::Status::unavailable(format!("pachd is not ready: {error}"))
            })?;
            grpc.client_streaming(
                request,
                http::uri::PathAndQuery::from_static("/admin.API/Restore"),
                AbortableCodec,
            )
            .await
        }
        .await;
        let source_failure = failure.lock().ok().and_then(|mut slot| slot.take());
        match (source_failure, outcome) {
            (Some(reason), _) => Err(PachdError::RestoreSource { reason }),
            (None, Ok(_)) => Ok(()),
            (None, Err(status)) => Err(PachdError::from_status("restore", &status)),
        }
    }

    /// Restore from an object pachd reads itself: a single `RestoreRequest{URL}`.
    pub async fn restore_from_url(&self, url: &str) -> Result<(), PachdError> {
        let message = admin::RestoreRequest {
            op: None,
            url: url.into(),
        };
        self.call(
            &format!("restore from {url}"),
            CallKind::StreamWrite,
            || {
                let mut api = self.admin();
                let request = self.stream_request(tokio_stream::iter(vec![message.clone()]));
                async move { api.restore(request).await }
            },
        )
        .await
    }
}

fn repo(name: &str) -> pfs::Repo {
    pfs::Repo { name: name.into() }
}

fn commit(repo_name: &str, id: &str) -> pfs::Commit {
    pfs::Commit {
        repo: Some(repo(repo_name)),
        id: id.into(),
    }
}
