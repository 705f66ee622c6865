//! The cluster's metadata (what real pachd keeps in etcd): repos, commits, branches,
//! pipelines, jobs, auth and enterprise activation, with pachd's state transitions and error
//! texts. Everything here is synchronous and deterministic; the server holds it behind a mutex
//! and persists it as `<data>/state.json` (protobuf values inside are base64 of their encoding).
//!
//! Simplifications, by design: commits are never propagated downstream (no output commits
//! appear when an input changes, since jobs are never executed); ACLs are stored and reported
//! but not enforced per repo (auth only checks that a caller is signed in, and that Extract,
//! Restore and the admin RPCs come from an admin); ListPipeline ignores `history`.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bucket::Bucket;
use super::error::{PachdError, PachdResult, valid_name};
use super::hashtree;
use super::tree::{FileEntry, FileTree, clean_path};
use crate::proto::{auth, pfs, pps};

/// The repo holding pipeline specs.
pub const SPEC_REPO: &str = "__spec__";

/// Serde helpers storing protobuf messages as base64 of their encoding.
mod pb {
    use base64::Engine as _;
    use prost::Message;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Message, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value.encode_to_vec()))
    }

    pub fn deserialize<'de, T: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        T::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
    }
}

/// Now as a protobuf timestamp.
pub fn now() -> Timestamp {
    let ts = jiff::Timestamp::now();
    Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

/// A fresh 32-hex id (commit, job, token, block ids).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// SHA-256 hex of a token, the key pachd stores tokens under.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn repo_msg(name: &str) -> pfs::Repo {
    pfs::Repo {
        name: name.to_owned(),
    }
}

/// A `pfs.Commit`.
pub fn commit_msg(repo: &str, id: &str) -> pfs::Commit {
    pfs::Commit {
        repo: Some(repo_msg(repo)),
        id: id.to_owned(),
    }
}

/// A `pfs.Branch`.
pub fn branch_msg(repo: &str, name: &str) -> pfs::Branch {
    pfs::Branch {
        repo: Some(repo_msg(repo)),
        name: name.to_owned(),
    }
}

/// The repo name of an optional commit.
pub fn commit_repo(commit: Option<&pfs::Commit>) -> &str {
    commit
        .and_then(|c| c.repo.as_ref())
        .map(|r| r.name.as_str())
        .unwrap_or("")
}

/// The repo name of an optional branch.
pub fn branch_repo(branch: Option<&pfs::Branch>) -> &str {
    branch
        .and_then(|b| b.repo.as_ref())
        .map(|r| r.name.as_str())
        .unwrap_or("")
}

/// The total bytes of the files of the tree object `hash` (pachd's `FSSize`: the root's
/// subtree size), 0 when the object is missing or not a tree the sandbox reads; pachd 1.9.0
/// would refuse such a commit, later releases do not look.
fn tree_size(bucket: &Bucket, hash: &str) -> u64 {
    let Ok(Some(bytes)) = bucket.read_object(hash) else {
        return 0;
    };
    FileTree::decode(&bytes)
        .map(|tree| tree.size())
        .or_else(|| hashtree::fs_size(&bytes))
        .unwrap_or(0)
}

/// One commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Creation order within the cluster.
    pub seq: u64,
    /// What InspectCommit reports (child_commits maintained incrementally).
    #[serde(with = "pb")]
    pub info: pfs::CommitInfo,
    /// The working file set while the commit is open.
    pub open: Option<FileTree>,
}

/// One branch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BranchRecord {
    /// Creation order within the cluster.
    pub seq: u64,
    /// The head commit id.
    pub head: Option<String>,
    /// Direct provenance as (repo, branch).
    pub provenance: Vec<(String, String)>,
}

/// One repo.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoRecord {
    /// Creation order within the cluster.
    pub seq: u64,
    /// Creation time.
    #[serde(with = "pb")]
    pub created: Timestamp,
    /// The description.
    pub description: String,
    /// Commits by id.
    pub commits: BTreeMap<String, CommitRecord>,
    /// Branches by name.
    pub branches: BTreeMap<String, BranchRecord>,
}

/// One pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// Creation order within the cluster.
    pub seq: u64,
    /// What InspectPipeline reports.
    #[serde(with = "pb")]
    pub info: pps::PipelineInfo,
    /// Bumped by every stop/start/update so a stale delayed state change is dropped.
    pub generation: u64,
}

/// One job (recorded, never executed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// Creation order within the cluster.
    pub seq: u64,
    /// What InspectJob reports.
    #[serde(with = "pb")]
    pub info: pps::JobInfo,
}

/// A stored token (by SHA-256 of the token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `robot:x`, `pach:root`, …
    pub subject: String,
    /// `auth.TokenInfo.TokenSource`.
    pub source: i32,
    /// Expiry, epoch seconds.
    pub expiration: Option<i64>,
}

/// Auth state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthState {
    /// Whether auth is activated.
    pub active: bool,
    /// Token hash → token.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Principal → cluster roles (`auth.ClusterRole` numbers).
    pub roles: BTreeMap<String, Vec<i32>>,
    /// Repo → ACL entries (username, `auth.Scope` number), in insertion order.
    pub acls: BTreeMap<String, Vec<(String, i32)>>,
    /// The auth configuration.
    #[serde(with = "pb")]
    pub config: auth::AuthConfig,
}

/// Enterprise activation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EnterpriseState {
    /// The activation code, when active.
    pub activation_code: Option<String>,
    /// Expiry, epoch seconds.
    pub expires: Option<i64>,
}

/// Who is calling, once the token is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The subject; `None` when auth is off.
    pub subject: Option<String>,
    /// Whether the caller may do everything (auth off, or a SUPER principal).
    pub admin: bool,
}

/// A delayed pipeline state change the server must schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The pipeline.
    pub pipeline: String,
    /// The generation the change belongs to.
    pub generation: u64,
}

/// All metadata of one cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// `ClusterInfo.id`.
    pub cluster_id: String,
    /// `ClusterInfo.deployment_id` (stable across restarts).
    pub deployment_id: String,
    clock: u64,
    /// Repos by name.
    pub repos: BTreeMap<String, RepoRecord>,
    /// Pipelines by name.
    pub pipelines: BTreeMap<String, PipelineRecord>,
    /// Jobs by id.
    pub jobs: BTreeMap<String, JobRecord>,
    /// Auth.
    pub auth: AuthState,
    /// Enterprise.
    pub enterprise: EnterpriseState,
    /// Whether CreatePipeline describes the output repo it makes (the server's version
    /// decides; see `PachdVersion::describes_output_repos`).
    #[serde(skip)]
    pub describe_output_repos: bool,
}

/// Parses `master^^`, `master~2` into (base, generations back).
fn parse_ancestry(id: &str) -> (String, usize) {
    if let Some(pos) = id.find(['^', '~']) {
        let (base, rest) = id.split_at(pos);
        let mut back = 0;
        let mut chars = rest.chars().peekable();
        while let Some(ch) = chars.next() {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            let n = digits.parse::<usize>().unwrap_or(1);
            back += if ch == '~' || ch == '^' { n } else { 0 };
        }
        (base.to_owned(), back)
    } else {
        (id.to_owned(), 0)
    }
}

/// The repos (and branches) a pipeline input reads from, in order.
pub fn input_branches(input: Option<&pps::Input>) -> Vec<(String, String)> {
    fn walk(input: &pps::Input, out: &mut Vec<(String, String)>) {
        if let Some(pfs_input) = &input.pfs {
            let branch = if pfs_input.branch.is_empty() {
                "master".to_owned()
            } else {
                pfs_input.branch.clone()
            };
            out.push((pfs_input.repo.clone(), branch));
        }
        if let Some(cron) = &input.cron {
            out.push((cron.repo.clone(), "master".to_owned()));
        }
        if let Some(git) = &input.git {
            let branch = if git.branch.is_empty() {
                "master".to_owned()
            } else {
                git.branch.clone()
            };
            out.push((git.name.clone(), branch));
        }
        for child in input
            .cross
            .iter()
            .chain(&input.union)
            .chain(&input.join)
            .chain(&input.group)
        {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    if let Some(input) = input {
        walk(input, &mut out);
    }
    let mut seen = BTreeSet::new();
    out.retain(|pair| seen.insert(pair.clone()));
    out
}

/// Builds the PipelineInfo pachd stores from a CreatePipelineRequest.
pub fn pipeline_info_from_request(req: &pps::CreatePipelineRequest) -> pps::PipelineInfo {
    pps::PipelineInfo {
        // pachd 1.x never fills PipelineInfo.id (the field exists in every version's proto).
        id: String::new(),
        pipeline: req.pipeline.clone(),
        version: 1,
        transform: req.transform.clone(),
        tf_job: req.tf_job.clone(),
        parallelism_spec: req.parallelism_spec,
        hashtree_spec: req.hashtree_spec,
        egress: req.egress.clone(),
        created_at: Some(now()),
        output_branch: if req.output_branch.is_empty() {
            "master".to_owned()
        } else {
            req.output_branch.clone()
        },
        resource_requests: req.resource_requests.clone(),
        resource_limits: req.resource_limits.clone(),
        sidecar_resource_limits: req.sidecar_resource_limits.clone(),
        input: req.input.clone(),
        description: req.description.clone(),
        cache_size: if req.cache_size.is_empty() {
            "64M".to_owned()
        } else {
            req.cache_size.clone()
        },
        enable_stats: req.enable_stats,
        salt: if req.salt.is_empty() {
            new_id()
        } else {
            req.salt.clone()
        },
        max_queue_size: if req.max_queue_size == 0 {
            1
        } else {
            req.max_queue_size
        },
        service: req.service.clone(),
        spout: req.spout.clone(),
        chunk_spec: req.chunk_spec,
        datum_timeout: req.datum_timeout,
        job_timeout: req.job_timeout,
        spec_commit: req.spec_commit.clone(),
        standby: req.standby,
        datum_tries: if req.datum_tries == 0 {
            3
        } else {
            req.datum_tries
        },
        scheduling_spec: req.scheduling_spec.clone(),
        pod_spec: req.pod_spec.clone(),
        pod_patch: req.pod_patch.clone(),
        s3_out: req.s3_out,
        metadata: req.metadata.clone(),
        reprocess_spec: req.reprocess_spec.clone(),
        autoscaling: req.autoscaling,
        ..Default::default()
    }
}

/// Rebuilds the CreatePipelineRequest Extract writes from a PipelineInfo (no `update`, no
/// stopped state; `spec_commit` as stored).
pub fn request_from_pipeline_info(info: &pps::PipelineInfo) -> pps::CreatePipelineRequest {
    pps::CreatePipelineRequest {
        pipeline: info.pipeline.clone(),
        tf_job: info.tf_job.clone(),
        transform: info.transform.clone(),
        parallelism_spec: info.parallelism_spec,
        hashtree_spec: info.hashtree_spec,
        egress: info.egress.clone(),
        update: false,
        output_branch: info.output_branch.clone(),
        s3_out: info.s3_out,
        resource_requests: info.resource_requests.clone(),
        resource_limits: info.resource_limits.clone(),
        sidecar_resource_limits: info.sidecar_resource_limits.clone(),
        input: info.input.clone(),
        description: info.description.clone(),
        cache_size: info.cache_size.clone(),
        enable_stats: info.enable_stats,
        reprocess: false,
        max_queue_size: info.max_queue_size,
        service: info.service.clone(),
        spout: info.spout.clone(),
        chunk_spec: info.chunk_spec,
        datum_timeout: info.datum_timeout,
        job_timeout: info.job_timeout,
        salt: info.salt.clone(),
        standby: info.standby,
        datum_tries: info.datum_tries,
        scheduling_spec: info.scheduling_spec.clone(),
        pod_spec: info.pod_spec.clone(),
        pod_patch: info.pod_patch.clone(),
        spec_commit: info.spec_commit.clone(),
        metadata: info.metadata.clone(),
        autoscaling: info.autoscaling,
        reprocess_spec: info.reprocess_spec.clone(),
    }
}

impl State {
    /// A fresh cluster with new ids.
    pub fn new() -> State {
        State {
            cluster_id: new_id(),
            deployment_id: new_id(),
            describe_output_repos: true,
            ..State::default()
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    // ---------------------------------------------------------------- repos

    /// The repo named `name`.
    pub fn repo(&self, name: &str) -> PachdResult<&RepoRecord> {
        self.repos
            .get(name)
            .ok_or_else(|| PachdError::repo_not_found(name))
    }

    fn repo_mut(&mut self, name: &str) -> PachdResult<&mut RepoRecord> {
        self.repos
            .get_mut(name)
            .ok_or_else(|| PachdError::repo_not_found(name))
    }

    /// CreateRepo.
    pub fn create_repo(&mut self, name: &str, description: &str, update: bool) -> PachdResult<()> {
        if !valid_name(name) && name != SPEC_REPO {
            return Err(PachdError::invalid_name("repo", name));
        }
        if let Some(repo) = self.repos.get_mut(name) {
            if update {
                repo.description = description.to_owned();
                return Ok(());
            }
            return Err(PachdError::repo_exists(name));
        }
        let seq = self.tick();
        self.repos.insert(
            name.to_owned(),
            RepoRecord {
                seq,
                created: now(),
                description: description.to_owned(),
                commits: BTreeMap::new(),
                branches: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// InspectRepo.
    pub fn repo_info(&self, name: &str) -> PachdResult<pfs::RepoInfo> {
        let repo = self.repo(name)?;
        let size_bytes = repo
            .branches
            .get("master")
            .and_then(|b| b.head.as_ref())
            .and_then(|head| repo.commits.get(head))
            .map(|c| c.info.size_bytes)
            .unwrap_or(0);
        let mut branches: Vec<(&String, &BranchRecord)> = repo.branches.iter().collect();
        branches.sort_by_key(|(_, b)| std::cmp::Reverse(b.seq));
        Ok(pfs::RepoInfo {
            repo: Some(repo_msg(name)),
            created: Some(repo.created),
            size_bytes,
            description: repo.description.clone(),
            branches: branches
                .into_iter()
                .map(|(b, _)| branch_msg(name, b))
                .collect(),
            auth_info: if self.auth.active {
                Some(pfs::RepoAuthInfo {
                    access_level: auth::Scope::Owner as i32,
                })
            } else {
                None
            },
            tombstone: false,
        })
    }

    /// ListRepo: newest first, `__spec__` hidden.
    pub fn list_repos(&self) -> Vec<pfs::RepoInfo> {
        let mut names: Vec<(&String, u64)> = self
            .repos
            .iter()
            .filter(|(name, _)| name.as_str() != SPEC_REPO)
            .map(|(name, repo)| (name, repo.seq))
            .collect();
        names.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        names
            .into_iter()
            .filter_map(|(name, _)| self.repo_info(name).ok())
            .collect()
    }

    /// Repo names oldest first, including `__spec__`.
    pub fn repo_names_oldest_first(&self) -> Vec<String> {
        let mut names: Vec<(&String, u64)> = self.repos.iter().map(|(n, r)| (n, r.seq)).collect();
        names.sort_by_key(|(_, seq)| *seq);
        names.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// DeleteRepo (`all` deletes every repo).
    pub fn delete_repo(&mut self, name: &str, force: bool, all: bool) -> PachdResult<()> {
        if all {
            self.repos.clear();
            self.auth.acls.clear();
            return Ok(());
        }
        // pachd 1.9-1.13 answer OK for a repo that does not exist.
        if !self.repos.contains_key(name) {
            return Ok(());
        }
        if !force && let Some(pipeline) = self.pipelines.keys().find(|p| p.as_str() == name) {
            return Err(PachdError::unknown(format!(
                "cannot delete repo {name}: it is the output repo of pipeline {pipeline} (use force)"
            )));
        }
        self.repos.remove(name);
        self.auth.acls.remove(name);
        for repo in self.repos.values_mut() {
            for branch in repo.branches.values_mut() {
                branch.provenance.retain(|(r, _)| r != name);
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------- commits

    /// Resolves a commit reference (id, branch, `branch^`, `branch~2`) to a commit id.
    pub fn resolve_commit(&self, repo_name: &str, reference: &str) -> PachdResult<String> {
        let repo = self.repo(repo_name)?;
        let (base, back) = parse_ancestry(reference);
        let mut id = if repo.commits.contains_key(&base) {
            base.clone()
        } else if let Some(branch) = repo.branches.get(&base) {
            branch
                .head
                .clone()
                .ok_or_else(|| PachdError::commit_not_found(repo_name, reference))?
        } else {
            return Err(PachdError::commit_not_found(repo_name, reference));
        };
        for _ in 0..back {
            let parent = repo
                .commits
                .get(&id)
                .and_then(|c| c.info.parent_commit.as_ref())
                .map(|p| p.id.clone());
            id = parent.ok_or_else(|| PachdError::commit_not_found(repo_name, reference))?;
        }
        Ok(id)
    }

    /// The commit `reference` resolves to.
    pub fn commit(&self, repo_name: &str, reference: &str) -> PachdResult<&CommitRecord> {
        let id = self.resolve_commit(repo_name, reference)?;
        self.repo(repo_name)?
            .commits
            .get(&id)
            .ok_or_else(|| PachdError::commit_not_found(repo_name, reference))
    }

    fn insert_commit(&mut self, repo_name: &str, info: pfs::CommitInfo, open: Option<FileTree>) {
        let seq = self.tick();
        let id = info
            .commit
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let parent = info.parent_commit.as_ref().map(|p| p.id.clone());
        let repo = self
            .repos
            .get_mut(repo_name)
            .expect("callers check that the repo exists");
        if let Some(parent) = parent.and_then(|p| repo.commits.get_mut(&p)) {
            parent.info.child_commits.push(commit_msg(repo_name, &id));
        }
        repo.commits.insert(id, CommitRecord { seq, info, open });
    }

    fn set_head(&mut self, repo_name: &str, branch: &str, id: &str) {
        let seq = self.clock + 1;
        let repo = self
            .repos
            .get_mut(repo_name)
            .expect("callers check that the repo exists");
        let record = repo
            .branches
            .entry(branch.to_owned())
            .or_insert(BranchRecord {
                seq,
                head: None,
                provenance: Vec::new(),
            });
        record.head = Some(id.to_owned());
        if record.seq == seq {
            self.clock = seq;
        }
    }

    /// The files of a commit, if the sandbox can read its tree.
    pub fn commit_files(&self, bucket: &Bucket, record: &CommitRecord) -> Result<FileTree, String> {
        if let Some(open) = &record.open {
            return Ok(open.clone());
        }
        let info = &record.info;
        let mut objects: Vec<&str> = info.tree.iter().map(|o| o.hash.as_str()).collect();
        objects.extend(info.trees.iter().map(|o| o.hash.as_str()));
        if objects.is_empty() {
            return Ok(FileTree::default());
        }
        let mut merged = FileTree::default();
        for hash in objects {
            let bytes = match bucket.read_object(hash) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Err(format!("tree object {hash} is missing from the bucket")),
                Err(err) => return Err(format!("read tree object {hash}: {err}")),
            };
            let tree = FileTree::decode(&bytes)
                .or_else(|| hashtree::parse(&bytes))
                .ok_or_else(|| {
                    format!(
                        "commit {} has a pachd hashtree, which the ankus sandbox cannot read",
                        info.commit.as_ref().map(|c| c.id.as_str()).unwrap_or("")
                    )
                })?;
            merged.files.extend(tree.files);
        }
        Ok(merged)
    }

    /// StartCommit: a new open commit on `branch` (its head moves at once, as in pachd).
    pub fn start_commit(
        &mut self,
        bucket: &Bucket,
        repo_name: &str,
        parent_ref: &str,
        branch: &str,
        description: &str,
    ) -> PachdResult<pfs::Commit> {
        self.repo(repo_name)?;
        if !branch.is_empty() && !valid_name(branch) {
            return Err(PachdError::invalid_name("branch", branch));
        }
        let parent_id = if !parent_ref.is_empty() && parent_ref != branch {
            Some(self.resolve_commit(repo_name, parent_ref)?)
        } else if !branch.is_empty() {
            self.repo(repo_name)?
                .branches
                .get(branch)
                .and_then(|b| b.head.clone())
        } else {
            None
        };
        let base = match &parent_id {
            Some(parent) => {
                let record = &self.repo(repo_name)?.commits[parent];
                self.commit_files(bucket, record).unwrap_or_default()
            }
            None => FileTree::default(),
        };
        let id = new_id();
        let info = pfs::CommitInfo {
            commit: Some(commit_msg(repo_name, &id)),
            branch: (!branch.is_empty()).then(|| branch_msg(repo_name, branch)),
            origin: Some(pfs::CommitOrigin {
                kind: pfs::OriginKind::User as i32,
            }),
            description: description.to_owned(),
            parent_commit: parent_id.as_deref().map(|p| commit_msg(repo_name, p)),
            started: Some(now()),
            ..Default::default()
        };
        self.insert_commit(repo_name, info, Some(base));
        if !branch.is_empty() {
            self.set_head(repo_name, branch, &id);
        }
        Ok(commit_msg(repo_name, &id))
    }

    /// FinishCommit: writes the tree object and closes the commit.
    pub fn finish_commit(
        &mut self,
        bucket: &Bucket,
        repo_name: &str,
        reference: &str,
        description: &str,
    ) -> PachdResult<()> {
        let id = self.resolve_commit(repo_name, reference)?;
        let repo = self.repo_mut(repo_name)?;
        let record = repo
            .commits
            .get_mut(&id)
            .ok_or_else(|| PachdError::commit_not_found(repo_name, reference))?;
        let Some(files) = record.open.take() else {
            return Err(PachdError::commit_finished(repo_name, &id));
        };
        let tree_hash = bucket
            .put_object(&files.encode())
            .map_err(|err| PachdError::io("write commit tree", &err))?;
        record.info.tree = Some(pfs::Object { hash: tree_hash });
        record.info.size_bytes = files.size();
        record.info.finished = Some(now());
        if !description.is_empty() {
            record.info.description = description.to_owned();
        }
        Ok(())
    }

    /// BuildCommit (what Restore uses): a finished commit with the given id, tree and relations.
    /// Without `size_bytes` (1.9.0's request has no such field) the size is the tree's, as
    /// pachd 1.9.0 sets it from the tree it reads; `trees` (output commits) are taken as
    /// given, as 1.9.12+ take them with their `size_bytes`. The tree object is in `bucket`
    /// already: a dump's object ops come before its commit ops.
    pub fn build_commit(
        &mut self,
        bucket: &Bucket,
        req: &pfs::BuildCommitRequest,
    ) -> PachdResult<pfs::Commit> {
        let repo_name = commit_repo(req.parent.as_ref()).to_owned();
        self.repo(&repo_name)?;
        let id = if req.id.is_empty() {
            new_id()
        } else {
            req.id.clone()
        };
        if self.repo(&repo_name)?.commits.contains_key(&id) {
            return Err(PachdError::commit_exists(&repo_name, &id));
        }
        let parent_ref = req.parent.as_ref().map(|p| p.id.as_str()).unwrap_or("");
        let parent_id = if parent_ref.is_empty() {
            None
        } else {
            Some(self.resolve_commit(&repo_name, parent_ref)?)
        };
        for prov in &req.provenance {
            let prov_repo = commit_repo(prov.commit.as_ref());
            let prov_id = prov.commit.as_ref().map(|c| c.id.as_str()).unwrap_or("");
            self.resolve_commit(prov_repo, prov_id)?;
        }
        // pachd (every 1.x): a tree-less commit on a branch with provenance other than the
        // spec repo is refused, unless the commit itself comes from pps (spec provenance).
        let output_branch = (self.repo(&repo_name)?.branches.get(&req.branch))
            .is_some_and(|branch| branch.provenance.iter().any(|(repo, _)| repo != SPEC_REPO));
        let from_pps =
            (req.provenance.iter()).any(|prov| commit_repo(prov.commit.as_ref()) == SPEC_REPO);
        if output_branch && req.tree.is_none() && req.trees.is_empty() && !from_pps {
            return Err(PachdError::unknown(
                "cannot start a commit on an output branch",
            ));
        }
        let started = req.started.or_else(|| Some(now()));
        let size_bytes = match &req.tree {
            Some(tree) if req.size_bytes == 0 => tree_size(bucket, &tree.hash),
            _ => req.size_bytes,
        };
        let info = pfs::CommitInfo {
            commit: Some(commit_msg(&repo_name, &id)),
            branch: (!req.branch.is_empty()).then(|| branch_msg(&repo_name, &req.branch)),
            // Every pachd 1.9–1.13 makes a commit without an origin a user commit.
            origin: req.origin.or(Some(pfs::CommitOrigin {
                kind: pfs::OriginKind::User as i32,
            })),
            parent_commit: parent_id.as_deref().map(|p| commit_msg(&repo_name, p)),
            started,
            finished: req.finished.or(started),
            size_bytes,
            provenance: req.provenance.clone(),
            tree: req.tree.clone(),
            trees: req.trees.clone(),
            datums: req.datums.clone(),
            ..Default::default()
        };
        self.insert_commit(&repo_name, info, None);
        if !req.branch.is_empty() {
            self.set_head(&repo_name, &req.branch, &id);
        }
        Ok(commit_msg(&repo_name, &id))
    }

    /// InspectCommit.
    pub fn commit_info(&self, repo_name: &str, reference: &str) -> PachdResult<pfs::CommitInfo> {
        Ok(self.commit(repo_name, reference)?.info.clone())
    }

    /// ListCommit: newest first (oldest first with `reverse`).
    pub fn list_commits(
        &self,
        repo_name: &str,
        from: Option<&str>,
        to: Option<&str>,
        number: u64,
        reverse: bool,
    ) -> PachdResult<Vec<pfs::CommitInfo>> {
        let repo = self.repo(repo_name)?;
        let from_id = match from.filter(|f| !f.is_empty()) {
            Some(f) => Some(self.resolve_commit(repo_name, f)?),
            None => None,
        };
        let mut records: Vec<&CommitRecord> = match to.filter(|t| !t.is_empty()) {
            Some(to) => {
                let mut out = Vec::new();
                let mut cursor = Some(self.resolve_commit(repo_name, to)?);
                while let Some(id) = cursor {
                    if Some(&id) == from_id.as_ref() {
                        break;
                    }
                    let Some(record) = repo.commits.get(&id) else {
                        break;
                    };
                    out.push(record);
                    cursor = record.info.parent_commit.as_ref().map(|p| p.id.clone());
                }
                out
            }
            None => {
                let floor = from_id
                    .as_ref()
                    .and_then(|f| repo.commits.get(f))
                    .map(|r| r.seq)
                    .unwrap_or(0);
                let mut all: Vec<&CommitRecord> =
                    repo.commits.values().filter(|c| c.seq > floor).collect();
                all.sort_by_key(|c| std::cmp::Reverse(c.seq));
                all
            }
        };
        if number > 0 {
            records.truncate(usize::try_from(number).unwrap_or(usize::MAX));
        }
        if reverse {
            records.reverse();
        }
        Ok(records.into_iter().map(|r| r.info.clone()).collect())
    }

    /// Every commit of the cluster, oldest first (Extract's order).
    pub fn all_commits_oldest_first(&self) -> Vec<(String, &CommitRecord)> {
        let mut all: Vec<(String, &CommitRecord)> = self
            .repos
            .iter()
            .flat_map(|(name, repo)| repo.commits.values().map(move |c| (name.clone(), c)))
            .collect();
        all.sort_by_key(|(_, c)| c.seq);
        all
    }

    /// DeleteCommit: removes the commit; its children move to its parent, and branch heads on
    /// it move to its parent.
    pub fn delete_commit(&mut self, repo_name: &str, reference: &str) -> PachdResult<()> {
        let id = self.resolve_commit(repo_name, reference)?;
        let repo = self.repo_mut(repo_name)?;
        let record = repo
            .commits
            .remove(&id)
            .ok_or_else(|| PachdError::commit_not_found(repo_name, reference))?;
        let parent = record.info.parent_commit.clone();
        for commit in repo.commits.values_mut() {
            if commit.info.parent_commit.as_ref().map(|p| p.id.as_str()) == Some(id.as_str()) {
                commit.info.parent_commit = parent.clone();
            }
            commit.info.child_commits.retain(|c| c.id != id);
        }
        if let Some(parent_id) = parent.as_ref().map(|p| p.id.clone()) {
            let children: Vec<pfs::Commit> = record.info.child_commits.clone();
            if let Some(parent_record) = repo.commits.get_mut(&parent_id) {
                parent_record.info.child_commits.extend(children);
            }
        }
        for branch in repo.branches.values_mut() {
            if branch.head.as_deref() == Some(id.as_str()) {
                branch.head = parent.as_ref().map(|p| p.id.clone());
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------- branches

    /// CreateBranch (an upsert: moves the head and replaces the provenance). Missing
    /// provenance branches are created empty, as pachd's upsert does.
    pub fn create_branch(
        &mut self,
        repo_name: &str,
        branch: &str,
        head: Option<&pfs::Commit>,
        provenance: &[pfs::Branch],
    ) -> PachdResult<()> {
        self.repo(repo_name)?;
        if !valid_name(branch) {
            return Err(PachdError::invalid_name("branch", branch));
        }
        let head_id = match head.filter(|h| !h.id.is_empty()) {
            Some(head) => {
                let head_repo = commit_repo(Some(head));
                let head_repo = if head_repo.is_empty() {
                    repo_name
                } else {
                    head_repo
                };
                if head_repo != repo_name {
                    return Err(PachdError::unknown(format!(
                        "branch {branch} in repo {repo_name} cannot have a head in repo {head_repo}"
                    )));
                }
                Some(self.resolve_commit(repo_name, &head.id)?)
            }
            None => None,
        };
        let mut prov = Vec::new();
        for p in provenance {
            let p_repo = branch_repo(Some(p)).to_owned();
            self.repo(&p_repo)?;
            if p_repo == repo_name && p.name == branch {
                return Err(PachdError::unknown(format!(
                    "branch {repo_name}@{branch} cannot be in its own provenance"
                )));
            }
            prov.push((p_repo, p.name.clone()));
        }
        for (p_repo, p_branch) in &prov {
            let seq = self.tick();
            self.repos
                .get_mut(p_repo)
                .expect("checked above")
                .branches
                .entry(p_branch.clone())
                .or_insert(BranchRecord {
                    seq,
                    head: None,
                    provenance: Vec::new(),
                });
        }
        let seq = self.tick();
        let repo = self.repo_mut(repo_name)?;
        let record = repo
            .branches
            .entry(branch.to_owned())
            .or_insert(BranchRecord {
                seq,
                head: None,
                provenance: Vec::new(),
            });
        if head_id.is_some() {
            record.head = head_id;
        }
        record.provenance = prov;
        Ok(())
    }

    fn full_provenance(&self, repo_name: &str, branch: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut stack = vec![(repo_name.to_owned(), branch.to_owned())];
        while let Some((r, b)) = stack.pop() {
            let Some(record) = self.repos.get(&r).and_then(|repo| repo.branches.get(&b)) else {
                continue;
            };
            for p in &record.provenance {
                if !out.contains(p) {
                    out.push(p.clone());
                    stack.push(p.clone());
                }
            }
        }
        out
    }

    /// InspectBranch.
    pub fn branch_info(&self, repo_name: &str, branch: &str) -> PachdResult<pfs::BranchInfo> {
        let repo = self.repo(repo_name)?;
        let record = repo
            .branches
            .get(branch)
            .ok_or_else(|| PachdError::branch_not_found(repo_name, branch))?;
        let subvenance: Vec<pfs::Branch> = self
            .repos
            .iter()
            .flat_map(|(r, repo)| repo.branches.keys().map(move |b| (r.clone(), b.clone())))
            .filter(|(r, b)| {
                self.full_provenance(r, b)
                    .contains(&(repo_name.to_owned(), branch.to_owned()))
            })
            .map(|(r, b)| branch_msg(&r, &b))
            .collect();
        Ok(pfs::BranchInfo {
            branch: Some(branch_msg(repo_name, branch)),
            head: record.head.as_deref().map(|h| commit_msg(repo_name, h)),
            provenance: self
                .full_provenance(repo_name, branch)
                .iter()
                .map(|(r, b)| branch_msg(r, b))
                .collect(),
            subvenance,
            direct_provenance: record
                .provenance
                .iter()
                .map(|(r, b)| branch_msg(r, b))
                .collect(),
            trigger: None,
            name: branch.to_owned(),
        })
    }

    /// ListBranch: newest first (oldest first with `reverse`).
    pub fn list_branches(
        &self,
        repo_name: &str,
        reverse: bool,
    ) -> PachdResult<Vec<pfs::BranchInfo>> {
        let repo = self.repo(repo_name)?;
        let mut names: Vec<(&String, u64)> =
            repo.branches.iter().map(|(n, b)| (n, b.seq)).collect();
        names.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        if reverse {
            names.reverse();
        }
        names
            .into_iter()
            .map(|(n, _)| self.branch_info(repo_name, n))
            .collect()
    }

    /// Every branch of the cluster in creation order (Extract's order).
    pub fn all_branches_in_order(&self) -> Vec<(String, String, &BranchRecord)> {
        let mut all: Vec<(String, String, &BranchRecord)> = self
            .repos
            .iter()
            .flat_map(|(r, repo)| {
                repo.branches
                    .iter()
                    .map(move |(b, record)| (r.clone(), b.clone(), record))
            })
            .collect();
        all.sort_by_key(|(_, _, record)| record.seq);
        all
    }

    /// DeleteBranch.
    pub fn delete_branch(&mut self, repo_name: &str, branch: &str) -> PachdResult<()> {
        let repo = self.repo_mut(repo_name)?;
        repo.branches
            .remove(branch)
            .ok_or_else(|| PachdError::branch_not_found(repo_name, branch))?;
        Ok(())
    }

    // ---------------------------------------------------------------- files

    /// Where a write to `reference` goes: an open commit id, or a branch that needs a
    /// commit of its own (`None`).
    pub fn open_commit_for_write(
        &self,
        repo_name: &str,
        reference: &str,
    ) -> PachdResult<Option<String>> {
        let repo = self.repo(repo_name)?;
        if let Some(record) = repo.commits.get(reference) {
            if record.open.is_none() {
                return Err(PachdError::commit_finished(repo_name, reference));
            }
            return Ok(Some(reference.to_owned()));
        }
        if let Some(branch) = repo.branches.get(reference) {
            if let Some(head) = &branch.head
                && repo.commits.get(head).is_some_and(|c| c.open.is_some())
            {
                return Ok(Some(head.clone()));
            }
            return Ok(None);
        }
        if valid_name(reference) {
            return Ok(None);
        }
        Err(PachdError::commit_not_found(repo_name, reference))
    }

    /// Writes (appends to, or with `overwrite_index` truncates then appends to) a file of an
    /// open commit, or deletes it.
    pub fn write_file(
        &mut self,
        repo_name: &str,
        id: &str,
        path: &str,
        object: Option<(String, u64)>,
        overwrite_index: Option<i64>,
        delete: bool,
    ) -> PachdResult<()> {
        let repo = self.repo_mut(repo_name)?;
        let record = repo
            .commits
            .get_mut(id)
            .ok_or_else(|| PachdError::commit_not_found(repo_name, id))?;
        let Some(files) = record.open.as_mut() else {
            return Err(PachdError::commit_finished(repo_name, id));
        };
        let path = clean_path(path);
        if path == "/" {
            return Err(PachdError::unknown(
                "cannot put a file at the root path \"/\"",
            ));
        }
        if delete {
            let prefix = format!("{path}/");
            files
                .files
                .retain(|p, _| p != &path && !p.starts_with(&prefix));
            return Ok(());
        }
        let entry = files.files.entry(path).or_insert_with(FileEntry::default);
        // Per-object sizes are not kept, so any overwrite index replaces the whole file
        // (python-pachyderm and pachctl only ever send index 0).
        if overwrite_index.is_some() {
            entry.objects.clear();
            entry.size = 0;
        }
        if let Some((hash, size)) = object {
            entry.objects.push(hash);
            entry.size += size;
        }
        Ok(())
    }

    // ------------------------------------------------------------ pipelines

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> PachdResult<&PipelineRecord> {
        self.pipelines
            .get(name)
            .ok_or_else(|| PachdError::pipeline_not_found(name))
    }

    /// Writes a spec commit to `__spec__@<pipeline>` holding `/spec` = the PipelineInfo.
    fn write_spec_commit(
        &mut self,
        bucket: &Bucket,
        info: &pps::PipelineInfo,
    ) -> PachdResult<pfs::Commit> {
        let name = info
            .pipeline
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if !self.repos.contains_key(SPEC_REPO) {
            self.create_repo(SPEC_REPO, "", false)?;
        }
        let spec_bytes = info.encode_to_vec();
        let object = bucket
            .put_object(&spec_bytes)
            .map_err(|err| PachdError::io("write pipeline spec", &err))?;
        let commit = self.start_commit(bucket, SPEC_REPO, "", &name, "")?;
        self.write_file(
            SPEC_REPO,
            &commit.id,
            "/spec",
            Some((object, spec_bytes.len() as u64)),
            Some(0),
            false,
        )?;
        self.finish_commit(bucket, SPEC_REPO, &commit.id, "")?;
        Ok(commit)
    }

    /// Reads the PipelineInfo in a spec commit written by the sandbox.
    fn read_spec(&self, bucket: &Bucket, id: &str) -> Option<pps::PipelineInfo> {
        let record = self.repos.get(SPEC_REPO)?.commits.get(id)?;
        let files = self.commit_files(bucket, record).ok()?;
        let entry = files.files.get("/spec")?;
        let mut bytes = Vec::new();
        for hash in &entry.objects {
            bytes.extend(bucket.read_object(hash).ok()??);
        }
        pps::PipelineInfo::decode(bytes.as_slice()).ok()
    }

    fn output_provenance(&self, info: &pps::PipelineInfo) -> Vec<pfs::Branch> {
        let name = info
            .pipeline
            .as_ref()
            .map(|p| p.name.as_str())
            .unwrap_or("");
        let mut prov: Vec<pfs::Branch> = input_branches(info.input.as_ref())
            .iter()
            .map(|(r, b)| branch_msg(r, b))
            .collect();
        prov.push(branch_msg(SPEC_REPO, name));
        prov
    }

    /// CreatePipeline. Returns the state change to schedule.
    pub fn create_pipeline(
        &mut self,
        bucket: &Bucket,
        req: &pps::CreatePipelineRequest,
    ) -> PachdResult<Transition> {
        let name = req
            .pipeline
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(PachdError::invalid(
                "invalid pipeline spec: request.Pipeline cannot be nil",
            ));
        }
        if !valid_name(&name) {
            return Err(PachdError::invalid_name("pipeline", &name));
        }
        if req.transform.is_none() && req.spec_commit.is_none() {
            return Err(PachdError::unknown(
                "invalid pipeline spec: request.Transform cannot be nil",
            ));
        }
        let existing = self.pipelines.get(&name).cloned();
        if existing.is_some() && !req.update {
            return Err(PachdError::pipeline_exists(&name));
        }
        for (repo, _) in input_branches(req.input.as_ref()) {
            if repo == name {
                return Err(PachdError::unknown(format!(
                    "pipeline {name} cannot take its own output repo as input"
                )));
            }
            let is_cron_or_git = req.input.as_ref().is_some_and(|input| {
                let mut found = false;
                fn walk(i: &pps::Input, repo: &str, found: &mut bool) {
                    if i.cron.as_ref().is_some_and(|c| c.repo == repo)
                        || i.git.as_ref().is_some_and(|g| g.name == repo)
                    {
                        *found = true;
                    }
                    for c in i
                        .cross
                        .iter()
                        .chain(&i.union)
                        .chain(&i.join)
                        .chain(&i.group)
                    {
                        walk(c, repo, found);
                    }
                }
                walk(input, &repo, &mut found);
                found
            });
            if !self.repos.contains_key(&repo) {
                if is_cron_or_git {
                    self.create_repo(&repo, "", false)?;
                } else {
                    return Err(PachdError::repo_not_found(&repo));
                }
            }
        }
        let mut info = pipeline_info_from_request(req);
        let mut stopped = existing.as_ref().is_some_and(|e| e.info.stopped);
        if let Some(spec_commit) = &req.spec_commit {
            let spec_id = spec_commit.id.clone();
            self.resolve_commit(SPEC_REPO, &spec_id)?;
            if let Some(spec) = self.read_spec(bucket, &spec_id) {
                stopped = spec.stopped;
                info.version = spec.version.max(1);
                if spec.created_at.is_some() {
                    info.created_at = spec.created_at;
                }
            }
            info.spec_commit = Some(commit_msg(SPEC_REPO, &spec_id));
        } else {
            if let Some(old) = &existing {
                info.version = old.info.version + 1;
                info.created_at = old.info.created_at;
                if !req.reprocess && req.salt.is_empty() {
                    info.salt = old.info.salt.clone();
                }
            }
            info.stopped = stopped;
            info.spec_commit = None;
            let spec_commit = self.write_spec_commit(bucket, &info)?;
            info.spec_commit = Some(spec_commit);
        }
        info.stopped = stopped;
        if !self.repos.contains_key(&name) {
            let description = if self.describe_output_repos {
                format!("Output repo for pipeline {name}.")
            } else {
                String::new()
            };
            self.create_repo(&name, &description, false)?;
        }
        let output_branch = info.output_branch.clone();
        let output_exists = self.repos[&name].branches.contains_key(&output_branch);
        if req.spec_commit.is_none() || !output_exists {
            let prov = if stopped {
                Vec::new()
            } else {
                self.output_provenance(&info)
            };
            self.create_branch(&name, &output_branch, None, &prov)?;
            if info.enable_stats && !self.repos[&name].branches.contains_key("stats") {
                self.create_branch(&name, "stats", None, &[branch_msg(&name, &output_branch)])?;
            }
        }
        let seq = self.tick();
        let generation = existing.as_ref().map(|e| e.generation + 1).unwrap_or(1);
        info.state = pps::PipelineState::PipelineStarting as i32;
        if let Some(old) = &existing {
            info.job_counts = old.info.job_counts.clone();
            info.last_job_state = old.info.last_job_state;
        }
        let seq = existing.as_ref().map(|e| e.seq).unwrap_or(seq);
        self.pipelines.insert(
            name.clone(),
            PipelineRecord {
                seq,
                info,
                generation,
            },
        );
        Ok(Transition {
            pipeline: name,
            generation,
        })
    }

    /// Applies a delayed state change: PAUSED when stopped, RUNNING otherwise. Returns whether
    /// the pipeline now runs, or `None` when the change is stale.
    pub fn settle_pipeline(&mut self, transition: &Transition) -> Option<bool> {
        let record = self.pipelines.get_mut(&transition.pipeline)?;
        if record.generation != transition.generation {
            return None;
        }
        let running = !record.info.stopped;
        record.info.state = if running {
            pps::PipelineState::PipelineRunning as i32
        } else {
            pps::PipelineState::PipelinePaused as i32
        };
        Some(running)
    }

    /// InspectPipeline.
    pub fn pipeline_info(&self, name: &str) -> PachdResult<pps::PipelineInfo> {
        let record = self.pipeline(name)?;
        let mut info = record.info.clone();
        info.job_counts = self.job_counts(name);
        Ok(info)
    }

    fn job_counts(&self, pipeline: &str) -> std::collections::HashMap<i32, i32> {
        let mut counts = std::collections::HashMap::new();
        for job in self.jobs.values() {
            if job.info.pipeline.as_ref().map(|p| p.name.as_str()) == Some(pipeline) {
                *counts.entry(job.info.state).or_insert(0) += 1;
            }
        }
        counts
    }

    /// ListPipeline: newest first.
    pub fn list_pipelines(&self, filter: Option<&str>) -> PachdResult<Vec<pps::PipelineInfo>> {
        if let Some(name) = filter.filter(|n| !n.is_empty()) {
            return Ok(vec![self.pipeline_info(name)?]);
        }
        let mut records: Vec<(&String, u64)> =
            self.pipelines.iter().map(|(n, p)| (n, p.seq)).collect();
        records.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        records
            .into_iter()
            .map(|(n, _)| self.pipeline_info(n))
            .collect()
    }

    /// Pipelines in dependency order (producers first), for Extract.
    pub fn pipelines_in_dependency_order(&self) -> Vec<String> {
        let mut ordered: Vec<String> = Vec::new();
        let mut by_seq: Vec<(&String, u64)> =
            self.pipelines.iter().map(|(n, p)| (n, p.seq)).collect();
        by_seq.sort_by_key(|(_, seq)| *seq);
        let names: Vec<String> = by_seq.into_iter().map(|(n, _)| n.clone()).collect();
        fn visit(
            state: &State,
            name: &str,
            ordered: &mut Vec<String>,
            visiting: &mut BTreeSet<String>,
        ) {
            if ordered.iter().any(|o| o == name) || !visiting.insert(name.to_owned()) {
                return;
            }
            if let Some(record) = state.pipelines.get(name) {
                for (repo, _) in input_branches(record.info.input.as_ref()) {
                    if state.pipelines.contains_key(&repo) {
                        visit(state, &repo, ordered, visiting);
                    }
                }
            }
            ordered.push(name.to_owned());
        }
        let mut visiting = BTreeSet::new();
        for name in &names {
            visit(self, name, &mut ordered, &mut visiting);
        }
        ordered
    }

    /// StopPipeline: `stopped` at once, the output branch loses its provenance, a new spec
    /// commit is written; PAUSED follows asynchronously.
    pub fn stop_pipeline(&mut self, bucket: &Bucket, name: &str) -> PachdResult<Transition> {
        self.set_stopped(bucket, name, true)
    }

    /// StartPipeline: the mirror of [`State::stop_pipeline`]; RUNNING follows asynchronously.
    pub fn start_pipeline(&mut self, bucket: &Bucket, name: &str) -> PachdResult<Transition> {
        self.set_stopped(bucket, name, false)
    }

    fn set_stopped(
        &mut self,
        bucket: &Bucket,
        name: &str,
        stopped: bool,
    ) -> PachdResult<Transition> {
        let mut info = self.pipeline(name)?.info.clone();
        info.stopped = stopped;
        let prov = if stopped {
            Vec::new()
        } else {
            self.output_provenance(&info)
        };
        let output_branch = info.output_branch.clone();
        if self.repos.contains_key(name) {
            self.create_branch(name, &output_branch, None, &prov)?;
        }
        let mut spec = info.clone();
        spec.state = 0;
        spec.spec_commit = None;
        let spec_commit = self.write_spec_commit(bucket, &spec)?;
        info.spec_commit = Some(spec_commit);
        let record = self.pipelines.get_mut(name).expect("checked above");
        record.info = info;
        record.generation += 1;
        Ok(Transition {
            pipeline: name.to_owned(),
            generation: record.generation,
        })
    }

    /// DeletePipeline (or all of them).
    pub fn delete_pipeline(&mut self, name: &str, all: bool, keep_repo: bool) -> PachdResult<()> {
        let names: Vec<String> = if all {
            self.pipelines.keys().cloned().collect()
        } else {
            self.pipeline(name)?;
            vec![name.to_owned()]
        };
        for name in names {
            self.pipelines.remove(&name);
            self.jobs.retain(|_, j| {
                j.info.pipeline.as_ref().map(|p| p.name.as_str()) != Some(name.as_str())
            });
            if let Some(spec) = self.repos.get_mut(SPEC_REPO) {
                spec.branches.remove(&name);
            }
            if !keep_repo {
                self.repos.remove(&name);
                self.auth.acls.remove(&name);
                for repo in self.repos.values_mut() {
                    for branch in repo.branches.values_mut() {
                        branch.provenance.retain(|(r, _)| r != &name);
                    }
                }
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------- jobs

    /// CreateJob: records a job (never executed). A job for an output commit that already has
    /// one is refused with "already exists", so a repeated restore does not duplicate jobs.
    pub fn create_job(&mut self, req: &pps::CreateJobRequest) -> PachdResult<pps::Job> {
        let pipeline_name = req
            .pipeline
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let pipeline = self.pipeline(&pipeline_name)?.info.clone();
        if let Some(output) = &req.output_commit {
            let repo = commit_repo(Some(output));
            self.resolve_commit(repo, &output.id)?;
            if self.jobs.values().any(|j| {
                j.info.output_commit.as_ref().map(|c| c.id.as_str()) == Some(output.id.as_str())
            }) {
                return Err(PachdError::unknown(format!(
                    "job with output commit {} already exists",
                    output.id
                )));
            }
        }
        let id = new_id();
        let info = pps::JobInfo {
            job: Some(pps::Job { id: id.clone() }),
            transform: pipeline.transform.clone(),
            pipeline: req.pipeline.clone(),
            pipeline_version: pipeline.version,
            spec_commit: pipeline.spec_commit.clone(),
            parallelism_spec: pipeline.parallelism_spec,
            egress: pipeline.egress.clone(),
            started: req.started.or_else(|| Some(now())),
            finished: req.finished,
            output_commit: req.output_commit.clone(),
            state: req.state,
            reason: req.reason.clone(),
            service: pipeline.service.clone(),
            spout: pipeline.spout.clone(),
            output_repo: Some(repo_msg(&pipeline_name)),
            output_branch: pipeline.output_branch.clone(),
            restart: req.restart,
            data_processed: req.data_processed,
            data_skipped: req.data_skipped,
            data_failed: req.data_failed,
            data_recovered: req.data_recovered,
            data_total: req.data_total,
            stats: req.stats,
            resource_requests: pipeline.resource_requests.clone(),
            resource_limits: pipeline.resource_limits.clone(),
            sidecar_resource_limits: pipeline.sidecar_resource_limits.clone(),
            input: pipeline.input.clone(),
            stats_commit: req.stats_commit.clone(),
            enable_stats: pipeline.enable_stats,
            salt: pipeline.salt.clone(),
            chunk_spec: pipeline.chunk_spec,
            datum_timeout: pipeline.datum_timeout,
            job_timeout: pipeline.job_timeout,
            datum_tries: pipeline.datum_tries,
            scheduling_spec: pipeline.scheduling_spec.clone(),
            pod_spec: pipeline.pod_spec.clone(),
            pod_patch: pipeline.pod_patch.clone(),
            ..Default::default()
        };
        let seq = self.tick();
        if let Some(record) = self.pipelines.get_mut(&pipeline_name) {
            record.info.last_job_state = req.state;
        }
        self.jobs.insert(id.clone(), JobRecord { seq, info });
        Ok(pps::Job { id })
    }

    /// InspectJob by id or output commit.
    pub fn job_info(
        &self,
        id: &str,
        output_commit: Option<&pfs::Commit>,
    ) -> PachdResult<pps::JobInfo> {
        if !id.is_empty() {
            return self
                .jobs
                .get(id)
                .map(|j| j.info.clone())
                .ok_or_else(|| PachdError::job_not_found(id));
        }
        let Some(output) = output_commit else {
            return Err(PachdError::invalid(
                "must specify either a job or an output commit",
            ));
        };
        self.jobs
            .values()
            .find(|j| {
                j.info.output_commit.as_ref().map(|c| c.id.as_str()) == Some(output.id.as_str())
            })
            .map(|j| j.info.clone())
            .ok_or_else(|| {
                PachdError::unknown(format!("job with output commit {} not found", output.id))
            })
    }

    /// ListJob: newest first.
    pub fn list_jobs(
        &self,
        pipeline: Option<&str>,
        output_commit: Option<&pfs::Commit>,
    ) -> PachdResult<Vec<pps::JobInfo>> {
        if let Some(name) = pipeline.filter(|n| !n.is_empty()) {
            self.pipeline(name)?;
        }
        let mut jobs: Vec<&JobRecord> = self
            .jobs
            .values()
            .filter(|j| {
                pipeline.filter(|n| !n.is_empty()).is_none_or(|name| {
                    j.info.pipeline.as_ref().map(|p| p.name.as_str()) == Some(name)
                })
            })
            .filter(|j| {
                output_commit.is_none_or(|o| {
                    j.info.output_commit.as_ref().map(|c| c.id.as_str()) == Some(o.id.as_str())
                })
            })
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.seq));
        Ok(jobs.into_iter().map(|j| j.info.clone()).collect())
    }

    /// Updates a job's state (UpdateJobState, StopJob).
    pub fn update_job(&mut self, id: &str, state: i32, reason: &str) -> PachdResult<()> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| PachdError::job_not_found(id))?;
        job.info.state = state;
        job.info.reason = reason.to_owned();
        if job.info.finished.is_none() && state != pps::JobState::JobRunning as i32 {
            job.info.finished = Some(now());
        }
        Ok(())
    }

    /// DeleteJob.
    pub fn delete_job(&mut self, id: &str) -> PachdResult<()> {
        self.jobs
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| PachdError::job_not_found(id))
    }

    // ----------------------------------------------------------------- auth

    /// Checks the caller's token (auth off: everyone is an anonymous admin).
    pub fn caller(&self, token: Option<&str>) -> PachdResult<Caller> {
        if !self.auth.active {
            return Ok(Caller {
                subject: None,
                admin: true,
            });
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(PachdError::not_signed_in)?;
        let record = self
            .auth
            .tokens
            .get(&token_hash(token))
            .ok_or_else(PachdError::bad_token)?;
        if record
            .expiration
            .is_some_and(|exp| exp < jiff::Timestamp::now().as_second())
        {
            return Err(PachdError::bad_token());
        }
        Ok(Caller {
            subject: Some(record.subject.clone()),
            admin: self.is_super(&record.subject),
        })
    }

    fn is_super(&self, principal: &str) -> bool {
        self.auth
            .roles
            .get(principal)
            .is_some_and(|roles| roles.contains(&(auth::ClusterRole::Super as i32)))
    }

    /// Whether enterprise is active.
    pub fn enterprise_active(&self) -> bool {
        self.enterprise.activation_code.is_some()
            && self
                .enterprise
                .expires
                .is_none_or(|exp| exp > jiff::Timestamp::now().as_second())
    }

    /// auth.Activate. With `root_token` (restore's `activate_auth`), that token becomes
    /// `pach:root`'s; otherwise a new token is made for `subject` (default `pach:root`).
    pub fn activate_auth(&mut self, subject: &str, root_token: &str) -> PachdResult<String> {
        if !self.enterprise_active() {
            return Err(PachdError::unknown(
                "Pachyderm Enterprise is not active in this cluster, and the Pachyderm auth API is an Enterprise-level feature",
            ));
        }
        if self.auth.active {
            return Err(PachdError::unknown("already activated"));
        }
        let principal = if !root_token.is_empty() || subject.is_empty() {
            "pach:root".to_owned()
        } else if subject.contains(':') {
            subject.to_owned()
        } else {
            format!("github:{subject}")
        };
        let token = if root_token.is_empty() {
            new_id()
        } else {
            root_token.to_owned()
        };
        self.auth.active = true;
        self.auth.tokens.insert(
            token_hash(&token),
            TokenRecord {
                subject: principal.clone(),
                source: auth::token_info::TokenSource::Authenticate as i32,
                expiration: None,
            },
        );
        self.auth
            .roles
            .insert(principal, vec![auth::ClusterRole::Super as i32]);
        Ok(token)
    }

    /// auth.Deactivate: forgets every token, binding and ACL.
    pub fn deactivate_auth(&mut self) -> PachdResult<()> {
        if !self.auth.active {
            return Err(PachdError::auth_not_activated());
        }
        self.auth = AuthState::default();
        Ok(())
    }

    fn require_active(&self) -> PachdResult<()> {
        if self.auth.active {
            Ok(())
        } else {
            Err(PachdError::auth_not_activated())
        }
    }

    /// auth.WhoAmI.
    pub fn who_am_i(&self, token: Option<&str>) -> PachdResult<auth::WhoAmIResponse> {
        self.require_active()?;
        let caller = self.caller(token)?;
        let subject = caller.subject.unwrap_or_default();
        Ok(auth::WhoAmIResponse {
            is_admin: self.is_super(&subject),
            cluster_roles: Some(auth::ClusterRoles {
                roles: self.auth.roles.get(&subject).cloned().unwrap_or_default(),
            }),
            username: subject,
            ttl: 0,
        })
    }

    /// auth.GetAdmins: every SUPER principal.
    pub fn admins(&self, token: Option<&str>) -> PachdResult<Vec<String>> {
        self.require_active()?;
        self.caller(token)?;
        Ok(self
            .auth
            .roles
            .iter()
            .filter(|(_, roles)| roles.contains(&(auth::ClusterRole::Super as i32)))
            .map(|(p, _)| p.clone())
            .collect())
    }

    /// auth.ModifyClusterRoleBinding (empty roles remove the binding).
    pub fn set_role_binding(&mut self, principal: &str, roles: Vec<i32>) -> PachdResult<()> {
        self.require_active()?;
        if roles.is_empty() {
            self.auth.roles.remove(principal);
        } else {
            self.auth.roles.insert(principal.to_owned(), roles);
        }
        Ok(())
    }

    /// auth.SetACL (replaces the repo's entries; NONE entries are dropped).
    pub fn set_acl(&mut self, repo: &str, entries: &[auth::AclEntry]) -> PachdResult<()> {
        self.require_active()?;
        self.repo(repo)?;
        self.auth.acls.insert(
            repo.to_owned(),
            entries
                .iter()
                .filter(|e| e.scope != auth::Scope::None as i32)
                .map(|e| (e.username.clone(), e.scope))
                .collect(),
        );
        Ok(())
    }

    /// auth.GetACL: robot entries are reported separately, as pachd does.
    pub fn acl(&self, repo: &str) -> PachdResult<auth::GetAclResponse> {
        self.require_active()?;
        self.repo(repo)?;
        let mut response = auth::GetAclResponse::default();
        for (username, scope) in self.auth.acls.get(repo).into_iter().flatten() {
            let entry = auth::AclEntry {
                username: username.clone(),
                scope: *scope,
            };
            if username.starts_with("robot:") {
                response.robot_entries.push(entry);
            } else {
                response.entries.push(entry);
            }
        }
        Ok(response)
    }

    /// auth.RestoreAuthToken.
    pub fn restore_token(&mut self, token: &auth::HashedAuthToken) -> PachdResult<()> {
        self.require_active()?;
        let info = token.token_info.clone().unwrap_or_default();
        self.auth.tokens.insert(
            token.hashed_token.clone(),
            TokenRecord {
                subject: info.subject,
                source: info.source,
                expiration: token.expiration.map(|e| e.seconds),
            },
        );
        Ok(())
    }

    /// auth.ExtractAuthTokens: robot tokens (pach:root is recreated by `activate_auth`).
    pub fn extract_tokens(&self) -> PachdResult<Vec<auth::HashedAuthToken>> {
        self.require_active()?;
        Ok(self
            .auth
            .tokens
            .iter()
            .filter(|(_, t)| t.subject != "pach:root")
            .map(|(hash, t)| auth::HashedAuthToken {
                hashed_token: hash.clone(),
                token_info: Some(auth::TokenInfo {
                    subject: t.subject.clone(),
                    source: t.source,
                }),
                expiration: t.expiration.map(|seconds| Timestamp { seconds, nanos: 0 }),
            })
            .collect())
    }

    /// auth.GetAuthToken: a new token for `subject`.
    pub fn new_token(&mut self, subject: &str, ttl: i64) -> PachdResult<String> {
        self.require_active()?;
        let token = new_id();
        self.auth.tokens.insert(
            token_hash(&token),
            TokenRecord {
                subject: subject.to_owned(),
                source: auth::token_info::TokenSource::GetToken as i32,
                expiration: (ttl > 0).then(|| jiff::Timestamp::now().as_second() + ttl),
            },
        );
        Ok(token)
    }

    // ----------------------------------------------------------- enterprise

    /// enterprise.Activate (any non-empty code is accepted).
    pub fn activate_enterprise(
        &mut self,
        code: &str,
        expires: Option<Timestamp>,
    ) -> PachdResult<Timestamp> {
        if code.is_empty() {
            return Err(PachdError::unknown("activation code is empty"));
        }
        let expires = expires
            .map(|e| e.seconds)
            .unwrap_or_else(|| jiff::Timestamp::now().as_second() + 10 * 365 * 24 * 3600);
        self.enterprise = EnterpriseState {
            activation_code: Some(code.to_owned()),
            expires: Some(expires),
        };
        Ok(Timestamp {
            seconds: expires,
            nanos: 0,
        })
    }

    // ---------------------------------------------------------------- misc

    /// pfs.DeleteAll: every repo (and the ACLs on them).
    pub fn delete_all_repos(&mut self) {
        self.repos.clear();
        self.auth.acls.clear();
    }

    /// pps.DeleteAll: every pipeline and job (output repos stay, as in pachd's pps part).
    pub fn delete_all_pipelines(&mut self) {
        let names: Vec<String> = self.pipelines.keys().cloned().collect();
        for name in names {
            let _ = self.delete_pipeline(&name, false, false);
        }
        self.jobs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> (tempfile::TempDir, Bucket) {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path()).unwrap();
        (dir, bucket)
    }

    fn pfs_input(repo: &str) -> pps::Input {
        pps::Input {
            pfs: Some(pps::PfsInput {
                repo: repo.into(),
                branch: "master".into(),
                glob: "/*".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pipeline_req(name: &str, input: &str) -> pps::CreatePipelineRequest {
        pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline { name: name.into() }),
            transform: Some(pps::Transform {
                image: "ubuntu".into(),
                ..Default::default()
            }),
            input: Some(pfs_input(input)),
            ..Default::default()
        }
    }

    #[test]
    fn repo_lifecycle_and_errors() {
        let mut state = State::new();
        state.create_repo("a", "", false).unwrap();
        state.create_repo("b", "desc", false).unwrap();
        assert_eq!(
            state.create_repo("a", "", false).unwrap_err().message,
            "repo a already exists"
        );
        assert!(
            state
                .create_repo("bad name", "", false)
                .unwrap_err()
                .message
                .contains("invalid")
        );
        let names: Vec<String> = state
            .list_repos()
            .into_iter()
            .map(|r| r.repo.unwrap().name)
            .collect();
        assert_eq!(names, ["b", "a"]);
        state.delete_repo("a", false, false).unwrap();
        assert_eq!(
            state.repo_info("a").unwrap_err().message,
            "repo a not found"
        );
    }

    #[test]
    fn commits_files_and_ancestry() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("data", "", false).unwrap();
        let first = state
            .start_commit(&bucket, "data", "", "master", "")
            .unwrap();
        let hash = bucket.put_object(b"one").unwrap();
        state
            .write_file("data", &first.id, "/x", Some((hash, 3)), None, false)
            .unwrap();
        state.finish_commit(&bucket, "data", &first.id, "").unwrap();
        assert!(
            state
                .finish_commit(&bucket, "data", &first.id, "")
                .unwrap_err()
                .message
                .contains("has already finished")
        );
        let second = state
            .start_commit(&bucket, "data", "", "master", "")
            .unwrap();
        state.finish_commit(&bucket, "data", "master", "").unwrap();
        assert_eq!(state.resolve_commit("data", "master").unwrap(), second.id);
        assert_eq!(state.resolve_commit("data", "master^").unwrap(), first.id);
        assert_eq!(state.resolve_commit("data", "master~1").unwrap(), first.id);
        assert!(state.resolve_commit("data", "master~5").is_err());
        let record = state.commit("data", "master").unwrap();
        let files = state.commit_files(&bucket, record).unwrap();
        assert_eq!(files.files["/x"].size, 3);
        let listed = state.list_commits("data", None, None, 0, false).unwrap();
        assert_eq!(listed[0].commit.as_ref().unwrap().id, second.id);
        assert_eq!(
            state.commit_info("data", "nope").unwrap_err().message,
            "commit nope not found in repo data"
        );
    }

    #[test]
    fn build_commit_checks_parent_and_duplicates() {
        let mut state = State::new();
        state.create_repo("r", "", false).unwrap();
        let req = pfs::BuildCommitRequest {
            parent: Some(commit_msg("r", "")),
            id: "c1".into(),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path()).unwrap();
        state.build_commit(&bucket, &req).unwrap();
        assert!(
            state
                .build_commit(&bucket, &req)
                .unwrap_err()
                .is_already_exists()
        );
        let orphan = pfs::BuildCommitRequest {
            parent: Some(commit_msg("r", "missing")),
            id: "c2".into(),
            ..Default::default()
        };
        assert_eq!(
            state.build_commit(&bucket, &orphan).unwrap_err().message,
            "commit missing not found in repo r"
        );
    }

    #[test]
    fn branch_upsert_creates_provenance() {
        let mut state = State::new();
        state.create_repo("in", "", false).unwrap();
        state.create_repo("out", "", false).unwrap();
        state
            .create_branch("out", "master", None, &[branch_msg("in", "master")])
            .unwrap();
        let info = state.branch_info("in", "master").unwrap();
        assert_eq!(info.subvenance.len(), 1);
        assert!(
            state
                .create_branch("out", "master", None, &[branch_msg("out", "master")])
                .is_err()
        );
    }

    #[test]
    fn stop_and_start_pipeline_transitions() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("in", "", false).unwrap();
        let t = state
            .create_pipeline(&bucket, &pipeline_req("p", "in"))
            .unwrap();
        assert_eq!(
            state.pipeline_info("p").unwrap().state,
            pps::PipelineState::PipelineStarting as i32
        );
        assert_eq!(state.settle_pipeline(&t), Some(true));
        assert!(
            state
                .create_pipeline(&bucket, &pipeline_req("p", "in"))
                .unwrap_err()
                .is_already_exists()
        );
        let stop = state.stop_pipeline(&bucket, "p").unwrap();
        let info = state.pipeline_info("p").unwrap();
        assert!(info.stopped);
        assert_eq!(info.state, pps::PipelineState::PipelineRunning as i32);
        assert!(
            state
                .branch_info("p", "master")
                .unwrap()
                .direct_provenance
                .is_empty()
        );
        let start = state.start_pipeline(&bucket, "p").unwrap();
        assert_eq!(
            state.settle_pipeline(&stop),
            None,
            "stale transitions are dropped"
        );
        assert_eq!(state.settle_pipeline(&start), Some(true));
        assert_eq!(
            state
                .branch_info("p", "master")
                .unwrap()
                .direct_provenance
                .len(),
            2
        );
        assert_eq!(state.list_repos().len(), 2, "__spec__ is hidden");
        assert_eq!(
            state.pipeline_info("nope").unwrap_err().message,
            "pipeline \"nope\" not found"
        );
        assert_eq!(
            state
                .create_pipeline(&bucket, &pipeline_req("q", "missing"))
                .unwrap_err()
                .message,
            "repo missing not found"
        );
    }

    #[test]
    fn auth_activation_and_tokens() {
        let mut state = State::new();
        assert_eq!(
            state.who_am_i(None).unwrap_err().message,
            "the auth service is not activated"
        );
        assert!(state.activate_auth("", "tok").is_err(), "needs enterprise");
        state.activate_enterprise("code", None).unwrap();
        state.activate_auth("", "tok").unwrap();
        assert_eq!(
            state.activate_auth("", "x").unwrap_err().message,
            "already activated"
        );
        assert_eq!(state.who_am_i(Some("tok")).unwrap().username, "pach:root");
        assert_eq!(
            state.caller(None).unwrap_err().message,
            "no authentication token (try logging in)"
        );
        assert!(
            state
                .caller(Some("bad"))
                .unwrap_err()
                .message
                .contains("corrupted")
        );
        assert_eq!(state.admins(Some("tok")).unwrap(), ["pach:root"]);
    }

    #[test]
    fn jobs_are_recorded_deduplicated_and_updated() {
        let (_dir, bucket) = bucket();
        let mut state = State::new();
        state.create_repo("in", "", false).unwrap();
        let t = state
            .create_pipeline(&bucket, &pipeline_req("p", "in"))
            .unwrap();
        state.settle_pipeline(&t);
        let out = state.start_commit(&bucket, "p", "", "master", "").unwrap();
        state.finish_commit(&bucket, "p", &out.id, "").unwrap();
        let req = pps::CreateJobRequest {
            pipeline: Some(pps::Pipeline { name: "p".into() }),
            output_commit: Some(out.clone()),
            state: pps::JobState::JobSuccess as i32,
            ..Default::default()
        };
        let job = state.create_job(&req).unwrap();
        assert!(state.create_job(&req).unwrap_err().is_already_exists());
        assert_eq!(
            state.job_info("", Some(&out)).unwrap().job.unwrap().id,
            job.id
        );
        assert_eq!(
            state.pipeline_info("p").unwrap().job_counts.get(&3),
            Some(&1)
        );
        state
            .update_job(&job.id, pps::JobState::JobKilled as i32, "stopped")
            .unwrap();
        assert_eq!(
            state.list_jobs(Some("p"), None).unwrap()[0].state,
            pps::JobState::JobKilled as i32
        );
        assert!(state.list_jobs(Some("ghost"), None).is_err());
        state.delete_job(&job.id).unwrap();
        assert_eq!(
            state.job_info(&job.id, None).unwrap_err().message,
            format!("job {} not found", job.id)
        );
        state.delete_pipeline("p", false, false).unwrap();
        assert!(
            state.repo_info("p").is_err(),
            "the output repo goes with the pipeline"
        );
        assert!(!state.repos[SPEC_REPO].branches.contains_key("p"));
    }

    #[test]
    fn acls_split_robot_entries_and_tokens_round_trip() {
        let mut state = State::new();
        state.create_repo("r", "", false).unwrap();
        state.activate_enterprise("code", None).unwrap();
        state.activate_auth("", "root").unwrap();
        state
            .set_acl(
                "r",
                &[
                    auth::AclEntry {
                        username: "robot:x".into(),
                        scope: auth::Scope::Owner as i32,
                    },
                    auth::AclEntry {
                        username: "pipeline:p".into(),
                        scope: auth::Scope::Reader as i32,
                    },
                ],
            )
            .unwrap();
        let acl = state.acl("r").unwrap();
        assert_eq!(acl.entries.len(), 1);
        assert_eq!(acl.robot_entries[0].username, "robot:x");
        let robot = state.new_token("robot:x", 0).unwrap();
        let extracted = state.extract_tokens().unwrap();
        assert_eq!(
            extracted.len(),
            1,
            "pach:root is recreated by activate_auth, not extracted"
        );
        assert_eq!(extracted[0].hashed_token, token_hash(&robot));
        state.deactivate_auth().unwrap();
        assert!(!state.auth.active);
    }
}
