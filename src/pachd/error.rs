//! Errors of the pachd client, with the kinds scripts branch on.

use std::time::Duration;

use crate::kind::{Kind, Kinded};

/// What went wrong talking to pachd.
#[derive(Debug, thiserror::Error)]
pub enum PachdError {
    /// The address is not one pachctl would accept.
    #[error("parse pachd address {address:?}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pachctl config file cannot be read or makes no sense.
    #[error("read pachctl config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The named context is not in the config.
    #[error("find pachctl context {name:?} in {path}: known contexts are {}", known_list(.known))]
    UnknownContext {
        /// The context asked for.
        name: String,
        /// The config file searched.
        path: String,
        /// The contexts the file does have.
        known: Vec<String>,
    },
    /// The context gives no way to reach pachd that ankus supports.
    #[error("resolve the pachd address of context {context:?}: {reason}")]
    NoAddress {
        /// The context.
        context: String,
        /// Why there is no address.
        reason: String,
    },
    /// The implicit port-forward to a pachd pod could not be set up.
    #[error("port-forward to pachd for context {context:?}: {cause}")]
    PortForward {
        /// The pachctl context.
        context: String,
        /// What the Kubernetes side said (shown in the message, so not a `source`; boxed,
        /// as it is larger than every other variant).
        cause: Box<crate::kube::KubeError>,
    },
    /// TLS settings are unusable.
    #[error("set up TLS for {address}: {reason}")]
    Tls {
        /// The address being connected to.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing answered at the address within the connect timeout.
    #[error("connect to pachd at {address}: {reason}")]
    Unreachable {
        /// The qualified address.
        address: String,
        /// What the transport said.
        reason: String,
    },
    /// The server is not a pachd 1.x.
    #[error("use pachd at {address}: {reason}")]
    Unsupported {
        /// The qualified address.
        address: String,
        /// Why it is refused.
        reason: String,
    },
    /// The cluster is not the one the context was made for (pachctl's check).
    #[error(
        "verify the cluster at {address}: connected to the wrong cluster (context cluster deployment ID = {expected:?} vs reported cluster deployment ID = {reported:?})"
    )]
    WrongCluster {
        /// The qualified address.
        address: String,
        /// `cluster_deployment_id` from the context.
        expected: String,
        /// `deployment_id` pachd reported.
        reported: String,
    },
    /// An RPC failed; `message` is pachd's own text.
    #[error("{operation}: {message}")]
    Rpc {
        /// What was being done, e.g. `inspect pipeline "sort"`.
        operation: String,
        /// The kind derived from the status code and message.
        kind: Kind,
        /// The gRPC status code.
        code: tonic::Code,
        /// pachd's message.
        message: String,
    },
    /// The call's deadline passed.
    #[error("{operation}: no answer within {}s", .after.as_secs_f64())]
    Timeout {
        /// What was being done.
        operation: String,
        /// The deadline.
        after: Duration,
    },
    /// A pipeline did not reach the wanted state in time.
    #[error("wait for pipeline {pipeline:?} to be {wanted}: still {state} after {}s", .after.as_secs_f64())]
    WaitTimeout {
        /// The pipeline.
        pipeline: String,
        /// The states waited for.
        wanted: String,
        /// The last state seen.
        state: String,
        /// How long it waited.
        after: Duration,
    },
    /// A file is larger than the caller allowed.
    #[error("get file {path}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// `repo@commit:path`.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A response did not have the shape pachd 1.x gives.
    #[error("{operation}: unexpected response: {reason}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What was odd.
        reason: String,
    },
    /// The stream of ops handed to restore failed; the RPC was cancelled, not finished.
    #[error("read the ops to restore: {reason}")]
    RestoreSource {
        /// What the op source said.
        reason: String,
    },
    /// An argument is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

impl PachdError {
    /// Builds an RPC error from a gRPC status, deriving the kind from pachd's message text
    /// first (pachd 1.x returns most errors with code Unknown) and the code second.
    pub fn from_status(operation: impl Into<String>, status: &tonic::Status) -> Self {
        PachdError::Rpc {
            operation: operation.into(),
            kind: kind_of_status(status),
            code: status.code(),
            // A transport failure's Status says only "transport error"; why is in its
            // sources (e.g. the pod side of a port-forward refusing the port).
            message: match std::error::Error::source(status) {
                Some(source) => {
                    let cause = crate::kind::chain_text(source);
                    if cause.contains(status.message()) {
                        cause
                    } else {
                        format!("{}: {cause}", status.message())
                    }
                }
                None => status.message().to_owned(),
            },
        }
    }

    /// True when pachd said auth is not activated.
    pub fn is_auth_not_activated(&self) -> bool {
        matches!(self, PachdError::Rpc { message, .. } if message.contains(AUTH_NOT_ACTIVATED))
    }

    /// True when pachd refused the call for lack of a (valid) token.
    pub fn is_not_signed_in(&self) -> bool {
        matches!(
            self,
            PachdError::Rpc {
                kind: Kind::Unauthenticated,
                ..
            }
        )
    }

    /// The gRPC status code of an RPC error.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            PachdError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// pachd's text when auth is off (matched as a substring, like pachctl does).
pub const AUTH_NOT_ACTIVATED: &str = "the auth service is not activated";

/// Classifies a status the way pachd's own clients do: by message text, then by code.
pub fn kind_of_status(status: &tonic::Status) -> Kind {
    let message = status.message();
    if message.contains(AUTH_NOT_ACTIVATED) {
        // Not a missing object and not bad credentials: the call does not apply to this
        // cluster as configured.
        return Kind::Invalid;
    }
    if message.contains("no authentication token") || message.contains("corrupted or has expired") {
        return Kind::Unauthenticated;
    }
    if message.contains("not authorized") {
        return Kind::PermissionDenied;
    }
    if message.contains("already exists") || message.contains("already activated") {
        return Kind::AlreadyExists;
    }
    if message.contains("not found") {
        return Kind::NotFound;
    }
    match status.code() {
        tonic::Code::NotFound => Kind::NotFound,
        tonic::Code::AlreadyExists => Kind::AlreadyExists,
        tonic::Code::Unauthenticated => Kind::Unauthenticated,
        tonic::Code::PermissionDenied => Kind::PermissionDenied,
        tonic::Code::Unavailable => Kind::Unavailable,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Kind::Invalid,
        tonic::Code::DeadlineExceeded => Kind::Timeout,
        tonic::Code::Cancelled => Kind::Cancelled,
        tonic::Code::FailedPrecondition | tonic::Code::Aborted => Kind::Conflict,
        _ => Kind::Failed,
    }
}

impl Kinded for PachdError {
    fn kind(&self) -> Kind {
        match self {
            PachdError::Address { .. } | PachdError::Invalid(_) => Kind::Invalid,
            PachdError::Config { .. } => Kind::Usage,
            PachdError::UnknownContext { .. } => Kind::NotFound,
            PachdError::NoAddress { .. } => Kind::Usage,
            PachdError::PortForward { cause, .. } => cause.kind(),
            PachdError::Tls { .. } => Kind::Invalid,
            PachdError::Unreachable { .. } => Kind::Unavailable,
            PachdError::Unsupported { .. } | PachdError::WrongCluster { .. } => Kind::Invalid,
            PachdError::Rpc { kind, .. } => *kind,
            PachdError::Timeout { .. } | PachdError::WaitTimeout { .. } => Kind::Timeout,
            PachdError::TooLarge { .. } => Kind::Invalid,
            PachdError::Protocol { .. } => Kind::Failed,
            PachdError::RestoreSource { .. } => Kind::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_pachd_message_text_before_codes() {
        let cases = [
            (tonic::Status::unknown("repo foo not found"), Kind::NotFound),
            (
                tonic::Status::unknown("pipeline \"x\" not found"),
                Kind::NotFound,
            ),
            (
                tonic::Status::unknown("repo foo already exists"),
                Kind::AlreadyExists,
            ),
            (
                tonic::Status::unauthenticated("no authentication token (try logging in)"),
                Kind::Unauthenticated,
            ),
            (
                tonic::Status::unknown(
                    "provided auth token is corrupted or has expired (try logging in again)",
                ),
                Kind::Unauthenticated,
            ),
            (
                tonic::Status::unimplemented("the auth service is not activated"),
                Kind::Invalid,
            ),
            (
                tonic::Status::unknown("not authorized to perform this operation"),
                Kind::PermissionDenied,
            ),
            (
                tonic::Status::unavailable("connection reset"),
                Kind::Unavailable,
            ),
            (tonic::Status::invalid_argument("bad name"), Kind::Invalid),
            (tonic::Status::unknown("boom"), Kind::Failed),
        ];
        for (status, kind) in cases {
            assert_eq!(kind_of_status(&status), kind, "{status:?}");
        }
    }

    #[test]
    fn rpc_error_keeps_pachd_message_once() {
        let error = PachdError::from_status(
            "inspect repo \"x\"",
            &tonic::Status::unknown("repo x not found"),
        );
        assert_eq!(error.to_string(), "inspect repo \"x\": repo x not found");
        assert_eq!(error.kind(), Kind::NotFound);
    }

    #[test]
    fn unknown_context_lists_known_ones() {
        let error = PachdError::UnknownContext {
            name: "prod".into(),
            path: "/tmp/c.json".into(),
            known: vec!["new".into(), "old".into()],
        };
        assert_eq!(
            error.to_string(),
            "find pachctl context \"prod\" in /tmp/c.json: known contexts are new, old"
        );
    }
}
