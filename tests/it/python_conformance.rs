//! The official Python client against the sandbox, and our descriptors against its protos.
//! Both need the virtualenv `.ci/setup` creates (`target/pyenv`); without it they fail and say so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use ankus::sandbox::cluster::spawn_cluster;
use ankus::sandbox::pachd::ClusterConfig;

fn python() -> PathBuf {
    let venv = std::env::var_os("ANKUS_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "python-pachyderm's virtualenv is missing at {}: run .ci/setup",
        venv.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Decompresses the snappy-framed fixture into the bare record stream (python has no snappy).
fn raw_fixture(dir: &Path) -> PathBuf {
    let file = std::fs::File::open(super::sandbox::fixture()).expect("fixture exists");
    let mut raw = Vec::new();
    snap::read::FrameDecoder::new(file)
        .read_to_end(&mut raw)
        .expect("fixture decompresses");
    let path = dir.join("fixture.raw");
    std::fs::write(&path, raw).expect("write raw fixture");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pachyderm_drives_the_sandbox_unchanged() {
    let python = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ClusterConfig::new("py", "1.13".parse().unwrap(), &dir.path().join("bucket"));
    let (_cluster, address, shutdown, _task) = spawn_cluster(config).await.expect("cluster starts");
    let raw = raw_fixture(dir.path());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script("sandbox_conformance.py"))
            .arg(address.to_string())
            .arg(raw)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    shutdown.cancel();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "ok version 1.13.4",
        "ok repos scratch,images",
        "ok duplicate_repo_error",
        "ok put_get_file hello world",
        "ok list_file /a.txt,/c.txt,/dir",
        "ok stop_pipeline",
        "ok start_pipeline",
        "ok unknown_pipeline_error",
        "ok restore edges,images",
        "ok fixture_repos sort,copy,right,left",
        "ok fixture_jobs 10",
        "ok fixture_roles pach:root,robot:test",
        "ok whoami pach:root",
        "ok no_token_error no authentication token (try logging in)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing '{line}' in:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn our_descriptors_match_python_pachyderm_protos() {
    let python = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ankus.fds");
    std::fs::write(&path, ankus::proto::FILE_DESCRIPTOR_SET).expect("write descriptors");
    let output = Command::new(python)
        .arg(script("proto_check.py"))
        .arg(&path)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "proto_check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("0 mismatches"),
        "unexpected report:\n{stdout}"
    );
}
