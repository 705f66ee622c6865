//! NodePorts that really open and close: for one namespace's Service, a TCP listener on
//! `node_addr:nodePort` for every port the Service declares, forwarding connections to the
//! backend registered for that port's name. Changing a nodePort closes the old listener
//! before the API request that changed it is answered.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::resources;
use super::state::{KubeState, StateObserver, WatchEvent};

/// A loopback address no other sandbox cluster uses: 127.A.B.C with A.B from the process id
/// and C from a per-process counter, so parallel test processes do not collide.
pub fn allocate_node_addr() -> Ipv4Addr {
    static COUNTER: AtomicU32 = AtomicU32::new(2);
    let pid = std::process::id() & 0xffff;
    loop {
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff;
        let [high, low] = (pid as u16).to_be_bytes();
        // .0 and .255 confuse some tools, and 127.0.0.1 is everybody's.
        if serial == 0 || serial == 255 || (high == 0 && low == 0 && serial == 1) {
            continue;
        }
        return Ipv4Addr::new(127, high, low, serial as u8);
    }
}

struct Listener {
    port_name: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Bound {
    listeners: BTreeMap<u16, Listener>,
    revision: u64,
}

/// Keeps a Service's NodePorts listening on a node address.
pub struct NodePortForwarder {
    namespace: String,
    service: String,
    node_addr: Ipv4Addr,
    backends: Arc<Mutex<HashMap<String, SocketAddr>>>,
    bound: tokio::sync::Mutex<Bound>,
}

fn declared_ports(service: Option<&Value>) -> BTreeMap<u16, String> {
    let Some(service) = service else {
        return BTreeMap::new();
    };
    if !matches!(
        service["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) {
        return BTreeMap::new();
    }
    service["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|port| {
                    let node_port = u16::try_from(port["nodePort"].as_i64()?).ok()?;
                    Some((node_port, port["name"].as_str().unwrap_or("").to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn forward(
    mut inbound: TcpStream,
    port_name: String,
    backends: Arc<Mutex<HashMap<String, SocketAddr>>>,
) {
    let backend = backends
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&port_name)
        .copied();
    // Without a backend the port still accepts, then closes: the node is reachable.
    let Some(backend) = backend else {
        return;
    };
    match TcpStream::connect(backend).await {
        Ok(mut outbound) => {
            // A kube-proxy forwards segments as they come; without NODELAY on both legs each
            // small gRPC frame waits out Nagle against delayed ACKs (~40 ms per call).
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        }
        Err(error) => {
            tracing::debug!("nodeport {port_name}: backend {backend} refused: {error}");
        }
    }
}

impl NodePortForwarder {
    /// Starts following `service` in `namespace`, binding its NodePorts on `node_addr`.
    pub async fn start(
        state: &Arc<KubeState>,
        namespace: &str,
        service: &str,
        node_addr: Ipv4Addr,
    ) -> Arc<NodePortForwarder> {
        let forwarder = Arc::new(NodePortForwarder {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            node_addr,
            backends: Arc::new(Mutex::new(HashMap::new())),
            bound: tokio::sync::Mutex::new(Bound::default()),
        });
        state.add_observer(forwarder.clone());
        let services = resources::find("", "v1", "services").expect("services are served");
        let revision = state.revision();
        let current = state.get(services, namespace, service).ok();
        forwarder.sync(current.as_ref(), revision).await;
        forwarder
    }

    /// The node address listeners bind on.
    pub fn node_addr(&self) -> Ipv4Addr {
        self.node_addr
    }

    /// Sends connections to the Service port named `port_name` to `backend`.
    pub fn set_backend(&self, port_name: &str, backend: SocketAddr) {
        self.backends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(port_name.to_owned(), backend);
    }

    /// Stops forwarding the port named `port_name` (it still accepts and closes).
    pub fn clear_backend(&self, port_name: &str) {
        self.backends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(port_name);
    }

    /// The nodePorts currently listening.
    pub async fn node_ports(&self) -> Vec<u16> {
        self.bound.lock().await.listeners.keys().copied().collect()
    }

    /// Closes every listener (the sandbox is shutting down).
    pub async fn stop(&self) {
        let mut bound = self.bound.lock().await;
        bound.revision = u64::MAX;
        let listeners = std::mem::take(&mut bound.listeners);
        for (_, listener) in listeners {
            listener.stop.cancel();
            let _ = listener.task.await;
        }
    }

    async fn sync(&self, service: Option<&Value>, revision: u64) {
        let mut bound = self.bound.lock().await;
        if revision < bound.revision {
            return;
        }
        bound.revision = revision;
        let wanted = declared_ports(service);
        let stale: Vec<u16> = bound
            .listeners
            .iter()
            .filter(|(node_port, listener)| wanted.get(node_port) != Some(&listener.port_name))
            .map(|(node_port, _)| *node_port)
            .collect();
        for node_port in stale {
            if let Some(listener) = bound.listeners.remove(&node_port) {
                listener.stop.cancel();
                let _ = listener.task.await;
            }
        }
        for (node_port, port_name) in wanted {
            if bound.listeners.contains_key(&node_port) {
                continue;
            }
            let address = SocketAddr::from((self.node_addr, node_port));
            let socket = match TcpListener::bind(address).await {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::warn!(
                        "cannot listen on {address} for {}/{} port {port_name}: {error}",
                        self.namespace,
                        self.service
                    );
                    continue;
                }
            };
            let stop = CancellationToken::new();
            let task_stop = stop.clone();
            let backends = self.backends.clone();
            let task_port_name = port_name.clone();
            let task = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = task_stop.cancelled() => return,
                        accepted = socket.accept() => {
                            if let Ok((inbound, _)) = accepted {
                                tokio::spawn(forward(inbound, task_port_name.clone(), backends.clone()));
                            }
                        }
                    }
                }
            });
            bound.listeners.insert(
                node_port,
                Listener {
                    port_name,
                    stop,
                    task,
                },
            );
        }
    }
}

impl StateObserver for NodePortForwarder {
    fn changed<'a>(&'a self, event: &'a WatchEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if event.resource.kind != "Service"
                || event.namespace() != self.namespace
                || event.name() != self.service
            {
                return;
            }
            let service = (event.event_type != "DELETED").then_some(&event.object);
            self.sync(service, event.revision).await;
        })
    }
}
