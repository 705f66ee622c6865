//! Extract: the cluster as a stream of dump records in the impersonated version's `Op1_x`, in
//! the order of reference §5.3 (1.9 – 1.11.8, and 1.11.9+ with the auth and enterprise ops).
//! Block data goes out in ≤ 10 MiB pieces, each block closed by an empty-value terminator.

use std::io::Read;

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
        for tag in bucket.list_tags().map_err(|e| io("list tags", e))? {
            let Some(hash) = bucket.tag_target(&tag).map_err(|e| io("read tag", e))? else {
                continue;
            };
            out!(admin::Op113 {
                tag: Some(pfs::TagObjectRequest {
                    object: Some(pfs::Object { hash }),
                    tags: vec![pfs::Tag { name: tag }],
                }),
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
    let mut request = request_from_pipeline_info(info);
    request.spec_commit = None;
    from_current(
        admin::Op113 {
            pipeline: Some(request),
            ..Default::default()
        },
        version.minor,
    )
}
