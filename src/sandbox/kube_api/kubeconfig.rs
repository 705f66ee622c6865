//! Writes a kubeconfig whose contexts point at emulated API servers.

use std::path::Path;

use serde_json::json;

/// The bearer token the emulated API server requires and every generated kubeconfig carries.
/// Fixed rather than per sandbox because the real-pachd peer (`../shared/peers`) writes this
/// value into its pachd's service-account token.
pub const SANDBOX_TOKEN: &str = "ankus-sandbox";

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

/// The kubeconfig text (YAML) for `contexts`, with `current` as the current context.
pub fn kubeconfig_yaml(contexts: &[KubeconfigContext], current: &str) -> String {
    let clusters: Vec<_> = contexts
        .iter()
        .map(|context| json!({ "name": context.name, "cluster": { "server": context.server } }))
        .collect();
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

/// Writes the kubeconfig for `contexts` to `path` atomically.
pub fn write_kubeconfig(
    path: &Path,
    contexts: &[KubeconfigContext],
    current: &str,
) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, kubeconfig_yaml(contexts, current).as_bytes())
}
