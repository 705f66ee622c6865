//! Which kubeconfig to read and what is in it: an explicit path, then the sandbox's, then
//! `KUBECONFIG`, then `~/.kube/config`; in-cluster configuration when none exists.

use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;

use super::error::KubeError;

/// The kubeconfig file to use: `explicit`, else `preset` (the sandbox's), else the first
/// existing file of `KUBECONFIG`, else `~/.kube/config` when it exists.
pub fn kubeconfig_path(explicit: Option<&Path>, preset: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit.or(preset) {
        return Some(path.to_path_buf());
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG")
        && let Some(found) = std::env::split_paths(&paths).find(|path| path.is_file())
    {
        return Some(found);
    }
    let home = dirs::home_dir()?.join(".kube").join("config");
    home.is_file().then_some(home)
}

/// Reads a kubeconfig file. A file that is not a kubeconfig is refused without quoting it:
/// the YAML parser's message shows the text it choked on, and the file may be anything.
pub fn read(path: &Path) -> Result<Kubeconfig, KubeError> {
    register_secrets(path);
    Kubeconfig::read_from(path).map_err(|error| KubeError::Config {
        path: path.display().to_string(),
        message: match error {
            kube::config::KubeconfigError::Parse(_) => {
                "it is not a kubeconfig (YAML with clusters, contexts and users)".to_owned()
            }
            other => crate::kind::chain_text(&other),
        },
    })
}

/// Where Kubernetes mounts a pod's service-account token, which in-cluster configuration
/// sends as its bearer token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Registers the bearer token kept in the file at `path` for redaction, if it can be read.
pub fn register_token_file(path: &Path) {
    if let Ok(token) = std::fs::read_to_string(path) {
        crate::redact::register(&token);
    }
}

/// Registers the credentials of every user in the kubeconfig at `path` (bearer tokens and
/// the files holding them, passwords, client keys) for redaction. kube-rs keeps them in
/// `SecretString`s; the file itself is read again here so no secrecy API is needed.
fn register_secrets(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(document) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return;
    };
    let Some(users) = document.get("users").and_then(|users| users.as_sequence()) else {
        return;
    };
    for user in users {
        for key in ["token", "password", "client-key-data"] {
            if let Some(secret) = user
                .get("user")
                .and_then(|user| user.get(key))
                .and_then(|value| value.as_str())
            {
                crate::redact::register(secret);
            }
        }
        if let Some(file) = user
            .get("user")
            .and_then(|user| user.get("tokenFile"))
            .and_then(|value| value.as_str())
        {
            // Relative paths are relative to the kubeconfig, as kubectl reads them.
            let file = Path::new(file);
            match path.parent() {
                Some(dir) if file.is_relative() => register_token_file(&dir.join(file)),
                _ => register_token_file(file),
            }
        }
    }
}

/// The contexts of a kubeconfig, in file order.
pub fn contexts(config: &Kubeconfig) -> Vec<String> {
    config
        .contexts
        .iter()
        .map(|context| context.name.clone())
        .collect()
}

/// The namespace a context names, if any.
pub fn context_namespace(config: &Kubeconfig, context: &str) -> Option<String> {
    config
        .contexts
        .iter()
        .find(|named| named.name == context)
        .and_then(|named| named.context.as_ref())
        .and_then(|context| context.namespace.clone())
}

/// The server URL of a context, if the kubeconfig names one.
pub fn context_server(config: &Kubeconfig, context: &str) -> Option<String> {
    let cluster_name = config
        .contexts
        .iter()
        .find(|named| named.name == context)
        .and_then(|named| named.context.as_ref())
        .map(|context| context.cluster.clone())?;
    config
        .clusters
        .iter()
        .find(|cluster| cluster.name == cluster_name)
        .and_then(|cluster| cluster.cluster.as_ref())
        .and_then(|cluster| cluster.server.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_kubeconfig_registers_its_tokens_and_token_files_for_redaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("sa-token"), "file-token-0c9e4b7d\n").expect("write");
        let kubeconfig = dir.path().join("config");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nusers:\n\
             - name: inline\n  user:\n    token: inline-token-5d2a8f31\n\
             - name: from-file\n  user:\n    tokenFile: sa-token\n",
        )
        .expect("write");
        read(&kubeconfig).expect("a valid kubeconfig");
        assert_eq!(
            crate::redact::redact("Bearer inline-token-5d2a8f31 / file-token-0c9e4b7d"),
            "Bearer *** / ***"
        );
    }
}
