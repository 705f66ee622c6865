//! The relations between a dump's ops that a restore depends on: every commit, branch and ACL
//! is in a repo an earlier op creates, parents, heads, provenance, spec and output commits are
//! built by earlier ops, pipelines read repos that exist, jobs follow their pipeline, auth is
//! activated once and before what needs it, and nothing is defined twice. pachd applies a
//! dump op by op and keeps what it applied before the first failure, so a dump that breaks
//! one of these is half-applied. One rule set, checked by `backup verify` (against an empty
//! target) and by the sandbox's strict restore (against the cluster it restores into).

use std::collections::{HashMap, HashSet};

use prost_reflect::{DynamicMessage, Value};

use super::op::{Op, branch_of, messages_at, string_at, value_at};
use super::wire::OpKind;

/// The repo pachd keeps pipeline specs in (1.9+).
const SPEC_REPO: &str = "__spec__";

/// What the target of a restore already holds.
pub trait Existing {
    /// Whether repo `name` exists.
    fn has_repo(&self, name: &str) -> bool;
    /// Whether commit `id` exists in `repo`.
    fn has_commit(&self, repo: &str, id: &str) -> bool;
    /// Whether pipeline `name` exists.
    fn has_pipeline(&self, name: &str) -> bool;
    /// Whether auth is active.
    fn auth_active(&self) -> bool;
}

/// An empty target: a dump checked on its own must create everything it refers to.
pub struct Nothing;

impl Existing for Nothing {
    fn has_repo(&self, _: &str) -> bool {
        false
    }
    fn has_commit(&self, _: &str, _: &str) -> bool {
        false
    }
    fn has_pipeline(&self, _: &str) -> bool {
        false
    }
    fn auth_active(&self) -> bool {
        false
    }
}

/// A relation an op breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// A repo, commit or pipeline is defined twice.
    #[error("duplicate {what} (already defined earlier in the dump)")]
    Duplicate {
        /// `repo 'a'`, `commit a@c1`, `pipeline 'p'`.
        what: String,
    },
    /// A commit, branch or ACL in a repo nothing creates.
    #[error("{what} is in repo {repo}, which no earlier repo op creates")]
    NoRepo {
        /// `commit a@c1`, `branch a@master`, `ACL`.
        what: String,
        /// The repo.
        repo: String,
    },
    /// A reference to a commit nothing builds.
    #[error("{what} names {role} {commit}, which no earlier op builds")]
    NoCommit {
        /// `commit a@c2`, `branch a@master`, `pipeline 'p'`, `job of pipeline 'p'`.
        what: String,
        /// `parent`, `head`, `provenance`, `spec commit`, `output commit`.
        role: &'static str,
        /// `repo@id`, or the bare id for parents and heads.
        commit: String,
    },
    /// A branch whose provenance names a branch in a repo nothing creates.
    #[error("branch {branch} names provenance {provenance}, whose repo no earlier op creates")]
    NoProvenanceRepo {
        /// `repo@branch`.
        branch: String,
        /// `repo@branch`.
        provenance: String,
    },
    /// A branch in its own provenance.
    #[error("branch {branch} is in its own provenance")]
    OwnProvenance {
        /// `repo@branch`.
        branch: String,
    },
    /// A branch head in another repo.
    #[error("branch {branch} has its head in another repo ({head_repo})")]
    HeadElsewhere {
        /// `repo@branch`.
        branch: String,
        /// The head's repo.
        head_repo: String,
    },
    /// A pipeline reading a repo nothing creates.
    #[error("pipeline '{pipeline}' reads repo {repo}, which no earlier op creates")]
    NoInput {
        /// The pipeline.
        pipeline: String,
        /// The input repo.
        repo: String,
    },
    /// A pipeline reading its own output.
    #[error("pipeline '{pipeline}' reads its own output repo")]
    OwnInput {
        /// The pipeline.
        pipeline: String,
    },
    /// A job before (or without) its pipeline.
    #[error("job of pipeline '{pipeline}', which no earlier op creates")]
    NoPipeline {
        /// The pipeline.
        pipeline: String,
    },
    /// Auth activated a second time.
    #[error("auth is activated again (already by record {first})")]
    ActivatedTwice {
        /// The record of the first activation.
        first: u64,
    },
    /// Auth activated on a target that has it active.
    #[error("auth is activated, but the target has it active already")]
    AlreadyActive,
    /// An auth op while auth is off.
    #[error("{kind} while auth is off (no earlier activate_auth op)")]
    AuthOff {
        /// The op kind.
        kind: &'static str,
    },
}

/// What the ops read so far create, checked op by op in dump order.
pub struct Relations<'a> {
    existing: &'a dyn Existing,
    /// Repos created by repo ops.
    repos: HashSet<String>,
    /// Output repos created by pipeline ops.
    outputs: HashSet<String>,
    /// Commits built, by repo.
    commits: HashMap<String, HashSet<String>>,
    pipelines: HashSet<String>,
    activated: Option<u64>,
}

impl Relations<'static> {
    /// Relations of a dump restored into an empty cluster.
    pub fn new() -> Relations<'static> {
        Relations::onto(&Nothing)
    }
}

impl Default for Relations<'static> {
    fn default() -> Self {
        Relations::new()
    }
}

impl<'a> Relations<'a> {
    /// Relations of a dump restored into a target holding `existing`.
    pub fn onto(existing: &'a dyn Existing) -> Relations<'a> {
        Relations {
            existing,
            repos: HashSet::new(),
            outputs: HashSet::new(),
            commits: HashMap::new(),
            pipelines: HashSet::new(),
            activated: None,
        }
    }

    fn repo_known(&self, name: &str) -> bool {
        self.repos.contains(name) || self.existing.has_repo(name)
    }

    /// A repo created by a repo op or (as its output) by a pipeline op, or on the target.
    fn readable(&self, name: &str) -> bool {
        self.repo_known(name) || self.outputs.contains(name)
    }

    fn commit_known(&self, repo: &str, id: &str) -> bool {
        self.commits.get(repo).is_some_and(|ids| ids.contains(id))
            || self.existing.has_commit(repo, id)
    }

    fn auth_on(&self) -> bool {
        self.activated.is_some() || self.existing.auth_active()
    }

    /// Checks the next op (with its decoded request) and records what it creates. An op that
    /// breaks a relation creates nothing.
    pub fn check(&mut self, op: &Op, request: &DynamicMessage) -> Result<(), Broken> {
        match op.kind {
            OpKind::Repo => {
                let name = string_at(request, &["repo", "name"]).unwrap_or_default();
                if self.repos.contains(&name) {
                    return Err(Broken::Duplicate {
                        what: format!("repo '{name}'"),
                    });
                }
                self.repos.insert(name);
            }
            OpKind::Commit => self.commit(request)?,
            OpKind::Branch => self.branch(request)?,
            OpKind::Pipeline => self.pipeline(request)?,
            OpKind::Job => {
                let pipeline = string_at(request, &["pipeline", "name"]).unwrap_or_default();
                if !self.pipelines.contains(&pipeline) && !self.existing.has_pipeline(&pipeline) {
                    return Err(Broken::NoPipeline { pipeline });
                }
                if let Some((repo, id)) = commit_of(request, "output_commit")
                    && !self.commit_known(&repo, &id)
                {
                    return Err(Broken::NoCommit {
                        what: format!("job of pipeline '{pipeline}'"),
                        role: "output commit",
                        commit: format!("{repo}@{id}"),
                    });
                }
            }
            OpKind::SetAcl => {
                let repo = string_at(request, &["repo"]).unwrap_or_default();
                if !self.auth_on() {
                    return Err(Broken::AuthOff {
                        kind: op.kind.as_str(),
                    });
                }
                if !self.readable(&repo) {
                    return Err(Broken::NoRepo {
                        what: "ACL".into(),
                        repo,
                    });
                }
            }
            OpKind::RestoreAuthToken | OpKind::SetClusterRoleBinding | OpKind::SetAuthConfig => {
                if !self.auth_on() {
                    return Err(Broken::AuthOff {
                        kind: op.kind.as_str(),
                    });
                }
            }
            OpKind::ActivateAuth => {
                if let Some(first) = self.activated {
                    return Err(Broken::ActivatedTwice { first });
                }
                if self.existing.auth_active() {
                    return Err(Broken::AlreadyActive);
                }
                self.activated = Some(op.index);
            }
            OpKind::Object
            | OpKind::Tag
            | OpKind::CreateObject
            | OpKind::Block
            | OpKind::ActivateEnterprise
            | OpKind::CheckAuthToken => {}
        }
        Ok(())
    }

    fn commit(&mut self, request: &DynamicMessage) -> Result<(), Broken> {
        let repo = string_at(request, &["parent", "repo", "name"]).unwrap_or_default();
        let id = string_at(request, &["ID"]).unwrap_or_default();
        let what = format!("commit {repo}@{id}");
        if !self.repo_known(&repo) {
            return Err(Broken::NoRepo { what, repo });
        }
        let parent = string_at(request, &["parent", "id"]).unwrap_or_default();
        if !parent.is_empty() && !self.commit_known(&repo, &parent) {
            return Err(Broken::NoCommit {
                what,
                role: "parent",
                commit: parent,
            });
        }
        for provenance in messages_at(request, "provenance") {
            // 1.9+ carry `CommitProvenance { commit, branch }`, 1.7/1.8 the bare commit.
            let commit = match value_at(&provenance, &["commit"]) {
                Some(Value::Message(commit)) => commit,
                _ => provenance,
            };
            let from = string_at(&commit, &["repo", "name"]).unwrap_or_default();
            let from_id = string_at(&commit, &["id"]).unwrap_or_default();
            if !self.commit_known(&from, &from_id) {
                return Err(Broken::NoCommit {
                    what,
                    role: "provenance",
                    commit: format!("{from}@{from_id}"),
                });
            }
        }
        let ids = self.commits.entry(repo.clone()).or_default();
        if !ids.insert(id.clone()) {
            return Err(Broken::Duplicate {
                what: format!("commit {repo}@{id}"),
            });
        }
        Ok(())
    }

    fn branch(&mut self, request: &DynamicMessage) -> Result<(), Broken> {
        let (repo, name) = branch_of(request);
        let branch = format!("{repo}@{name}");
        if !self.repo_known(&repo) {
            return Err(Broken::NoRepo {
                what: format!("branch {branch}"),
                repo,
            });
        }
        let head = string_at(request, &["head", "id"]).unwrap_or_default();
        if !head.is_empty() {
            let head_repo = string_at(request, &["head", "repo", "name"]).unwrap_or_default();
            if !head_repo.is_empty() && head_repo != repo {
                return Err(Broken::HeadElsewhere { branch, head_repo });
            }
            if !self.commit_known(&repo, &head) {
                return Err(Broken::NoCommit {
                    what: format!("branch {branch}"),
                    role: "head",
                    commit: head,
                });
            }
        }
        for provenance in messages_at(request, "provenance") {
            let from = string_at(&provenance, &["repo", "name"]).unwrap_or_default();
            let from_branch = string_at(&provenance, &["name"]).unwrap_or_default();
            if from == repo && from_branch == name {
                return Err(Broken::OwnProvenance { branch });
            }
            if !self.readable(&from) {
                return Err(Broken::NoProvenanceRepo {
                    branch,
                    provenance: format!("{from}@{from_branch}"),
                });
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, request: &DynamicMessage) -> Result<(), Broken> {
        let name = string_at(request, &["pipeline", "name"]).unwrap_or_default();
        if self.pipelines.contains(&name) {
            return Err(Broken::Duplicate {
                what: format!("pipeline '{name}'"),
            });
        }
        let mut inputs = Vec::new();
        if let Some(Value::Message(input)) = value_at(request, &["input"]) {
            pfs_inputs(&input, &mut inputs);
        }
        for repo in inputs {
            if repo == name {
                return Err(Broken::OwnInput { pipeline: name });
            }
            if !self.readable(&repo) {
                return Err(Broken::NoInput {
                    pipeline: name,
                    repo,
                });
            }
        }
        if let Some(id) = string_at(request, &["spec_commit", "id"]).filter(|id| !id.is_empty())
            && !self.commit_known(SPEC_REPO, &id)
        {
            return Err(Broken::NoCommit {
                what: format!("pipeline '{name}'"),
                role: "spec commit",
                commit: format!("{SPEC_REPO}@{id}"),
            });
        }
        self.outputs.insert(name.clone());
        self.pipelines.insert(name);
        Ok(())
    }
}

/// The `(repo, id)` of commit field `name`, when it names an id.
fn commit_of(request: &DynamicMessage, name: &str) -> Option<(String, String)> {
    let id = string_at(request, &[name, "id"]).filter(|id| !id.is_empty())?;
    Some((
        string_at(request, &[name, "repo", "name"]).unwrap_or_default(),
        id,
    ))
}

/// The repos a pipeline's PFS inputs read (cron and git inputs name repos pachd creates).
fn pfs_inputs(input: &DynamicMessage, out: &mut Vec<String>) {
    for single in ["atom", "pfs"] {
        if let Some(repo) = string_at(input, &[single, "repo"]) {
            out.push(repo);
        }
    }
    for nested in ["cross", "union", "join", "group"] {
        for child in messages_at(input, nested) {
            pfs_inputs(&child, out);
        }
    }
}
