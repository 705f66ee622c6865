//! Where operators' Kubernetes configuration really comes from: `KUBECONFIG=a:b`, proxies
//! (`HTTPS_PROXY`, a cluster's `proxy-url`, http and socks5), exec credential plugins, and
//! what a failing API server is told. Each test checks ankus against the real kubectl on the
//! same files where kubectl has an answer, against the sandbox's emulated API server (HTTPS,
//! bearer token) or a real local peer started here.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ankus::sandbox::kube_api::{self, KubeState, SANDBOX_TOKEN, SeedSpec};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::kube::kubectl_path;
use crate::support::{self, Outcome};

/// A host name no resolver knows: only a proxy that maps it to the API server reaches it.
const UNRESOLVABLE_HOST: &str = "kube.ankus.invalid";

/// The sandbox's emulated API server, in this process, seeded with a Pachyderm deployment in
/// namespace `old`.
struct Api {
    address: SocketAddr,
    ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Api {
    fn start() -> Api {
        let state = Arc::new(KubeState::new());
        let handle = ankus::host::runtime::handle();
        let seeded = state.clone();
        handle
            .block_on(async move { seeded.seed_pachyderm("old", &SeedSpec::default()).await })
            .expect("seed");
        let listener = handle
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let identity = kube_api::ServerIdentity::generate().expect("certificate");
        let ca_pem = identity.ca_pem().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        handle.spawn(async move {
            kube_api::serve(listener, state, &identity, async move {
                let _ = stopped.await;
            })
            .await
        });
        Api {
            address,
            ca_pem,
            stop: Some(stop),
        }
    }

    /// A kubeconfig cluster entry named `name` for this server reached as `host`; its
    /// certificate names `localhost`, which `tls-server-name` asks for.
    fn cluster(&self, name: &str, host: &str, extra: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "- name: {name}\n  cluster:\n    server: https://{host}:{port}\n    \
             certificate-authority-data: {ca}\n    tls-server-name: localhost\n{extra}",
            port = self.address.port()
        )
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The sandbox's user entry, with its bearer token inline.
fn token_user(name: &str) -> String {
    format!("- name: {name}\n  user:\n    token: {SANDBOX_TOKEN}\n")
}

fn kubeconfig(
    clusters: &[String],
    users: &[String],
    contexts: &[(&str, &str, &str, &str)],
    current: Option<&str>,
) -> String {
    let mut text = String::from("apiVersion: v1\nkind: Config\n");
    if let Some(current) = current {
        text.push_str(&format!("current-context: {current}\n"));
    }
    text.push_str("clusters:\n");
    for cluster in clusters {
        text.push_str(cluster);
    }
    if !users.is_empty() {
        text.push_str("users:\n");
        for user in users {
            text.push_str(user);
        }
    }
    text.push_str("contexts:\n");
    for (name, cluster, user, namespace) in contexts {
        text.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {cluster}\n    user: {user}\n    \
             namespace: {namespace}\n"
        ));
    }
    text
}

/// A command (ankus or kubectl) with `KUBECONFIG`, a private home and no proxy from the
/// environment the tests run in; `env` adds variables.
fn command(program: &Path, dir: &Path, kubeconfig: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env("KUBECACHEDIR", dir.join("kubectl-cache"))
        .env_remove("ANKUS_SCRIPTS")
        .stdin(Stdio::null());
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn kubectl(dir: &Path, kubeconfig: &str, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    command(&kubectl_path(), dir, kubeconfig, env)
        .args(args)
        .output()
        .expect("kubectl runs")
        .into()
}

/// Runs `ankus run --output json SCRIPT`; returns what it showed and the JSON it printed.
fn ankus_script(
    dir: &Path,
    kubeconfig: &str,
    env: &[(&str, &str)],
    script: &str,
) -> (Outcome, serde_json::Value) {
    let path = support::write(dir, "script.rhai", script);
    let outcome: Outcome = command(&support::ankus_bin(), dir, kubeconfig, env)
        .args(["run", "--output", "json"])
        .arg(&path)
        .output()
        .expect("ankus runs")
        .into();
    let document = serde_json::from_str(&outcome.stdout).unwrap_or(serde_json::Value::Null);
    (outcome, document)
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

/// What ankus reads of the kubeconfig through a script, and what a context reaches.
const CONTEXT_SCRIPT: &str = r#"
let k = kube::connect(#{});
let a = kube::connect("from-a");
#{
    contexts: kube::contexts(),
    current: kube::current_context(),
    context: k.info().context,
    namespace: k.info().namespace,
    service_namespace: k.get("service", "pachd").metadata.namespace,
    from_a_namespace: a.info().namespace,
}
"#;

#[test]
fn kubeconfig_listing_two_files_is_merged_as_kubectl_merges_it() {
    let api = Api::start();
    let dir = support::temp_dir();
    // a: the user, a context, and a current-context naming a context of b.
    let a = support::write(
        dir.path(),
        "a.yaml",
        &kubeconfig(
            &[api.cluster("cluster-a", "127.0.0.1", "")],
            &[token_user("sandbox")],
            &[("from-a", "cluster-a", "sandbox", "new")],
            Some("from-b"),
        ),
    );
    // b: the context a names, using a's user; a second `from-a` and another
    // current-context, both of which lose to a's (the first file to set a value wins).
    let b = support::write(
        dir.path(),
        "b.yaml",
        &kubeconfig(
            &[api.cluster("cluster-b", "127.0.0.1", "")],
            &[],
            &[
                ("from-b", "cluster-b", "sandbox", "old"),
                ("from-a", "cluster-b", "sandbox", "shadowed"),
            ],
            Some("from-a"),
        ),
    );
    let list = std::env::join_paths([&a, &b]).expect("join");
    let list = list.to_str().expect("utf-8");

    let contexts = kubectl(
        dir.path(),
        list,
        &[],
        &["config", "get-contexts", "-o", "name"],
    );
    assert_eq!(contexts.code, 0, "{}", contexts.stderr);
    let current = kubectl(dir.path(), list, &[], &["config", "current-context"]);
    assert_eq!(current.stdout.trim(), "from-b", "{}", current.stderr);
    let namespace = |context: &str| {
        let out = kubectl(
            dir.path(),
            list,
            &[],
            &[
                "--context",
                context,
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.contexts[0].context.namespace}",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_owned()
    };
    let service = kubectl(
        dir.path(),
        list,
        &[],
        &[
            "get",
            "service",
            "pachd",
            "-o",
            "jsonpath={.metadata.namespace}",
        ],
    );
    assert_eq!(service.code, 0, "{}", service.stderr);

    let (out, seen) = ankus_script(dir.path(), list, &[], CONTEXT_SCRIPT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = &seen["result"];
    let ankus_contexts: BTreeSet<String> = seen["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .map(|name| name.as_str().expect("name").to_owned())
        .collect();
    assert_eq!(ankus_contexts, lines(&contexts.stdout));
    assert_eq!(ankus_contexts.len(), 2, "{ankus_contexts:?}");
    assert_eq!(seen["current"], current.stdout.trim());
    assert_eq!(seen["context"], "from-b");
    assert_eq!(seen["namespace"], namespace("from-b"));
    assert_eq!(seen["service_namespace"], service.stdout.trim());
    assert_eq!(seen["from_a_namespace"], namespace("from-a"));
    assert_eq!(seen["from_a_namespace"], "new");
}

/// Which protocol a test proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// HTTP CONNECT.
    Connect,
    /// SOCKS5 without authentication, CONNECT command only.
    Socks5,
}

/// A proxy on 127.0.0.1:0 that tunnels every connection to `upstream`, whatever host the
/// client names (so names only the proxy's side knows work), and records those names.
struct TunnelProxy {
    address: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl TunnelProxy {
    fn start(protocol: Protocol, upstream: SocketAddr) -> TunnelProxy {
        let handle = ankus::host::runtime::handle();
        let listener = handle
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let targets = Arc::new(Mutex::new(Vec::new()));
        let log = targets.clone();
        handle.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = tunnel(protocol, client, upstream, log).await;
                });
            }
        });
        TunnelProxy { address, targets }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().expect("lock").clone()
    }
}

async fn tunnel(
    protocol: Protocol,
    mut client: TcpStream,
    upstream: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let target = match protocol {
        Protocol::Connect => {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read(&mut byte).await? == 0 {
                    return Ok(());
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut words = head.split(' ');
            if words.next() != Some("CONNECT") {
                client
                    .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                    .await?;
                return Ok(());
            }
            let target = words.next().unwrap_or("").to_owned();
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            target
        }
        Protocol::Socks5 => {
            let mut greeting = [0u8; 2];
            client.read_exact(&mut greeting).await?;
            let mut methods = vec![0u8; usize::from(greeting[1])];
            client.read_exact(&mut methods).await?;
            client.write_all(&[5, 0]).await?;
            let mut request = [0u8; 4];
            client.read_exact(&mut request).await?;
            let host = match request[3] {
                1 => {
                    let mut ip = [0u8; 4];
                    client.read_exact(&mut ip).await?;
                    std::net::Ipv4Addr::from(ip).to_string()
                }
                3 => {
                    let mut length = [0u8; 1];
                    client.read_exact(&mut length).await?;
                    let mut name = vec![0u8; usize::from(length[0])];
                    client.read_exact(&mut name).await?;
                    String::from_utf8_lossy(&name).into_owned()
                }
                _ => {
                    let mut ip = [0u8; 16];
                    client.read_exact(&mut ip).await?;
                    std::net::Ipv6Addr::from(ip).to_string()
                }
            };
            let mut port = [0u8; 2];
            client.read_exact(&mut port).await?;
            client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            format!("{host}:{}", u16::from_be_bytes(port))
        }
    };
    log.lock().expect("lock").push(target);
    let mut server = TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

const SERVICE_SCRIPT: &str = r#"
let k = kube::connect(#{});
k.get("service", "pachd").metadata.name
"#;

#[test]
fn https_proxy_from_the_environment_carries_kube_requests_as_it_does_kubectls() {
    let api = Api::start();
    let proxy = TunnelProxy::start(Protocol::Connect, api.address);
    let dir = support::temp_dir();
    // The server's name resolves nowhere: only the proxy reaches it.
    let config = support::write(
        dir.path(),
        "kubeconfig",
        &kubeconfig(
            &[api.cluster("remote", UNRESOLVABLE_HOST, "")],
            &[token_user("sandbox")],
            &[("remote", "remote", "sandbox", "old")],
            Some("remote"),
        ),
    );
    let config = config.to_str().expect("utf-8");
    let proxy_url = format!("http://{}", proxy.address);
    // NO_PROXY naming the proxy's own address, as operators' shells commonly set it, does
    // not turn the proxy off: it names servers, not proxies.
    let env = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "localhost,127.0.0.1"),
    ];

    let by_kubectl = kubectl(
        dir.path(),
        config,
        &env,
        &["get", "service", "pachd", "-o", "jsonpath={.metadata.name}"],
    );
    assert_eq!(by_kubectl.code, 0, "{}", by_kubectl.stderr);
    let kubectl_tunnels = proxy.targets().len();
    assert!(kubectl_tunnels >= 1, "kubectl went through the proxy");

    let (out, document) = ankus_script(dir.path(), config, &env, SERVICE_SCRIPT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(document["result"], by_kubectl.stdout.trim());
    let targets = proxy.targets();
    let expected = format!("{UNRESOLVABLE_HOST}:{}", api.address.port());
    assert!(
        targets.len() > kubectl_tunnels && targets.iter().all(|target| *target == expected),
        "{targets:?}"
    );

    // NO_PROXY naming the server: straight there, where the name does not resolve.
    let exempt = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("NO_PROXY", UNRESOLVABLE_HOST),
    ];
    let before = proxy.targets().len();
    let (out, _) = ankus_script(dir.path(), config, &exempt, SERVICE_SCRIPT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot reach the Kubernetes API server"),
        "{}",
        out.stderr
    );
    assert_eq!(proxy.targets().len(), before, "NO_PROXY was ignored");
}

#[test]
fn a_clusters_proxy_url_over_http_or_socks5_carries_kube_requests() {
    let api = Api::start();
    let dir = support::temp_dir();
    for protocol in [Protocol::Connect, Protocol::Socks5] {
        let proxy = TunnelProxy::start(protocol, api.address);
        let scheme = match protocol {
            Protocol::Connect => "http",
            Protocol::Socks5 => "socks5",
        };
        // A loopback server, which an environment proxy never serves: proxy-url still does.
        let config = support::write(
            dir.path(),
            &format!("kubeconfig-{scheme}"),
            &kubeconfig(
                &[api.cluster(
                    "proxied",
                    "127.0.0.1",
                    &format!("    proxy-url: {scheme}://{}\n", proxy.address),
                )],
                &[token_user("sandbox")],
                &[("proxied", "proxied", "sandbox", "old")],
                Some("proxied"),
            ),
        );
        let config = config.to_str().expect("utf-8");
        let by_kubectl = kubectl(
            dir.path(),
            config,
            &[("NO_PROXY", "*")],
            &["get", "service", "pachd", "-o", "jsonpath={.metadata.name}"],
        );
        assert_eq!(by_kubectl.code, 0, "{scheme}: {}", by_kubectl.stderr);
        let kubectl_tunnels = proxy.targets().len();
        assert!(kubectl_tunnels >= 1, "{scheme}: kubectl used the proxy");

        let (out, document) =
            ankus_script(dir.path(), config, &[("NO_PROXY", "*")], SERVICE_SCRIPT);
        assert_eq!(out.code, 0, "{scheme}: {}", out.stderr);
        assert_eq!(document["result"], "pachd");
        let targets = proxy.targets();
        assert!(
            targets.len() > kubectl_tunnels
                && targets
                    .iter()
                    .all(|target| *target == api.address.to_string()),
            "{scheme}: {targets:?}"
        );
    }
}

/// A plain-HTTP server on 127.0.0.1:0 that answers every request with 503 and counts them.
struct Unavailable {
    address: SocketAddr,
    requests: Arc<AtomicU32>,
}

impl Unavailable {
    fn start() -> Unavailable {
        let handle = ankus::host::runtime::handle();
        let listener = handle
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicU32::new(0));
        let counted = requests.clone();
        handle.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 65536];
                    let mut read = Vec::new();
                    loop {
                        let Ok(count) = client.read(&mut buffer).await else {
                            return;
                        };
                        if count == 0 {
                            return;
                        }
                        read.extend_from_slice(&buffer[..count]);
                        // Requests without bodies: each head is one request.
                        while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                            read.drain(..end + 4);
                            counted.fetch_add(1, Ordering::SeqCst);
                            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server is overloaded","reason":"ServiceUnavailable","code":503}"#;
                            let answer = format!(
                                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if client.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Unavailable { address, requests }
    }
}

#[test]
fn an_overloaded_api_server_is_asked_as_often_as_the_error_says() {
    let server = Unavailable::start();
    let dir = support::temp_dir();
    let config = support::write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: busy\n\
             clusters: [{{name: busy, cluster: {{server: 'http://{}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: busy, context: {{cluster: busy, user: u}}}}]\n",
            server.address
        ),
    );
    let (out, _) = ankus_script(
        dir.path(),
        config.to_str().expect("utf-8"),
        &[],
        "kube::connect(#{ timeout: 5 })",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let sent = server.requests.load(Ordering::SeqCst);
    assert!(
        out.stderr.contains("answered HTTP 503")
            && out
                .stderr
                .contains(&format!("; gave up after {sent} attempts")),
        "the server was asked {sent} times; ankus said:\n{}",
        out.stderr
    );
    assert_eq!(sent, 4, "{}", out.stderr);
}

/// An exec credential plugin: a shell script printing an ExecCredential with `token`, and
/// appending a line to `runs` each time it runs.
fn exec_plugin(dir: &Path, token: &str) -> PathBuf {
    let runs = dir.join("plugin-runs");
    let path = support::write(
        dir,
        "credential-plugin.sh",
        &format!(
            "#!/bin/sh\necho run >> '{runs}'\n\
             printf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\
             \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n",
            runs = runs.display()
        ),
    );
    let mut permissions = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).expect("chmod");
    path
}

#[test]
fn a_token_from_an_exec_credential_plugin_never_shows_in_output_journal_or_errors() {
    let api = Api::start();
    let dir = support::temp_dir();
    let plugin = exec_plugin(dir.path(), SANDBOX_TOKEN);
    let exec_user = format!(
        "- name: plugin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      \
         command: {}\n      interactiveMode: Never\n",
        plugin.display()
    );
    let config = support::write(
        dir.path(),
        "kubeconfig",
        &kubeconfig(
            &[api.cluster("sandbox", "127.0.0.1", "")],
            &[exec_user],
            &[("sandbox", "sandbox", "plugin", "old")],
            Some("sandbox"),
        ),
    );
    let config = config.to_str().expect("utf-8");
    // The cluster holds the token, as clusters hold service-account tokens: kubectl, through
    // the plugin, stores it in a ConfigMap a script then reads.
    let created = kubectl(
        dir.path(),
        config,
        &[],
        &[
            "create",
            "configmap",
            "credentials",
            &format!("--from-literal=token={SANDBOX_TOKEN}"),
        ],
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let runs = || {
        std::fs::read_to_string(dir.path().join("plugin-runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let runs_before = runs();

    let (out, document) = ankus_script(
        dir.path(),
        config,
        &[],
        r#"
let k = kube::connect(#{});
let token = k.get("configmap", "credentials").data.token;
print(`token ${token}`);
let kept = step("read", || token);
throw `refused ${kept}`;
"#,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        runs() - runs_before,
        1,
        "the plugin runs once per connection"
    );
    assert!(
        out.stderr.contains("token ***") && out.stderr.contains("refused ***"),
        "{}",
        out.stderr
    );
    let journal = std::fs::read_to_string(dir.path().join(".ankus/script.journal.json"))
        .expect("the journal was written");
    assert!(journal.contains("***"), "{journal}");
    for (what, text) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", out.stderr.as_str()),
        ("journal", journal.as_str()),
        ("document", &document.to_string()),
    ] {
        assert!(
            !text.contains(SANDBOX_TOKEN),
            "{what} shows the token:\n{text}"
        );
    }
}

#[test]
fn a_failing_exec_credential_plugin_is_reported_without_what_it_printed() {
    let dir = support::temp_dir();
    let token = "exec-secret-7d41c9e2";
    let plugin = support::write(
        dir.path(),
        "failing-plugin.sh",
        &format!(
            "#!/bin/sh\nprintf '%s' '{{\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n\
             echo 'no session: run login first' >&2\nexit 3\n"
        ),
    );
    let mut permissions = std::fs::metadata(&plugin).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&plugin, permissions).expect("chmod");
    let config = support::write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:9'}}}}]\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      \
             command: {}\n      interactiveMode: Never\n      env: [{{name: PLUGIN_SETTING, value: {token}-env}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n",
            plugin.display()
        ),
    );
    let (out, _) = ankus_script(
        dir.path(),
        config.to_str().expect("utf-8"),
        &[],
        "kube::connect(#{})",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("run the exec credential plugin: it failed (exit status: 3): no session: run login first"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(token), "{}", out.stderr);
    assert!(!out.stdout.contains(token), "{}", out.stdout);
}
