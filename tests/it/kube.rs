//! The `kube` bindings and kubectl against the sandbox's emulated Kubernetes API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ankus::sandbox::kube_api::{self, KubeState, KubeconfigContext, SeedSpec};

use crate::support::{self, Outcome};

/// An emulated API server running in this process, seeded with a Pachyderm deployment in
/// namespace `old`, and a kubeconfig for it.
struct Cluster {
    state: Arc<KubeState>,
    address: std::net::SocketAddr,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    fn start() -> Cluster {
        let state = Arc::new(KubeState::new());
        let handle = ankus::host::runtime::handle();
        let seeded = state.clone();
        handle
            .block_on(async move {
                seeded
                    .seed_pachyderm(
                        "old",
                        &SeedSpec {
                            pipelines: vec!["edges".to_owned(), "montage".to_owned()],
                            ..SeedSpec::default()
                        },
                    )
                    .await
            })
            .expect("seed");
        let listener = handle
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        handle.spawn(kube_api::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let dir = support::temp_dir();
        let kubeconfig = dir.path().join("kubeconfig");
        let server = format!("http://{address}");
        kube_api::write_kubeconfig(
            &kubeconfig,
            &[
                KubeconfigContext { name: "old".into(), server: server.clone(), namespace: "old".into() },
                KubeconfigContext { name: "new".into(), server, namespace: "new".into() },
            ],
            "old",
        )
        .expect("kubeconfig");
        Cluster { state, address, dir, kubeconfig, stop: Some(stop) }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the real kubectl against this cluster.
    fn kubectl(&self, args: &[&str]) -> Outcome {
        kubectl_command(self, args).output().expect("kubectl runs").into()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn kubectl_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "kubectl is not installed; these tests drive the real kubectl. Install Debian's \
             kubernetes-client package (apt-get install kubernetes-client)"
        )
    })
}

fn kubectl_command(cluster: &Cluster, args: &[&str]) -> Command {
    let mut command = Command::new(kubectl_path());
    command
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir())
        .env("KUBECACHEDIR", cluster.dir().join("cache"))
        .current_dir(cluster.dir())
        .stdin(std::process::Stdio::null());
    command
}

/// Runs `ankus run --output json SCRIPT` with the cluster's kubeconfig; returns the JSON
/// document it printed.
fn run_script(cluster: &Cluster, script: &str, extra: &[&str]) -> (Outcome, serde_json::Value) {
    let path = support::write(cluster.dir(), "script.rhai", script);
    let mut args = vec!["run", "--output", "json"];
    args.extend_from_slice(extra);
    let path_text = path.to_str().expect("utf-8").to_owned();
    args.push(&path_text);
    let outcome: Outcome = Command::new(support::ankus_bin())
        .args(&args)
        .current_dir(cluster.dir())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir())
        .env_remove("ANKUS_SCRIPTS")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ankus runs")
        .into();
    let document = serde_json::from_str(&outcome.stdout).unwrap_or_else(|error| {
        panic!("ankus printed no JSON ({error}):\n{}\n{}", outcome.stdout, outcome.stderr)
    });
    (outcome, document)
}

fn service_json(cluster: &Cluster) -> serde_json::Value {
    let out = cluster.kubectl(&["get", "svc", "pachd", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("kubectl prints JSON")
}

fn without_server_fields(mut object: serde_json::Value) -> serde_json::Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in ["resourceVersion", "managedFields", "generation"] {
            metadata.remove(field);
        }
    }
    object
}

fn node_ports(service: &serde_json::Value) -> Vec<i64> {
    service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|port| port["nodePort"].as_i64().expect("nodePort"))
        .collect()
}

#[test]
fn kubectl_reads_pods_services_and_deployments() {
    let cluster = Cluster::start();
    let pods = cluster.kubectl(&["get", "pods"]);
    assert_eq!(pods.code, 0, "{}", pods.stderr);
    let header = pods.stdout.lines().next().expect("header");
    assert!(header.starts_with("NAME") && header.contains("READY") && header.contains("STATUS"));
    assert!(pods.stdout.contains("etcd-0 "), "{}", pods.stdout);
    assert!(pods.stdout.contains("pipeline-edges-v1-"), "{}", pods.stdout);
    assert!(
        pods.stdout
            .lines()
            .any(|line| line.starts_with("pachd-") && line.contains("1/1") && line.contains("Running")),
        "{}",
        pods.stdout
    );

    let services = cluster.kubectl(&["get", "svc"]);
    assert_eq!(services.code, 0, "{}", services.stderr);
    assert!(
        services.stdout.contains(
            "600:30600/TCP,650:30650/TCP,651:30651/TCP,652:30652/TCP,654:30654/TCP,999:30999/TCP"
        ),
        "{}",
        services.stdout
    );

    let deployments = cluster.kubectl(&["get", "deployments"]);
    assert!(deployments.stdout.lines().any(|line| line.starts_with("pachd ") && line.contains("1/1")));

    let described = cluster.kubectl(&["describe", "svc", "pachd"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(described.stdout.contains("NodePort:                 api-grpc-port  30650/TCP"), "{}", described.stdout);
    let described = cluster.kubectl(&["describe", "deployment", "pachd"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(described.stdout.contains("Image:       pachyderm/pachd:1.11.9"), "{}", described.stdout);
    assert!(described.stdout.contains("NewReplicaSet:   pachd-"), "{}", described.stdout);
    let described = cluster.kubectl(&["describe", "pod", "etcd-0"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(described.stdout.contains("Controlled By:  StatefulSet/etcd"), "{}", described.stdout);
    assert!(described.stdout.contains("Scheduled"), "{}", described.stdout);

    let service = service_json(&cluster);
    assert_eq!(service["kind"], "Service");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(node_ports(&service), vec![30600, 30650, 30651, 30652, 30654, 30999]);

    let missing = cluster.kubectl(&["get", "pod", "nosuch"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains(r#"Error from server (NotFound): pods "nosuch" not found"#), "{}", missing.stderr);
}

#[test]
fn kubectl_patches_with_all_three_patch_types() {
    let cluster = Cluster::start();
    let strategic = cluster.kubectl(&["patch", "svc", "pachd", "-p", r#"{"spec":{"ports":[{"port":650,"nodePort":30649}]}}"#]);
    assert_eq!(strategic.code, 0, "{}", strategic.stderr);
    assert_eq!(strategic.stdout.trim(), "service/pachd patched");
    assert_eq!(node_ports(&service_json(&cluster)), vec![30600, 30649, 30651, 30652, 30654, 30999]);

    let merge = cluster.kubectl(&["patch", "svc", "pachd", "--type=merge", "-p", r#"{"metadata":{"labels":{"blocked":"yes"}}}"#]);
    assert_eq!(merge.code, 0, "{}", merge.stderr);
    assert_eq!(service_json(&cluster)["metadata"]["labels"]["blocked"], "yes");

    let json_patch = cluster.kubectl(&["patch", "svc", "pachd", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/ports/1/nodePort","value":30650}]"#]);
    assert_eq!(json_patch.code, 0, "{}", json_patch.stderr);
    assert_eq!(node_ports(&service_json(&cluster)), vec![30600, 30650, 30651, 30652, 30654, 30999]);

    let bad = cluster.kubectl(&["patch", "svc", "pachd", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/nope/1","value":1}]"#]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains(r#"The Service "pachd" is invalid"#), "{}", bad.stderr);
    let out_of_range = cluster.kubectl(&["patch", "svc", "pachd", "-p", r#"{"spec":{"ports":[{"port":650,"nodePort":99999}]}}"#]);
    assert_ne!(out_of_range.code, 0);
    assert!(out_of_range.stderr.contains("provided port is not in the valid range"), "{}", out_of_range.stderr);
}

#[test]
fn kubectl_applies_scales_deletes_and_watches() {
    let cluster = Cluster::start();
    let manifest = support::write(
        cluster.dir(),
        "web.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  \
         selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    \
         spec:\n      containers:\n      - name: web\n        image: nginx:1\n",
    );
    let manifest = manifest.to_str().expect("utf-8");
    let applied = cluster.kubectl(&["apply", "-f", manifest]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(applied.stdout, "configmap/cfg created\ndeployment.apps/web created\n");

    let changed = support::write(cluster.dir(), "cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  b: \"2\"\n");
    let changed = changed.to_str().expect("utf-8");
    let reapplied = cluster.kubectl(&["apply", "-f", changed]);
    assert_eq!(reapplied.stdout, "configmap/cfg configured\n", "{}", reapplied.stderr);
    let data = cluster.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.data}"]);
    assert_eq!(data.stdout, r#"{"b":"2"}"#);

    let server_side = cluster.kubectl(&["apply", "--server-side", "-f", manifest]);
    assert_eq!(server_side.code, 0, "{}", server_side.stderr);
    assert_eq!(server_side.stdout, "configmap/cfg serverside-applied\ndeployment.apps/web serverside-applied\n");
    let data = cluster.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]);
    assert_eq!(data.stdout, "1");

    let scaled = cluster.kubectl(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(scaled.stdout, "deployment.apps/web scaled\n", "{}", scaled.stderr);
    let pods = cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.stdout.lines().count(), 3, "{}", pods.stdout);

    // A short watch: kubectl prints the current pods, then the ones a scale-down deletes are
    // gone from later listings; the watch ends at its request timeout.
    let mut watch = kubectl_command(&cluster, &["get", "pods", "-l", "app=web", "-w", "--request-timeout=3s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl watch starts");
    let stdout = watch.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let header = lines.next().expect("a header").expect("utf-8");
    assert!(header.starts_with("NAME"), "{header}");
    for _ in 0..3 {
        let line = lines.next().expect("a pod line").expect("utf-8");
        assert!(line.starts_with("web-"), "{line}");
    }
    let created = cluster.kubectl(&["create", "configmap", "during-watch"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let scaled_up = cluster.kubectl(&["scale", "deployment", "web", "--replicas=4"]);
    assert_eq!(scaled_up.code, 0, "{}", scaled_up.stderr);
    let added = lines.next().expect("the new pod").expect("utf-8");
    assert!(added.starts_with("web-") && added.contains("Running"), "{added}");
    let _ = watch.kill();
    let _ = watch.wait();

    let deleted = cluster.kubectl(&["delete", "deployment", "web"]);
    assert_eq!(deleted.stdout, "deployment.apps \"web\" deleted\n", "{}", deleted.stderr);
    let pods = cluster.kubectl(&["get", "pods", "-l", "app=web"]);
    assert_eq!(pods.stderr.trim(), "No resources found in old namespace.");
}

#[test]
fn script_swaps_and_restores_every_pachd_node_port_leaving_the_service_as_it_was() {
    let cluster = Cluster::start();
    let before = service_json(&cluster);
    let (outcome, document) = run_script(
        &cluster,
        r#"
        let k = kube::connect(#{ context: "old" });
        k.save("service", "pachd", "pachd-service.json");
        let swaps = #{};
        for p in k.service("pachd").ports { swaps[`${p.node_port}`] = p.node_port + 1000; }
        let blocked = k.swap_node_ports("pachd", swaps);
        let during = blocked.node_ports;
        k.restore_saved("pachd-service.json");
        #{ during: during, after: k.service("pachd").node_ports }
        "#,
        &[],
    );
    assert_eq!(outcome.code, 0, "{}\n{}", outcome.stdout, outcome.stderr);
    assert_eq!(document["result"]["during"], serde_json::json!([31600, 31650, 31651, 31652, 31654, 31999]));
    assert_eq!(document["result"]["after"], serde_json::json!([30600, 30650, 30651, 30652, 30654, 30999]));
    let after = service_json(&cluster);
    assert_eq!(
        serde_json::to_string_pretty(&without_server_fields(after)).expect("json"),
        serde_json::to_string_pretty(&without_server_fields(before)).expect("json")
    );
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.dir().join("pachd-service.json")).expect("saved file"),
    )
    .expect("saved JSON");
    assert_eq!(saved["kind"], "v1/Service");
    assert!(saved["object"]["metadata"].get("resourceVersion").is_none());
    assert!(saved["object"].get("status").is_none());
}
