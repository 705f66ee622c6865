//! Context names for completion inside `connect("`: pachctl's config (`v2.contexts`) and the
//! kubeconfig (`contexts[].name`), read directly so the REPL needs no client.

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

/// The kubeconfig files: the host's preset path, each entry of `$KUBECONFIG`, or
/// `~/.kube/config`.
fn kubeconfig_paths(preset: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = preset {
        return vec![path.to_path_buf()];
    }
    match std::env::var_os("KUBECONFIG") {
        Some(list) => std::env::split_paths(&list).collect(),
        None => home()
            .map(|home| vec![home.join(".kube/config")])
            .unwrap_or_default(),
    }
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

/// Context names in a kubeconfig document.
pub fn kube_contexts(text: &str) -> Vec<String> {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|config| {
            config.get("contexts").and_then(|contexts| {
                contexts.as_sequence().map(|list| {
                    list.iter()
                        .filter_map(|context| context.get("name")?.as_str().map(str::to_owned))
                        .collect()
                })
            })
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
    for path in kubeconfig_paths(kubeconfig) {
        if let Ok(text) = std::fs::read_to_string(path) {
            names.extend(kube_contexts(&text));
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pachctl_and_kubeconfig_context_names() {
        let pach = r#"{"user_id":"x","v2":{"active_context":"old","contexts":{"old":{"pachd_address":"grpc://a:1"},"new":{}}}}"#;
        assert_eq!(pach_contexts(pach), vec!["old", "new"]);
        let kube = "apiVersion: v1\ncontexts:\n- name: kind-old\n  context: {cluster: a, user: b}\n- name: prod\n  context: {cluster: c, user: d}\n";
        assert_eq!(kube_contexts(kube), vec!["kind-old", "prod"]);
        assert!(pach_contexts("not json").is_empty());
    }

    #[test]
    fn preset_paths_win() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pach = dir.path().join("pach.json");
        std::fs::write(&pach, r#"{"v2":{"contexts":{"sandbox-old":{}}}}"#).expect("write");
        let kube = dir.path().join("kube.yaml");
        std::fs::write(&kube, "contexts:\n- name: sandbox-k8s\n").expect("write");
        assert_eq!(
            all(Some(&pach), Some(&kube)),
            vec!["sandbox-k8s", "sandbox-old"]
        );
    }
}
