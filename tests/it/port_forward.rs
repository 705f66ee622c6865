//! Contexts made by `pachctl deploy` have no `pachd_address`: ankus reaches pachd through a
//! port-forward to the pachd pod, as pachctl does, over the sandbox's emulated Kubernetes
//! API (a real WebSocket `pods/portforward`, a real kubeconfig, the real pachctl config).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ankus::pachd::{ConnectOptions, PachdClient, Target};
use ankus::sandbox::cluster::{Sandbox, SandboxConfig};
use serde_json::json;

use crate::support::{self, Outcome, ankus_bin};

/// A kubeconfig whose current context points at a server that does not exist, with a user
/// the sandbox refuses and the `new` namespace, next to the sandbox's own clusters and user:
/// only a port-forward that takes the pachctl context's `cluster_name`, `auth_info` and
/// `namespace` in their place reaches the `old` pachd.
fn misleading_kubeconfig(sandbox: &Sandbox, dir: &Path) -> std::path::PathBuf {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(sandbox.kubeconfig_path()).expect("sandbox kubeconfig");
    let mut document = serde_json::to_value(&kubeconfig).expect("serializes");
    let push = |document: &mut serde_json::Value, key: &str, entry: serde_json::Value| {
        document[key].as_array_mut().expect("a list").push(entry);
    };
    push(
        &mut document,
        "clusters",
        json!({ "name": "elsewhere", "cluster": { "server": "https://127.0.0.1:1" } }),
    );
    push(
        &mut document,
        "users",
        json!({ "name": "stranger", "user": { "token": "not-the-sandbox-token" } }),
    );
    push(
        &mut document,
        "contexts",
        json!({ "name": "elsewhere",
                "context": { "cluster": "elsewhere", "user": "stranger", "namespace": "new" } }),
    );
    document["current-context"] = "elsewhere".into();
    // JSON is a kubeconfig format too (kubectl and kube-rs read YAML, and JSON is YAML).
    let path = dir.join("kubeconfig");
    std::fs::write(&path, document.to_string()).expect("write");
    path
}

/// A pachctl config with one context as `pachctl deploy` writes it: no address.
fn deploy_context_config(dir: &Path, namespace: &str) -> std::path::PathBuf {
    let config = serde_json::json!({
        "user_id": "u",
        "v2": {
            "active_context": "local",
            "contexts": { "local": {
                "source": 3, "cluster_name": "old", "auth_info": "sandbox", "namespace": namespace,
            } },
            "metrics": false,
        }
    });
    let path = dir.join("pachctl-config.json");
    std::fs::write(&path, config.to_string()).expect("write");
    path
}

fn run_script(dir: &Path, kubeconfig: &Path, config: &Path, script: &str) -> Outcome {
    let path = support::write(dir, "repos.rhai", script);
    Command::new(ankus_bin())
        .args([
            "run",
            path.to_str().expect("utf-8"),
            "--output",
            "json",
            "-q",
        ])
        .current_dir(dir)
        .env("PACH_CONFIG", config)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env_remove("PACH_CONTEXT")
        .env_remove("PACHD_ADDRESS")
        .env_remove("ANKUS_SCRIPTS")
        .stdin(Stdio::null())
        .output()
        .expect("ankus runs")
        .into()
}

fn start_sandbox(dir: &Path) -> Sandbox {
    let mut config = SandboxConfig::new(&dir.join("sandbox"));
    config.sample = true;
    ankus::host::runtime::handle()
        .block_on(Sandbox::start(config))
        .expect("the sandbox starts")
}

#[test]
fn a_pachctl_deploy_context_without_pachd_address_connects_through_a_port_forward() {
    let dir = support::temp_dir();
    let sandbox = start_sandbox(dir.path());
    let old = sandbox.cluster("old").expect("old runs");
    let expected: Vec<String> = ankus::host::runtime::handle()
        .block_on(async {
            let client =
                PachdClient::connect(ConnectOptions::new(Target::Address(old.pachd_address())))
                    .await?;
            client.list_repos().await
        })
        .expect("the old pachd lists its repos")
        .into_iter()
        .map(|repo| repo.name)
        .collect();
    assert!(!expected.is_empty(), "the sample data has repos");

    let kubeconfig = misleading_kubeconfig(&sandbox, dir.path());
    let config = deploy_context_config(dir.path(), "old");
    let out = run_script(
        dir.path(),
        &kubeconfig,
        &config,
        "let c = pachd::connect(); c.repos().map(|r| r.name)",
    );
    assert_eq!(out.code, 0, "{out:?}");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let mut listed: Vec<String> =
        serde_json::from_value(document["result"].clone()).expect("names");
    let mut expected = expected;
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    // The forward ends with the connection: nothing stays open on the API server.
    let pod_ports = sandbox.kube_state().pod_ports().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pod_ports.open_forwards() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pod_ports.open_forwards(),
        0,
        "a port-forward outlived ankus"
    );
}

#[test]
fn a_port_forward_to_a_pod_whose_pachd_is_down_names_the_pod_and_the_pod_side_error() {
    let dir = support::temp_dir();
    let sandbox = start_sandbox(dir.path());
    ankus::host::runtime::handle().block_on(sandbox.stop_cluster("old"));
    let kubeconfig = misleading_kubeconfig(&sandbox, dir.path());
    let config = deploy_context_config(dir.path(), "old");
    let out = run_script(
        dir.path(),
        &kubeconfig,
        &config,
        "let c = pachd::connect(); c.repos().len()",
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("connect to pachd at port 650 of pod pachd-")
            && out.stderr.contains(
                "in namespace old (a port-forward): error forwarding port 650 to pod pachd-"
            ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_port_forward_to_a_namespace_without_pachd_names_the_labels_and_the_namespace() {
    let dir = support::temp_dir();
    let sandbox = start_sandbox(dir.path());
    let kubeconfig = misleading_kubeconfig(&sandbox, dir.path());
    let config = deploy_context_config(dir.path(), "default");
    let out = run_script(
        dir.path(),
        &kubeconfig,
        &config,
        "let c = pachd::connect(); c.repos().len()",
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "port-forward to pachd for context \"local\": find a pod to port-forward to: no pods \
             labelled suite=pachyderm,app=pachd in namespace default"
        ),
        "{}",
        out.stderr
    );
}

/// A `kubectl port-forward` child, killed on drop.
struct Kubectl(std::process::Child);

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kubectl_port_forward_reaches_the_sandbox_pachd_pod() {
    use std::io::{BufRead, BufReader};
    let dir = support::temp_dir();
    let sandbox = start_sandbox(dir.path());
    let kubectl = crate::kube::kubectl_path();
    let pods = Command::new(&kubectl)
        .args([
            "get",
            "pods",
            "-n",
            "old",
            "-l",
            "suite=pachyderm,app=pachd",
            "-o",
            "name",
        ])
        .env("KUBECONFIG", sandbox.kubeconfig_path())
        .env("HOME", dir.path())
        .output()
        .expect("kubectl runs");
    let pod = String::from_utf8_lossy(&pods.stdout)
        .lines()
        .next()
        .expect("a pachd pod")
        .to_owned();
    let mut child = Kubectl(
        Command::new(&kubectl)
            .args(["port-forward", "-n", "old", &pod, "0:650"])
            .env("KUBECONFIG", sandbox.kubeconfig_path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward starts"),
    );
    let mut line = String::new();
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    stdout
        .read_line(&mut line)
        .expect("kubectl prints where it listens");
    // kubectl goes on printing ("Handling connection for ..."); a closed pipe would kill it.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:PORT -> 650"
    let local = line
        .split_whitespace()
        .nth(2)
        .filter(|_| line.starts_with("Forwarding from 127.0.0.1:"))
        .unwrap_or_else(|| panic!("kubectl port-forward did not start: {line:?}"))
        .to_owned();

    let old = sandbox.cluster("old").expect("old runs");
    let list = |address: String| {
        ankus::host::runtime::handle()
            .block_on(async {
                let client =
                    PachdClient::connect(ConnectOptions::new(Target::Address(address))).await?;
                client.list_repos().await
            })
            .expect("pachd lists its repos")
            .into_iter()
            .map(|repo| repo.name)
            .collect::<Vec<String>>()
    };
    let direct = list(old.pachd_address());
    assert!(!direct.is_empty(), "the sample data has repos");
    assert_eq!(list(format!("grpc://{local}")), direct);

    drop(child);
    let pod_ports = sandbox.kube_state().pod_ports().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pod_ports.open_forwards() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pod_ports.open_forwards(), 0, "the forward outlived kubectl");
}
