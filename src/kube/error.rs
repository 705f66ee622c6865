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
    /// The API server could not be reached, or the connection broke off.
    #[error("{action}: cannot reach the Kubernetes API server {server}: {message}{attempts}")]
    Unreachable {
        /// What was attempted.
        action: String,
        /// The server URL.
        server: String,
        /// Why.
        message: String,
        /// How many times the request was sent.
        attempts: Attempts,
    },
    /// The API server did not answer a request within the connection's time limit.
    #[error(
        "{action}: the Kubernetes API server {server} did not answer within {seconds}s{attempts}"
    )]
    RequestTimeout {
        /// What was attempted.
        action: String,
        /// The server URL.
        server: String,
        /// The limit per request.
        seconds: f64,
        /// How many times the request was sent.
        attempts: Attempts,
    },
    /// The API server (or a proxy in front of it) failed the request with 429 or a 5xx: a
    /// condition that may pass, unlike the refusals in [`KubeError::Api`].
    #[error(
        "{action}: the Kubernetes API server {server} answered HTTP {code} ({reason}: {message}){attempts}"
    )]
    ServerError {
        /// What was attempted.
        action: String,
        /// The server URL.
        server: String,
        /// The `reason` of the Status body (`Unknown` when the body was not a Status).
        reason: String,
        /// The message (the body's text when it was not a Status).
        message: String,
        /// The HTTP status code.
        code: u16,
        /// How many times the request was sent.
        attempts: Attempts,
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
    /// Another ankus run's quiesce mark is on the Service.
    #[error("mark service {service}: the old cluster is held by another ankus {holder}")]
    Held {
        /// The Service.
        service: String,
        /// The holder, in words.
        holder: String,
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
    /// No pod carries the labels a port-forward looks for.
    #[error("find a pod to port-forward to: no pods labelled {selector} in namespace {namespace}")]
    NoPods {
        /// The label selector.
        selector: String,
        /// The namespace searched.
        namespace: String,
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
            KubeError::RequestTimeout { .. } => Kind::Timeout,
            KubeError::Api { reason, code, .. } | KubeError::ServerError { reason, code, .. } => {
                status_kind(reason, *code)
            }
            KubeError::UnknownKind { .. } => Kind::NotFound,
            KubeError::Invalid(_) => Kind::Invalid,
            KubeError::Timeout { .. } => Kind::Timeout,
            KubeError::KeptChanging { .. } | KubeError::Held { .. } => Kind::Conflict,
            KubeError::Io { .. } => Kind::Io,
            KubeError::NoPods { .. } => Kind::NotFound,
            KubeError::Other { .. } => Kind::Failed,
        }
    }
}

/// The kind of a Status the API server answered with.
fn status_kind(reason: &str, code: u16) -> Kind {
    match (reason, code) {
        ("NotFound", _) | (_, 404) => Kind::NotFound,
        ("AlreadyExists", _) => Kind::AlreadyExists,
        ("Conflict", _) | ("Expired" | "Gone", _) => Kind::Conflict,
        ("Invalid" | "BadRequest" | "UnsupportedMediaType" | "MethodNotAllowed", _) => {
            Kind::Invalid
        }
        ("Forbidden", _) => Kind::PermissionDenied,
        ("Unauthorized", _) => Kind::Unauthenticated,
        ("Timeout", _) | (_, 504) => Kind::Timeout,
        ("ServiceUnavailable" | "TooManyRequests", _) | (_, 429 | 503) => Kind::Unavailable,
        _ => Kind::Failed,
    }
}

/// The text of a kube-rs error and its causes, except that an exec credential plugin's
/// failure is told without what it printed on stdout (where a credential goes) and without
/// kube-rs's rendering of the command (which lists its environment).
pub fn kube_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = Some(error);
    while let Some(current) = cause {
        match current.downcast_ref::<kube::client::AuthError>() {
            Some(kube::client::AuthError::AuthExecRun { out, .. }) => {
                // kubectl shows a plugin's stderr as the plugin wrote it; so does this, cut.
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said.trim();
                let said: String = said.chars().take(500).collect();
                return if said.is_empty() {
                    format!("run the exec credential plugin: it failed ({})", out.status)
                } else {
                    format!(
                        "run the exec credential plugin: it failed ({}): {said}",
                        out.status
                    )
                };
            }
            Some(kube::client::AuthError::AuthExecParse(_)) => {
                return "read the exec credential plugin's output: it is not an ExecCredential \
                        (JSON or YAML)"
                    .to_owned();
            }
            _ => cause = current.source(),
        }
    }
    crate::kind::chain_text(error)
}

/// How many times a request was sent, shown in a message only when it was more than once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts(pub u32);

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 1 {
            write!(f, "; gave up after {} attempts", self.0)
        } else {
            Ok(())
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

    /// Records that the request was sent `count` times before this error.
    pub fn after_attempts(mut self, count: u32) -> Self {
        match &mut self {
            KubeError::Unreachable { attempts, .. }
            | KubeError::RequestTimeout { attempts, .. }
            | KubeError::ServerError { attempts, .. } => *attempts = Attempts(count),
            _ => {}
        }
        self
    }

    /// Converts a kube-rs error for `action` against `server`.
    pub fn from_kube(error: kube::Error, action: &str, server: &str) -> Self {
        match error {
            kube::Error::Api(status) => {
                let reason = if status.reason.is_empty() {
                    "Unknown".to_owned()
                } else {
                    status.reason.clone()
                };
                if status.code == 429 || status.code >= 500 {
                    KubeError::ServerError {
                        action: action.to_owned(),
                        server: server.to_owned(),
                        reason,
                        message: status.message.clone(),
                        code: status.code,
                        attempts: Attempts(1),
                    }
                } else {
                    KubeError::Api {
                        action: action.to_owned(),
                        reason,
                        message: status.message.clone(),
                        code: status.code,
                    }
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => KubeError::Unreachable {
                action: action.to_owned(),
                server: server.to_owned(),
                message: kube_text(&error),
                attempts: Attempts(1),
            },
            other => KubeError::Other {
                action: action.to_owned(),
                message: kube_text(&other),
            },
        }
    }
}
