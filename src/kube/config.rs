//! Which kubeconfig to read and what is in it: an explicit path, then the sandbox's, then
//! every file `KUBECONFIG` lists, merged as kubectl merges them, then `~/.kube/config`;
//! in-cluster configuration when none exists. Also which proxy reaches the API server.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;

use super::error::KubeError;

/// A kubeconfig as read from its files, merged.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The merged configuration.
    pub kubeconfig: Kubeconfig,
    /// The files read, in order, joined with the platform's path-list separator.
    pub source: String,
}

/// The kubeconfig files to read, in merge order: `explicit`, else `preset` (the sandbox's),
/// else every existing file `kubeconfig_env` (the value of `KUBECONFIG`) lists, else
/// `home/.kube/config` when it exists. As with kubectl, a `KUBECONFIG` that lists only
/// missing files means no kubeconfig at all (not `~/.kube/config`), and empty entries and
/// repeats are skipped; an explicit or preset path is read even when it does not exist, so
/// that the error names it.
pub fn kubeconfig_files(
    explicit: Option<&Path>,
    preset: Option<&Path>,
    kubeconfig_env: Option<&OsStr>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    if let Some(path) = explicit.or(preset) {
        return vec![path.to_path_buf()];
    }
    let listed: Vec<PathBuf> = kubeconfig_env
        .map(|list| {
            std::env::split_paths(list)
                .filter(|path| !path.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        let mut files: Vec<PathBuf> = Vec::new();
        for path in listed {
            if path.is_file() && !files.contains(&path) {
                files.push(path);
            }
        }
        return files;
    }
    home.map(|home| home.join(".kube").join("config"))
        .filter(|path| path.is_file())
        .into_iter()
        .collect()
}

/// Reads and merges the kubeconfig files [`kubeconfig_files`] chooses from this process's
/// `KUBECONFIG` and home directory: the first file to set a value wins (kube-rs's
/// [`Kubeconfig::merge`], kubectl's rules). `None` when there is no file to read.
pub fn load(explicit: Option<&Path>, preset: Option<&Path>) -> Result<Option<Loaded>, KubeError> {
    let files = kubeconfig_files(
        explicit,
        preset,
        std::env::var_os("KUBECONFIG").as_deref(),
        dirs::home_dir().as_deref(),
    );
    let Some(first) = files.first() else {
        return Ok(None);
    };
    let mut merged = read(first)?;
    for path in &files[1..] {
        merged = merged
            .merge(read(path)?)
            .map_err(|error| KubeError::Config {
                path: path.display().to_string(),
                message: crate::kind::chain_text(&error),
            })?;
    }
    let source = std::env::join_paths(&files)
        .map(|joined| joined.to_string_lossy().into_owned())
        .unwrap_or_else(|_| first.display().to_string());
    Ok(Some(Loaded {
        kubeconfig: merged,
        source,
    }))
}

/// The proxy that reaches the API server at `server`, chosen as kubectl chooses it: the
/// cluster's `proxy-url` when the kubeconfig sets one (`NO_PROXY` does not apply to it),
/// else `HTTPS_PROXY` (or `https_proxy`) for an `https://` server and `HTTP_PROXY` (or
/// `http_proxy`) for an `http://` one, unless the server is `localhost` or a loopback
/// address, or `NO_PROXY` (or `no_proxy`) names it. A proxy given without a scheme is an
/// `http://` proxy. `env` reads an environment variable.
pub fn proxy_for(
    server: &http::Uri,
    proxy_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<http::Uri>, KubeError> {
    let parse = |text: &str, source: &str| {
        let text = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri = text
            .parse::<http::Uri>()
            .map_err(|error| KubeError::Config {
                path: source.to_owned(),
                message: format!("the proxy URL is not a URL: {error}"),
            })?;
        // A proxy's password travels in its URL's user info.
        if let Some((userinfo, _)) = uri.authority().and_then(|it| it.as_str().split_once('@'))
            && let Some((_, password)) = userinfo.split_once(':')
        {
            crate::redact::register(password);
        }
        Ok(Some(uri))
    };
    if let Some(proxy_url) = proxy_url.filter(|url| !url.trim().is_empty()) {
        return parse(proxy_url.trim(), "the cluster's proxy-url");
    }
    let first = |names: [&'static str; 2]| {
        names.into_iter().find_map(|name| {
            env(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| (name, value))
        })
    };
    let chosen = match server.scheme_str() {
        Some("https") => first(["HTTPS_PROXY", "https_proxy"]),
        Some("http") => first(["HTTP_PROXY", "http_proxy"]),
        _ => None,
    };
    let Some((name, value)) = chosen else {
        return Ok(None);
    };
    let Some(host) = server.host() else {
        return Ok(None);
    };
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare_host.eq_ignore_ascii_case("localhost")
        || bare_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if loopback {
        return Ok(None);
    }
    let no_proxy = first(["NO_PROXY", "no_proxy"])
        .map(|(_, value)| value)
        .unwrap_or_default();
    // hyper-util's matcher answers whether NO_PROXY exempts the server; the placeholder
    // proxy is never used, the value of the variable chosen above is.
    let exempt = hyper_util::client::proxy::matcher::Matcher::builder()
        .all("http://proxy.invalid")
        .no(no_proxy)
        .build()
        .intercept(server)
        .is_none();
    if exempt {
        return Ok(None);
    }
    parse(value.trim(), name)
}

/// The context named `context`, if the kubeconfig has it.
fn named_context<'a>(config: &'a Kubeconfig, context: &str) -> Option<&'a kube::config::Context> {
    config
        .contexts
        .iter()
        .find(|named| named.name == context)
        .and_then(|named| named.context.as_ref())
}

/// The cluster a context names, if the kubeconfig has both.
fn context_cluster<'a>(config: &'a Kubeconfig, context: &str) -> Option<&'a kube::config::Cluster> {
    let cluster_name = &named_context(config, context)?.cluster;
    config
        .clusters
        .iter()
        .find(|cluster| &cluster.name == cluster_name)
        .and_then(|cluster| cluster.cluster.as_ref())
}

/// The `proxy-url` of the cluster a context names, if any.
pub fn context_proxy_url(config: &Kubeconfig, context: &str) -> Option<String> {
    context_cluster(config, context)?.proxy_url.clone()
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
    named_context(config, context)?.namespace.clone()
}

/// The server URL of a context, if the kubeconfig names one.
pub fn context_server(config: &Kubeconfig, context: &str) -> Option<String> {
    context_cluster(config, context)?.server.clone()
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

    #[test]
    fn kubeconfig_lists_every_existing_file_in_order_like_kubectl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = dir.path().join("a");
        let second = dir.path().join("b");
        let missing = dir.path().join("missing");
        for path in [&first, &second] {
            std::fs::write(path, "apiVersion: v1\nkind: Config\n").expect("write");
        }
        let list = std::env::join_paths([&missing, &first, &second, &first]).expect("join");
        assert_eq!(
            kubeconfig_files(None, None, Some(&list), Some(dir.path())),
            vec![first.clone(), second.clone()]
        );
        // Only missing files listed: no kubeconfig, not ~/.kube/config.
        std::fs::create_dir(dir.path().join(".kube")).expect("mkdir");
        std::fs::write(dir.path().join(".kube/config"), "kind: Config\n").expect("write");
        let only_missing = std::env::join_paths([&missing]).expect("join");
        assert!(kubeconfig_files(None, None, Some(&only_missing), Some(dir.path())).is_empty());
        // Unset or empty: ~/.kube/config.
        for unset in [None, Some(OsStr::new(""))] {
            assert_eq!(
                kubeconfig_files(None, None, unset, Some(dir.path())),
                vec![dir.path().join(".kube/config")]
            );
        }
        assert_eq!(
            kubeconfig_files(Some(&missing), Some(&first), Some(&list), None),
            vec![missing.clone()]
        );
    }

    fn proxy(server: &str, proxy_url: Option<&str>, vars: &[(&str, &str)]) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let env = move |name: &str| {
            vars.iter()
                .find(|(known, _)| known == name)
                .map(|(_, value)| value.clone())
        };
        proxy_for(&server.parse().expect("uri"), proxy_url, &env)
            .expect("a proxy URL")
            .map(|uri| uri.to_string())
    }

    #[test]
    fn no_proxy_names_the_api_server_not_the_proxy() {
        let vars = [
            ("HTTPS_PROXY", "http://127.0.0.1:3128"),
            ("NO_PROXY", "localhost,127.0.0.1,.internal,10.0.0.0/8"),
        ];
        assert_eq!(
            proxy("https://api.example.com:6443", None, &vars).as_deref(),
            Some("http://127.0.0.1:3128/")
        );
        for exempt in [
            "https://kube.internal:6443",
            "https://10.1.2.3:6443",
            "https://127.0.0.1:6443",
        ] {
            assert_eq!(proxy(exempt, None, &vars), None, "{exempt}");
        }
    }

    #[test]
    fn the_proxy_variable_follows_the_api_servers_scheme() {
        let vars = [
            ("HTTPS_PROXY", "socks5://127.0.0.1:1080"),
            ("http_proxy", "proxy.corp:3128"),
        ];
        assert_eq!(
            proxy("https://api.example.com", None, &vars).as_deref(),
            Some("socks5://127.0.0.1:1080/")
        );
        assert_eq!(
            proxy("http://api.example.com", None, &vars).as_deref(),
            Some("http://proxy.corp:3128/")
        );
        // Loopback servers are never reached through an environment proxy, as in kubectl.
        assert_eq!(proxy("http://localhost:8080", None, &vars), None);
        assert_eq!(proxy("http://[::1]:8080", None, &vars), None);
    }

    #[test]
    fn a_clusters_proxy_url_wins_and_ignores_no_proxy() {
        let vars = [("HTTPS_PROXY", "http://env-proxy:3128"), ("NO_PROXY", "*")];
        assert_eq!(
            proxy(
                "https://127.0.0.1:6443",
                Some("socks5://127.0.0.1:1080"),
                &vars
            )
            .as_deref(),
            Some("socks5://127.0.0.1:1080/")
        );
    }
}
