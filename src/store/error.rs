//! Errors of the object-storage client. Messages name the store URL (and the endpoint when
//! there is one), never a credential.

use crate::kind::{Kind, Kinded};

/// What went wrong talking to an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("parse store URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given, with any user-info removed.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The URL's scheme is not one ankus supports.
    #[error(
        "open '{url}': unknown scheme '{scheme}' (supported: s3, gs, az, wasb, wasbs, as, file, memory)"
    )]
    UnknownScheme {
        /// The URL as given, with any user-info removed.
        url: String,
        /// The scheme.
        scheme: String,
    },
    /// An option in the options map is unknown or has a bad value.
    #[error("open {url}: option '{key}' {reason}")]
    BadOption {
        /// The store URL.
        url: String,
        /// The option name.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No credentials were found for a store that needs them.
    #[error("open {url}: no credentials ({hint})")]
    MissingCredentials {
        /// The store URL.
        url: String,
        /// Where credentials can come from.
        hint: String,
    },
    /// A key is not a valid object key.
    #[error("use key '{key}' in {url}: {reason}")]
    BadKey {
        /// The store URL.
        url: String,
        /// The key.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A request failed.
    #[error("{action} {target}: {detail}")]
    Request {
        /// What was being done (`get`, `list`, `copy`, ...).
        action: &'static str,
        /// The URL of the object or store.
        target: String,
        /// The kind callers branch on.
        kind: Kind,
        /// A short description of the failure (status, S3 error code).
        detail: String,
    },
    /// A local read or write failed.
    #[error("{action} {target}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path or URL.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The request is well-formed but must not be carried out.
    #[error("{0}")]
    Refused(String, Kind),
}

impl Kinded for StoreError {
    fn kind(&self) -> Kind {
        match self {
            StoreError::BadUrl { .. }
            | StoreError::UnknownScheme { .. }
            | StoreError::BadOption { .. }
            | StoreError::BadKey { .. } => Kind::Invalid,
            StoreError::MissingCredentials { .. } => Kind::Unauthenticated,
            StoreError::Request { kind, .. } => *kind,
            StoreError::Io { .. } => Kind::Io,
            StoreError::Refused(_, kind) => *kind,
        }
    }
}

impl StoreError {
    /// Converts an `object_store` error for `action` on `target`, keeping what a user needs
    /// (status and S3 error code) and dropping request internals.
    pub fn from_object_store(
        action: &'static str,
        target: impl Into<String>,
        error: object_store::Error,
    ) -> Self {
        if let Some(chain) = find_source::<super::aws_chain::ChainError>(&error) {
            return StoreError::Request {
                action,
                target: target.into(),
                kind: Kind::Unauthenticated,
                detail: chain.to_string(),
            };
        }
        let text = crate::kind::chain_text(&error);
        let code = s3_error_code(&text);
        if let Some((kind, detail)) = code.as_deref().and_then(describe_s3_code) {
            return StoreError::Request {
                action,
                target: target.into(),
                kind,
                detail,
            };
        }
        let (kind, detail) = match &error {
            object_store::Error::NotFound { .. } => (Kind::NotFound, "no such object".to_owned()),
            object_store::Error::PermissionDenied { .. } => {
                (Kind::PermissionDenied, "access denied".to_owned())
            }
            object_store::Error::Unauthenticated { .. } => (
                Kind::Unauthenticated,
                "the credentials were rejected".to_owned(),
            ),
            object_store::Error::AlreadyExists { .. } => {
                (Kind::AlreadyExists, "the object already exists".to_owned())
            }
            object_store::Error::Precondition { .. } => {
                (Kind::Conflict, "the object changed meanwhile".to_owned())
            }
            object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. } => (
                Kind::Failed,
                format!("not supported by this store: {}", first_line(&text)),
            ),
            _ if is_transient_text(&text) => (Kind::Unavailable, first_line(&text)),
            _ => (Kind::Failed, first_line(&text)),
        };
        StoreError::Request {
            action,
            target: target.into(),
            kind,
            detail,
        }
    }

    /// Whether retrying later may succeed (throttling, 5xx, dropped connections).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Request { kind, detail, .. } => {
                *kind == Kind::Unavailable || *kind == Kind::Timeout || is_transient_text(detail)
            }
            _ => false,
        }
    }
}

/// The first error of type `T` in `error`'s chain of sources, itself included.
fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// What an S3 error code means to a user, for the codes that need no further detail.
pub(crate) fn describe_s3_code(code: &str) -> Option<(Kind, String)> {
    Some(match code {
        "NoSuchBucket" => (Kind::NotFound, "the bucket does not exist".to_owned()),
        "NoSuchKey" => (Kind::NotFound, "no such object".to_owned()),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => (
            Kind::Unauthenticated,
            format!("the credentials were rejected ({code})"),
        ),
        "AccessDenied" => (Kind::PermissionDenied, "access denied".to_owned()),
        _ => return None,
    })
}

/// The `<Code>` of an S3 XML error body inside `text`, if there is one.
pub(crate) fn s3_error_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

fn is_transient_text(text: &str) -> bool {
    [
        "SlowDown",
        "503",
        "500 Internal",
        "502",
        "504",
        "ServiceUnavailable",
        "InternalError",
        "connection reset",
        "Connection reset",
        "error sending request",
        "timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The first line of an error text, without XML bodies, capped in length.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let line = match line.find('<') {
        Some(index) if index > 0 => line[..index].trim_end_matches([' ', ':']),
        _ => line,
    };
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_code_is_read_from_xml_bodies() {
        let body = "Server returned 404: <?xml?><Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(s3_error_code(body).as_deref(), Some("NoSuchBucket"));
        assert_eq!(s3_error_code("plain"), None);
    }

    #[test]
    fn first_line_drops_xml_and_caps_length() {
        assert_eq!(first_line("status 500: <Error/>\nmore"), "status 500");
    }
}
