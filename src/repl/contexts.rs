//! Context names for completion inside `connect("`: pachctl's config (`v2.contexts`), read
//! directly, and the kubeconfig's contexts, read by the same loader `kube::connect` uses
//! (every file of `KUBECONFIG`, merged), so completion offers what connecting accepts.

use std::path::{Path, PathBuf};

fn home() -> Option<PathBuf> {
    dirs::home_dir()
}

/// The pachctl config: the host's preset path, `$PACH_CONFIG`, or `~/.pachyderm/config.json`.
fn pach_config_path(preset: Option<&Path>) -> Option<PathBuf> {
    preset
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PACH_CONFIG").map(PathBuf::from))
        .or_else(|| home().map(|home| home.join(".pachyderm/config.json")))
}

/// Context names in a pachctl config document.
pub fn pach_contexts(text: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|config| {
            config["v2"]["contexts"]
                .as_object()
                .map(|contexts| contexts.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// Every context name known to pachctl and kubectl, sorted, without duplicates.
pub fn all(pach_config: Option<&Path>, kubeconfig: Option<&Path>) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(path) = pach_config_path(pach_config)
        && let Ok(text) = std::fs::read_to_string(path)
    {
        names.extend(pach_contexts(&text));
    }
    // A kubeconfig that cannot be read offers no names; connecting says why.
    if let Ok(Some(loaded)) = crate::kube::config::load(None, kubeconfig) {
        names.extend(crate::kube::config::contexts(&loaded.kubeconfig));
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pachctl_context_names() {
        let pach = r#"{"user_id":"x","v2":{"active_context":"old","contexts":{"old":{"pachd_address":"grpc://a:1"},"new":{}}}}"#;
        assert_eq!(pach_contexts(pach), vec!["old", "new"]);
        assert!(pach_contexts("not json").is_empty());
    }

    #[test]
    fn preset_paths_win() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pach = dir.path().join("pach.json");
        std::fs::write(&pach, r#"{"v2":{"contexts":{"sandbox-old":{}}}}"#).expect("write");
        let kube = dir.path().join("kube.yaml");
        std::fs::write(
            &kube,
            "contexts:\n- name: sandbox-k8s\n  context: {cluster: a, user: b}\n",
        )
        .expect("write");
        assert_eq!(
            all(Some(&pach), Some(&kube)),
            vec!["sandbox-k8s", "sandbox-old"]
        );
    }
}
