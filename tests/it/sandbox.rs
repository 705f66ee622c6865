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
    crate::support::fixture_dump()
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
    let mut config = ClusterConfig::new(
        "test",
        version.parse().expect("version"),
        &dir.path().join("bucket"),
    );
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
    request
        .metadata_mut()
        .insert("authn-token", token.parse().expect("ascii token"));
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
            heads.insert((
                repo.clone(),
                b.name.clone(),
                b.head.map(|h| h.id).unwrap_or_default(),
                prov,
            ));
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
                .get_acl(with_token(
                    auth::GetAclRequest { repo: repo.clone() },
                    token,
                ))
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

async fn extract_all(
    endpoint: &str,
    token: &str,
    request: admin::ExtractRequest,
) -> Vec<admin::Op> {
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

async fn restore_ops(
    endpoint: &str,
    token: &str,
    mode: Option<&str>,
    ops: Vec<admin::Op>,
) -> Result<(), tonic::Status> {
    let mut client = admin::api_client::ApiClient::new(channel(endpoint).await);
    let requests: Vec<admin::RestoreRequest> = ops
        .into_iter()
        .map(|op| admin::RestoreRequest {
            op: Some(op),
            url: String::new(),
        })
        .collect();
    let mut request = with_token(tokio_stream::iter(requests), token);
    if let Some(mode) = mode {
        request
            .metadata_mut()
            .insert("ankus-restore-mode", mode.parse().unwrap());
    }
    client.restore(request).await.map(|_| ())
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_restore_into_1_13_gives_upstream_inventory_and_round_trips() {
    let first = start("1.13").await;
    restore_dump(&first.endpoint, &fixture(), TOKEN)
        .await
        .expect("fixture restores");
    let inv = inventory(&first.endpoint, TOKEN).await;
    assert_eq!(inv.repos, ["sort", "copy", "right", "left"]);
    let count = |repo: &str| inv.commits.iter().find(|(r, _)| r == repo).unwrap().1;
    assert_eq!(
        (
            count("left"),
            count("right"),
            count("copy"),
            count("sort"),
            count("__spec__")
        ),
        (3, 3, 10, 10, 2)
    );
    let head = |repo: &str, branch: &str| {
        inv.heads
            .iter()
            .find(|(r, b, _, _)| r == repo && b == branch)
            .map(|(_, _, h, p)| (h.clone(), p.clone()))
            .unwrap()
    };
    assert_eq!(head("left", "master").0, "37460f1a7b244791881e8f92b7c30898");
    assert_eq!(
        head("right", "master").0,
        "60d67860bc1241a89b193409891581a0"
    );
    assert_eq!(
        head("copy", "master"),
        (
            "f2d88edec5d7447eb47c250519e91669".to_owned(),
            vec![
                "__spec__@copy".to_owned(),
                "left@master".to_owned(),
                "right@master".to_owned()
            ]
        )
    );
    assert_eq!(head("copy", "stats").0, "c343fe6764314a4a9ff7731381a87b1f");
    assert_eq!(head("sort", "master").0, "f7fc16d292df431f80decbec1add81e7");
    assert_eq!(head("sort", "stats").0, "a9813f5c8e1b40bd80704919749ae081");
    assert_eq!(
        head("__spec__", "copy").0,
        "48d8ce104fe9442697c5e1e5f30d40f7"
    );
    let mut pipelines = inv.pipelines.clone();
    pipelines.sort();
    assert_eq!(
        pipelines,
        [
            (
                "copy".to_owned(),
                "ubuntu:16.04".to_owned(),
                "48d8ce104fe9442697c5e1e5f30d40f7".to_owned()
            ),
            (
                "sort".to_owned(),
                "ubuntu:16.04".to_owned(),
                "dec8bc2b235e4dd18257e025edfec4c1".to_owned()
            ),
        ]
    );
    assert_eq!(inv.jobs, 10);
    assert!(inv.bindings.contains(&(
        "robot:test".to_owned(),
        vec![auth::ClusterRole::Super as i32]
    )));
    assert!(inv.bindings.contains(&(
        "pach:root".to_owned(),
        vec![auth::ClusterRole::Super as i32]
    )));
    assert!(inv.acls.contains(&(
        "sort".to_owned(),
        "pipeline:sort".to_owned(),
        auth::Scope::Writer as i32
    )));
    assert!(inv.acls.contains(&(
        "sort".to_owned(),
        "robot:test".to_owned(),
        auth::Scope::Owner as i32
    )));

    // sort@stats has 5 commits, as upstream's test expects.
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&first.endpoint).await);
    let stats = pfs_client
        .list_commit(with_token(
            pfs::ListCommitRequest {
                repo: Some(pfs::Repo {
                    name: "sort".into(),
                }),
                to: Some(pfs::Commit {
                    repo: Some(pfs::Repo {
                        name: "sort".into(),
                    }),
                    id: "stats".into(),
                }),
                ..Default::default()
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.commit_info.len(), 5);

    // Head contents decode from the dump's own hashtrees (reference §8 "Head contents").
    let files = |repo: &str, id: &str| pfs::ListFileRequest {
        file: Some(pfs::File {
            commit: Some(pfs::Commit {
                repo: Some(pfs::Repo { name: repo.into() }),
                id: id.into(),
            }),
            path: "/".into(),
        }),
        ..Default::default()
    };
    let listed: Vec<String> = pfs_client
        .list_file(with_token(files("left", "master"), TOKEN))
        .await
        .unwrap()
        .into_inner()
        .file_info
        .into_iter()
        .map(|f| f.file.unwrap().path)
        .collect();
    assert_eq!(listed, ["/0", "/1", "/2", "/3", "/4"]);
    let copy_files = pfs_client
        .list_file(with_token(files("copy", "master"), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copy_files.file_info.len(), 10);
    let mut nums = pfs_client
        .get_file(with_token(
            pfs::GetFileRequest {
                file: Some(pfs::File {
                    commit: Some(pfs::Commit {
                        repo: Some(pfs::Repo {
                            name: "sort".into(),
                        }),
                        id: "master".into(),
                    }),
                    path: "/nums".into(),
                }),
                ..Default::default()
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut content = Vec::new();
    while let Some(chunk) = nums.message().await.unwrap() {
        content.extend(chunk);
    }
    let numbers: Vec<String> = String::from_utf8(content)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(numbers.len(), 100);
    assert_eq!(numbers.iter().collect::<BTreeSet<_>>().len(), 100);
    assert_eq!(numbers.first().map(String::as_str), Some("00"));

    // Auth is on now: no token, no data.
    let denied = pfs_client
        .list_repo(pfs::ListRepoRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.message(), "no authentication token (try logging in)");

    // Extract again (1.13 ops) and restore into a fresh cluster: same inventory.
    let ops = extract_all(&first.endpoint, TOKEN, admin::ExtractRequest::default()).await;
    assert!(ops.iter().all(|op| op.op1_13.is_some()));
    assert!(ops[0].op1_13.as_ref().unwrap().check_auth_token.is_some());
    let second = start("1.13").await;
    restore_ops(&second.endpoint, TOKEN, Some("strict"), ops)
        .await
        .expect("round trip restores");
    assert_eq!(inventory(&second.endpoint, TOKEN).await, inv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_restores_into_1_11_and_extracts_op1_11() {
    let old = start("1.11").await;
    restore_dump(&old.endpoint, &fixture(), TOKEN)
        .await
        .expect("fixture restores");
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_restore_of_a_no_objects_dump_needs_the_cloned_bucket() {
    let source = start("1.11").await;
    restore_dump(&source.endpoint, &fixture(), TOKEN)
        .await
        .expect("fixture restores");
    let ops = extract_all(
        &source.endpoint,
        TOKEN,
        admin::ExtractRequest {
            no_objects: true,
            ..Default::default()
        },
    )
    .await;
    assert!(
        ops.iter()
            .all(|op| op.op1_11.as_ref().unwrap().block.is_none())
    );

    // A 1.13 cluster on a fresh bucket: strict mode predicts every missing tree object (28
    // commits: 28 trees + 10 datums objects), applies nothing.
    let bare = start("1.13").await;
    let err = restore_ops(&bare.endpoint, TOKEN, Some("strict"), ops.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("restore would fail: 38 problems found, nothing was applied"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("c77f4a423e5429f56adcd0ef0020b96b6f9a8fd39fbf874377e50767e1b1754c4410b2493fefd3ce5e2f1c8fbdbd11e0f520005446efa8eb3553b6f69fd2e054"));
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&bare.endpoint).await);
    assert!(
        pfs_client
            .list_repo(pfs::ListRepoRequest {})
            .await
            .unwrap()
            .into_inner()
            .repo_info
            .is_empty()
    );

    // Check mode on the same input reports the same and never applies.
    let err = restore_ops(&bare.endpoint, TOKEN, Some("check"), ops.clone())
        .await
        .unwrap_err();
    assert!(err.message().contains("38 problems"));

    // A 1.13 cluster deployed on a clone of the source bucket: the same dump restores.
    let cloned_dir = tempfile::tempdir().unwrap();
    copy_dir(
        source.cluster.bucket().root(),
        &cloned_dir.path().join("bucket"),
    );
    let config = ClusterConfig::new(
        "new",
        "1.13".parse().unwrap(),
        &cloned_dir.path().join("bucket"),
    );
    let (_cluster, address, shutdown, _task) = spawn_cluster(config).await.unwrap();
    let endpoint = format!("http://{address}");
    restore_ops(&endpoint, TOKEN, Some("strict"), ops)
        .await
        .expect("restores on the cloned bucket");
    let inv = inventory(&endpoint, TOKEN).await;
    assert_eq!(inv.repos, ["sort", "copy", "right", "left"]);
    assert_eq!(inv.jobs, 10);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_restores_get_pachds_errors_and_the_server_keeps_serving() {
    let server = start("1.11").await;
    let repo_op = |minor: u32, name: &str| {
        let repo = pfs::CreateRepoRequest {
            repo: Some(pfs::Repo { name: name.into() }),
            ..Default::default()
        };
        match minor {
            9 => admin::Op {
                op1_9: Some(admin::Op19 {
                    repo: Some(ankus::proto::pfs_1_9::CreateRepoRequest {
                        repo: Some(ankus::proto::pfs_1_9::Repo { name: name.into() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            13 => admin::Op {
                op1_13: Some(admin::Op113 {
                    repo: Some(repo),
                    ..Default::default()
                }),
                ..Default::default()
            },
            _ => admin::Op {
                op1_10: Some(admin::Op110 {
                    repo: Some(ankus::proto::pfs_1_10::CreateRepoRequest {
                        repo: Some(ankus::proto::pfs_1_10::Repo { name: name.into() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    };
    let newer = restore_ops(&server.endpoint, TOKEN, None, vec![repo_op(13, "a")])
        .await
        .unwrap_err();
    assert_eq!(newer.message(), "unrecognized stream version");
    let mixed = restore_ops(
        &server.endpoint,
        TOKEN,
        None,
        vec![repo_op(10, "a"), repo_op(9, "b")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        mixed.message(),
        "cannot mix different versions of pachd operation within a metadata dumps"
    );
    let empty = restore_ops(&server.endpoint, TOKEN, None, vec![admin::Op::default()])
        .await
        .unwrap_err();
    assert_eq!(empty.message(), "unrecognized stream version");

    // Restore sanitizes names, as pachd 1.9+ does; the API refuses them.
    restore_ops(&server.endpoint, TOKEN, None, vec![repo_op(10, "my.repo")])
        .await
        .unwrap();
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&server.endpoint).await);
    pfs_client
        .inspect_repo(pfs::InspectRepoRequest {
            repo: Some(pfs::Repo {
                name: "my_repo".into(),
            }),
        })
        .await
        .expect("sanitized repo exists");
    let bad = pfs_client
        .create_repo(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo {
                name: "bad/name".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        bad.message()
            .contains("only alphanumeric characters, underscores, and dashes are allowed")
    );

    // A commit whose parent is missing fails with pachd's text; strict mode lists it.
    let orphan = admin::Op {
        op1_10: Some(admin::Op110 {
            commit: Some(ankus::proto::pfs_1_10::BuildCommitRequest {
                parent: Some(ankus::proto::pfs_1_10::Commit {
                    repo: Some(ankus::proto::pfs_1_10::Repo {
                        name: "my_repo".into(),
                    }),
                    id: "missingparent".into(),
                }),
                id: "child".into(),
                finished: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = restore_ops(&server.endpoint, TOKEN, None, vec![orphan.clone()])
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "commit missingparent not found in repo my_repo"
    );
    let err = restore_ops(&server.endpoint, TOKEN, Some("strict"), vec![orphan])
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("op 0 (commit): commit missingparent not found in repo my_repo"),
        "{}",
        err.message()
    );

    // Unknown things, malformed requests: errors, and the server is still there.
    let mut pps_client = pps::api_client::ApiClient::new(channel(&server.endpoint).await);
    let missing = pps_client
        .inspect_pipeline(pps::InspectPipelineRequest {
            pipeline: Some(pps::Pipeline {
                name: "ghost".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.message(), "pipeline \"ghost\" not found");
    let nil = pps_client
        .create_pipeline(pps::CreatePipelineRequest::default())
        .await
        .unwrap_err();
    assert!(nil.message().contains("request.Pipeline cannot be nil"));
    let no_repo = pfs_client
        .list_commit(pfs::ListCommitRequest {
            repo: Some(pfs::Repo {
                name: "ghost".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_repo.message(), "repo ghost not found");
    let mut version = versionpb::api_client::ApiClient::new(channel(&server.endpoint).await);
    let v = version.get_version(()).await.unwrap().into_inner();
    assert_eq!((v.major, v.minor, v.micro), (1, 11, 9));
    let mut auth_client = auth::api_client::ApiClient::new(channel(&server.endpoint).await);
    let off = auth_client
        .who_am_i(auth::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(off.code(), tonic::Code::Unimplemented);
    assert_eq!(off.message(), "the auth service is not activated");
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, bool)>>);

impl PipelineObserver for Recorder {
    fn pipeline_state_changed(&self, _cluster: &str, pipeline: &str, running: bool) {
        self.0.lock().unwrap().push((pipeline.to_owned(), running));
    }
}

async fn wait_for_state(
    client: &mut pps::api_client::ApiClient<Channel>,
    name: &str,
    state: pps::PipelineState,
) -> pps::PipelineInfo {
    loop {
        let info = client
            .inspect_pipeline(pps::InspectPipelineRequest {
                pipeline: Some(pps::Pipeline { name: name.into() }),
            })
            .await
            .unwrap()
            .into_inner();
        if info.state == state as i32 {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sets_stopped_at_once_and_pauses_shortly_after() {
    let recorder = Arc::new(Recorder::default());
    let observer = recorder.clone();
    let server = start_with("1.11", move |config| {
        config.observer = observer;
        config.transition_delay = Duration::from_millis(200);
    })
    .await;
    let ch = channel(&server.endpoint).await;
    let mut pfs_client = pfs::api_client::ApiClient::new(ch.clone());
    let mut pps_client = pps::api_client::ApiClient::new(ch);
    pfs_client
        .create_repo(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo { name: "in".into() }),
            ..Default::default()
        })
        .await
        .unwrap();
    pps_client
        .create_pipeline(pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline { name: "p".into() }),
            transform: Some(pps::Transform {
                image: "alpine".into(),
                ..Default::default()
            }),
            input: Some(pps::Input {
                pfs: Some(pps::PfsInput {
                    repo: "in".into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let request = || pps::StopPipelineRequest {
        pipeline: Some(pps::Pipeline { name: "p".into() }),
    };
    wait_for_state(&mut pps_client, "p", pps::PipelineState::PipelineRunning).await;
    pps_client.stop_pipeline(request()).await.unwrap();
    let info = pps_client
        .inspect_pipeline(pps::InspectPipelineRequest {
            pipeline: Some(pps::Pipeline { name: "p".into() }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.stopped,
        "stopped is visible as soon as StopPipeline returns"
    );
    assert_eq!(
        info.state,
        pps::PipelineState::PipelineRunning as i32,
        "the state follows asynchronously"
    );
    wait_for_state(&mut pps_client, "p", pps::PipelineState::PipelinePaused).await;
    pps_client
        .stop_pipeline(request())
        .await
        .expect("stopping a stopped pipeline is a no-op success");
    pps_client
        .start_pipeline(pps::StartPipelineRequest {
            pipeline: Some(pps::Pipeline { name: "p".into() }),
        })
        .await
        .unwrap();
    let info = wait_for_state(&mut pps_client, "p", pps::PipelineState::PipelineRunning).await;
    assert!(!info.stopped);
    let listed = pps_client
        .list_pipeline(pps::ListPipelineRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.pipeline_info.len(), 1);
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&("p".to_owned(), true)));
    assert!(seen.contains(&("p".to_owned(), false)));
    assert_eq!(seen.last(), Some(&("p".to_owned(), true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_data_dir_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = ClusterConfig::new("p", PachdVersion::v1_13(), &dir.path().join("bucket"));
        config.data_dir = Some(dir.path().join("data"));
        config
    };
    let (cluster, address, shutdown, task) = spawn_cluster(config()).await.unwrap();
    let deployment = cluster.deployment_id();
    let mut pfs_client =
        pfs::api_client::ApiClient::new(channel(&format!("http://{address}")).await);
    pfs_client
        .create_repo(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo {
                name: "kept".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster
        .put_file_on_branch("kept", "master", "/f", b"data")
        .unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let (cluster, address, shutdown, _task) = spawn_cluster(config()).await.unwrap();
    assert_eq!(
        cluster.deployment_id(),
        deployment,
        "the deployment id is stable"
    );
    let mut pfs_client =
        pfs::api_client::ApiClient::new(channel(&format!("http://{address}")).await);
    let mut stream = pfs_client
        .get_file(pfs::GetFileRequest {
            file: Some(pfs::File {
                commit: Some(pfs::Commit {
                    repo: Some(pfs::Repo {
                        name: "kept".into(),
                    }),
                    id: "master".into(),
                }),
                path: "/f".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap(), b"data");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_loader_commits_until_stopped_and_records_failures() {
    let server = start("1.13").await;
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&server.endpoint).await);
    pfs_client
        .create_repo(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo {
                name: "load".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let loader = tokio::spawn({
        let endpoint = server.endpoint.clone();
        let stop = stop.clone();
        async move {
            ankus::sandbox::pachd::loader::run(
                &endpoint,
                "load",
                Duration::from_millis(5),
                stop,
                None,
            )
            .await
        }
    });
    loop {
        let commits = pfs_client
            .list_commit(pfs::ListCommitRequest {
                repo: Some(pfs::Repo {
                    name: "load".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // The loader writes one commit at a time and records each success before it starts
        // the next: a 4th commit on the server means the first 3 are in its report.
        if commits.commit_info.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ingress goes away: the loader records failures instead of hanging.
    server.shutdown.cancel();
    let failing = tokio::spawn({
        let endpoint = server.endpoint.clone();
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        async move {
            let handle = tokio::spawn(async move {
                ankus::sandbox::pachd::loader::run(
                    &endpoint,
                    "load",
                    Duration::from_millis(5),
                    stop,
                    None,
                )
                .await
            });
            tokio::task::yield_now().await;
            (handle, stopper)
        }
    });
    stop.cancel();
    let report = loader.await.unwrap();
    assert!(report.successes() >= 3, "{report:?}");
    let (handle, stopper) = failing.await.unwrap();
    loop {
        if handle.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stopper.cancel();
    }
    let report = handle.await.unwrap();
    assert_eq!(report.successes(), 0);
}

#[test]
fn ankus_sandbox_writes_the_client_files_and_seeds_old() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ankus"))
        .args(["sandbox", "--dir"])
        .arg(dir.path())
        .arg("--seed")
        .arg(fixture())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("ankus starts");
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    assert!(line.starts_with("sandbox ready"), "{line}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pachctl-config.json")).unwrap())
            .unwrap();
    let old = &config["v2"]["contexts"]["old"];
    let address = old["pachd_address"]
        .as_str()
        .unwrap()
        .replace("grpc://", "http://");
    assert!(
        old["cluster_deployment_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    // Contexts reach pachd through the namespace's NodePort on its loopback node address.
    let new_address = config["v2"]["contexts"]["new"]["pachd_address"]
        .as_str()
        .unwrap();
    assert!(
        new_address.starts_with("grpc://127.") && new_address.ends_with(":30650"),
        "{new_address}"
    );
    let token = old["session_token"]
        .as_str()
        .expect("the seed activated auth")
        .to_owned();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sandbox.json")).unwrap()).unwrap();
    assert_eq!(info["clusters"]["old"]["version"], "1.11.9");
    assert_eq!(info["clusters"]["new"]["version"], "1.13.4");
    assert!(
        info["clusters"]["new"]["bucket"]
            .as_str()
            .unwrap()
            .starts_with("file:///")
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let repos = runtime.block_on(async {
        let mut client = pfs::api_client::ApiClient::new(channel(&address).await);
        client
            .list_repo(with_token(pfs::ListRepoRequest {}, &token))
            .await
            .unwrap()
            .into_inner()
            .repo_info
            .len()
    });
    assert_eq!(repos, 4);
    child.kill().expect("stop the sandbox");
    child.wait().unwrap();
    assert!(
        dir.path()
            .join("old/bucket/block")
            .read_dir()
            .unwrap()
            .count()
            >= 209
    );
}

#[test]
fn ankus_run_sandbox_points_contexts_at_a_fresh_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.rhai"),
        "print(\"hello from the sandbox\");",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ankus"))
        .args(["run", "hello.rhai", "--sandbox"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("hello from the sandbox"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ankus"))
        .args(["sandbox", "--old", "1.8"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected 1.9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_start_cluster_deploys_new_on_a_cloned_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(dir.path());
    config.seed = Some(fixture());
    let sandbox = Sandbox::start(config).await.unwrap();
    let clone = dir.path().join("clone");
    copy_dir(&dir.path().join("old/bucket"), &clone);
    let endpoint = sandbox
        .start_cluster("new", PachdVersion::v1_13(), &clone)
        .await
        .unwrap()
        .endpoint();
    let token = sandbox
        .cluster("old")
        .unwrap()
        .session_token
        .clone()
        .unwrap();
    let ops = extract_all(
        &sandbox.cluster("old").unwrap().endpoint(),
        &token,
        admin::ExtractRequest {
            no_objects: true,
            ..Default::default()
        },
    )
    .await;
    restore_ops(&endpoint, &token, Some("strict"), ops)
        .await
        .expect("restores onto the clone");
    assert_eq!(inventory(&endpoint, &token).await.jobs, 10);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sandbox.json")).unwrap()).unwrap();
    assert!(
        info["clusters"]["new"]["bucket"]
            .as_str()
            .unwrap()
            .ends_with("/clone")
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_loader_commits_through_the_put_file_path() {
    let server = start("1.13").await;
    server
        .cluster
        .mutate(|state, _| state.create_repo("feed", "", false))
        .unwrap();
    let loader = server
        .cluster
        .start_loader("feed", Duration::from_millis(2));
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&server.endpoint).await);
    loop {
        let commits = pfs_client
            .list_commit(pfs::ListCommitRequest {
                repo: Some(pfs::Repo {
                    name: "feed".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if commits.commit_info.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let made = loader.stop().await;
    assert!(made >= 2);
    let files = pfs_client
        .list_file(pfs::ListFileRequest {
            file: Some(pfs::File {
                commit: Some(pfs::Commit {
                    repo: Some(pfs::Repo {
                        name: "feed".into(),
                    }),
                    id: "master".into(),
                }),
                path: "/".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        files.file_info.len() as u64,
        made,
        "every commit keeps the files before it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_flags_url_mode_and_extract_pipeline() {
    let source = start("1.12").await;
    restore_dump(&source.endpoint, &fixture(), TOKEN)
        .await
        .expect("fixture restores");
    let no_pipelines = extract_all(
        &source.endpoint,
        TOKEN,
        admin::ExtractRequest {
            no_pipelines: true,
            no_auth: true,
            no_enterprise: true,
            ..Default::default()
        },
    )
    .await;
    assert!(no_pipelines.iter().all(|op| {
        let o = op.op1_12.as_ref().unwrap();
        o.pipeline.is_none()
            && o.job.is_none()
            && o.set_acl.is_none()
            && o.activate_enterprise.is_none()
    }));
    let no_repos = extract_all(
        &source.endpoint,
        TOKEN,
        admin::ExtractRequest {
            no_repos: true,
            no_objects: true,
            ..Default::default()
        },
    )
    .await;
    assert!(no_repos.iter().all(|op| {
        let o = op.op1_12.as_ref().unwrap();
        o.repo.is_none() && o.commit.is_none() && o.set_acl.is_none() && o.block.is_none()
    }));
    assert!(
        no_repos
            .iter()
            .any(|op| op.op1_12.as_ref().unwrap().activate_auth.is_some())
    );

    // URL mode: pachd writes the dump into its bucket and streams nothing back.
    let url_ops = extract_all(
        &source.endpoint,
        TOKEN,
        admin::ExtractRequest {
            url: "s3://bucket/backups/full.dump".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(url_ops.is_empty());
    let written = source.cluster.bucket().root().join("backups/full.dump");
    assert!(written.is_file());
    let target = start("1.13").await;
    let copied = target.cluster.bucket().root().join("in/full.dump");
    std::fs::create_dir_all(copied.parent().unwrap()).unwrap();
    std::fs::copy(&written, &copied).unwrap();
    let mut client = admin::api_client::ApiClient::new(channel(&target.endpoint).await);
    let first = admin::RestoreRequest {
        op: None,
        url: "s3://bucket/in/full.dump".into(),
    };
    client
        .restore(with_token(tokio_stream::iter(vec![first]), TOKEN))
        .await
        .expect("restore from URL");
    assert_eq!(inventory(&target.endpoint, TOKEN).await.jobs, 10);
    let bad_url = client
        .restore(with_token(
            tokio_stream::iter(vec![admin::RestoreRequest {
                op: None,
                url: "s3://bucket".into(),
            }]),
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_url.message(), "URL must be <svc>://<bucket>/<object>");

    let pipeline = client
        .extract_pipeline(with_token(
            admin::ExtractPipelineRequest {
                pipeline: Some(pps::Pipeline {
                    name: "sort".into(),
                }),
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let request = pipeline.op1_13.unwrap().pipeline.unwrap();
    assert_eq!(request.pipeline.unwrap().name, "sort");
    assert!(request.spec_commit.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_8_dump_converts_forward_into_a_1_9_cluster() {
    use ankus::proto::{pfs_1_8, pps_1_8};
    let op = |inner: admin::Op18| admin::Op {
        op1_8: Some(inner),
        ..Default::default()
    };
    let repo = |name: &str| Some(pfs_1_8::Repo { name: name.into() });
    let ops = vec![
        op(admin::Op18 {
            object: Some(pfs_1_8::PutObjectRequest {
                value: b"hel".to_vec(),
                tags: vec![pfs_1_8::Tag { name: "t1".into() }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        op(admin::Op18 {
            object: Some(pfs_1_8::PutObjectRequest {
                value: b"lo".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        op(admin::Op18 {
            object: Some(pfs_1_8::PutObjectRequest::default()),
            ..Default::default()
        }),
        op(admin::Op18 {
            repo: Some(pfs_1_8::CreateRepoRequest {
                repo: repo("in"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        op(admin::Op18 {
            commit: Some(pfs_1_8::BuildCommitRequest {
                parent: Some(pfs_1_8::Commit {
                    repo: repo("in"),
                    id: String::new(),
                }),
                branch: "master".into(),
                id: "c1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        op(admin::Op18 {
            pipeline: Some(pps_1_8::CreatePipelineRequest {
                pipeline: Some(pps_1_8::Pipeline { name: "p".into() }),
                transform: Some(pps_1_8::Transform {
                    image: "alpine".into(),
                    ..Default::default()
                }),
                input: Some(pps_1_8::Input {
                    atom: Some(pps_1_8::AtomInput {
                        repo: "in".into(),
                        glob: "/*".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    ];
    let server = start("1.9").await;
    restore_ops(&server.endpoint, TOKEN, Some("strict"), ops)
        .await
        .expect("1.8 dump restores");
    let hash = server
        .cluster
        .bucket()
        .tag_target("t1")
        .unwrap()
        .expect("tag restored");
    assert_eq!(
        server.cluster.bucket().read_object(&hash).unwrap().unwrap(),
        b"hello"
    );
    let mut pps_client = pps::api_client::ApiClient::new(channel(&server.endpoint).await);
    let info = pps_client
        .inspect_pipeline(pps::InspectPipelineRequest {
            pipeline: Some(pps::Pipeline { name: "p".into() }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.input.unwrap().pfs.unwrap().repo,
        "in",
        "atom input became pfs"
    );
    let mut pfs_client = pfs::api_client::ApiClient::new(channel(&server.endpoint).await);
    let head = pfs_client
        .inspect_branch(pfs::InspectBranchRequest {
            branch: Some(pfs::Branch {
                repo: Some(pfs::Repo { name: "in".into() }),
                name: "master".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(head.head.unwrap().id, "c1");
    // A 1.9 server silently skips ops newer than itself (1.10+ refuse them).
    let newer = admin::Op {
        op1_13: Some(admin::Op113 {
            repo: Some(pfs::CreateRepoRequest {
                repo: Some(pfs::Repo { name: "x".into() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    restore_ops(&server.endpoint, TOKEN, None, vec![newer])
        .await
        .expect("skipped");
}

/// `(first column, last column)` of each row of a pachctl table: the name or commit id, and
/// the size.
fn name_and_size_rows(table: &str, name_column: usize) -> BTreeSet<(String, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            Some((
                (*cells.get(name_column)?).to_owned(),
                (*cells.last()?).to_owned(),
            ))
        })
        .collect()
}

/// The `sizeBytes` of each object of a `pachctl ... --raw` listing, keyed by `key` (0 when
/// pachctl leaves the field out, as it does for zero).
fn raw_sizes(raw: &str, key: impl Fn(&serde_json::Value) -> String) -> BTreeSet<(String, String)> {
    serde_json::Deserializer::from_str(raw)
        .into_iter::<serde_json::Value>()
        .map(|value| {
            let value = value.expect("pachctl prints JSON");
            let size = value["sizeBytes"].as_str().unwrap_or("0").to_owned();
            (key(&value), size)
        })
        .collect()
}

/// The real pachctl 1.9.0 with `envs` and `stdin`, off the async threads (the sandbox serves
/// in this process).
async fn pachctl_async(
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
    stdin: Option<Vec<u8>>,
) -> crate::support::Outcome {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::real_pachd::pachctl(&args, &envs, stdin.as_deref())
    })
    .await
    .expect("joins")
}

/// Fills a real pachd 1.9.0 with the real pachctl (repo `images` with two commits of 100,000
/// and 2,345 bytes, an empty repo `empty`), runs `listings` on it, restores its `pachctl
/// extract` into a sandbox 1.9 `old` with the real pachctl, and runs `listings` there: the
/// outputs on (real, sandbox).
async fn listed_on_real_and_restored(listings: &[&str]) -> (Vec<String>, Vec<String>) {
    use crate::real_pachd::{RealPachd, pachctl_bin};
    let words = |text: &str| -> Vec<String> { text.split(' ').map(str::to_owned).collect() };
    let real = RealPachd::start_async().await;
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("a.bin");
    let small = work.path().join("b.bin");
    std::fs::write(&big, vec![7u8; 100_000]).unwrap();
    std::fs::write(&small, vec![9u8; 2_345]).unwrap();
    let on_real_env = || vec![("PACH_CONFIG", real.config().display().to_string())];
    let put = |path: &str, from: &Path| {
        vec![
            "put".into(),
            "file".into(),
            format!("images@master:{path}"),
            "-f".into(),
            from.display().to_string(),
        ]
    };
    for command in [
        words("create repo images"),
        put("/a.txt", &big),
        put("/b.txt", &small),
        words("create repo empty"),
    ] {
        let outcome = pachctl_async(command.clone(), on_real_env(), None).await;
        assert_eq!(outcome.code, 0, "{command:?}: {}", outcome.stderr);
    }
    let mut on_real = Vec::new();
    for command in listings {
        let outcome = pachctl_async(words(command), on_real_env(), None).await;
        assert_eq!(outcome.code, 0, "{command}: {}", outcome.stderr);
        on_real.push(outcome.stdout);
    }
    let config = real.config();
    let dump = tokio::task::spawn_blocking(move || {
        std::process::Command::new(pachctl_bin())
            .arg("extract")
            .env("PACH_CONFIG", config)
            .env_remove("PACHD_ADDRESS")
            .env_remove("PACH_CONTEXT")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("pachctl runs")
    })
    .await
    .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    drop(real);

    let mut config = SandboxConfig::new(&work.path().join("sandbox"));
    config.old_version = "1.9".parse().unwrap();
    config.deploy_new = false;
    let sandbox = Sandbox::start(config).await.unwrap();
    let on_sandbox_env = || {
        vec![(
            "PACHD_ADDRESS",
            format!("{}:30650", sandbox.node_address("old").unwrap()),
        )]
    };
    let restored = pachctl_async(words("restore"), on_sandbox_env(), Some(dump.stdout)).await;
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    let mut on_sandbox = Vec::new();
    for command in listings {
        let outcome = pachctl_async(words(command), on_sandbox_env(), None).await;
        assert_eq!(outcome.code, 0, "{command}: {}", outcome.stderr);
        on_sandbox.push(outcome.stdout);
    }
    sandbox.shutdown().await;
    (on_real, on_sandbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_real_1_9_0_dump_keeps_the_repo_and_commit_sizes_pachd_shows() {
    let (on_real, on_sandbox) = listed_on_real_and_restored(&[
        "list repo",
        "list commit images",
        "list repo --raw",
        "list commit images --raw",
    ])
    .await;
    // What a user sees: the same SIZE column, 0B for the empty repo.
    let repo_sizes = name_and_size_rows(&on_real[0], 0);
    assert_eq!(
        repo_sizes,
        BTreeSet::from([
            ("empty".to_owned(), "0B".to_owned()),
            ("images".to_owned(), "99.95KiB".to_owned()),
        ])
    );
    assert_eq!(
        name_and_size_rows(&on_sandbox[0], 0),
        repo_sizes,
        "{}",
        on_sandbox[0]
    );
    let commit_sizes = name_and_size_rows(&on_real[1], 2);
    assert_eq!(
        commit_sizes
            .iter()
            .map(|(_, size)| size.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["97.66KiB", "99.95KiB"]),
        "{}",
        on_real[1]
    );
    assert_eq!(
        name_and_size_rows(&on_sandbox[1], 2),
        commit_sizes,
        "{}",
        on_sandbox[1]
    );
    // And the exact bytes.
    let repo_name =
        |value: &serde_json::Value| value["repo"]["name"].as_str().unwrap_or("").to_owned();
    let commit_id =
        |value: &serde_json::Value| value["commit"]["id"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        raw_sizes(&on_sandbox[2], repo_name),
        raw_sizes(&on_real[2], repo_name)
    );
    assert_eq!(
        raw_sizes(&on_sandbox[3], commit_id),
        raw_sizes(&on_real[3], commit_id),
        "{}",
        on_sandbox[3]
    );
}

/// The objects of a `--raw` listing, sorted, with what two clusters holding the same
/// restored data cannot share set aside: times (a restore stamps its own), the order of repos
/// (newest first, and a dump recreates them in reverse) and the file node hashes (the sandbox
/// does not compute pachd's).
fn comparable(raw: &str) -> BTreeSet<String> {
    serde_json::Deserializer::from_str(raw)
        .into_iter::<serde_json::Value>()
        .map(|value| {
            let mut value = value.expect("pachctl prints JSON");
            if let Some(map) = value.as_object_mut() {
                for field in ["created", "started", "finished", "committed"] {
                    if let Some(time) = map.get_mut(field) {
                        *time = "<time>".into();
                    }
                }
                map.remove("hash");
            }
            serde_json::to_string_pretty(&value).expect("JSON values always serialize")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_1_9_0_commits_and_files_carry_the_fields_the_real_pachd_gives_them() {
    let listings = [
        "list repo --raw",
        "list commit images --raw",
        "list file images@master --raw",
        "inspect file images@master:/ --raw",
        "inspect file images@master:/a.txt --raw",
    ];
    let (on_real, on_sandbox) = listed_on_real_and_restored(&listings).await;
    // An origin on every commit, `committed` and no objects in listings, no children.
    for ((listing, real), sandbox) in listings.iter().zip(&on_real).zip(&on_sandbox) {
        assert_eq!(
            comparable(sandbox),
            comparable(real),
            "pachctl {listing}:\n{sandbox}"
        );
    }
    // A restored commit never finishes before it started.
    for commit in
        serde_json::Deserializer::from_str(&on_sandbox[1]).into_iter::<serde_json::Value>()
    {
        let commit = commit.unwrap();
        let time = |field: &str| -> jiff::Timestamp {
            commit[field]
                .as_str()
                .expect("a time")
                .parse()
                .expect("RFC 3339")
        };
        assert!(time("started") <= time("finished"), "{commit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pachctl_1_9_0_reaches_old_with_nothing_but_the_sandbox_config() {
    use ankus::pachd::config::{ConfigEnv, PachConfig, Target, resolve};
    let dir = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(dir.path());
    config.old_version = "1.9".parse().unwrap();
    config.deploy_new = false;
    let sandbox = Sandbox::start(config).await.unwrap();
    let path = sandbox.pach_config_path();
    let run = |args: &[&str]| {
        let args = args.iter().map(|arg| arg.to_string()).collect();
        pachctl_async(
            args,
            vec![("PACH_CONFIG", path.display().to_string())],
            None,
        )
    };
    let version = run(&["version"]).await;
    assert_eq!(version.code, 0, "{}{}", version.stdout, version.stderr);
    let pachd_version = version.stdout.lines().find_map(|line| {
        let mut cells = line.split_whitespace();
        (cells.next() == Some("pachd")).then(|| cells.next().unwrap_or("").to_owned())
    });
    assert!(
        pachd_version
            .as_deref()
            .is_some_and(|version| version.starts_with("1.9.")),
        "{}",
        version.stdout
    );
    let created = run(&["create", "repo", "scratch"]).await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let repos = run(&["list", "repo"]).await;
    assert_eq!(repos.code, 0, "{}", repos.stderr);
    assert!(
        repos
            .stdout
            .lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("scratch ")),
        "{}",
        repos.stdout
    );

    // ankus reads v2 and leaves the v1 block alone: no `default` context, `old` is active.
    let node = sandbox.node_address("old").unwrap();
    let read = PachConfig::read(&path).unwrap();
    assert_eq!(read.active_context, "old");
    assert_eq!(read.contexts.keys().collect::<Vec<_>>(), ["new", "old"]);
    let env = ConfigEnv {
        pach_config: Some(path.display().to_string()),
        ..ConfigEnv::default()
    };
    let resolved = resolve(&env, None, &Target::Active).unwrap();
    assert_eq!(resolved.context.as_deref(), Some("old"));
    assert_eq!(
        (resolved.address.host.as_str(), resolved.address.port),
        (node.to_string().as_str(), 30650)
    );
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["v1"]["pachd_address"], format!("{node}:30650"));
    assert_eq!(
        file["v2"]["contexts"]["old"]["pachd_address"],
        format!("grpc://{node}:30650")
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_config_block_carries_olds_session_token_after_an_auth_seed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(dir.path());
    config.seed = Some(fixture());
    config.deploy_new = false;
    let sandbox = Sandbox::start(config).await.unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sandbox.pach_config_path()).unwrap()).unwrap();
    let token = file["v2"]["contexts"]["old"]["session_token"]
        .as_str()
        .expect("the seed activated auth");
    assert_eq!(file["v1"]["session_token"], token);
    sandbox.shutdown().await;
}
