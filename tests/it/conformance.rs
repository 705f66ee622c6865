//! One conformance suite for the pachd client, run from the same code against the sandbox's
//! pachd 1.9.0 and against a real pachd 1.9.0 (object_store's conformance pattern: every case
//! is a function of a [`Peer`], instantiated once per server by [`conformance!`]). Data is
//! written with the real pachctl 1.9.0 on both servers, so each case also checks that the
//! real pachctl drives the sandbox as it drives the real pachd; then ankus reads it back.
//!
//! A difference between the two servers is a failure, except those in [`DIFFERENCES`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ankus::backup::Location;
use ankus::backup::manifest::SourceInfo;
use ankus::backup::transfer::{Progress, RestoreOptions, TransferError, extract_to, restore_from};
use ankus::kind::{Kind, Kinded};
use ankus::pachd::{ConnectOptions, ExtractFlags, PachdClient, StopStartOptions, Target};

use crate::faults::{Cut, CutProxy, Served, serve};
use crate::real_pachd::{RealPachd, pachctl};
use crate::support::{Outcome, ankus_async, noise, pach_config, temp_dir, write};

/// The differences between the sandbox and the real pachd 1.9.0 that are intended, each with
/// why; every case below asserts the same on both servers except where it names one of these.
pub const DIFFERENCES: &[(&str, &str)] = &[
    (
        "error texts",
        "the real pachd 1.9.0 words some errors with its etcd collection paths (`/pachyderm_pfs/repos/ \
         nope not found`); the sandbox words them as later 1.x releases do (`repo nope not \
         found`). The gRPC codes are the same, pachctl exits the same way, and ankus classifies \
         both texts (the cases assert `not_found` on both servers).",
    ),
    (
        "file hashes",
        "the real pachd reports each file's and directory's hashtree node hash in FileInfo; \
         the sandbox stores files in its own tree format and reports none. The hash is internal \
         to pachd's storage format: no flow and no pachctl verb reads it, extract does not carry \
         it, and ankus never compares it.",
    ),
    (
        "spec objects",
        "restoring a pipeline writes its spec file and the spec commit's tree anew, on both \
         servers; the real pachd's contain a new random salt and creation time, the sandbox's \
         tree is in its own format. So the object ops holding them never match, not even \
         between two real clusters; every other op of an extract is the same.",
    ),
    (
        "output commits",
        "the real pachd opens a commit in a pipeline's output repo whenever the output branch's \
         provenance moves (create, stop, start, a new input commit); its jobs would finish \
         them, but real-pachd runs no worker pods, so they stay open. The sandbox runs no jobs \
         and opens no output commits. pachd 1.9.0 extracts output repos only while their \
         pipeline is stopped (their branch then has no provenance), with those open commits; \
         the cases extract running pipelines and compare output repos by name only.",
    ),
];

/// `docs/conformance.md` lists the same differences as [`DIFFERENCES`], so the one list in
/// code and the one users read cannot drift apart.
#[test]
fn the_documented_differences_are_exactly_the_allowed_ones() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/conformance.md"))
            .expect("docs/conformance.md");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .collect();
    let allowed: Vec<&str> = DIFFERENCES.iter().map(|(name, _)| *name).collect();
    assert_eq!(documented, allowed);
}

/// Which server a [`Peer`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The sandbox's emulated pachd, as version 1.9.0.
    Sandbox,
    /// The real pachd 1.9.0.
    Real,
}

/// One empty pachd 1.9.0 cluster of either server, stopped when dropped.
pub struct Peer {
    /// Which server.
    pub server: Server,
    /// `127.0.0.1:PORT`.
    pub address: String,
    _sandbox: Option<Served>,
    _real: Option<RealPachd>,
}

impl Peer {
    /// A fresh, empty cluster.
    pub async fn start(server: Server) -> Peer {
        match server {
            Server::Sandbox => {
                let served = serve("1.9.0").await;
                Peer {
                    server,
                    address: served.address.to_string(),
                    _sandbox: Some(served),
                    _real: None,
                }
            }
            Server::Real => {
                let real = RealPachd::start_async().await;
                Peer {
                    server,
                    address: real.address.clone(),
                    _sandbox: None,
                    _real: Some(real),
                }
            }
        }
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://{}", self.address)
    }

    /// The real pachctl 1.9.0 against this cluster (`PACHD_ADDRESS`), off the async threads;
    /// fails the test when pachctl fails.
    pub async fn pachctl(&self, args: &[&str]) -> Outcome {
        let out = self.pachctl_with(args, None).await;
        assert_eq!(
            out.code, 0,
            "pachctl {args:?} on {:?}: {out:?}",
            self.server
        );
        out
    }

    /// The real pachctl with `stdin`, whatever its exit code.
    pub async fn pachctl_with(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Outcome {
        let address = self.address.clone();
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pachctl(&args, &[("PACHD_ADDRESS", &address)], stdin.as_deref())
        })
        .await
        .expect("joins")
    }

    /// An ankus client.
    pub async fn client(&self) -> PachdClient {
        let mut options = ConnectOptions::new(Target::Address(self.url()));
        options.env = ankus::pachd::ConfigEnv::default();
        options.call_timeout = Duration::from_secs(30);
        PachdClient::connect(options)
            .await
            .unwrap_or_else(|error| panic!("connect to {:?}: {error}", self.server))
    }
}

/// Generates one test per server for each case: `conformance::sandbox::CASE` and
/// `conformance::real::CASE`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sandbox {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Sandbox).await;
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Real).await;
                }
            )*
        }
    };
}

conformance!(
    connect_reports_pachd_1_9_0,
    repos_commits_branches_and_files_read_back_as_pachctl_wrote_them,
    pipelines_list_inspect_stop_and_start,
    stop_all_pauses_and_start_all_resumes_every_pipeline,
    extract_is_byte_identical_to_pachctl_extract_with_and_without_objects,
    restores_cross_over_between_ankus_and_pachctl,
    restore_of_a_newer_dump_is_refused_before_any_op_is_sent,
    raw_ops_of_an_unknown_version_are_accepted_and_applied_as_nothing,
    a_restore_cut_mid_stream_is_cleaned_up_exactly,
    checkpoint_then_replay_copies_what_was_loaded_since,
    pachctl_verbs_read_the_same_on_both_servers,
    stop_and_start_pass_through_the_same_states,
    deleting_a_repo_that_does_not_exist_succeeds,
    a_dump_of_stopped_pipelines_restores_with_their_outputs_linked,
);

/// The pipelines every filled cluster has: `edges` reads `images`, `stats` reads `labels`.
const PIPELINES: &[(&str, &str)] = &[("edges", "images"), ("stats", "labels")];

/// The files put into `images` (two commits) and `labels` (one), by path.
fn files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("images", "/a.txt", b"hello\n".to_vec()),
        ("images", "/b/c.bin", noise(100_000, 7)),
        ("labels", "/l.csv", b"id,label\n1,cat\n2,dog\n".to_vec()),
    ]
}

/// Fills `peer` through the real pachctl: repos `images` (commits `/a.txt`, then `/b/c.bin`)
/// and `labels`, branch `images@dev` at the first commit, pipelines `edges` and `stats`.
async fn fill(peer: &Peer) {
    let dir = temp_dir();
    peer.pachctl(&["create", "repo", "images"]).await;
    peer.pachctl(&["create", "repo", "labels"]).await;
    for (index, (repo, path, bytes)) in files().into_iter().enumerate() {
        let file = dir.path().join(format!("f{index}"));
        std::fs::write(&file, &bytes).expect("write file");
        let target = format!("{repo}@master:{path}");
        peer.pachctl(&["put", "file", &target, "-f", file.to_str().expect("utf-8")])
            .await;
    }
    let first = peer
        .client()
        .await
        .list_commits("images", None, 0)
        .await
        .expect("list commits")
        .last()
        .expect("two commits")
        .id
        .clone();
    peer.pachctl(&["create", "branch", "images@dev", "--head", &first])
        .await;
    for (name, input) in PIPELINES {
        let spec = serde_json::json!({
            "pipeline": { "name": name },
            "transform": {
                "image": "ubuntu:16.04",
                "cmd": ["/bin/bash"],
                "stdin": [format!("cp -r /pfs/{input}/* /pfs/out/")],
            },
            "input": { "pfs": { "repo": input, "glob": "/*" } },
        });
        let path = write(dir.path(), &format!("{name}.json"), &spec.to_string());
        peer.pachctl(&["create", "pipeline", "-f", path.to_str().expect("utf-8")])
            .await;
    }
}

/// What a cluster holds, as ankus reads it; equal across servers and across restores.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// Repo → (size of master's head, branch names sorted).
    repos: BTreeMap<String, (u64, Vec<String>)>,
    /// Input repo → commits newest first as (id, parent, size).
    commits: BTreeMap<String, Vec<(String, Option<String>, u64)>>,
    /// `repo@branch` → head commit, for input repos.
    heads: BTreeMap<String, String>,
    /// Pipeline → (image, inputs, stopped).
    pipelines: BTreeMap<String, (String, Vec<String>, bool)>,
    /// `repo@commit:path` → content, every file of every input commit.
    files: BTreeMap<String, Vec<u8>>,
}

async fn snapshot(client: &PachdClient) -> Snapshot {
    let pipelines: BTreeMap<String, (String, Vec<String>, bool)> = client
        .list_pipelines()
        .await
        .expect("list pipelines")
        .into_iter()
        .map(|p| (p.name, (p.image, p.inputs, p.stopped)))
        .collect();
    let mut snapshot = Snapshot {
        repos: BTreeMap::new(),
        commits: BTreeMap::new(),
        heads: BTreeMap::new(),
        pipelines,
        files: BTreeMap::new(),
    };
    for repo in client.list_repos().await.expect("list repos") {
        let mut branches = repo.branches.clone();
        branches.sort();
        // Output repos: by name and branches only (see DIFFERENCES, "output commits").
        if snapshot.pipelines.contains_key(&repo.name) {
            snapshot.repos.insert(repo.name, (0, branches));
            continue;
        }
        snapshot
            .repos
            .insert(repo.name.clone(), (repo.size_bytes, branches));
        let commits = client
            .list_commits(&repo.name, None, 0)
            .await
            .expect("list commits");
        for commit in &commits {
            let mut pending = vec![String::from("/")];
            while let Some(dir) = pending.pop() {
                for file in client
                    .list_file(&repo.name, &commit.id, &dir)
                    .await
                    .expect("list file")
                {
                    if file.file_type == "dir" {
                        pending.push(file.path);
                    } else {
                        let bytes = client
                            .get_file(&repo.name, &commit.id, &file.path, u64::MAX)
                            .await
                            .expect("get file");
                        snapshot.files.insert(
                            format!("{}@{}:{}", repo.name, commit.id, file.path),
                            bytes.to_vec(),
                        );
                    }
                }
            }
        }
        snapshot.commits.insert(
            repo.name.clone(),
            commits
                .into_iter()
                .map(|c| (c.id, c.parent, c.size_bytes))
                .collect(),
        );
        for branch in client
            .list_branches(&repo.name)
            .await
            .expect("list branches")
        {
            if let Some(head) = branch.head {
                snapshot
                    .heads
                    .insert(format!("{}@{}", repo.name, branch.name), head);
            }
        }
    }
    snapshot
}

async fn extract(client: &PachdClient, to: &Path, objects: bool) {
    let flags = ExtractFlags {
        no_objects: !objects,
        ..ExtractFlags::default()
    };
    extract_to(
        client,
        &flags,
        &Location::File(to.to_path_buf()),
        SourceInfo::default(),
        &Progress::default(),
    )
    .await
    .expect("extract");
}

async fn restore(client: &PachdClient, from: &Path) -> Result<u64, TransferError> {
    restore_from(
        client,
        &Location::File(from.to_path_buf()),
        None,
        &Progress::default(),
        &RestoreOptions::default(),
    )
    .await
    .map(|summary| summary.ops)
}

async fn connect_reports_pachd_1_9_0(server: Server) {
    let peer = Peer::start(server).await;
    let client = peer.client().await;
    assert_eq!(client.version().to_string(), "1.9.0");
    let cluster = client.inspect_cluster().await.expect("inspect cluster");
    assert!(!cluster.id.is_empty(), "{cluster:?}");
    let version = peer.pachctl(&["version"]).await;
    assert!(
        version.stdout.contains("pachd               1.9.0"),
        "{version:?}"
    );
}

async fn repos_commits_branches_and_files_read_back_as_pachctl_wrote_them(server: Server) {
    let peer = Peer::start(server).await;
    fill(&peer).await;
    let client = peer.client().await;
    let got = snapshot(&client).await;
    let names: Vec<&str> = got.repos.keys().map(String::as_str).collect();
    assert_eq!(names, ["edges", "images", "labels", "stats"]);
    // Sizes as pachd reports them: the bytes of the head commit's files.
    assert_eq!(
        got.repos["images"],
        (100_006, vec!["dev".into(), "master".into()])
    );
    assert_eq!(got.repos["labels"].0, 21);
    let images = &got.commits["images"];
    assert_eq!(images.len(), 2, "{images:?}");
    assert_eq!(
        images[0].1.as_deref(),
        Some(images[1].0.as_str()),
        "newest first"
    );
    assert_eq!((images[0].2, images[1].2), (100_006, 6));
    assert_eq!(got.heads["images@master"], images[0].0);
    assert_eq!(got.heads["images@dev"], images[1].0);
    let first = &images[1].0;
    assert_eq!(got.files[&format!("images@{first}:/a.txt")], b"hello\n");
    assert_eq!(
        got.files
            .keys()
            .filter(|key| key.starts_with("images@"))
            .count(),
        3,
        "a.txt in both commits, c.bin in the second: {:?}",
        got.files.keys()
    );
    let head = &images[0].0;
    assert_eq!(
        got.files[&format!("images@{head}:/b/c.bin")],
        noise(100_000, 7)
    );
    let commit = client
        .inspect_commit("images", "master")
        .await
        .expect("inspect commit");
    assert_eq!(
        (commit.id.as_str(), commit.size_bytes),
        (head.as_str(), 100_006)
    );
    let root = client
        .list_file("images", "master", "/")
        .await
        .expect("list file");
    let listed: Vec<(&str, &str, u64)> = root
        .iter()
        .map(|f| (f.path.as_str(), f.file_type.as_str(), f.size_bytes))
        .collect();
    assert_eq!(listed, [("/a.txt", "file", 6), ("/b", "dir", 100_000)]);
    let heads = client.heads().await.expect("heads");
    assert_eq!(heads.get("images@master"), Some(head));
    let missing = client.inspect_repo("nope").await.expect_err("no such repo");
    assert_eq!(missing.kind(), Kind::NotFound, "{missing}");
}

async fn pipelines_list_inspect_stop_and_start(server: Server) {
    let peer = Peer::start(server).await;
    fill(&peer).await;
    let client = peer.client().await;
    let listed: Vec<String> = client
        .list_pipelines()
        .await
        .expect("list pipelines")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(listed, ["stats", "edges"], "newest first");
    let edges = client.inspect_pipeline("edges").await.expect("inspect");
    assert_eq!(
        (edges.image.as_str(), edges.inputs.clone(), edges.stopped),
        ("ubuntu:16.04", vec!["images".to_owned()], false)
    );
    assert_eq!(edges.output_branch, "master");
    assert_eq!(edges.version, 1);
    client.stop_pipeline("edges").await.expect("stop");
    // `stopped` flips with the call; the state follows.
    assert!(
        client
            .inspect_pipeline("edges")
            .await
            .expect("inspect")
            .stopped
    );
    let paused = client
        .wait_for_state(
            "edges",
            &["paused"],
            Duration::from_secs(20),
            Duration::from_millis(50),
        )
        .await
        .expect("paused");
    assert_eq!(paused.state, "paused");
    let other = client.inspect_pipeline("stats").await.expect("inspect");
    assert!(!other.stopped && other.state != "paused", "{other:?}");
    client.start_pipeline("edges").await.expect("start");
    assert!(
        !client
            .inspect_pipeline("edges")
            .await
            .expect("inspect")
            .stopped
    );
    let running = client
        .wait_for_state(
            "edges",
            &["running"],
            Duration::from_secs(20),
            Duration::from_millis(50),
        )
        .await
        .expect("running");
    assert_eq!(running.state, "running");
    let missing = client.stop_pipeline("nope").await.expect_err("no pipeline");
    assert_eq!(missing.kind(), Kind::NotFound, "{missing}");
}

/// The states an InspectPipeline poll sees from just after a stop (or start) until the
/// pipeline settles, consecutive repeats folded; at most 20 s.
async fn states_until(client: &PachdClient, settled: &str) -> Vec<(String, bool)> {
    let mut seen: Vec<(String, bool)> = Vec::new();
    for _ in 0..2_000 {
        let pipeline = client.inspect_pipeline("edges").await.expect("inspect");
        let now = (pipeline.state.clone(), pipeline.stopped);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if pipeline.state == settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// Measured on the real pachd 1.9.0: StopPipeline returns with `stopped` set and the state
/// still `running`; `paused` follows (tens of milliseconds later, unloaded); StartPipeline
/// mirrors it. The sandbox must pass through the same states, and no others.
async fn stop_and_start_pass_through_the_same_states(server: Server) {
    let peer = Peer::start(server).await;
    fill(&peer).await;
    let client = peer.client().await;
    let created = states_until(&client, "running").await;
    assert_eq!(
        created.last(),
        Some(&("running".to_owned(), false)),
        "{created:?}"
    );
    client.stop_pipeline("edges").await.expect("stop");
    let stopping = states_until(&client, "paused").await;
    let stopped_states: &[&[(&str, bool)]] =
        &[&[("running", true), ("paused", true)], &[("paused", true)]];
    assert!(
        stopped_states.iter().any(|want| {
            want.iter()
                .map(|(s, b)| (s.to_string(), *b))
                .collect::<Vec<_>>()
                == stopping
        }),
        "after stop: {stopping:?}"
    );
    client.start_pipeline("edges").await.expect("start");
    let starting = states_until(&client, "running").await;
    let started_states: &[&[(&str, bool)]] = &[
        &[("paused", false), ("running", false)],
        &[("running", false)],
    ];
    assert!(
        started_states.iter().any(|want| {
            want.iter()
                .map(|(s, b)| (s.to_string(), *b))
                .collect::<Vec<_>>()
                == starting
        }),
        "after start: {starting:?}"
    );
}

/// Regression (migrate extracts with every pipeline stopped): pachd 1.9.0 extracts a
/// stopped pipeline's output repo, its commits and branch after the pipeline op; `pachctl
/// restore` of that dump into pachd 1.9.0 fails with "cannot start a commit on an output
/// branch" once the dump holds output commits, and a lenient target drops the link between
/// the pipeline and its output. ankus sends those pipelines last: the restore succeeds and
/// the output branches are provenant on their inputs again.
async fn a_dump_of_stopped_pipelines_restores_with_their_outputs_linked(server: Server) {
    let source = Peer::start(server).await;
    fill(&source).await;
    let source_client = source.client().await;
    let options = StopStartOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(50),
        ..StopStartOptions::default()
    };
    source_client.stop_all(&options).await.expect("stop all");
    let dir = temp_dir();
    let dump = dir.path().join("paused.dump");
    extract(&source_client, &dump, true).await;
    let inventory = ankus::backup::verify::verify(&Location::File(dump.clone()))
        .expect("verifies")
        .inventory;
    let output_commits: u64 = (inventory.repos.iter())
        .filter(|repo| PIPELINES.iter().any(|(name, _)| *name == repo.name))
        .map(|repo| repo.commits)
        .sum();

    let by_pachctl = Peer::start(server).await;
    let bytes = std::fs::read(&dump).expect("read");
    let out = by_pachctl.pachctl_with(&["restore"], Some(bytes)).await;
    if output_commits > 0 {
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr
                .contains("cannot start a commit on an output branch"),
            "{out:?}"
        );
    } else {
        assert_eq!(out.code, 0, "{out:?}");
    }

    let target = Peer::start(server).await;
    let target_client = target.client().await;
    restore(&target_client, &dump)
        .await
        .expect("ankus restores it");
    for (name, input) in PIPELINES {
        // pachd 1.9.0's pipeline ops do not say "stopped": restored, the pipelines run.
        target_client
            .inspect_pipeline(name)
            .await
            .expect("pipeline");
        let branches = target_client.list_branches(name).await.expect("branches");
        let master = branches
            .iter()
            .find(|branch| branch.name == "master")
            .expect("output branch");
        assert!(
            master.provenance.contains(&format!("{input}@master")),
            "{name}@master: {master:?}"
        );
    }
    // And they come up running, as the source's did after its resume.
    for (name, _) in PIPELINES {
        let running = target_client
            .wait_for_state(
                name,
                &["running"],
                Duration::from_secs(30),
                Duration::from_millis(50),
            )
            .await
            .expect("running");
        assert_eq!(running.state, "running");
    }
}

/// pachd 1.9-1.13 answer DeleteRepo of a missing repo with OK (cleanups rely on knowing it).
async fn deleting_a_repo_that_does_not_exist_succeeds(server: Server) {
    let peer = Peer::start(server).await;
    let client = peer.client().await;
    client
        .delete_repo("nope", false)
        .await
        .expect("deleting a missing repo succeeds");
    let out = peer.pachctl_with(&["delete", "repo", "nope"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
}

async fn stop_all_pauses_and_start_all_resumes_every_pipeline(server: Server) {
    let peer = Peer::start(server).await;
    fill(&peer).await;
    let client = peer.client().await;
    let options = StopStartOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(100),
        ..StopStartOptions::default()
    };
    let stopped = client.stop_all(&options).await.expect("stop all");
    let mut seen: Vec<(&str, &str, bool)> = stopped
        .iter()
        .map(|w| (w.name.as_str(), w.state.as_str(), w.error.is_none()))
        .collect();
    seen.sort();
    assert_eq!(seen, [("edges", "paused", true), ("stats", "paused", true)]);
    let listed = peer.pachctl(&["list", "pipeline"]).await;
    assert_eq!(listed.stdout.matches("paused").count(), 2, "{listed:?}");
    // A second stop_all skips what is already paused.
    let again = client.stop_all(&options).await.expect("stop all");
    assert!(again.iter().all(|w| w.skipped), "{again:?}");
    let started = client.start_all(&options).await.expect("start all");
    assert!(
        started
            .iter()
            .all(|w| w.state == "running" && w.error.is_none()),
        "{started:?}"
    );
    for pipeline in client.list_pipelines().await.expect("list") {
        assert!(!pipeline.stopped, "{pipeline:?}");
    }
}

async fn extract_is_byte_identical_to_pachctl_extract_with_and_without_objects(server: Server) {
    let peer = Peer::start(server).await;
    fill(&peer).await;
    let client = peer.client().await;
    let dir = temp_dir();
    for objects in [true, false] {
        let ours = dir.path().join(format!("ankus-{objects}.dump"));
        extract(&client, &ours, objects).await;
        let theirs = dir.path().join(format!("pachctl-{objects}.dump"));
        let args: &[&str] = if objects {
            &["extract"]
        } else {
            &["extract", "--no-objects"]
        };
        pachctl_to_file(&peer, args, &theirs).await;
        let ours = std::fs::read(&ours).expect("read dump");
        let theirs = std::fs::read(&theirs).expect("read dump");
        assert!(
            ours == theirs,
            "objects={objects}: ankus wrote {} bytes, pachctl {}",
            ours.len(),
            theirs.len()
        );
        let inventory = ankus::backup::verify::verify_bytes(&ours)
            .expect("verifies")
            .inventory;
        assert_eq!(inventory.versions.keys().collect::<Vec<_>>(), ["1.9"]);
        let carries_objects = ["object", "block", "create_object"]
            .iter()
            .any(|kind| inventory.kinds.contains_key(*kind));
        assert_eq!(carries_objects, objects, "{inventory:?}");
        let repos: Vec<&str> = (inventory.repos.iter())
            .map(|repo| repo.name.as_str())
            .collect();
        // pachd 1.9.0 extracts input repos only, in ListRepo order (newest first).
        assert_eq!(repos, ["labels", "images"]);
        assert_eq!(inventory.pipelines.len(), 2);
    }
}

/// Runs the real pachctl with its stdout going to the file `to` (a dump is bytes; `Outcome`
/// holds text).
async fn pachctl_to_file(peer: &Peer, args: &[&str], to: &Path) {
    let address = peer.address.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let to: PathBuf = to.to_path_buf();
    let bin = crate::real_pachd::pachctl_bin();
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            home.path().join("config.json"),
            r#"{"user_id":"ankus-tests","v1":{}}"#,
        )
        .expect("write pachctl config");
        let file = std::fs::File::create(&to).expect("create dump");
        let status = std::process::Command::new(bin)
            .args(&args)
            .env("PACHD_ADDRESS", &address)
            .env("HOME", home.path())
            .env("PACH_CONFIG", home.path().join("config.json"))
            .stdout(file)
            .status()
            .expect("pachctl runs");
        assert!(status.success(), "pachctl {args:?} failed");
    })
    .await
    .expect("joins");
}

async fn restores_cross_over_between_ankus_and_pachctl(server: Server) {
    let source = Peer::start(server).await;
    fill(&source).await;
    let source_client = source.client().await;
    let want = snapshot(&source_client).await;
    let dir = temp_dir();
    let ours = dir.path().join("ankus.dump");
    let theirs = dir.path().join("pachctl.dump");
    extract(&source_client, &ours, true).await;
    pachctl_to_file(&source, &["extract"], &theirs).await;

    // ankus restores pachctl's dump.
    let target = Peer::start(server).await;
    let target_client = target.client().await;
    let sent = restore(&target_client, &theirs)
        .await
        .expect("ankus restore");
    assert!(sent > 0);
    assert_eq!(
        snapshot(&target_client).await,
        want,
        "ankus restore of pachctl's dump"
    );

    // pachctl restores ankus's dump.
    let other = Peer::start(server).await;
    let bytes = std::fs::read(&ours).expect("read dump");
    let out = other.pachctl_with(&["restore"], Some(bytes)).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        snapshot(&other.client().await).await,
        want,
        "pachctl restore of ankus's dump"
    );
}

async fn restore_of_a_newer_dump_is_refused_before_any_op_is_sent(server: Server) {
    let peer = Peer::start(server).await;
    let client = peer.client().await;
    let error = restore(&client, &crate::sandbox::fixture())
        .await
        .expect_err("a 1.11 dump cannot go into pachd 1.9.0");
    assert_eq!(error.kind(), Kind::Invalid, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("op1.11") && text.contains("pachd 1.9.0") && text.contains("no op was sent"),
        "{text}"
    );
    assert!(client.list_repos().await.expect("list").is_empty());

    // Through the binary, as a user runs it: exit 1, both versions named, nothing restored.
    let dir = temp_dir();
    let config = pach_config(dir.path(), &[("target", &peer.url(), None)]);
    let script = write(
        dir.path(),
        "restore.rhai",
        &format!(
            "pachd::connect(\"target\").restore({:?});",
            crate::sandbox::fixture().display().to_string()
        ),
    );
    let out = ankus_async(
        dir.path(),
        &config,
        &["run", script.to_str().expect("utf-8"), "--yes"],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("pachd 1.11") && out.stderr.contains("pachd 1.9.0"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("restored"), "{out:?}");
    assert!(client.list_repos().await.expect("list").is_empty());
}

/// What ankus guards against, observed on both servers: pachd 1.9 takes a Restore stream of
/// op1_11 records, reports success, and applies nothing.
async fn raw_ops_of_an_unknown_version_are_accepted_and_applied_as_nothing(server: Server) {
    let peer = Peer::start(server).await;
    let client = peer.client().await;
    let records = ankus::backup::reader::RecordReader::new(
        std::fs::File::open(crate::sandbox::fixture()).expect("open"),
    )
    .expect("read");
    let ops: Vec<Result<bytes::Bytes, std::io::Error>> = records
        .map(|record| Ok(bytes::Bytes::from(record.expect("record").bytes)))
        .collect();
    client
        .restore(futures::stream::iter(ops))
        .await
        .expect("pachd 1.9 reports success");
    assert!(client.list_repos().await.expect("list").is_empty());
    assert!(client.list_pipelines().await.expect("list").is_empty());
}

async fn a_restore_cut_mid_stream_is_cleaned_up_exactly(server: Server) {
    let source = Peer::start(server).await;
    fill(&source).await;
    let dir = temp_dir();
    let dump = dir.path().join("full.dump");
    extract(&source.client().await, &dump, true).await;
    let bytes = std::fs::read(&dump).expect("read");
    let target = Peer::start(server).await;
    // Cut the stream in the second half: the objects and the first ops have gone through.
    let upstream: std::net::SocketAddr = target.address.parse().expect("address");
    let proxy = CutProxy::start(upstream, bytes.len() as u64 * 3 / 4, Cut::ToServer).await;
    let config = pach_config(
        dir.path(),
        &[("cut", &format!("grpc://{}", proxy.address), None)],
    );
    write(
        dir.path(),
        "restore.rhai",
        r#"let c = pachd::connect("cut");
try {
    c.restore("full.dump", #{ mode: "lenient" });
    print("restored");
} catch (e) {
    print(`kind ${e.kind}`);
    log(json::stringify(e.details)); log(e.message);
    let gone = c.cleanup_restore(e.details);
    print(`left ${c.repos().len()} ${c.pipelines().len()}`);
}
"#,
    );
    let out = ankus_async(
        dir.path(),
        &config,
        &["run", "./restore.rhai", "--yes"],
        &[],
    )
    .await;
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy cut the stream");
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["kind failed", "left 0 0"], "{out:?}");
    let client = target.client().await;
    assert!(client.list_repos().await.expect("list").is_empty());
    // A clean re-run after the cleanup restores everything.
    restore(&client, &dump).await.expect("re-run");
    assert_eq!(
        snapshot(&client).await,
        snapshot(&source.client().await).await
    );
}

async fn checkpoint_then_replay_copies_what_was_loaded_since(server: Server) {
    let old = Peer::start(server).await;
    fill(&old).await;
    let new = Peer::start(server).await;
    let dir = temp_dir();
    let dump = dir.path().join("m.dump");
    extract(&old.client().await, &dump, true).await;
    let config = pach_config(
        dir.path(),
        &[("old", &old.url(), None), ("new", &new.url(), None)],
    );
    write(
        dir.path(),
        "take.rhai",
        r#"import "checkpoint" as checkpoint;
let c = pachd::connect("old");
fs::write_text("cp.json", json::stringify(checkpoint::take(c)));
"#,
    );
    let out = ankus_async(dir.path(), &config, &["run", "./take.rhai", "--yes"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    restore(&new.client().await, &dump).await.expect("restore");
    // Loaded after the checkpoint: a new file in a new commit of images.
    let file = write(dir.path(), "late.txt", "late\n");
    old.pachctl(&[
        "put",
        "file",
        "images@master:/late.txt",
        "-f",
        file.to_str().expect("utf-8"),
    ])
    .await;
    write(
        dir.path(),
        "replay.rhai",
        r#"import "replay" as replay;
let old = pachd::connect("old");
let target = pachd::connect("new");
let cp = json::parse(fs::read_text("cp.json"));
let r = replay::since(old, target, cp);
print(`commits ${r.commits} files ${r.files}`);
print(target.get_file("images", "master", "/late.txt"));
"#,
    );
    let out = ankus_async(dir.path(), &config, &["run", "./replay.rhai", "--yes"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["commits 1 files 1", "late"], "{out:?}");
}

/// The real pachctl's raw JSON for the same restored data, with what differs by nature
/// (times) blanked; the sandbox must print what the real pachd prints.
async fn pachctl_verbs_read_the_same_on_both_servers(server: Server) {
    // The reference is always a real pachd, filled by pachctl and extracted; `server` is the
    // one under test, restored from that dump so IDs match.
    let reference = Peer::start(Server::Real).await;
    fill(&reference).await;
    let dir = temp_dir();
    let dump = dir.path().join("ref.dump");
    pachctl_to_file(&reference, &["extract"], &dump).await;
    let fresh = Peer::start(Server::Real).await;
    let under_test = Peer::start(server).await;
    for peer in [&fresh, &under_test] {
        let bytes = std::fs::read(&dump).expect("read");
        let out = peer.pachctl_with(&["restore"], Some(bytes)).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    let head = fresh
        .client()
        .await
        .inspect_commit("images", "master")
        .await
        .expect("head")
        .id;
    let verbs: Vec<Vec<String>> = [
        vec!["list", "repo", "--raw"],
        vec!["inspect", "repo", "images", "--raw"],
        vec!["list", "commit", "images", "--raw"],
        vec!["inspect", "commit", "images@master", "--raw"],
        vec!["list", "branch", "images", "--raw"],
        vec!["list", "file", "images@master", "--raw"],
        vec!["list", "file", "images@master:/b", "--raw"],
        vec!["inspect", "file", "images@master:/a.txt", "--raw"],
        vec!["get", "file", "images@master:/a.txt"],
        vec!["list", "pipeline", "--raw"],
        vec!["inspect", "pipeline", "edges", "--raw"],
        vec!["extract", "pipeline", "edges"],
    ]
    .iter()
    .map(|verb| verb.iter().map(|word| word.to_string()).collect())
    .collect();
    let dir = temp_dir();
    let binary = format!("images@{head}:/b/c.bin");
    let (want, got) = (dir.path().join("want.bin"), dir.path().join("got.bin"));
    pachctl_to_file(&fresh, &["get", "file", &binary], &want).await;
    pachctl_to_file(&under_test, &["get", "file", &binary], &got).await;
    assert!(
        std::fs::read(&want).ok() == std::fs::read(&got).ok(),
        "get file {binary}"
    );
    for verb in &verbs {
        let args: Vec<&str> = verb.iter().map(String::as_str).collect();
        let want = fresh.pachctl_with(&args, None).await;
        let got = under_test.pachctl_with(&args, None).await;
        assert_eq!(
            (got.code, normalize(&got.stdout), normalize(&got.stderr)),
            (want.code, normalize(&want.stdout), normalize(&want.stderr)),
            "pachctl {args:?}"
        );
    }
    // Errors: the same exit code; the texts differ (DIFFERENCES, "error texts").
    for verb in [
        &["inspect", "repo", "nope"][..],
        &["inspect", "commit", "images@nope"],
        &["get", "file", "images@master:/nope"],
        &["create", "repo", "images"],
    ] {
        let want = fresh.pachctl_with(verb, None).await;
        let got = under_test.pachctl_with(verb, None).await;
        assert_eq!(
            (got.code, want.code),
            (1, 1),
            "pachctl {verb:?}: {got:?} {want:?}"
        );
    }
    // The same restored data extracts to the same ops on both servers (not always the same
    // bytes: a pachd 1.9.0 restore gives each pipeline a new salt, on two real clusters too).
    let (want, got) = (dir.path().join("want.dump"), dir.path().join("got.dump"));
    pachctl_to_file(&fresh, &["extract"], &want).await;
    pachctl_to_file(&under_test, &["extract"], &got).await;
    let (want, got) = (ops_of(&want), ops_of(&got));
    let objects = |ops: &[(String, serde_json::Value)]| {
        ops.iter().filter(|(kind, _)| kind == "object").count()
    };
    let metadata = |ops: Vec<(String, serde_json::Value)>| -> Vec<(String, serde_json::Value)> {
        ops.into_iter()
            .filter(|(kind, _)| kind != "object")
            .collect()
    };
    // Object runs: as many on both; the contents of the spec objects differ (DIFFERENCES).
    assert_eq!(objects(&got), objects(&want), "pachctl extract: object ops");
    assert_eq!(
        metadata(got),
        metadata(want),
        "pachctl extract: metadata ops"
    );
    // pachctl stop/start pipeline: the same answers, and the same states once settled.
    for (verb, settled) in [("stop", "PIPELINE_PAUSED"), ("start", "PIPELINE_RUNNING")] {
        for peer in [&fresh, &under_test] {
            let out = peer.pachctl_with(&[verb, "pipeline", "edges"], None).await;
            assert_eq!(
                (out.code, out.stdout.as_str()),
                (0, ""),
                "{verb} on {:?}",
                peer.server
            );
            assert_eq!(
                settled_state(peer, settled).await,
                settled,
                "{verb} on {:?}",
                peer.server
            );
        }
        let want = fresh.pachctl(&["list", "pipeline", "--raw"]).await;
        let got = under_test.pachctl(&["list", "pipeline", "--raw"]).await;
        assert_eq!(
            normalize(&got.stdout),
            normalize(&want.stdout),
            "after {verb}"
        );
    }
}

/// Every op of the dump at `path` as (kind, request as JSON), with what a restore makes anew
/// blanked as in [`normalize`].
fn ops_of(path: &Path) -> Vec<(String, serde_json::Value)> {
    let file = std::fs::File::open(path).expect("open dump");
    ankus::backup::reader::RecordReader::new(file)
        .expect("read dump")
        .map(|record| {
            let op = ankus::backup::Op::from_record(record.expect("record")).expect("op");
            let mut request = serde_json::to_value(op.request().expect("decodes")).expect("json");
            blank(&mut request);
            (op.kind.as_str().to_owned(), request)
        })
        .collect()
}

/// The state `pachctl inspect pipeline edges` shows once it is `wanted`, or the last one
/// seen after 20 s.
async fn settled_state(peer: &Peer, wanted: &str) -> String {
    let mut state = String::new();
    for _ in 0..200 {
        let out = peer
            .pachctl(&["inspect", "pipeline", "edges", "--raw"])
            .await;
        let info: serde_json::Value = serde_json::from_str(&out.stdout).expect("pipeline json");
        state = info["state"].as_str().unwrap_or_default().to_owned();
        if state == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    state
}

/// Blanks what differs between two clusters holding the same restored data: timestamps,
/// and the IDs of the open output commits of [`DIFFERENCES`] (`subvenance`), which differ
/// between two real clusters too.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for document in split_json(text) {
        match serde_json::from_str::<serde_json::Value>(&document) {
            Ok(mut value) => {
                blank(&mut value);
                out.push_str(&value.to_string());
                out.push('\n');
            }
            Err(_) => {
                out.push_str(&document);
                out.push('\n');
            }
        }
    }
    out
}

/// pachctl `--raw` prints one pretty JSON document per item, back to back.
fn split_json(text: &str) -> Vec<String> {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let values: Result<Vec<serde_json::Value>, _> = stream.collect();
    match values {
        Ok(values) if !values.is_empty() => values.iter().map(|v| v.to_string()).collect(),
        _ => vec![text.to_owned()],
    }
}

fn blank(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // Only the real pachd has output commits, and hashtree node hashes (DIFFERENCES).
            map.remove("subvenance");
            if map.contains_key("fileType") {
                map.remove("hash");
            }
            // Per-cluster identities a restore makes anew, on two real clusters too.
            if map.contains_key("spec_commit") {
                for key in ["salt", "spec_commit", "created_at"] {
                    map.remove(key);
                }
            }
            for (key, field) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "created" | "started" | "finished" | "committed"
                ) {
                    *field = serde_json::Value::Null;
                } else {
                    blank(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(blank),
        _ => {}
    }
}

/// Regression (#19): a context's `active_transaction` went on every call, so a stale
/// transaction left by `pachctl start transaction` was joined by pipeline stops, extracts and
/// restores, and `create_repo` failed to find the repo it had just made. As with pachctl, only
/// the repo and commit commands join it, and ankus says so. (Real pachd only: the sandbox does
/// not emulate transactions.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_transaction_is_joined_only_by_the_commands_pachctl_runs_in_it() {
    let peer = Peer::start(Server::Real).await;
    fill(&peer).await;
    let started = peer.pachctl(&["start", "transaction"]).await;
    let transaction = started
        .stdout
        .trim()
        .strip_prefix("Started new transaction: ")
        .unwrap_or_else(|| panic!("{started:?}"))
        .to_owned();
    let dir = temp_dir();
    let config = write(
        dir.path(),
        "pachctl-config.json",
        &serde_json::json!({ "v2": { "active_context": "real", "contexts": { "real": {
            "pachd_address": peer.url(), "active_transaction": transaction,
        } } } })
        .to_string(),
    );
    write(
        dir.path(),
        "txn.rhai",
        r#"
let c = pachd::connect("real");
let made = c.create_repo("joined");
c.stop_pipeline("edges");
let dump = c.extract(#{ to: "txn.dump", objects: false });
c.start_pipeline("edges");
#{ made: made.name, repos: c.repos().map(|r| r.name), records: dump.inventory.records }
"#,
    );
    let out = ankus_async(
        dir.path(),
        &config,
        &["run", "./txn.rhai", "--yes", "--output", "json"],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "create repo joined: added to transaction {transaction}"
        )),
        "{}",
        out.stderr
    );
    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let repos = result["result"]["repos"].to_string();
    assert_eq!(result["result"]["made"], "joined", "{result}");
    assert!(
        !repos.contains("joined") && repos.contains("images"),
        "the repo waits for the transaction: {result}"
    );
    assert!(result["result"]["records"].as_u64() > Some(0), "{result}");
    // The stop, extract and start ran outside the transaction: only the create repo is in it.
    let finished = peer.pachctl(&["finish", "transaction", &transaction]).await;
    assert!(
        finished.stdout.contains(&format!(
            "Completed transaction with 1 requests: {transaction}"
        )),
        "{finished:?}"
    );
    let listed = peer.pachctl(&["list", "repo"]).await;
    assert!(listed.stdout.contains("joined"), "{listed:?}");
}

/// Regression (#19): configurations operators have were refused. A missing config file with
/// `$PACHD_ADDRESS` set (pachctl makes a `default` context), a context named by an EKS ARN
/// (it has colons, and was taken for an address), and a set but empty `$PACH_CONTEXT` (an
/// error in pachctl; ankus silently used the active context).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_configs_reach_the_real_pachd_as_pachctl_reads_them() {
    let peer = Peer::start(Server::Real).await;
    let dir = temp_dir();
    write(
        dir.path(),
        "active.rhai",
        "let c = pachd::connect(); `${c.version()} ${c.context()}`",
    );
    let missing = dir.path().join("no-such-config.json");
    let out = ankus_async(
        dir.path(),
        &missing,
        &["run", "./active.rhai", "--output", "json"],
        &[("PACHD_ADDRESS", &peer.address)],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("1.9.0 default"), "{out:?}");
    assert!(!missing.exists(), "ankus wrote a config");

    let arn = "arn:aws:eks:us-east-1:123456789012:cluster/prod";
    let config = write(
        dir.path(),
        "eks.json",
        &serde_json::json!({ "v2": { "active_context": arn, "contexts": {
            arn: { "pachd_address": peer.url() },
        } } })
        .to_string(),
    );
    write(
        dir.path(),
        "named.rhai",
        &format!("let c = pachd::connect(\"{arn}\"); `${{c.version()}} ${{c.context()}}`"),
    );
    let out = ankus_async(
        dir.path(),
        &config,
        &["run", "./named.rhai", "--output", "json"],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(&format!("1.9.0 {arn}")), "{out:?}");

    let out = ankus_async(
        dir.path(),
        &config,
        &["run", "./active.rhai"],
        &[("PACH_CONTEXT", "")],
    )
    .await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("$PACH_CONTEXT is set but empty"),
        "{}",
        out.stderr
    );
}
