//! A Kubernetes client over kube-rs for any resource kind, found by name through discovery.
//! Objects stay raw JSON (`serde_json::Value`) so nothing the server sent is lost or reordered.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::config;
use super::error::KubeError;

/// How many times a write is retried after a 409 Conflict on a fresh read.
const CONFLICT_ATTEMPTS: u32 = 5;

/// How long one request may take when the connection sets no other limit.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times in all a request is sent when its failures are transient.
const TRANSIENT_ATTEMPTS: u32 = 4;

/// The wait before the first resend; it doubles after each, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Where to connect.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Context name; the kubeconfig's current context when absent.
    pub context: Option<String>,
    /// Namespace; the context's, else `default`, when absent.
    pub namespace: Option<String>,
    /// Kubeconfig path given by the caller; wins over everything.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig path preset by the host (the sandbox); before `KUBECONFIG`.
    pub preset_kubeconfig: Option<PathBuf>,
    /// A kubeconfig cluster to use instead of the context's (a pachctl context's
    /// `cluster_name`, as pachctl's port-forward overrides it).
    pub cluster: Option<String>,
    /// A kubeconfig user to use instead of the context's (a pachctl context's `auth_info`).
    pub user: Option<String>,
    /// How long one request may take ([`DEFAULT_REQUEST_TIMEOUT`] when absent). Watches are
    /// bounded by their own timeout instead.
    pub timeout: Option<Duration>,
}

/// How requests are bounded in time and resent after transient failures.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RetryPolicy {
    /// The limit for one attempt.
    timeout: Duration,
    /// How many attempts in all.
    attempts: u32,
    /// The wait before the first resend.
    first_backoff: Duration,
}

impl RetryPolicy {
    fn with_timeout(timeout: Duration) -> RetryPolicy {
        RetryPolicy {
            timeout,
            attempts: TRANSIENT_ATTEMPTS,
            first_backoff: FIRST_BACKOFF,
        }
    }
}

/// Why one attempt of a request failed.
#[derive(Debug)]
enum AttemptError {
    /// No complete answer within the policy's timeout; the request was abandoned (its
    /// connection closed).
    TimedOut,
    /// The client library's error.
    Kube(kube::Error),
}

/// What a failed attempt tells about the server having acted on the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The server certainly did not act: 429 Too Many Requests, or no connection at all.
    NotActedOn,
    /// It may have: no answer in time, the connection broke off, or a 5xx.
    Unknown,
    /// A definite answer that sending again would not change.
    Final,
}

impl AttemptError {
    fn failure(&self) -> Failure {
        match self {
            AttemptError::TimedOut => Failure::Unknown,
            AttemptError::Kube(kube::Error::Api(status)) => match status.code {
                429 => Failure::NotActedOn,
                500..=599 => Failure::Unknown,
                _ => Failure::Final,
            },
            AttemptError::Kube(error @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                if connection_refused(error) {
                    Failure::NotActedOn
                } else {
                    Failure::Unknown
                }
            }
            AttemptError::Kube(_) => Failure::Final,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, AttemptError::Kube(kube::Error::Api(status)) if status.code == 404)
    }
}

/// Whether the connection was refused, so the request never reached a server.
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Whether a request may be sent again when an earlier attempt may have taken effect.
/// Reads are safe; so are the writes this client sends with PUT and PATCH, because each
/// either carries a resourceVersion precondition (a second copy meets 409 and the caller
/// re-reads) or is a server-side apply (the same result however often it lands); and a
/// DELETE, whose second copy finds the object gone. A PUT without a precondition could undo
/// someone else's change made in between, and a POST (create) that did land would fail again
/// with AlreadyExists, or with `generateName` make a second object: both are resent only
/// after failures that prove the server never acted.
fn resend_is_safe(method: &http::Method, body: &[u8]) -> bool {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::PATCH | http::Method::DELETE => true,
        http::Method::PUT => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|object| resource_version(&object))
            .is_some_and(|version| !version.is_empty()),
        _ => false,
    }
}

/// The Status a DELETE answers with, for a resend that found the object already gone.
fn deleted_status() -> String {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }).to_string()
}

/// Sends a request through `attempt` until it succeeds, fails for good, or the policy's
/// attempts run out. Returns the body, or the last failure and how many attempts were made.
async fn send_retrying<F, Fut>(
    policy: &RetryPolicy,
    method: &http::Method,
    body: &[u8],
    mut attempt: F,
) -> Result<String, (AttemptError, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, kube::Error>>,
{
    let resend_safe = resend_is_safe(method, body);
    let mut backoff = policy.first_backoff;
    let mut outcome_unknown = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match tokio::time::timeout(policy.timeout, attempt()).await {
            Ok(Ok(text)) => return Ok(text),
            Ok(Err(error)) => AttemptError::Kube(error),
            Err(_) => AttemptError::TimedOut,
        };
        // The earlier copy whose answer was lost did the deleting.
        if *method == http::Method::DELETE && outcome_unknown && error.is_not_found() {
            return Ok(deleted_status());
        }
        let failure = error.failure();
        let resend = match failure {
            Failure::NotActedOn => true,
            Failure::Unknown => resend_safe,
            Failure::Final => false,
        };
        if !resend || attempts >= policy.attempts {
            return Err((error, attempts));
        }
        outcome_unknown |= failure == Failure::Unknown;
        let jitter = rand::random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// The error a request ends with after its last attempt, naming the action and the server.
fn final_error(
    error: AttemptError,
    attempts: u32,
    action: &str,
    server: &str,
    timeout: Duration,
) -> KubeError {
    let error = match error {
        AttemptError::TimedOut => KubeError::RequestTimeout {
            action: action.to_owned(),
            server: server.to_owned(),
            seconds: timeout.as_secs_f64(),
            attempts: super::error::Attempts(1),
        },
        AttemptError::Kube(error) => KubeError::from_kube(error, action, server),
    };
    error.after_attempts(attempts)
}

/// A copy of a request, to send it again.
fn copy_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// One resource type the server serves, from discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects are namespaced.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Subresources served (`scale`, `status`, `log`).
    pub subresources: Vec<String>,
}

impl ResourceInfo {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services` or `deployments.apps`, as kubectl names types.
    pub fn label(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn collection_path(&self, namespace: &str) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced {
            format!("{base}/namespaces/{namespace}/{}", self.plural)
        } else {
            format!("{base}/{}", self.plural)
        }
    }

    fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// How a patch document is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// RFC 6902 JSON patch.
    Json,
}

impl PatchType {
    /// Parses `merge`, `strategic` or `json`.
    pub fn parse(text: &str) -> Result<PatchType, KubeError> {
        match text {
            "merge" => Ok(PatchType::Merge),
            "strategic" | "strategic-merge" => Ok(PatchType::Strategic),
            "json" => Ok(PatchType::Json),
            other => Err(KubeError::Invalid(format!(
                "use patch type '{other}': expected merge, strategic or json"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }

    /// The name used in plans and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchType::Merge => "merge",
            PatchType::Strategic => "strategic",
            PatchType::Json => "json",
        }
    }
}

/// Filters for `list` and `watch`.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// A namespace other than the client's.
    pub namespace: Option<String>,
    /// Every namespace.
    pub all_namespaces: bool,
}

/// An object before and after a change (or a dry-run of it).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The object before; `None` when it did not exist.
    pub before: Option<Value>,
    /// The object after, as the server returned it.
    pub after: Value,
}

/// One event of a watch.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchItem {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: String,
    /// The object.
    pub object: Value,
}

/// A connection to one cluster, in one context and default namespace.
#[derive(Clone)]
pub struct KubeClient {
    pub(super) client: kube::Client,
    context: Arc<str>,
    namespace: Arc<str>,
    server: Arc<str>,
    retry: RetryPolicy,
    resources: Arc<tokio::sync::OnceCell<Vec<ResourceInfo>>>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .field("server", &self.server)
            .field("timeout", &self.retry.timeout)
            .finish()
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn build_request(
    method: http::Method,
    path: &str,
    query: &[(&str, String)],
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<http::Request<Vec<u8>>, KubeError> {
    let mut uri = path.to_owned();
    if !query.is_empty() {
        uri.push('?');
        let pairs: Vec<String> = query
            .iter()
            .map(|(key, value)| format!("{key}={}", encode(value)))
            .collect();
        uri.push_str(&pairs.join("&"));
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    builder
        .body(body)
        .map_err(|error| KubeError::Invalid(format!("build request for {path}: {error}")))
}

fn resource_version(object: &Value) -> Option<String> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
}

/// Adds a resourceVersion precondition to a patch, unless the caller set one.
fn with_precondition(
    patch_type: PatchType,
    patch: &Value,
    version: &str,
) -> Result<(Value, bool), KubeError> {
    match patch_type {
        PatchType::Json => {
            let Value::Array(operations) = patch else {
                return Err(KubeError::Invalid(
                    "read JSON patch: it must be an array of operations".to_owned(),
                ));
            };
            let pinned = operations
                .iter()
                .any(|operation| operation["path"] == "/metadata/resourceVersion");
            if pinned {
                return Ok((patch.clone(), true));
            }
            let mut operations = operations.clone();
            operations.push(
                json!({ "op": "replace", "path": "/metadata/resourceVersion", "value": version }),
            );
            Ok((Value::Array(operations), false))
        }
        PatchType::Merge | PatchType::Strategic => {
            if !patch.is_object() {
                return Err(KubeError::Invalid(format!(
                    "read {} patch: it must be a map",
                    patch_type.as_str()
                )));
            }
            if patch["metadata"]["resourceVersion"].is_string() {
                return Ok((patch.clone(), true));
            }
            let mut pinned = patch.clone();
            pinned["metadata"]["resourceVersion"] = version.into();
            Ok((pinned, false))
        }
    }
}

impl KubeClient {
    /// Connects using a kubeconfig (explicit path, host preset, the files `KUBECONFIG` lists,
    /// merged, or `~/.kube/config`) or the in-cluster configuration, and checks the server
    /// answers.
    pub async fn connect(options: &ConnectOptions) -> Result<KubeClient, KubeError> {
        crate::host::runtime::install_crypto_provider();
        let loaded = config::load(
            options.kubeconfig.as_deref(),
            options.preset_kubeconfig.as_deref(),
        )?;
        let (mut client_config, context, context_namespace, proxy_url) = match loaded {
            Some(config::Loaded { kubeconfig, source }) => {
                let context =
                    match &options.context {
                        Some(context) => context.clone(),
                        None => kubeconfig.current_context.clone().ok_or_else(|| {
                            KubeError::Config {
                            path: source.clone(),
                            message:
                                "it sets no current-context; name one with #{ context: \"...\" }"
                                    .to_owned(),
                        }
                        })?,
                    };
                let known = config::contexts(&kubeconfig);
                if !known.contains(&context) {
                    return Err(KubeError::NoContext {
                        context,
                        path: source,
                        known: known.join(", "),
                    });
                }
                let namespace = config::context_namespace(&kubeconfig, &context);
                let proxy_url = config::context_proxy_url(&kubeconfig, &context);
                let kube_options = kube::config::KubeConfigOptions {
                    context: Some(context.clone()),
                    cluster: options.cluster.clone(),
                    user: options.user.clone(),
                };
                let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube_options)
                    .await
                    .map_err(|error| KubeError::Config {
                        path: source.clone(),
                        message: crate::kind::chain_text(&error),
                    })?;
                (client_config, context, namespace, proxy_url)
            }
            None => {
                let client_config =
                    kube::Config::incluster().map_err(|error| KubeError::Config {
                        path: "(none: no KUBECONFIG, no ~/.kube/config, not in a cluster)"
                            .to_owned(),
                        message: crate::kind::chain_text(&error),
                    })?;
                config::register_token_file(Path::new(config::SERVICE_ACCOUNT_TOKEN));
                let namespace = client_config.default_namespace.clone();
                (
                    client_config,
                    "in-cluster".to_owned(),
                    Some(namespace),
                    None,
                )
            }
        };
        // kube-rs reads `HTTPS_PROXY` alone and matches `NO_PROXY` against the proxy's own
        // address; kubectl's choice is made here instead.
        client_config.proxy_url =
            config::proxy_for(&client_config.cluster_url, proxy_url.as_deref(), &|name| {
                std::env::var(name).ok()
            })?;
        let namespace = options
            .namespace
            .clone()
            .or(context_namespace)
            .unwrap_or_else(|| "default".to_owned());
        client_config.default_namespace = namespace.clone();
        client_config.connect_timeout = Some(Duration::from_secs(10));
        // One retry policy: ours (`send_retrying`), which knows which writes are safe to send
        // again and counts the attempts it reports. kube-rs's own layer would resend 429, 503
        // and 504 up to 15 times inside each of our attempts, unseen.
        client_config.default_retry = false;
        let server = client_config.cluster_url.to_string();
        let client = build_client(client_config, &server)?;
        let connected = KubeClient {
            client,
            context: context.into(),
            namespace: namespace.into(),
            server: server.trim_end_matches('/').into(),
            retry: RetryPolicy::with_timeout(options.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)),
            resources: Arc::new(tokio::sync::OnceCell::new()),
        };
        connected.version().await?;
        Ok(connected)
    }

    /// The context connected through.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The default namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A client for the same cluster with another default namespace.
    pub fn with_namespace(&self, namespace: &str) -> KubeClient {
        KubeClient {
            namespace: namespace.into(),
            ..self.clone()
        }
    }

    /// Sends one (non-watch) request under the connection's time limit, resending it after
    /// transient failures when that is safe (see [`resend_is_safe`]), and returns the body.
    async fn send(
        &self,
        action: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<String, KubeError> {
        let sent = send_retrying(&self.retry, request.method(), request.body(), || {
            let client = self.client.clone();
            let request = copy_request(&request);
            async move { client.request_text(request).await }
        })
        .await;
        sent.map_err(|(error, attempts)| {
            final_error(error, attempts, action, &self.server, self.retry.timeout)
        })
    }

    async fn call(
        &self,
        action: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<Value, KubeError> {
        let text = self.send(action, request).await?;
        serde_json::from_str(&text).map_err(|error| KubeError::Other {
            action: action.to_owned(),
            message: format!("the answer from {} is not JSON: {error}", self.server),
        })
    }

    /// The server's `gitVersion`, e.g. `v1.29.0`.
    pub async fn version(&self) -> Result<String, KubeError> {
        let request = build_request(http::Method::GET, "/version", &[], None, Vec::new())?;
        let info = self.call("read the server version", request).await?;
        Ok(info["gitVersion"].as_str().unwrap_or("unknown").to_owned())
    }

    async fn discover(&self) -> Result<Vec<ResourceInfo>, KubeError> {
        let mut found = Vec::new();
        let mut group_versions = vec![(String::new(), "/api/v1".to_owned(), "v1".to_owned())];
        let request = build_request(http::Method::GET, "/apis", &[], None, Vec::new())?;
        let groups = self.call("discover API groups", request).await?;
        for group in groups["groups"].as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or("").to_owned();
            let version = group["preferredVersion"]["version"]
                .as_str()
                .or_else(|| group["versions"][0]["version"].as_str())
                .unwrap_or("v1")
                .to_owned();
            group_versions.push((name.clone(), format!("/apis/{name}/{version}"), version));
        }
        for (group, path, version) in group_versions {
            let request = build_request(http::Method::GET, &path, &[], None, Vec::new())?;
            let list = self.call(&format!("discover {path}"), request).await?;
            let entries = list["resources"].as_array().cloned().unwrap_or_default();
            for entry in &entries {
                let name = entry["name"].as_str().unwrap_or("");
                if name.contains('/') {
                    continue;
                }
                let subresources = entries
                    .iter()
                    .filter_map(|other| {
                        other["name"]
                            .as_str()?
                            .strip_prefix(&format!("{name}/"))
                            .map(str::to_owned)
                    })
                    .collect();
                found.push(ResourceInfo {
                    group: group.clone(),
                    version: version.clone(),
                    plural: name.to_owned(),
                    singular: entry["singularName"].as_str().unwrap_or("").to_owned(),
                    kind: entry["kind"].as_str().unwrap_or("").to_owned(),
                    namespaced: entry["namespaced"].as_bool().unwrap_or(true),
                    short_names: entry["shortNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|short| short.as_str().map(str::to_owned))
                        .collect(),
                    subresources,
                });
            }
        }
        Ok(found)
    }

    /// Finds a resource type by kind, plural, singular or short name (`svc`), by
    /// `plural.group` (`deployments.apps`), or by `apiVersion/Kind` (`apps/v1/Deployment`).
    pub async fn resolve(&self, kind: &str) -> Result<ResourceInfo, KubeError> {
        let resources = self.resources.get_or_try_init(|| self.discover()).await?;
        let unknown = || KubeError::UnknownKind {
            kind: kind.to_owned(),
        };
        if let Some((api_version, kind_name)) = kind.rsplit_once('/') {
            return resources
                .iter()
                .find(|resource| {
                    resource.api_version() == api_version && resource.kind == kind_name
                })
                .cloned()
                .ok_or_else(unknown);
        }
        let lower = kind.to_ascii_lowercase();
        let (name, group) = match lower.split_once('.') {
            Some((name, group)) => (name.to_owned(), Some(group.to_owned())),
            None => (lower.clone(), None),
        };
        let matches = |resource: &&ResourceInfo| {
            (resource.kind.to_ascii_lowercase() == name
                || resource.plural == name
                || resource.singular == name
                || resource.short_names.contains(&name))
                && group.as_ref().is_none_or(|group| resource.group == *group)
        };
        // The core group wins ties, as kubectl's preference order does for `events`.
        resources
            .iter()
            .filter(matches)
            .min_by_key(|resource| !resource.group.is_empty())
            .cloned()
            .ok_or_else(unknown)
    }

    fn namespace_for<'a>(&'a self, namespace: Option<&'a str>) -> &'a str {
        namespace.unwrap_or(&self.namespace)
    }

    fn describe(resource: &ResourceInfo, name: &str, namespace: &str) -> String {
        if resource.namespaced {
            format!("{}/{name} in namespace {namespace}", resource.label())
        } else {
            format!("{}/{name}", resource.label())
        }
    }

    /// One object.
    pub async fn get(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Value, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace);
        self.get_resolved(&resource, name, namespace).await
    }

    async fn get_resolved(
        &self,
        resource: &ResourceInfo,
        name: &str,
        namespace: &str,
    ) -> Result<Value, KubeError> {
        let request = build_request(
            http::Method::GET,
            &resource.object_path(namespace, name),
            &[],
            None,
            Vec::new(),
        )?;
        self.call(
            &format!("get {}", Self::describe(resource, name, namespace)),
            request,
        )
        .await
    }

    async fn get_optional(
        &self,
        resource: &ResourceInfo,
        name: &str,
        namespace: &str,
    ) -> Result<Option<Value>, KubeError> {
        match self.get_resolved(resource, name, namespace).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn list_query(options: &ListOptions) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(labels) = &options.label_selector {
            query.push(("labelSelector", labels.clone()));
        }
        if let Some(fields) = &options.field_selector {
            query.push(("fieldSelector", fields.clone()));
        }
        query
    }

    fn list_path(&self, resource: &ResourceInfo, options: &ListOptions) -> String {
        if options.all_namespaces && resource.namespaced {
            let all = ResourceInfo {
                namespaced: false,
                ..resource.clone()
            };
            all.collection_path("")
        } else {
            resource.collection_path(self.namespace_for(options.namespace.as_deref()))
        }
    }

    /// Objects of a kind, filtered by label and field selectors; also the list's
    /// resourceVersion.
    pub async fn list_with_version(
        &self,
        kind: &str,
        options: &ListOptions,
    ) -> Result<(Vec<Value>, String), KubeError> {
        let resource = self.resolve(kind).await?;
        let path = self.list_path(&resource, options);
        let request = build_request(
            http::Method::GET,
            &path,
            &Self::list_query(options),
            None,
            Vec::new(),
        )?;
        let list = self
            .call(&format!("list {}", resource.label()), request)
            .await?;
        let version = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let items = match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let api_version = resource.api_version();
        // The real API server leaves kind and apiVersion off list items; put them back.
        let items = items
            .into_iter()
            .map(|mut item| {
                if item["kind"].is_null() {
                    item["kind"] = resource.kind.clone().into();
                    item["apiVersion"] = api_version.clone().into();
                }
                item
            })
            .collect();
        Ok((items, version))
    }

    /// Objects of a kind, filtered by label and field selectors.
    pub async fn list(&self, kind: &str, options: &ListOptions) -> Result<Vec<Value>, KubeError> {
        Ok(self.list_with_version(kind, options).await?.0)
    }

    /// The namespaces' names.
    pub async fn namespaces(&self) -> Result<Vec<String>, KubeError> {
        let items = self.list("namespaces", &ListOptions::default()).await?;
        Ok(items
            .iter()
            .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Patches an object with a resourceVersion precondition taken from a fresh read, and
    /// retries on 409 Conflict. A patch that names its own resourceVersion is sent once.
    /// With `dry_run` the server computes the result and stores nothing.
    pub async fn patch(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch_type: PatchType,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Change, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace);
        let action = format!("patch {}", Self::describe(&resource, name, namespace));
        for _ in 0..CONFLICT_ATTEMPTS {
            let before = self.get_resolved(&resource, name, namespace).await?;
            let version = resource_version(&before).unwrap_or_default();
            let (body, pinned_by_caller) = with_precondition(patch_type, patch, &version)?;
            let mut query = vec![("fieldManager", "ankus".to_owned())];
            if dry_run {
                query.push(("dryRun", "All".to_owned()));
            }
            let request = build_request(
                http::Method::PATCH,
                &resource.object_path(namespace, name),
                &query,
                Some(patch_type.content_type()),
                body.to_string().into_bytes(),
            )?;
            match self.call(&action, request).await {
                Ok(after) => {
                    return Ok(Change {
                        before: Some(before),
                        after,
                    });
                }
                Err(error) if error.is_conflict() && !pinned_by_caller => continue,
                Err(error) => return Err(error),
            }
        }
        Err(KubeError::KeptChanging {
            action,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// Replaces an object whole (PUT) with the current resourceVersion as precondition,
    /// retrying on 409 with a fresh read. Used to restore saved objects.
    pub async fn replace(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<Change, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace);
        let action = format!("replace {}", Self::describe(&resource, name, namespace));
        for _ in 0..CONFLICT_ATTEMPTS {
            let before = self.get_resolved(&resource, name, namespace).await?;
            let mut body = object.clone();
            body["metadata"]["resourceVersion"] =
                resource_version(&before).unwrap_or_default().into();
            let mut query = vec![("fieldManager", "ankus".to_owned())];
            if dry_run {
                query.push(("dryRun", "All".to_owned()));
            }
            let request = build_request(
                http::Method::PUT,
                &resource.object_path(namespace, name),
                &query,
                Some("application/json"),
                body.to_string().into_bytes(),
            )?;
            match self.call(&action, request).await {
                Ok(after) => {
                    return Ok(Change {
                        before: Some(before),
                        after,
                    });
                }
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error),
            }
        }
        Err(KubeError::KeptChanging {
            action,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    fn object_kind(object: &Value) -> Result<(String, String), KubeError> {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(KubeError::Invalid(format!(
                "read the object: it needs apiVersion, kind and metadata.name (got apiVersion '{api_version}', kind '{kind}', name '{name}')"
            )));
        }
        Ok((format!("{api_version}/{kind}"), name.to_owned()))
    }

    /// Server-side apply of one object with field manager `manager` (conflicts forced, as
    /// the one tool that owns these fields). Creates the object when it does not exist.
    pub async fn apply(
        &self,
        object: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Change, KubeError> {
        let (kind, name) = Self::object_kind(object)?;
        let resource = self.resolve(&kind).await?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&self.namespace)
            .to_owned();
        let before = self.get_optional(&resource, &name, &namespace).await?;
        let mut query = vec![
            ("fieldManager", manager.to_owned()),
            ("force", "true".to_owned()),
        ];
        if dry_run {
            query.push(("dryRun", "All".to_owned()));
        }
        let request = build_request(
            http::Method::PATCH,
            &resource.object_path(&namespace, &name),
            &query,
            Some("application/apply-patch+yaml"),
            object.to_string().into_bytes(),
        )?;
        let after = self
            .call(
                &format!("apply {}", Self::describe(&resource, &name, &namespace)),
                request,
            )
            .await?;
        Ok(Change { before, after })
    }

    /// Creates an object; fails with AlreadyExists when it is there.
    pub async fn create(&self, object: &Value, dry_run: bool) -> Result<Value, KubeError> {
        let (kind, name) = Self::object_kind(object)?;
        let resource = self.resolve(&kind).await?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&self.namespace)
            .to_owned();
        let mut query = vec![("fieldManager", "ankus".to_owned())];
        if dry_run {
            query.push(("dryRun", "All".to_owned()));
        }
        let request = build_request(
            http::Method::POST,
            &resource.collection_path(&namespace),
            &query,
            Some("application/json"),
            object.to_string().into_bytes(),
        )?;
        self.call(
            &format!("create {}", Self::describe(&resource, &name, &namespace)),
            request,
        )
        .await
    }

    /// Deletes an object; returns it as it was.
    pub async fn delete(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace);
        let before = self.get_resolved(&resource, name, namespace).await?;
        if dry_run {
            return Ok(before);
        }
        let request = build_request(
            http::Method::DELETE,
            &resource.object_path(namespace, name),
            &[],
            Some("application/json"),
            json!({ "propagationPolicy": "Background" })
                .to_string()
                .into_bytes(),
        )?;
        self.call(
            &format!("delete {}", Self::describe(&resource, name, namespace)),
            request,
        )
        .await?;
        Ok(before)
    }

    /// Sets the replica count through the `scale` subresource; returns the object before and
    /// after.
    pub async fn scale(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        replicas: u32,
        dry_run: bool,
    ) -> Result<Change, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace);
        let action = format!("scale {}", Self::describe(&resource, name, namespace));
        if !resource.subresources.iter().any(|sub| sub == "scale") {
            return Err(KubeError::Invalid(format!(
                "{action}: {} has no scale subresource",
                resource.label()
            )));
        }
        for _ in 0..CONFLICT_ATTEMPTS {
            let before = self.get_resolved(&resource, name, namespace).await?;
            let body = json!({
                "metadata": { "resourceVersion": resource_version(&before).unwrap_or_default() },
                "spec": { "replicas": replicas },
            });
            let mut query = vec![("fieldManager", "ankus".to_owned())];
            if dry_run {
                query.push(("dryRun", "All".to_owned()));
            }
            let request = build_request(
                http::Method::PATCH,
                &format!("{}/scale", resource.object_path(namespace, name)),
                &query,
                Some("application/merge-patch+json"),
                body.to_string().into_bytes(),
            )?;
            match self.call(&action, request).await {
                Ok(_) => {
                    let after = if dry_run {
                        let mut preview = before.clone();
                        preview["spec"]["replicas"] = replicas.into();
                        preview
                    } else {
                        self.get_resolved(&resource, name, namespace).await?
                    };
                    return Ok(Change {
                        before: Some(before),
                        after,
                    });
                }
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error),
            }
        }
        Err(KubeError::KeptChanging {
            action,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// A pod's log (one container's, or the first's).
    pub async fn logs(
        &self,
        pod: &str,
        namespace: Option<&str>,
        container: Option<&str>,
        tail_lines: Option<u64>,
    ) -> Result<String, KubeError> {
        let namespace = self.namespace_for(namespace);
        let mut query = Vec::new();
        if let Some(container) = container {
            query.push(("container", container.to_owned()));
        }
        if let Some(tail) = tail_lines {
            query.push(("tailLines", tail.to_string()));
        }
        let request = build_request(
            http::Method::GET,
            &format!("/api/v1/namespaces/{namespace}/pods/{pod}/log"),
            &query,
            None,
            Vec::new(),
        )?;
        self.send(
            &format!("read the log of pods/{pod} in namespace {namespace}"),
            request,
        )
        .await
    }

    /// Watches a kind: the current objects as `ADDED` (or the changes after
    /// `resource_version`), then every change, until `timeout` passes on the server.
    pub async fn watch(
        &self,
        kind: &str,
        options: &ListOptions,
        resource_version: Option<&str>,
        timeout: Duration,
    ) -> Result<impl Stream<Item = Result<WatchItem, KubeError>> + Send + use<>, KubeError> {
        let resource = self.resolve(kind).await?;
        let path = self.list_path(&resource, options);
        let mut query = Self::list_query(options);
        query.push(("watch", "true".to_owned()));
        query.push(("timeoutSeconds", timeout.as_secs().max(1).to_string()));
        if let Some(version) = resource_version {
            query.push(("resourceVersion", version.to_owned()));
        }
        let request = build_request(http::Method::GET, &path, &query, None, Vec::new())?;
        let action = format!("watch {}", resource.label());
        let server = self.server.to_string();
        let events = self
            .client
            .request_events::<Value>(request)
            .await
            .map_err(|error| KubeError::from_kube(error, &action, &server))?;
        Ok(events
            .map(move |event| event.map_err(|error| KubeError::from_kube(error, &action, &server)))
            .filter_map(|event| async move {
                match event {
                    Ok(kube::core::WatchEvent::Added(object)) => Some(Ok(WatchItem {
                        event_type: "ADDED".to_owned(),
                        object,
                    })),
                    Ok(kube::core::WatchEvent::Modified(object)) => Some(Ok(WatchItem {
                        event_type: "MODIFIED".to_owned(),
                        object,
                    })),
                    Ok(kube::core::WatchEvent::Deleted(object)) => Some(Ok(WatchItem {
                        event_type: "DELETED".to_owned(),
                        object,
                    })),
                    Ok(kube::core::WatchEvent::Bookmark(_)) => None,
                    Ok(kube::core::WatchEvent::Error(status)) => Some(Err(KubeError::Api {
                        action: "watch".to_owned(),
                        reason: status.reason.clone(),
                        message: status.message.clone(),
                        code: status.code,
                    })),
                    Err(error) => Some(Err(error)),
                }
            }))
    }

    /// Waits until `condition` holds for an object, following it with a watch. Returns the
    /// object (or `None` once deleted).
    pub async fn wait(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        condition: &super::objects::Condition,
        timeout: Duration,
    ) -> Result<Option<Value>, KubeError> {
        let resource = self.resolve(kind).await?;
        let namespace = self.namespace_for(namespace).to_owned();
        let target = Self::describe(&resource, name, &namespace);
        let options = ListOptions {
            field_selector: Some(format!("metadata.name={name}")),
            namespace: Some(namespace.clone()),
            ..ListOptions::default()
        };
        let kind_label = resource.label();
        let follow = async {
            loop {
                let (items, version) = self.list_with_version(&kind_label, &options).await?;
                let current = items.into_iter().next();
                if condition.holds(current.as_ref()) {
                    return Ok(current);
                }
                let mut events = Box::pin(
                    self.watch(&kind_label, &options, Some(&version), timeout)
                        .await?,
                );
                while let Some(item) = events.next().await {
                    let item = item?;
                    let current = (item.event_type != "DELETED").then_some(item.object);
                    if condition.holds(current.as_ref()) {
                        return Ok(current);
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, follow).await {
            Ok(outcome) => outcome,
            Err(_) => Err(KubeError::Timeout {
                target,
                condition: condition.to_string(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// The contexts of the kubeconfig this client would read (the same merged files as
    /// [`KubeClient::connect`]), and its current context.
    pub fn contexts_of(
        options: &ConnectOptions,
    ) -> Result<(Vec<String>, Option<String>), KubeError> {
        let loaded = config::load(
            options.kubeconfig.as_deref(),
            options.preset_kubeconfig.as_deref(),
        )?
        .ok_or_else(|| KubeError::Config {
            path: "(none)".to_owned(),
            message: "no kubeconfig found (KUBECONFIG, ~/.kube/config)".to_owned(),
        })?;
        Ok((
            config::contexts(&loaded.kubeconfig),
            loaded.kubeconfig.current_context.clone(),
        ))
    }
}

/// Builds the kube-rs client for `config`. Credentials kube-rs obtains by itself (from exec
/// plugins, auth providers, token files that change) reach ankus only as the Authorization
/// header of a request, so the auth layer is taken out of kube-rs's stack and put back on
/// top of it, followed by a layer that registers the header's credential for redaction.
fn build_client(mut config: kube::Config, server: &str) -> Result<kube::Client, KubeError> {
    use kube::client::ConfigExt as _;
    let create_error = |error: kube::Error| KubeError::Other {
        action: format!("create a client for {server}"),
        message: super::error::kube_text(&error),
    };
    let Some(auth) = config.auth_layer().map_err(create_error)? else {
        // No header credential: none at all, or a client certificate.
        return kube::Client::try_from(config).map_err(create_error);
    };
    // The layer above carries these now; left in, kube-rs would add a second auth layer
    // (and run an exec plugin once more).
    let user = &mut config.auth_info;
    user.username = None;
    user.password = None;
    user.token = None;
    user.token_file = None;
    user.auth_provider = None;
    user.exec = None;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(create_error)?;
    // The auth layer's refreshing credentials need a service they can clone: the buffer.
    let layer = tower::ServiceBuilder::new()
        .layer(auth)
        .map_request(register_credential)
        .layer(tower::buffer::BufferLayer::new(1024));
    Ok(builder.with_layer(&layer).build())
}

/// Registers the credential a request's Authorization header carries for redaction.
fn register_credential(
    request: http::Request<kube::client::Body>,
) -> http::Request<kube::client::Body> {
    if let Some(value) = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        let credential = value
            .split_once(' ')
            .map_or(value, |(_, credential)| credential);
        crate::redact::register(credential);
    }
    request
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::kind::{Kind, Kinded};

    #[test]
    fn preconditions_pin_the_fresh_resource_version_unless_the_caller_did() {
        let (patch, pinned) =
            with_precondition(PatchType::Merge, &json!({"spec": {"a": 1}}), "7").expect("ok");
        assert!(!pinned);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let (patch, pinned) = with_precondition(
            PatchType::Json,
            &json!([{"op": "replace", "path": "/spec/a", "value": 2}]),
            "9",
        )
        .expect("ok");
        assert!(!pinned);
        assert_eq!(patch[1]["value"], "9");
        let (_, pinned) = with_precondition(
            PatchType::Strategic,
            &json!({"metadata": {"resourceVersion": "3"}}),
            "9",
        )
        .expect("ok");
        assert!(pinned);
        assert!(with_precondition(PatchType::Json, &json!({}), "1").is_err());
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_millis(100),
            attempts: TRANSIENT_ATTEMPTS,
            first_backoff: Duration::from_millis(1),
        }
    }

    fn status(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("injected", reason)
                .with_code(code)
                .boxed(),
        )
    }

    fn refused() -> kube::Error {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        kube::Error::Service(Box::new(io))
    }

    /// What an attempt does: answer, fail, or never answer (a stalled request).
    enum Step {
        Answer,
        Fail(fn() -> kube::Error),
        Stall,
    }

    /// Sends once through `send_retrying` with attempts scripted by `steps` (the last repeats);
    /// returns the outcome and how many attempts were made.
    fn run(
        method: http::Method,
        body: &[u8],
        steps: Vec<Step>,
    ) -> (Result<String, (AttemptError, u32)>, u32) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let calls = AtomicU32::new(0);
        let outcome = runtime.block_on(send_retrying(&quick(), &method, body, || {
            let index = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let step = &steps[index.min(steps.len() - 1)];
            let result = match step {
                Step::Answer => Some(Ok("{}".to_owned())),
                Step::Fail(error) => Some(Err(error())),
                Step::Stall => None,
            };
            async move {
                match result {
                    Some(result) => result,
                    None => std::future::pending().await,
                }
            }
        }));
        (outcome, calls.load(Ordering::SeqCst))
    }

    fn guarded_put() -> Vec<u8> {
        json!({ "metadata": { "name": "pachd", "resourceVersion": "7" } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_read_that_stalls_is_abandoned_and_sent_again() {
        let (outcome, calls) = run(http::Method::GET, &[], vec![Step::Stall, Step::Answer]);
        assert_eq!(outcome.expect("answered"), "{}");
        assert_eq!(calls, 2);
    }

    #[test]
    fn guarded_writes_are_sent_again_after_timeouts_and_server_errors() {
        for method in [http::Method::PATCH, http::Method::PUT] {
            let (outcome, calls) = run(
                method.clone(),
                &guarded_put(),
                vec![
                    Step::Stall,
                    Step::Fail(|| status(503, "ServiceUnavailable")),
                    Step::Answer,
                ],
            );
            assert!(outcome.is_ok(), "{method}");
            assert_eq!(calls, 3, "{method}");
        }
    }

    #[test]
    fn transient_failures_give_up_after_the_last_attempt() {
        let (outcome, calls) = run(
            http::Method::PATCH,
            &[],
            vec![Step::Fail(|| status(500, "InternalError"))],
        );
        let (error, attempts) = outcome.expect_err("fails");
        assert_eq!((calls, attempts), (TRANSIENT_ATTEMPTS, TRANSIENT_ATTEMPTS));
        let error = final_error(
            error,
            attempts,
            "patch services/pachd in namespace old",
            "http://127.0.0.1:1",
            Duration::from_secs(2),
        );
        assert_eq!(error.kind(), Kind::Failed);
        assert_eq!(
            error.to_string(),
            "patch services/pachd in namespace old: the Kubernetes API server \
             http://127.0.0.1:1 answered HTTP 500 (InternalError: injected); gave up after 4 attempts"
        );
    }

    #[test]
    fn a_request_that_never_answers_ends_as_a_timeout_naming_action_and_server() {
        let (outcome, calls) = run(http::Method::GET, &[], vec![Step::Stall]);
        let (error, attempts) = outcome.expect_err("times out");
        assert_eq!(calls, TRANSIENT_ATTEMPTS);
        let error = final_error(
            error,
            attempts,
            "get services/pachd in namespace old",
            "http://127.0.0.1:1",
            Duration::from_secs(2),
        );
        assert_eq!(error.kind(), Kind::Timeout);
        assert_eq!(
            error.to_string(),
            "get services/pachd in namespace old: the Kubernetes API server http://127.0.0.1:1 \
             did not answer within 2s; gave up after 4 attempts"
        );
    }

    #[test]
    fn a_create_is_not_sent_again_when_it_may_have_landed() {
        for failure in [Step::Stall, Step::Fail(|| status(500, "InternalError"))] {
            let (outcome, calls) = run(http::Method::POST, &[], vec![failure, Step::Answer]);
            assert!(outcome.is_err());
            assert_eq!(calls, 1);
        }
    }

    #[test]
    fn a_create_is_sent_again_when_the_server_certainly_did_not_act() {
        for failure in [
            Step::Fail(|| status(429, "TooManyRequests")),
            Step::Fail(refused),
        ] {
            let (outcome, calls) = run(http::Method::POST, &[], vec![failure, Step::Answer]);
            assert!(outcome.is_ok());
            assert_eq!(calls, 2);
        }
    }

    #[test]
    fn an_unguarded_put_is_not_sent_again_after_a_timeout() {
        let body = json!({ "metadata": { "name": "pachd" } }).to_string();
        let (outcome, calls) = run(
            http::Method::PUT,
            body.as_bytes(),
            vec![Step::Stall, Step::Answer],
        );
        assert!(outcome.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn refusals_are_final_and_conflicts_go_back_to_the_caller() {
        let refusals: [fn() -> kube::Error; 3] = [
            || status(409, "Conflict"),
            || status(404, "NotFound"),
            || status(422, "Invalid"),
        ];
        for refusal in refusals {
            let (outcome, calls) = run(
                http::Method::PATCH,
                &guarded_put(),
                vec![Step::Fail(refusal), Step::Answer],
            );
            let (error, _) = outcome.expect_err("refused");
            assert_eq!(calls, 1, "{error:?}");
        }
    }

    #[test]
    fn a_delete_resent_after_a_lost_answer_that_finds_the_object_gone_succeeded() {
        let (outcome, calls) = run(
            http::Method::DELETE,
            &[],
            vec![Step::Stall, Step::Fail(|| status(404, "NotFound"))],
        );
        assert!(outcome.is_ok());
        assert_eq!(calls, 2);
        let (outcome, _) = run(
            http::Method::DELETE,
            &[],
            vec![Step::Fail(|| status(404, "NotFound"))],
        );
        assert!(outcome.is_err(), "a first 404 is a 404");
    }

    #[test]
    fn transient_server_answers_keep_their_kind() {
        for (code, reason, kind) in [
            (503, "ServiceUnavailable", Kind::Unavailable),
            (429, "TooManyRequests", Kind::Unavailable),
            (504, "Timeout", Kind::Timeout),
            (500, "InternalError", Kind::Failed),
        ] {
            let error = KubeError::from_kube(status(code, reason), "get x", "http://s");
            assert_eq!(error.kind(), kind, "{code}");
            assert!(error.to_string().contains("http://s"), "{error}");
        }
        let error = KubeError::from_kube(refused(), "get x", "http://s").after_attempts(3);
        assert_eq!(error.kind(), Kind::Unavailable);
        assert!(
            error
                .to_string()
                .starts_with("get x: cannot reach the Kubernetes API server http://s")
                && error.to_string().ends_with("; gave up after 3 attempts"),
            "{error}"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("app in (a,b)"), "app%20in%20%28a%2Cb%29");
        assert_eq!(encode("metadata.name=x"), "metadata.name%3Dx");
    }
}
