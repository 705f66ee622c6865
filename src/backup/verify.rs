//! Checking a dump end to end before anything is sent anywhere: every record decodes as its
//! version's types, versions are not mixed, no operation is repeated, parents and branch heads
//! refer to commits the dump (or its target) has, and the manifest, when present, matches.

use std::collections::HashSet;
use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{At, BackupError};
use super::inventory::{Inventory, InventoryBuilder};
use super::location::Location;
use super::op::{Op, branch_of, string_at, unknown_field_count};
use super::reader::RecordReader;
use super::wire::OpKind;

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

/// Structural checks that span records.
#[derive(Default)]
struct Relations {
    repos: HashSet<String>,
    commits: HashSet<(String, String)>,
    pipelines: HashSet<String>,
    blocks_with_data: HashSet<String>,
    open_block: Option<String>,
    block_terminated: HashSet<String>,
}

impl Relations {
    fn check(&mut self, op: &Op) -> Result<(), BackupError> {
        let at = At {
            record: op.index,
            offset: op.offset,
            compressed: None,
        };
        let duplicate = |what: String| BackupError::NotAnOp {
            at,
            reason: format!("duplicate {what} (already defined earlier in the dump)"),
        };
        match op.kind {
            OpKind::Repo => {
                let request = op.request()?;
                let name = string_at(&request, &["repo", "name"]).unwrap_or_default();
                if !self.repos.insert(name.clone()) {
                    return Err(duplicate(format!("repo '{name}'")));
                }
            }
            OpKind::Commit => {
                let request = op.request()?;
                let repo = string_at(&request, &["parent", "repo", "name"])
                    .or_else(|| string_at(&request, &["branch", "repo", "name"]))
                    .unwrap_or_default();
                let id = string_at(&request, &["ID"]).unwrap_or_default();
                let parent = string_at(&request, &["parent", "id"]).unwrap_or_default();
                if !parent.is_empty() && !self.commits.contains(&(repo.clone(), parent.clone())) {
                    return Err(BackupError::NotAnOp {
                        at,
                        reason: format!(
                            "commit {repo}@{id} names parent {parent}, which no earlier op builds"
                        ),
                    });
                }
                if !self.commits.insert((repo.clone(), id.clone())) {
                    return Err(duplicate(format!("commit {repo}@{id}")));
                }
            }
            OpKind::Branch => {
                let request = op.request()?;
                let (repo, branch) = branch_of(&request);
                let head = string_at(&request, &["head", "id"]).unwrap_or_default();
                if !head.is_empty() && !self.commits.contains(&(repo.clone(), head.clone())) {
                    return Err(BackupError::NotAnOp {
                        at,
                        reason: format!(
                            "branch {repo}@{branch} points at {head}, which no earlier op builds"
                        ),
                    });
                }
            }
            OpKind::Pipeline => {
                let request = op.request()?;
                let name = string_at(&request, &["pipeline", "name"]).unwrap_or_default();
                if !self.pipelines.insert(name.clone()) {
                    return Err(duplicate(format!("pipeline '{name}'")));
                }
            }
            OpKind::Block => {
                let request = op.request()?;
                let id = string_at(&request, &["block", "hash"]).unwrap_or_default();
                let has_data = super::op::value_at(&request, &["value"]).is_some();
                if self.block_terminated.contains(&id) {
                    return Err(duplicate(format!("block {id}")));
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
                    self.blocks_with_data.insert(id.clone());
                    self.open_block = Some(id);
                } else {
                    self.open_block = None;
                    self.block_terminated.insert(id);
                }
            }
            _ => {}
        }
        Ok(())
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
    let mut relations = Relations::default();
    let mut unknown_fields = 0u64;
    let mut last_kind: Option<OpKind> = None;
    let mut open_data_run = false;
    while let Some(record) = reader.next_record()? {
        let op = Op::from_record(record)?;
        inventory.add(&op)?;
        let request = op.request()?;
        super::op::register_secrets(op.kind, &request);
        unknown_fields += unknown_field_count(&request) as u64;
        relations.check(&op)?;
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
    if let Some(open) = relations.open_block.take() {
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
