//! Typed views of pachd's answers: the fields scripts and reports use, in plain Rust types.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::proto::{admin, auth, pfs, pps, versionpb};

/// A pachd version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Major (1 for every supported server).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
    /// Suffix such as `rc1`; empty for releases.
    pub additional: String,
}

impl From<versionpb::Version> for Version {
    fn from(version: versionpb::Version) -> Self {
        Version {
            major: version.major,
            minor: version.minor,
            micro: version.micro,
            additional: version.additional,
        }
    }
}

impl Version {
    /// `major.minor`, e.g. `1.11`, the dump-format name.
    pub fn minor_name(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for Version {
    // pachctl's PrettyPrintVersion.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        if !self.additional.is_empty() {
            write!(f, "-{}", self.additional)?;
        }
        Ok(())
    }
}

/// `admin.ClusterInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    /// The cluster ID.
    pub id: String,
    /// The deployment ID (1.10+; empty before).
    pub deployment_id: String,
}

impl From<admin::ClusterInfo> for ClusterInfo {
    fn from(info: admin::ClusterInfo) -> Self {
        ClusterInfo {
            id: info.id,
            deployment_id: info.deployment_id,
        }
    }
}

impl fmt::Display for ClusterInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {} (deployment {})", self.id, self.deployment_id)
    }
}

/// RFC 3339 text of a protobuf timestamp.
pub fn timestamp_text(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    jiff::Timestamp::new(timestamp.seconds, timestamp.nanos)
        .ok()
        .map(|time| time.to_string())
}

/// `PIPELINE_RUNNING` → `running`; unknown numbers → `state_N`.
pub fn pipeline_state_name(state: i32) -> String {
    match pps::PipelineState::try_from(state) {
        Ok(known) => known
            .as_str_name()
            .trim_start_matches("PIPELINE_")
            .to_ascii_lowercase(),
        Err(_) => format!("state_{state}"),
    }
}

/// `JOB_SUCCESS` → `success`; unknown numbers → `state_N`.
pub fn job_state_name(state: i32) -> String {
    match pps::JobState::try_from(state) {
        Ok(known) => known
            .as_str_name()
            .trim_start_matches("JOB_")
            .to_ascii_lowercase(),
        Err(_) => format!("state_{state}"),
    }
}

/// The repos a pipeline reads, in input order without repeats: PFS inputs, cron and git
/// inputs, recursing through cross, union, join and group.
pub fn input_repos(input: Option<&pps::Input>) -> Vec<String> {
    fn walk(input: &pps::Input, out: &mut Vec<String>) {
        let mut add = |name: &str| {
            if !name.is_empty() && !out.iter().any(|known| known == name) {
                out.push(name.to_owned());
            }
        };
        if let Some(pfs) = &input.pfs {
            add(&pfs.repo);
        }
        if let Some(cron) = &input.cron {
            add(if cron.repo.is_empty() {
                &cron.name
            } else {
                &cron.repo
            });
        }
        if let Some(git) = &input.git {
            add(&git.name);
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
    out
}

/// A pipeline as ListPipeline/InspectPipeline report it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pipeline {
    /// Name.
    pub name: String,
    /// Lowercase state: `starting`, `running`, `restarting`, `failure`, `paused`, `standby`,
    /// `crashing`.
    pub state: String,
    /// Whether StopPipeline was called (flips at once; `state` follows asynchronously).
    pub stopped: bool,
    /// Container image.
    pub image: String,
    /// Command.
    pub cmd: Vec<String>,
    /// Input repo names.
    pub inputs: Vec<String>,
    /// Constant parallelism (0 when a coefficient is used).
    pub parallelism: u64,
    /// Parallelism coefficient (0 when a constant is used).
    pub parallelism_coefficient: f64,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// Lowercase state of the last job (1.8+), e.g. `success`.
    pub last_job_state: String,
    /// Job counts by lowercase job state.
    pub job_counts: BTreeMap<String, i64>,
    /// Spec version (bumped by updates).
    pub version: u64,
    /// Output branch.
    pub output_branch: String,
    /// Description.
    pub description: String,
    /// Why the pipeline is in its state, if pachd says.
    pub reason: String,
}

impl From<pps::PipelineInfo> for Pipeline {
    fn from(info: pps::PipelineInfo) -> Self {
        let transform = info.transform.unwrap_or_default();
        let parallelism = info.parallelism_spec.unwrap_or_default();
        let reason = if info.reason.is_empty() {
            info.recent_error
        } else {
            info.reason
        };
        Pipeline {
            name: info
                .pipeline
                .map(|pipeline| pipeline.name)
                .unwrap_or_default(),
            state: pipeline_state_name(info.state),
            stopped: info.stopped,
            image: transform.image,
            cmd: transform.cmd,
            inputs: input_repos(info.input.as_ref()),
            parallelism: parallelism.constant,
            parallelism_coefficient: parallelism.coefficient,
            created: timestamp_text(info.created_at.as_ref()),
            last_job_state: job_state_name(info.last_job_state),
            job_counts: info
                .job_counts
                .into_iter()
                .map(|(state, count)| (job_state_name(state), i64::from(count)))
                .collect(),
            version: info.version,
            output_branch: info.output_branch,
            description: info.description,
            reason,
        }
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline {} ({}", self.name, self.state)?;
        if self.stopped && self.state != "paused" {
            f.write_str(", stopping")?;
        }
        write!(f, ") image {}", self.image)?;
        if !self.inputs.is_empty() {
            write!(f, " inputs {}", self.inputs.join(", "))?;
        }
        Ok(())
    }
}

/// Where one pipeline ended up after a stop/start-all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineWait {
    /// The pipeline.
    pub name: String,
    /// Its last seen state (lowercase).
    pub state: String,
    /// Whether the call was skipped because the pipeline already was as wanted.
    pub skipped: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The kind of the failure, if it failed.
    #[serde(skip)]
    pub error_kind: Option<crate::kind::Kind>,
}

/// A repo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Repo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Size in bytes of the head commits.
    pub size_bytes: u64,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// Branch names.
    pub branches: Vec<String>,
}

impl From<pfs::RepoInfo> for Repo {
    fn from(info: pfs::RepoInfo) -> Self {
        Repo {
            name: info.repo.map(|repo| repo.name).unwrap_or_default(),
            description: info.description,
            size_bytes: info.size_bytes,
            created: timestamp_text(info.created.as_ref()),
            branches: info
                .branches
                .into_iter()
                .map(|branch| branch.name)
                .collect(),
        }
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "repo {} ({} bytes", self.name, self.size_bytes)?;
        if !self.branches.is_empty() {
            write!(f, ", branches {}", self.branches.join(", "))?;
        }
        f.write_str(")")
    }
}

fn branch_text(branch: &pfs::Branch) -> String {
    let repo = branch
        .repo
        .as_ref()
        .map(|repo| repo.name.as_str())
        .unwrap_or("");
    format!("{repo}@{}", branch.name)
}

/// A branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Branch {
    /// Repo.
    pub repo: String,
    /// Name.
    pub name: String,
    /// Head commit ID, if the branch has one.
    pub head: Option<String>,
    /// Direct provenance, as `repo@branch`.
    pub provenance: Vec<String>,
}

impl From<pfs::BranchInfo> for Branch {
    fn from(info: pfs::BranchInfo) -> Self {
        let (repo, name) = match &info.branch {
            Some(branch) => (
                branch
                    .repo
                    .as_ref()
                    .map(|repo| repo.name.clone())
                    .unwrap_or_default(),
                branch.name.clone(),
            ),
            // Pre-1.9 style: only the legacy name field is set; the repo comes from the head.
            None => (
                info.head
                    .as_ref()
                    .and_then(|head| head.repo.as_ref())
                    .map(|repo| repo.name.clone())
                    .unwrap_or_default(),
                info.name.clone(),
            ),
        };
        let provenance = if info.direct_provenance.is_empty() {
            &info.provenance
        } else {
            &info.direct_provenance
        };
        Branch {
            repo,
            name,
            head: info.head.map(|head| head.id).filter(|id| !id.is_empty()),
            provenance: provenance.iter().map(branch_text).collect(),
        }
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "branch {}@{} -> {}",
            self.repo,
            self.name,
            self.head.as_deref().unwrap_or("(none)")
        )
    }
}

/// A commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// Repo.
    pub repo: String,
    /// ID.
    pub id: String,
    /// The branch it was made on (1.9+), if known.
    pub branch: Option<String>,
    /// Parent commit ID.
    pub parent: Option<String>,
    /// Start time, RFC 3339.
    pub started: Option<String>,
    /// Finish time; none while the commit is open.
    pub finished: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Description.
    pub description: String,
    /// `user`, `auto` or `fsck` (1.9+; `user` before).
    pub origin: String,
    /// Provenance as `repo@id`.
    pub provenance: Vec<String>,
}

impl From<pfs::CommitInfo> for Commit {
    fn from(info: pfs::CommitInfo) -> Self {
        let commit = info.commit.unwrap_or_default();
        let origin = match info.origin.map(|origin| origin.kind).unwrap_or(0) {
            0 => "user".to_owned(),
            1 => "auto".to_owned(),
            2 => "fsck".to_owned(),
            other => format!("origin_{other}"),
        };
        Commit {
            repo: commit.repo.map(|repo| repo.name).unwrap_or_default(),
            id: commit.id,
            branch: info
                .branch
                .map(|branch| branch.name)
                .filter(|name| !name.is_empty()),
            parent: info
                .parent_commit
                .map(|parent| parent.id)
                .filter(|id| !id.is_empty()),
            started: timestamp_text(info.started.as_ref()),
            finished: timestamp_text(info.finished.as_ref()),
            size_bytes: info.size_bytes,
            description: info.description,
            origin,
            provenance: info
                .provenance
                .iter()
                .filter_map(|provenance| provenance.commit.as_ref())
                .map(|commit| {
                    let repo = commit
                        .repo
                        .as_ref()
                        .map(|repo| repo.name.as_str())
                        .unwrap_or("");
                    format!("{repo}@{}", commit.id)
                })
                .collect(),
        }
    }
}

impl fmt::Display for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "commit {}@{} ({} bytes",
            self.repo, self.id, self.size_bytes
        )?;
        if self.finished.is_none() {
            f.write_str(", open")?;
        }
        f.write_str(")")
    }
}

/// A file or directory in a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Repo.
    pub repo: String,
    /// Commit ID.
    pub commit: String,
    /// Path.
    pub path: String,
    /// `file` or `dir`.
    pub file_type: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// When it was last committed (1.8+), RFC 3339.
    pub committed: Option<String>,
    /// pachd's content hash of the file, hex (empty when the server sends none).
    pub hash: String,
}

impl From<pfs::FileInfo> for FileInfo {
    fn from(info: pfs::FileInfo) -> Self {
        let file = info.file.unwrap_or_default();
        let commit = file.commit.unwrap_or_default();
        let file_type = match pfs::FileType::try_from(info.file_type) {
            Ok(pfs::FileType::File) => "file".to_owned(),
            Ok(pfs::FileType::Dir) => "dir".to_owned(),
            _ => format!("type_{}", info.file_type),
        };
        FileInfo {
            repo: commit.repo.map(|repo| repo.name).unwrap_or_default(),
            commit: commit.id,
            path: file.path,
            file_type,
            size_bytes: info.size_bytes,
            committed: timestamp_text(info.committed.as_ref()),
            hash: hex::encode(&info.hash),
        }
    }
}

impl fmt::Display for FileInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}@{}:{} ({} bytes)",
            self.file_type, self.repo, self.commit, self.path, self.size_bytes
        )
    }
}

/// Who the session token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WhoAmI {
    /// Subject, e.g. `robot:admin`.
    pub username: String,
    /// Whether the subject is an admin.
    pub is_admin: bool,
    /// Seconds until the token expires (0 = never).
    pub ttl: i64,
    /// Cluster roles (1.11+), lowercase.
    pub cluster_roles: Vec<String>,
}

/// `SUPER` → `super`.
pub fn cluster_role_name(role: i32) -> String {
    match auth::ClusterRole::try_from(role) {
        Ok(known) => known.as_str_name().to_ascii_lowercase(),
        Err(_) => format!("role_{role}"),
    }
}

impl From<auth::WhoAmIResponse> for WhoAmI {
    fn from(response: auth::WhoAmIResponse) -> Self {
        WhoAmI {
            username: response.username,
            is_admin: response.is_admin,
            ttl: response.ttl,
            cluster_roles: response
                .cluster_roles
                .map(|roles| roles.roles.into_iter().map(cluster_role_name).collect())
                .unwrap_or_default(),
        }
    }
}

/// One ACL entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AclEntry {
    /// Subject.
    pub username: String,
    /// `none`, `reader`, `writer` or `owner`.
    pub scope: String,
}

impl From<auth::AclEntry> for AclEntry {
    fn from(entry: auth::AclEntry) -> Self {
        let scope = match auth::Scope::try_from(entry.scope) {
            Ok(known) => known.as_str_name().to_ascii_lowercase(),
            Err(_) => format!("scope_{}", entry.scope),
        };
        AclEntry {
            username: entry.username,
            scope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pfs_input(repo: &str) -> pps::Input {
        pps::Input {
            pfs: Some(pps::PfsInput {
                repo: repo.into(),
                ..pps::PfsInput::default()
            }),
            ..pps::Input::default()
        }
    }

    #[test]
    fn input_repos_recurse_through_every_combinator() {
        let input = pps::Input {
            cross: vec![
                pfs_input("a"),
                pps::Input {
                    union: vec![pfs_input("b"), pfs_input("a")],
                    ..pps::Input::default()
                },
            ],
            join: vec![pfs_input("c")],
            group: vec![pfs_input("d")],
            cron: Some(pps::CronInput {
                name: "tick".into(),
                repo: "p_tick".into(),
                ..pps::CronInput::default()
            }),
            git: Some(pps::GitInput {
                name: "src".into(),
                ..pps::GitInput::default()
            }),
            ..pps::Input::default()
        };
        assert_eq!(
            input_repos(Some(&input)),
            ["p_tick", "src", "a", "b", "c", "d"]
        );
        assert!(input_repos(None).is_empty());
    }

    #[test]
    fn pipeline_fields_are_lowercase_and_typed() {
        let info = pps::PipelineInfo {
            pipeline: Some(pps::Pipeline {
                name: "sort".into(),
            }),
            state: pps::PipelineState::PipelinePaused as i32,
            stopped: true,
            transform: Some(pps::Transform {
                image: "ubuntu:16.04".into(),
                cmd: vec!["/bin/bash".into()],
                ..pps::Transform::default()
            }),
            input: Some(pfs_input("copy")),
            parallelism_spec: Some(pps::ParallelismSpec {
                constant: 1,
                coefficient: 0.0,
            }),
            last_job_state: pps::JobState::JobSuccess as i32,
            job_counts: [(3, 5)].into_iter().collect(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_608_060_673,
                nanos: 0,
            }),
            ..pps::PipelineInfo::default()
        };
        let pipeline = Pipeline::from(info);
        assert_eq!(pipeline.state, "paused");
        assert_eq!(pipeline.last_job_state, "success");
        assert_eq!(pipeline.job_counts.get("success"), Some(&5));
        assert_eq!(pipeline.inputs, ["copy"]);
        assert_eq!(pipeline.created.as_deref(), Some("2020-12-15T19:31:13Z"));
        assert_eq!(
            pipeline.to_string(),
            "pipeline sort (paused) image ubuntu:16.04 inputs copy"
        );
        assert_eq!(pipeline_state_name(6), "crashing");
        assert_eq!(pipeline_state_name(42), "state_42");
    }

    #[test]
    fn version_prints_like_pachctl() {
        let mut version = Version {
            major: 1,
            minor: 11,
            micro: 9,
            additional: String::new(),
        };
        assert_eq!(version.to_string(), "1.11.9");
        version.additional = "rc1".into();
        assert_eq!(version.to_string(), "1.11.9-rc1");
        assert_eq!(version.minor_name(), "1.11");
    }
}
