//! Port-forwards to pods: the `pods/portforward` subresource over a WebSocket, through
//! kube-rs, one connection per forwarded stream (the way pachctl reaches a context that has
//! no address). Nothing listens on a local port: the stream is handed to the caller.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::client::KubeClient;
use super::error::KubeError;

/// One forwarded byte stream to a pod's port. Dropping it ends the stream, and with it the
/// WebSocket connection that carries it.
pub struct ForwardedStream {
    stream: DuplexStream,
    /// What the pod side reported on the port's error channel; read when the stream ends,
    /// so a refused port reads as that error rather than as an empty stream.
    error: Option<Pin<Box<dyn Future<Output = Option<String>> + Send>>>,
    /// Where that report is also left for the caller (see [`ForwardedStream::report_to`]).
    report: Option<PodReport>,
    /// Kept so the forward's task lives as long as the stream.
    _forwarder: kube::api::Portforwarder,
}

impl std::fmt::Debug for ForwardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedStream").finish_non_exhaustive()
    }
}

/// A slot the pod side's report on a forwarded stream is left in, for a caller whose own
/// errors lose the stream's (hyper reports a broken connection as just "closed").
pub type PodReport = std::sync::Arc<std::sync::Mutex<Option<String>>>;

impl ForwardedStream {
    /// Leaves the pod side's report in `report` too when the stream fails.
    pub fn report_to(mut self, report: PodReport) -> ForwardedStream {
        self.report = Some(report);
        self
    }

    /// The pod side's report, once it came: a refused port reads as that error rather than
    /// as a stream that never answers, ends, or breaks. Polling it wakes the reader when
    /// the report arrives.
    fn pod_error(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let message = match self.error.as_mut()?.as_mut().poll(cx) {
            Poll::Ready(message) => message,
            Poll::Pending => return None,
        };
        self.error = None;
        let message = message?;
        if let Some(report) = &self.report {
            *report
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(message.clone());
        }
        Some(std::io::Error::other(message))
    }
}

impl AsyncRead for ForwardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Asked first, and whether or not data is waiting: a refused port sends nothing on
        // the data channel, and the connection may stay open.
        if let Some(error) = self.pod_error(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ForwardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.pod_error(cx).unwrap_or(error))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.pod_error(cx).unwrap_or(error))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl KubeClient {
    /// The pod a port-forward to pods labelled `selector` in `namespace` goes to: one of
    /// them at random, whatever its phase, as pachctl's `PortForwarder.Run` picks it.
    pub async fn pick_pod(&self, namespace: &str, selector: &str) -> Result<String, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let action = format!("list pods labelled {selector} in namespace {namespace}");
        let listed = tokio::time::timeout(
            super::client::DEFAULT_REQUEST_TIMEOUT,
            pods.list(&ListParams::default().labels(selector)),
        )
        .await
        .map_err(|_| KubeError::RequestTimeout {
            action: action.clone(),
            server: self.server().to_owned(),
            seconds: super::client::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
            attempts: super::error::Attempts(1),
        })?
        .map_err(|error| KubeError::from_kube(error, &action, self.server()))?;
        let names: Vec<String> = listed
            .items
            .into_iter()
            .filter_map(|pod| pod.metadata.name)
            .collect();
        if names.is_empty() {
            return Err(KubeError::NoPods {
                selector: selector.to_owned(),
                namespace: namespace.to_owned(),
            });
        }
        Ok(names[rand::random_range(0..names.len())].clone())
    }

    /// Opens a stream to `port` of pod `pod` in `namespace`.
    pub async fn forward_port(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<ForwardedStream, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let action = format!("port-forward to port {port} of pod {pod} in namespace {namespace}");
        let mut forwarder = tokio::time::timeout(
            super::client::DEFAULT_REQUEST_TIMEOUT,
            pods.portforward(pod, &[port]),
        )
        .await
        .map_err(|_| KubeError::RequestTimeout {
            action: action.clone(),
            server: self.server().to_owned(),
            seconds: super::client::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
            attempts: super::error::Attempts(1),
        })?
        .map_err(|error| KubeError::from_kube(error, &action, self.server()))?;
        let stream = forwarder
            .take_stream(port)
            .ok_or_else(|| KubeError::Other {
                action: action.clone(),
                message: "the forward has no stream for the port".to_owned(),
            })?;
        let error = forwarder
            .take_error(port)
            .map(|error| Box::pin(error) as Pin<Box<dyn Future<Output = Option<String>> + Send>>);
        Ok(ForwardedStream {
            stream,
            error,
            report: None,
            _forwarder: forwarder,
        })
    }
}
