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
        let identity = kube_api::ServerIdentity::generate().expect("certificate");
        let dir = support::temp_dir();
        let kubeconfig = dir.path().join("kubeconfig");
        kube_api::write_sandbox_kubeconfig(
            &kubeconfig,
            address,
            identity.ca_pem(),
            &["old", "new"],
            "old",
        )
        .expect("kubeconfig");
        let serving = state.clone();
        handle.spawn(async move {
            kube_api::serve(listener, serving, &identity, async move {
                let _ = stopped.await;
            })
            .await
        });
        // Port 9 (discard) is not served on loopback: a kubeconfig for an unreachable server.
        kube_api::write_kubeconfig(
            &dir.path().join("unreachable.yaml"),
            &[KubeconfigContext {
                name: "gone".into(),
                server: "http://127.0.0.1:9".into(),
                namespace: "default".into(),
            }],
            "gone",
        )
        .expect("kubeconfig");
        Cluster {
            state,
            address,
            dir,
            kubeconfig,
            stop: Some(stop),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the real kubectl against this cluster.
    fn kubectl(&self, args: &[&str]) -> Outcome {
        kubectl_command(self, args)
            .output()
            .expect("kubectl runs")
            .into()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) fn kubectl_path() -> PathBuf {
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
        panic!(
            "ankus printed no JSON ({error}):\n{}\n{}",
            outcome.stdout, outcome.stderr
        )
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
    assert!(
        pods.stdout.contains("pipeline-edges-v1-"),
        "{}",
        pods.stdout
    );
    assert!(
        pods.stdout.lines().any(|line| line.starts_with("pachd-")
            && line.contains("1/1")
            && line.contains("Running")),
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
    assert!(
        deployments
            .stdout
            .lines()
            .any(|line| line.starts_with("pachd ") && line.contains("1/1"))
    );

    let described = cluster.kubectl(&["describe", "svc", "pachd"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(
        described
            .stdout
            .contains("NodePort:                 api-grpc-port  30650/TCP"),
        "{}",
        described.stdout
    );
    let described = cluster.kubectl(&["describe", "deployment", "pachd"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(
        described
            .stdout
            .contains("Image:       pachyderm/pachd:1.11.9"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("NewReplicaSet:   pachd-"),
        "{}",
        described.stdout
    );
    let described = cluster.kubectl(&["describe", "pod", "etcd-0"]);
    assert_eq!(described.code, 0, "{}", described.stderr);
    assert!(
        described
            .stdout
            .contains("Controlled By:  StatefulSet/etcd"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("Scheduled"),
        "{}",
        described.stdout
    );

    let service = service_json(&cluster);
    assert_eq!(service["kind"], "Service");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(
        node_ports(&service),
        vec![30600, 30650, 30651, 30652, 30654, 30999]
    );

    let missing = cluster.kubectl(&["get", "pod", "nosuch"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): pods "nosuch" not found"#),
        "{}",
        missing.stderr
    );
}

#[test]
fn kubectl_patches_with_all_three_patch_types() {
    let cluster = Cluster::start();
    let strategic = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "-p",
        r#"{"spec":{"ports":[{"port":650,"nodePort":30649}]}}"#,
    ]);
    assert_eq!(strategic.code, 0, "{}", strategic.stderr);
    assert_eq!(strategic.stdout.trim(), "service/pachd patched");
    assert_eq!(
        node_ports(&service_json(&cluster)),
        vec![30600, 30649, 30651, 30652, 30654, 30999]
    );

    let merge = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"blocked":"yes"}}}"#,
    ]);
    assert_eq!(merge.code, 0, "{}", merge.stderr);
    assert_eq!(
        service_json(&cluster)["metadata"]["labels"]["blocked"],
        "yes"
    );

    let json_patch = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/1/nodePort","value":30650}]"#,
    ]);
    assert_eq!(json_patch.code, 0, "{}", json_patch.stderr);
    assert_eq!(
        node_ports(&service_json(&cluster)),
        vec![30600, 30650, 30651, 30652, 30654, 30999]
    );

    let bad = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/nope/1","value":1}]"#,
    ]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains(r#"The Service "pachd" is invalid"#),
        "{}",
        bad.stderr
    );
    let out_of_range = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "-p",
        r#"{"spec":{"ports":[{"port":650,"nodePort":99999}]}}"#,
    ]);
    assert_ne!(out_of_range.code, 0);
    assert!(
        out_of_range
            .stderr
            .contains("provided port is not in the valid range"),
        "{}",
        out_of_range.stderr
    );
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
    assert_eq!(
        applied.stdout,
        "configmap/cfg created\ndeployment.apps/web created\n"
    );

    let changed = support::write(
        cluster.dir(),
        "cfg.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  b: \"2\"\n",
    );
    let changed = changed.to_str().expect("utf-8");
    let reapplied = cluster.kubectl(&["apply", "-f", changed]);
    assert_eq!(
        reapplied.stdout, "configmap/cfg configured\n",
        "{}",
        reapplied.stderr
    );
    let data = cluster.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.data}"]);
    assert_eq!(data.stdout, r#"{"b":"2"}"#);

    let server_side = cluster.kubectl(&["apply", "--server-side", "-f", manifest]);
    assert_eq!(server_side.code, 0, "{}", server_side.stderr);
    assert_eq!(
        server_side.stdout,
        "configmap/cfg serverside-applied\ndeployment.apps/web serverside-applied\n"
    );
    let data = cluster.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]);
    assert_eq!(data.stdout, "1");

    let scaled = cluster.kubectl(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(
        scaled.stdout, "deployment.apps/web scaled\n",
        "{}",
        scaled.stderr
    );
    let pods = cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.stdout.lines().count(), 3, "{}", pods.stdout);

    // A short watch: kubectl prints the current pods, then the ones a scale-down deletes are
    // gone from later listings; the watch ends at its request timeout.
    let mut watch = kubectl_command(
        &cluster,
        &["get", "pods", "-l", "app=web", "-w", "--request-timeout=3s"],
    )
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
    assert!(
        added.starts_with("web-") && added.contains("Running"),
        "{added}"
    );
    let _ = watch.kill();
    let _ = watch.wait();

    let deleted = cluster.kubectl(&["delete", "deployment", "web"]);
    assert_eq!(
        deleted.stdout, "deployment.apps \"web\" deleted\n",
        "{}",
        deleted.stderr
    );
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
    assert_eq!(
        document["result"]["during"],
        serde_json::json!([31600, 31650, 31651, 31652, 31654, 31999])
    );
    assert_eq!(
        document["result"]["after"],
        serde_json::json!([30600, 30650, 30651, 30652, 30654, 30999])
    );
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

fn connects(address: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).is_ok()
}

#[test]
fn patching_the_node_port_moves_the_listener_and_forwards_to_the_backend() {
    use std::io::{Read, Write};

    let cluster = Cluster::start();
    let handle = ankus::host::runtime::handle();
    let node = kube_api::allocate_node_addr();
    let state = cluster.state.clone();
    let forwarder = handle.block_on(kube_api::NodePortForwarder::start(
        &state, "old", "pachd", node,
    ));
    // A stand-in for the emulated pachd's gRPC port: answers "pachd" to whoever connects.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").expect("backend");
    forwarder.set_backend("api-grpc-port", backend.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"pachd");
        }
    });
    let old_port = std::net::SocketAddr::from((node, 30650));
    let blocked_port = std::net::SocketAddr::from((node, 30649));
    let mut reply = String::new();
    std::net::TcpStream::connect(old_port)
        .expect("30650 accepts")
        .read_to_string(&mut reply)
        .expect("reads");
    assert_eq!(reply, "pachd");
    assert!(!connects(blocked_port));
    assert!(
        connects(std::net::SocketAddr::from((node, 30600))),
        "ports without a backend still accept"
    );

    let swapped = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "-p",
        r#"{"spec":{"ports":[{"port":650,"nodePort":30649}]}}"#,
    ]);
    assert_eq!(swapped.code, 0, "{}", swapped.stderr);
    assert!(
        !connects(old_port),
        "30650 must refuse once the Service no longer declares it"
    );
    let mut reply = String::new();
    std::net::TcpStream::connect(blocked_port)
        .expect("30649 accepts")
        .read_to_string(&mut reply)
        .expect("reads");
    assert_eq!(reply, "pachd");

    let restored = cluster.kubectl(&[
        "patch",
        "svc",
        "pachd",
        "-p",
        r#"{"spec":{"ports":[{"port":650,"nodePort":30650}]}}"#,
    ]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert!(connects(old_port));
    assert!(!connects(blocked_port));
    handle.block_on(forwarder.stop());
    assert!(!connects(old_port));
}

#[derive(Default)]
struct RecordingHooks {
    calls: std::sync::Mutex<Vec<String>>,
}

impl kube_api::DeploymentHooks for RecordingHooks {
    fn pachd_deployed(&self, namespace: &str, deployment: &serde_json::Value) {
        let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("");
        self.calls
            .lock()
            .expect("lock")
            .push(format!("deployed {namespace} {image}"));
    }

    fn pachd_stopped(&self, namespace: &str) {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("stopped {namespace}"));
    }
}

#[test]
fn applying_a_pachd_deployment_in_a_new_namespace_calls_the_deploy_hook() {
    let cluster = Cluster::start();
    let hooks = Arc::new(RecordingHooks::default());
    cluster.state.add_hooks(hooks.clone());
    let manifests = [
        serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "new" } }),
        kube_api::seed::pachd_service("new"),
        kube_api::seed::pachd_deployment("new", "1.12.5"),
    ];
    let text: Vec<String> = manifests
        .iter()
        .map(|item| serde_yaml::to_string(item).expect("yaml"))
        .collect();
    let path = support::write(cluster.dir(), "new.yaml", &text.join("---\n"));
    let applied = cluster.kubectl(&["apply", "-f", path.to_str().expect("utf-8")]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(
        *hooks.calls.lock().expect("lock"),
        vec!["deployed new pachyderm/pachd:1.12.5"]
    );
    let pods = cluster.kubectl(&["get", "pods", "-n", "new", "-o", "name"]);
    assert!(pods.stdout.starts_with("pod/pachd-"), "{}", pods.stdout);

    let scaled = cluster.kubectl(&["scale", "deployment", "pachd", "-n", "new", "--replicas=0"]);
    assert_eq!(scaled.code, 0, "{}", scaled.stderr);
    let deleted = cluster.kubectl(&["delete", "deployment", "pachd", "-n", "old"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(
        *hooks.calls.lock().expect("lock"),
        vec![
            "deployed new pachyderm/pachd:1.12.5",
            "stopped new",
            "stopped old"
        ]
    );
}

#[test]
fn pipeline_workers_follow_the_requested_count() {
    let cluster = Cluster::start();
    let handle = ankus::host::runtime::handle();
    let worker_pods = |cluster: &Cluster| -> Vec<String> {
        cluster
            .state
            .pod_names("old")
            .into_iter()
            .filter(|name| name.starts_with("pipeline-edges-v1-"))
            .collect()
    };
    assert_eq!(worker_pods(&cluster).len(), 1);
    let state = cluster.state.clone();
    handle
        .block_on(state.set_pipeline_workers("old", "edges", 0, "ubuntu:18.04"))
        .expect("stop");
    assert!(worker_pods(&cluster).is_empty());
    let state = cluster.state.clone();
    handle
        .block_on(state.set_pipeline_workers("old", "edges", 1, "ubuntu:18.04"))
        .expect("start");
    assert_eq!(worker_pods(&cluster).len(), 1);
}

#[test]
fn bindings_cover_every_verb() {
    let cluster = Cluster::start();
    let (outcome, document) = run_script(
        &cluster,
        r#"
        let k = kube::connect(#{ context: "old" });
        let r = #{};
        r.context = kube::current_context();
        r.contexts = kube::contexts();
        r.namespaces = k.namespaces();
        r.svc_port = k.get("svc", "pachd").spec.ports[1].nodePort;
        r.deploy_kind = k.get("apps/v1/Deployment", "pachd").kind;
        r.pachd_pods = k.list("pods", #{ labels: "app=pachd" }).len();
        r.running = k.list("pods", #{ fields: "status.phase=Running" }).len();
        r.merge = k.patch("configmap", k.create(#{ apiVersion: "v1", kind: "ConfigMap",
            metadata: #{ name: "notes" }, data: #{ a: "1" } }).metadata.name,
            #{ data: #{ b: "2" } }, "merge").data;
        r.json = k.patch("configmap", "notes", [#{ op: "remove", path: "/data/a" }]).data;
        r.applied = k.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  x: y\n")[0].data;
        r.scaled = k.scale("deployment", "dash", 0).spec.replicas;
        r.dash_ready = k.wait("deployment", "dash", "ready", 10).status.observedGeneration;
        r.deployment = k.deployment("pachd").to_map();
        r.etcd = k.statefulset("etcd").ready;
        let pod = k.pods("app=pachd")[0];
        r.pod = `${pod.phase} ${pod.ready} ${pod.owner.split("/")[0]}`;
        r.etcd_pod_owner = k.pod("etcd-0").owner;
        r.namespace = k.namespace_info("old").phase;
        r.log = k.logs("etcd-0").contains("etcd");
        let seen = [];
        r.watched = k.watch("pods", #{ labels: "app=etcd", timeout: 5 }, |e| { seen.push(e.type); false });
        r.seen = seen;
        k.delete("configmap", "notes");
        r.deleted = k.wait("configmap", "notes", "deleted", 5) == ();
        r
        "#,
        &[],
    );
    assert_eq!(outcome.code, 0, "{}\n{}", outcome.stdout, outcome.stderr);
    let result = &document["result"];
    assert_eq!(result["context"], "old");
    assert_eq!(result["contexts"], serde_json::json!(["old", "new"]));
    assert_eq!(
        result["namespaces"],
        serde_json::json!(["default", "kube-public", "kube-system", "old"])
    );
    assert_eq!(result["svc_port"], 30650);
    assert_eq!(result["deploy_kind"], "Deployment");
    assert_eq!(result["pachd_pods"], 1);
    assert_eq!(result["running"], 5);
    assert_eq!(result["merge"], serde_json::json!({ "a": "1", "b": "2" }));
    assert_eq!(result["json"], serde_json::json!({ "b": "2" }));
    assert_eq!(result["applied"], serde_json::json!({ "x": "y" }));
    assert_eq!(result["scaled"], 0);
    assert_eq!(result["deployment"]["replicas"], 1);
    assert_eq!(result["deployment"]["ready"], true);
    assert_eq!(
        result["deployment"]["images"],
        serde_json::json!(["pachyderm/pachd:1.11.9"])
    );
    assert_eq!(result["etcd"], true);
    assert_eq!(result["pod"], "Running true ReplicaSet");
    assert_eq!(result["etcd_pod_owner"], "StatefulSet/etcd");
    assert_eq!(result["namespace"], "Active");
    assert_eq!(result["log"], true);
    assert_eq!(result["watched"], 1);
    assert_eq!(result["seen"], serde_json::json!(["ADDED"]));
    assert_eq!(result["deleted"], true);
}

#[test]
fn dry_run_records_diffs_and_changes_nothing() {
    let cluster = Cluster::start();
    let before = service_json(&cluster);
    let (outcome, document) = run_script(
        &cluster,
        r#"
        let k = kube::connect(#{ context: "old" });
        k.save("service", "pachd", "saved.json");
        let after = k.swap_node_ports("pachd", #{ "30650": 30649 });
        k.scale("deployment", "pachd", 0);
        k.apply(#{ apiVersion: "v1", kind: "ConfigMap", metadata: #{ name: "c" }, data: #{ a: "1" } });
        k.delete("statefulset", "etcd");
        k.restore_saved("saved.json");
        after.node_ports
        "#,
        &["--dry-run"],
    );
    assert_eq!(outcome.code, 0, "{}\n{}", outcome.stdout, outcome.stderr);
    assert_eq!(
        document["result"],
        serde_json::json!([30600, 30649, 30651, 30652, 30654, 30999])
    );
    let plan = document["plan"].as_array().expect("plan");
    let actions: Vec<&str> = plan
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        vec!["save", "patch", "scale", "apply", "delete", "restore_saved"]
    );
    assert_eq!(
        plan[1]["details"]["diff"],
        serde_json::json!([{ "path": "/spec/ports/1/nodePort", "before": 30650, "after": 30649 }])
    );
    assert_eq!(plan[2]["details"]["replicas"], serde_json::json!([1, 0]));
    assert_eq!(plan[3]["details"]["created"], true);
    assert_eq!(plan[5]["details"]["diff"], serde_json::json!([]));
    assert!(!cluster.dir().join("saved.json").exists());
    assert_eq!(
        without_server_fields(service_json(&cluster)),
        without_server_fields(before)
    );
    let configmaps = cluster.kubectl(&["get", "configmap", "c"]);
    assert_ne!(configmaps.code, 0);
    let etcd = cluster.kubectl(&["get", "statefulset", "etcd", "-o", "name"]);
    assert_eq!(etcd.stdout.trim(), "statefulset.apps/etcd");
}

#[test]
fn bad_input_fails_with_the_servers_reason_and_the_object_named() {
    let cluster = Cluster::start();
    let (outcome, document) = run_script(
        &cluster,
        r#"
        let k = kube::connect(#{ context: "old" });
        let errors = #{};
        let attempts = #{
            unknown_kind: || k.get("widgets", "x"),
            missing: || k.get("service", "nosuch"),
            invalid_patch: || k.patch("service", "pachd", [#{ op: "replace", path: "/spec/nope/0", value: 1 }]),
            invalid_value: || k.patch("service", "pachd", #{ spec: #{ ports: [#{ port: 650, nodePort: 99999 }] } }),
            stale: || k.patch("service", "pachd", #{ metadata: #{ resourceVersion: "1" }, spec: #{ type: "NodePort" } }),
            exists: || k.create(#{ apiVersion: "v1", kind: "Service", metadata: #{ name: "pachd" }, spec: #{} }),
            no_context: || kube::connect(#{ context: "staging" }),
            unreachable: || kube::connect(#{ kubeconfig: "unreachable.yaml" }),
            bad_manifest: || k.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok1\n---\nkind: Nope\napiVersion: v1\nmetadata:\n  name: bad\n"),
        };
        for name in attempts.keys() {
            try { attempts[name].call(); errors[name] = "no error"; }
            catch (e) { errors[name] = `${e.kind}: ${e.message}`; }
        }
        errors.ok1_exists = k.list("configmaps", #{ fields: "metadata.name=ok1" }).len();
        errors
        "#,
        &[],
    );
    assert_eq!(outcome.code, 0, "{}\n{}", outcome.stdout, outcome.stderr);
    let errors = &document["result"];
    let text = |key: &str| {
        errors[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {errors}"))
            .to_owned()
    };
    assert_eq!(
        text("unknown_kind"),
        "not_found: resolve kind 'widgets': the server has no such resource type"
    );
    assert_eq!(
        text("missing"),
        r#"not_found: get services/nosuch in namespace old: services "nosuch" not found (NotFound, HTTP 404)"#
    );
    assert!(
        text("invalid_patch").starts_with(
            r#"invalid: patch services/pachd in namespace old: Service "pachd" is invalid"#
        ),
        "{}",
        text("invalid_patch")
    );
    assert!(
        text("invalid_value").contains("spec.ports[1].nodePort: Invalid value: 99999"),
        "{}",
        text("invalid_value")
    );
    assert!(text("stale").starts_with(r#"conflict: patch services/pachd in namespace old: Operation cannot be fulfilled on services "pachd": the object has been modified"#), "{}", text("stale"));
    assert_eq!(
        text("exists"),
        r#"already_exists: create services/pachd in namespace old: services "pachd" already exists (AlreadyExists, HTTP 409)"#
    );
    assert!(
        text("no_context").starts_with("not_found: find context 'staging' in "),
        "{}",
        text("no_context")
    );
    assert!(
        text("no_context").ends_with("(known contexts: old, new)"),
        "{}",
        text("no_context")
    );
    assert!(
        text("unreachable")
            .starts_with("unavailable: read the server version: cannot reach the Kubernetes API server http://127.0.0.1:9"),
        "{}",
        text("unreachable")
    );
    assert!(
        text("bad_manifest").starts_with("not_found: resolve kind 'v1/Nope'"),
        "{}",
        text("bad_manifest")
    );
    assert_eq!(
        errors["ok1_exists"], 0,
        "nothing of a failed manifest is applied"
    );
}

/// Forwards TCP to the API server; before passing on the first PATCH it changes the object
/// itself, so that PATCH carries a stale resourceVersion.
async fn interfering_proxy(
    server: std::net::SocketAddr,
    state: Arc<KubeState>,
    patches: Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (state, patches) = (state.clone(), patches.clone());
            tokio::spawn(async move {
                let outbound = tokio::net::TcpStream::connect(server)
                    .await
                    .expect("server");
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                });
                let mut buffer = vec![0u8; 65536];
                loop {
                    let Ok(read) = in_read.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    if buffer.starts_with(b"PATCH ")
                        && patches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
                    {
                        let services =
                            kube_api::resources::find("", "v1", "services").expect("served");
                        let options = kube_api::state::WriteOptions {
                            field_manager: "someone-else".into(),
                            ..Default::default()
                        };
                        state
                            .patch(
                                services,
                                "old",
                                "pachd",
                                kube_api::state::PatchKind::Merge,
                                br#"{"metadata":{"labels":{"touched":"concurrently"}}}"#,
                                &options,
                            )
                            .await
                            .expect("interfering change");
                    }
                    if out_write.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[test]
fn a_patch_that_meets_a_concurrent_change_is_retried_on_a_fresh_read() {
    let cluster = Cluster::start();
    let handle = ankus::host::runtime::handle();
    let patches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = handle.block_on(interfering_proxy(
        cluster.address,
        cluster.state.clone(),
        patches.clone(),
    ));
    let kubeconfig = cluster.dir().join("proxied.yaml");
    kube_api::write_kubeconfig(
        &kubeconfig,
        &[KubeconfigContext {
            name: "old".into(),
            server: format!("http://{proxy}"),
            namespace: "old".into(),
        }],
        "old",
    )
    .expect("kubeconfig");
    let options = ankus::kube::ConnectOptions {
        kubeconfig: Some(kubeconfig),
        ..Default::default()
    };
    let change = handle
        .block_on(async move {
            let client = ankus::kube::KubeClient::connect(&options).await?;
            client
                .patch(
                    "service",
                    "pachd",
                    None,
                    ankus::kube::PatchType::Strategic,
                    &serde_json::json!({ "spec": { "ports": [{ "port": 650, "nodePort": 30649 }] } }),
                    false,
                )
                .await
        })
        .expect("the patch succeeds after a retry");
    assert_eq!(
        patches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one 409, one retry"
    );
    assert_eq!(
        change.after["metadata"]["labels"]["touched"], "concurrently",
        "the concurrent change is kept"
    );
    assert_eq!(change.after["spec"]["ports"][1]["nodePort"], 30649);
    assert_eq!(
        change.before.expect("before")["metadata"]["labels"]["touched"],
        "concurrently"
    );
}

/// Runs the real kubectl against a whole sandbox (its own kubeconfig, context `old`).
fn sandbox_kubectl(
    sandbox: &ankus::sandbox::cluster::Sandbox,
    home: &Path,
    args: &[&str],
) -> Outcome {
    Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", sandbox.kubeconfig_path())
        .env("HOME", home)
        .env("KUBECACHEDIR", home.join("cache"))
        .current_dir(home)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl runs")
        .into()
}

#[test]
fn kubectl_get_nodes_lists_one_ready_node_per_sandbox_namespace() {
    use ankus::sandbox::cluster::{Sandbox, SandboxConfig};
    let dir = support::temp_dir();
    let handle = ankus::host::runtime::handle();
    let sandbox = handle
        .block_on(Sandbox::start(SandboxConfig::new(
            &dir.path().join("sandbox"),
        )))
        .expect("the sandbox starts");
    let kubectl = |args: &[&str]| sandbox_kubectl(&sandbox, dir.path(), args);

    let listed = kubectl(&["get", "nodes"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let mut lines = listed.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let rows: Vec<Vec<&str>> = lines
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", listed.stdout);
    for (row, name) in rows.iter().zip(["sandbox-new", "sandbox-old"]) {
        assert_eq!(
            (row[0], row[1], row[2], row[4]),
            (name, "Ready", "<none>", "v1.29.0"),
            "{}",
            listed.stdout
        );
    }

    // The node's address is the namespace's loopback node address, where its NodePorts listen.
    let wide = kubectl(&["get", "no", "-o", "wide"]);
    assert_eq!(wide.code, 0, "{}", wide.stderr);
    for namespace in ["old", "new"] {
        let address = sandbox
            .node_address(namespace)
            .expect("a node address")
            .to_string();
        assert!(
            wide.stdout.lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&format!("sandbox-{namespace}").as_str())
                    && cells.get(5) == Some(&address.as_str())
            }),
            "{}",
            wide.stdout
        );
    }

    let shown = kubectl(&["get", "node", "sandbox-old", "-o", "json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let node: serde_json::Value = serde_json::from_str(&shown.stdout).expect("kubectl prints JSON");
    assert_eq!(node["kind"], "Node");
    let metadata = &node["metadata"];
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(
            metadata[field]
                .as_str()
                .is_some_and(|value| !value.is_empty()),
            "{field}: {node}"
        );
    }
    assert_eq!(metadata["labels"]["kubernetes.io/hostname"], "sandbox-old");
    for amounts in ["capacity", "allocatable"] {
        for resource in ["cpu", "memory", "pods", "ephemeral-storage"] {
            assert!(
                node["status"][amounts][resource].is_string(),
                "{amounts}.{resource}: {node}"
            );
        }
    }
    let old_address = sandbox
        .node_address("old")
        .expect("a node address")
        .to_string();
    assert_eq!(
        node["status"]["addresses"],
        serde_json::json!([
            { "type": "InternalIP", "address": old_address },
            { "type": "Hostname", "address": "sandbox-old" },
        ])
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready["status"], "True");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.29.0");

    let missing = kubectl(&["get", "node", "nosuch"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): nodes "nosuch" not found"#),
        "{}",
        missing.stderr
    );

    // The namespace's pods run on its node.
    let pods = kubectl(&[
        "get",
        "pods",
        "-n",
        "old",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.hostIP}{\"\\n\"}{end}",
    ]);
    assert_eq!(pods.code, 0, "{}", pods.stderr);
    let placements: std::collections::BTreeSet<String> =
        pods.stdout.lines().map(str::to_owned).collect();
    assert_eq!(
        placements,
        std::collections::BTreeSet::from([format!("sandbox-old {old_address}")]),
        "{}",
        pods.stdout
    );
    handle.block_on(sandbox.shutdown());
}

#[test]
fn a_real_pachd_1_9_gets_the_node_list_it_asks_for_at_start() {
    let real = crate::real_pachd::RealPachd::start();
    // pachd asks once its PPS server is up, which may be just after it answers `version`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answers = loop {
        let log = real.kube_requests();
        let answers = node_list_answers(&log);
        if !answers.is_empty() || std::time::Instant::now() > deadline {
            break answers;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(
        !answers.is_empty()
            && answers
                .iter()
                .all(|answer| answer.starts_with("HTTP/1.1 200")),
        "GET /api/v1/nodes was answered {answers:?}:\n{}",
        real.kube_requests()
    );
    let pachd_log = std::fs::read_to_string(real.dir().join("pachd.log")).unwrap_or_default();
    assert!(
        !pachd_log.contains("unable to access kubernetes nodeslist"),
        "{pachd_log}"
    );
}

/// The status lines answering each `GET /api/v1/nodes` in a TLS terminator log
/// (`TIME PEER > REQUEST-LINE`, `TIME PEER < STATUS-LINE`; one connection per peer port).
fn node_list_answers(log: &str) -> Vec<String> {
    let entries: Vec<(&str, &str, &str)> = log
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let _time = parts.next()?;
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect();
    entries
        .iter()
        .enumerate()
        .filter(|(_, (_, direction, text))| {
            *direction == ">" && text.starts_with("GET /api/v1/nodes ")
        })
        .filter_map(|(index, (peer, _, _))| {
            entries[index + 1..]
                .iter()
                .find(|(other, direction, _)| other == peer && *direction == "<")
                .map(|(_, _, text)| (*text).to_owned())
        })
        .collect()
}
