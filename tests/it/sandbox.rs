//! The emulated pachd against the generated gRPC clients over real sockets: the fixture dump's
//! inventory after restore (upstream's own expectations), extract → restore round trips,
//! strict restores, stop/start semantics, auth, persistence, bad input and the loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ankus::proto::{admin, auth, pfs, pps, versionpb};
use ankus::sandbox::cluster::{Sandbox, SandboxConfig, restore_dump, spawn_cluster};
use ankus::sandbox::pachd::{Cluster, ClusterConfig, PachdVersion, PipelineObserver};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The real 1.11.9 dump (upstream's migration fixture).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/pachd-1.11-auth.dump")
}

/// A running in-process cluster for one test.
pub struct Running {
    pub _dir: tempfile::TempDir,
    pub cluster: Cluster,
    pub endpoint: String,
    pub shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_with(version: &str, tune: impl FnOnce(&mut ClusterConfig)) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ClusterConfig::new("test", version.parse().expect("version"), &dir.path().join("bucket"));
    tune(&mut config);
    let (cluster, address, shutdown, _task) = spawn_cluster(config).await.expect("cluster starts");
    Running {
        _dir: dir,
        cluster,
        endpoint: format!("http://{address}"),
        shutdown,
    }
}

pub async fn start(version: &str) -> Running {
    start_with(version, |_| {}).await
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authn-token", token.parse().expect("ascii token"));
    request
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connects")
}

/// What a cluster holds, as a client sees it (compared across round trips).
#[derive(Debug, PartialEq, Eq)]
struct Inventory {
    repos: Vec<String>,
    commits: Vec<(String, usize)>,
    heads: BTreeSet<(String, String, String, Vec<String>)>,
    pipelines: Vec<(String, String, String)>,
    jobs: usize,
    bindings: BTreeSet<(String, Vec<i32>)>,
    acls: BTreeSet<(String, String, i32)>,
}

async fn inventory(endpoint: &str, token: &str) -> Inventory {
    let ch = channel(endpoint).await;
    let mut pfs_client = pfs::api_client::ApiClient::new(ch.clone());
    let mut pps_client = pps::api_client::ApiClient::new(ch.clone());
    let mut auth_client = auth::api_client::ApiClient::new(ch);
    let repos: Vec<String> = pfs_client
        .list_repo(with_token(pfs::ListRepoRequest {}, token))
        .await
        .expect("list repos")
        .into_inner()
        .repo_info
        .into_iter()
        .map(|r| r.repo.unwrap().name)
        .collect();
    let mut commits = Vec::new();
    let mut heads = BTreeSet::new();
    let mut all = repos.clone();
    all.push("__spec__".into());
    for repo in &all {
        let list = pfs_client
            .list_commit(with_token(
                pfs::ListCommitRequest {
                    repo: Some(pfs::Repo { name: repo.clone() }),
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list commits")
            .into_inner();
        commits.push((repo.clone(), list.commit_info.len()));
        let branches = pfs_client
            .list_branch(with_token(
                pfs::ListBranchRequest {
                    repo: Some(pfs::Repo { name: repo.clone() }),
                    reverse: false,
                },
                token,
            ))
            .await
            .expect("list branches")
            .into_inner();
        for b in branches.branch_info {
            let mut prov: Vec<String> = b
                .direct_provenance
                .iter()
                .map(|p| format!("{}@{}", p.repo.as_ref().unwrap().name, p.name))
                .collect();
            prov.sort();
            heads.insert((repo.clone(), b.name.clone(), b.head.map(|h| h.id).unwrap_or_default(), prov));
        }
    }
    let pipelines = pps_client
        .list_pipeline(with_token(pps::ListPipelineRequest::default(), token))
        .await
        .expect("list pipelines")
        .into_inner()
        .pipeline_info
        .into_iter()
        .map(|p| {
            (
                p.pipeline.unwrap().name,
                p.transform.unwrap().image,
                p.spec_commit.map(|c| c.id).unwrap_or_default(),
            )
        })
        .collect();
    let jobs = pps_client
        .list_job(with_token(pps::ListJobRequest::default(), token))
        .await
        .expect("list jobs")
        .into_inner()
        .job_info
        .len();
    let mut bindings = BTreeSet::new();
    let mut acls = BTreeSet::new();
    if let Ok(response) = auth_client
        .get_cluster_role_bindings(with_token(auth::GetClusterRoleBindingsRequest {}, token))
        .await
    {
        for (principal, roles) in response.into_inner().bindings {
            bindings.insert((principal, roles.roles));
        }
        for repo in &all {
            let acl = auth_client
                .get_acl(with_token(auth::GetAclRequest { repo: repo.clone() }, token))
                .await
                .expect("get acl")
                .into_inner();
            for e in acl.entries.into_iter().chain(acl.robot_entries) {
                acls.insert((repo.clone(), e.username, e.scope));
            }
        }
    }
    Inventory {
        repos,
        commits,
        heads,
        pipelines,
        jobs,
        bindings,
        acls,
    }
}

async fn extract_all(endpoint: &str, token: &str, request: admin::ExtractRequest) -> Vec<admin::Op> {
    let mut client = admin::api_client::ApiClient::new(channel(endpoint).await);
    let mut stream = client
        .extract(with_token(request, token))
        .await
        .expect("extract starts")
        .into_inner();
    let mut ops = Vec::new();
    while let Some(op) = stream.message().await.expect("extract streams") {
        ops.push(op);
    }
    ops
}

async fn restore_ops(endpoint: &str, token: &str, mode: Option<&str>, ops: Vec<admin::Op>) -> Result<(), tonic::Status> {
    let mut client = admin::api_client::ApiClient::new(channel(endpoint).await);
    let requests: Vec<admin::RestoreRequest> = ops
        .into_iter()
        .map(|op| admin::RestoreRequest { op: Some(op), url: String::new() })
        .collect();
    let mut request = with_token(tokio_stream::iter(requests), token);
    if let Some(mode) = mode {
        request.metadata_mut().insert("ankus-restore-mode", mode.parse().unwrap());
    }
    client.restore(request).await.map(|_| ())
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_restore_into_1_13_gives_upstream_inventory_and_round_trips() {
    let first = start("1.13").await;
    restore_dump(&first.endpoint, &fixture(), TOKEN).await.expect("fixture restores");
    let inv = inventory(&first.endpoint, TOKEN).await;
    assert_eq!(inv.repos, ["sort", "copy", "right", "left"]);
    let count = |repo: &str| inv.commits.iter().find(|(r, _)| r == repo).unwrap().1;
    assert_eq!((count("left"), count("right"), count("copy"), count("sort"), count("__spec__")), (3, 3, 10, 10, 2));
    let head = |repo: &str, branch: &str| {
        inv.heads
            .iter()
            .find(|(r, b, _, _)| r == repo && b == branch)
            .map(|(_, _, h, p)| (h.clone(), p.clone()))
            .unwrap()
    };
    assert_eq!(head("left", "master").0, "37460f1a7b244791881e8f92b7c30898");
    assert_eq!(head("right", "master").0, "60d67860bc1241a89b193409891581a0");
    assert_eq!(
        head("copy", "master"),
        (
            "f2d88edec5d7447eb47c250519e91669".to_owned(),
            vec!["__spec__@copy".to_owned(), "left@master".to_owned(), "right@master".to_owned()]
        )
    );
    assert_eq!(head("copy", "stats").0, "c343fe6764314a4a9ff7731381a87b1f");
    assert_eq!(head("sort", "master").0, "f7fc16d292df431f80decbec1add81e7");
    assert_eq!(head("sort", "stats").0, "a9813f5c8e1b40bd80704919749ae081");
    assert_eq!(head("__spec__", "copy").0, "48d8ce104fe9442697c5e1e5f30d40f7");
    let mut pipelines = inv.pipelines.clone();
    pipelines.sort();
    assert_eq!(
        pipelines,
        [
            ("copy".to_owned(), "ubuntu:16.04".to_owned(), "48d8ce104fe9442697c5e1e5f30d40f7".to_owned()),
            ("sort".to_owned(), "ubuntu:16.04".to_owned(), "dec8bc2b235e4dd18257e025edfec4c1".to_owned()),
        ]
    );
    assert_eq!(inv.jobs, 10);
    assert!(inv.bindings.contains(&("robot:test".to_owned(), vec![auth::ClusterRole::Super as i32])));
    assert!(inv.bindings.contains(&("pach:root".to_owned(), vec![auth::ClusterRole::Super as i32])));
    assert!(inv.acls.contains(&("sort".to_owned(), "pipeline:sort".to_owned(), auth::Scope::Writer as i32)));
    assert!(inv.acls.contains(&("sort".to_owned(), "robot:test".to_owned(), auth::Scope::Owner as i32)));

    // sort@stats has 5 commits, as upstream's test expects.
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&first.endpoint).await);
    let stats = pfs_client
        .list_commit(with_token(
            pfs::ListCommitRequest {
                repo: Some(pfs::Repo { name: "sort".into() }),
                to: Some(pfs::Commit { repo: Some(pfs::Repo { name: "sort".into() }), id: "stats".into() }),
                ..Default::default()
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.commit_info.len(), 5);

    // Auth is on now: no token, no data.
    let denied = pfs_client.list_repo(pfs::ListRepoRequest {}).await.unwrap_err();
    assert_eq!(denied.message(), "no authentication token (try logging in)");

    // Extract again (1.13 ops) and restore into a fresh cluster: same inventory.
    let ops = extract_all(&first.endpoint, TOKEN, admin::ExtractRequest::default()).await;
    assert!(ops.iter().all(|op| op.op1_13.is_some()));
    assert!(ops[0].op1_13.as_ref().unwrap().check_auth_token.is_some());
    let second = start("1.13").await;
    restore_ops(&second.endpoint, TOKEN, Some("strict"), ops).await.expect("round trip restores");
    assert_eq!(inventory(&second.endpoint, TOKEN).await, inv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_restores_into_1_11_and_extracts_op1_11() {
    let old = start("1.11").await;
    restore_dump(&old.endpoint, &fixture(), TOKEN).await.expect("fixture restores");
    let ops = extract_all(&old.endpoint, TOKEN, admin::ExtractRequest::default()).await;
    assert!(ops.iter().all(|op| op.op1_11.is_some()));
    let kinds = |name: &str| {
        ops.iter()
            .filter(|op| {
                let o = op.op1_11.as_ref().unwrap();
                match name {
                    "repo" => o.repo.is_some(),
                    "commit" => o.commit.is_some(),
                    "pipeline" => o.pipeline.is_some(),
                    "job" => o.job.is_some(),
                    "create_object" => o.create_object.is_some(),
                    "set_acl" => o.set_acl.is_some(),
                    _ => false,
                }
            })
            .count()
    };
    assert_eq!(kinds("repo"), 5);
    assert_eq!(kinds("commit"), 28);
    assert_eq!(kinds("pipeline"), 2);
    assert_eq!(kinds("job"), 10);
    assert_eq!(kinds("create_object"), 149);
    assert_eq!(kinds("set_acl"), 5);
}
