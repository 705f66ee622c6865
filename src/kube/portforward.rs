//! Port-forwards to pods: the `pods/portforward` subresource over a WebSocket, through
//! kube-rs, one connection per forwarded stream (the way pachctl reaches a context that has
//! no address). Nothing listens on a local port: the stream is handed to the caller.

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
    /// Kept so the forward's task and error channel live as long as the stream.
    _forwarder: kube::api::Portforwarder,
}

impl std::fmt::Debug for ForwardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedStream").finish_non_exhaustive()
    }
}

impl AsyncRead for ForwardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ForwardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
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
        Ok(ForwardedStream {
            stream,
            _forwarder: forwarder,
        })
    }
}
