//! Checking a dump end to end before anything is sent anywhere: every record decodes as its
//! version's types, versions are not mixed, the ops keep every relation a restore depends on
//! ([`super::relations`]), block streams are terminated, and the manifest, when present,
//! matches.

use std::collections::HashSet;
use std::io::Read;

use prost_reflect::DynamicMessage;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{At, BackupError};
use super::inventory::{Inventory, InventoryBuilder};
use super::location::Location;
use super::op::{Op, string_at, unknown_field_count};
use super::reader::RecordReader;
use super::relations::Relations;
use super::wire::{OpKind, OpVersion};

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// What the dump holds.
    pub inventory: Inventory,
    /// sha256 of the bytes read (the file as stored).
    pub sha256: String,
    /// Bytes read from the source (compressed size).
    pub source_bytes: u64,
    /// Fields the protos do not model (0 for every known pachd version).
    pub unknown_fields: u64,
    /// `checked`, `absent` or `not applicable` (stdin).
    pub manifest: String,
    /// Things worth knowing that do not make the dump unusable.
    pub warnings: Vec<String>,
}

/// Hashes and counts the bytes read through it.
struct HashingReader<R> {
    inner: R,
    hasher: std::sync::Arc<std::sync::Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut state = self
            .hasher
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0.update(&buf[..read]);
        state.1 += read as u64;
        Ok(read)
    }
}

/// Block streams: each block's data ops are contiguous and end with an empty terminator.
#[derive(Default)]
struct Blocks {
    open_block: Option<String>,
    block_terminated: HashSet<String>,
}

impl Blocks {
    fn check(&mut self, op: &Op, request: &DynamicMessage) -> Result<(), BackupError> {
        if op.kind != OpKind::Block {
            return Ok(());
        }
        let at = at_of(op);
        let id = string_at(request, &["block", "hash"]).unwrap_or_default();
        let has_data = super::op::value_at(request, &["value"]).is_some();
        if self.block_terminated.contains(&id) {
            return Err(BackupError::NotAnOp {
                at,
                reason: format!("duplicate block {id} (already defined earlier in the dump)"),
            });
        }
        if let Some(open) = &self.open_block
            && open != &id
        {
            return Err(BackupError::NotAnOp {
                at,
                reason: format!("block {id} starts before block {open} is terminated"),
            });
        }
        if has_data {
            self.open_block = Some(id);
        } else {
            self.open_block = None;
            self.block_terminated.insert(id);
        }
        Ok(())
    }
}

fn at_of(op: &Op) -> At {
    At {
        record: op.index,
        offset: op.offset,
        compressed: None,
    }
}

/// Reads the whole dump at `location`, checking everything; fails on the first problem with
/// its record number and offset.
pub fn verify(location: &Location) -> Result<VerifyReport, BackupError> {
    verify_source(location.open()?, location)
}

/// Checks a dump held in memory (no manifest applies); the fuzz targets use it.
pub fn verify_bytes(bytes: &[u8]) -> Result<VerifyReport, BackupError> {
    verify_source(
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        &Location::Std,
    )
}

fn verify_source(
    source: Box<dyn Read + Send>,
    location: &Location,
) -> Result<VerifyReport, BackupError> {
    let state = std::sync::Arc::new(std::sync::Mutex::new((Sha256::new(), 0u64)));
    let source = HashingReader {
        inner: source,
        hasher: state.clone(),
    };
    let mut reader = RecordReader::new(source)?;
    let format = reader.format();
    let mut inventory = InventoryBuilder::default();
    let mut relations = Relations::new();
    let mut blocks = Blocks::default();
    let mut unknown_fields = 0u64;
    let mut last_kind: Option<OpKind> = None;
    let mut open_data_run = false;
    let mut unfinished: Vec<String> = Vec::new();
    while let Some(record) = reader.next_record()? {
        let op = Op::from_record(record)?;
        inventory.add(&op)?;
        let request = op.request()?;
        super::op::register_secrets(op.kind, &request);
        unknown_fields += unknown_field_count(&request) as u64;
        // 1.10+ dumps say when a commit finished; the sandbox's strict restore refuses one
        // that did not, pachd finishes it on restore and its data is lost.
        if op.kind == OpKind::Commit
            && op.version >= OpVersion::V1_10
            && super::op::value_at(&request, &["finished"]).is_none()
        {
            unfinished.push(format!(
                "{}@{}",
                string_at(&request, &["parent", "repo", "name"]).unwrap_or_default(),
                string_at(&request, &["ID"]).unwrap_or_default()
            ));
        }
        relations
            .check(&op, &request)
            .map_err(|problem| BackupError::Broken {
                at: at_of(&op),
                problem,
            })?;
        blocks.check(&op, &request)?;
        if op.kind == OpKind::Object {
            open_data_run = super::op::value_at(&request, &["value"]).is_some();
        }
        last_kind = Some(op.kind);
    }
    let end = At {
        record: inventory.records(),
        offset: reader.bytes_read(),
        compressed: None,
    };
    if let Some(open) = blocks.open_block.take() {
        return Err(BackupError::NotAnOp {
            at: end,
            reason: format!("dump ends inside block {open} (no terminating empty block op)"),
        });
    }
    if open_data_run && last_kind == Some(OpKind::Object) {
        return Err(BackupError::NotAnOp {
            at: end,
            reason: "dump ends inside an object (no terminating empty object op)".into(),
        });
    }
    let bytes = reader.bytes_read();
    let inventory = inventory.finish(format, bytes);
    let (hasher, source_bytes) = {
        let mut guard = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *guard, (Sha256::new(), 0))
    };
    let sha256 = hex::encode(hasher.finalize());
    let mut warnings = Vec::new();
    if let Some(first) = unfinished.first() {
        warnings.push(format!(
            "{} commit(s) not finished (first: {first}): a restore finishes them and their data is lost",
            unfinished.len()
        ));
    }
    if unknown_fields > 0 {
        warnings.push(format!(
            "{unknown_fields} field(s) not modelled by ankus' protos; they are forwarded unchanged"
        ));
    }
    if inventory.records == 0 {
        warnings.push("the dump holds no records".into());
    }
    let manifest = super::manifest::check_beside(location, &sha256, source_bytes, &inventory)?;
    Ok(VerifyReport {
        inventory,
        sha256,
        source_bytes,
        unknown_fields,
        manifest,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::backup::writer::RecordWriter;
    use crate::proto::{admin, auth, pfs, pps};

    fn dump(ops: &[admin::Op113]) -> Vec<u8> {
        dump_of_bytes(
            &ops.iter()
                .map(|inner| {
                    admin::Op {
                        op1_13: Some(inner.clone()),
                        ..Default::default()
                    }
                    .encode_to_vec()
                })
                .collect::<Vec<_>>(),
        )
    }

    fn dump_of_bytes(records: &[Vec<u8>]) -> Vec<u8> {
        let mut writer = RecordWriter::new(Vec::new());
        for record in records {
            writer.write_record(record).expect("write");
        }
        writer.finish().expect("finish").2
    }

    fn refusal(bytes: &[u8]) -> String {
        match verify_bytes(bytes) {
            Ok(report) => panic!("verify passed: {:?}", report.inventory),
            Err(error) => error.to_string(),
        }
    }

    fn commit(repo: &str, id: &str) -> pfs::Commit {
        pfs::Commit {
            repo: Some(pfs::Repo { name: repo.into() }),
            id: id.into(),
        }
    }

    fn branch(repo: &str, name: &str) -> pfs::Branch {
        pfs::Branch {
            repo: Some(pfs::Repo { name: repo.into() }),
            name: name.into(),
        }
    }

    fn repo_op(name: &str) -> admin::Op113 {
        admin::Op113 {
            repo: Some(pfs::CreateRepoRequest {
                repo: Some(pfs::Repo { name: name.into() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn commit_op(repo: &str, id: &str, parent: &str) -> admin::Op113 {
        admin::Op113 {
            commit: Some(pfs::BuildCommitRequest {
                parent: Some(commit(repo, parent)),
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn branch_op(repo: &str, name: &str, head: &str, provenance: &[(&str, &str)]) -> admin::Op113 {
        admin::Op113 {
            branch: Some(pfs::CreateBranchRequest {
                head: (!head.is_empty()).then(|| commit(repo, head)),
                branch: Some(branch(repo, name)),
                provenance: provenance
                    .iter()
                    .map(|(repo, name)| branch(repo, name))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pipeline_op(name: &str, input: &str) -> admin::Op113 {
        admin::Op113 {
            pipeline: Some(pps::CreatePipelineRequest {
                pipeline: Some(pps::Pipeline { name: name.into() }),
                transform: Some(pps::Transform {
                    image: "ubuntu".into(),
                    ..Default::default()
                }),
                input: Some(pps::Input {
                    pfs: Some(pps::PfsInput {
                        repo: input.into(),
                        branch: "master".into(),
                        glob: "/*".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn activate_auth() -> admin::Op113 {
        admin::Op113 {
            activate_auth: Some(auth::ActivateRequest::default()),
            ..Default::default()
        }
    }

    fn acl_op(repo: &str) -> admin::Op113 {
        admin::Op113 {
            set_acl: Some(auth::SetAclRequest {
                repo: repo.into(),
                entries: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_dump_keeping_every_relation_passes() {
        let mut provenant = commit_op("out", "o1", "");
        provenant
            .commit
            .as_mut()
            .expect("commit")
            .provenance
            .push(pfs::CommitProvenance {
                commit: Some(commit("in", "c2")),
                branch: Some(branch("in", "master")),
            });
        let bytes = dump(&[
            repo_op("in"),
            repo_op("out"),
            commit_op("in", "c1", ""),
            commit_op("in", "c2", "c1"),
            provenant,
            branch_op("in", "master", "c2", &[]),
            branch_op("out", "master", "o1", &[("in", "master")]),
            pipeline_op("out", "in"),
            // A pipeline reading another's output repo, which only that pipeline creates
            // (pachd 1.9.0–1.9.5 leave running pipelines' outputs out of a dump).
            pipeline_op("next", "out"),
            pipeline_op("last", "next"),
            activate_auth(),
            acl_op("in"),
            acl_op("last"),
        ]);
        let report = verify_bytes(&bytes).expect("verifies");
        assert_eq!(report.inventory.records, 13);
    }

    /// Two copies of the commit field: protobuf (and so pachd) merges them, so the commit's
    /// parent is the first copy's `missing`; reading only the last copy saw no parent.
    #[test]
    fn a_commit_whose_merged_parent_is_missing_is_refused() {
        let first = pfs::BuildCommitRequest {
            parent: Some(commit("a", "missing")),
            ..Default::default()
        };
        let second = pfs::BuildCommitRequest {
            parent: Some(commit("a", "")),
            id: "c2".into(),
            ..Default::default()
        };
        let mut inner = Vec::new();
        for copy in [&first, &second] {
            prost::encoding::message::encode(OpKind::Commit.field(), copy, &mut inner);
        }
        let mut op = Vec::new();
        prost::encoding::bytes::encode(OpVersion::V1_13.field(), &inner, &mut op);
        let repo = admin::Op {
            op1_13: Some(repo_op("a")),
            ..Default::default()
        }
        .encode_to_vec();
        let text = refusal(&dump_of_bytes(&[repo, op]));
        assert!(text.starts_with("record 1 at byte offset "), "{text}");
        assert!(
            text.ends_with("commit a@c2 names parent missing, which no earlier op builds"),
            "{text}"
        );
    }

    #[test]
    fn a_commit_in_a_repo_without_a_repo_op_is_refused() {
        let text = refusal(&dump(&[repo_op("a"), commit_op("ghost", "c1", "")]));
        assert!(text.starts_with("record 1 "), "{text}");
        assert!(
            text.ends_with("commit ghost@c1 is in repo ghost, which no earlier repo op creates"),
            "{text}"
        );
    }

    #[test]
    fn a_branch_in_a_repo_without_a_repo_op_is_refused() {
        let text = refusal(&dump(&[branch_op("ghost", "master", "", &[])]));
        assert!(text.starts_with("record 0 "), "{text}");
        assert!(
            text.ends_with(
                "branch ghost@master is in repo ghost, which no earlier repo op creates"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_pipeline_whose_input_repo_is_missing_is_refused() {
        let text = refusal(&dump(&[repo_op("in"), pipeline_op("p", "gone")]));
        assert!(text.starts_with("record 1 "), "{text}");
        assert!(
            text.ends_with("pipeline 'p' reads repo gone, which no earlier op creates"),
            "{text}"
        );
    }

    #[test]
    fn commit_provenance_on_a_commit_nothing_builds_is_refused() {
        let mut provenant = commit_op("out", "o1", "");
        provenant
            .commit
            .as_mut()
            .expect("commit")
            .provenance
            .push(pfs::CommitProvenance {
                commit: Some(commit("in", "never")),
                branch: Some(branch("in", "master")),
            });
        let text = refusal(&dump(&[repo_op("in"), repo_op("out"), provenant]));
        assert!(text.starts_with("record 2 "), "{text}");
        assert!(
            text.ends_with("commit out@o1 names provenance in@never, which no earlier op builds"),
            "{text}"
        );
    }

    #[test]
    fn branch_provenance_in_a_repo_nothing_creates_is_refused() {
        let text = refusal(&dump(&[
            repo_op("out"),
            branch_op("out", "master", "", &[("gone", "master")]),
        ]));
        assert!(text.starts_with("record 1 "), "{text}");
        assert!(
            text.ends_with(
                "branch out@master names provenance gone@master, whose repo no earlier op creates"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_acl_on_a_missing_repo_is_refused() {
        let text = refusal(&dump(&[repo_op("a"), activate_auth(), acl_op("gone")]));
        assert!(text.starts_with("record 2 "), "{text}");
        assert!(
            text.ends_with("ACL is in repo gone, which no earlier repo op creates"),
            "{text}"
        );
    }

    #[test]
    fn auth_activated_twice_is_refused() {
        let text = refusal(&dump(&[activate_auth(), repo_op("a"), activate_auth()]));
        assert!(text.starts_with("record 2 "), "{text}");
        assert!(
            text.ends_with("auth is activated again (already by record 0)"),
            "{text}"
        );
    }

    #[test]
    fn an_unfinished_commit_is_named_in_a_warning() {
        let mut finished = commit_op("a", "c1", "");
        finished.commit.as_mut().expect("commit").finished = Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 0,
        });
        let bytes = dump(&[repo_op("a"), finished, commit_op("a", "c2", "c1")]);
        let report = verify_bytes(&bytes).expect("verifies");
        assert_eq!(
            report.warnings,
            [
                "1 commit(s) not finished (first: a@c2): a restore finishes them and their data is lost"
            ]
        );
    }

    #[test]
    fn a_job_before_its_pipeline_is_refused() {
        let job = admin::Op113 {
            job: Some(pps::CreateJobRequest {
                pipeline: Some(pps::Pipeline { name: "p".into() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = refusal(&dump(&[repo_op("in"), job, pipeline_op("p", "in")]));
        assert!(text.starts_with("record 1 "), "{text}");
        assert!(
            text.ends_with("job of pipeline 'p', which no earlier op creates"),
            "{text}"
        );
    }
}
