//! The `pods/portforward` subresource, as a kubelet serves it over a WebSocket
//! (`v4.channel.k8s.io`, or the older `channel.k8s.io`): two channels per requested port,
//! data (`2i`) and error (`2i+1`), each opened by a frame carrying the port (two bytes,
//! little-endian); then every binary message is one channel byte and the data. A pod's port
//! reaches the backend registered for the pod's `app` label and that port ([`PodPorts`]),
//! the way a container would listen on it. kubectl's SPDY/3.1 upgrade is served by
//! [`super::spdy`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::status::ApiError;

/// The WebSocket subprotocols served, in order of preference.
pub const PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// Where the pods' ports lead: (namespace, `app` label, port) → a listening address, and
/// how many forwards are open.
#[derive(Debug, Default)]
pub struct PodPorts {
    backends: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    open: Arc<AtomicUsize>,
}

impl PodPorts {
    /// Makes `port` of the pods labelled `app` in `namespace` lead to `backend`.
    pub fn set(&self, namespace: &str, app: &str, port: u16, backend: SocketAddr) {
        self.lock()
            .insert((namespace.to_owned(), app.to_owned(), port), backend);
    }

    /// Makes `port` of the pods labelled `app` in `namespace` lead nowhere (refused).
    pub fn clear(&self, namespace: &str, app: &str, port: u16) {
        self.lock()
            .remove(&(namespace.to_owned(), app.to_owned(), port));
    }

    /// How many port-forward connections are open now.
    pub fn open_forwards(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn backend(&self, namespace: &str, app: &str, port: u16) -> Option<SocketAddr> {
        self.lock()
            .get(&(namespace.to_owned(), app.to_owned(), port))
            .copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, u16), SocketAddr>> {
        self.backends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The ports a request asks for: `ports=650,651`, possibly repeated.
fn requested_ports(query: Option<&str>) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(list) = pair.strip_prefix("ports=") else {
            continue;
        };
        for item in list.split("%2C").flat_map(|part| part.split(',')) {
            if item.is_empty() {
                continue;
            }
            match item.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid port {item:?}: ports must be between 1 and 65535"
                    )));
                }
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"ports\" is required".to_owned(),
        ));
    }
    Ok(ports)
}

/// Answers a port-forward request to `pod` (the object as stored) with a WebSocket upgrade
/// and serves the forward once the connection is upgraded.
pub fn upgrade(
    ports_of_pods: Arc<PodPorts>,
    pod: &Value,
    query: Option<&str>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if pod["status"]["phase"].as_str() != Some("Running") {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running"
        )));
    }
    let app = pod["metadata"]["labels"]["app"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if header_has(headers, header::UPGRADE, "SPDY/3.1") {
        return spdy_upgrade(ports_of_pods, name, namespace, app, request);
    }
    let ports = requested_ports(query)?;
    let is_websocket = header_has(headers, header::UPGRADE, "websocket");
    if !is_websocket {
        return Err(ApiError::bad_request(
            "unable to upgrade connection: a port-forward is a WebSocket (v4.channel.k8s.io, \
             channel.k8s.io) or SPDY/3.1 (portforward.k8s.io) upgrade"
                .to_owned(),
        ));
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let Some(protocol) = offered
        .iter()
        .find(|protocol| PROTOCOLS.contains(&protocol.as_str()))
        .cloned()
    else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: none of the subprotocols {offered:?} is served \
             (the ankus sandbox serves {PROTOCOLS:?})"
        )));
    };
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(ApiError::bad_request(
            "unable to upgrade connection: no Sec-WebSocket-Key".to_owned(),
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let backends: Vec<Option<SocketAddr>> = ports
        .iter()
        .map(|port| ports_of_pods.backend(&namespace, &app, *port))
        .collect();
    let open = ports_of_pods.open.clone();
    let mut request = request;
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(&mut request).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!("port-forward to {namespace}/{name}: upgrade failed: {error}");
                return;
            }
        };
        open.fetch_add(1, Ordering::SeqCst);
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        forward(socket, &name, &ports, &backends).await;
        open.fetch_sub(1, Ordering::SeqCst);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .map_err(|error| ApiError::bad_request(format!("unable to upgrade connection: {error}")))
}

/// Answers kubectl's `Upgrade: SPDY/3.1` request and serves the connection with
/// [`super::spdy`].
fn spdy_upgrade(
    ports_of_pods: Arc<PodPorts>,
    name: String,
    namespace: String,
    app: String,
    mut request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if !header_has(
        request.headers(),
        header::HeaderName::from_static("x-stream-protocol-version"),
        super::spdy::PORT_FORWARD_PROTOCOL,
    ) {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: the SPDY port-forward protocol is {}",
            super::spdy::PORT_FORWARD_PROTOCOL
        )));
    }
    let open = ports_of_pods.open.clone();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(&mut request).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!("port-forward to {namespace}/{name}: upgrade failed: {error}");
                return;
            }
        };
        open.fetch_add(1, Ordering::SeqCst);
        super::spdy::serve(TokioIo::new(upgraded), name, move |port| {
            ports_of_pods.backend(&namespace, &app, port)
        })
        .await;
        open.fetch_sub(1, Ordering::SeqCst);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(
            "X-Stream-Protocol-Version",
            super::spdy::PORT_FORWARD_PROTOCOL,
        )
        .body(Body::empty())
        .map_err(|error| ApiError::bad_request(format!("unable to upgrade connection: {error}")))
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// What a port's reader task reports.
enum FromPort {
    Data(u8, Vec<u8>),
    Closed,
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// Serves one upgraded connection until the client closes it or every port's connection
/// has ended; then the pod-side connections are closed.
async fn forward<S>(
    mut socket: WebSocketStream<S>,
    pod: &str,
    ports: &[u16],
    backends: &[Option<SocketAddr>],
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<FromPort>(16);
    let mut writers = Vec::with_capacity(ports.len());
    let mut readers = Vec::with_capacity(ports.len());
    let mut open_ports = 0;
    for (index, (port, backend)) in ports.iter().zip(backends).enumerate() {
        let data_channel = (2 * index) as u8;
        let opening = port.to_le_bytes();
        let connected = match backend {
            Some(backend) => TcpStream::connect(backend)
                .await
                .map_err(|error| error.to_string()),
            None => Err("connection refused".to_owned()),
        };
        let sent = socket.send(frame(data_channel, &opening)).await.is_ok()
            && socket.send(frame(data_channel + 1, &opening)).await.is_ok();
        if !sent {
            return;
        }
        match connected {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (mut read_half, write_half) = stream.into_split();
                writers.push(Some(write_half));
                open_ports += 1;
                let sender = sender.clone();
                readers.push(tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match read_half.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(count) => {
                                let data = buffer[..count].to_vec();
                                if sender
                                    .send(FromPort::Data(data_channel, data))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = sender.send(FromPort::Closed).await;
                }));
            }
            Err(reason) => {
                writers.push(None);
                let message = format!(
                    "error forwarding port {port} to pod {pod}: dial tcp 127.0.0.1:{port}: {reason}"
                );
                if socket
                    .send(frame(data_channel + 1, message.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    drop(sender);
    // With no port connected, the connection stays open until the client closes it, as a
    // kubelet's does: closing it first could cut the error report off in the client.
    let any_connected = open_ports > 0;
    while open_ports > 0 || !any_connected {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) if !bytes.is_empty() => {
                    let channel = usize::from(bytes[0]);
                    if channel % 2 == 0
                        && let Some(Some(writer)) = writers.get_mut(channel / 2)
                        && writer.write_all(&bytes[1..]).await.is_err()
                    {
                        writers[channel / 2] = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            item = receiver.recv(), if any_connected => match item {
                Some(FromPort::Data(channel, data)) => {
                    if socket.send(frame(channel, &data)).await.is_err() {
                        break;
                    }
                }
                Some(FromPort::Closed) => open_ports -= 1,
                None => break,
            },
        }
    }
    for reader in readers {
        reader.abort();
    }
    drop(writers);
    let _ = socket.close(None).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_every_ports_parameter_comma_separated_or_not() {
        assert_eq!(
            requested_ports(Some("&ports=650%2C651&ports=30652")).expect("ports"),
            vec![650, 651, 30652]
        );
        assert!(requested_ports(Some("ports=0")).is_err());
        assert!(requested_ports(None).is_err());
    }
}
