//! Error kinds shared by every client, so callers (and scripts) can branch on what went wrong
//! without knowing which layer failed. Deliberately free of rhai: clients depend on this, not on
//! the scripting host.

use std::fmt;

/// What kind of failure an error is, independent of the layer that raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The thing named does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The peer could not be reached or refused service for now.
    Unavailable,
    /// The input is malformed or violates a rule.
    Invalid,
    /// The caller is known but not allowed.
    PermissionDenied,
    /// The caller is not known (no or bad credentials).
    Unauthenticated,
    /// A concurrent change got in the way (e.g. a stale resourceVersion).
    Conflict,
    /// A deadline passed.
    Timeout,
    /// The user interrupted the operation.
    Cancelled,
    /// The command line or the environment is wrong (exit code 2).
    Usage,
    /// A local file or stream could not be read or written.
    Io,
    /// Anything else.
    Failed,
}

impl Kind {
    /// The snake_case name scripts see in `e.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::AlreadyExists => "already_exists",
            Kind::Unavailable => "unavailable",
            Kind::Invalid => "invalid",
            Kind::PermissionDenied => "permission_denied",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Conflict => "conflict",
            Kind::Timeout => "timeout",
            Kind::Cancelled => "cancelled",
            Kind::Usage => "usage",
            Kind::Io => "io",
            Kind::Failed => "failed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every library error enum, so the host can convert it once at the script
/// boundary.
pub trait Kinded: std::error::Error {
    /// The kind of this error.
    fn kind(&self) -> Kind;

    /// Structured facts a script can act on after catching the error (`e.details`), e.g.
    /// what a failed restore created; `None` for most errors.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Joins an error and its sources into one line, each source once.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
