//! The sandbox refuses what a real cluster refuses: Kubernetes API requests without the
//! kubeconfig's bearer token, Service writes with malformed NodePorts, and pachd URL dumps
//! outside the cluster's own bucket.

use std::path::Path;
use std::process::Command;

use ankus::proto::admin;

use crate::flows::SandboxProcess;
use crate::kube::kubectl_path;
use crate::support::{Outcome, temp_dir};

/// Runs the real kubectl with `kubeconfig` (a path, or empty for none) from `work`.
fn kubectl(work: &Path, kubeconfig: &Path, args: &[&str]) -> Outcome {
    Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", work)
        .env("KUBECACHEDIR", work.join("cache"))
        .current_dir(work)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl runs")
        .into()
}

fn kube_server(sandbox: &SandboxProcess) -> String {
    sandbox.info["kube_server"]
        .as_str()
        .expect("kube_server")
        .to_owned()
}

#[test]
fn kubectl_without_the_sandbox_token_is_refused_as_unauthorized() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(&work.path().join("sbx"), &[]);
    let kubeconfig = sandbox.dir.join("kubeconfig");
    let allowed = kubectl(work.path(), &kubeconfig, &["get", "service", "pachd"]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);

    // kubectl sends credentials over TLS only: without a kubeconfig user and over plain
    // HTTP it sends none; with the sandbox's kubeconfig and `--token` a wrong one.
    let server = format!("--server={}", kube_server(&sandbox));
    let empty = work.path().join("empty-kubeconfig");
    std::fs::write(&empty, "").expect("write");
    let cases = [
        (
            "no token",
            &empty,
            vec![server.as_str(), "get", "services", "-n", "old"],
        ),
        (
            "a wrong token",
            &kubeconfig,
            vec!["--token=guessed", "get", "services"],
        ),
    ];
    for (what, config, args) in cases {
        let refused = kubectl(work.path(), config, &args);
        assert_ne!(refused.code, 0, "{what}: {}", refused.stdout);
        assert!(
            refused
                .stderr
                .contains("You must be logged in to the server (Unauthorized)"),
            "{what}: {}",
            refused.stderr
        );
    }
}

#[test]
fn kubectl_patch_with_a_string_node_port_fails_with_the_servers_message() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(&work.path().join("sbx"), &[]);
    let kubeconfig = sandbox.dir.join("kubeconfig");
    let cases = [
        (
            r#"{"spec":{"ports":[{"name":"api-grpc-port","port":650,"nodePort":"abc"}]}}"#,
            r#"The Service "pachd" is invalid: spec.ports[0].nodePort: Invalid value: "abc": must be an integer"#,
        ),
        (
            r#"{"spec":{"ports":[{"name":"api-grpc-port","port":650,"nodePort":29999}]}}"#,
            r#"The Service "pachd" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"#,
        ),
    ];
    for (patch, message) in cases {
        let patched = kubectl(
            work.path(),
            &kubeconfig,
            &["patch", "service", "pachd", "--type=merge", "-p", patch],
        );
        assert_ne!(patched.code, 0, "{patch}: {}", patched.stdout);
        assert!(
            patched.stderr.contains(message),
            "{patch}: {}",
            patched.stderr
        );
    }
    let ports = kubectl(
        work.path(),
        &kubeconfig,
        &[
            "get",
            "service",
            "pachd",
            "-o",
            "jsonpath={.spec.ports[*].nodePort}",
        ],
    );
    assert!(
        ports.stdout.split(' ').any(|port| port == "30650"),
        "the Service changed: {}",
        ports.stdout
    );
}

#[test]
fn pachd_restore_from_a_file_url_outside_its_bucket_is_refused_naming_the_url() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(&work.path().join("sbx"), &[]);
    let endpoint = sandbox.info["clusters"]["old"]["direct_address"]
        .as_str()
        .expect("direct_address")
        .replace("grpc://", "http://");
    let stolen = work.path().join("stolen.dump");
    let (restored, extracted) = ankus::host::runtime::handle().block_on(async {
        let mut client = admin::api_client::ApiClient::connect(endpoint)
            .await
            .expect("connects");
        let restored = client
            .restore(tokio_stream::iter(vec![admin::RestoreRequest {
                op: None,
                url: "file:///etc/passwd".into(),
            }]))
            .await
            .expect_err("restore from /etc/passwd is refused");
        let extracted = client
            .extract(admin::ExtractRequest {
                url: format!("file://{}", stolen.display()),
                ..Default::default()
            })
            .await
            .expect_err("extract outside the bucket is refused");
        (restored, extracted)
    });
    assert_eq!(restored.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        restored.message(),
        "URL file:///etc/passwd is outside this cluster's bucket; the ankus sandbox reads and \
         writes dumps only there"
    );
    assert_eq!(extracted.code(), tonic::Code::PermissionDenied);
    assert!(
        extracted.message().contains(&stolen.display().to_string()),
        "{}",
        extracted.message()
    );
    assert!(!stolen.exists());
}
