//! pachd's errors as clients see them: a gRPC code and, above all, the message text (clients
//! match on it). Most pachd errors are plain Go errors, which gRPC reports as `Unknown`; the
//! auth errors carry their own codes.

use tonic::{Code, Status};

/// An error the emulated pachd returns to its client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PachdError {
    /// The gRPC status code.
    pub code: Code,
    /// pachd's message text.
    pub message: String,
}

/// Shorthand for results of state transitions.
pub type PachdResult<T> = Result<T, PachdError>;

impl PachdError {
    /// An error with code `Unknown`, the code of pachd's plain Go errors.
    pub fn unknown(message: impl Into<String>) -> PachdError {
        PachdError {
            code: Code::Unknown,
            message: message.into(),
        }
    }

    /// An error with an explicit code.
    pub fn with_code(code: Code, message: impl Into<String>) -> PachdError {
        PachdError {
            code,
            message: message.into(),
        }
    }

    /// Malformed request.
    pub fn invalid(message: impl Into<String>) -> PachdError {
        PachdError::with_code(Code::InvalidArgument, message)
    }

    /// `repo <name> not found`.
    pub fn repo_not_found(repo: &str) -> PachdError {
        PachdError::unknown(format!("repo {repo} not found"))
    }

    /// `repo <name> already exists`.
    pub fn repo_exists(repo: &str) -> PachdError {
        PachdError::unknown(format!("repo {repo} already exists"))
    }

    /// `commit <id> not found in repo <repo>`.
    pub fn commit_not_found(repo: &str, id: &str) -> PachdError {
        PachdError::unknown(format!("commit {id} not found in repo {repo}"))
    }

    /// `commit <id> already exists in repo <repo>`.
    pub fn commit_exists(repo: &str, id: &str) -> PachdError {
        PachdError::unknown(format!("commit {id} already exists in repo {repo}"))
    }

    /// `commit <id> in repo <repo> has already finished`.
    pub fn commit_finished(repo: &str, id: &str) -> PachdError {
        PachdError::unknown(format!("commit {id} in repo {repo} has already finished"))
    }

    /// `branch <name> not found in repo <repo>`.
    pub fn branch_not_found(repo: &str, branch: &str) -> PachdError {
        PachdError::unknown(format!("branch {branch} not found in repo {repo}"))
    }

    /// `file <path> not found in repo <repo> at commit <id>`.
    pub fn file_not_found(repo: &str, id: &str, path: &str) -> PachdError {
        PachdError::unknown(format!(
            "file {path} not found in repo {repo} at commit {id}"
        ))
    }

    /// `pipeline "<name>" not found`.
    pub fn pipeline_not_found(pipeline: &str) -> PachdError {
        PachdError::unknown(format!("pipeline \"{pipeline}\" not found"))
    }

    /// `pipeline <name> already exists`.
    pub fn pipeline_exists(pipeline: &str) -> PachdError {
        PachdError::unknown(format!("pipeline {pipeline} already exists"))
    }

    /// `job <id> not found`.
    pub fn job_not_found(job: &str) -> PachdError {
        PachdError::unknown(format!("job {job} not found"))
    }

    /// A name outside `[a-zA-Z0-9_-]+`.
    pub fn invalid_name(what: &str, name: &str) -> PachdError {
        PachdError::unknown(format!(
            "{what} name ({name}) invalid: only alphanumeric characters, underscores, and dashes are allowed"
        ))
    }

    /// `object <hash> not found`.
    pub fn object_not_found(hash: &str) -> PachdError {
        PachdError::unknown(format!("object {hash} not found"))
    }

    /// `block <id> not found`.
    pub fn block_not_found(block: &str) -> PachdError {
        PachdError::unknown(format!("block {block} not found"))
    }

    /// Auth is off: `Unimplemented: the auth service is not activated`.
    pub fn auth_not_activated() -> PachdError {
        PachdError::with_code(Code::Unimplemented, "the auth service is not activated")
    }

    /// Auth is on and the call has no token.
    pub fn not_signed_in() -> PachdError {
        PachdError::with_code(
            Code::Unauthenticated,
            "no authentication token (try logging in)",
        )
    }

    /// Auth is on and the token is unknown or expired.
    pub fn bad_token() -> PachdError {
        PachdError::with_code(
            Code::Unauthenticated,
            "provided auth token is corrupted or has expired (try logging in again)",
        )
    }

    /// The caller is not an admin.
    pub fn not_authorized(subject: &str, operation: &str) -> PachdError {
        PachdError::with_code(
            Code::PermissionDenied,
            format!(
                "{subject} is not authorized to perform this operation ({operation}); must be an admin"
            ),
        )
    }

    /// A method this pachd version does not have, as grpc-go reports it.
    pub fn unknown_method(service: &str, method: &str) -> PachdError {
        PachdError::with_code(
            Code::Unimplemented,
            format!("unknown method {method} for service {service}"),
        )
    }

    /// Something the sandbox deliberately does not emulate.
    pub fn unsupported(what: &str) -> PachdError {
        PachdError::with_code(
            Code::Unimplemented,
            format!("{what} is not supported by the ankus sandbox"),
        )
    }

    /// An extract or restore URL naming a file outside the cluster's own bucket.
    pub fn outside_bucket(url: &str) -> PachdError {
        PachdError::with_code(
            Code::PermissionDenied,
            format!(
                "URL {url} is outside this cluster's bucket; the ankus sandbox reads and writes \
                 dumps only there"
            ),
        )
    }

    /// A local I/O failure in the cluster's bucket or data directory.
    pub fn io(what: &str, err: &std::io::Error) -> PachdError {
        PachdError::with_code(Code::Internal, format!("{what}: {err}"))
    }

    /// Whether restore ignores this error (pachd matches the substring `already exists`).
    pub fn is_already_exists(&self) -> bool {
        self.message.contains("already exists")
    }
}

impl From<PachdError> for Status {
    fn from(err: PachdError) -> Status {
        Status::new(err.code, err.message)
    }
}

/// Whether `name` is a valid repo, branch or pipeline name (`[a-zA-Z0-9_-]+`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// Rewrites every character outside `[a-zA-Z0-9_-]` to `_`, as restore does (1.9+).
pub fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' {
                ch
            } else {
                '_'
            }
        })
        .collect()
}

/// Errors starting or persisting a sandbox cluster (not errors returned to RPC clients).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file or directory of the cluster could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The persisted state could not be decoded.
    #[error("read sandbox state {path}: {message}")]
    State {
        /// The state file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The gRPC server failed.
    #[error("serve pachd")]
    Serve(#[source] tonic::transport::Error),
    /// Seeding or talking to a cluster over the wire failed.
    #[error("{0}")]
    Wire(String),
}

impl crate::kind::Kinded for SandboxError {
    fn kind(&self) -> crate::kind::Kind {
        match self {
            SandboxError::Io { .. } => crate::kind::Kind::Io,
            SandboxError::State { .. } => crate::kind::Kind::Invalid,
            SandboxError::Serve(_) | SandboxError::Wire(_) => crate::kind::Kind::Unavailable,
        }
    }
}

impl SandboxError {
    /// An I/O error on `path`.
    pub fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> SandboxError {
        SandboxError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
