//! The one place library errors become script errors: a `HostError` value with `kind`,
//! `message` and `chain` that scripts catch and branch on.

use rhai::{Dynamic, EvalAltResult, Position};

use crate::kind::{Kind, Kinded};

/// An error raised by a binding, as scripts see it in `catch (e)`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostError {
    /// The kind, e.g. `not_found`.
    pub kind: Kind,
    /// The whole message, causes included once.
    pub message: String,
    /// Structured facts from the library error (`Kinded::details`), `()` in scripts when
    /// there are none.
    pub details: Option<serde_json::Value>,
}

impl HostError {
    /// A new error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        HostError {
            kind,
            message: message.into(),
            details: None,
        }
    }

    /// Converts any library error, keeping its kind and its cause chain.
    pub fn from_error<E: Kinded + 'static>(error: &E) -> Self {
        HostError {
            details: error.details(),
            ..HostError::new(error.kind(), crate::kind::chain_text(error))
        }
    }

    /// The error as a Rhai runtime error scripts can catch.
    pub fn into_rhai(self, position: Position) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(self), position))
    }

    /// Finds a `HostError` inside a Rhai error (through call frames), if one is there.
    pub fn find(error: &EvalAltResult) -> Option<HostError> {
        match error {
            EvalAltResult::ErrorRuntime(value, _) => value.clone().try_cast::<HostError>(),
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | EvalAltResult::ErrorInModule(_, inner, _) => HostError::find(inner),
            _ => None,
        }
    }
}

/// What the journal keeps of a failed step: `{kind, message, details?}` — the message a user
/// read, not the Rust type of the error value (`Runtime error: ankus::host::error::HostError`).
pub fn failure_record(error: &EvalAltResult) -> serde_json::Value {
    let mut innermost = error;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = innermost
    {
        innermost = inner;
    }
    let (kind, message, details) = match HostError::find(error) {
        Some(found) => (found.kind.to_string(), found.message, found.details),
        None => match innermost {
            // `throw "text"`: the thrown value itself.
            EvalAltResult::ErrorRuntime(value, _) => {
                (Kind::Failed.to_string(), value.to_string(), None)
            }
            // Display without " (line N, position M)": the journal names the step instead.
            other => {
                let text = other.to_string();
                let text = match text.rfind(" (line ") {
                    Some(at) if text.ends_with(')') => text[..at].to_owned(),
                    _ => text,
                };
                (Kind::Failed.to_string(), text, None)
            }
        },
    };
    let mut record = serde_json::json!({ "kind": kind, "message": message });
    if let Some(details) = details {
        record["details"] = details;
    }
    record
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

/// Registers `HostError` with its getters so scripts can read `e.kind` and `e.message`.
pub fn register(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<HostError>("Error")
        .register_get("kind", |error: &mut HostError| {
            error.kind.as_str().to_owned()
        })
        .register_get("message", |error: &mut HostError| error.message.clone())
        .register_get("details", |error: &mut HostError| match &error.details {
            Some(details) => super::convert::from_json(details),
            None => Dynamic::UNIT,
        })
        .register_fn("to_string", |error: &mut HostError| error.to_string())
        .register_fn("to_debug", |error: &mut HostError| {
            format!("Error({error})")
        });
}

/// Shorthand for a binding result.
pub type BindingResult<T> = Result<T, Box<EvalAltResult>>;

/// Converts a library error into a catchable script error at `position`.
pub fn script_error<E: Kinded + 'static>(error: E, position: Position) -> Box<EvalAltResult> {
    HostError::from_error(&error).into_rhai(position)
}

/// A catchable script error of `kind` with `message`.
pub fn script_fail(
    kind: Kind,
    message: impl Into<String>,
    position: Position,
) -> Box<EvalAltResult> {
    HostError::new(kind, message).into_rhai(position)
}
