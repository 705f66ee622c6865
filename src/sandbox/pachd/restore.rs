//! Restore: applies a stream of dump records the way pachd does (reference §5.4), plus the
//! sandbox's own strict and check modes.
//!
//! * **Lenient** (pachd's behaviour, the default for foreign clients): each op is converted to
//!   the server's version and applied in order; block and object data go straight to the
//!   bucket; "already exists" is ignored for repos, commits, branches, pipelines and jobs; the
//!   first other error stops the restore and what was applied stays applied.
//! * **Strict**: the whole stream is read first. Block and object data are staged in a scratch
//!   bucket under `<bucket>/tmp/`, the metadata ops are simulated against a copy of the state
//!   with extra checks (the relations of `backup::relations`, the rule set `backup verify`
//!   checks too; every tree object present in the dump or the bucket, no unfinished commits,
//!   blocks terminated, objects and tags pointing at existing data). If anything would fail, every predicted failure is reported (one line
//!   each, `FailedPrecondition`) and nothing is applied. Otherwise the staged data is moved
//!   into the bucket and the ops are applied.
//! * **Check**: strict's validation only; nothing is ever applied. This is the restore
//!   simulator users run on their real dump before production.

use std::collections::HashMap;

use prost::Message;
use prost_types::Timestamp;

use super::bucket::{BlockWriter, Bucket};
use super::convert::{apply_drops, op_kind, op_version, to_current};
use super::error::{PachdError, PachdResult, sanitize_name};
use super::server::Cluster;
use super::state::{State, Transition, commit_repo, now};
use crate::backup::Op as DumpOp;
use crate::backup::reader::Record;
use crate::backup::relations::{Broken, Existing, Relations};
use crate::proto::{admin, pfs};

/// How a restore treats failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// pachd's behaviour: apply as you go.
    Lenient,
    /// Validate everything first; apply only if nothing would fail.
    Strict,
    /// Validate only.
    Check,
}

impl RestoreMode {
    /// Parses the `ankus-restore-mode` header value.
    pub fn parse(text: &str) -> Option<RestoreMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "lenient" => Some(RestoreMode::Lenient),
            "strict" => Some(RestoreMode::Strict),
            "check" => Some(RestoreMode::Check),
            _ => None,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Ops read.
    pub ops: u64,
    /// Block and object bytes written.
    pub bytes: u64,
}

/// The most failures listed in a strict report (the count is always exact).
const MAX_REPORTED: usize = 50;

enum Target<'a> {
    Real(&'a Bucket),
    Staging(&'a Bucket),
}

/// Applies one restore stream.
pub struct Restorer {
    cluster: Cluster,
    mode: RestoreMode,
    token: Option<String>,
    first_version: Option<u32>,
    index: u64,
    summary: RestoreSummary,
    open_block: Option<(String, BlockWriter)>,
    open_object: Option<(Vec<u8>, Vec<pfs::Tag>)>,
    staging: Option<Bucket>,
    pending: Vec<(u64, admin::Op113)>,
    problems: Vec<String>,
    transitions: Vec<Transition>,
}

impl Restorer {
    /// A restore into `cluster` on behalf of the caller holding `token`.
    pub fn new(
        cluster: &Cluster,
        mode: RestoreMode,
        token: Option<String>,
    ) -> PachdResult<Restorer> {
        let staging = if mode == RestoreMode::Lenient {
            None
        } else {
            let dir = cluster
                .bucket()
                .root()
                .join("tmp")
                .join(format!("restore-{}", uuid::Uuid::new_v4().simple()));
            Some(Bucket::open(&dir).map_err(|err| PachdError::io("create restore staging", &err))?)
        };
        Ok(Restorer {
            cluster: cluster.clone(),
            mode,
            token,
            first_version: None,
            index: 0,
            summary: RestoreSummary::default(),
            open_block: None,
            open_object: None,
            staging,
            pending: Vec::new(),
            problems: Vec::new(),
            transitions: Vec::new(),
        })
    }

    fn problem(&mut self, index: u64, kind: &str, message: impl std::fmt::Display) {
        self.problems
            .push(format!("op {index} ({kind}): {message}"));
    }

    /// Feeds one op.
    pub fn feed(&mut self, op: admin::Op) -> PachdResult<()> {
        let index = self.index;
        self.index += 1;
        self.summary.ops += 1;
        let server = self.cluster.version();
        let Some(version) = op_version(&op) else {
            if server.strict_op_versions() {
                return self.fail(
                    index,
                    "",
                    PachdError::unknown("unrecognized stream version"),
                );
            }
            return Ok(());
        };
        if version > server.minor {
            if server.strict_op_versions() {
                return self.fail(
                    index,
                    "",
                    PachdError::unknown("unrecognized stream version"),
                );
            }
            return Ok(());
        }
        match self.first_version {
            None => self.first_version = Some(version),
            Some(first) if first != version => {
                return self.fail(
                    index,
                    "",
                    PachdError::unknown(
                        "cannot mix different versions of pachd operation within a metadata dumps",
                    ),
                );
            }
            Some(_) => {}
        }
        let unfinished = unfinished_commit(&op, version);
        let (_, mut current) = to_current(op)?;
        apply_drops(&mut current, version, server.minor);
        let kind = op_kind(&current);
        if kind.is_empty() {
            return Ok(());
        }
        if let Some((repo, id)) = unfinished
            && self.mode != RestoreMode::Lenient
        {
            self.problem(
                    index,
                    kind,
                    format!("commit {id} in repo {repo} is not finished: restore would finish it now and its data would be lost"),
                );
        }
        match kind {
            "block" | "object" | "create_object" | "tag" => {
                let result = self.data_op(index, current);
                match result {
                    Ok(()) => Ok(()),
                    Err(err) => self.fail(index, kind, err),
                }
            }
            _ => {
                if self.mode == RestoreMode::Lenient {
                    match self.apply_meta_now(&current) {
                        Ok(()) => Ok(()),
                        Err(err) => Err(err),
                    }
                } else {
                    self.pending.push((index, current));
                    Ok(())
                }
            }
        }
    }

    fn fail(&mut self, index: u64, kind: &str, err: PachdError) -> PachdResult<()> {
        if self.mode == RestoreMode::Lenient {
            Err(err)
        } else {
            self.problem(
                index,
                if kind.is_empty() { "op" } else { kind },
                &err.message,
            );
            Ok(())
        }
    }

    fn target(&self) -> Target<'_> {
        match &self.staging {
            Some(staging) => Target::Staging(staging),
            None => Target::Real(self.cluster.bucket()),
        }
    }

    fn object_known(&self, hash: &str) -> bool {
        self.cluster.bucket().has_object(hash)
            || self.staging.as_ref().is_some_and(|s| s.has_object(hash))
    }

    fn block_known(&self, id: &str) -> bool {
        self.cluster.bucket().has_block(id)
            || self.staging.as_ref().is_some_and(|s| s.has_block(id))
    }

    fn data_op(&mut self, _index: u64, op: admin::Op113) -> PachdResult<()> {
        let io = |what: &str, err: std::io::Error| PachdError::io(what, &err);
        if let Some(block) = op.block {
            let id = block.block.map(|b| b.hash).unwrap_or_default();
            if block.value.is_empty() {
                match self.open_block.take() {
                    Some((_, writer)) => {
                        writer.finish().map_err(|e| io("write block", e))?;
                    }
                    None => {
                        let bucket = match self.target() {
                            Target::Real(b) | Target::Staging(b) => b.clone(),
                        };
                        bucket
                            .put_block(&id, &[])
                            .map_err(|e| io("write block", e))?;
                    }
                }
                return Ok(());
            }
            self.summary.bytes += block.value.len() as u64;
            if self.open_block.is_none() {
                let bucket = match self.target() {
                    Target::Real(b) | Target::Staging(b) => b.clone(),
                };
                let writer = bucket.block_writer(&id).map_err(|e| io("write block", e))?;
                self.open_block = Some((id, writer));
            }
            let (_, writer) = self.open_block.as_mut().expect("just opened");
            return writer.write(&block.value).map_err(|e| io("write block", e));
        }
        if let Some(object) = op.object {
            if !object.value.is_empty() {
                self.summary.bytes += object.value.len() as u64;
                let entry = self
                    .open_object
                    .get_or_insert_with(|| (Vec::new(), object.tags.clone()));
                entry.0.extend_from_slice(&object.value);
                return Ok(());
            }
            let (content, tags) = self.open_object.take().unwrap_or((Vec::new(), object.tags));
            let bucket = match self.target() {
                Target::Real(b) | Target::Staging(b) => b.clone(),
            };
            let hash = bucket
                .put_object(&content)
                .map_err(|e| io("write object", e))?;
            for tag in tags {
                bucket
                    .put_tag(&tag.name, &hash)
                    .map_err(|e| io("write tag", e))?;
            }
            return Ok(());
        }
        if let Some(create) = op.create_object {
            let hash = create.object.map(|o| o.hash).unwrap_or_default();
            let block_ref = create.block_ref.unwrap_or_default();
            let block_id = block_ref
                .block
                .as_ref()
                .map(|b| b.hash.clone())
                .unwrap_or_default();
            if self.mode != RestoreMode::Lenient && !self.block_known(&block_id) {
                return Err(PachdError::unknown(format!(
                    "object {hash} points into block {block_id}, which is neither in the dump nor in the bucket"
                )));
            }
            let bucket = match self.target() {
                Target::Real(b) | Target::Staging(b) => b.clone(),
            };
            return bucket
                .put_object_ref(&hash, &block_ref)
                .map_err(|e| io("write object", e));
        }
        if let Some(tag) = op.tag {
            let hash = tag.object.map(|o| o.hash).unwrap_or_default();
            if self.first_version.is_some_and(|v| v <= 8)
                && (hash.len() != 128 || !hash.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(PachdError::unknown(format!(
                    "invalid object hash \"{hash}\""
                )));
            }
            if self.mode != RestoreMode::Lenient && !self.object_known(&hash) {
                return Err(PachdError::unknown(format!(
                    "tag points at object {hash}, which is neither in the dump nor in the bucket"
                )));
            }
            let bucket = match self.target() {
                Target::Real(b) | Target::Staging(b) => b.clone(),
            };
            for name in tag.tags {
                bucket
                    .put_tag(&name.name, &hash)
                    .map_err(|e| io("write tag", e))?;
            }
        }
        Ok(())
    }

    fn apply_meta_now(&mut self, op: &admin::Op113) -> PachdResult<()> {
        let token = self.token.clone();
        let cluster = self.cluster.clone();
        let mut state = cluster.lock();
        match apply_meta(&mut state, cluster.bucket(), op, token.as_deref()) {
            Ok(Some(transition)) => {
                self.transitions.push(transition);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(err) if ignorable(op, &err) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Ends the stream: validates (strict, check) and applies what is pending.
    pub fn finish(mut self) -> PachdResult<RestoreSummary> {
        if let Some((id, _)) = self.open_block.take() {
            let message = format!("block {id} is not terminated (the dump is truncated)");
            if self.mode == RestoreMode::Lenient {
                return Err(PachdError::unknown(message));
            }
            self.problems.push(message);
        }
        let result = if self.mode == RestoreMode::Lenient {
            Ok(self.summary.clone())
        } else {
            self.validate_and_apply()
        };
        for transition in self.transitions.drain(..) {
            self.cluster.schedule(transition);
        }
        if let Some(staging) = self.staging.take() {
            let _ = std::fs::remove_dir_all(staging.root());
        }
        self.cluster.persist()?;
        result
    }

    fn validate_and_apply(&mut self) -> PachdResult<RestoreSummary> {
        let staging = self
            .staging
            .clone()
            .expect("strict and check modes stage data");
        let mut simulated: State = self.cluster.lock().clone();
        let real = self.cluster.bucket().clone();
        let objects = |hash: &str| real.has_object(hash) || staging.has_object(hash);
        let pending = std::mem::take(&mut self.pending);
        let mut broken = broken_relations(&simulated, &pending);
        for (index, op) in &pending {
            for missing in missing_tree_objects(op, &objects) {
                self.problem(*index, op_kind(op), missing);
            }
            // What pachd itself would refuse is reported in pachd's words; a broken relation
            // it would let through (and so half-apply the dump), in the rule's.
            match apply_meta(&mut simulated, &staging, op, self.token.as_deref()) {
                Err(err) if !ignorable(op, &err) => {
                    self.problem(*index, op_kind(op), &err.message);
                }
                _ => {
                    if let Some(problem) = broken.remove(index) {
                        self.problem(*index, op_kind(op), problem);
                    }
                }
            }
        }
        if !self.problems.is_empty() {
            let total = self.problems.len();
            let mut report = format!(
                "restore would fail: {total} problem{} found, nothing was applied",
                if total == 1 { "" } else { "s" }
            );
            for line in self.problems.iter().take(MAX_REPORTED) {
                report.push('\n');
                report.push_str(line);
            }
            if total > MAX_REPORTED {
                report.push_str(&format!("\n… and {} more", total - MAX_REPORTED));
            }
            return Err(PachdError::with_code(
                tonic::Code::FailedPrecondition,
                report,
            ));
        }
        if self.mode == RestoreMode::Check {
            return Ok(self.summary.clone());
        }
        move_staged(&staging, self.cluster.bucket())
            .map_err(|err| PachdError::io("move restored data into the bucket", &err))?;
        for (_, op) in &pending {
            self.apply_meta_now(op)?;
        }
        Ok(self.summary.clone())
    }
}

/// The metadata ops that break a relation `backup verify` checks (the same rule set), onto
/// what `state` holds before the restore, by op index.
fn broken_relations(state: &State, pending: &[(u64, admin::Op113)]) -> HashMap<u64, Broken> {
    let mut relations = Relations::onto(state);
    let mut broken = HashMap::new();
    for (index, op) in pending {
        // The rules read ops as a dump holds them: this one, as the current version.
        let bytes = admin::Op {
            op1_13: Some(op.clone()),
            ..Default::default()
        }
        .encode_to_vec();
        let record = Record {
            index: *index,
            offset: 0,
            bytes,
        };
        let Ok(dump_op) = DumpOp::from_record(record) else {
            continue;
        };
        let Ok(request) = dump_op.request() else {
            continue;
        };
        if let Err(problem) = relations.check(&dump_op, &request) {
            broken.insert(*index, problem);
        }
    }
    broken
}

impl Existing for State {
    fn has_repo(&self, name: &str) -> bool {
        self.repos.contains_key(name)
    }

    fn has_commit(&self, repo: &str, id: &str) -> bool {
        self.repos
            .get(repo)
            .is_some_and(|record| record.commits.contains_key(id))
    }

    fn has_pipeline(&self, name: &str) -> bool {
        self.pipelines.contains_key(name)
    }

    fn auth_active(&self) -> bool {
        self.auth.active
    }
}

fn ignorable(op: &admin::Op113, err: &PachdError) -> bool {
    matches!(
        op_kind(op),
        "repo" | "commit" | "branch" | "pipeline" | "job"
    ) && err.is_already_exists()
}

/// The (repo, id) of a commit op that would restore an unfinished commit (1.10+ dumps carry
/// `finished`).
fn unfinished_commit(op: &admin::Op, version: u32) -> Option<(String, String)> {
    macro_rules! check {
        ($inner:expr) => {
            $inner
                .as_ref()
                .and_then(|o| o.commit.as_ref())
                .and_then(|c| {
                    c.finished.is_none().then(|| {
                        (
                            c.parent
                                .as_ref()
                                .and_then(|p| p.repo.as_ref())
                                .map(|r| r.name.clone())
                                .unwrap_or_default(),
                            c.id.clone(),
                        )
                    })
                })
        };
    }
    match version {
        10 => check!(op.op1_10),
        11 => check!(op.op1_11),
        12 => check!(op.op1_12),
        13 => check!(op.op1_13),
        _ => None,
    }
}

fn move_staged(staging: &Bucket, bucket: &Bucket) -> std::io::Result<()> {
    for sub in ["block", "object", "tag"] {
        let from = staging.root().join(sub);
        let to = bucket.root().join(sub);
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            std::fs::rename(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn sanitize_commit(commit: &mut Option<pfs::Commit>) {
    if let Some(repo) = commit.as_mut().and_then(|c| c.repo.as_mut()) {
        repo.name = sanitize_name(&repo.name);
    }
}

fn sanitize_branch(branch: &mut pfs::Branch) {
    if let Some(repo) = branch.repo.as_mut() {
        repo.name = sanitize_name(&repo.name);
    }
    branch.name = sanitize_name(&branch.name);
}

fn sanitize_input(input: &mut crate::proto::pps::Input) {
    if let Some(pfs_input) = input.pfs.as_mut() {
        pfs_input.repo = sanitize_name(&pfs_input.repo);
        pfs_input.branch = sanitize_name(&pfs_input.branch);
    }
    for child in input
        .cross
        .iter_mut()
        .chain(input.union.iter_mut())
        .chain(input.join.iter_mut())
        .chain(input.group.iter_mut())
    {
        sanitize_input(child);
    }
}

/// The tree objects a commit op refers to that `exists` does not know (strict mode's check;
/// pachd itself does not look, and the commit then has no readable data).
pub fn missing_tree_objects(op: &admin::Op113, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Some(commit) = &op.commit else {
        return Vec::new();
    };
    let repo = commit_repo(commit.parent.as_ref());
    commit
        .tree
        .iter()
        .chain(&commit.trees)
        .chain(commit.datums.iter())
        .map(|o| o.hash.as_str())
        .filter(|hash| !hash.is_empty() && !exists(hash))
        .map(|hash| {
            format!(
                "object {hash} (a tree of commit {} in repo {repo}) is missing from the bucket",
                commit.id
            )
        })
        .collect()
}

/// Applies one metadata op to `state` as pachd's restore does.
pub fn apply_meta(
    state: &mut State,
    bucket: &Bucket,
    op: &admin::Op113,
    token: Option<&str>,
) -> PachdResult<Option<Transition>> {
    if let Some(repo) = &op.repo {
        let name = sanitize_name(
            &repo
                .repo
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        );
        if name.is_empty() {
            return Err(PachdError::invalid("repo op without a repo name"));
        }
        state.create_repo(&name, &repo.description, false)?;
        return Ok(None);
    }
    if let Some(commit) = &op.commit {
        let mut commit = commit.clone();
        sanitize_commit(&mut commit.parent);
        for prov in &mut commit.provenance {
            sanitize_commit(&mut prov.commit);
            if let Some(branch) = prov.branch.as_mut() {
                sanitize_branch(branch);
            }
        }
        // A 1.9 dump carries neither time: one stamp for both, so no commit ends before it
        // starts.
        let stamp = now();
        commit.started.get_or_insert(stamp);
        commit.finished.get_or_insert(stamp);
        state.build_commit(bucket, &commit)?;
        return Ok(None);
    }
    if let Some(branch) = &op.branch {
        let mut branch = branch.clone();
        let mut target = branch.branch.clone().unwrap_or_else(|| pfs::Branch {
            repo: branch.head.as_ref().and_then(|h| h.repo.clone()),
            name: branch.s_branch.clone(),
        });
        sanitize_branch(&mut target);
        sanitize_commit(&mut branch.head);
        for prov in &mut branch.provenance {
            sanitize_branch(prov);
        }
        let repo = target
            .repo
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        state.create_branch(
            &repo,
            &target.name,
            branch.head.as_ref(),
            &branch.provenance,
        )?;
        return Ok(None);
    }
    if let Some(pipeline) = &op.pipeline {
        let mut pipeline = pipeline.clone();
        if let Some(p) = pipeline.pipeline.as_mut() {
            p.name = sanitize_name(&p.name);
        }
        if let Some(input) = pipeline.input.as_mut() {
            sanitize_input(input);
        }
        return state.create_pipeline(bucket, &pipeline).map(Some);
    }
    if let Some(job) = &op.job {
        state.create_job(job)?;
        return Ok(None);
    }
    if let Some(acl) = &op.set_acl {
        state.set_acl(&acl.repo, &acl.entries)?;
        return Ok(None);
    }
    if let Some(binding) = &op.set_cluster_role_binding {
        let roles = binding
            .roles
            .as_ref()
            .map(|r| r.roles.clone())
            .unwrap_or_default();
        state.set_role_binding(&binding.principal, roles)?;
        return Ok(None);
    }
    if let Some(config) = &op.set_auth_config {
        if !state.auth.active {
            return Err(PachdError::auth_not_activated());
        }
        state.auth.config = config.configuration.clone().unwrap_or_default();
        return Ok(None);
    }
    if op.activate_auth.is_some() {
        let root = token
            .map(str::to_owned)
            .unwrap_or_else(super::state::new_id);
        state.activate_auth("", &root)?;
        return Ok(None);
    }
    if let Some(restore) = &op.restore_auth_token {
        state.restore_token(&restore.token.clone().unwrap_or_default())?;
        return Ok(None);
    }
    if let Some(enterprise) = &op.activate_enterprise {
        state.activate_enterprise(
            &enterprise.activation_code,
            enterprise.expires.map(|e| Timestamp {
                seconds: e.seconds,
                nanos: e.nanos,
            }),
        )?;
        return Ok(None);
    }
    if op.check_auth_token.is_some() {
        if token.is_none_or(str::is_empty) {
            return Err(PachdError::not_signed_in());
        }
        return Ok(None);
    }
    Ok(None)
}
