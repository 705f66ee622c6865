//! Writes a kubeconfig whose contexts point at emulated API servers.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

/// The bearer token the emulated API server requires and every generated kubeconfig carries.
/// Fixed rather than per sandbox because the real-pachd peer (`../shared/peers`) writes this
/// value into its pachd's service-account token.
pub const SANDBOX_TOKEN: &str = "ankus-sandbox";

/// The name of the plain-HTTP cluster entry of a sandbox kubeconfig.
pub const PLAIN_HTTP_CLUSTER: &str = "plain-http";

/// One context of a generated kubeconfig.
#[derive(Clone, Debug)]
pub struct KubeconfigContext {
    /// Context name (`old`, `new`).
    pub name: String,
    /// API server URL, e.g. `http://127.0.0.1:40123`.
    pub server: String,
    /// Default namespace of the context.
    pub namespace: String,
}

fn document(clusters: Vec<Value>, contexts: &[KubeconfigContext], current: &str) -> String {
    let entries: Vec<_> = contexts
        .iter()
        .map(|context| {
            json!({
                "name": context.name,
                "context": { "cluster": context.name, "user": "sandbox", "namespace": context.namespace },
            })
        })
        .collect();
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "contexts": entries,
        "current-context": current,
        "users": [{ "name": "sandbox", "user": { "token": SANDBOX_TOKEN } }],
    });
    serde_yaml::to_string(&document).unwrap_or_default()
}

/// The kubeconfig text (YAML) for `contexts`, with `current` as the current context.
pub fn kubeconfig_yaml(contexts: &[KubeconfigContext], current: &str) -> String {
    let clusters = contexts
        .iter()
        .map(|context| json!({ "name": context.name, "cluster": { "server": context.server } }))
        .collect();
    document(clusters, contexts, current)
}

/// Writes the kubeconfig for `contexts` to `path` atomically. kubectl sends the token only to
/// `https://` servers; kube-rs sends it to plain `http://` ones too.
pub fn write_kubeconfig(
    path: &Path,
    contexts: &[KubeconfigContext],
    current: &str,
) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, kubeconfig_yaml(contexts, current).as_bytes())
}

/// The kubeconfig of an emulated API server at `address`: one HTTPS context per namespace,
/// trusting the server's CA (`ca_pem`), and before them a cluster entry for the same port
/// over plain HTTP. That entry has no context; TLS terminators in front of the sandbox read
/// it (the real-pachd peer takes the first `server:` line).
pub fn sandbox_kubeconfig_yaml(
    address: SocketAddr,
    ca_pem: &str,
    namespaces: &[&str],
    current: &str,
) -> String {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut clusters = vec![json!({
        "name": PLAIN_HTTP_CLUSTER,
        "cluster": { "server": format!("http://{address}") },
    })];
    let contexts: Vec<KubeconfigContext> = namespaces
        .iter()
        .map(|namespace| KubeconfigContext {
            name: (*namespace).to_owned(),
            server: format!("https://{address}"),
            namespace: (*namespace).to_owned(),
        })
        .collect();
    clusters.extend(contexts.iter().map(|context| {
        json!({
            "name": context.name,
            "cluster": { "server": context.server, "certificate-authority-data": ca_data },
        })
    }));
    document(clusters, &contexts, current)
}

/// Writes [`sandbox_kubeconfig_yaml`] to `path` atomically.
pub fn write_sandbox_kubeconfig(
    path: &Path,
    address: SocketAddr,
    ca_pem: &str,
    namespaces: &[&str],
    current: &str,
) -> std::io::Result<()> {
    let text = sandbox_kubeconfig_yaml(address, ca_pem, namespaces, current);
    crate::fsutil::write_atomic(path, text.as_bytes())
}
