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

#[test]
fn kubectl_explore() {
    let cluster = Cluster::start();
    for args in [
        vec!["get", "pods", "-w", "--request-timeout=2s"],
        vec!["patch", "svc", "pachd", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/nope/1","value":1}]"#],
        vec!["patch", "svc", "pachd", "--type=merge", "-p", r#"{"spec":{"ports":[{"port":650,"nodePort":99999}]}}"#],
        vec!["get", "ns"],
        vec!["describe", "ns", "old"],
        vec!["get", "events"],
        vec!["logs", "etcd-0"],
    ] {
        let out = cluster.kubectl(&args);
        eprintln!("$ kubectl {}\n{}\n{}", args.join(" "), out.stdout, out.stderr);
    }
    let _ = &cluster.state;
    let _ = cluster.address;
}
