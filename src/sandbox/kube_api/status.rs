//! Failures of the emulated API server, rendered as the `Status` bodies the real API server
//! sends (kubectl prints `Error from server (Reason): message` from them).

use serde_json::{Value, json};

use super::resources::ResourceType;

/// A failed API request: HTTP code, reason and message, like `metav1.Status`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status body.
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Value) -> Self {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    /// `services "pachd" not found`.
    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
            details(resource, name),
        )
    }

    /// A path or resource the server does not serve.
    pub fn no_such_resource() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_owned(),
            json!({}),
        )
    }

    /// `services "pachd" already exists`.
    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
            details(resource, name),
        )
    }

    /// A stale resourceVersion.
    pub fn conflict(resource: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                resource.qualified()
            ),
            details(resource, name),
        )
    }

    /// A field failed validation: `Service "pachd" is invalid: spec.ports[0].nodePort: ...`.
    pub fn invalid(resource: &ResourceType, name: &str, field: &str, problem: &str) -> Self {
        let mut body = details(resource, name);
        body["kind"] = resource.kind.into();
        body["causes"] =
            json!([{ "reason": "FieldValueInvalid", "message": problem, "field": field }]);
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {problem}",
                resource.kind
            ),
            body,
        )
    }

    /// A patch that could not be applied to the object.
    pub fn unprocessable_patch(resource: &ResourceType, name: &str, problem: &str) -> Self {
        let mut body = details(resource, name);
        body["kind"] = resource.kind.into();
        body["causes"] =
            json!([{ "reason": "FieldValueInvalid", "message": problem, "field": "patch" }]);
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: the server rejected our request due to an error in \
                 our request: {problem}",
                resource.kind
            ),
            body,
        )
    }

    /// A request without the server's bearer token, as an API server answers it.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized".to_owned(), json!({}))
    }

    /// A body that does not parse.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message.into(), json!({}))
    }

    /// A verb the resource does not support.
    pub fn method_not_allowed(method: &str) -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            json!({}),
        )
    }

    /// A patch content type the server does not know.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
            json!({}),
        )
    }

    /// A watch from a resourceVersion older than the kept history.
    pub fn gone(version: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {version}"),
            json!({}),
        )
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        })
    }
}

fn details(resource: &ResourceType, name: &str) -> Value {
    let mut body = json!({ "name": name, "kind": resource.plural });
    if !resource.group.is_empty() {
        body["group"] = resource.group.into();
    }
    body
}
