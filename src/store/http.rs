//! HTTP settings shared by the cloud stores: the request timeout, and a connector that counts
//! the transient failures `object_store` retries on its own (so a sync can report them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};

use super::error::StoreError;
use super::location::StoreUrl;

/// How long a request may wait for its response, or for more of the response body, when
/// the store options do not say (`request_timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The `request_timeout` store option (seconds, may be fractional), or the default.
pub fn request_timeout(url: &StoreUrl, value: Option<&str>) -> Result<Duration, StoreError> {
    let Some(value) = value else {
        return Ok(DEFAULT_REQUEST_TIMEOUT);
    };
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| StoreError::BadOption {
            url: url.to_string(),
            key: "request_timeout".to_owned(),
            reason: format!("must be a positive number of seconds, not '{value}'"),
        })
}

/// Client options for a cloud store: a stalled request (no response, or a response body
/// that stops) fails after `timeout` and is retried. There is deliberately no limit on a
/// whole request, so a large download that keeps making progress is never cut off.
pub fn client_options(timeout: Duration) -> ClientOptions {
    ClientOptions::new()
        .with_timeout_disabled()
        .with_read_timeout(timeout)
}

/// Transient failures met by the requests of one store: every response with status 408, 429
/// or 5xx, every request that failed to connect, was cut off or timed out, and every
/// response body that broke off. These are the failures `object_store` retries by itself
/// (until its retry limit), and the ones our server-side copy requests hand to the sync
/// engine, which re-attempts the object. Clones share the count.
#[derive(Clone, Debug, Default)]
pub struct TransientCounter(Arc<AtomicU64>);

impl TransientCounter {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether `object_store` retries a response with this status (and so do ankus' own S3
/// requests).
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Whether a request failed the way `object_store` retries (timeouts and interrupted
/// requests only when the request is idempotent).
fn is_transient_error(error: &HttpError) -> bool {
    matches!(
        error.kind(),
        HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
    )
}

/// Makes reqwest clients (as `object_store` would) that count transient failures into a
/// `TransientCounter`.
#[derive(Debug)]
pub struct CountingConnector {
    counter: TransientCounter,
}

impl CountingConnector {
    /// A connector counting into `counter`.
    pub fn new(counter: TransientCounter) -> CountingConnector {
        CountingConnector { counter }
    }
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // reqwest is built without a crypto provider of its own (one provider in the
        // binary: ring); it takes the process default, which must exist before it builds.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(HttpClient::new(CountingService {
            inner: ReqwestConnector::default().connect(options)?,
            counter: self.counter.clone(),
        }))
    }
}

#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counter: TransientCounter,
}

// `HttpService` is declared with `async_trait`; this is its expanded signature, written out
// rather than adding the macro crate for one impl.
impl HttpService for CountingService {
    fn call<'life0, 'async_trait>(
        &'life0 self,
        request: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            match self.inner.execute(request).await {
                Ok(response) => {
                    if is_transient_status(response.status()) {
                        self.counter.add();
                    }
                    let counter = self.counter.clone();
                    Ok(response.map(|body| {
                        HttpResponseBody::new(body.map_err(move |error| {
                            counter.add();
                            error
                        }))
                    }))
                }
                Err(error) => {
                    if is_transient_error(&error) {
                        self.counter.add();
                    }
                    Err(error)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_is_positive_seconds() {
        let url = StoreUrl::parse("s3://bucket").expect("url");
        assert_eq!(
            request_timeout(&url, None).expect("default"),
            DEFAULT_REQUEST_TIMEOUT
        );
        assert_eq!(
            request_timeout(&url, Some("2.5")).expect("fractional"),
            Duration::from_millis(2500)
        );
        for bad in ["0", "-1", "soon", "inf"] {
            let error = request_timeout(&url, Some(bad)).expect_err(bad);
            assert!(
                error
                    .to_string()
                    .contains("option 'request_timeout' must be a positive"),
                "{error}"
            );
        }
    }

    #[test]
    fn statuses_object_store_retries_are_transient() {
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(is_transient_status(
                StatusCode::from_u16(status).expect("status")
            ));
        }
        for status in [200, 304, 400, 403, 404, 409] {
            assert!(!is_transient_status(
                StatusCode::from_u16(status).expect("status")
            ));
        }
    }
}
