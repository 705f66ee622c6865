//! Errors of the Kubernetes client, with the API server's reason and the object named.

use crate::kind::{Kind, Kinded};

/// What went wrong talking to Kubernetes.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable kubeconfig.
    #[error("load kubeconfig {path}: {message}")]
    Config {
        /// The file (or source) that was read.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The context named is not in the kubeconfig.
    #[error("find context '{context}' in {path} (known contexts: {known})")]
    NoContext {
        /// The context asked for.
        context: String,
        /// The kubeconfig read.
        path: String,
        /// The contexts it has.
        known: String,
    },
    /// The API server could not be reached.
    #[error("reach the Kubernetes API server {server}: {message}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// The API server refused the request.
    #[error("{action}: {message} ({reason}, HTTP {code})")]
    Api {
        /// What was attempted, e.g. `patch services/pachd in namespace old`.
        action: String,
        /// The server's `reason`, e.g. `NotFound`.
        reason: String,
        /// The server's message.
        message: String,
        /// The HTTP status code.
        code: u16,
    },
    /// The server does not serve a resource kind by that name.
    #[error("resolve kind '{kind}': the server has no such resource type")]
    UnknownKind {
        /// The name given.
        kind: String,
    },
    /// The input (a patch, a manifest, an option) is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A condition was not reached in time.
    #[error("wait for {target} to be {condition}: still not after {seconds}s")]
    Timeout {
        /// The object waited on.
        target: String,
        /// The condition.
        condition: String,
        /// The limit.
        seconds: u64,
    },
    /// Retries on resourceVersion conflicts ran out.
    #[error("{action}: the object kept changing; gave up after {attempts} attempts")]
    KeptChanging {
        /// What was attempted.
        action: String,
        /// How many times.
        attempts: u32,
    },
    /// A saved object could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else the client library reported.
    #[error("{action}: {message}")]
    Other {
        /// What was attempted.
        action: String,
        /// The library's message.
        message: String,
    },
}

impl Kinded for KubeError {
    fn kind(&self) -> Kind {
        match self {
            KubeError::Config { .. } => Kind::Usage,
            KubeError::NoContext { .. } => Kind::NotFound,
            KubeError::Unreachable { .. } => Kind::Unavailable,
            KubeError::Api { reason, code, .. } => match (reason.as_str(), code) {
                ("NotFound", _) | (_, 404) => Kind::NotFound,
                ("AlreadyExists", _) => Kind::AlreadyExists,
                ("Conflict", _) | ("Expired" | "Gone", _) => Kind::Conflict,
                ("Invalid" | "BadRequest" | "UnsupportedMediaType" | "MethodNotAllowed", _) => {
                    Kind::Invalid
                }
                ("Forbidden", _) => Kind::PermissionDenied,
                ("Unauthorized", _) => Kind::Unauthenticated,
                ("Timeout", _) => Kind::Timeout,
                ("ServiceUnavailable", _) => Kind::Unavailable,
                _ => Kind::Failed,
            },
            KubeError::UnknownKind { .. } => Kind::NotFound,
            KubeError::Invalid(_) => Kind::Invalid,
            KubeError::Timeout { .. } => Kind::Timeout,
            KubeError::KeptChanging { .. } => Kind::Conflict,
            KubeError::Io { .. } => Kind::Io,
            KubeError::Other { .. } => Kind::Failed,
        }
    }
}

impl KubeError {
    /// Whether this is the API server's 409 Conflict on a stale resourceVersion.
    pub fn is_conflict(&self) -> bool {
        matches!(self, KubeError::Api { reason, .. } if reason == "Conflict")
    }

    /// Whether the object was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Api { code: 404, .. })
    }

    /// Converts a kube-rs error for `action` against `server`.
    pub fn from_kube(error: kube::Error, action: &str, server: &str) -> Self {
        match error {
            kube::Error::Api(status) => KubeError::Api {
                action: action.to_owned(),
                reason: if status.reason.is_empty() {
                    "Unknown".to_owned()
                } else {
                    status.reason.clone()
                },
                message: status.message.clone(),
                code: status.code,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => KubeError::Unreachable {
                server: server.to_owned(),
                message: crate::kind::chain_text(&error),
            },
            other => KubeError::Other {
                action: action.to_owned(),
                message: crate::kind::chain_text(&other),
            },
        }
    }
}
