//! Extract: the cluster as a stream of dump records in the impersonated version's `Op1_x`, in
//! the order of reference §5.3 (1.9.6 – 1.11.8, and 1.11.9+ with the auth and enterprise ops).
//! Block data goes out in ≤ 10 MiB pieces, each block closed by an empty-value terminator.
//!
//! pachd 1.9.0 – 1.9.5 wrote an older layout, reproduced by [`extract_before_1_9_6`] so that
//! a dump of the sandbox is byte for byte the dump the real release makes of the same data.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use super::bucket::Bucket;
use super::convert::from_current;
use super::error::{PachdError, PachdResult};
use super::state::{
    Caller, SPEC_REPO, State, branch_msg, commit_msg, now, request_from_pipeline_info,
};
use super::version::PachdVersion;
use crate::proto::{admin, auth, enterprise, pfs, pps};

/// Streaming producers chunk data at MaxMsgSize/2.
pub const CHUNK: usize = 10 << 20;

/// Produces the ops of an extract of `state` and `bucket`, handing each to `emit` (which
/// returns false to stop early, e.g. when the client went away).
pub fn extract(
    state: &State,
    bucket: &Bucket,
    version: PachdVersion,
    request: &admin::ExtractRequest,
    caller: &Caller,
    emit: &mut dyn FnMut(admin::Op) -> bool,
) -> PachdResult<()> {
    if !version.extracts_blocks_and_outputs() {
        return extract_before_1_9_6(state, bucket, version, request, emit);
    }
    let auth_ops = version.has_auth_ops();
    let mut no_auth = request.no_auth || !auth_ops;
    if auth_ops {
        if state.auth.active && !caller.admin {
            return Err(PachdError::not_authorized(
                caller.subject.as_deref().unwrap_or("anonymous"),
                "Extract",
            ));
        }
        if !state.auth.active {
            no_auth = true;
        }
    }
    let mut send =
        |op: admin::Op113| -> PachdResult<bool> { Ok(emit(from_current(op, version.minor)?)) };
    macro_rules! out {
        ($op:expr) => {
            if !send($op)? {
                return Ok(());
            }
        };
    }
    if !no_auth {
        out!(admin::Op113 {
            check_auth_token: Some(admin::CheckAuthToken {}),
            ..Default::default()
        });
    }
    let io = |what: &str, err: std::io::Error| PachdError::io(what, &err);
    if !request.no_objects {
        for id in bucket.list_blocks().map_err(|e| io("list blocks", e))? {
            let mut file = bucket.open_block(&id).map_err(|e| io("read block", e))?;
            loop {
                let mut chunk = Vec::with_capacity(CHUNK.min(1 << 20));
                let read = (&mut file)
                    .take(CHUNK as u64)
                    .read_to_end(&mut chunk)
                    .map_err(|e| io("read block", e))?;
                if read == 0 {
                    break;
                }
                out!(block_op(&id, chunk));
                if read < CHUNK {
                    break;
                }
            }
            out!(block_op(&id, Vec::new()));
        }
        for hash in bucket.list_objects().map_err(|e| io("list objects", e))? {
            let Some(block_ref) = bucket.object_ref(&hash).map_err(|e| io("read object", e))?
            else {
                continue;
            };
            out!(admin::Op113 {
                create_object: Some(pfs::CreateObjectRequest {
                    object: Some(pfs::Object { hash }),
                    block_ref: Some(block_ref),
                }),
                ..Default::default()
            });
        }
        for tag in tag_requests(bucket)? {
            out!(admin::Op113 {
                tag: Some(tag),
                ..Default::default()
            });
        }
    }
    if !request.no_repos {
        let mut repos = state.repo_names_oldest_first();
        if let Some(pos) = repos.iter().position(|r| r == SPEC_REPO) {
            let spec = repos.remove(pos);
            repos.insert(0, spec);
        }
        for name in &repos {
            out!(admin::Op113 {
                repo: Some(pfs::CreateRepoRequest {
                    repo: Some(pfs::Repo { name: name.clone() }),
                    description: state.repos[name].description.clone(),
                    update: false,
                }),
                ..Default::default()
            });
        }
        for (repo, record) in state.all_commits_oldest_first() {
            let info = &record.info;
            let id = info
                .commit
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            let parent = info
                .parent_commit
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_default();
            out!(admin::Op113 {
                commit: Some(pfs::BuildCommitRequest {
                    parent: Some(commit_msg(&repo, &parent)),
                    branch: String::new(),
                    origin: if version.minor >= 11 {
                        info.origin
                    } else {
                        None
                    },
                    provenance: info.provenance.clone(),
                    tree: info.tree.clone(),
                    trees: info.trees.clone(),
                    datums: info.datums.clone(),
                    id,
                    size_bytes: info.size_bytes,
                    started: info.started,
                    // An open commit is closed now and loses its data, as in pachd 1.10+.
                    finished: info.finished.or_else(|| Some(now())),
                }),
                ..Default::default()
            });
        }
        for (repo, branch, record) in state.all_branches_in_order() {
            out!(admin::Op113 {
                branch: Some(pfs::CreateBranchRequest {
                    head: record.head.as_deref().map(|h| commit_msg(&repo, h)),
                    s_branch: String::new(),
                    branch: Some(branch_msg(&repo, &branch)),
                    provenance: record
                        .provenance
                        .iter()
                        .map(|(r, b)| branch_msg(r, b))
                        .collect(),
                    trigger: None,
                }),
                ..Default::default()
            });
        }
    }
    if !request.no_pipelines {
        for name in state.pipelines_in_dependency_order() {
            let info = &state.pipelines[&name].info;
            out!(admin::Op113 {
                pipeline: Some(request_from_pipeline_info(info)),
                ..Default::default()
            });
            let jobs = state.list_jobs(Some(&name), None)?;
            for job in jobs {
                out!(admin::Op113 {
                    job: Some(pps::CreateJobRequest {
                        pipeline: job.pipeline.clone(),
                        output_commit: job.output_commit.clone(),
                        restart: job.restart,
                        data_processed: job.data_processed,
                        data_skipped: job.data_skipped,
                        data_total: job.data_total,
                        data_failed: job.data_failed,
                        data_recovered: job.data_recovered,
                        stats: job.stats,
                        stats_commit: job.stats_commit.clone(),
                        state: job.state,
                        reason: job.reason.clone(),
                        started: job.started,
                        finished: job.finished,
                    }),
                    ..Default::default()
                });
            }
        }
    }
    if auth_ops && !request.no_enterprise && state.enterprise_active() {
        out!(admin::Op113 {
            activate_enterprise: Some(enterprise::ActivateRequest {
                activation_code: state.enterprise.activation_code.clone().unwrap_or_default(),
                expires: None,
            }),
            ..Default::default()
        });
    }
    if !no_auth {
        out!(admin::Op113 {
            activate_auth: Some(auth::ActivateRequest::default()),
            ..Default::default()
        });
        for token in state.extract_tokens()? {
            out!(admin::Op113 {
                restore_auth_token: Some(auth::RestoreAuthTokenRequest { token: Some(token) }),
                ..Default::default()
            });
        }
        for (principal, roles) in &state.auth.roles {
            if principal == "pach:root" {
                continue;
            }
            out!(admin::Op113 {
                set_cluster_role_binding: Some(auth::ModifyClusterRoleBindingRequest {
                    principal: principal.clone(),
                    roles: Some(auth::ClusterRoles {
                        roles: roles.clone()
                    }),
                }),
                ..Default::default()
            });
        }
        let mut config = state.auth.config.clone();
        config.live_config_version = 0;
        out!(admin::Op113 {
            set_auth_config: Some(auth::SetConfigurationRequest {
                configuration: Some(config),
            }),
            ..Default::default()
        });
        if !request.no_repos {
            let mut repos: Vec<String> = state
                .list_repos()
                .into_iter()
                .filter_map(|r| r.repo.map(|r| r.name))
                .collect();
            if state.repos.contains_key(SPEC_REPO) {
                repos.push(SPEC_REPO.to_owned());
            }
            for repo in repos {
                let entries = state
                    .auth
                    .acls
                    .get(&repo)
                    .into_iter()
                    .flatten()
                    .map(|(username, scope)| auth::AclEntry {
                        username: username.clone(),
                        scope: *scope,
                    })
                    .collect();
                out!(admin::Op113 {
                    set_acl: Some(auth::SetAclRequest { repo, entries }),
                    ..Default::default()
                });
            }
        }
    }
    Ok(())
}

/// The size of each object op's value in a 1.9.0 – 1.9.5 dump: GetObject streams an object in
/// messages of `grpcutil.GetBuffer`'s size (MaxMsgSize / 10), and Extract writes one op per
/// message (its own 10 MiB split never applies).
const OBJECT_CHUNK: u64 = 2 << 20;

/// Extract as pachd 1.9.0 – 1.9.5 do (upstream v1.9.0 `admin/server/api_server.go`): each
/// object's bytes as object ops closed by an empty one, the tags, the repos ListRepo shows
/// except those with a branch that has provenance (pipeline outputs), the pipelines, then per
/// repo its commits and branches. Nothing else: no `__spec__` repo, no outputs of running
/// pipelines, no commit sizes or provenance, no branch provenance, no jobs; a restore of such
/// a dump recreates those by creating the pipelines before the commits (upstream's reason for
/// the order).
fn extract_before_1_9_6(
    state: &State,
    bucket: &Bucket,
    version: PachdVersion,
    request: &admin::ExtractRequest,
    emit: &mut dyn FnMut(admin::Op) -> bool,
) -> PachdResult<()> {
    let mut send =
        |op: admin::Op113| -> PachdResult<bool> { Ok(emit(from_current(op, version.minor)?)) };
    macro_rules! out {
        ($op:expr) => {
            if !send($op)? {
                return Ok(());
            }
        };
    }
    let io = |what: &str, err: std::io::Error| PachdError::io(what, &err);
    if !request.no_objects {
        // pachd lists objects by walking its `object/` folder, which Go's filepath.Walk does
        // in name order: the bucket's sorted listing.
        for hash in bucket.list_objects().map_err(|e| io("list objects", e))? {
            let Some(block_ref) = bucket.object_ref(&hash).map_err(|e| io("read object", e))?
            else {
                continue;
            };
            let range = block_ref.range.unwrap_or_default();
            if range.upper > range.lower {
                let block = block_ref.block.map(|b| b.hash).unwrap_or_default();
                let mut file = bucket
                    .open_block(&block)
                    .map_err(|e| io("read object", e))?;
                file.seek(SeekFrom::Start(range.lower))
                    .map_err(|e| io("read object", e))?;
                let mut rest = file.take(range.upper - range.lower);
                loop {
                    let mut chunk = Vec::new();
                    let read = (&mut rest)
                        .take(OBJECT_CHUNK)
                        .read_to_end(&mut chunk)
                        .map_err(|e| io("read object", e))?;
                    if read == 0 {
                        break;
                    }
                    out!(object_op(chunk));
                }
            }
            out!(object_op(Vec::new()));
        }
        // Name order too, as pachd walks `tag/`; but pachd reads the tags it finds in
        // parallel and sends each as its read finishes, so with several tags its own order
        // can differ from run to run.
        for tag in tag_requests(bucket)? {
            out!(admin::Op113 {
                tag: Some(tag),
                ..Default::default()
            });
        }
    }
    let mut repos = Vec::new();
    if !request.no_repos {
        for info in state.list_repos() {
            let Some(repo) = info.repo else { continue };
            // pachd's test for an output repo, taken as is: a stopped pipeline's output
            // (its branch lost its provenance) goes out as an input repo, and an input repo
            // with a branch given provenance by hand is left out.
            let branches = state.list_branches(&repo.name, false)?;
            if branches.iter().any(|b| !b.provenance.is_empty()) {
                continue;
            }
            repos.push(repo.name.clone());
            out!(admin::Op113 {
                repo: Some(pfs::CreateRepoRequest {
                    repo: Some(repo),
                    description: info.description,
                    update: false,
                }),
                ..Default::default()
            });
        }
    }
    if !request.no_pipelines {
        for info in sort_pipeline_infos(state.list_pipelines(None)?) {
            out!(admin::Op113 {
                pipeline: Some(request_before_1_9_6(&info, version)),
                ..Default::default()
            });
        }
    }
    for repo in &repos {
        let commits = state.list_commits(repo, None, None, 0, false)?;
        let branches = state.list_branches(repo, false)?;
        for commit in build_commit_requests(commits, &branches) {
            out!(admin::Op113 {
                commit: Some(commit),
                ..Default::default()
            });
        }
        for branch in branches {
            out!(admin::Op113 {
                branch: Some(pfs::CreateBranchRequest {
                    head: branch.head,
                    branch: branch.branch,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    Ok(())
}

fn object_op(value: Vec<u8>) -> admin::Op113 {
    admin::Op113 {
        object: Some(pfs::PutObjectRequest {
            value,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CreatePipelineRequest pachd 1.9.0 – 1.9.5 rebuild from a PipelineInfo
/// (`pipelineInfoToRequest`): no salt, spec commit, standby, datum tries, scheduling spec,
/// hashtree spec or spout, so a restore makes new ones or goes without; `pod_spec` and
/// `pod_patch` only from 1.9.4. (It also copies `scale_down_threshold` and `batch`, which the
/// sandbox does not keep.)
fn request_before_1_9_6(
    info: &pps::PipelineInfo,
    version: PachdVersion,
) -> pps::CreatePipelineRequest {
    let pod_specs = version.extracts_pod_specs();
    pps::CreatePipelineRequest {
        pipeline: info.pipeline.clone(),
        transform: info.transform.clone(),
        parallelism_spec: info.parallelism_spec,
        egress: info.egress.clone(),
        output_branch: info.output_branch.clone(),
        resource_requests: info.resource_requests.clone(),
        resource_limits: info.resource_limits.clone(),
        input: info.input.clone(),
        description: info.description.clone(),
        cache_size: info.cache_size.clone(),
        enable_stats: info.enable_stats,
        max_queue_size: info.max_queue_size,
        service: info.service.clone(),
        chunk_spec: info.chunk_spec,
        datum_timeout: info.datum_timeout,
        job_timeout: info.job_timeout,
        pod_spec: if pod_specs {
            info.pod_spec.clone()
        } else {
            String::new()
        },
        pod_patch: if pod_specs {
            info.pod_patch.clone()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// Pipelines in ListPipeline order, each after the pipelines its PFS inputs read from
/// (upstream `sortPipelineInfos`).
fn sort_pipeline_infos(infos: Vec<pps::PipelineInfo>) -> Vec<pps::PipelineInfo> {
    fn name(info: &pps::PipelineInfo) -> String {
        info.pipeline
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }
    fn add(
        name: &str,
        by_name: &mut HashMap<String, pps::PipelineInfo>,
        sorted: &mut Vec<pps::PipelineInfo>,
    ) {
        // Taken out before its inputs are visited (upstream does it after): the same order
        // for the acyclic graphs pipelines form, and no endless recursion on any other.
        let Some(info) = by_name.remove(name) else {
            return;
        };
        let mut inputs = Vec::new();
        pfs_input_repos(info.input.as_ref(), &mut inputs);
        for repo in &inputs {
            add(repo, by_name, sorted);
        }
        sorted.push(info);
    }
    let order: Vec<String> = infos.iter().map(name).collect();
    let mut by_name: HashMap<String, pps::PipelineInfo> =
        infos.into_iter().map(|info| (name(&info), info)).collect();
    let mut sorted = Vec::with_capacity(order.len());
    for pipeline in &order {
        add(pipeline, &mut by_name, &mut sorted);
    }
    sorted
}

/// The repos of the PFS inputs in `input`, in the order pachd 1.9's `VisitInput` reaches
/// them: a cross's (or else a union's) children first, then the input itself.
fn pfs_input_repos(input: Option<&pps::Input>, repos: &mut Vec<String>) {
    let Some(input) = input else { return };
    let children = if input.cross.is_empty() {
        &input.union
    } else {
        &input.cross
    };
    for child in children {
        pfs_input_repos(Some(child), repos);
    }
    if let Some(pfs_input) = &input.pfs {
        repos.push(pfs_input.repo.clone());
    }
}

/// One repo's commits as pachd 1.9.0 – 1.9.5 extract them (upstream `buildCommitRequests`):
/// parent before child, each with its parent (the repo alone for a root), tree, ID and the
/// branch a restore moves to it: a branch whose head it is, or else the branch given to its
/// last child in that order, `master` winning both ties.
fn build_commit_requests(
    commits: Vec<pfs::CommitInfo>,
    branches: &[pfs::BranchInfo],
) -> Vec<pfs::BuildCommitRequest> {
    let sorted = sort_commit_infos(commits);
    let mut branch_of: HashMap<String, String> = HashMap::new();
    for branch in branches {
        let Some(head) = &branch.head else { continue };
        if !branch_of.contains_key(&head.id) || branch.name == "master" {
            branch_of.insert(head.id.clone(), branch.name.clone());
        }
    }
    let mut requests = Vec::with_capacity(sorted.len());
    for info in sorted.into_iter().rev() {
        let commit = info.commit.unwrap_or_default();
        let repo = commit.repo.map(|r| r.name).unwrap_or_default();
        let branch = branch_of.get(&commit.id).cloned().unwrap_or_default();
        let parent = info.parent_commit.unwrap_or_else(|| commit_msg(&repo, ""));
        if !branch_of.contains_key(&parent.id) || branch == "master" {
            branch_of.insert(parent.id.clone(), branch.clone());
        }
        requests.push(pfs::BuildCommitRequest {
            parent: Some(parent),
            tree: info.tree,
            id: commit.id,
            branch,
            ..Default::default()
        });
    }
    requests.reverse();
    requests
}

/// Commits (ListCommit order: newest first) rearranged so that every commit follows its
/// parent: for each commit not yet placed, its unplaced ancestors oldest first, then it
/// (upstream `sortCommitInfos`).
fn sort_commit_infos(commits: Vec<pfs::CommitInfo>) -> Vec<pfs::CommitInfo> {
    let id = |info: &pfs::CommitInfo| {
        info.commit
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default()
    };
    let order: Vec<String> = commits.iter().map(id).collect();
    let mut by_id: HashMap<String, pfs::CommitInfo> =
        commits.into_iter().map(|info| (id(&info), info)).collect();
    let mut sorted = Vec::with_capacity(order.len());
    for commit in &order {
        let mut chain = Vec::new();
        let mut next = by_id.remove(commit);
        while let Some(info) = next {
            next = info
                .parent_commit
                .as_ref()
                .and_then(|parent| by_id.remove(&parent.id));
            chain.push(info);
        }
        sorted.extend(chain.into_iter().rev());
    }
    sorted
}

fn block_op(id: &str, value: Vec<u8>) -> admin::Op113 {
    admin::Op113 {
        block: Some(pfs::PutBlockRequest {
            block: Some(pfs::Block {
                hash: id.to_owned(),
            }),
            value,
        }),
        ..Default::default()
    }
}

/// ExtractPipeline: the pipeline's CreatePipelineRequest (without spec_commit) in the server's
/// `Op1_x`.
pub fn extract_pipeline(
    state: &State,
    version: PachdVersion,
    name: &str,
) -> PachdResult<admin::Op> {
    let info = &state.pipeline(name)?.info;
    let request = if version.extracts_blocks_and_outputs() {
        let mut request = request_from_pipeline_info(info);
        request.spec_commit = None;
        request
    } else {
        request_before_1_9_6(info, version)
    };
    from_current(
        admin::Op113 {
            pipeline: Some(request),
            ..Default::default()
        },
        version.minor,
    )
}

/// One TagObjectRequest per tag in the bucket, in name order (both extract layouts).
fn tag_requests(bucket: &Bucket) -> PachdResult<Vec<pfs::TagObjectRequest>> {
    let io = |what: &str, err: std::io::Error| PachdError::io(what, &err);
    let mut requests = Vec::new();
    for tag in bucket.list_tags().map_err(|e| io("list tags", e))? {
        let Some(hash) = bucket.tag_target(&tag).map_err(|e| io("read tag", e))? else {
            continue;
        };
        requests.push(pfs::TagObjectRequest {
            object: Some(pfs::Object { hash }),
            tags: vec![pfs::Tag { name: tag }],
        });
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::super::bucket::object_hash;
    use super::*;
    use crate::proto::pps_1_9;

    fn bucket() -> (tempfile::TempDir, Bucket) {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path()).unwrap();
        (dir, bucket)
    }

    /// The ops of an extract as `version`, each the `Op1_9` pachctl would write.
    fn ops(
        state: &State,
        bucket: &Bucket,
        version: &str,
        request: &admin::ExtractRequest,
    ) -> Vec<admin::Op19> {
        let mut out = Vec::new();
        let caller = Caller {
            subject: None,
            admin: true,
        };
        extract(
            state,
            bucket,
            version.parse().unwrap(),
            request,
            &caller,
            &mut |op| {
                out.push(op.op1_9.expect("a 1.9 op"));
                true
            },
        )
        .unwrap();
        out
    }

    fn kind(op: &admin::Op19) -> &'static str {
        [
            (op.object.is_some(), "object"),
            (op.tag.is_some(), "tag"),
            (op.repo.is_some(), "repo"),
            (op.commit.is_some(), "commit"),
            (op.branch.is_some(), "branch"),
            (op.pipeline.is_some(), "pipeline"),
            (op.block.is_some(), "block"),
            (op.create_object.is_some(), "create_object"),
        ]
        .into_iter()
        .find_map(|(set, kind)| set.then_some(kind))
        .unwrap_or("other")
    }

    /// Kinds with runs collapsed: `["object x4", "repo", ...]`.
    fn kinds(ops: &[admin::Op19]) -> Vec<String> {
        let mut out: Vec<(&str, usize)> = Vec::new();
        for op in ops {
            match out.last_mut() {
                Some((last, count)) if *last == kind(op) => *count += 1,
                _ => out.push((kind(op), 1)),
            }
        }
        out.into_iter()
            .map(|(kind, count)| {
                if count == 1 {
                    kind.to_owned()
                } else {
                    format!("{kind} x{count}")
                }
            })
            .collect()
    }

    fn commit_file(state: &mut State, bucket: &Bucket, repo: &str, branch: &str, bytes: &[u8]) {
        let commit = state.start_commit(bucket, repo, "", branch, "").unwrap();
        let hash = bucket.put_object(bytes).unwrap();
        let path = format!("/{}", bytes.len());
        state
            .write_file(
                repo,
                &commit.id,
                &path,
                Some((hash, bytes.len() as u64)),
                None,
                false,
            )
            .unwrap();
        state.finish_commit(bucket, repo, &commit.id, "").unwrap();
    }

    fn pipeline(name: &str, input: &str) -> pps::CreatePipelineRequest {
        pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline { name: name.into() }),
            transform: Some(pps::Transform {
                image: "ubuntu:16.04".into(),
                ..Default::default()
            }),
            input: Some(pps::Input {
                pfs: Some(pps::PfsInput {
                    repo: input.into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            pod_patch: "[]".into(),
            ..Default::default()
        }
    }

    #[test]
    fn pachd_1_9_0_extract_sends_object_bytes_in_2_mib_ops_in_hash_order_not_blocks() {
        let (_dir, bucket) = bucket();
        let state = State::new();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let hashes = [
            bucket.put_object(&big).unwrap(),
            bucket.put_object(b"hi").unwrap(),
        ];
        bucket.put_object(b"").unwrap();
        let got = ops(&state, &bucket, "1.9.0", &admin::ExtractRequest::default());
        let mut runs: Vec<(String, Vec<usize>)> = Vec::new();
        let mut content = Vec::new();
        let mut sizes = Vec::new();
        for op in &got {
            let value = &op.object.as_ref().expect("only object ops").value;
            content.extend_from_slice(value);
            sizes.push(value.len());
            if value.is_empty() {
                runs.push((object_hash(&content), sizes.clone()));
                content.clear();
                sizes.clear();
            }
        }
        let mut want: Vec<(String, Vec<usize>)> = vec![
            (
                hashes[0].clone(),
                vec![2 << 20, 2 << 20, 5_000_000 - (4 << 20), 0],
            ),
            (hashes[1].clone(), vec![2, 0]),
            (object_hash(b""), vec![0]),
        ];
        want.sort();
        assert_eq!(runs, want);
        let later = ops(&state, &bucket, "1.9.6", &admin::ExtractRequest::default());
        assert_eq!(kinds(&later), ["block x5", "create_object x3"]);
    }

    #[test]
    fn pachd_1_9_0_extract_leaves_out_spec_and_output_repos_and_puts_pipelines_before_commits() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("images", "the images", false).unwrap();
        commit_file(&mut state, &bucket, "images", "master", b"a");
        state.create_repo("empty", "", false).unwrap();
        state
            .create_pipeline(&bucket, &pipeline("edges", "images"))
            .unwrap();
        state
            .create_pipeline(&bucket, &pipeline("stats", "edges"))
            .unwrap();
        let request = admin::ExtractRequest {
            no_objects: true,
            ..Default::default()
        };
        let got = ops(&state, &bucket, "1.9.0", &request);
        assert_eq!(
            kinds(&got),
            ["repo x2", "pipeline x2", "commit", "branch"],
            "{got:#?}"
        );
        let repos: Vec<(&str, &str)> = (got.iter().filter_map(|op| op.repo.as_ref()))
            .map(|r| {
                (
                    r.repo.as_ref().unwrap().name.as_str(),
                    r.description.as_str(),
                )
            })
            .collect();
        assert_eq!(repos, [("empty", ""), ("images", "the images")]);
        let pipelines: Vec<&pps_1_9::CreatePipelineRequest> =
            got.iter().filter_map(|op| op.pipeline.as_ref()).collect();
        let names: Vec<&str> = (pipelines.iter())
            .map(|p| p.pipeline.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["edges", "stats"], "producers first");
        let edges = pipelines[0];
        assert_eq!(edges.transform.as_ref().unwrap().image, "ubuntu:16.04");
        assert_eq!(
            (edges.output_branch.as_str(), edges.cache_size.as_str()),
            ("master", "64M")
        );
        assert!(
            edges.salt.is_empty() && edges.spec_commit.is_none(),
            "{edges:?}"
        );
        assert_eq!((edges.datum_tries, edges.pod_patch.as_str()), (0, ""));
        let branch = got.last().unwrap().branch.as_ref().unwrap();
        assert!(
            branch.provenance.is_empty() && branch.head.is_some(),
            "{branch:?}"
        );

        let no_repos = admin::ExtractRequest {
            no_objects: true,
            no_repos: true,
            ..Default::default()
        };
        assert_eq!(
            kinds(&ops(&state, &bucket, "1.9.0", &no_repos)),
            ["pipeline x2"]
        );
        let later = ops(&state, &bucket, "1.9.6", &request);
        assert!(
            later.iter().any(|op| op
                .repo
                .as_ref()
                .is_some_and(|r| r.repo.as_ref().unwrap().name == SPEC_REPO)),
            "1.9.6 extracts the spec repo"
        );
    }

    #[test]
    fn pachd_1_9_0_extract_names_the_branch_a_restore_moves_to_each_commit() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("r", "", false).unwrap();
        commit_file(&mut state, &bucket, "r", "master", b"1");
        let first = state.resolve_commit("r", "master").unwrap();
        state
            .create_branch("r", "dev", Some(&commit_msg("r", &first)), &[])
            .unwrap();
        commit_file(&mut state, &bucket, "r", "dev", b"22");
        commit_file(&mut state, &bucket, "r", "master", b"333");
        commit_file(&mut state, &bucket, "r", "master", b"4444");
        let id = |reference: &str| state.resolve_commit("r", reference).unwrap();
        let (dev, third, fourth) = (id("dev"), id("master^"), id("master"));
        let request = admin::ExtractRequest {
            no_objects: true,
            ..Default::default()
        };
        let got: Vec<(String, String, String, bool, u64)> = ops(&state, &bucket, "1.9.0", &request)
            .into_iter()
            .filter_map(|op| op.commit)
            .map(|c| {
                let parent = c.parent.unwrap();
                assert_eq!(parent.repo.unwrap().name, "r");
                (c.id, parent.id, c.branch, c.tree.is_some(), c.size_bytes)
            })
            .collect();
        // pachd 1.9.0's buildCommitRequests: chains oldest first in ListCommit order; the
        // fork point goes to master, which wins over dev.
        assert_eq!(
            got,
            [
                (first.clone(), String::new(), "master".into(), true, 0),
                (third.clone(), first.clone(), "master".into(), true, 0),
                (fourth.clone(), third, "master".into(), true, 0),
                (dev, first, "dev".into(), true, 0),
            ]
        );
    }

    #[test]
    fn extract_pipeline_copies_pod_patch_from_1_9_4_and_salt_from_1_9_6() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("images", "", false).unwrap();
        state
            .create_pipeline(&bucket, &pipeline("edges", "images"))
            .unwrap();
        let extracted = |version: &str| {
            extract_pipeline(&state, version.parse().unwrap(), "edges")
                .unwrap()
                .op1_9
                .unwrap()
                .pipeline
                .unwrap()
        };
        let old = extracted("1.9.0");
        assert_eq!((old.pod_patch.as_str(), old.salt.is_empty()), ("", true));
        let pod = extracted("1.9.4");
        assert_eq!((pod.pod_patch.as_str(), pod.salt.is_empty()), ("[]", true));
        let salted = extracted("1.9.6");
        assert_eq!(
            (salted.pod_patch.as_str(), salted.salt.is_empty()),
            ("[]", false)
        );
    }
}
